//! The duty desk's side of the northbound links: which links are down
//! (链路故障, shown to the duty officer while the centre is unreachable)
//! and the centre's duty checks (查岗, type 91). A duty check waits for
//! the duty officer's click for the window the centre gave; the click
//! queues a type-24 operation record with the 查岗应答 bit, and who
//! answered and how fast go into the audit trail. No click within the
//! window: recorded as missed.

use super::frame::TimeLabel;
use super::outbox::Outbox;
use super::unit::{operation_bits, DataUnit, DeviceOperation, Timed};
use crate::store::{AuditEntry, Store};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};

/// The window used when the centre gives none (0 minutes).
const DEFAULT_WINDOW_MS: u64 = 10 * 60_000;

/// One 查岗 from a centre.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DutyCheck {
    pub id: u64,
    pub centre: String,
    pub site: String,
    pub asked_at: u64,
    /// Answer by then (ms since the epoch).
    pub deadline: u64,
    pub answered_at: Option<u64>,
    pub answered_by: Option<String>,
    pub missed: bool,
}

/// A link's state for the duty desk.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct LinkState {
    pub centre: String,
    pub site: String,
    pub up: bool,
    /// 链路故障 note for the duty desk while down.
    pub note: Option<String>,
}

/// Why an answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("no such duty check")]
    Unknown,
    #[error("already answered")]
    Answered,
    #[error("the centre's window has passed")]
    Missed,
}

#[derive(Default)]
struct Inner {
    links: BTreeMap<(String, String), watch::Receiver<bool>>,
    outboxes: BTreeMap<(String, String), (Outbox, Arc<Notify>)>,
    checks: Vec<DutyCheck>,
    operations: BTreeMap<(String, String), Vec<Timed<DeviceOperation>>>,
    next_id: u64,
}

pub struct DutyDesk {
    store: Store,
    inner: Mutex<Inner>,
}

