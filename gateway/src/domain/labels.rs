//! Chinese names (简体中文) for the codes the API and the store use, and the
//! display of integer wire values in their units. Codes stay English and
//! stable for programs; people read the labels.

use wire::Quantity;

/// 剩余电流, 温度, ….
pub fn quantity(q: &str) -> &'static str {
    match q {
        "residual_current" => "剩余电流",
        "temperature" => "温度",
        "arc" => "故障电弧",
        "current" => "电流",
        "voltage" => "电压",
        "water_pressure" => "消防水压",
        "water_level" => "消防水位",
        "loop_current" => "回路电流",
        _ => "",
    }
}

/// 预警 / 报警 / 故障 / 离线.
pub fn level(l: &str) -> &'static str {
    match l {
        "pre_alarm" => "预警",
        "alarm" => "报警",
        "fault" => "故障",
        "offline" => "离线",
        _ => "",
    }
}

/// A channel status on the wire, as a sensor condition.
pub fn channel_status(s: &str) -> &'static str {
    match s {
        "ok" => "正常",
        "open" => "开路",
        "short" => "短路",
        "range" => "超量程",
        "fault" => "故障",
        _ => "异常",
    }
}

/// State of an alarm record.
pub fn alarm_state(s: &str) -> &'static str {
    match s {
        "active" => "报警中",
        "latched" => "已恢复，待复位",
        "cleared" => "已解除",
        _ => "",
    }
}

/// Which desk an alarm belongs to.
pub fn alarm_kind(k: &str) -> &'static str {
    match k {
        "electrical_fire" => "电气火灾监控",
        "fire_facility" => "消防设施监测",
        "fault" => "设备故障",
        "offline" => "设备离线",
        _ => "",
    }
}

/// What a notice record tells the duty desk (a record raised and settled
/// at once, not an alarm), by its cause; `None` for alarms.
pub fn notice(cause: &str) -> Option<&'static str> {
    match cause {
        "seq_restart" => Some("节点消息序号重新开始（换板或计数归零），已确认后恢复判定"),
        "quantity_changed" => Some("通道测量量变更：报警复位前不接收新读数，请核实后复位"),
        _ => None,
    }
}

/// Ticket category.
pub fn category(c: &str) -> &'static str {
    match c {
        "electrical_fire" => "电气火灾隐患",
        "fire_facility" => "消防设施隐患",
        "device_fault" => "设备故障",
        "offline" => "设备离线",
        _ => "",
    }
}

/// Where a ticket came from (the ledger's 来源).
pub fn ticket_source(s: &str) -> &'static str {
    match s {
        "sensor_alarm" => "监测报警",
        "sensor_fault" => "设备故障",
        "offline" => "设备离线",
        "inspection" => "人工排查",
        _ => "",
    }
}

/// Ticket grade (kept in one place with the category above).
pub fn grade(g: &str) -> &'static str {
    match g {
        "general" => "一般隐患",
        "major" => "重大隐患",
        _ => "",
    }
}

/// Ticket statuses of the closed loop, in order, with their Chinese names.
pub const TICKET_STATUSES: &[(&str, &str)] = &[
    ("pending_registration", "待登记"),
    ("registered", "已登记"),
    ("listed", "已挂牌"),
    ("rectifying", "整改中"),
    ("pending_review", "待复查"),
    ("pending_acceptance", "待验收"),
    ("closed", "已销号"),
];

/// Ticket status.
pub fn ticket_status(s: &str) -> &'static str {
    TICKET_STATUSES
        .iter()
        .find(|(code, _)| *code == s)
        .map_or("", |(_, label)| label)
}

/// A wire value in its unit, for people: `512 mA`, `81.2 °C`, `0.25 MPa`.
pub fn value(q: &str, v: i64) -> String {
    let tenths = |v: i64, unit: &str| {
        let sign = if v < 0 { "-" } else { "" };
        format!("{sign}{}.{} {unit}", v.abs() / 10, v.abs() % 10)
    };
    match Quantity::from_wire(q) {
        Some(Quantity::Temperature) => tenths(v, "°C"),
        Some(Quantity::Voltage) => tenths(v, "V"),
        Some(Quantity::LoopCurrent) => format!("{}.{:03} mA", v / 1000, (v % 1000).abs()),
        Some(q) => format!("{v} {}", q.unit()),
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_units() {
        assert_eq!(value("residual_current", 512), "512 mA");
        assert_eq!(value("temperature", 812), "81.2 °C");
        assert_eq!(value("temperature", -45), "-4.5 °C");
        assert_eq!(value("voltage", 2200), "220.0 V");
        assert_eq!(value("loop_current", 3600), "3.600 mA");
        assert_eq!(value("water_pressure", 250), "250 kPa");
        assert_eq!(ticket_status("pending_registration"), "待登记");
        assert_eq!(level("alarm"), "报警");
        for q in Quantity::ALL {
            assert!(!quantity(q.as_str()).is_empty(), "{q} has no label");
        }
    }
}
