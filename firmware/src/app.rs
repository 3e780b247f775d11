//! The node application: sampling results → local rules (sounder, events)
//! → offline buffer → MQTT, and commands back. Pure logic over an
//! `embedded-io` stream and an `embedded-hal` `OutputPin`; time is passed in.
//!
//! - [`NodeApp::sample`] takes one round of measurements: it records a
//!   telemetry message, feeds every reading to [`LocalAlarm`], records each
//!   wire-level transition as an `event`, and sets the sounder pin to
//!   [`LocalAlarm::sounding`]. It never switches power off: the only output
//!   it drives is the sounder/LED.
//! - [`NodeApp::poll`] runs the MQTT [`Session`]; on every CONNACK it
//!   publishes the retained birth `status` (with `dropped` when records were
//!   lost), then pending command acks, then the offline buffer oldest-first,
//!   one QoS 1 message in flight at a time.
//! - Commands on `…/cmd`: `ping` → ack ok; `reset` → authorised reset of
//!   latched local alarms (their events are recorded), ack ok; `selftest` →
//!   test-signal injection (below), ack ok when it starts; `config` → new
//!   setpoints for one channel (below). Malformed commands are counted and
//!   dropped. Why a command was answered not ok is a [`CmdRefusal`], kept
//!   with the command in [`NodeApp::last_cmd`] for the node's log.
//! - `config` (`{"id":…,"op":"config","ch":"rc1","pre_alarm":300,"alarm":450}`,
//!   optional `hysteresis`): the channel's current rule with these setpoints
//!   ([`rules::defaults::configured`]: no `pre_alarm` = no pre-alarm level,
//!   no `hysteresis` = keep the current one), checked like the artefact's
//!   setpoints ([`rules::ChannelRule::validate_for`], e.g. residual current
//!   above 1000 mA is refused). Accepted: the local rule (sounder, `event`s)
//!   judges the next sample by it, from the channel's current state (a
//!   standing alarm against the new setpoints), ack ok. Refused, without
//!   `ch` or `alarm`, or for a channel the node does not have: nothing
//!   changes, ack not ok. The change lives in RAM only: the artefact in
//!   flash is read-only, so after a restart the node runs the artefact's
//!   setpoints until the gateway sends the ones in force again (it does when
//!   the node comes back online). Setpoint fields on another op are refused
//!   (ack not ok) rather than ignored.
//! - Self-test, like a detector's test winding: for [`SELFTEST_MS`] every
//!   channel whose reading is `ok` and whose rule has a threshold reads its
//!   alarm setpoint instead of its signal ([`LocalAlarm::test_value`]; for a
//!   low rule such as water pressure that is a low value), so its local rule
//!   raises, the sounder sounds and the telemetry and `event`s go out as for
//!   a real alarm. A faulted channel (open, short, …) is not injected: it
//!   keeps its fault status, which is the test's finding. When the period
//!   ends the real signal returns and the node itself resets the alarms the
//!   test latched — only on channels that were not at alarm level before the
//!   test, so a real alarm is never released by a test. The ack is ok when
//!   at least one channel could be injected.
//!
//! `seq` is given when a message is recorded (not when it is sent), so a
//! backfilled message keeps the number it had when it was sampled.

use crate::buffer::{Body, Outbox, Record, MAX_NODE_CHANNELS};
use crate::drivers::Measurement;
use crate::local::LocalAlarm;
use crate::mqtt::{Event as MqttEvent, Session, SessionConfig};
use crate::node::{NodeIdentity, Publisher};
use core::fmt;
use embedded_hal::digital::{OutputPin, PinState};
use embedded_io::{Read, ReadReady, Write};
use wire::{
    ChannelId, ChannelStatus, Cmd, CmdId, CmdOp, EventLevel, Quantity, Reading, Telemetry,
    TopicKind,
};

/// How long a self-test injects its test signal, ms.
pub const SELFTEST_MS: u64 = 3_000;

/// A self-test in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SelfTest {
    /// When the real signal returns.
    until: u64,
    /// Channels (bit per index) that were below alarm level at the start:
    /// the node resets their latched test alarm at the end.
    resettable: u32,
    /// Channels that received the test signal.
    injected: u32,
}

/// Why a command was answered `ok:false`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdRefusal {
    /// `config` without `ch` or without `alarm`.
    ConfigIncomplete,
    /// `config` for a channel the node does not have.
    UnknownChannel,
    /// `config` setpoints the channel's quantity does not allow.
    Rule(rules::RuleError),
    /// Setpoint fields (`ch`, `pre_alarm`, `alarm`, `hysteresis`) on an op
    /// other than `config`.
    UnexpectedFields,
    /// `selftest`: no channel can be injected (all faulted or without a
    /// threshold).
    NothingToTest,
}

