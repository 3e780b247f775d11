//! The shell around the links: one [`Link`] per (centre, site) and beside
//! it a feeder that fills the site's outbox. The feeder follows the
//! gateway's committed events and, like the notifier, re-reads the store's
//! standing alarms every 30 s (and after a lagged event stream), so a lost
//! event loses no alarm: the outbox's unique subject keeps each raise and
//! clear queued once. It also queues the device state (type 21) at each
//! connect and on change, and the latest readings every
//! `readings_every_secs`.

use super::config::{parse_address, CentreConfig};
use super::frame::TimeLabel;
use super::link::{Downstream, Link};
use super::map;
use super::metrics::{Gb26875Metrics, LinkCounters};
use super::outbox::Outbox;
use super::unit::{component_bits as cb, ComponentState, DataUnit, SystemState, Timed};
use crate::alarms::events::GatewayEvent;
use crate::config::Config;
use crate::store::{AlarmFilter, AlarmRow, Store};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the standing alarms are re-read.
const RECONCILE_MS: u64 = 30_000;

/// Starts every configured link; none when there is no centre.
pub fn start(
    config: Arc<Config>,
    store: Store,
    events: &broadcast::Sender<GatewayEvent>,
    metrics: &Gb26875Metrics,
    duty: Arc<super::duty::DutyDesk>,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for centre in &config.northbound.gb26875 {
        let centre = Arc::new(centre.clone());
        let Some(destination) = parse_address(&centre.destination_address) else {
            continue;
        };
        for (site, addr) in &centre.sites {
            let Some(source) = parse_address(addr) else {
                continue;
            };
            let counters = metrics.link(&centre.name, site);
            let outbox = Outbox::new(store.clone(), &centre.name, site, centre.outbox_max);
            let wake = Arc::new(Notify::new());
            let (up, up_rx) = watch::channel(false);
            duty.register_link(&centre.name, site, up_rx.clone());
            let state = Arc::new(SiteState {
                config: config.clone(),
                store: store.clone(),
                system_type: centre.system_type,
                centre: centre.name.clone(),
                duty: duty.clone(),
            });
            let link = Link {
                centre: centre.clone(),
                site: site.clone(),
                source,
                destination,
                outbox: outbox.clone(),
                counters: counters.clone(),
                wake: wake.clone(),
                downstream: state.clone(),
                up,
            };
            duty.register_outbox(&centre.name, site, outbox.clone(), wake.clone());
            let feeder = Feeder {
                state,
                centre: centre.clone(),
                site: site.clone(),
                outbox,
                counters,
                wake,
                last_device_state: None,
            };
            tasks.push(tokio::spawn(link.run(shutdown.clone())));
            tasks.push(tokio::spawn(feeder.run(
                events.subscribe(),
                up_rx,
                shutdown.clone(),
            )));
            tracing::info!(centre = %centre.name, %site, address = %centre.address, "GB/T 26875 northbound link configured");
        }
    }
    tasks
}

/// The gateway's state as one site's transmission device shows it.
pub struct SiteState {
    config: Arc<Config>,
    store: Store,
    system_type: u8,
    centre: String,
    duty: Arc<super::duty::DutyDesk>,
}

impl SiteState {
    async fn standing(&self, site: &str) -> Vec<AlarmRow> {
        match self.store.alarms(AlarmFilter::Standing, 10_000).await {
            Ok(rows) => rows.into_iter().filter(|r| r.site == site).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "standing alarms not read");
                Vec::new()
            }
        }
    }
}

fn now_label() -> TimeLabel {
    TimeLabel::from_unix_ms(crate::domain::time::now_ms())
}

