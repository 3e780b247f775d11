//! One channel's outgoing messages under its vendor's rate limit: the pure
//! part, with time passed in.
//!
//! Nothing is dropped. When messages arrive faster than the limit allows,
//! those waiting are sent as one grouped message (“…等 N 条报警”) the
//! moment the limit has room, fire alarms first. A storm is met early: once
//! only a quarter of the window's sends is left, messages are gathered for
//! a moment ([`GATHER_MS`]) and go out together, so the reserve lasts and a
//! later fire alarm is not held until the window frees. A vendor's rate-limit
//! answer blocks the channel for the vendor's penalty time; a failed send is
//! retried with doubling backoff; a message a channel cannot deliver (its
//! signature refused, or too many failures) is handed back for fail-over to
//! another channel.

use std::collections::VecDeque;

/// A message for one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// What it is about, e.g. `alarm:12:raised`, for the delivery log.
    pub key: String,
    pub site: String,
    pub alarm_id: Option<i64>,
    pub ticket_id: Option<i64>,
    /// A fire alarm (电气火灾/消防设施 报警): never dropped, sent first.
    pub fire: bool,
    /// One line, for grouping.
    pub summary: String,
    /// The full text.
    pub text: String,
    /// The machine-readable event (generic webhook).
    pub event: serde_json::Value,
    /// Send attempts so far.
    pub attempts: u32,
    /// When it was queued (set by [`Queue::push`]).
    pub queued_at: u64,
}

/// Sliding windows of sends: (limit, window ms) each.
#[derive(Debug, Clone)]
pub struct RateLimit {
    windows: Vec<(u32, u64)>,
    sent: VecDeque<u64>,
    blocked_until: u64,
}

impl RateLimit {
    pub fn new(windows: Vec<(u32, u64)>) -> Self {
        RateLimit {
            windows,
            sent: VecDeque::new(),
            blocked_until: 0,
        }
    }

    /// The earliest time a send is allowed.
    pub fn next_free(&self, now: u64) -> u64 {
        let mut at = now.max(self.blocked_until);
        for &(limit, window) in &self.windows {
            let limit = limit.max(1) as usize;
            // The sends inside the window ending at `at`.
            let inside: Vec<u64> = self
                .sent
                .iter()
                .copied()
                .filter(|&t| t + window > at)
                .collect();
            if inside.len() >= limit {
                // Free once the oldest that keeps us at the limit leaves.
                at = at.max(inside[inside.len() - limit] + window);
            }
        }
        at
    }

    /// The tightest window's limit.
    pub fn capacity(&self) -> usize {
        self.windows
            .iter()
            .map(|w| w.0 as usize)
            .min()
            .unwrap_or(usize::MAX)
    }

    /// How many more sends the tightest window allows at `now`.
    pub fn room(&self, now: u64) -> usize {
        if now < self.blocked_until {
            return 0;
        }
        self.windows
            .iter()
            .map(|&(limit, window)| {
                let used = self.sent.iter().filter(|&&t| t + window > now).count();
                (limit as usize).saturating_sub(used)
            })
            .min()
            .unwrap_or(usize::MAX)
    }

    pub fn record(&mut self, now: u64) {
        self.sent.push_back(now);
        let longest = self.windows.iter().map(|w| w.1).max().unwrap_or(0);
        while self.sent.front().is_some_and(|&t| t + longest <= now) {
            self.sent.pop_front();
        }
    }

    pub fn block(&mut self, until: u64) {
        self.blocked_until = self.blocked_until.max(until);
    }
}

/// What to do next on a channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Send this now (possibly a group of several messages).
    Send(Outgoing),
    /// Nothing can go before this time.
    WaitUntil(u64),
    Idle,
}

/// A send: the text and the messages it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub text: String,
    pub messages: Vec<Message>,
}

/// How long messages are gathered into one send once the reserve is reached.
pub const GATHER_MS: u64 = 2_000;

/// Attempts before a message is handed over to another channel.
pub const MAX_ATTEMPTS: u32 = 4;

/// One channel's queue.
#[derive(Debug)]
pub struct Queue {
    pub limit: RateLimit,
    waiting: VecDeque<Message>,
    retry_at: u64,
    backoff_ms: u64,
    max_text: usize,
}

impl Queue {
    pub fn new(limit: RateLimit, max_text: usize) -> Self {
        Queue {
            limit,
            waiting: VecDeque::new(),
            retry_at: 0,
            backoff_ms: 0,
            max_text,
        }
    }

