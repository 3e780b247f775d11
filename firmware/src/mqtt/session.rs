//! The MQTT session state machine over a byte stream: connect with a Last
//! Will and a persistent session, keep alive, one QoS 1 publication in
//! flight (resent with DUP after a reconnect), subscribe, answer incoming
//! QoS 1 publications with PUBACK, and reconnect with exponential backoff.
//!
//! The stream is any `embedded_io` `Read + Write + ReadReady`; the session
//! never blocks on reading (it checks `read_ready` first), so one loop can
//! sample sensors and talk MQTT. Time is an argument (`now_ms`, monotonic).
//!
//! A stream such as a UART bridged to TCP does not say when the far end went
//! away: the session notices by a missing CONNACK, PUBACK or PINGRESP within
//! `response_timeout_ms`, and then starts again with CONNECT after a backoff
//! (`backoff_min_ms`, doubling up to `backoff_max_ms`).

use super::codec::{self, Connect, DecodeError, Frame, Framer, Packet, Will};
use embedded_io::{Read, ReadReady, Write};

/// Receive buffer: larger incoming packets are skipped.
pub const RX_BUF: usize = 384;
/// Buffer of the publication in flight (topic + payload + header).
pub const TX_BUF: usize = 512;
/// Buffer of control packets (CONNECT, SUBSCRIBE, PUBACK, PINGREQ).
pub const CTRL_BUF: usize = 256;

/// Connection settings. Strings are borrowed for the session's lifetime.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig<'a> {
    /// Fixed client id (persistent session).
    pub client_id: &'a str,
    /// User name.
    pub username: Option<&'a str>,
    /// Password.
    pub password: Option<&'a [u8]>,
    /// Keep-alive in seconds; a PINGREQ goes out after half of it idle.
    pub keep_alive_s: u16,
    /// Last Will: topic, payload (QoS 1, retained).
    pub will: Option<(&'a str, &'a [u8])>,
    /// Topic filter subscribed with QoS 1 after every CONNACK.
    pub subscribe: Option<&'a str>,
    /// How long to wait for CONNACK, PUBACK or PINGRESP.
    pub response_timeout_ms: u64,
    /// First reconnect delay.
    pub backoff_min_ms: u64,
    /// Longest reconnect delay.
    pub backoff_max_ms: u64,
}

/// Where the session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting until `retry_at` to send CONNECT.
    Idle {
        /// When to try.
        retry_at: u64,
    },
    /// CONNECT sent at `since`, waiting for CONNACK.
    Connecting {
        /// When CONNECT went out.
        since: u64,
    },
    /// Accepted by the broker.
    Connected,
}

/// What [`Session::poll`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// CONNACK accepted; the in-flight publication (if any) was resent.
    Connected {
        /// The broker kept our session.
        session_present: bool,
    },
    /// The broker refused CONNECT with this return code.
    Refused(u8),
    /// The connection is considered lost (timeout or protocol error).
    Disconnected,
    /// Our QoS 1 publication `pkid` was acknowledged.
    PubAck(u16),
    /// SUBACK: `ok` unless the broker refused the subscription.
    Subscribed {
        /// Subscription granted.
        ok: bool,
    },
    /// An application message (already PUBACKed when QoS 1).
    Message {
        /// Topic.
        topic: &'a str,
        /// Payload.
        payload: &'a [u8],
    },
    /// An incoming packet larger than the receive buffer was skipped.
    Oversized,
}

/// Why a publication could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// Not connected.
    NotConnected,
    /// A publication is already in flight.
    Busy,
    /// The packet does not fit [`TX_BUF`].
    TooLarge,
}

/// Counters for diagnostics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// CONNECT packets sent.
    pub connects: u32,
    /// Connections considered lost.
    pub losses: u32,
    /// Protocol errors in incoming bytes.
    pub protocol_errors: u32,
    /// Oversized packets skipped.
    pub oversized: u32,
    /// Publications resent with DUP.
    pub resent: u32,
}

/// One MQTT 3.1.1 client session.
pub struct Session<'a> {
    cfg: SessionConfig<'a>,
    state: State,
    framer: Framer<RX_BUF>,
    tx: [u8; TX_BUF],
    /// `(pkid, length in tx, sent at)` of the publication in flight.
    inflight: Option<(u16, usize, u64)>,
    ctrl: [u8; CTRL_BUF],
    next_pkid: u16,
    last_tx: u64,
    ping_sent: Option<u64>,
    backoff: u64,
    stats: SessionStats,
}

