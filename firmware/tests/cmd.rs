//! `parse_cmd` tests: only this node's cmd topic is accepted, every malformed
//! payload is a typed error, and a deterministic sweep of mutated payloads
//! never panics.

use firmware::node::{CmdError, NodeIdentity, Publisher, MAX_CMD_PAYLOAD};
use wire::{ChannelId, Cmd, CmdId, CmdOp, DecodeError, NodeId, SiteId};

const TOPIC: &str = "fire/v1/home_a/n01/cmd";

fn publisher() -> Publisher {
    Publisher::new(NodeIdentity {
        site: SiteId::new("home_a").unwrap(),
        node: NodeId::new("n01").unwrap(),
        boot: 17,
    })
}

fn cmd(id: &str, op: CmdOp) -> Cmd {
    Cmd::new(CmdId::new(id).unwrap(), op)
}

#[test]
fn accepts_every_op_on_its_own_topic() {
    let p = publisher();
    for &op in CmdOp::ALL {
        let payload = format!(r#"{{"id":"c-42","op":"{op}"}}"#);
        assert_eq!(
            p.parse_cmd(TOPIC, payload.as_bytes()),
            Ok(cmd("c-42", op)),
            "{payload}"
        );
    }
    // Whitespace and field order do not matter.
    assert_eq!(
        p.parse_cmd(TOPIC, b" {\n \"op\" : \"ping\" ,\t\"id\":\"A_1\" } \n"),
        Ok(cmd("A_1", CmdOp::Ping))
    );
}

#[test]
fn rejects_other_topics() {
    let p = publisher();
    let ok = br#"{"id":"c1","op":"reset"}"#;
    for topic in [
        "fire/v1/home_a/n02/cmd",
        "fire/v1/home_b/n01/cmd",
        "fire/v1/home_a/n01/cmd/ack",
        "fire/v1/home_a/n01/telemetry",
        "fire/v1/home_a/n01/status",
        "fire/v1/home_a/n01/cmd/",
        "fire/v1/home_a/+/cmd",
        "fire/v1/home_a/#",
        "fire/v2/home_a/n01/cmd",
        "/fire/v1/home_a/n01/cmd",
        "fire/v1/home_a/n01/CMD",
        "fire/v1/home_a/n01/cmd\0",
        "fire/v1/home_a/n01",
        "",
    ] {
        assert_eq!(p.parse_cmd(topic, ok), Err(CmdError::WrongTopic), "{topic}");
    }
}

#[test]
fn rejects_bad_json() {
    let p = publisher();
    for payload in [
        &b""[..],
        b" ",
        b"{",
        br#"{"id":"c1","op":"reset""#,
        br#"{"id":"c1","op":"reset"}}"#,
        br#"{"id":"c1","op":"reset"} x"#,
        br#"{"id":"c1","op":"reset",}"#,
        br#"{"id":"c1" "op":"reset"}"#,
        br#"{id:"c1","op":"reset"}"#,
        br#"{'id':'c1','op':'reset'}"#,
        b"{\"id\":\"c\xff\",\"op\":\"reset\"}",
    ] {
        assert_eq!(
            p.parse_cmd(TOPIC, payload),
            Err(CmdError::Payload(DecodeError::Syntax)),
            "{:?}",
            String::from_utf8_lossy(payload)
        );
    }
    // serde-json-core reports a value that cannot start JSON at all as a type
    // mismatch, so `decode_core` calls it `Schema`: still a typed refusal.
    assert!(matches!(
        p.parse_cmd(TOPIC, b"\xff\xfe{}"),
        Err(CmdError::Payload(DecodeError::Syntax | DecodeError::Schema))
    ));
}

#[test]
fn rejects_unknown_op_and_wrong_shapes() {
    let p = publisher();
    for payload in [
        br#"{"id":"c1","op":"reboot"}"#.as_slice(),
        br#"{"id":"c1","op":"RESET"}"#,
        br#"{"id":"c1","op":"power_off"}"#,
        br#"{"id":"c1","op":""}"#,
        br#"{"id":"c1","op":1}"#,
        br#"{"id":"c1","op":null}"#,
        br#"{"id":"c1"}"#,
        br#"{"op":"reset"}"#,
        br#"{}"#,
        br#"{"id":"c1","op":"reset","x":1}"#,
        br#"{"id":"c 1","op":"reset"}"#,
        br#"{"id":"","op":"reset"}"#,
        br#"{"id":"c1/x","op":"reset"}"#,
        br#"{"id":42,"op":"reset"}"#,
        br#"{"id":"c\u0031","op":"reset"}"#,
        br#"["c1","reset"]"#,
        br#""reset""#,
        b"42",
        b"null",
    ] {
        let got = p.parse_cmd(TOPIC, payload);
        assert!(
            matches!(got, Err(CmdError::Payload(_))),
            "{:?} gave {got:?}",
            String::from_utf8_lossy(payload)
        );
    }
    assert_eq!(
        p.parse_cmd(TOPIC, br#"{"id":"c1","op":"reboot"}"#),
        Err(CmdError::Payload(DecodeError::Schema))
    );
    let long_id = format!(r#"{{"id":"{}","op":"reset"}}"#, "c".repeat(33));
    assert!(matches!(
        p.parse_cmd(TOPIC, long_id.as_bytes()),
        Err(CmdError::Payload(_))
    ));
}

#[test]
fn accepts_config_with_setpoints() {
    let p = publisher();
    let want = Cmd::config(
        CmdId::new("cfg-12").unwrap(),
        ChannelId::new("rc1").unwrap(),
        Some(300),
        450,
        None,
    );
    assert_eq!(
        p.parse_cmd(
            TOPIC,
            br#"{"id":"cfg-12","op":"config","ch":"rc1","pre_alarm":300,"alarm":450}"#
        ),
        Ok(want.clone())
    );
    assert_eq!(
        p.parse_cmd(
            TOPIC,
            br#"{"id":"cfg-12","op":"config","ch":"rc1","pre_alarm":null,"alarm":450,"hysteresis":30}"#
        ),
        Ok(Cmd {
            pre_alarm: None,
            hysteresis: Some(30),
            ..want
        })
    );
    // Without its fields it still parses: the node answers it not ok.
    assert_eq!(
        p.parse_cmd(TOPIC, br#"{"id":"c1","op":"config"}"#),
        Ok(cmd("c1", CmdOp::Config))
    );
    // The node's decoder reports the contract's checks as `Schema`.
    for payload in [
        br#"{"id":"c1","op":"config","ch":"rc1","alarm":2147483648}"#.as_slice(),
        br#"{"id":"c1","op":"config","ch":"rc1","alarm":-99999999999}"#,
        br#"{"id":"c1","op":"config","ch":"RC1","alarm":450}"#,
        br#"{"id":"c1","op":"config","ch":"rc1","alarm":450,"delay":1}"#,
        br#"{"id":"c1","op":"config","ch":"rc1","alarm":"450"}"#,
    ] {
        assert_eq!(
            p.parse_cmd(TOPIC, payload),
            Err(CmdError::Payload(DecodeError::Schema)),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
    // serde-json-core reads a number with a fraction as an i64 and fails: a
    // syntax error to it, still typed.
    assert_eq!(
        p.parse_cmd(
            TOPIC,
            br#"{"id":"c1","op":"config","ch":"rc1","alarm":450.0}"#
        ),
        Err(CmdError::Payload(DecodeError::Syntax))
    );
}

#[test]
fn rejects_oversize_payloads() {
    let p = publisher();
    let body = br#"{"id":"c1","op":"reset"}"#;
    // Padded with whitespace to exactly the limit: accepted.
    let mut at_limit = body.to_vec();
    at_limit.resize(MAX_CMD_PAYLOAD, b' ');
    assert_eq!(p.parse_cmd(TOPIC, &at_limit), Ok(cmd("c1", CmdOp::Reset)));
    // One byte more: refused before parsing.
    let mut over = at_limit.clone();
    over.push(b' ');
    assert_eq!(
        p.parse_cmd(TOPIC, &over),
        Err(CmdError::Payload(DecodeError::TooLarge))
    );
    let huge = vec![b'['; wire::MAX_PAYLOAD + 1];
    assert_eq!(
        p.parse_cmd(TOPIC, &huge),
        Err(CmdError::Payload(DecodeError::TooLarge))
    );
    // Deep nesting within the limit is a plain error.
    let deep = [&b"{\"id\":"[..], &[b'['; 200][..]].concat();
    assert!(matches!(
        p.parse_cmd(TOPIC, &deep),
        Err(CmdError::Payload(_))
    ));
}

/// A small deterministic PRNG (xorshift64*), so the sweep is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes that matter to a JSON parser, plus a few that are not valid UTF-8.
const INTERESTING: &[u8] =
    b"{}[]\":,\\ 0-1e.+nulltruefalse\t\n\x00\x7f\x80\xbf\xc3\xe2\xf0\xffAz_/";

/// Parses `payload` and checks the one thing a success must satisfy: it
/// re-encodes to a command that decodes back to itself.
fn check(p: &Publisher, payload: &[u8]) -> bool {
    match p.parse_cmd(TOPIC, payload) {
        Ok(c) => {
            let mut buf = [0u8; MAX_CMD_PAYLOAD];
            let n = wire::encode(&c, &mut buf).unwrap();
            assert_eq!(p.parse_cmd(TOPIC, &buf[..n]), Ok(c));
            true
        }
        Err(CmdError::Payload(_)) => false,
        Err(e) => panic!("unexpected {e:?}"),
    }
}

#[test]
fn mutated_payloads_never_panic() {
    let p = publisher();
    let seeds: Vec<Vec<u8>> = [
        r#"{"id":"c-42","op":"reset"}"#,
        r#"{"id":"A_1","op":"selftest"}"#,
        r#"{ "op" : "config" , "id" : "x" }"#,
        r#"{"id":"cccccccccccccccccccccccccccccccc","op":"ping"}"#,
        r#"{"id":"cfg-12","op":"config","ch":"rc1","pre_alarm":300,"alarm":450}"#,
        r#"{"id":"cfg-13","op":"config","ch":"t1","pre_alarm":null,"alarm":-2147483648,"hysteresis":30}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();

    let mut cases = 0u32;
    let mut accepted = 0u32;
    let mut run = |payload: &[u8]| {
        cases += 1;
        if check(&p, payload) {
            accepted += 1;
        }
    };

    for seed in &seeds {
        // Every truncation.
        for n in 0..=seed.len() {
            run(&seed[..n]);
        }
        for i in 0..seed.len() {
            // Every deletion.
            let mut m = seed.clone();
            m.remove(i);
            run(&m);
            // Every substitution and insertion of an interesting byte.
            for &b in INTERESTING {
                let mut m = seed.clone();
                m[i] = b;
                run(&m);
                let mut m = seed.clone();
                m.insert(i, b);
                run(&m);
            }
            // Every bit flip.
            for bit in 0..8 {
                let mut m = seed.clone();
                m[i] ^= 1 << bit;
                run(&m);
            }
        }
    }

    // Random stacked mutations, including splices between seeds.
    let mut rng = Rng(0x5eed_f12e_a1a2_0001);
    for _ in 0..50_000 {
        let mut m = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(6) {
            match rng.below(5) {
                0 if !m.is_empty() => {
                    let i = rng.below(m.len());
                    m[i] = INTERESTING[rng.below(INTERESTING.len())];
                }
                1 if !m.is_empty() => {
                    let i = rng.below(m.len());
                    m[i] = rng.next() as u8;
                }
                2 => {
                    let i = rng.below(m.len() + 1);
                    m.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
                }
                3 if !m.is_empty() => {
                    let i = rng.below(m.len());
                    m.remove(i);
                }
                _ => {
                    let other = &seeds[rng.below(seeds.len())];
                    let cut = rng.below(m.len() + 1);
                    let from = rng.below(other.len() + 1);
                    m.truncate(cut);
                    m.extend_from_slice(&other[from..]);
                }
            }
        }
        run(&m);
    }

    // Sanity: the sweep exercised both outcomes.
    assert!(cases > 60_000, "{cases}");
    assert!(accepted > 0 && accepted < cases, "{accepted}/{cases}");
}
