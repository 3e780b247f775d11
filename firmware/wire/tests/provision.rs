//! The provisioning artefact: round trip, one typed error per bad case, a
//! sweep of mutated and truncated blobs that must never panic, and the
//! label short form.
#![cfg(feature = "std")]

use wire::provision::{
    self, crc32, decode, encode, frame_len, label, parse_label, Broker, ChannelFault, ChannelSpec,
    FieldName, LabelError, Provision, ProvisionError, Sensor, Setpoints, HEADER_LEN, MAX_BODY,
};
use wire::{ChannelId, IdError, NodeId, Quantity, SiteId};

fn s<const N: usize>(v: &str) -> heapless::String<N> {
    heapless::String::try_from(v).unwrap()
}

fn sample() -> Provision {
    let ch = |id: &str, q, sensor, set| ChannelSpec {
        id: ChannelId::new(id).unwrap(),
        q,
        sensor,
        set,
    };
    let mut channels = heapless::Vec::new();
    for c in [
        ch(
            "rc1",
            Quantity::ResidualCurrent,
            Sensor::Ct { ratio: 1000 },
            Setpoints {
                pre_alarm: Some(400),
                alarm: Some(700),
                hysteresis: Some(30),
            },
        ),
        ch(
            "t1",
            Quantity::Temperature,
            Sensor::NtcB3950,
            Setpoints::default(),
        ),
        ch(
            "p1",
            Quantity::WaterPressure,
            Sensor::Loop { lo: 0, hi: 1000 },
            Setpoints {
                alarm: Some(120),
                ..Default::default()
            },
        ),
        ch(
            "l1",
            Quantity::WaterLevel,
            Sensor::Loop { lo: 0, hi: 5000 },
            Setpoints {
                pre_alarm: Some(1000),
                alarm: Some(500),
                hysteresis: Some(50),
            },
        ),
    ] {
        channels.push(c).unwrap();
    }
    Provision {
        site: SiteId::new("home_a").unwrap(),
        node: NodeId::new("n01").unwrap(),
        broker: Broker {
            host: s("10.0.0.2"),
            port: 1883,
        },
        client_id: s("home_a.n01"),
        username: s("home_a.n01"),
        password: s("Zk8!prov-test"),
        channels,
    }
}

/// Frames `body` as version 1 with a correct CRC.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = b"FPRV\x01\x00".to_vec();
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn body_of(blob: &[u8]) -> String {
    String::from_utf8(blob[HEADER_LEN..blob.len() - 4].to_vec()).unwrap()
}

#[test]
fn round_trips_and_reads_the_documented_body() {
    let p = sample();
    let blob = encode(&p).unwrap();
    assert_eq!(&blob[..4], b"FPRV");
    assert_eq!(blob[4], provision::VERSION);
    assert_eq!(frame_len(&blob), Ok(blob.len()));
    assert_eq!(decode(&blob), Ok(p.clone()));
    let body = body_of(&blob);
    assert_eq!(
        body,
        r#"{"site":"home_a","node":"n01","broker":{"host":"10.0.0.2","port":1883},"client_id":"home_a.n01","username":"home_a.n01","password":"Zk8!prov-test","ch":[{"id":"rc1","q":"residual_current","sensor":"ct","ratio":1000,"set":{"pre_alarm":400,"alarm":700,"hysteresis":30}},{"id":"t1","q":"temperature","sensor":"ntc_b3950"},{"id":"p1","q":"water_pressure","sensor":"loop_4_20","lo":0,"hi":1000,"set":{"alarm":120}},{"id":"l1","q":"water_level","sensor":"loop_4_20","lo":0,"hi":5000,"set":{"pre_alarm":1000,"alarm":500,"hysteresis":50}}]}"#
    );
    // Whitespace, field order and explicit nulls are fine.
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&body).unwrap())
            .unwrap()
            .replace("\"ratio\": 1000", "\"ratio\": 1000, \"lo\": null");
    assert_eq!(decode(&frame(pretty.as_bytes())), Ok(p));
}