impl<'a> Session<'a> {
    /// A session that will connect at the first poll.
    pub fn new(cfg: SessionConfig<'a>) -> Self {
        Session {
            backoff: cfg.backoff_min_ms,
            cfg,
            state: State::Idle { retry_at: 0 },
            framer: Framer::new(),
            tx: [0; TX_BUF],
            inflight: None,
            ctrl: [0; CTRL_BUF],
            next_pkid: 1,
            last_tx: 0,
            ping_sent: None,
            stats: SessionStats::default(),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the broker accepted us and nothing is in flight.
    pub fn can_publish(&self) -> bool {
        self.state == State::Connected && self.inflight.is_none()
    }

    /// Whether a publication waits for its PUBACK.
    pub fn in_flight(&self) -> Option<u16> {
        self.inflight.map(|(p, _, _)| p)
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    fn pkid(&mut self) -> u16 {
        let p = self.next_pkid;
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        p
    }

    fn send<T: Write>(io: &mut T, bytes: &[u8]) -> bool {
        io.write_all(bytes).is_ok() && io.flush().is_ok()
    }

    fn send_ctrl<T: Write>(&mut self, io: &mut T, n: usize, now: u64) {
        if !Self::send(io, &self.ctrl[..n]) {
            self.lose(now);
        } else {
            self.last_tx = now;
        }
    }

    /// Publishes `payload` on `topic` with QoS 1; returns its packet id.
    /// The publication stays in flight (and is resent after a reconnect)
    /// until its PUBACK arrives as [`Event::PubAck`].
    pub fn publish<T: Write>(
        &mut self,
        io: &mut T,
        topic: &str,
        payload: &[u8],
        retain: bool,
        now: u64,
    ) -> Result<u16, SessionError> {
        if self.state != State::Connected {
            return Err(SessionError::NotConnected);
        }
        if self.inflight.is_some() {
            return Err(SessionError::Busy);
        }
        let pkid = self.pkid();
        let n = codec::publish(&mut self.tx, topic, payload, 1, retain, false, pkid)
            .map_err(|_| SessionError::TooLarge)?;
        self.inflight = Some((pkid, n, now));
        if Self::send(io, &self.tx[..n]) {
            self.last_tx = now;
        } else {
            self.lose(now);
        }
        Ok(pkid)
    }

    /// Ends the connection: back to idle, retry after the backoff.
    fn lose(&mut self, now: u64) {
        self.stats.losses += 1;
        self.state = State::Idle {
            retry_at: now.saturating_add(self.backoff),
        };
        self.backoff = (self.backoff.saturating_mul(2)).min(self.cfg.backoff_max_ms);
        self.ping_sent = None;
        self.framer.reset();
    }

    fn connect_packet(&mut self) -> Option<usize> {
        let c = Connect {
            client_id: self.cfg.client_id,
            keep_alive_s: self.cfg.keep_alive_s,
            clean_session: false,
            username: self.cfg.username,
            password: self.cfg.password,
            will: self.cfg.will.map(|(topic, payload)| Will {
                topic,
                payload,
                qos: 1,
                retain: true,
            }),
        };
        codec::connect(&mut self.ctrl, &c).ok()
    }

    /// Runs timers and handles at most one incoming packet. Call it often.
    pub fn poll<T: Read + Write + ReadReady>(&mut self, io: &mut T, now: u64) -> Option<Event<'_>> {
        let timeout = self.cfg.response_timeout_ms;
        match self.state {
            State::Idle { retry_at } if now >= retry_at => {
                self.framer.reset();
                let n = self.connect_packet()?;
                self.stats.connects += 1;
                self.state = State::Connecting { since: now };
                self.send_ctrl(io, n, now);
            }
            State::Connecting { since } if now.saturating_sub(since) >= timeout => {
                self.lose(now);
                return None;
            }
            State::Connected => {
                let late_ack =
                    matches!(self.inflight, Some((_, _, at)) if now.saturating_sub(at) >= timeout);
                let late_ping =
                    matches!(self.ping_sent, Some(at) if now.saturating_sub(at) >= timeout);
                if late_ack || late_ping {
                    self.lose(now);
                    return Some(Event::Disconnected);
                }
                let idle = u64::from(self.cfg.keep_alive_s) * 500;
                if self.ping_sent.is_none() && now.saturating_sub(self.last_tx) >= idle {
                    if let Ok(n) = codec::pingreq(&mut self.ctrl) {
                        self.ping_sent = Some(now);
                        self.send_ctrl(io, n, now);
                    }
                }
            }
            _ => {}
        }
        // Read until one packet is complete or nothing is ready.
        let mut frame = None;
        while matches!(io.read_ready(), Ok(true)) {
            let mut byte = [0u8; 1];
            match io.read(&mut byte) {
                Ok(1) => {}
                _ => break,
            }
            if matches!(self.state, State::Idle { .. }) {
                continue; // stale bytes of a lost connection
            }
            match self.framer.push(byte[0]) {
                Ok(Frame::Pending) => {}
                Ok(Frame::Skipped) => {
                    self.stats.oversized += 1;
                    return Some(Event::Oversized);
                }
                Ok(Frame::Ready(n)) => {
                    frame = Some(n);
                    break;
                }
                Err(_) => return self.protocol_error(now),
            }
        }
        let n = frame?;
        self.handle(io, n, now)
    }

    fn protocol_error(&mut self, now: u64) -> Option<Event<'_>> {
        self.stats.protocol_errors += 1;
        let was_connected = self.state == State::Connected;
        self.lose(now);
        was_connected.then_some(Event::Disconnected)
    }

    fn handle<T: Write>(&mut self, io: &mut T, n: usize, now: u64) -> Option<Event<'_>> {
        let packet = match codec::decode(self.framer.packet(n)) {
            Ok(p) => p,
            Err(DecodeError::Unexpected(_))
            | Err(DecodeError::Malformed)
            | Err(DecodeError::BadLength)
            | Err(DecodeError::BadUtf8) => return self.protocol_error(now),
        };
        match (self.state, packet) {
            (
                State::Connecting { .. },
                Packet::ConnAck {
                    session_present,
                    code,
                },
            ) => {
                if code != 0 {
                    self.lose(now);
                    return Some(Event::Refused(code));
                }
                self.state = State::Connected;
                self.backoff = self.cfg.backoff_min_ms;
                self.last_tx = now;
                if let Some((_, len, _)) = self.inflight {
                    codec::set_dup(&mut self.tx[..len]);
                    self.stats.resent += 1;
                    if Self::send(io, &self.tx[..len]) {
                        self.inflight = self.inflight.map(|(p, l, _)| (p, l, now));
                    } else {
                        self.lose(now);
                        return None;
                    }
                }
                if let Some(filter) = self.cfg.subscribe {
                    let pkid = self.pkid();
                    if let Ok(n) = codec::subscribe(&mut self.ctrl, pkid, filter, 1) {
                        self.send_ctrl(io, n, now);
                    }
                }
                Some(Event::Connected { session_present })
            }
            (State::Connected, Packet::PubAck { pkid }) => match self.inflight {
                Some((p, _, _)) if p == pkid => {
                    self.inflight = None;
                    Some(Event::PubAck(pkid))
                }
                _ => None, // stale acknowledgement
            },
            (State::Connected, Packet::PingResp) => {
                self.ping_sent = None;
                None
            }
            (State::Connected, Packet::SubAck { code, .. }) => {
                Some(Event::Subscribed { ok: code < 0x80 })
            }
            (State::Connected, Packet::UnsubAck { .. }) => None,
            (State::Connected, Packet::Publish { qos, pkid, .. }) => {
                if qos == 1 {
                    if let Some(p) = pkid {
                        if let Ok(m) = codec::puback(&mut self.ctrl, p) {
                            self.send_ctrl(io, m, now);
                        }
                    }
                }
                // Re-decode to hand out the borrow of the framer's buffer.
                match codec::decode(self.framer.packet(n)) {
                    Ok(Packet::Publish { topic, payload, .. }) => {
                        Some(Event::Message { topic, payload })
                    }
                    _ => None,
                }
            }
            _ => self.protocol_error(now),
        }
    }
}
