//! What an unauthenticated peer can make the gate hold, bounded (pure
//! cores, time passed in; the relay in `gate/mod.rs` wraps them):
//!
//! - connections: a global cap, a cap per peer address, and caps on
//!   half-open connections (accepted, no CONNECT yet) globally and per
//!   address, so one address cannot use up what the others need
//!   ([`Counts`], [`Limiter`]);
//! - the keep-alive a client may ask for ([`effective_keep_alive`]): capped,
//!   and 0 ("never") is the cap, so a silent connection is always closed;
//! - what is remembered per refusal, for "log once a minute per login"
//!   ([`RefusalLog`]): a bounded number of entries with bounded keys, and a
//!   bounded number of lines per minute over all of them;
//! - what a log line quotes of a peer's strings ([`for_log`]): truncated,
//!   control characters escaped.
//!
//! Every connection the gate closes is counted by its reason
//! ([`GateMetrics`], `gateway_mqtt_gate_closed_total{reason=…}`).

use crate::metrics::Metrics;
use std::collections::HashMap;
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::config::GateLimits;

/// The keep-alive the gate holds a client to: what it asked for, at most
/// `max`; 0 (no keep-alive) is `max`.
pub fn effective_keep_alive(requested: u16, max: u16) -> u16 {
    if requested == 0 {
        max
    } else {
        requested.min(max)
    }
}

/// How long a client may stay silent: 1.5 × its keep-alive (MQTT 3.1.1 §3.1.2.10).
pub fn idle_timeout(keep_alive: u16) -> Duration {
    Duration::from_millis(u64::from(keep_alive) * 1500)
}

/// The address the per-address caps count by: the IP, an IPv6 peer by its /64
/// (one host has a whole /64 to pick addresses from).
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

pub use crate::metrics::gate::Closed;

/// Open connections, in total and per address (pure).
#[derive(Debug, Default)]
pub struct Counts {
    total: usize,
    half_open: usize,
    /// Per address: (connections, of which half-open). An address with
    /// none is removed, so the map is as large as the connections.
    by_peer: HashMap<IpAddr, (usize, usize)>,
}

impl Counts {
    /// Admits a new (half-open) connection from `peer`, or says which cap
    /// it would break.
    pub fn admit(&mut self, peer: IpAddr, l: &GateLimits) -> Result<(), Closed> {
        let (conns, half) = self.by_peer.get(&peer).copied().unwrap_or((0, 0));
        if half >= l.max_half_open_per_address {
            return Err(Closed::HalfOpenPerAddress);
        }
        if conns >= l.max_connections_per_address {
            return Err(Closed::ConnectionsPerAddress);
        }
        if self.half_open >= l.max_half_open {
            return Err(Closed::HalfOpen);
        }
        if self.total >= l.max_connections {
            return Err(Closed::Connections);
        }
        self.total += 1;
        self.half_open += 1;
        self.by_peer.insert(peer, (conns + 1, half + 1));
        Ok(())
    }

    /// `peer`'s half-open connection sent its CONNECT.
    pub fn connected(&mut self, peer: IpAddr) {
        if let Some((_, half)) = self.by_peer.get_mut(&peer) {
            if *half > 0 {
                *half -= 1;
                self.half_open = self.half_open.saturating_sub(1);
            }
        }
    }

    /// A connection of `peer` ended (`half_open`: before its CONNECT).
    pub fn release(&mut self, peer: IpAddr, half_open: bool) {
        let Some(entry) = self.by_peer.get_mut(&peer) else {
            return;
        };
        entry.0 = entry.0.saturating_sub(1);
        self.total = self.total.saturating_sub(1);
        if half_open && entry.1 > 0 {
            entry.1 -= 1;
            self.half_open = self.half_open.saturating_sub(1);
        }
        if entry.0 == 0 {
            self.by_peer.remove(&peer);
        }
    }

    /// (connections, half-open, addresses).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.total, self.half_open, self.by_peer.len())
    }
}

