//! Failed-login throttle (登录限速), per login and per peer address. Pure:
//! the caller passes the time and does the I/O.
//!
//! Each key (a login name, a peer address) is locked by its
//! `failures_to_lock`-th failure within `window_ms`, which locks the key for `lockout_ms`,
//! doubling with each further lockout up to `max_lockout_ms`. While a key
//! is locked every attempt on it is refused without looking at the
//! password, so a flood costs no password hashing. Attempts in progress
//! count against the allowance (`begin` reserves one), so a burst of
//! concurrent requests cannot all slip past before the first failure is
//! recorded. Unknown logins are throttled like known ones: the answer
//! never tells which logins exist. Both maps are bounded (`max_keys`):
//! stale records go first, then the longest idle.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

/// A throttle's figures for one kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The failure within the window that locks the key (the 5th: four
    /// mistakes are free, and at most five passwords are ever checked).
    pub failures_to_lock: u32,
    /// How long failures are remembered (from the first of a run).
    pub window_ms: u64,
    /// The first lockout; each further one doubles it…
    pub lockout_ms: u64,
    /// …up to this.
    pub max_lockout_ms: u64,
    /// Records kept at most (memory bound against floods of new keys).
    pub max_keys: usize,
}

/// Per login: 5 failures in 15 minutes lock it for 15 minutes, doubling to 4 hours.
pub const PER_LOGIN: Policy = Policy {
    failures_to_lock: 5,
    window_ms: 15 * 60_000,
    lockout_ms: 15 * 60_000,
    max_lockout_ms: 4 * 3_600_000,
    max_keys: 10_000,
};

/// Per peer address: 30 failures in 15 minutes (a shared duty-room PC may
/// see a few people mistype), then as per login.
pub const PER_PEER: Policy = Policy {
    failures_to_lock: 30,
    window_ms: 15 * 60_000,
    lockout_ms: 15 * 60_000,
    max_lockout_ms: 4 * 3_600_000,
    max_keys: 10_000,
};

/// Longest login name kept as a key (longer ones are cut).
pub const MAX_LOGIN_KEY: usize = 64;

/// Which key refused an attempt or was locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Login,
    Peer,
}

impl Scope {
    /// The `/metrics` label value.
    pub const fn code(self) -> &'static str {
        match self {
            Scope::Login => "login",
            Scope::Peer => "peer",
        }
    }
}

/// Whether an attempt may check its password now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on; report the outcome with [`Throttle::finish`].
    Allow,
    /// Refused without a check until `until` (ms since the epoch).
    Locked { scope: Scope, until: u64 },
}

#[derive(Debug, Clone, Default)]
struct Record {
    /// Failures in the current window.
    failures: u32,
    /// Attempts begun and not finished.
    pending: u32,
    /// When the current window began.
    window_start: u64,
    locked_until: u64,
    /// Lockouts so far in a row (the doubling); forgotten after a quiet window.
    lockouts: u32,
    last_seen: u64,
}

impl Record {
    fn locked(&self, now: u64) -> bool {
        now < self.locked_until
    }

    /// Forgets failures older than the window, and the doubling after a
    /// quiet window past the last lockout.
    fn age(&mut self, p: &Policy, now: u64) {
        if now.saturating_sub(self.window_start) >= p.window_ms {
            self.failures = 0;
            self.window_start = now;
            if now >= self.locked_until.saturating_add(p.window_ms) {
                self.lockouts = 0;
            }
        }
    }

    fn stale(&self, p: &Policy, now: u64) -> bool {
        self.pending == 0
            && !self.locked(now)
            && now.saturating_sub(self.last_seen) >= p.window_ms
            && now >= self.locked_until.saturating_add(p.window_ms)
    }

    /// Records a failure; `true` when it starts a lockout.
    fn fail(&mut self, p: &Policy, now: u64) -> bool {
        self.age(p, now);
        self.failures = self.failures.saturating_add(1);
        self.last_seen = now;
        if self.failures >= p.failures_to_lock {
            let factor = 1u64 << self.lockouts.min(20);
            let lockout = p.lockout_ms.saturating_mul(factor).min(p.max_lockout_ms);
            self.locked_until = now.saturating_add(lockout);
            self.lockouts = self.lockouts.saturating_add(1);
            self.failures = 0;
            self.window_start = now;
            return true;
        }
        false
    }
}

/// Records of one kind of key, bounded.
#[derive(Debug)]
struct Table<K> {
    policy: Policy,
    records: HashMap<K, Record>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(policy: Policy) -> Self {
        Table {
            policy,
            records: HashMap::new(),
        }
    }

