//! Configuration loading: the shipped sample is valid, and a bad file gets
//! every problem at once, each with its path.

use gateway::config::Config;

#[test]
fn shipped_sample_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/gateway.toml");
    let c = Config::load(std::path::Path::new(path)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.sites.len(), 2);
    assert!(c.sink.is_some());
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let text = r#"
        [storage]
        database_url = "mysql://db/fire"
        [mqtt]
        brokr = "external"
        keep_alive_secs = 1
        [sink]
        url = "ftp://x"
        batch_size = 0
        spool_segment_bytes = 100
        spool_max_bytes = 150
        [rules.plasma]
        alarm = 1
        [rules.residual_current]
        pre_alarm = 600
        alarm = 500
        [[sites]]
        id = "Home A"
        [[sites]]
        id = "ok"
          [sites.rules.temperature]
          on_delay_ms = 60000
          [[sites.nodes]]
          id = "n01"
          offline_after_secs = 1
            [sites.nodes.rules.arc]
            hysteresis = 10
            [[sites.nodes.channels]]
            id = "rc-1"
            quantity = "residual_current"
            rule = { pre_alarm = 300, alarm = 5000 }
          [[sites.nodes]]
          id = "n01"
          locaton = "typo"
    "#;
    let err = Config::from_toml(text).expect_err("invalid");
    let got: Vec<String> = err.0.iter().map(|i| i.to_string()).collect();
    let want = [
        "mqtt.brokr: unknown key",
        "sites[1].nodes[1].locaton: unknown key",
        "mqtt.keep_alive_secs: must be at least 5",
        "storage.database_url: must start with sqlite:// or postgres://",
        "sink.url: must be an http:// or https:// URL",
        "sink.batch_size: must be at least 1",
        "sink.spool_segment_bytes: must be at least 4096",
        "sink.spool_max_bytes: must be at least twice spool_segment_bytes (a full spool drops whole segments)",
        "rules.plasma: unknown quantity",
        "rules.residual_current: the pre-alarm setpoint must be reached before the alarm setpoint (below it for a high rule, above it for a low rule)",
        "sites[1].rules.temperature: the on-delay of 60000 ms is too long for temperature: at most 39000 ms keeps the standard's response time",
        "sites[1].nodes[0].rules.arc: the hysteresis (return difference) 10 must be smaller than the distance 4 between the pre-alarm and alarm setpoints",
        "sites[0].id: must match [a-z0-9_-]{1,32}",
        "sites[1].nodes[0].channels[0].id: must match [a-z0-9_]{1,16}",
        "sites[1].nodes[0].channels[0].rule: the residual_current setpoint 5000 mA is above the allowed maximum of 1000 mA: the alarm would come too late",
        "sites[1].nodes[0].offline_after_secs: 1 s is shorter than the 10 s minimum",
        "sites[1].nodes[1].id: duplicate node id \"n01\"",
    ];
    for w in want {
        assert!(got.iter().any(|g| g == w), "missing {w:?} in {got:#?}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn syntax_and_type_errors_name_the_place() {
    let err = Config::from_toml("[http]\nlisten = 8080\n").expect_err("wrong type");
    let msg = err.to_string();
    assert!(msg.contains("listen") || msg.contains("line 2"), "{msg}");
    let err = Config::from_toml("[http\n").expect_err("bad toml");
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn empty_file_means_embedded_defaults() {
    let c = Config::from_toml("").unwrap();
    assert_eq!(c.mqtt.broker, gateway::config::BrokerMode::Embedded);
    assert!(c.sink.is_none());
    assert_eq!(c.storage.database_url(), "sqlite://./data/gateway.db");
}