/// [`Counts`] shared by the gate's connections; keeps the gauges
/// `gateway_mqtt_gate_connections` and `…_half_open` up to date.
pub struct Limiter {
    limits: GateLimits,
    counts: Mutex<Counts>,
    metrics: Option<Arc<Metrics>>,
}

/// A connection's place under the caps, given back when it is dropped.
pub struct Slot {
    limiter: Arc<Limiter>,
    peer: IpAddr,
    half_open: bool,
}

impl Limiter {
    pub fn new(limits: GateLimits, metrics: Option<Arc<Metrics>>) -> Limiter {
        Limiter {
            limits,
            counts: Mutex::new(Counts::default()),
            metrics,
        }
    }

    pub fn limits(&self) -> &GateLimits {
        &self.limits
    }

    /// Runs `f` on the counts and publishes the gauges.
    fn with_counts<T>(&self, f: impl FnOnce(&mut Counts) -> T) -> T {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut c);
        if let Some(m) = &self.metrics {
            let (open, half, _) = c.sizes();
            m.gate.open.store(open as u64, Ordering::Relaxed);
            m.gate.half_open.store(half as u64, Ordering::Relaxed);
        }
        out
    }

    /// A slot for a new connection from `peer`, or the cap it would break.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Closed> {
        let peer = peer_key(peer);
        self.with_counts(|c| c.admit(peer, &self.limits))?;
        Ok(Slot {
            limiter: self.clone(),
            peer,
            half_open: true,
        })
    }

    /// (connections, half-open, addresses).
    pub fn sizes(&self) -> (usize, usize, usize) {
        self.with_counts(|c| c.sizes())
    }
}

impl Slot {
    /// The connection sent its CONNECT.
    pub fn connected(&mut self) {
        if self.half_open {
            self.half_open = false;
            let peer = self.peer;
            self.limiter.with_counts(|c| c.connected(peer));
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (peer, half_open) = (self.peer, self.half_open);
        self.limiter.with_counts(|c| c.release(peer, half_open));
    }
}

/// Longest part of a peer's string a log line quotes, in bytes.
pub const LOG_TEXT_MAX: usize = 64;

/// A peer's string for a log line: at most [`LOG_TEXT_MAX`] bytes of it
/// (cut at a character boundary), control characters escaped, and how much
/// was left out.
pub fn for_log(s: &str) -> String {
    let mut end = s.len().min(LOG_TEXT_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 24);
    for c in s[..end].chars() {
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    if end < s.len() {
        let _ = write!(out, "…(+{} bytes)", s.len() - end);
    }
    out
}

/// "Log a refusal once per interval per login", in bounded memory (pure,
/// time passed in): at most `capacity` logins remembered (keys cut to
/// [`LOG_TEXT_MAX`] bytes; when full, the one logged longest ago is
/// forgotten), and at most `budget` lines per interval over all of them —
/// a flood of distinct usernames is a handful of lines and a count.
#[derive(Debug)]
pub struct RefusalLog {
    capacity: usize,
    interval: Duration,
    budget: u32,
    last: HashMap<String, Instant>,
    window_start: Option<Instant>,
    lines_in_window: u32,
    /// Refusals not logged since the last line that was (reported with it).
    pub suppressed: u64,
}

impl RefusalLog {
    pub fn new(capacity: usize, interval: Duration, budget: u32) -> RefusalLog {
        RefusalLog {
            capacity,
            interval,
            budget,
            last: HashMap::new(),
            window_start: None,
            lines_in_window: 0,
            suppressed: 0,
        }
    }

    /// Whether to log a refusal of `key` at `now`: `Some(n)` with the number
    /// of refusals left unlogged since the previous line, `None` to stay quiet.
    pub fn should_log(&mut self, key: &str, now: Instant) -> Option<u64> {
        let key = {
            let mut end = key.len().min(LOG_TEXT_MAX);
            while !key.is_char_boundary(end) {
                end -= 1;
            }
            &key[..end]
        };
        if self
            .last
            .get(key)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.interval)
        {
            self.suppressed += 1;
            return None;
        }
        match self.window_start {
            Some(s) if now.saturating_duration_since(s) < self.interval => {}
            _ => {
                self.window_start = Some(now);
                self.lines_in_window = 0;
            }
        }
        if self.lines_in_window >= self.budget {
            self.suppressed += 1;
            return None;
        }
        self.lines_in_window += 1;
        if !self.last.contains_key(key) && self.last.len() >= self.capacity {
            // Forget what is past its interval; if nothing is, the oldest.
            let interval = self.interval;
            self.last
                .retain(|_, t| now.saturating_duration_since(*t) < interval);
            if self.last.len() >= self.capacity {
                if let Some(oldest) = self
                    .last
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone())
                {
                    self.last.remove(&oldest);
                }
            }
        }
        self.last.insert(key.to_string(), now);
        Some(std::mem::take(&mut self.suppressed))
    }

