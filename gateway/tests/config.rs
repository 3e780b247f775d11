//! Configuration loading: the shipped sample is valid, and a bad file gets
//! every problem at once, each with its path.

mod common;

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

#[test]
fn notification_settings_are_checked_with_their_paths() {
    let text = r#"
        [notify]
        manager_after_secs = 600
        bureau_after_secs = 300
        [[notify.channels]]
        name = "a"
        kind = "sms"
        url = "ftp://x"
        failover = "nowhere"
        [[notify.channels]]
        name = "a"
        kind = "pager"
        url = "http://x"
        [[notify.routes]]
        sites = ["*"]
        duty = ["ghost"]
          [[notify.routes.shifts]]
          from = "8:00"
          to = "20:00"
    "#;
    let err = Config::from_toml(text).expect_err("invalid");
    let msg = err.to_string();
    // A wrong type or unknown kind is a parse error that names the line.
    assert!(msg.contains("line 12") && msg.contains("`pager`"), "{msg}");
    let text = text.replace("kind = \"pager\"", "kind = \"wecom\"");
    let err = Config::from_toml(&text).expect_err("invalid");
    let got: Vec<String> = err.0.iter().map(|i| i.to_string()).collect();
    for want in [
        "notify.channels[0].url: must be an http:// or https:// URL",
        "notify.channels[0].phones: an SMS channel needs at least one phone",
        "notify.channels[0].failover: must name another channel",
        "notify.channels[0].name: is used by another channel",
        "notify.routes[0].duty[0]: names no channel",
        "notify.routes[0].shifts[0].from: must be HH:MM",
        "notify.bureau_after_secs: must be later than manager_after_secs",
    ] {
        assert!(
            got.iter().any(|g| g == want),
            "missing {want:?} in {got:#?}"
        );
    }
}

/// https everywhere is accepted (no "put a TLS proxy in front"); the extra
/// CA file must exist and hold certificates; PostgreSQL's sslmode must
/// verify the server or not use TLS at all.
#[test]
fn outgoing_tls_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let ca = common::tls::TestCa::new("bureau private CA").write(dir.path(), "ca.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let text = |extra_ca: &std::path::Path, db: &str| {
        format!(
            r#"
            [storage]
            database_url = "{db}"
            [sink]
            url = "https://tsdb.bureau.example:8428"
            [notify]
            [[notify.channels]]
            name = "ding"
            kind = "dingtalk"
            url = "https://oapi.dingtalk.com/robot/send?access_token=t"
            [[notify.channels]]
            name = "wecom"
            kind = "wecom"
            url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"
            [[notify.channels]]
            name = "feishu"
            kind = "feishu"
            url = "https://open.feishu.cn/open-apis/bot/v2/hook/x"
            [tls]
            extra_ca_file = "{}"
            "#,
            extra_ca.display()
        )
    };
    let good_db = format!(
        "postgres://g@db.bureau.example/fire?sslmode=verify-full&sslrootcert={}",
        ca.display()
    );
    let c = Config::from_toml(&text(&ca, &good_db)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.database_url(), good_db);
    // The extra CA stands in for a missing sslrootcert; no sslmode = no TLS.
    let c = Config::from_toml(&text(&ca, "postgres://g@db/fire?sslmode=verify-full"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        c.database_url()
            .starts_with("postgres://g@db/fire?sslmode=verify-full&sslrootcert=%2F"),
        "{}",
        c.database_url()
    );
    let c = Config::from_toml(&text(&ca, "postgres://g@127.0.0.1/fire")).unwrap();
    assert_eq!(
        c.database_url(),
        "postgres://g@127.0.0.1/fire?sslmode=disable"
    );

    let bad_db = format!(
        "postgres://g@db/fire?sslmode=require&sslrootcert={}",
        dir.path().join("missing.pem").display()
    );
    let err = Config::from_toml(&text(&garbage, &bad_db)).expect_err("invalid");
    let got: Vec<String> = err.0.iter().map(|i| i.to_string()).collect();
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(
        got[0],
        "storage.database_url: sslmode=require does not verify the server's certificate and name; \
         use sslmode=verify-full (or sslmode=disable on a local socket or loopback)"
    );
    assert!(
        got[1].starts_with("storage.database_url: sslrootcert: cannot read ")
            && got[1].ends_with("missing.pem: No such file or directory (os error 2)"),
        "{got:#?}"
    );
    assert!(
        got[2].starts_with("tls.extra_ca_file: ")
            && got[2].ends_with("garbage.pem: certificate 1 does not parse as an X.509 CA certificate (BadEncoding)"),
        "{got:#?}"
    );
}