#[test]
fn refuses_bad_frames() {
    let blob = encode(&sample()).unwrap();
    assert_eq!(decode(&[]), Err(ProvisionError::Truncated));
    assert_eq!(decode(&blob[..11]), Err(ProvisionError::Truncated));
    let mut b = blob.clone();
    b[0] = b'X';
    assert_eq!(decode(&b), Err(ProvisionError::BadMagic));
    let mut b = blob.clone();
    b[4] = 2;
    assert_eq!(decode(&b), Err(ProvisionError::Version { found: 2 }));
    let mut b = blob.clone();
    b[5] = 1;
    assert_eq!(decode(&b), Err(ProvisionError::Reserved));
    let mut b = blob.clone();
    b[6..8].copy_from_slice(&0u16.to_le_bytes());
    assert!(matches!(
        decode(&b),
        Err(ProvisionError::Length { declared: 0, .. })
    ));
    let mut b = blob.clone();
    b[6..8].copy_from_slice(&((MAX_BODY + 1) as u16).to_le_bytes());
    assert!(matches!(decode(&b), Err(ProvisionError::Length { .. })));
    // One byte more or less than the header says.
    let mut b = blob.clone();
    b.push(0);
    assert!(matches!(decode(&b), Err(ProvisionError::Length { .. })));
    assert!(matches!(
        decode(&blob[..blob.len() - 1]),
        Err(ProvisionError::Length { .. })
    ));
    // A flipped bit in the body or the CRC.
    let mut b = blob.clone();
    b[20] ^= 0x04;
    assert!(matches!(decode(&b), Err(ProvisionError::Crc { .. })));
    let mut b = blob.clone();
    let n = b.len();
    b[n - 1] ^= 0x80;
    assert!(matches!(decode(&b), Err(ProvisionError::Crc { .. })));
}

/// `body` with `from` replaced by `to`, framed with a correct CRC.
fn edited(from: &str, to: &str) -> Result<Provision, ProvisionError> {
    let body = body_of(&encode(&sample()).unwrap());
    assert!(body.contains(from), "{from} not in {body}");
    decode(&frame(body.replacen(from, to, 1).as_bytes()))
}