    fn check(&mut self, key: &K, now: u64) -> Option<u64> {
        let p = self.policy;
        let r = self.records.get_mut(key)?;
        if r.locked(now) {
            return Some(r.locked_until);
        }
        r.age(&p, now);
        // Attempts in progress count: a burst cannot all pass before the
        // first failure is known. Wait out the others rather than lock.
        (r.failures + r.pending >= p.failures_to_lock).then_some(now)
    }

    fn begin(&mut self, key: &K, now: u64) {
        self.make_room(key, now);
        let r = self.records.entry(key.clone()).or_insert_with(|| Record {
            window_start: now,
            ..Record::default()
        });
        r.pending = r.pending.saturating_add(1);
        r.last_seen = now;
    }

    /// Ends an attempt; `true` when its failure started a lockout.
    fn finish(&mut self, key: &K, ok: bool, now: u64) -> bool {
        let p = self.policy;
        let Some(r) = self.records.get_mut(key) else {
            return false;
        };
        r.pending = r.pending.saturating_sub(1);
        r.last_seen = now;
        if ok {
            r.failures = 0;
            r.lockouts = 0;
            false
        } else {
            r.fail(&p, now)
        }
    }

    fn make_room(&mut self, key: &K, now: u64) {
        if self.records.len() < self.policy.max_keys || self.records.contains_key(key) {
            return;
        }
        let p = self.policy;
        self.records.retain(|_, r| !r.stale(&p, now));
        while self.records.len() >= self.policy.max_keys {
            // Still full of live records: drop the longest idle that is not
            // locked, else the one whose lockout ends first.
            let victim = self
                .records
                .iter()
                .min_by_key(|(_, r)| (r.locked(now), r.locked_until, r.last_seen))
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    self.records.remove(&k);
                }
                None => break,
            }
        }
    }
}

/// The throttle: one table of login names, one of peer addresses.
#[derive(Debug)]
pub struct Throttle {
    logins: Table<String>,
    peers: Table<IpAddr>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(PER_LOGIN, PER_PEER)
    }
}

/// The key a login name is kept under.
fn login_key(login: &str) -> String {
    login.chars().take(MAX_LOGIN_KEY).collect()
}

impl Throttle {
    pub fn new(per_login: Policy, per_peer: Policy) -> Self {
        Throttle {
            logins: Table::new(per_login),
            peers: Table::new(per_peer),
        }
    }

    /// Whether an attempt on `login` from `peer` may check its password;
    /// when allowed it is reserved and must be ended with [`Throttle::finish`].
    pub fn begin(&mut self, login: &str, peer: Option<IpAddr>, now: u64) -> Verdict {
        let key = login_key(login);
        if let Some(until) = peer.and_then(|p| self.peers.check(&p, now)) {
            return Verdict::Locked {
                scope: Scope::Peer,
                until,
            };
        }
        if let Some(until) = self.logins.check(&key, now) {
            return Verdict::Locked {
                scope: Scope::Login,
                until,
            };
        }
        self.logins.begin(&key, now);
        if let Some(p) = peer {
            self.peers.begin(&p, now);
        }
        Verdict::Allow
    }

    /// The outcome of an allowed attempt; returns the scopes it locked.
    pub fn finish(&mut self, login: &str, peer: Option<IpAddr>, ok: bool, now: u64) -> Vec<Scope> {
        let mut locked = Vec::new();
        if self.logins.finish(&login_key(login), ok, now) {
            locked.push(Scope::Login);
        }
        // A success does not clear the address's failures: one valid account
        // must not reset a guessing run against the others.
        if let Some(p) = peer {
            if !ok && self.peers.finish(&p, false, now) {
                locked.push(Scope::Peer);
            } else if ok {
                if let Some(r) = self.peers.records.get_mut(&p) {
                    r.pending = r.pending.saturating_sub(1);
                }
            }
        }
        locked
    }

    /// Ends an allowed attempt that could not be judged (the database did
    /// not answer, no hashing slot): neither a failure nor a success.
    pub fn abandon(&mut self, login: &str, peer: Option<IpAddr>) {
        if let Some(r) = self.logins.records.get_mut(&login_key(login)) {
            r.pending = r.pending.saturating_sub(1);
        }
        if let Some(r) = peer.and_then(|p| self.peers.records.get_mut(&p)) {
            r.pending = r.pending.saturating_sub(1);
        }
    }

