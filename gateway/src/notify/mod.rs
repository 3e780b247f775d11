//! Alarm delivery (报警推送): alarms reach people on 企业微信, 钉钉, 飞书,
//! a signed webhook or SMS, escalate when nobody acknowledges them, and
//! overdue tickets are announced.
//!
//! The decisions are pure and tested on their own: [`vendor`] builds each
//! vendor's request and reads its answer, [`queue`] keeps each channel
//! under its vendor's rate limit by grouping rather than dropping,
//! [`escalate`] plans who hears when. This module is the shell: it follows
//! the gateway's event stream (and, as a safety net against a lagging
//! stream or a restart, the store's standing alarms every 30 s), sends the
//! requests, and logs every attempt in the store (`/api/v1/notifications`).
//!
//! Time: the task reads the wall clock once at start and then advances it
//! with tokio's clock, so tests run it under `tokio::time::pause`.

pub use crate::config::notify as config;
pub mod escalate;
pub mod queue;
pub mod vendor;

use crate::alarms::events::{AlarmView, GatewayEvent, TicketView};
use crate::config::Config;
use crate::domain::labels;
use crate::store::{AlarmFilter, NotificationLog, Store};
use config::{ChannelConfig, NotifyConfig};
use escalate::{Escalator, Reason, Tier};
use queue::{Message, Next, Outgoing, Queue, RateLimit};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use vendor::Answer;

/// How often the standing alarms are compared with what is being followed.
const RECONCILE_MS: u64 = 30_000;

