//! Modbus polling (轮询): one task per connection (a TCP connection or a
//! serial port), its devices polled one request at a time on their own
//! periods, every call under a timeout (tokio-modbus has none), retried with
//! backoff; each poll becomes the same messages an MQTT node sends.
//!
//! The pure half — a device's health (ok / degraded / offline), the poll
//! schedule, the device's own alarm flags turned into `event`s, and the
//! messages a poll becomes — is tested without sockets; [`run_connection`]
//! is the I/O around it.
//!
//! Design: after any failure but an exception response (timeout, bad
//! frame, I/O) the connection is dropped and opened afresh for the next
//! request. A late answer to a timed-out request would otherwise be read
//! as the answer to the next one — on a shared RS-485 bus, another device's.
//! Reopening a socket or a serial port costs milliseconds.

use super::config::{Connection, Device, Parity, Transport};
use super::map::{self, Block, Flag, Function, Meaning, ReadRequest};
use crate::ingest::Inbound;
use crate::metrics::Metrics;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::prelude::{SlaveContext, *};
use tokio_util::sync::CancellationToken;
use wire::{ChannelId, Event, EventLevel, NodeState, Reading, Status, Telemetry, Topic, TopicKind};

/// A device's health as the poller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// Not answered since the gateway started.
    Unknown,
    /// The last poll answered.
    Ok,
    /// The last poll(s) failed, fewer than the offline threshold.
    Degraded,
    /// Failed the threshold's number of polls in a row: one `offline`
    /// alarm for the node.
    Offline,
}

impl DeviceState {
    /// The value of `gateway_modbus_device_state`.
    pub const fn gauge(self) -> i64 {
        match self {
            DeviceState::Unknown | DeviceState::Ok => 0,
            DeviceState::Degraded => 1,
            DeviceState::Offline => 2,
        }
    }
}

/// What the pipeline must be told about a device's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// Answering (first time, or back from offline): a `status` online.
    Online,
    /// Gone: a `status` offline, as a Last Will would be.
    Offline,
}

/// Consecutive failures → degraded → offline; any success → ok. Pure.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    pub state: DeviceState,
    pub failures: u32,
    offline_after: u32,
    answered: bool,
}

impl Health {
    pub fn new(offline_after: u32) -> Self {
        Health {
            state: DeviceState::Unknown,
            failures: 0,
            offline_after: offline_after.max(1),
            answered: false,
        }
    }

    /// A poll that answered.
    pub fn success(&mut self) -> Option<HealthChange> {
        let first = !std::mem::replace(&mut self.answered, true);
        let was = std::mem::replace(&mut self.state, DeviceState::Ok);
        self.failures = 0;
        (first || was == DeviceState::Offline).then_some(HealthChange::Online)
    }

    /// A poll that did not.
    pub fn failure(&mut self) -> Option<HealthChange> {
        self.failures = self.failures.saturating_add(1);
        if self.state == DeviceState::Offline {
            return None;
        }
        if self.failures >= self.offline_after {
            self.state = DeviceState::Offline;
            Some(HealthChange::Offline)
        } else {
            self.state = DeviceState::Degraded;
            None
        }
    }

    /// How long until the next poll: the device's period, and for an
    /// offline device a probe that backs off (doubling) to a minute, so a
    /// dead device does not take the bus time of the live ones.
    pub fn next_delay(&self, interval: Duration) -> Duration {
        if self.state != DeviceState::Offline {
            return interval;
        }
        let beyond = self.failures.saturating_sub(self.offline_after).min(16);
        let cap = interval.max(MAX_OFFLINE_PROBE);
        interval.saturating_mul(1 << beyond).min(cap)
    }
}

/// Longest wait between probes of an offline device.
pub const MAX_OFFLINE_PROBE: Duration = Duration::from_secs(60);

/// The device's own alarm levels per channel and its supply, as last
/// reported; turns a poll's flags into `event`s on change. Pure.
#[derive(Debug, Clone, Default)]
pub struct DeviceFlags {
    levels: BTreeMap<ChannelId, EventLevel>,
    supply_failed: bool,
}

/// The channel id of a node's power supply in `event`s (see the pipeline).
pub const SUPPLY_CHANNEL: &str = crate::domain::ids::SUPPLY_CHANNEL;