impl DutyDesk {
    pub fn new(store: Store) -> Arc<DutyDesk> {
        Arc::new(DutyDesk {
            store,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register_link(&self, centre: &str, site: &str, up: watch::Receiver<bool>) {
        self.lock().links.insert((centre.into(), site.into()), up);
    }

    pub fn register_outbox(&self, centre: &str, site: &str, outbox: Outbox, wake: Arc<Notify>) {
        self.lock()
            .outboxes
            .insert((centre.into(), site.into()), (outbox, wake));
    }

    /// Every link, with a 链路故障 note for those down.
    pub fn links(&self) -> Vec<LinkState> {
        self.lock()
            .links
            .iter()
            .map(|((centre, site), up)| {
                let up = *up.borrow();
                LinkState {
                    centre: centre.clone(),
                    site: site.clone(),
                    up,
                    note: (!up).then(|| {
                        format!(
                            "与消防远程监控中心（{centre}）链路故障：报警暂存待发，恢复后按序补发"
                        )
                    }),
                }
            })
            .collect()
    }

    /// The duty-check answers of a link, for the centre's read 84.
    pub fn operations(&self, centre: &str, site: &str) -> Vec<Timed<DeviceOperation>> {
        let inner = self.lock();
        let ops = inner
            .operations
            .get(&(centre.to_string(), site.to_string()))
            .cloned()
            .unwrap_or_default();
        ops.into_iter().rev().take(100).rev().collect()
    }

    /// A 查岗 arrived; `minutes` is the centre's answer window.
    pub fn duty_check(&self, centre: &str, site: &str, minutes: u8, sent: TimeLabel, now_ms: u64) {
        let window = if minutes == 0 {
            DEFAULT_WINDOW_MS
        } else {
            u64::from(minutes) * 60_000
        };
        let id = {
            let mut inner = self.lock();
            inner.next_id += 1;
            let id = inner.next_id;
            inner.checks.push(DutyCheck {
                id,
                centre: centre.into(),
                site: site.into(),
                asked_at: now_ms,
                deadline: now_ms + window,
                answered_at: None,
                answered_by: None,
                missed: false,
            });
            // Keep the last 200.
            let n = inner.checks.len();
            if n > 200 {
                inner.checks.drain(..n - 200);
            }
            id
        };
        tracing::info!(%centre, %site, id, minutes, centre_time = %sent, "duty check (查岗) from the centre");
        self.audit(
            now_ms,
            "gb26875",
            "system",
            "gb26875.duty_check",
            format!("duty_check:{id}"),
            format!("centre={centre} site={site} window_min={minutes}"),
        );
    }

    fn audit(
        &self,
        at: u64,
        actor: &str,
        role: &str,
        action: &'static str,
        subject: String,
        details: String,
    ) {
        let store = self.store.clone();
        let (actor, role) = (actor.to_string(), role.to_string());
        tokio::spawn(async move {
            let e = AuditEntry {
                at,
                actor: &actor,
                role: &role,
                action,
                subject,
                details,
            };
            if let Err(err) = store.audit(&e).await {
                tracing::error!(error = %err, action, "audit record not written");
            }
        });
    }

    /// Marks checks past their window as missed (audited once).
    pub fn sweep(&self, now_ms: u64) {
        let missed: Vec<DutyCheck> = {
            let mut inner = self.lock();
            inner
                .checks
                .iter_mut()
                .filter(|c| c.answered_at.is_none() && !c.missed && now_ms > c.deadline)
                .map(|c| {
                    c.missed = true;
                    c.clone()
                })
                .collect()
        };
        for c in missed {
            tracing::warn!(centre = %c.centre, site = %c.site, id = c.id, "duty check (查岗) not answered in the centre's window");
            self.audit(
                now_ms,
                "gb26875",
                "system",
                "gb26875.duty_check_missed",
                format!("duty_check:{}", c.id),
                format!(
                    "centre={} site={} window_s={}",
                    c.centre,
                    c.site,
                    (c.deadline - c.asked_at) / 1000
                ),
            );
        }
    }

    /// Duty checks of these sites (all with `None`), newest first, after a sweep.
    pub fn checks(&self, sites: Option<&[String]>, now_ms: u64) -> Vec<DutyCheck> {
        self.sweep(now_ms);
        let inner = self.lock();
        inner
            .checks
            .iter()
            .rev()
            .filter(|c| sites.is_none_or(|s| s.contains(&c.site)))
            .cloned()
            .collect()
    }

    /// The duty officer answered: the centre gets a type-24 record with the
    /// 查岗应答 bit, the audit trail who and how fast.
    pub async fn answer(&self, id: u64, who: &str, now_ms: u64) -> Result<DutyCheck, AnswerError> {
        self.sweep(now_ms);
        let (check, outbox) = {
            let mut inner = self.lock();
            let c = inner
                .checks
                .iter_mut()
                .find(|c| c.id == id)
                .ok_or(AnswerError::Unknown)?;
            if c.answered_at.is_some() {
                return Err(AnswerError::Answered);
            }
            if c.missed {
                return Err(AnswerError::Missed);
            }
            c.answered_at = Some(now_ms);
            c.answered_by = Some(who.to_string());
            let c = c.clone();
            let op = Timed {
                object: DeviceOperation {
                    operation: operation_bits::DUTY_CHECK_ANSWERED,
                    operator: 0,
                },
                time: TimeLabel::from_unix_ms(now_ms),
            };
            inner
                .operations
                .entry((c.centre.clone(), c.site.clone()))
                .or_default()
                .push(op);
            let outbox = inner
                .outboxes
                .get(&(c.centre.clone(), c.site.clone()))
                .cloned();
            (c, outbox)
        };
        let unit = DataUnit::DeviceOperation(vec![Timed {
            object: DeviceOperation {
                operation: operation_bits::DUTY_CHECK_ANSWERED,
                operator: 0,
            },
            time: TimeLabel::from_unix_ms(now_ms),
        }]);
        if let (Some((outbox, wake)), Ok(bytes)) = (outbox, unit.encode()) {
            match outbox
                .push(
                    &format!("duty:{}:{}", check.asked_at, check.id),
                    None,
                    &bytes,
                    false,
                    now_ms as i64,
                )
                .await
            {
                Ok(_) => wake.notify_one(),
                Err(e) => tracing::error!(error = %e, "duty-check answer not queued"),
            }
        }
        let secs = (now_ms - check.asked_at) as f64 / 1000.0;
        tracing::info!(centre = %check.centre, site = %check.site, id, %who, secs, "duty check (查岗) answered");
        self.audit(
            now_ms,
            who,
            "duty",
            "gb26875.duty_check_answered",
            format!("duty_check:{id}"),
            format!(
                "centre={} site={} after_s={secs:.1}",
                check.centre, check.site
            ),
        );
        Ok(check)
    }
}