/// The alarm text for people (简体中文).
pub fn alarm_text(
    config: &Config,
    base_url: &str,
    a: &AlarmView,
    tier: Tier,
    reason: Reason,
) -> (String, String) {
    let r = &a.row;
    let (site, location) = config.place(&r.site, &r.node, &r.channel);
    let place = if r.channel.is_empty() {
        r.node.clone()
    } else {
        format!("{}/{}", r.node, r.channel)
    };
    let what = match (&a.quantity_label, &a.value_display) {
        (Some(q), Some(v)) => format!("{q} {v}"),
        (Some(q), None) => q.to_string(),
        _ => labels::alarm_kind(&r.kind).to_string(),
    };
    let setpoint = a
        .setpoint_display
        .as_deref()
        .map(|s| format!("（{}值 {s}）", a.level_label))
        .unwrap_or_default();
    let tag = match reason {
        Reason::Raised => format!("【{}】", a.level_label),
        Reason::Escalated { after_s } => format!(
            "【升级·{}】{}未确认 ",
            match tier {
                Tier::Manager => "机构负责人",
                _ => "民政局",
            },
            if after_s % 60 == 0 {
                format!("{}分钟", after_s / 60)
            } else {
                format!("{after_s}秒")
            }
        ),
        Reason::Reminder { n } => format!("【提醒·第{n}次】仍未确认 "),
    };
    let summary = format!("{site} {location} {place} {what}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let time = crate::domain::time::rfc3339_cst(r.raised_at.max(0) as u64)
        .get(..19)
        .unwrap_or("")
        .replace('T', " ");
    let mut text = format!("{tag}{summary}{setpoint}\n时间：{time}");
    if let Some(t) = r.ticket_id {
        text.push_str(&format!("\n隐患工单：#{t}"));
    }
    text.push_str(&format!(
        "\n详情：{}/alarms/{}",
        base_url.trim_end_matches('/'),
        r.id
    ));
    (summary, text)
}

/// The overdue-ticket text.
pub fn overdue_text(config: &Config, base_url: &str, t: &TicketView) -> (String, String) {
    let r = &t.row;
    let (site, _) = config.place(&r.site, &r.node, &r.channel);
    let summary = format!("{site} 隐患工单 {} {}", r.number, r.title);
    let deadline = r
        .deadline
        .map(crate::domain::time::day_cst)
        .unwrap_or_default();
    let text = format!(
        "【逾期】{summary}（{}）已超过整改期限 {deadline}，已督办至{}\n详情：{}/tickets/{}",
        t.status_label,
        r.escalated_to.as_deref().unwrap_or("民政局"),
        base_url.trim_end_matches('/'),
        r.id
    );
    (summary, text)
}

fn is_fire(a: &AlarmView) -> bool {
    matches!(a.row.kind.as_str(), "electrical_fire" | "fire_facility") && a.row.level == "alarm"
}

fn wants_notice(a: &AlarmView) -> bool {
    !a.row.suppressed && a.row.acked_at.is_none() && a.row.state != "cleared"
}

fn level_rank(level: &str) -> u8 {
    match level {
        "pre_alarm" => 1,
        "alarm" => 2,
        _ => 0,
    }
}

struct Channel {
    config: ChannelConfig,
    queue: Queue,
}

/// The delivery task's state.
pub struct Notifier {
    config: Arc<Config>,
    nc: NotifyConfig,
    store: Store,
    http: crate::tls::HttpClient,
    escalator: Escalator,
    channels: BTreeMap<String, Channel>,
    /// Open alarms being followed, for their text at each step.
    alarms: HashMap<i64, AlarmView>,
    overdue_told: HashSet<i64>,
    wall0: u64,
    inst0: tokio::time::Instant,
}

impl Notifier {
    pub fn new(config: Arc<Config>, nc: NotifyConfig, store: Store) -> Notifier {
        let channels = nc
            .channels
            .iter()
            .map(|c| {
                let limit = RateLimit::new(c.kind.limits(c.rate_per_min));
                (
                    c.name.clone(),
                    Channel {
                        config: c.clone(),
                        queue: Queue::new(limit, c.kind.max_text_bytes()),
                    },
                )
            })
            .collect();
        let escalator = Escalator::new(escalate::Policy {
            manager_after_ms: nc.manager_after_secs * 1000,
            bureau_after_ms: nc.bureau_after_secs * 1000,
            remind_every_ms: nc.remind_every_secs * 1000,
        });
        let timeout = Duration::from_millis(nc.timeout_ms);
        let http = crate::tls::HttpClient::new_or_system(&config.tls, timeout, "notify");
        Notifier {
            config,
            nc,
            store,
            http,
            escalator,
            channels,
            alarms: HashMap::new(),
            overdue_told: HashSet::new(),
            wall0: crate::domain::time::now_ms(),
            inst0: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.wall0 + self.inst0.elapsed().as_millis() as u64
    }

    /// The channels for a tier at a site, now (the duty roster by shift).
    fn route(&self, site: &str, tier: Tier, now: u64) -> Vec<String> {
        let Some(r) = self.nc.route(site) else {
            return Vec::new();
        };
        match tier {
            Tier::Duty => {
                let now = now as i64;
                let minute = ((now - crate::domain::time::day_start_cst(now)) / 60_000) as u32;
                r.shifts
                    .iter()
                    .find(|s| s.covers(minute))
                    .map(|s| s.duty.clone())
                    .unwrap_or_else(|| r.duty.clone())
            }
            Tier::Manager => r.manager.clone(),
            Tier::Bureau => r.bureau.clone(),
        }
    }

    async fn enqueue(&mut self, site: &str, tier: Tier, m: Message, now: u64) {
        let names = self.route(site, tier, now);
        if names.is_empty() {
            tracing::warn!(site, tier = tier.code(), key = %m.key, "no notification route");
            self.log(&[m], "-", "unrouted", "该机构此级别未配置推送渠道", 0, now)
                .await;
            return;
        }
        for name in names {
            if let Some(c) = self.channels.get_mut(&name) {
                c.queue.push(m.clone(), now);
            }
        }
    }

    async fn alarm_step(&mut self, a: &AlarmView, tier: Tier, reason: Reason, now: u64) {
        let (summary, text) = alarm_text(&self.config, &self.nc.base_url, a, tier, reason);
        let step = match reason {
            Reason::Raised => "raised".to_string(),
            Reason::Escalated { .. } => "escalated".to_string(),
            Reason::Reminder { n } => format!("reminder{n}"),
        };
        let m = Message {
            key: format!("alarm:{}:{step}:{}", a.row.id, tier.code()),
            site: a.row.site.clone(),
            alarm_id: Some(a.row.id),
            ticket_id: a.row.ticket_id,
            fire: is_fire(a),
            summary,
            text,
            event: serde_json::to_value(a).unwrap_or_default(),
            attempts: 0,
            queued_at: 0,
        };
        self.enqueue(&a.row.site.clone(), tier, m, now).await;
    }

    /// Starts following an alarm; `announce` false when it was announced
    /// before (found again after a restart).
    async fn follow(&mut self, a: AlarmView, announce: bool, now: u64) {
        let steps = self
            .escalator
            .raised(a.row.id, a.row.raised_at.max(0) as u64, now);
        for (tier, reason) in steps {
            if reason == Reason::Raised && !announce {
                continue;
            }
            self.alarm_step(&a, tier, reason, now).await;
        }
        self.alarms.insert(a.row.id, a);
    }

    pub async fn on_event(&mut self, e: GatewayEvent) {
        let now = self.now();
        match e {
            GatewayEvent::AlarmRaised { alarm, .. } => {
                if wants_notice(&alarm) {
                    self.follow(alarm, true, now).await;
                }
            }
            GatewayEvent::AlarmUpdated { alarm } => {
                let id = alarm.row.id;
                if !wants_notice(&alarm) {
                    self.escalator.settled(id);
                    self.alarms.remove(&id);
                } else if let Some(before) = self.alarms.get(&id) {
                    // 预警 became 报警: say so at once.
                    if level_rank(&alarm.row.level) > level_rank(&before.row.level) {
                        self.alarm_step(&alarm, Tier::Duty, Reason::Raised, now)
                            .await;
                    }
                    self.alarms.insert(id, alarm);
                } else {
                    // Released from suppression, or missed (a cluster's new
                    // leader, a replica taking a partition over): follow it
                    // now, with a first notice unless one was delivered.
                    let told = self.store.notified(id).await.unwrap_or(false);
                    self.follow(alarm, !told, now).await;
                }
            }
            GatewayEvent::TicketUpdated { ticket } => {
                let r = &ticket.row;
                if r.overdue_at.is_some() && r.status != "closed" && self.overdue_told.insert(r.id)
                {
                    let (summary, text) = overdue_text(&self.config, &self.nc.base_url, &ticket);
                    for tier in [Tier::Manager, Tier::Bureau] {
                        let m = Message {
                            key: format!("ticket:{}:overdue:{}", r.id, tier.code()),
                            site: r.site.clone(),
                            alarm_id: None,
                            ticket_id: Some(r.id),
                            fire: false,
                            summary: summary.clone(),
                            text: text.clone(),
                            event: serde_json::to_value(&ticket).unwrap_or_default(),
                            attempts: 0,
                            queued_at: 0,
                        };
                        self.enqueue(&r.site.clone(), tier, m, now).await;
                    }
                }
            }
        }
    }

    /// Compares the store's standing, unacknowledged alarms with those
    /// followed: a missed one is followed (announced unless the log shows
    /// it was), one acknowledged meanwhile is dropped.
    pub async fn reconcile(&mut self) {
        let now = self.now();
        let standing = match self.store.alarms(AlarmFilter::Standing, 10_000).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "notifier cannot read the standing alarms");
                return;
            }
        };
        let mut open = HashSet::new();
        for row in standing {
            let a = AlarmView::from(row);
            if !wants_notice(&a) {
                continue;
            }
            open.insert(a.row.id);
            if !self.escalator.is_open(a.row.id) {
                let told = self.store.notified(a.row.id).await.unwrap_or(false);
                self.follow(a, !told, now).await;
            }
        }
        let gone: Vec<i64> = self
            .alarms
            .keys()
            .copied()
            .filter(|id| !open.contains(id))
            .collect();
        for id in gone {
            self.escalator.settled(id);
            self.alarms.remove(&id);
        }
    }

    /// Escalations and reminders due now.
    async fn escalate(&mut self, now: u64) {
        for (id, tier, reason) in self.escalator.due(now) {
            if let Some(a) = self.alarms.get(&id).cloned() {
                self.alarm_step(&a, tier, reason, now).await;
            }
        }
    }

    /// Sends what each channel may send now, concurrently across channels;
    /// returns when the next send may go.
    async fn pump(&mut self, now: u64) -> Option<u64> {
        let mut wake: Option<u64> = None;
        let mut sends: Vec<(String, Outgoing)> = Vec::new();
        for (name, c) in self.channels.iter_mut() {
            match c.queue.next(now) {
                Next::Send(out) => sends.push((name.clone(), out)),
                Next::WaitUntil(t) => wake = Some(wake.map_or(t, |w: u64| w.min(t))),
                Next::Idle => {}
            }
        }
        if sends.is_empty() {
            return wake;
        }
        let mut set = tokio::task::JoinSet::new();
        for (name, out) in sends {
            let c = &self.channels[&name].config;
            let target = vendor::Target {
                kind: c.kind,
                url: &c.url,
                secret: c.secret.as_deref(),
                phones: &c.phones,
                template: c.template.as_deref(),
                content_type: &c.content_type,
            };
            let event = if out.messages.len() == 1 {
                out.messages[0].event.clone()
            } else {
                serde_json::json!({
                    "type": "group",
                    "count": out.messages.len(),
                    "items": out.messages.iter().map(|m| &m.event).collect::<Vec<_>>(),
                })
            };
            let requests = vendor::requests(&target, &out.text, &event, now);
            let http = self.http.clone();
            let kind = c.kind;
            set.spawn(async move {
                let answer = send_all(&http, kind, requests).await;
                (name, out, answer)
            });
        }
        while let Some(done) = set.join_next().await {
            let Ok((name, out, answer)) = done else {
                continue;
            };
            self.settle(&name, out, answer, now).await;
        }
        // Something was sent: look again at once.
        Some(now)
    }

    async fn settle(&mut self, name: &str, out: Outgoing, answer: Answer, now: u64) {
        let Some(c) = self.channels.get_mut(name) else {
            return;
        };
        let n = out.messages.len();
        let (kind, failover) = (c.config.kind, c.config.failover.clone());
        let mut handed: Vec<Message> = Vec::new();
        let (outcome, detail) = match &answer {
            Answer::Delivered => {
                c.queue.delivered();
                ("delivered", String::new())
            }
            Answer::RateLimited(d) => {
                c.queue.rate_limited(out.clone(), now, kind.block_ms());
                ("rate_limited", d.clone())
            }
            Answer::Refused(d) => {
                // Retrying cannot fix a refused signature: everything
                // waiting goes elsewhere when there is somewhere to go.
                if failover.is_some() {
                    handed = out.messages.clone();
                    handed.extend(c.queue.drain());
                } else {
                    handed = c.queue.failed(out.clone(), now);
                }
                ("refused", d.clone())
            }
            Answer::Failed(d) => {
                handed = c.queue.failed(out.clone(), now);
                ("failed", d.clone())
            }
        };
        // A vendor's answer may quote the request URL back (tokens).
        let detail = crate::redact::text(&detail).into_owned();
        self.log(&out.messages, name, outcome, &detail, n, now)
            .await;
        if outcome != "delivered" {
            tracing::warn!(
                channel = name,
                outcome,
                detail,
                messages = n,
                "notification not delivered"
            );
        }
        for mut m in handed {
            m.attempts = 0;
            match failover.as_deref().and_then(|f| self.channels.get_mut(f)) {
                Some(other) => other.queue.push(m, now),
                // Nowhere else to go: a fire alarm keeps trying here.
                None if m.fire => {
                    if let Some(c) = self.channels.get_mut(name) {
                        c.queue.push(m, now);
                    }
                }
                None => {
                    self.log(&[m], name, "gave_up", "多次发送失败且无备用渠道", 1, now)
                        .await;
                }
            }
        }
    }

    async fn log(
        &self,
        messages: &[Message],
        channel: &str,
        outcome: &str,
        detail: &str,
        group: usize,
        now: u64,
    ) {
        let rows: Vec<NotificationLog> = messages
            .iter()
            .map(|m| NotificationLog {
                at: now as i64,
                site: m.site.clone(),
                channel: channel.to_string(),
                subject: m.key.clone(),
                alarm_id: m.alarm_id,
                ticket_id: m.ticket_id,
                outcome: outcome.to_string(),
                detail: detail.to_string(),
                group_size: group as i64,
                attempt: m.attempts as i64 + 1,
                text: m.text.clone(),
            })
            .collect();
        if let Err(e) = self.store.log_notifications(&rows).await {
            tracing::error!(error = %e, "notification log not written");
        }
    }

    /// Runs until shutdown.
    pub async fn run(
        mut self,
        mut events: broadcast::Receiver<GatewayEvent>,
        shutdown: CancellationToken,
    ) {
        self.reconcile().await;
        let mut last_reconcile = self.now();
        loop {
            let now = self.now();
            if now >= last_reconcile + RECONCILE_MS {
                self.reconcile().await;
                last_reconcile = now;
            }
            self.escalate(now).await;
            let mut wake = last_reconcile + RECONCILE_MS;
            if let Some(t) = self.pump(now).await {
                wake = wake.min(t);
            }
            if let Some(t) = self.escalator.next_due() {
                wake = wake.min(t);
            }
            let wait = Duration::from_millis(wake.saturating_sub(self.now()));
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(e) => self.on_event(e).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "notifier lagged behind the event stream; reconciling");
                        self.reconcile().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }
}