impl DeviceFlags {
    /// The `(channel, level, value)` of every change since the last poll.
    /// `values` gives each channel's reading (wire ids).
    pub fn update(
        &mut self,
        flags: &[Flag],
        values: &BTreeMap<ChannelId, i32>,
    ) -> Vec<(ChannelId, EventLevel, i32)> {
        let mut now: BTreeMap<ChannelId, EventLevel> = BTreeMap::new();
        let mut supply = false;
        for f in flags {
            match (f.meaning, &f.channel) {
                (Meaning::Supply, _) => supply = true,
                (Meaning::Alarm, Some(c)) => {
                    now.insert(c.clone(), EventLevel::Alarm);
                }
                (Meaning::PreAlarm, Some(c)) => {
                    now.entry(c.clone()).or_insert(EventLevel::PreAlarm);
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        for (c, l) in &now {
            if self.levels.get(c) != Some(l) {
                out.push((c.clone(), *l, values.get(c).copied().unwrap_or(0)));
            }
        }
        for c in self.levels.keys() {
            if !now.contains_key(c) {
                out.push((
                    c.clone(),
                    EventLevel::Normal,
                    values.get(c).copied().unwrap_or(0),
                ));
            }
        }
        self.levels = now;
        if supply != self.supply_failed {
            self.supply_failed = supply;
            if let Ok(id) = ChannelId::new(SUPPLY_CHANNEL) {
                let level = if supply {
                    EventLevel::Fault
                } else {
                    EventLevel::Normal
                };
                out.push((id, level, 0));
            }
        }
        out
    }
}

/// A device being polled: its configuration and what the poller keeps.
pub struct Polled {
    pub device: Device,
    pub plan: Vec<ReadRequest>,
    pub health: Health,
    pub flags: DeviceFlags,
    pub seq: u32,
    pub next_due: Instant,
}

impl Polled {
    pub fn new(device: Device, offline_after: u32, start: Instant) -> Self {
        Polled {
            plan: map::plan(&device.map, &device.skip),
            device,
            health: Health::new(offline_after),
            flags: DeviceFlags::default(),
            seq: 0,
            next_due: start,
        }
    }

    fn topic(&self, kind: TopicKind) -> String {
        Topic::new(self.device.site.clone(), self.device.node.clone(), kind).to_string()
    }

    fn inbound(&self, kind: TopicKind, payload: Vec<u8>, now_ms: u64) -> Inbound {
        Inbound {
            topic: self.topic(kind),
            payload: payload.into(),
            arrived_ms: now_ms,
            ack: None,
        }
    }

    /// The `status` message for a health change.
    pub fn status_message(&self, change: HealthChange, boot: u32, now_ms: u64) -> Inbound {
        let status = match change {
            HealthChange::Online => Status {
                state: NodeState::Online,
                fw: heapless::String::try_from("modbus").ok(),
                boot: Some(boot),
                dropped: None,
            },
            HealthChange::Offline => Status::offline(),
        };
        let payload = wire::encode_vec(&status).unwrap_or_default();
        self.inbound(TopicKind::Status, payload, now_ms)
    }

    /// The messages one answered poll becomes: a `telemetry` with every
    /// polled channel (wire ids, statuses from sentinels and status bits),
    /// then an `event` for each change of the device's own alarm flags.
    pub fn poll_messages(&mut self, blocks: &[Block], boot: u32, now_ms: u64) -> Vec<Inbound> {
        let reading = map::decode(&self.device.map, &self.device.skip, blocks);
        let wire_id = |id: &ChannelId| self.device.rename.get(id).cloned().unwrap_or(id.clone());
        let mut t = Telemetry {
            boot,
            seq: self.seq,
            ts: now_ms,
            ch: Default::default(),
        };
        self.seq = self.seq.wrapping_add(1);
        let mut values = BTreeMap::new();
        for d in &reading.channels {
            let id = wire_id(&d.id);
            values.insert(id.clone(), d.value);
            // A map holds at most MAX_CHANNELS channels (validated).
            let _ = t.ch.push(Reading {
                id,
                q: d.quantity,
                v: d.value,
                s: d.status,
            });
        }
        let flags: Vec<Flag> = reading
            .flags
            .iter()
            .map(|f| Flag {
                meaning: f.meaning,
                channel: f.channel.as_ref().map(wire_id),
            })
            .collect();
        let mut out = vec![self.inbound(
            TopicKind::Telemetry,
            wire::encode_vec(&t).unwrap_or_default(),
            now_ms,
        )];
        for (ch, level, v) in self.flags.update(&flags, &values) {
            let e = Event {
                boot,
                seq: self.seq,
                ts: now_ms,
                ch,
                level,
                v,
            };
            self.seq = self.seq.wrapping_add(1);
            out.push(self.inbound(
                TopicKind::Event,
                wire::encode_vec(&e).unwrap_or_default(),
                now_ms,
            ));
        }
        out
    }
}

// ---------------------------------------------------------------------------
// I/O

/// Why a request failed; each is a `kind` label in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Exception(u8),
    Frame,
    ShortResponse,
    Io,
}

impl Failure {
    pub const fn kind(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Exception(_) => "exception",
            Failure::Frame => "frame",
            Failure::ShortResponse => "short_response",
            Failure::Io => "io",
        }
    }
}

/// The open connection of a [`Connection`], if any.
struct Link {
    transport: Transport,
    timeout: Duration,
    ctx: Option<Context>,
}

/// Opens a connection (a free function: `Context` is not `Sync`, so a
/// `&Link` must not live across an await).
async fn open(transport: &Transport, timeout: Duration, unit: u8) -> Result<Context, Failure> {
    {
        let slave = Slave(unit);
        match transport {
            Transport::Tcp { address } | Transport::RtuOverTcp { address } => {
                let stream =
                    tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address.as_str()))
                        .await
                        .map_err(|_| Failure::Timeout)?
                        .map_err(|e| {
                            tracing::debug!(%address, error = %e, "Modbus connection failed");
                            Failure::Io
                        })?;
                let _ = stream.set_nodelay(true);
                Ok(if matches!(transport, Transport::Tcp { .. }) {
                    tcp::attach_slave(stream, slave)
                } else {
                    rtu::attach_slave(stream, slave)
                })
            }
            Transport::Rtu {
                path,
                baud,
                parity,
                data_bits,
                stop_bits,
            } => {
                use tokio_serial::SerialPortBuilderExt;
                let port = tokio_serial::new(path.as_str(), *baud)
                    .parity(match parity {
                        Parity::None => tokio_serial::Parity::None,
                        Parity::Even => tokio_serial::Parity::Even,
                        Parity::Odd => tokio_serial::Parity::Odd,
                    })
                    .data_bits(match data_bits {
                        5 => tokio_serial::DataBits::Five,
                        6 => tokio_serial::DataBits::Six,
                        7 => tokio_serial::DataBits::Seven,
                        _ => tokio_serial::DataBits::Eight,
                    })
                    .stop_bits(if *stop_bits == 2 {
                        tokio_serial::StopBits::Two
                    } else {
                        tokio_serial::StopBits::One
                    })
                    .timeout(timeout)
                    .open_native_async()
                    .map_err(|e| {
                        tracing::debug!(%path, error = %e, "serial port did not open");
                        Failure::Io
                    })?;
                Ok(rtu::attach_slave(port, slave))
            }
        }
    }
}

