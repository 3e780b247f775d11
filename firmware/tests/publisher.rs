//! Publisher tests: exact topics and payload bytes, QoS/retain flags, and the
//! shared `seq` counter (starts at 0, shared by telemetry and events, not
//! consumed by a failed encode).

use firmware::node::{NodeIdentity, Outgoing, PublishError, Publisher, QOS};
use wire::{
    ChannelId, ChannelStatus, Cmd, CmdId, CmdOp, EventLevel, NodeId, Quantity, Reading, SiteId,
    Telemetry,
};

const TS: u64 = 1_764_000_000_123;

fn publisher() -> Publisher {
    Publisher::new(NodeIdentity {
        site: SiteId::new("home_a").unwrap(),
        node: NodeId::new("n01").unwrap(),
        boot: 17,
    })
}

fn rc1(v: i32) -> Reading {
    Reading {
        id: ChannelId::new("rc1").unwrap(),
        q: Quantity::ResidualCurrent,
        v,
        s: ChannelStatus::Ok,
    }
}

fn text<'a>(o: &Outgoing<'a>) -> &'a str {
    std::str::from_utf8(o.payload).unwrap()
}

#[test]
fn first_telemetry_is_seq_0_with_exact_bytes() {
    let mut p = publisher();
    let mut buf = [0u8; 512];
    let o = p.telemetry(TS, &[rc1(312)], &mut buf).unwrap();
    assert_eq!(o.topic.as_str(), "fire/v1/home_a/n01/telemetry");
    assert_eq!(
        text(&o),
        r#"{"boot":17,"seq":0,"ts":1764000000123,"ch":[{"id":"rc1","q":"residual_current","v":312,"s":"ok"}]}"#
    );
    assert_eq!(o.qos, 1);
    assert_eq!(QOS, 1);
    assert!(!o.retain);
    // The gateway's decoder reads back exactly what was sent.
    let t: Telemetry = wire::decode_core(o.payload).unwrap();
    assert_eq!((t.boot, t.seq, t.ts), (17, 0, TS));
    assert_eq!(t.ch.as_slice(), &[rc1(312)]);
    assert_eq!(p.next_seq(), 1);
}