#[test]
fn refuses_bad_bodies_with_the_reason() {
    use ProvisionError as E;
    assert_eq!(decode(&frame(b"{\"site\" \"x\"}")), Err(E::Json));
    assert_eq!(decode(&frame(b"\xff\xfe")), Err(E::Json));
    assert_eq!(decode(&frame(b"{\"site\":")), Err(E::Json));
    assert_eq!(decode(&frame(b"[]")), Err(E::Schema));
    assert_eq!(edited(r#""site":"home_a","#, ""), Err(E::Schema));
    assert_eq!(
        edited(r#""node":"n01""#, r#""node":"n01","x":1"#),
        Err(E::Schema)
    );
    assert_eq!(edited(r#""port":1883"#, r#""port":"1883""#), Err(E::Schema));
    // serde-json-core reports a number too large for its type as a bad number.
    assert_eq!(edited(r#""port":1883"#, r#""port":70000"#), Err(E::Json));
    assert_eq!(edited(r#"}]}"#, r#"}]} x"#), Err(E::Json));
    // Identifiers outside the contract's patterns.
    assert_eq!(
        edited(r#""site":"home_a""#, r#""site":"Home_A""#),
        Err(E::Id(FieldName::Site, IdError::Character))
    );
    assert_eq!(
        edited(r#""node":"n01""#, r#""node":"""#),
        Err(E::Id(FieldName::Node, IdError::Length { max: 32 }))
    );
    assert_eq!(
        edited(r#""id":"t1""#, r#""id":"t-1""#),
        Err(E::Channel(1, ChannelFault::Id(IdError::Character)))
    );
    assert_eq!(
        edited(r#""id":"t1""#, r#""id":"rc1""#),
        Err(E::Channel(1, ChannelFault::DuplicateId))
    );
    // Fields the node would not use.
    assert_eq!(
        edited(r#""host":"10.0.0.2""#, r#""host":"a b""#),
        Err(E::Field(FieldName::BrokerHost))
    );
    assert_eq!(
        edited(r#""port":1883"#, r#""port":0"#),
        Err(E::Field(FieldName::BrokerPort))
    );
    assert_eq!(
        edited(r#""client_id":"home_a.n01""#, r#""client_id":"a/b""#),
        Err(E::Field(FieldName::ClientId))
    );
    assert_eq!(
        edited(r#""password":"Zk8!prov-test""#, r#""password":"""#),
        Err(E::Field(FieldName::Password))
    );
    // A string escape: the node's JSON reader takes none.
    assert!(matches!(
        edited(r#""password":"Zk8!prov-test""#, r#""password":"a\"b""#),
        Err(E::Json | E::Schema | E::Field(_))
    ));
    assert_eq!(
        edited(
            r#""username":"home_a.n01""#,
            &format!(r#""username":"{}""#, "u".repeat(65))
        ),
        Err(E::Schema)
    );
    let start = r#""ch":["#;
    let body = body_of(&encode(&sample()).unwrap());
    let cut = &body[..body.find(start).unwrap() + start.len()];
    assert_eq!(
        decode(&frame(format!("{cut}]}}").as_bytes())),
        Err(E::Field(FieldName::Channels))
    );
    // Channels.
    assert_eq!(
        edited(r#""q":"temperature""#, r#""q":"heat""#),
        Err(E::Channel(1, ChannelFault::UnknownQuantity))
    );
    assert_eq!(
        edited(r#""sensor":"ntc_b3950""#, r#""sensor":"pt100""#),
        Err(E::Channel(1, ChannelFault::UnknownSensor))
    );
    assert_eq!(
        edited(r#""ratio":1000"#, r#""ratio":0"#),
        Err(E::Channel(0, ChannelFault::Ratio))
    );
    assert_eq!(
        edited(r#""ratio":1000,"#, ""),
        Err(E::Channel(0, ChannelFault::Ratio))
    );
    assert_eq!(
        edited(
            r#""sensor":"ntc_b3950""#,
            r#""sensor":"ntc_b3950","ratio":5"#
        ),
        Err(E::Channel(1, ChannelFault::Ratio))
    );
    assert_eq!(
        edited(r#""lo":0,"hi":1000"#, r#""lo":1000,"hi":1000"#),
        Err(E::Channel(2, ChannelFault::LoopRange))
    );
    assert_eq!(
        edited(r#""q":"temperature""#, r#""q":"water_pressure""#),
        Err(E::Channel(1, ChannelFault::SensorQuantity))
    );
    assert_eq!(
        edited(r#""set":{"alarm":120}"#, r#""set":{"alarm":120,"delay":5}"#),
        Err(E::Schema)
    );
    // Nine channels.
    let many = (0..9)
        .map(|i| format!(r#"{{"id":"c{i}","q":"temperature","sensor":"ntc_b3950"}}"#))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        decode(&frame(format!("{cut}{many}]}}").as_bytes())),
        Err(E::Schema)
    );
}

#[test]
fn encode_refuses_what_the_node_would_refuse() {
    let mut p = sample();
    p.password = s("say \"hi\"");
    assert_eq!(encode(&p), Err(ProvisionError::Field(FieldName::Password)));
    let mut p = sample();
    p.channels[1].sensor = Sensor::Ct { ratio: 100 };
    assert_eq!(
        encode(&p),
        Err(ProvisionError::Channel(1, ChannelFault::SensorQuantity))
    );
}

/// Every truncation, every single-byte change of every byte to a handful of
/// values, with and without a repaired CRC: a typed error or a provision
/// that encodes back to the same bytes, never a panic.
#[test]
fn mutated_and_truncated_blobs_never_panic() {
    let blob = encode(&sample()).unwrap();
    let mut accepted = 0;
    for n in 0..blob.len() {
        assert!(decode(&blob[..n]).is_err(), "truncated to {n}");
    }
    let body = blob[HEADER_LEN..blob.len() - 4].to_vec();
    for i in 0..blob.len() {
        for v in [0u8, b'"', b'{', b'}', b'9', b'-', b'\\', 0xFF, blob[i] ^ 1] {
            let mut b = blob.clone();
            b[i] = v;
            if let Ok(p) = decode(&b) {
                assert_eq!(b, blob, "a damaged blob is refused by its CRC");
                let _ = p;
            }
        }
    }
    for i in 0..body.len() {
        for v in [
            0u8, b'"', b'{', b'}', b'[', b']', b',', b':', b'9', b'-', b' ', b'\\', 0xC3,
        ] {
            let mut m = body.clone();
            m[i] = v;
            if let Ok(p) = decode(&frame(&m)) {
                accepted += 1;
                // Whatever is accepted is a valid artefact.
                assert_eq!(decode(&encode(&p).unwrap()), Ok(p));
            }
            m.truncate(i);
            let _ = decode(&frame(&m));
        }
    }
    // Digits changed inside numbers and ids still parse: the sweep reached
    // the field checks, not only the JSON parser.
    assert!(accepted > 10, "{accepted}");
}

#[test]
fn labels_round_trip_in_the_qr_alphanumeric_set() {
    let site = SiteId::new("home_a").unwrap();
    let node = NodeId::new("n01").unwrap();
    let l = label(&site, &node);
    assert!(l.starts_with("FN1:HOME.A/N01:"), "{l}");
    assert_eq!(l.len(), "FN1:HOME.A/N01:".len() + 2);
    let qr_alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
    assert!(l.chars().all(|c| qr_alnum.contains(c)), "{l}");
    assert_eq!(parse_label(&l), Ok((site.clone(), node.clone())));
    assert_eq!(
        parse_label(&l.to_lowercase()),
        Ok((site.clone(), node.clone()))
    );

    // Longest ids, dashes and digits.
    let long_site = SiteId::new(&"a-_9".repeat(8)).unwrap();
    let long_node = NodeId::new(&"z".repeat(32)).unwrap();
    let l2 = label(&long_site, &long_node);
    assert!(l2.chars().all(|c| qr_alnum.contains(c)), "{l2}");
    assert_eq!(parse_label(&l2), Ok((long_site, long_node)));

    // A misread character is caught by the check code.
    let typo = l.replace("N01", "N02");
    assert_eq!(parse_label(&typo), Err(LabelError::Check));
    let other = label(&site, &NodeId::new("n02").unwrap());
    assert_ne!(l[l.len() - 2..], other[other.len() - 2..]);
    assert_eq!(parse_label("FN2:HOME.A/N01:00"), Err(LabelError::Prefix));
    assert_eq!(parse_label("FN1:HOME.A:00"), Err(LabelError::Shape));
    assert_eq!(parse_label("FN1:HOME.A/N01"), Err(LabelError::Shape));
    assert_eq!(
        parse_label("FN1:HOME.A/N 1:00"),
        Err(LabelError::Id(IdError::Character))
    );
    assert_eq!(
        parse_label("FN1:/N01:00"),
        Err(LabelError::Id(IdError::Length { max: 32 }))
    );
    assert_eq!(
        parse_label("FN1:节/N01:00"),
        Err(LabelError::Id(IdError::Character))
    );
    assert!(parse_label("").is_err());
    assert!(parse_label("FN").is_err());
    assert!(parse_label("fn1节").is_err());
}

#[test]
fn check_codes_spread() {
    // Different nodes of one site get different codes almost always.
    let site = SiteId::new("home_a").unwrap();
    let codes: std::collections::HashSet<String> = (0..200)
        .map(|i| {
            let l = label(&site, &NodeId::new(&format!("n{i:03}")).unwrap());
            l[l.len() - 2..].to_string()
        })
        .collect();
    assert!(codes.len() > 180, "{}", codes.len());
}