impl fmt::Display for CmdRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdRefusal::ConfigIncomplete => f.write_str("config needs `ch` and `alarm`"),
            CmdRefusal::UnknownChannel => {
                f.write_str("config for a channel this node does not have")
            }
            CmdRefusal::Rule(e) => write!(f, "setpoints refused: {e}"),
            CmdRefusal::UnexpectedFields => {
                f.write_str("setpoint fields on an op other than config")
            }
            CmdRefusal::NothingToTest => f.write_str("no channel can take a test signal"),
        }
    }
}

impl core::error::Error for CmdRefusal {}

/// Largest payload the node builds.
pub const PAYLOAD_BUF: usize = 400;

/// The strings a session borrows: build them first, keep them for the
/// node's lifetime.
#[derive(Clone, Debug)]
pub struct NodeStrings {
    /// MQTT client id (`{site}.{node}` by convention).
    pub client_id: heapless::String<65>,
    /// MQTT user name.
    pub username: heapless::String<65>,
    /// The password.
    pub password: heapless::String<64>,
    /// `fire/v1/{site}/{node}/status`.
    pub status_topic: heapless::String<96>,
    /// `fire/v1/{site}/{node}/cmd`.
    pub cmd_topic: heapless::String<96>,
    /// `{"state":"offline"}`.
    pub will_payload: heapless::Vec<u8, 32>,
}

impl NodeStrings {
    /// The strings for `identity` logging in as `username`/`password`
    /// with `client_id`; `None` if one is too long.
    pub fn new(
        identity: &NodeIdentity,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> Option<Self> {
        let mut will = [0u8; 32];
        let n = wire::encode(&wire::Status::offline(), &mut will).ok()?;
        Some(NodeStrings {
            client_id: heapless::String::try_from(client_id).ok()?,
            username: heapless::String::try_from(username).ok()?,
            password: heapless::String::try_from(password).ok()?,
            status_topic: identity.topic(TopicKind::Status),
            cmd_topic: identity.topic(TopicKind::Cmd),
            will_payload: heapless::Vec::from_slice(&will[..n]).ok()?,
        })
    }

    /// Session settings: persistent session, fixed client id, Last Will
    /// `{"state":"offline"}` retained on `status`, subscription to `cmd`.
    pub fn session_config(&self, keep_alive_s: u16) -> SessionConfig<'_> {
        SessionConfig {
            client_id: &self.client_id,
            username: Some(&self.username),
            password: Some(self.password.as_bytes()),
            keep_alive_s,
            will: Some((&self.status_topic, &self.will_payload)),
            subscribe: Some(&self.cmd_topic),
            response_timeout_ms: 3_000,
            backoff_min_ms: 250,
            backoff_max_ms: 8_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InFlight {
    Birth { dropped: u32 },
    Ack,
    Record,
}

/// Counters for diagnostics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppStats {
    /// Messages acknowledged by the broker.
    pub acked: u32,
    /// Connections accepted.
    pub connected: u32,
    /// Commands refused as malformed or for another node.
    pub bad_cmds: u32,
    /// Commands handled.
    pub cmds: u32,
}

/// The node application with an offline buffer of `N` records.
pub struct NodeApp<'a, P: OutputPin, const N: usize> {
    publisher: Publisher,
    fw: &'static str,
    channels: heapless::Vec<(ChannelId, Quantity), MAX_NODE_CHANNELS>,
    last: [ChannelStatus; MAX_NODE_CHANNELS],
    local: LocalAlarm,
    outbox: Outbox<N>,
    session: Session<'a>,
    sounder: P,
    seq: u32,
    in_flight: Option<InFlight>,
    birth_pending: bool,
    acks: heapless::Deque<(CmdId, bool), 4>,
    buf: [u8; PAYLOAD_BUF],
    stats: AppStats,
    reported_dropped: u32,
    selftest: Option<SelfTest>,
    last_cmd: Option<(Cmd, Result<(), CmdRefusal>)>,
}

impl<'a, P: OutputPin, const N: usize> NodeApp<'a, P, N> {
    /// A node for `identity` running firmware `fw`, talking through a
    /// session configured by `cfg`, with its sounder on `sounder` (driven
    /// low at start).
    pub fn new(
        identity: NodeIdentity,
        fw: &'static str,
        cfg: SessionConfig<'a>,
        mut sounder: P,
    ) -> Self {
        let _ = sounder.set_low();
        NodeApp {
            publisher: Publisher::new(identity),
            fw,
            channels: heapless::Vec::new(),
            last: [ChannelStatus::Ok; MAX_NODE_CHANNELS],
            local: LocalAlarm::new(),
            outbox: Outbox::new(),
            session: Session::new(cfg),
            sounder,
            seq: 0,
            in_flight: None,
            birth_pending: false,
            acks: heapless::Deque::new(),
            buf: [0; PAYLOAD_BUF],
            stats: AppStats::default(),
            reported_dropped: 0,
            selftest: None,
            last_cmd: None,
        }
    }

