//! What a ticket opened for an alarm looks like: its source, category,
//! grade, number prefix and title (简体中文), from the configuration. Pure.

use crate::alarms::runtime::{alarm_kind, CAUSE_SUPPLY};
use crate::config::Config;
use crate::domain::labels;
use crate::store::{AlarmKey, AlarmRow, TicketSpec};

/// A 隐患 ticket (`YH…`) for an alarm on a channel measuring `q`.
pub fn hazard(config: &Config, key: &AlarmKey, q: wire::Quantity, what: String) -> TicketSpec {
    let (site, loc) = config.place(&key.site, &key.node, &key.channel);
    TicketSpec {
        source: "sensor_alarm",
        category: alarm_kind(q),
        // The grade comes from configuration (e.g. a bedroom circuit in a
        // care home → 重大); 一般 otherwise.
        grade: config.channel_grade(&key.site, &key.node, &key.channel),
        prefix: "YH",
        reopen_window_ms: config.tickets.policy().reopen_window_ms,
        title: format!(
            "{site} {} {} {}{what}",
            key.node,
            key.channel,
            labels::quantity(q.as_str())
        ),
        location: loc,
    }
}

/// A 设备故障 ticket (`GZ…`).
pub fn fault(config: &Config, key: &AlarmKey, what: String) -> TicketSpec {
    let (site, loc) = config.place(&key.site, &key.node, &key.channel);
    let target = if key.channel.is_empty() {
        key.node.clone()
    } else {
        format!("{} {}", key.node, key.channel)
    };
    TicketSpec {
        source: "sensor_fault",
        category: "device_fault",
        grade: "general",
        prefix: "GZ",
        title: format!("{site} {target} {what}"),
        location: loc,
        reopen_window_ms: config.tickets.policy().reopen_window_ms,
    }
}

/// A 离线 ticket (`LX…`) for a node, or a whole site (`node` empty).
pub fn offline(config: &Config, key: &AlarmKey) -> TicketSpec {
    let (site, loc) = config.place(&key.site, &key.node, &key.channel);
    let (what, target) = if key.node.is_empty() {
        ("机构网络中断，全部节点离线", String::new())
    } else {
        ("节点离线", key.node.clone())
    };
    TicketSpec {
        source: "offline",
        category: "offline",
        grade: "general",
        prefix: "LX",
        title: format!("{site} {target} {what}")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        location: loc,
        reopen_window_ms: config.tickets.policy().reopen_window_ms,
    }
}

/// The ticket a suppressed alarm gets once its root cause is gone: the one
/// it would have had when raised.
pub fn released_ticket(config: &Config, row: &AlarmRow) -> Option<TicketSpec> {
    let key = AlarmKey {
        site: row.site.clone(),
        node: row.node.clone(),
        channel: row.channel.clone(),
        cause: row.cause.clone(),
    };
    let q = row.quantity.as_deref().and_then(wire::Quantity::from_wire);
    match (row.kind.as_str(), row.level.as_str(), q) {
        ("fault", _, _) if key.cause == CAUSE_SUPPLY => {
            Some(fault(config, &key, "主电故障".into()))
        }
        ("fault", _, Some(q)) => Some(fault(
            config,
            &key,
            format!("{}传感器故障", labels::quantity(q.as_str())),
        )),
        (_, "alarm", Some(q)) => Some(hazard(config, &key, q, "超限（根因恢复后仍在报警）".into())),
        _ => None,
    }
}