#[test]
fn telemetry_with_no_readings_and_with_a_fault() {
    let mut p = publisher();
    let mut buf = [0u8; 512];
    let o = p.telemetry(0, &[], &mut buf).unwrap();
    assert_eq!(text(&o), r#"{"boot":17,"seq":0,"ts":0,"ch":[]}"#);
    let open = Reading {
        id: ChannelId::new("t1").unwrap(),
        q: Quantity::Temperature,
        v: -400,
        s: ChannelStatus::Open,
    };
    let o = p.telemetry(5, &[rc1(0), open], &mut buf).unwrap();
    assert_eq!(
        text(&o),
        r#"{"boot":17,"seq":1,"ts":5,"ch":[{"id":"rc1","q":"residual_current","v":0,"s":"ok"},{"id":"t1","q":"temperature","v":-400,"s":"open"}]}"#
    );
}

#[test]
fn event_has_exact_bytes_and_shares_seq_with_telemetry() {
    let mut p = publisher();
    let mut buf = [0u8; 512];
    assert!(p.telemetry(TS, &[rc1(312)], &mut buf).is_ok());
    let rc = ChannelId::new("rc1").unwrap();
    let o = p
        .event(TS + 1, &rc, EventLevel::Alarm, 312, &mut buf)
        .unwrap();
    assert_eq!(o.topic.as_str(), "fire/v1/home_a/n01/event");
    assert_eq!(
        text(&o),
        r#"{"boot":17,"seq":1,"ts":1764000000124,"ch":"rc1","level":"alarm","v":312}"#
    );
    assert_eq!((o.qos, o.retain), (1, false));
    let o = p.telemetry(TS + 2, &[rc1(5)], &mut buf).unwrap();
    assert!(text(&o).starts_with(r#"{"boot":17,"seq":2,"#));
    let o = p
        .event(TS + 3, &rc, EventLevel::PreAlarm, -7, &mut buf)
        .unwrap();
    assert_eq!(
        text(&o),
        r#"{"boot":17,"seq":3,"ts":1764000000126,"ch":"rc1","level":"pre_alarm","v":-7}"#
    );
    assert_eq!(p.next_seq(), 4);
}

#[test]
fn failed_encode_does_not_consume_a_seq() {
    let mut p = publisher();
    let mut tiny = [0u8; 16];
    assert_eq!(
        p.telemetry(TS, &[rc1(312)], &mut tiny),
        Err(PublishError::BufferFull)
    );
    let rc = ChannelId::new("rc1").unwrap();
    assert_eq!(
        p.event(TS, &rc, EventLevel::Alarm, 312, &mut tiny),
        Err(PublishError::BufferFull)
    );
    assert_eq!(
        p.telemetry(TS, &[rc1(312)], &mut []),
        Err(PublishError::BufferFull)
    );
    assert_eq!(p.next_seq(), 0);

    // A buffer exactly one byte short fails; exactly the right size succeeds.
    let expected = r#"{"boot":17,"seq":0,"ts":1764000000123,"ch":[{"id":"rc1","q":"residual_current","v":312,"s":"ok"}]}"#;
    let mut short = vec![0u8; expected.len() - 1];
    assert_eq!(
        p.telemetry(TS, &[rc1(312)], &mut short),
        Err(PublishError::BufferFull)
    );
    let mut exact = vec![0u8; expected.len()];
    let o = p.telemetry(TS, &[rc1(312)], &mut exact).unwrap();
    assert_eq!(text(&o), expected);
    assert_eq!(p.next_seq(), 1);
}

#[test]
fn too_many_channels_is_refused_without_consuming_a_seq() {
    let mut p = publisher();
    let mut buf = vec![0u8; 8192];
    let many: Vec<Reading> = (0..wire::MAX_CHANNELS + 1).map(|i| rc1(i as i32)).collect();
    assert_eq!(
        p.telemetry(TS, &many, &mut buf),
        Err(PublishError::TooManyChannels)
    );
    assert_eq!(p.next_seq(), 0);
    let o = p
        .telemetry(TS, &many[..wire::MAX_CHANNELS], &mut buf)
        .unwrap();
    let t: Telemetry = wire::decode_core(o.payload).unwrap();
    assert_eq!(t.ch.len(), wire::MAX_CHANNELS);
    assert_eq!(p.next_seq(), 1);
}

#[test]
fn seq_counts_every_numbered_message() {
    let mut p = publisher();
    let mut buf = [0u8; 256];
    let rc = ChannelId::new("rc1").unwrap();
    for expected in 0u32..1000 {
        assert_eq!(p.next_seq(), expected);
        let o = if expected % 2 == 0 {
            p.telemetry(TS, &[rc1(1)], &mut buf).unwrap()
        } else {
            p.event(TS, &rc, EventLevel::Normal, 1, &mut buf).unwrap()
        };
        let needle = format!(r#","seq":{expected},"#);
        assert!(text(&o).contains(&needle), "{}", text(&o));
    }
}

#[test]
fn birth_is_retained_with_exact_bytes() {
    let p = publisher();
    let mut buf = [0u8; 256];
    let o = p.birth("0.1.0", None, &mut buf).unwrap();
    assert_eq!(o.topic.as_str(), "fire/v1/home_a/n01/status");
    assert_eq!(text(&o), r#"{"state":"online","fw":"0.1.0","boot":17}"#);
    assert_eq!((o.qos, o.retain), (1, true));
    let o = p.birth("0.1.0", Some(42), &mut buf).unwrap();
    assert_eq!(
        text(&o),
        r#"{"state":"online","fw":"0.1.0","boot":17,"dropped":42}"#
    );
    assert_eq!(
        p.birth(&"9".repeat(25), None, &mut buf),
        Err(PublishError::FwVersionTooLong)
    );
    assert!(p.birth(&"9".repeat(24), None, &mut buf).is_ok());
    assert_eq!(
        p.birth("0.1.0", None, &mut [0u8; 10]),
        Err(PublishError::BufferFull)
    );
    // Status messages are not numbered.
    assert_eq!(p.next_seq(), 0);
}

#[test]
fn last_will_is_exactly_offline_and_retained() {
    let p = publisher();
    let mut buf = [0u8; 64];
    let o = p.last_will(&mut buf).unwrap();
    assert_eq!(o.topic.as_str(), "fire/v1/home_a/n01/status");
    assert_eq!(o.payload, br#"{"state":"offline"}"#);
    assert_eq!((o.qos, o.retain), (1, true));
    assert_eq!(p.last_will(&mut [0u8; 18]), Err(PublishError::BufferFull));
    assert!(p.last_will(&mut [0u8; 19]).is_ok());
}

#[test]
fn ack_echoes_the_cmd_id() {
    let p = publisher();
    let mut buf = [0u8; 128];
    let cmd = Cmd::new(CmdId::new("c-42").unwrap(), CmdOp::Reset);
    let o = p.ack(&cmd, true, &mut buf).unwrap();
    assert_eq!(o.topic.as_str(), "fire/v1/home_a/n01/cmd/ack");
    assert_eq!(text(&o), r#"{"id":"c-42","ok":true}"#);
    assert_eq!((o.qos, o.retain), (1, false));
    let o = p.ack(&cmd, false, &mut buf).unwrap();
    assert_eq!(text(&o), r#"{"id":"c-42","ok":false}"#);
    assert_eq!(p.next_seq(), 0);
}

#[test]
fn longest_identity_topics_fit() {
    let p = Publisher::new(NodeIdentity {
        site: SiteId::new(&"s".repeat(32)).unwrap(),
        node: NodeId::new(&"n".repeat(32)).unwrap(),
        boot: u32::MAX,
    });
    let mut buf = [0u8; 128];
    let o = p
        .ack(
            &Cmd::new(CmdId::new(&"C".repeat(32)).unwrap(), CmdOp::Ping),
            true,
            &mut buf,
        )
        .unwrap();
    assert_eq!(
        o.topic.as_str(),
        format!("fire/v1/{}/{}/cmd/ack", "s".repeat(32), "n".repeat(32))
    );
    let o = p.birth("1.2.3", None, &mut buf).unwrap();
    assert_eq!(
        text(&o),
        r#"{"state":"online","fw":"1.2.3","boot":4294967295}"#
    );
}