    /// Adds a channel with the standard local rule for its quantity.
    /// Measurements passed to [`NodeApp::sample`] follow this order.
    pub fn add_channel(
        &mut self,
        id: ChannelId,
        q: Quantity,
    ) -> Result<(), crate::local::ConfigError> {
        if self.channels.is_full() {
            return Err(crate::local::ConfigError::Full);
        }
        self.local.add_default(id.clone(), q)?;
        self.channels
            .push((id, q))
            .map_err(|_| crate::local::ConfigError::Full)
    }

    /// Adds a channel measuring `q` under `rule` (e.g. from the
    /// provisioning artefact, [`crate::provision`]); the rule must pass the
    /// quantity's checks.
    pub fn add_channel_rule(
        &mut self,
        id: ChannelId,
        q: Quantity,
        rule: rules::ChannelRule,
    ) -> Result<(), crate::local::ConfigError> {
        if self.channels.is_full() {
            return Err(crate::local::ConfigError::Full);
        }
        self.local.add_channel_for(id.clone(), q, rule)?;
        self.channels
            .push((id, q))
            .map_err(|_| crate::local::ConfigError::Full)
    }

    /// Command acks not yet acknowledged by the broker: `(id, ok)`, oldest
    /// first.
    pub fn pending_acks(&self) -> impl Iterator<Item = &(CmdId, bool)> {
        self.acks.iter()
    }

    /// The last command carried out (or refused) and its outcome, for the
    /// node's log; [`AppStats::cmds`] counts them.
    pub fn last_cmd(&self) -> Option<&(Cmd, Result<(), CmdRefusal>)> {
        self.last_cmd.as_ref()
    }

    /// Whether a self-test is injecting its test signal.
    pub fn selftest_active(&self) -> bool {
        self.selftest.is_some()
    }

    /// The local alarm engine.
    pub fn local(&self) -> &LocalAlarm {
        &self.local
    }

    /// The offline buffer.
    pub fn outbox(&self) -> &Outbox<N> {
        &self.outbox
    }

    /// The MQTT session.
    pub fn session(&self) -> &Session<'a> {
        &self.session
    }

    /// Counters.
    pub fn stats(&self) -> AppStats {
        self.stats
    }

    /// The `seq` the next recorded message gets.
    pub fn next_seq(&self) -> u32 {
        self.seq
    }

    fn record(&mut self, ts: u64, body: Body) {
        let rec = Record {
            boot: self.publisher.identity().boot,
            seq: self.seq,
            ts,
            body,
        };
        self.seq = self.seq.wrapping_add(1);
        self.outbox.push(rec);
    }

    fn record_events(&mut self, ts: u64, events: &[(ChannelId, EventLevel, i32)]) {
        for (id, level, v) in events {
            if let Some(ch) = self.channels.iter().position(|(c, _)| c == id) {
                self.record(
                    ts,
                    Body::Event {
                        ch: ch as u8,
                        level: *level,
                        v: *v,
                    },
                );
            }
        }
    }

    fn update_sounder(&mut self) {
        let _ = self
            .sounder
            .set_state(PinState::from(self.local.sounding()));
    }