impl Link {
    /// One read under the timeout. On anything but an exception the
    /// connection is dropped (see the module's design note).
    async fn read(&mut self, unit: u8, r: ReadRequest) -> Result<Vec<u16>, Failure> {
        let ctx = match &mut self.ctx {
            Some(c) => c,
            None => self
                .ctx
                .insert(open(&self.transport, self.timeout, unit).await?),
        };
        ctx.set_slave(Slave(unit));
        let request = match r.function {
            Function::Coil => Request::ReadCoils(r.start, r.count),
            Function::Discrete => Request::ReadDiscreteInputs(r.start, r.count),
            Function::Holding => Request::ReadHoldingRegisters(r.start, r.count),
            Function::Input => Request::ReadInputRegisters(r.start, r.count),
        };
        // `call`, not the `Reader` methods: those debug-assert the answer's
        // length, and a device's answer is untrusted input.
        let result = match tokio::time::timeout(self.timeout, ctx.call(request)).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(tokio_modbus::Error::Transport(e))) => {
                Err(if e.kind() == std::io::ErrorKind::InvalidData {
                    Failure::Frame
                } else {
                    Failure::Io
                })
            }
            Ok(Err(tokio_modbus::Error::Protocol(_))) => Err(Failure::Frame),
            Ok(Ok(Err(code))) => return Err(Failure::Exception(u8::from(code))),
            Ok(Ok(Ok(response))) => {
                let words: Vec<u16> = match response {
                    Response::ReadHoldingRegisters(w) | Response::ReadInputRegisters(w) => w,
                    Response::ReadCoils(b) | Response::ReadDiscreteInputs(b) => {
                        b.into_iter().map(u16::from).collect()
                    }
                    _ => Vec::new(),
                };
                if words.len() < usize::from(r.count) {
                    // A valid frame that answers too little: the device
                    // is confused, so its next answer is not trusted either.
                    Err(Failure::ShortResponse)
                } else {
                    return Ok(words[..usize::from(r.count)].to_vec());
                }
            }
        };
        self.ctx = None;
        result
    }
}