impl Downstream for SiteState {
    fn read(
        &self,
        site: &str,
        kind: u8,
        objects: &[Vec<u8>],
    ) -> futures_util::future::BoxFuture<'_, Option<DataUnit>> {
        let site = site.to_string();
        let objects = objects.to_vec();
        Box::pin(async move {
            let time = now_label();
            match kind {
                // 读建筑消防设施系统状态: the site's components folded together.
                61 => {
                    let standing = self.standing(&site).await;
                    let state = standing
                        .iter()
                        .filter_map(map::standing_bits)
                        .fold(cb::NORMAL, |a, b| a | b);
                    Some(DataUnit::SystemState(vec![Timed {
                        object: SystemState {
                            system_type: self.system_type,
                            system_address: 0,
                            state,
                        },
                        time,
                    }]))
                }
                // 读部件运行状态: each asked component, from its standing alarms.
                62 => {
                    let standing = self.standing(&site).await;
                    let mut out = Vec::new();
                    for o in &objects {
                        let address = u32::from_le_bytes([o[2], o[3], o[4], o[5]]);
                        let mut state = cb::NORMAL;
                        let mut place = None;
                        for r in &standing {
                            if map::component_address(&self.config, &r.site, &r.node, &r.channel)
                                == address
                            {
                                state |= map::standing_bits(r).unwrap_or(0);
                                place.get_or_insert((
                                    r.node.clone(),
                                    r.channel.clone(),
                                    r.quantity.clone(),
                                ));
                            }
                        }
                        let (node, channel, quantity) = place
                            .or_else(|| self.place_of(&site, address))
                            .unwrap_or_default();
                        let (_, location) = self.config.place(&site, &node, &channel);
                        out.push(Timed {
                            object: ComponentState {
                                system_type: self.system_type,
                                system_address: 0,
                                component_type: map::component_type(quantity.as_deref()),
                                component_address: address,
                                state,
                                description: super::unit::encode_description(&location),
                            },
                            time,
                        });
                    }
                    Some(DataUnit::ComponentState(out))
                }
                // 读部件模拟量值: the latest readings of the asked components.
                63 => {
                    let latest = self
                        .store
                        .latest_in(Some(std::slice::from_ref(&site)))
                        .await
                        .ok()?;
                    let wanted: Vec<u32> = objects
                        .iter()
                        .map(|o| u32::from_le_bytes([o[2], o[3], o[4], o[5]]))
                        .collect();
                    let rows: Vec<_> = latest
                        .into_iter()
                        .filter(|r| {
                            wanted.contains(&map::component_address(
                                &self.config,
                                &r.site,
                                &r.node,
                                &r.channel,
                            ))
                        })
                        .collect();
                    let units = map::analog_units(&self.config, self.system_type, &rows, 0);
                    Some(
                        units
                            .into_iter()
                            .next()
                            .map(|o| o.unit)
                            .unwrap_or(DataUnit::ComponentAnalog(Vec::new())),
                    )
                }
                // 读操作信息记录: the gateway keeps no facility operations.
                64 => Some(DataUnit::Operation(Vec::new())),
                81 => {
                    let standing = self.standing(&site).await;
                    Some(DataUnit::DeviceState(vec![Timed {
                        object: map::device_state(&standing, false),
                        time,
                    }]))
                }
                // 读用户信息传输装置操作信息记录: the duty-check answers.
                84 => Some(DataUnit::DeviceOperation(
                    self.duty.operations(&self.centre, &site),
                )),
                88 => Some(DataUnit::DeviceTime(vec![time])),
                // Software versions and configuration (65–67, 85–87) and 68
                // have no data unit here: denied.
                _ => None,
            }
        })
    }

    fn command(&self, site: &str, unit: &DataUnit, frame_time: TimeLabel) {
        match unit {
            DataUnit::TimeSync(times) => {
                // The host's clock is not ours to set (NTP is); logged.
                tracing::info!(centre = %self.centre, %site, centre_time = ?times.first().map(|t| t.to_string()), our_time = %now_label(), "time sync (90) from the centre: logged, clock not set");
            }
            DataUnit::DutyCheck(windows) => {
                let minutes = windows.first().copied().unwrap_or(0);
                self.duty.duty_check(
                    &self.centre,
                    site,
                    minutes,
                    frame_time,
                    crate::domain::time::now_ms(),
                );
            }
            DataUnit::Initialise(_) => {
                tracing::info!(centre = %self.centre, %site, "initialise (89) from the centre: logged, nothing to reset");
            }
            _ => {}
        }
    }
}

impl SiteState {
    /// The node/channel/quantity of a configured component address.
    fn place_of(&self, site: &str, address: u32) -> Option<(String, String, Option<String>)> {
        let s = self.config.sites.iter().find(|s| s.id == site)?;
        let n = s.nodes.get((address / 1000) as usize)?.clone();
        let n = if address / 1000 == 0 {
            return None;
        } else {
            s.nodes.get((address / 1000 - 1) as usize).unwrap_or(&n)
        };
        let ci = (address % 1000) as usize;
        if ci == 0 {
            return Some((n.id.clone(), String::new(), None));
        }
        let c = n.channels.get(ci - 1)?;
        Some((n.id.clone(), c.id.clone(), c.quantity.clone()))
    }
}

