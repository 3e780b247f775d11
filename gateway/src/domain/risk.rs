//! A site's risk grade for the bureau (风险分级: 红/橙/黄/蓝), from its open
//! hazards, overdue tickets and recent fire alarms. Pure; the store counts.
//!
//! - 红 (red): an open 重大 hazard, or two or more overdue tickets;
//! - 橙 (orange): an overdue ticket, three or more open hazards, or ten or
//!   more fire alarms (报警) in the last 30 days;
//! - 黄 (yellow): any open hazard or any fire alarm in 30 days;
//! - 蓝 (blue): none of these.

use serde::Serialize;

/// A site's figures behind its grade.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    /// Tickets not closed (any category).
    pub open: i64,
    /// Open 电气火灾/消防设施 hazards.
    pub hazards: i64,
    /// Of those, 重大.
    pub major: i64,
    /// Open tickets past their deadline.
    pub overdue: i64,
    /// Fire alarms (报警 level, 电气火灾/消防设施) raised in the last 30 days.
    pub recent_alarms: i64,
}

/// red, orange, yellow or blue.
pub fn grade(f: &Figures) -> &'static str {
    if f.major > 0 || f.overdue >= 2 {
        "red"
    } else if f.overdue > 0 || f.hazards >= 3 || f.recent_alarms >= 10 {
        "orange"
    } else if f.hazards > 0 || f.recent_alarms > 0 {
        "yellow"
    } else {
        "blue"
    }
}

pub fn label(grade: &str) -> &'static str {
    match grade {
        "red" => "红 · 重大风险",
        "orange" => "橙 · 较大风险",
        "yellow" => "黄 · 一般风险",
        _ => "蓝 · 低风险",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades_follow_the_stated_thresholds() {
        let f = |hazards, major, overdue, recent_alarms| Figures {
            open: hazards,
            hazards,
            major,
            overdue,
            recent_alarms,
        };
        assert_eq!(grade(&f(0, 0, 0, 0)), "blue");
        assert_eq!(grade(&f(1, 0, 0, 0)), "yellow");
        assert_eq!(grade(&f(0, 0, 0, 1)), "yellow");
        assert_eq!(grade(&f(3, 0, 0, 0)), "orange");
        assert_eq!(grade(&f(0, 0, 0, 10)), "orange");
        assert_eq!(grade(&f(1, 0, 1, 0)), "orange");
        assert_eq!(grade(&f(1, 0, 2, 0)), "red");
        assert_eq!(grade(&f(1, 1, 0, 0)), "red");
        assert_eq!(label("red"), "红 · 重大风险");
    }
}