    /// One sampling round at monotonic `now_ms` (for the rules) and wall
    /// time `ts` (ms since the epoch, or 0): one measurement per channel,
    /// in channel order; missing ones are not reported.
    pub fn sample(&mut self, now_ms: u64, ts: u64, m: &[Measurement]) {
        let n = m.len().min(self.channels.len());
        let testing = self.selftest.filter(|t| now_ms < t.until).is_some();
        let mut values = [(0, ChannelStatus::Ok); MAX_NODE_CHANNELS];
        for (i, x) in m.iter().take(n).enumerate() {
            values[i] = (x.v, x.s);
            self.last[i] = x.s;
            if testing && x.s == ChannelStatus::Ok {
                if let Some(v) = self.local.test_value(&self.channels[i].0) {
                    values[i].0 = v;
                    if let Some(t) = self.selftest.as_mut() {
                        t.injected |= 1 << i;
                    }
                }
            }
        }
        self.record(ts, Body::telemetry(&values[..n]));
        for (i, &(v, s)) in values.iter().take(n).enumerate() {
            let (id, q) = self.channels[i].clone();
            let reading = Reading { id, q, v, s };
            let events = self.local.on_sample(&reading, now_ms);
            self.record_events(ts, &events);
        }
        if let Some(t) = self.selftest.filter(|t| now_ms >= t.until) {
            // The real signal is back: release what the test latched.
            self.selftest = None;
            for i in 0..n {
                if t.injected & t.resettable & (1 << i) != 0 {
                    let id = self.channels[i].0.clone();
                    if let Some(e) = self.local.reset_channel(&id, now_ms) {
                        self.record_events(ts, &[e]);
                    }
                }
            }
        }
        self.update_sounder();
    }

    /// Starts a self-test at `now_ms`; whether any channel can be injected
    /// (last status `ok` and a threshold to cross). A self-test already
    /// running is extended.
    fn start_selftest(&mut self, now_ms: u64) -> bool {
        let mut resettable = 0;
        let mut testable = false;
        for (i, (id, _)) in self.channels.iter().enumerate() {
            if self.local.test_value(id).is_none() {
                continue;
            }
            testable |= self.last[i] == ChannelStatus::Ok;
            let below_alarm = self
                .local
                .state(id)
                .is_some_and(|s| s.level() < rules::Level::Alarm);
            if below_alarm {
                resettable |= 1 << i;
            }
        }
        if !testable {
            return false;
        }
        self.selftest = Some(match self.selftest {
            // A test alarm standing now was not there before the test.
            Some(t) => SelfTest {
                until: now_ms + SELFTEST_MS,
                ..t
            },
            None => SelfTest {
                until: now_ms + SELFTEST_MS,
                resettable,
                injected: 0,
            },
        });
        true
    }

    /// Runs the MQTT session and publishes what is due. Call it often.
    pub fn poll<T: Read + Write + ReadReady>(&mut self, io: &mut T, now_ms: u64) {
        for _ in 0..8 {
            let cmd = match self.session.poll(io, now_ms) {
                None => break,
                Some(MqttEvent::Connected { .. }) => {
                    self.stats.connected += 1;
                    self.birth_pending = true;
                    None
                }
                Some(MqttEvent::PubAck(_)) => {
                    self.stats.acked += 1;
                    match self.in_flight.take() {
                        Some(InFlight::Record) => {
                            self.outbox.pop_front();
                        }
                        Some(InFlight::Ack) => {
                            self.acks.pop_front();
                        }
                        Some(InFlight::Birth { dropped }) => {
                            self.reported_dropped = self.reported_dropped.wrapping_add(dropped);
                            // Drops during the birth's flight go in another status.
                            if self.unreported_dropped() > 0 {
                                self.birth_pending = true;
                            }
                        }
                        None => {}
                    }
                    None
                }
                Some(MqttEvent::Message { topic, payload }) => {
                    Some(self.publisher.parse_cmd(topic, payload))
                }
                Some(_) => None,
            };
            match cmd {
                Some(Ok(c)) => {
                    let _ = self.command(&c, now_ms);
                }
                Some(Err(_)) => self.stats.bad_cmds += 1,
                None => {}
            }
        }
        self.publish_next(io, now_ms);
    }

    /// Records dropped from the offline buffer and not yet reported.
    pub fn unreported_dropped(&self) -> u32 {
        self.outbox.dropped().wrapping_sub(self.reported_dropped)
    }

    /// Carries out `cmd` at `now_ms` (as received on `…/cmd`), queues its
    /// ack (ok when `Ok`) and keeps it as [`NodeApp::last_cmd`].
    pub fn command(&mut self, cmd: &Cmd, now_ms: u64) -> Result<(), CmdRefusal> {
        self.stats.cmds = self.stats.cmds.wrapping_add(1);
        let outcome = match cmd.op {
            _ if cmd.op != CmdOp::Config && cmd.has_config_fields() => {
                Err(CmdRefusal::UnexpectedFields)
            }
            CmdOp::Ping => Ok(()),
            CmdOp::Reset => {
                let events = self.local.reset(now_ms);
                self.record_events(0, &events);
                self.update_sounder();
                Ok(())
            }
            CmdOp::Selftest => {
                if self.start_selftest(now_ms) {
                    Ok(())
                } else {
                    Err(CmdRefusal::NothingToTest)
                }
            }
            CmdOp::Config => self.configure(cmd),
        };
        if self.acks.is_full() {
            self.acks.pop_front();
        }
        let _ = self.acks.push_back((cmd.id.clone(), outcome.is_ok()));
        self.last_cmd = Some((cmd.clone(), outcome));
        outcome
    }