    /// Records kept (logins, peers).
    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        (self.logins.records.len(), self.peers.records.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;
    const MIN: u64 = 60_000;

    fn peer(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 168, 1, n]))
    }

    fn fail(t: &mut Throttle, login: &str, p: Option<IpAddr>, now: u64) -> Vec<Scope> {
        assert_eq!(t.begin(login, p, now), Verdict::Allow, "{login} at {now}");
        t.finish(login, p, false, now)
    }

    #[test]
    fn five_failures_lock_the_login_and_the_lockout_doubles() {
        let mut t = Throttle::default();
        for i in 0..4 {
            assert!(fail(&mut t, "duty", peer(1), T0 + i).is_empty());
        }
        assert_eq!(fail(&mut t, "duty", peer(1), T0 + 4), [Scope::Login]);
        // Locked: even the right password is not checked, from anywhere.
        let locked = Verdict::Locked {
            scope: Scope::Login,
            until: T0 + 4 + 15 * MIN,
        };
        assert_eq!(t.begin("duty", peer(2), T0 + 5), locked);
        assert_eq!(t.begin("duty", None, T0 + 4 + 15 * MIN - 1), locked);
        // Other logins are not affected.
        assert_eq!(t.begin("manager", peer(2), T0 + 6), Verdict::Allow);
        t.finish("manager", peer(2), true, T0 + 6);
        // After the lockout: five more failures lock it for twice as long.
        let back = T0 + 4 + 15 * MIN;
        for i in 0..4 {
            assert!(fail(&mut t, "duty", peer(3), back + i).is_empty());
        }
        assert_eq!(fail(&mut t, "duty", peer(3), back + 4), [Scope::Login]);
        assert_eq!(
            t.begin("duty", peer(3), back + 5),
            Verdict::Locked {
                scope: Scope::Login,
                until: back + 4 + 30 * MIN
            }
        );
    }

    #[test]
    fn failures_outside_the_window_are_forgotten_and_a_success_resets() {
        let mut t = Throttle::default();
        for i in 0..4 {
            fail(&mut t, "duty", None, T0 + i);
        }
        // 15 minutes later the run starts again.
        for i in 0..4 {
            assert!(fail(&mut t, "duty", None, T0 + 15 * MIN + i).is_empty());
        }
        assert_eq!(t.begin("duty", None, T0 + 16 * MIN), Verdict::Allow);
        assert!(t.finish("duty", None, true, T0 + 16 * MIN).is_empty());
        for i in 0..4 {
            assert!(fail(&mut t, "duty", None, T0 + 17 * MIN + i).is_empty());
        }
    }

    #[test]
    fn a_concurrent_burst_gets_no_more_checks_than_the_allowance() {
        let mut t = Throttle::default();
        let allowed = (0..200)
            .filter(|_| t.begin("duty", peer(1), T0) == Verdict::Allow)
            .count();
        assert_eq!(allowed, 5);
        for _ in 0..5 {
            t.finish("duty", peer(1), false, T0 + 1);
        }
        assert!(matches!(
            t.begin("duty", peer(1), T0 + 2),
            Verdict::Locked {
                scope: Scope::Login,
                ..
            }
        ));
    }

    #[test]
    fn one_address_guessing_many_logins_is_locked_by_address() {
        let mut t = Throttle::default();
        for i in 0..29u64 {
            assert!(fail(&mut t, &format!("user{i}"), peer(9), T0 + i).is_empty());
        }
        assert_eq!(fail(&mut t, "user29", peer(9), T0 + 29), [Scope::Peer]);
        assert!(matches!(
            t.begin("anyone", peer(9), T0 + 30),
            Verdict::Locked {
                scope: Scope::Peer,
                ..
            }
        ));
        // Other addresses still log in, and a success from the guessing
        // address (were it allowed) would not have reset its run.
        assert_eq!(t.begin("anyone", peer(10), T0 + 31), Verdict::Allow);
    }

    #[test]
    fn a_flood_of_new_logins_keeps_the_tables_bounded_and_locks_survive() {
        let small = Policy {
            max_keys: 100,
            ..PER_LOGIN
        };
        let mut t = Throttle::new(
            small,
            Policy {
                max_keys: 100,
                ..PER_PEER
            },
        );
        for i in 0..5 {
            fail(&mut t, "duty", None, T0 + i);
        }
        for i in 0..10_000u64 {
            let login = format!("{}{i}", "x".repeat(1_000));
            if t.begin(&login, peer((i % 250) as u8), T0 + 10 + i) == Verdict::Allow {
                t.finish(&login, peer((i % 250) as u8), false, T0 + 10 + i);
            }
            let (l, p) = t.sizes();
            assert!(l <= 100 && p <= 100, "{l} {p}");
        }
        // The locked login was not evicted in favour of idle ones.
        assert!(matches!(
            t.begin("duty", None, T0 + 20_000),
            Verdict::Locked { .. }
        ));
    }
}