/// Everything one connection task needs.
pub struct Poller {
    pub connection: Connection,
    pub tx: mpsc::Sender<Inbound>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// Stamped as `boot` on every message: a per-process number.
    pub boot: u32,
}

/// What one poll came to.
enum PollOutcome {
    /// Every read answered, or some with exceptions: the blocks (`None`
    /// where an exception came back).
    Answered(Vec<Block>),
    /// No usable answer.
    Failed,
    /// Shut down mid-poll.
    Stopped,
}

/// Polls the connection's devices until shutdown.
pub async fn run_connection(p: Poller) {
    let Poller {
        connection,
        tx,
        metrics,
        shutdown,
        boot,
    } = p;
    let start = Instant::now();
    let mut devices: Vec<Polled> = connection
        .devices
        .iter()
        .cloned()
        .map(|d| Polled::new(d, connection.offline_after_failures, start))
        .collect();
    for d in &devices {
        metrics
            .modbus
            .register(d.device.site.as_str(), d.device.node.as_str());
    }
    let mut link = Link {
        transport: connection.transport.clone(),
        timeout: connection.timeout,
        ctx: None,
    };
    tracing::info!(connection = %connection.name, devices = devices.len(), "Modbus polling started");
    while let Some(i) = (0..devices.len()).min_by_key(|i| devices[*i].next_due) {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(devices[i].next_due) => {}
        }
        let d = &mut devices[i];
        let (site, node) = (d.device.site.to_string(), d.device.node.to_string());
        let outcome = poll_device(&mut link, &connection, d, &metrics, &shutdown).await;
        let now_ms = crate::domain::time::now_ms();
        let mut out = Vec::new();
        match outcome {
            PollOutcome::Stopped => break,
            PollOutcome::Answered(blocks) => {
                if blocks.iter().all(|b| b.words.is_some()) {
                    metrics.modbus.poll_ok(&site, &node);
                }
                if let Some(change) = d.health.success() {
                    tracing::info!(device = %d.device.label(), "Modbus device answering");
                    out.push(d.status_message(change, boot, now_ms));
                }
                out.extend(d.poll_messages(&blocks, boot, now_ms));
            }
            PollOutcome::Failed => {
                if let Some(change) = d.health.failure() {
                    tracing::warn!(device = %d.device.label(), failures = d.health.failures, "Modbus device offline");
                    out.push(d.status_message(change, boot, now_ms));
                }
            }
        }
        metrics
            .modbus
            .set_state(&site, &node, d.health.state.gauge());
        // Scheduled from when the poll was due, not when it ended, so the
        // period does not drift; a device late by more than a period is
        // polled at once, without catch-up bursts.
        let delay = d.health.next_delay(d.device.interval);
        d.next_due = (d.next_due + delay).max(Instant::now());
        for msg in out {
            if tx.send(msg).await.is_err() {
                tracing::info!(connection = %connection.name, "pipeline closed: Modbus polling stops");
                return;
            }
        }
    }
    if let Some(mut ctx) = link.ctx.take() {
        let _ = tokio::time::timeout(Duration::from_millis(200), ctx.disconnect()).await;
    }
    tracing::info!(connection = %connection.name, "Modbus polling stopped");
}

