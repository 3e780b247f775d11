//! Contract v1 tests: exact encodings, round trips through both decoders,
//! and typed rejection of malformed input.

use wire::*;

fn ch(id: &str, q: Quantity, v: i32, s: ChannelStatus) -> Reading {
    Reading {
        id: ChannelId::new(id).unwrap(),
        q,
        v,
        s,
    }
}

fn design_telemetry() -> Telemetry {
    let mut t = Telemetry {
        boot: 17,
        seq: 4711,
        ts: 1_764_000_000_123,
        ch: Default::default(),
    };
    t.ch.push(ch("rc1", Quantity::ResidualCurrent, 312, ChannelStatus::Ok))
        .unwrap();
    t.ch.push(ch("t1", Quantity::Temperature, 456, ChannelStatus::Ok))
        .unwrap();
    t
}

fn enc<T: serde::Serialize>(v: &T) -> String {
    let mut buf = [0u8; 1024];
    let n = encode(v, &mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// Decodes with both front ends and checks they agree: the same value, or
/// both an error. The kind is the gateway's (`serde_json`) one: the no-heap
/// decoder reports the contract's own checks as `Schema` (see `decode_core`).
fn dec<T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    s: &[u8],
) -> Result<T, DecodeError> {
    let core = decode_core::<T>(s);
    #[cfg(feature = "std")]
    {
        let std = decode::<T>(s);
        match (&core, &std) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => panic!(
                "decoders disagree on {:?}: {core:?} vs {std:?}",
                String::from_utf8_lossy(s)
            ),
        }
        return std;
    }
    #[allow(unreachable_code)]
    core
}

#[test]
fn telemetry_encodes_exactly_as_design_md() {
    let s = enc(&design_telemetry());
    assert_eq!(
        s,
        r#"{"boot":17,"seq":4711,"ts":1764000000123,"ch":[{"id":"rc1","q":"residual_current","v":312,"s":"ok"},{"id":"t1","q":"temperature","v":456,"s":"ok"}]}"#
    );
    assert_eq!(dec::<Telemetry>(s.as_bytes()), Ok(design_telemetry()));
}