    pub fn push(&mut self, mut m: Message, now: u64) {
        m.queued_at = now;
        // Fire alarms go ahead of everything that is not a fire alarm.
        if m.fire {
            let pos = self.waiting.iter().position(|w| !w.fire);
            match pos {
                Some(i) => self.waiting.insert(i, m),
                None => self.waiting.push_back(m),
            }
        } else {
            self.waiting.push_back(m);
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// What to send at `now`. When more are waiting than the limit has room
    /// for in this window, all of them go as one grouped message.
    pub fn next(&mut self, now: u64) -> Next {
        if self.waiting.is_empty() {
            return Next::Idle;
        }
        let free = self.limit.next_free(now).max(self.retry_at);
        if free > now {
            return Next::WaitUntil(free);
        }
        let room = self.limit.room(now);
        let reserve = (self.limit.capacity() / 4).max(1);
        if room <= reserve {
            // Storm: gather for a moment, then send what came as one.
            let first = self
                .waiting
                .iter()
                .map(|m| m.queued_at)
                .min()
                .unwrap_or(now);
            if now < first + GATHER_MS {
                return Next::WaitUntil(first + GATHER_MS);
            }
        }
        let messages: Vec<Message> = if self.waiting.len() > room.max(1) || room <= reserve {
            self.waiting.drain(..).collect()
        } else {
            self.waiting.pop_front().into_iter().collect()
        };
        let text = group_text(&messages, self.max_text);
        self.limit.record(now);
        Next::Send(Outgoing { text, messages })
    }

    /// The send went through.
    pub fn delivered(&mut self) {
        self.backoff_ms = 0;
        self.retry_at = 0;
    }

    /// The vendor said: too fast. The messages wait for the penalty time.
    pub fn rate_limited(&mut self, out: Outgoing, now: u64, penalty_ms: u64) {
        self.limit.block(now + penalty_ms);
        self.requeue(out.messages);
    }

    /// The send failed; retry with backoff. Messages past their attempts
    /// are returned for another channel.
    pub fn failed(&mut self, out: Outgoing, now: u64) -> Vec<Message> {
        self.backoff_ms = (self.backoff_ms * 2).clamp(1_000, 60_000);
        self.retry_at = now + self.backoff_ms;
        let (give_up, keep): (Vec<Message>, Vec<Message>) = out
            .messages
            .into_iter()
            .map(|mut m| {
                m.attempts += 1;
                m
            })
            .partition(|m| m.attempts >= MAX_ATTEMPTS);
        self.requeue(keep);
        give_up
    }

    fn requeue(&mut self, messages: Vec<Message>) {
        for mut m in messages.into_iter().rev() {
            // A retry is not held back for gathering.
            m.queued_at = 0;
            self.waiting.push_front(m);
        }
    }

    /// Everything waiting, for fail-over when the channel cannot deliver.
    pub fn drain(&mut self) -> Vec<Message> {
        self.waiting.drain(..).collect()
    }
}

/// The text of a send: one message's own text, or a group headed
/// “{first}等 N 条报警” listing each, within the vendor's size.
pub fn group_text(messages: &[Message], max_bytes: usize) -> String {
    match messages {
        [] => String::new(),
        [one] => truncate(&one.text, max_bytes),
        many => {
            let n = many.len();
            let fire = many.iter().filter(|m| m.fire).count();
            let mut text = format!("【报警汇总】{}等 {n} 条报警", many[0].summary);
            if fire > 0 {
                text.push_str(&format!("（其中火警类报警 {fire} 条）"));
            }
            text.push('：');
            for (i, m) in many.iter().enumerate() {
                let line = format!("\n{}. {}", i + 1, m.summary);
                let tail = format!("\n…另有 {} 条，请登录值班台查看", n - i);
                if text.len() + line.len() + tail.len() > max_bytes {
                    text.push_str(&tail);
                    return text;
                }
                text.push_str(&line);
            }
            text
        }
    }
}

fn truncate(s: &str, max_bytes: usize) -> String {
    if s.len() <= max_bytes {
        return s.to_string();
    }
    let mut end = max_bytes.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: usize, fire: bool) -> Message {
        Message {
            key: format!("alarm:{i}:raised"),
            site: "home_a".into(),
            alarm_id: Some(i as i64),
            ticket_id: None,
            fire,
            summary: format!("阳光养老院 n{i:02}/rc1 剩余电流 6{i:02} mA"),
            text: format!("【报警】阳光养老院 n{i:02}/rc1 剩余电流 6{i:02} mA（报警值 500 mA）"),
            event: serde_json::Value::Null,
            attempts: 0,
            queued_at: 0,
        }
    }

    #[test]
    fn the_window_allows_its_limit_and_frees_as_sends_age() {
        let mut l = RateLimit::new(vec![(20, 60_000)]);
        for i in 0..20 {
            assert_eq!(l.next_free(i * 100), i * 100);
            l.record(i * 100);
        }
        assert_eq!(l.room(2_000), 0);
        // The first send leaves the window at 60 s.
        assert_eq!(l.next_free(2_000), 60_000);
        // Two windows: 飞书's 5 a second binds first.
        let mut f = RateLimit::new(vec![(100, 60_000), (5, 1_000)]);
        for _ in 0..5 {
            f.record(0);
        }
        assert_eq!(f.next_free(10), 1_000);
    }

    #[test]
    fn a_storm_is_grouped_not_dropped_and_never_exceeds_the_limit() {
        let mut q = Queue::new(RateLimit::new(vec![(20, 60_000)]), 2000);
        let mut sent_at = Vec::new();
        let mut carried = 0;
        let mut now = 0;
        // 200 alarms in the first minute, one every 300 ms.
        for i in 0..200u64 {
            q.push(msg(i as usize, i % 3 == 0), i * 300);
            now = i * 300;
            while let Next::Send(out) = q.next(now) {
                sent_at.push(now);
                carried += out.messages.len();
                q.delivered();
            }
        }
        loop {
            match q.next(now) {
                Next::Send(out) => {
                    sent_at.push(now);
                    carried += out.messages.len();
                    q.delivered();
                }
                Next::WaitUntil(t) => now = t,
                Next::Idle => break,
            }
        }
        assert_eq!(carried, 200, "every alarm delivered");
        for (i, &t) in sent_at.iter().enumerate() {
            let in_window = sent_at[..=i].iter().filter(|&&s| s + 60_000 > t).count();
            assert!(
                in_window <= 20,
                "send {i} at {t} is the {in_window}th in a minute"
            );
        }
        assert!(sent_at.len() <= 21, "{} sends", sent_at.len());
    }

    #[test]
    fn fire_alarms_jump_the_queue_and_groups_say_how_many() {
        let mut q = Queue::new(RateLimit::new(vec![(1, 60_000)]), 2000);
        q.push(msg(1, false), 0);
        q.push(msg(2, true), 0);
        q.push(msg(3, false), 0);
        // One send a minute: a storm at once; gathered for GATHER_MS.
        assert_eq!(q.next(0), Next::WaitUntil(GATHER_MS));
        let Next::Send(out) = q.next(GATHER_MS) else {
            panic!()
        };
        assert_eq!(out.messages[0].key, "alarm:2:raised");
        assert_eq!(out.messages.len(), 3);
        assert!(out.text.starts_with(
            "【报警汇总】阳光养老院 n02/rc1 剩余电流 602 mA等 3 条报警（其中火警类报警 1 条）："
        ));
        assert!(out.text.contains("\n3. 阳光养老院 n03/rc1"));
    }

    #[test]
    fn a_long_group_fits_the_vendor_size_and_says_what_is_left() {
        let many: Vec<Message> = (0..100).map(|i| msg(i, true)).collect();
        let text = group_text(&many, 2000);
        assert!(text.len() <= 2000, "{}", text.len());
        assert!(text.contains("条，请登录值班台查看"), "{text}");
        assert!(text.starts_with("【报警汇总】"));
        let one = group_text(&[msg(1, true)], 20);
        assert!(one.len() <= 20 && one.ends_with('…'), "{one}");
    }

    #[test]
    fn rate_limit_answers_block_failures_back_off_and_then_fail_over() {
        let mut q = Queue::new(RateLimit::new(vec![(20, 60_000)]), 2000);
        q.push(msg(1, true), 0);
        let Next::Send(out) = q.next(0) else { panic!() };
        // 钉钉 130101: blocked for 10 minutes.
        q.rate_limited(out, 0, 600_000);
        assert_eq!(q.next(1), Next::WaitUntil(600_000));
        let mut now = 600_000;
        let mut handed = Vec::new();
        for _ in 0..MAX_ATTEMPTS {
            let out = loop {
                match q.next(now) {
                    Next::Send(out) => break out,
                    Next::WaitUntil(t) => now = t,
                    Next::Idle => panic!("lost"),
                }
            };
            handed = q.failed(out, now);
        }
        assert_eq!(handed.len(), 1, "handed over after {MAX_ATTEMPTS} attempts");
        assert!(q.is_empty());
    }
}