/// Sends each request (several for SMS); the worst answer counts.
async fn send_all(
    http: &crate::tls::HttpClient,
    kind: vendor::Kind,
    requests: Vec<vendor::Request>,
) -> Answer {
    let mut worst = Answer::Delivered;
    for r in requests {
        let mut req = http.post(&r.url).body(r.body);
        for (k, v) in &r.headers {
            req = req.header(k, v);
        }
        let answer = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.bytes().await.unwrap_or_default();
                vendor::answer(kind, status, &body)
            }
            // An untrusted certificate, like a refused signature, stays
            // wrong however often it is retried: fail over at once. The
            // error names scheme, host and port only, and is redacted all
            // the same: the URL carries the robot's token (`access_token=`,
            // `key=`, `sign=`).
            Err(e) if e.is_certificate() => Answer::Refused(format!(
                "request failed: {}",
                crate::redact::text(&e.to_string())
            )),
            Err(e) => Answer::Failed(format!(
                "request failed: {}",
                crate::redact::text(&e.to_string())
            )),
        };
        if answer != Answer::Delivered {
            worst = answer;
        }
    }
    worst
}

/// Starts the delivery task when `[notify]` is configured.
pub fn start(
    config: Arc<Config>,
    store: Store,
    events: broadcast::Receiver<GatewayEvent>,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let nc = config.notify.clone()?;
    let n = Notifier::new(config, nc, store);
    Some(tokio::spawn(n.run(events, shutdown)))
}