/// Reads every block of a device's plan, retrying failed reads with
/// backoff. Stops at the first read that fails for good with anything but
/// an exception: the device is not answering, and the bus is not kept busy.
async fn poll_device(
    link: &mut Link,
    c: &Connection,
    d: &Polled,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> PollOutcome {
    let (site, node) = (d.device.site.as_str(), d.device.node.as_str());
    let mut blocks = Vec::with_capacity(d.plan.len());
    for r in &d.plan {
        let mut attempt = 0u32;
        let words = loop {
            match link.read(d.device.unit, *r).await {
                Ok(w) => break Some(w),
                Err(Failure::Exception(code)) => {
                    metrics.modbus.exception(site, node, code);
                    tracing::debug!(device = %d.device.label(), code, function = r.function.as_str(), start = r.start, "Modbus exception");
                    break None;
                }
                Err(f) => {
                    metrics.modbus.error(site, node, f.kind());
                    tracing::debug!(device = %d.device.label(), kind = f.kind(), attempt, "Modbus request failed");
                    if attempt >= c.retries {
                        return PollOutcome::Failed;
                    }
                    let wait = c.backoff.saturating_mul(1 << attempt.min(10));
                    attempt += 1;
                    tokio::select! {
                        _ = shutdown.cancelled() => return PollOutcome::Stopped,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        };
        blocks.push(Block { request: *r, words });
    }
    // A device that refuses every read is not usable: it counts as not
    // answering (one offline alarm), not as a fault on every channel.
    if blocks.iter().all(|b| b.words.is_none()) {
        return PollOutcome::Failed;
    }
    PollOutcome::Answered(blocks)
}

/// Starts one polling task per configured connection.
pub fn start(
    connections: Vec<Connection>,
    tx: mpsc::Sender<Inbound>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    boot: u32,
) -> Vec<tokio::task::JoinHandle<()>> {
    connections
        .into_iter()
        .filter(|c| !c.devices.is_empty())
        .map(|connection| {
            tokio::spawn(run_connection(Poller {
                connection,
                tx: tx.clone(),
                metrics: metrics.clone(),
                shutdown: shutdown.clone(),
                boot,
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::modbus::map::shipped;
    use wire::{NodeId, SiteId};

    #[test]
    fn health_degrades_goes_offline_once_and_recovers() {
        let mut h = Health::new(3);
        assert_eq!(h.failure(), None);
        assert_eq!(h.state, DeviceState::Degraded);
        assert_eq!(
            h.success(),
            Some(HealthChange::Online),
            "first answer is a birth"
        );
        assert_eq!(h.success(), None);
        assert_eq!(h.failure(), None);
        assert_eq!(h.failure(), None);
        assert_eq!(h.state, DeviceState::Degraded);
        assert_eq!(h.failure(), Some(HealthChange::Offline));
        for _ in 0..10 {
            assert_eq!(h.failure(), None, "offline is said once");
        }
        assert_eq!(h.state, DeviceState::Offline);
        assert_eq!(h.success(), Some(HealthChange::Online));
        assert_eq!((h.state, h.failures), (DeviceState::Ok, 0));
        // A device that never answers goes offline too.
        let mut h = Health::new(1);
        assert_eq!(h.failure(), Some(HealthChange::Offline));
    }

    #[test]
    fn an_offline_device_is_probed_less_often_up_to_a_minute() {
        let s = Duration::from_secs;
        let mut h = Health::new(2);
        h.failure();
        assert_eq!(h.next_delay(s(5)), s(5), "degraded keeps its period");
        h.failure();
        assert_eq!(h.next_delay(s(5)), s(5));
        h.failure();
        assert_eq!(h.next_delay(s(5)), s(10));
        h.failure();
        assert_eq!(h.next_delay(s(5)), s(20));
        for _ in 0..40 {
            h.failure();
        }
        assert_eq!(h.next_delay(s(5)), s(60));
        assert_eq!(h.next_delay(s(90)), s(90), "never faster than the period");
        h.success();
        assert_eq!(h.next_delay(s(5)), s(5));
    }

    fn id(s: &str) -> ChannelId {
        ChannelId::new(s).unwrap()
    }

    #[test]
    fn device_flags_become_events_on_change_only() {
        let mut f = DeviceFlags::default();
        let values: BTreeMap<ChannelId, i32> = [(id("rc1"), 620)].into();
        let alarm = |m, c: &str| Flag {
            meaning: m,
            channel: Some(id(c)),
        };
        assert!(f.update(&[], &values).is_empty());
        assert_eq!(
            f.update(&[alarm(Meaning::PreAlarm, "rc1")], &values),
            vec![(id("rc1"), EventLevel::PreAlarm, 620)]
        );
        assert!(f
            .update(&[alarm(Meaning::PreAlarm, "rc1")], &values)
            .is_empty());
        // Both bits: alarm wins.
        assert_eq!(
            f.update(
                &[
                    alarm(Meaning::PreAlarm, "rc1"),
                    alarm(Meaning::Alarm, "rc1")
                ],
                &values
            ),
            vec![(id("rc1"), EventLevel::Alarm, 620)]
        );
        let supply = Flag {
            meaning: Meaning::Supply,
            channel: None,
        };
        assert_eq!(
            f.update(std::slice::from_ref(&supply), &values),
            vec![
                (id("rc1"), EventLevel::Normal, 620),
                (id("supply"), EventLevel::Fault, 0)
            ]
        );
        assert_eq!(
            f.update(&[], &values),
            vec![(id("supply"), EventLevel::Normal, 0)]
        );
    }

    fn device(model: &str) -> Device {
        Device {
            site: SiteId::new("home_a").unwrap(),
            node: NodeId::new("m01").unwrap(),
            unit: 1,
            map: Arc::new(shipped(model).unwrap()),
            interval: Duration::from_secs(5),
            skip: vec![],
            rename: [(id("rc1"), id("kitchen"))].into(),
        }
    }

    #[tokio::test]
    async fn a_poll_becomes_the_messages_an_mqtt_node_would_send() {
        let mut p = Polled::new(device("acrel_asj"), 3, Instant::now());
        assert_eq!(p.plan.len(), 2);
        let blocks = [
            Block {
                request: p.plan[0],
                words: Some(vec![620]),
            },
            Block {
                request: p.plan[1],
                words: Some(vec![0b010]),
            },
        ];
        let msgs = p.poll_messages(&blocks, 42, 1_790_000_000_000);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].topic, "fire/v1/home_a/m01/telemetry");
        assert_eq!(
            std::str::from_utf8(&msgs[0].payload).unwrap(),
            r#"{"boot":42,"seq":0,"ts":1790000000000,"ch":[{"id":"kitchen","q":"residual_current","v":620,"s":"ok"}]}"#
        );
        assert_eq!(msgs[1].topic, "fire/v1/home_a/m01/event");
        assert_eq!(
            std::str::from_utf8(&msgs[1].payload).unwrap(),
            r#"{"boot":42,"seq":1,"ts":1790000000000,"ch":"kitchen","level":"alarm","v":620}"#
        );
        assert!(msgs.iter().all(|m| m.ack.is_none()));
        // The CT-break bit: the channel is open, no value.
        let blocks = [
            Block {
                request: p.plan[0],
                words: Some(vec![0]),
            },
            Block {
                request: p.plan[1],
                words: Some(vec![0b100]),
            },
        ];
        let msgs = p.poll_messages(&blocks, 42, 1_790_000_005_000);
        assert_eq!(
            std::str::from_utf8(&msgs[0].payload).unwrap(),
            r#"{"boot":42,"seq":2,"ts":1790000005000,"ch":[{"id":"kitchen","q":"residual_current","v":0,"s":"open"}]}"#
        );
        assert_eq!(
            std::str::from_utf8(&msgs[1].payload).unwrap(),
            r#"{"boot":42,"seq":3,"ts":1790000005000,"ch":"kitchen","level":"normal","v":0}"#
        );
        let on = p.status_message(HealthChange::Online, 42, 1);
        assert_eq!(on.topic, "fire/v1/home_a/m01/status");
        assert_eq!(
            std::str::from_utf8(&on.payload).unwrap(),
            r#"{"state":"online","fw":"modbus","boot":42}"#
        );
        let off = p.status_message(HealthChange::Offline, 42, 1);
        assert_eq!(
            std::str::from_utf8(&off.payload).unwrap(),
            r#"{"state":"offline"}"#
        );
    }
}