#[test]
fn status_and_last_will_encode_exactly() {
    let birth = Status {
        state: NodeState::Online,
        fw: Some("0.1.0".try_into().unwrap()),
        boot: Some(17),
        dropped: None,
    };
    assert_eq!(enc(&birth), r#"{"state":"online","fw":"0.1.0","boot":17}"#);
    assert_eq!(enc(&Status::offline()), r#"{"state":"offline"}"#);
    assert_eq!(
        dec::<Status>(br#"{"state":"offline"}"#),
        Ok(Status::offline())
    );
    assert_eq!(dec::<Status>(enc(&birth).as_bytes()), Ok(birth));
}

#[test]
fn event_cmd_and_ack_encode_exactly() {
    let ev = Event {
        boot: 17,
        seq: 4712,
        ts: 1_764_000_000_456,
        ch: ChannelId::new("rc1").unwrap(),
        level: EventLevel::Alarm,
        v: 612,
    };
    assert_eq!(
        enc(&ev),
        r#"{"boot":17,"seq":4712,"ts":1764000000456,"ch":"rc1","level":"alarm","v":612}"#
    );
    assert_eq!(dec::<Event>(enc(&ev).as_bytes()), Ok(ev));

    let cmd = Cmd::new(CmdId::new("c-42").unwrap(), CmdOp::Reset);
    assert_eq!(enc(&cmd), r#"{"id":"c-42","op":"reset"}"#);
    assert_eq!(dec::<Cmd>(enc(&cmd).as_bytes()), Ok(cmd));
    for op in CmdOp::ALL {
        let c = Cmd::new(CmdId::new("x").unwrap(), *op);
        assert_eq!(dec::<Cmd>(enc(&c).as_bytes()), Ok(c));
    }

    let ack = CmdAck {
        id: CmdId::new("c-42").unwrap(),
        ok: true,
    };
    assert_eq!(enc(&ack), r#"{"id":"c-42","ok":true}"#);
    assert_eq!(dec::<CmdAck>(enc(&ack).as_bytes()), Ok(ack));
}

fn config(pre: Option<i32>, alarm: Option<i32>, hyst: Option<i32>) -> Cmd {
    Cmd {
        ch: Some(ChannelId::new("rc1").unwrap()),
        pre_alarm: pre,
        alarm,
        hysteresis: hyst,
        ..Cmd::new(CmdId::new("cfg-12").unwrap(), CmdOp::Config)
    }
}

#[test]
fn config_cmd_encodes_exactly_and_round_trips() {
    let c = Cmd::config(
        CmdId::new("cfg-12").unwrap(),
        ChannelId::new("rc1").unwrap(),
        Some(300),
        450,
        None,
    );
    assert_eq!(c, config(Some(300), Some(450), None));
    assert_eq!(
        enc(&c),
        r#"{"id":"cfg-12","op":"config","ch":"rc1","pre_alarm":300,"alarm":450}"#
    );
    assert_eq!(dec::<Cmd>(enc(&c).as_bytes()), Ok(c));

    let c = config(None, Some(450), Some(30));
    assert_eq!(
        enc(&c),
        r#"{"id":"cfg-12","op":"config","ch":"rc1","alarm":450,"hysteresis":30}"#
    );
    assert_eq!(dec::<Cmd>(enc(&c).as_bytes()), Ok(c.clone()));
    // `null` is the same as absent: no pre-alarm level.
    assert_eq!(
        dec::<Cmd>(
            br#"{"id":"cfg-12","op":"config","ch":"rc1","pre_alarm":null,"alarm":450,"hysteresis":30}"#
        ),
        Ok(c)
    );
    // Any order, the extremes of i32, negative values (temperature).
    let c = config(Some(i32::MIN), Some(i32::MAX), Some(-1));
    assert_eq!(dec::<Cmd>(enc(&c).as_bytes()), Ok(c.clone()));
    assert_eq!(
        dec::<Cmd>(
            br#" {"hysteresis":-1,"alarm":2147483647,"ch":"rc1","pre_alarm":-2147483648,"op":"config","id":"cfg-12"} "#
        ),
        Ok(c)
    );
    // The longest config command fits the node's 256-byte cmd limit.
    let c = Cmd {
        id: CmdId::new(&"c".repeat(32)).unwrap(),
        ch: Some(ChannelId::new(&"x".repeat(16)).unwrap()),
        ..config(Some(i32::MIN), Some(i32::MIN), Some(i32::MIN))
    };
    assert!(enc(&c).len() < 200, "{}", enc(&c));
    assert_eq!(dec::<Cmd>(enc(&c).as_bytes()), Ok(c));
}

#[test]
fn config_without_its_fields_still_parses() {
    // The node answers these with ok:false; the contract only checks shapes.
    assert_eq!(
        dec::<Cmd>(br#"{"id":"c-1","op":"config"}"#),
        Ok(Cmd::new(CmdId::new("c-1").unwrap(), CmdOp::Config))
    );
    let c = Cmd {
        ch: Some(ChannelId::new("rc1").unwrap()),
        ..Cmd::new(CmdId::new("c-1").unwrap(), CmdOp::Config)
    };
    assert_eq!(enc(&c), r#"{"id":"c-1","op":"config","ch":"rc1"}"#);
    assert_eq!(dec::<Cmd>(enc(&c).as_bytes()), Ok(c));
    let c = config(None, Some(450), None);
    assert!(c.has_config_fields());
    assert!(!Cmd::new(CmdId::new("c-1").unwrap(), CmdOp::Reset).has_config_fields());
    // Setpoint fields on another op parse too (the node refuses them).
    assert_eq!(
        dec::<Cmd>(br#"{"id":"cfg-12","op":"reset","ch":"rc1","alarm":450}"#),
        Ok(Cmd {
            op: CmdOp::Reset,
            ..config(None, Some(450), None)
        })
    );
}

#[test]
fn config_rejects_hostile_input_with_a_typed_error() {
    let cases: &[(&[u8], DecodeError)] = &[
        // Outside i32, or not an integer.
        (
            br#"{"id":"c","op":"config","ch":"rc1","alarm":2147483648}"#,
            DecodeError::OutOfRange,
        ),
        (
            br#"{"id":"c","op":"config","ch":"rc1","alarm":-2147483649}"#,
            DecodeError::OutOfRange,
        ),
        (
            br#"{"id":"c","op":"config","ch":"rc1","pre_alarm":99999999999999999999,"alarm":1}"#,
            DecodeError::OutOfRange,
        ),
        (
            br#"{"id":"c","op":"config","ch":"rc1","alarm":450.5}"#,
            DecodeError::OutOfRange,
        ),
        (
            br#"{"id":"c","op":"config","ch":"rc1","alarm":4.5e2}"#,
            DecodeError::OutOfRange,
        ),
        (
            br#"{"id":"c","op":"config","ch":"rc1","alarm":450,"hysteresis":1e99}"#,
            DecodeError::OutOfRange,
        ),
        // A bad channel id.
        (
            br#"{"id":"c","op":"config","ch":"RC1","alarm":450}"#,
            DecodeError::InvalidId,
        ),
        (
            br#"{"id":"c","op":"config","ch":"rc-1","alarm":450}"#,
            DecodeError::InvalidId,
        ),
        (
            br#"{"id":"c","op":"config","ch":"","alarm":450}"#,
            DecodeError::InvalidId,
        ),
        (
            br#"{"id":"c","op":"config","ch":"abcdefghijklmnopq","alarm":450}"#,
            DecodeError::InvalidId,
        ),
        (
            br#"{"id":"c","op":"config","ch":"rc1/x","alarm":450}"#,
            DecodeError::InvalidId,
        ),
        // Wrong types and unknown fields.
        (
            br#"{"id":"c","op":"config","ch":1,"alarm":450}"#,
            DecodeError::Schema,
        ),
        (
            br#"{"id":"c","op":"config","ch":"rc1","alarm":"450"}"#,
            DecodeError::Schema,
        ),
        (
            br#"{"id":"c","op":"config","ch":"rc1","alarm":true}"#,
            DecodeError::Schema,
        ),
        (
            br#"{"id":"c","op":"config","ch":"rc1","alarm":[450]}"#,
            DecodeError::Schema,
        ),
        (
            br#"{"id":"c","op":"config","ch":"rc1","alarm":450,"on_delay":5}"#,
            DecodeError::Schema,
        ),
        (
            br#"{"id":"c","op":"config","ch":"rc1","set":{"alarm":450}}"#,
            DecodeError::Schema,
        ),
        (
            br#"{"id":"c","op":"config","ch":"rc1","alarm":450,"alarm":500}"#,
            DecodeError::Schema,
        ),
    ];
    for (payload, want) in cases {
        assert_eq!(
            dec::<Cmd>(payload),
            Err(*want),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
}

#[test]
fn every_quantity_and_status_round_trips() {
    for (i, q) in Quantity::ALL.iter().enumerate() {
        for s in ChannelStatus::ALL {
            let mut t = Telemetry {
                boot: 0,
                seq: i as u32,
                ts: 0,
                ch: Default::default(),
            };
            t.ch.push(ch("c", *q, i32::MIN + i as i32, *s)).unwrap();
            t.ch.push(ch("d", *q, i32::MAX, *s)).unwrap();
            assert_eq!(dec::<Telemetry>(enc(&t).as_bytes()), Ok(t));
        }
    }
}

#[cfg(feature = "std")]
#[test]
fn encode_vec_matches_encode() {
    assert_eq!(
        encode_vec(&design_telemetry()).unwrap(),
        enc(&design_telemetry()).into_bytes()
    );
}

/// A payload longer than `encode_vec`'s first buffer comes out whole.
#[cfg(feature = "std")]
#[test]
fn encode_vec_grows_for_long_payloads() {
    let mut t = design_telemetry();
    let q = t.ch[0].q;
    let s = t.ch[0].s;
    for _ in 0..6 {
        t.ch.push(ch("c", q, i32::MIN, s)).unwrap();
    }
    let want = enc(&t).into_bytes();
    assert!(want.len() > 256, "{} bytes", want.len());
    assert_eq!(encode_vec(&t).unwrap(), want);
}

#[test]
fn small_buffer_is_an_error_not_a_panic() {
    let mut buf = [0u8; 16];
    assert_eq!(
        encode(&design_telemetry(), &mut buf),
        Err(EncodeError::BufferFull)
    );
}

fn reading_json(id: &str, q: &str, v: &str, s: &str) -> String {
    format!(r#"{{"boot":1,"seq":2,"ts":0,"ch":[{{"id":"{id}","q":"{q}","v":{v},"s":"{s}"}}]}}"#)
}

/// The kind is checked where the gateway's decoder is built (feature `std`);
/// the no-heap decoder must still refuse.
fn expect_err(got: Result<(), DecodeError>, want: DecodeError, input: &[u8]) {
    if cfg!(feature = "std") {
        assert_eq!(got, Err(want), "input {:?}", String::from_utf8_lossy(input));
    } else {
        assert!(got.is_err(), "input {:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn malformed_input_is_a_typed_error() {
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (b"".to_vec(), DecodeError::Syntax),
        (b"{".to_vec(), DecodeError::Syntax),
        (b"not json".to_vec(), DecodeError::Syntax),
        (vec![0xff, 0xfe, 0x00], DecodeError::Syntax),
        (
            br#"{"boot":1,"seq":2,"ts":0,"ch":[]} trailing"#.to_vec(),
            DecodeError::Syntax,
        ),
        (br#"[]"#.to_vec(), DecodeError::Schema),
        (
            br#"{"boot":1,"seq":2,"ts":0}"#.to_vec(),
            DecodeError::Schema,
        ),
        (
            br#"{"boot":-1,"seq":2,"ts":0,"ch":[]}"#.to_vec(),
            DecodeError::Schema,
        ),
        (
            br#"{"boot":1,"seq":2,"ts":0,"ch":[],"extra":1}"#.to_vec(),
            DecodeError::Schema,
        ),
        (
            br#"{"boot":"1","seq":2,"ts":0,"ch":[]}"#.to_vec(),
            DecodeError::Schema,
        ),
        (
            reading_json("rc1", "plasma", "1", "ok").into_bytes(),
            DecodeError::UnknownQuantity,
        ),
        (
            reading_json("rc1", "residual_current", "1", "melted").into_bytes(),
            DecodeError::UnknownName,
        ),
        (
            reading_json("RC1", "residual_current", "1", "ok").into_bytes(),
            DecodeError::InvalidId,
        ),
        (
            reading_json("rc-1", "residual_current", "1", "ok").into_bytes(),
            DecodeError::InvalidId,
        ),
        (
            reading_json("", "residual_current", "1", "ok").into_bytes(),
            DecodeError::InvalidId,
        ),
        (
            reading_json("abcdefghijklmnopq", "residual_current", "1", "ok").into_bytes(),
            DecodeError::InvalidId,
        ),
        (
            reading_json("rc1", "residual_current", "2147483648", "ok").into_bytes(),
            DecodeError::OutOfRange,
        ),
        (
            reading_json("rc1", "residual_current", "-2147483649", "ok").into_bytes(),
            DecodeError::OutOfRange,
        ),
        (
            reading_json("rc1", "residual_current", "99999999999999999999", "ok").into_bytes(),
            DecodeError::OutOfRange,
        ),
        (
            reading_json("rc1", "residual_current", "1.5", "ok").into_bytes(),
            DecodeError::OutOfRange,
        ),
        (
            reading_json("rc1", "residual_current", "\"1\"", "ok").into_bytes(),
            DecodeError::Schema,
        ),
        (br#"{"state":"asleep"}"#.to_vec(), DecodeError::UnknownName),
    ];
    for (input, want) in cases {
        let got = if input.starts_with(br#"{"state""#) {
            dec::<Status>(&input).map(|_| ())
        } else {
            dec::<Telemetry>(&input).map(|_| ())
        };
        expect_err(got, want, &input);
    }
}

#[test]
fn channel_limit_is_enforced() {
    let one = r#"{"id":"c","q":"temperature","v":1,"s":"ok"}"#;
    let list = |n: usize| {
        format!(
            r#"{{"boot":1,"seq":1,"ts":0,"ch":[{}]}}"#,
            vec![one; n].join(",")
        )
    };
    assert_eq!(
        dec::<Telemetry>(list(MAX_CHANNELS).as_bytes()).map(|t| t.ch.len()),
        Ok(MAX_CHANNELS)
    );
    let over = list(MAX_CHANNELS + 1);
    expect_err(
        dec::<Telemetry>(over.as_bytes()).map(|_| ()),
        DecodeError::TooManyChannels,
        over.as_bytes(),
    );
}

#[test]
fn oversized_payload_is_refused_before_parsing() {
    let mut big = br#"{"state":"online","fw":""#.to_vec();
    big.resize(MAX_PAYLOAD + 1, b'x');
    assert_eq!(dec::<Status>(&big), Err(DecodeError::TooLarge));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A deterministic sweep of mutations of a valid payload: every outcome is Ok or a typed error.
    let base = enc(&design_telemetry()).into_bytes();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut m = base.clone();
        let pos = (x as usize) % m.len();
        match x % 3 {
            0 => m[pos] = (x >> 8) as u8,
            1 => m.truncate(pos),
            _ => m.insert(pos, (x >> 16) as u8),
        }
        let _ = dec::<Telemetry>(&m);
        let _ = dec::<Cmd>(&m);
    }
    // The same for a config command.
    let base = enc(&config(Some(300), Some(450), Some(30))).into_bytes();
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut m = base.clone();
        let pos = (x as usize) % m.len();
        match x % 3 {
            0 => m[pos] = (x >> 8) as u8,
            1 => m.truncate(pos),
            _ => m.insert(pos, (x >> 16) as u8),
        }
        if let Ok(c) = dec::<Cmd>(&m) {
            assert_eq!(dec::<Cmd>(enc(&c).as_bytes()), Ok(c));
        }
    }
}