    /// Logins remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// The gate's counters and gauges, rendered into `/metrics`.
pub use crate::metrics::gate::GateMetrics;

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn small() -> GateLimits {
        GateLimits {
            max_connections: 12,
            max_connections_per_address: 6,
            max_half_open: 5,
            max_half_open_per_address: 3,
            ..GateLimits::default()
        }
    }

    #[test]
    fn caps_per_address_leave_room_for_other_addresses() {
        let l = small();
        let mut c = Counts::default();
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for _ in 0..3 {
            c.admit(a, &l).unwrap();
        }
        // a's half-open share is used; b still gets in.
        assert_eq!(c.admit(a, &l), Err(Closed::HalfOpenPerAddress));
        c.admit(b, &l).unwrap();
        // a's connections log in: room for more half-open, up to 6 in all.
        for _ in 0..3 {
            c.connected(a);
        }
        for _ in 0..3 {
            c.admit(a, &l).unwrap();
        }
        assert_eq!(c.admit(a, &l), Err(Closed::HalfOpenPerAddress));
        for _ in 0..3 {
            c.connected(a);
        }
        assert_eq!(c.admit(a, &l), Err(Closed::ConnectionsPerAddress));
        assert_eq!(c.sizes(), (7, 1, 2));
        // Global half-open cap: b and others fill it.
        c.admit(b, &l).unwrap();
        c.admit(b, &l).unwrap();
        c.admit(ip("10.0.0.3"), &l).unwrap();
        c.admit(ip("10.0.0.3"), &l).unwrap();
        assert_eq!(c.admit(ip("10.0.0.4"), &l), Err(Closed::HalfOpen));
        c.connected(ip("10.0.0.3"));
        c.admit(ip("10.0.0.4"), &l).unwrap();
        c.connected(ip("10.0.0.4"));
        assert_eq!(c.admit(ip("10.0.0.5"), &l), Err(Closed::Connections));
        // Releasing gives everything back and forgets empty addresses.
        for _ in 0..6 {
            c.release(a, false);
        }
        c.release(b, true);
        c.release(b, true);
        c.release(b, true);
        c.release(ip("10.0.0.3"), false);
        c.release(ip("10.0.0.3"), true);
        c.release(ip("10.0.0.4"), false);
        assert_eq!(c.sizes(), (0, 0, 0));
        // Releasing what was never admitted changes nothing.
        c.release(a, true);
        assert_eq!(c.sizes(), (0, 0, 0));
    }

    #[test]
    fn slots_give_back_their_place() {
        let l = Arc::new(Limiter::new(small(), None));
        {
            let mut s1 = l.admit(ip("10.0.0.1")).unwrap();
            let _s2 = l.admit(ip("10.0.0.1")).unwrap();
            s1.connected();
            s1.connected();
            assert_eq!(l.sizes(), (2, 1, 1));
        }
        assert_eq!(l.sizes(), (0, 0, 0));
        // IPv6 peers of one /64 share a share; IPv4-mapped ones are IPv4.
        let _a = l.admit(ip("2001:db8::1")).unwrap();
        let _b = l.admit(ip("2001:db8::ffff:2")).unwrap();
        let _c = l.admit(ip("::ffff:10.0.0.9")).unwrap();
        assert_eq!(l.sizes(), (3, 3, 2));
    }