struct Feeder {
    state: Arc<SiteState>,
    centre: Arc<CentreConfig>,
    site: String,
    outbox: Outbox,
    counters: Arc<LinkCounters>,
    wake: Arc<Notify>,
    last_device_state: Option<u8>,
}

impl Feeder {
    async fn queue(&self, o: &map::Outgoing) {
        let bytes = match o.unit.encode() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(subject = %o.subject, error = %e, "unit not encodable; not queued");
                return;
            }
        };
        match self
            .outbox
            .push(
                &o.subject,
                o.alarm_id,
                &bytes,
                o.fire,
                crate::domain::time::now_ms() as i64,
            )
            .await
        {
            Ok((added, dropped)) => {
                if dropped > 0 {
                    self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
                    tracing::warn!(centre = %self.centre.name, site = %self.site, dropped, "GB/T 26875 outbox full: oldest non-fire units dropped");
                }
                if added {
                    self.wake.notify_one();
                }
            }
            Err(e) => {
                tracing::error!(subject = %o.subject, error = %e, "GB/T 26875 outbox write failed")
            }
        }
    }

    async fn alarm(&self, row: &AlarmRow) {
        if row.site != self.site {
            return;
        }
        if let Some(o) = map::alarm_unit(&self.state.config, self.centre.system_type, row) {
            self.queue(&o).await;
        }
    }

    async fn device_state(&mut self, standing: &[AlarmRow], at_connect: bool) {
        let bits = map::device_state(standing, false);
        if at_connect || self.last_device_state != Some(bits) {
            let now = crate::domain::time::now_ms();
            self.queue(&map::Outgoing {
                subject: format!("state:{now}:{bits}"),
                alarm_id: None,
                unit: DataUnit::DeviceState(vec![Timed {
                    object: bits,
                    time: TimeLabel::from_unix_ms(now),
                }]),
                fire: false,
            })
            .await;
            self.last_device_state = Some(bits);
        }
    }

    /// Standing alarms queued as raised; clears of those that are gone.
    async fn reconcile(&mut self) {
        // Duty checks past the centre's window are recorded as missed.
        self.state.duty.sweep(crate::domain::time::now_ms());
        let standing = self.state.standing(&self.site).await;
        for r in &standing {
            self.alarm(r).await;
        }
        if let Ok(ids) = self.outbox.raised_not_cleared().await {
            for id in ids {
                if standing.iter().any(|r| r.id == id) {
                    continue;
                }
                if let Ok(Some(row)) = self.state.store.alarm(id).await {
                    if row.state == "cleared" {
                        self.alarm(&row).await;
                    }
                }
            }
        }
        self.device_state(&standing, false).await;
    }

    async fn readings(&self) {
        let rows = match self
            .state
            .store
            .latest_in(Some(std::slice::from_ref(&self.site)))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "latest readings not read");
                return;
            }
        };
        for o in map::analog_units(
            &self.state.config,
            self.centre.system_type,
            &rows,
            crate::domain::time::now_ms(),
        ) {
            self.queue(&o).await;
        }
    }

    async fn run(
        mut self,
        mut events: broadcast::Receiver<GatewayEvent>,
        mut up: watch::Receiver<bool>,
        cancel: CancellationToken,
    ) {
        self.reconcile().await;
        let mut reconcile = tokio::time::interval(Duration::from_millis(RECONCILE_MS));
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let readings_every = self.centre.readings_every_secs;
        let mut readings = tokio::time::interval(Duration::from_secs(readings_every.max(1)));
        readings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state_tick = tokio::time::interval(Duration::from_secs(1));
        state_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state_dirty = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                ev = events.recv() => match ev {
                    Ok(GatewayEvent::AlarmRaised { alarm, .. }) | Ok(GatewayEvent::AlarmUpdated { alarm }) => {
                        if alarm.row.site == self.site {
                            self.alarm(&alarm.row).await;
                            state_dirty = true;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => self.reconcile().await,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = reconcile.tick() => self.reconcile().await,
                // The device state after events, at most once a second (one
                // read of the standing alarms, not one per event in a storm).
                _ = state_tick.tick(), if state_dirty => {
                    state_dirty = false;
                    let standing = self.state.standing(&self.site).await;
                    self.device_state(&standing, false).await;
                }
                _ = readings.tick(), if readings_every > 0 => self.readings().await,
                changed = up.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if *up.borrow_and_update() {
                        let standing = self.state.standing(&self.site).await;
                        self.device_state(&standing, true).await;
                    }
                }
            }
        }
    }
}