    /// `config`: the channel's current rule with the command's setpoints,
    /// if the quantity allows them; otherwise nothing changes.
    fn configure(&mut self, cmd: &Cmd) -> Result<(), CmdRefusal> {
        let (Some(ch), Some(alarm)) = (&cmd.ch, cmd.alarm) else {
            return Err(CmdRefusal::ConfigIncomplete);
        };
        let q = self
            .channels
            .iter()
            .find(|(c, _)| c == ch)
            .map(|(_, q)| *q)
            .ok_or(CmdRefusal::UnknownChannel)?;
        let current = self.local.rule(ch).ok_or(CmdRefusal::UnknownChannel)?;
        let rule = rules::defaults::configured(q, current, cmd.pre_alarm, alarm, cmd.hysteresis)
            .map_err(CmdRefusal::Rule)?;
        self.local.replace_rule(ch, q, rule).map_err(|e| match e {
            crate::local::ConfigError::Rule(e) => CmdRefusal::Rule(e),
            _ => CmdRefusal::UnknownChannel,
        })
    }

    fn publish_next<T: Write>(&mut self, io: &mut T, now_ms: u64) {
        if !self.session.can_publish() {
            return;
        }
        if self.birth_pending {
            let dropped = self.unreported_dropped();
            let Ok(out) =
                self.publisher
                    .birth(self.fw, (dropped > 0).then_some(dropped), &mut self.buf)
            else {
                self.birth_pending = false;
                return;
            };
            if self
                .session
                .publish(io, &out.topic, out.payload, true, now_ms)
                .is_ok()
            {
                self.birth_pending = false;
                self.in_flight = Some(InFlight::Birth { dropped });
            }
            return;
        }
        if let Some((id, ok)) = self.acks.front() {
            let cmd = Cmd::new(id.clone(), CmdOp::Ping);
            if let Ok(out) = self.publisher.ack(&cmd, *ok, &mut self.buf) {
                if self
                    .session
                    .publish(io, &out.topic, out.payload, false, now_ms)
                    .is_ok()
                {
                    self.in_flight = Some(InFlight::Ack);
                }
            } else {
                self.acks.pop_front();
            }
            return;
        }
        let Some(rec) = self.outbox.front().copied() else {
            return;
        };
        match self.encode(&rec) {
            Some((kind, n)) => {
                let topic = self.publisher.identity().topic(kind);
                if self
                    .session
                    .publish(io, &topic, &self.buf[..n], false, now_ms)
                    .is_ok()
                {
                    self.outbox.mark_in_flight();
                    self.in_flight = Some(InFlight::Record);
                }
            }
            None => {
                // Cannot be encoded (should not happen): drop it, counted.
                self.outbox.pop_front();
            }
        }
    }

    /// Encodes a buffered record into `self.buf`: its topic kind and length.
    fn encode(&mut self, rec: &Record) -> Option<(TopicKind, usize)> {
        match rec.body {
            Body::Telemetry { n, values } => {
                let mut ch = heapless::Vec::new();
                for (i, (v, s)) in values.iter().take(usize::from(n)).enumerate() {
                    let (id, q) = self.channels.get(i)?.clone();
                    ch.push(Reading {
                        id,
                        q,
                        v: *v,
                        s: *s,
                    })
                    .ok()?;
                }
                let t = Telemetry {
                    boot: rec.boot,
                    seq: rec.seq,
                    ts: rec.ts,
                    ch,
                };
                Some((TopicKind::Telemetry, wire::encode(&t, &mut self.buf).ok()?))
            }
            Body::Event { ch, level, v } => {
                let (id, _) = self.channels.get(usize::from(ch))?.clone();
                let e = wire::Event {
                    boot: rec.boot,
                    seq: rec.seq,
                    ts: rec.ts,
                    ch: id,
                    level,
                    v,
                };
                Some((TopicKind::Event, wire::encode(&e, &mut self.buf).ok()?))
            }
        }
    }
}
