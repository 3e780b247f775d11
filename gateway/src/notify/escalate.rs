//! Who hears about an open alarm, and when: the pure plan, with time passed
//! in. An alarm goes to the duty desk (值班) at once; not acknowledged after
//! `manager_after` it goes to the site manager (机构负责人) too, after
//! `bureau_after` to the bureau (民政局); while it stays unacknowledged the
//! duty desk is reminded every `remind_every`. Acknowledging or clearing it
//! ends the plan.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Duty,
    Manager,
    Bureau,
}

impl Tier {
    pub fn code(self) -> &'static str {
        match self {
            Tier::Duty => "duty",
            Tier::Manager => "manager",
            Tier::Bureau => "bureau",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Raised,
    /// Not acknowledged for this many seconds.
    Escalated {
        after_s: u64,
    },
    /// The n-th reminder.
    Reminder {
        n: u32,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub manager_after_ms: u64,
    pub bureau_after_ms: u64,
    pub remind_every_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            manager_after_ms: 3 * 60_000,
            bureau_after_ms: 10 * 60_000,
            remind_every_ms: 5 * 60_000,
        }
    }
}

#[derive(Debug, Clone)]
struct Open {
    raised_at: u64,
    reached: Tier,
    reminders: u32,
}

/// The open alarms' plans.
#[derive(Debug, Default)]
pub struct Escalator {
    pub policy: Policy,
    open: BTreeMap<i64, Open>,
}

impl Escalator {
    pub fn new(policy: Policy) -> Self {
        Escalator {
            policy,
            open: BTreeMap::new(),
        }
    }

    /// An alarm was raised at `raised_at`: the duty desk hears now. An alarm
    /// already tracked is not announced twice. An alarm found late (e.g. at
    /// start-up) is caught up with the tiers its age has reached.
    pub fn raised(&mut self, id: i64, raised_at: u64, now: u64) -> Vec<(Tier, Reason)> {
        if self.open.contains_key(&id) {
            return Vec::new();
        }
        self.open.insert(
            id,
            Open {
                raised_at,
                reached: Tier::Duty,
                reminders: 0,
            },
        );
        let mut out = vec![(Tier::Duty, Reason::Raised)];
        out.extend(self.escalate(id, now));
        out
    }

    /// Acknowledged or cleared: nobody else is told.
    pub fn settled(&mut self, id: i64) -> bool {
        self.open.remove(&id).is_some()
    }

    pub fn is_open(&self, id: i64) -> bool {
        self.open.contains_key(&id)
    }

    fn escalate(&mut self, id: i64, now: u64) -> Vec<(Tier, Reason)> {
        let p = self.policy;
        let Some(o) = self.open.get_mut(&id) else {
            return Vec::new();
        };
        let age = now.saturating_sub(o.raised_at);
        let mut out = Vec::new();
        if o.reached < Tier::Manager && age >= p.manager_after_ms {
            o.reached = Tier::Manager;
            out.push((
                Tier::Manager,
                Reason::Escalated {
                    after_s: p.manager_after_ms / 1000,
                },
            ));
        }
        if o.reached < Tier::Bureau && age >= p.bureau_after_ms {
            o.reached = Tier::Bureau;
            out.push((
                Tier::Bureau,
                Reason::Escalated {
                    after_s: p.bureau_after_ms / 1000,
                },
            ));
        }
        if let Some(due) = age.checked_div(p.remind_every_ms) {
            let due = due as u32;
            if due > o.reminders {
                o.reminders = due;
                out.push((Tier::Duty, Reason::Reminder { n: due }));
            }
        }
        out
    }

    /// What is due at `now`, per alarm.
    pub fn due(&mut self, now: u64) -> Vec<(i64, Tier, Reason)> {
        let ids: Vec<i64> = self.open.keys().copied().collect();
        let mut out = Vec::new();
        for id in ids {
            for (tier, reason) in self.escalate(id, now) {
                out.push((id, tier, reason));
            }
        }
        out
    }

    /// When the next step falls due, if any alarm is open.
    pub fn next_due(&self) -> Option<u64> {
        let p = self.policy;
        self.open
            .values()
            .map(|o| {
                let mut next = u64::MAX;
                if o.reached < Tier::Manager {
                    next = next.min(o.raised_at + p.manager_after_ms);
                } else if o.reached < Tier::Bureau {
                    next = next.min(o.raised_at + p.bureau_after_ms);
                }
                if p.remind_every_ms > 0 {
                    next = next.min(o.raised_at + (o.reminders as u64 + 1) * p.remind_every_ms);
                }
                next
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duty_then_manager_at_3_min_then_bureau_at_10_with_reminders() {
        let mut e = Escalator::new(Policy::default());
        assert_eq!(e.raised(7, 0, 0), [(Tier::Duty, Reason::Raised)]);
        assert_eq!(e.raised(7, 0, 1), []);
        assert_eq!(e.due(179_999), []);
        assert_eq!(e.next_due(), Some(180_000));
        assert_eq!(
            e.due(180_000),
            [(7, Tier::Manager, Reason::Escalated { after_s: 180 })]
        );
        assert_eq!(e.due(300_000), [(7, Tier::Duty, Reason::Reminder { n: 1 })]);
        assert_eq!(
            e.due(600_000),
            [
                (7, Tier::Bureau, Reason::Escalated { after_s: 600 }),
                (7, Tier::Duty, Reason::Reminder { n: 2 })
            ]
        );
        assert!(e.settled(7));
        assert_eq!(e.due(10_000_000), []);
        assert_eq!(e.next_due(), None);
    }

    #[test]
    fn an_acknowledged_alarm_goes_no_further() {
        let mut e = Escalator::new(Policy::default());
        e.raised(1, 0, 0);
        e.settled(1);
        assert_eq!(e.due(3_600_000), []);
    }

    #[test]
    fn an_alarm_found_late_catches_up_at_once() {
        let mut e = Escalator::new(Policy::default());
        let got = e.raised(3, 0, 11 * 60_000);
        assert_eq!(got[0], (Tier::Duty, Reason::Raised));
        assert!(got.contains(&(Tier::Manager, Reason::Escalated { after_s: 180 })));
        assert!(got.contains(&(Tier::Bureau, Reason::Escalated { after_s: 600 })));
    }
}