    #[test]
    fn keep_alive_is_capped_and_never_infinite() {
        assert_eq!(effective_keep_alive(0, 300), 300);
        assert_eq!(effective_keep_alive(30, 300), 30);
        assert_eq!(effective_keep_alive(u16::MAX, 300), 300);
        assert_eq!(idle_timeout(2), Duration::from_secs(3));
        assert_eq!(idle_timeout(u16::MAX), Duration::from_millis(98_302_500));
    }

    #[test]
    fn log_text_is_short_and_has_no_control_characters() {
        assert_eq!(for_log("home_a.n01"), "home_a.n01");
        let long = "x".repeat(60 * 1024);
        let s = for_log(&long);
        assert!(s.len() < LOG_TEXT_MAX + 24, "{s}");
        assert!(s.ends_with(&format!("…(+{} bytes)", 60 * 1024 - LOG_TEXT_MAX)));
        assert_eq!(for_log("a\nb\0c"), "a\\nb\\u{0}c");
        // Never cut inside a character.
        let wide = "界".repeat(40);
        assert!(for_log(&wide).starts_with(&"界".repeat(21)));
    }

    #[test]
    fn the_refusal_log_is_bounded_by_entries_key_size_and_lines() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let mut log = RefusalLog::new(8, minute, 5);
        // A login refused again within the interval is logged once.
        assert_eq!(log.should_log("connect:a", t0), Some(0));
        assert_eq!(
            log.should_log("connect:a", t0 + Duration::from_secs(1)),
            None
        );
        // 20,000 distinct 60 KiB usernames: 4 more lines, 8 entries of at
        // most 64 bytes.
        let mut lines = 0;
        for i in 0..20_000 {
            let key = format!("connect:{i:05}{}", "u".repeat(60 * 1024));
            if log
                .should_log(&key, t0 + Duration::from_millis(2 + i))
                .is_some()
            {
                lines += 1;
            }
        }
        assert_eq!(lines, 4);
        assert!(log.len() <= 8);
        assert!(log.last.keys().all(|k| k.len() <= LOG_TEXT_MAX));
        // A new interval: lines again, reporting what was left out since
        // the last line.
        let later = t0 + Duration::from_secs(200);
        assert_eq!(log.should_log("connect:b", later), Some(20_000 - 4));
        assert!(log.len() <= 8);
        // Entries past their interval are forgotten first; within it, the
        // oldest goes.
        let mut log = RefusalLog::new(2, minute, 100);
        log.should_log("a", t0);
        log.should_log("b", t0 + Duration::from_secs(30));
        log.should_log("c", t0 + Duration::from_secs(40));
        assert!(!log.last.contains_key("a"));
        assert_eq!(log.should_log("b", t0 + Duration::from_secs(41)), None);
    }

    #[test]
    fn limits_are_checked() {
        assert!(GateLimits::default().issues().is_empty());
        let bad = GateLimits {
            max_half_open: 0,
            max_connections_per_address: 9999,
            ..GateLimits::default()
        };
        let fields: Vec<&str> = bad.issues().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "max_half_open",
                "max_connections_per_address",
                "max_half_open_per_address"
            ]
        );
    }

    #[test]
    fn every_reason_is_rendered() {
        let m = GateMetrics::default();
        m.closed(Closed::Idle);
        m.closed(Closed::Idle);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("gateway_mqtt_gate_closed_total{reason=\"idle\"} 2"));
        for c in Closed::ALL {
            assert!(out.contains(&format!("reason=\"{}\"", c.label())), "{c:?}");
        }
        assert_eq!(m.closed_count(Closed::Idle), 2);
    }
}
