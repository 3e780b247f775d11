//! MQTT 3.1.1 codec: exact bytes of what the node sends (checked against
//! the OASIS spec's layouts), decoding of broker packets, and hostile
//! input (random bytes, truncations, bad lengths) never panicking.

use firmware::mqtt::codec::*;
use proptest::prelude::*;

#[test]
fn connect_with_will_user_and_persistent_session() {
    let mut buf = [0u8; 128];
    let n = connect(
        &mut buf,
        &Connect {
            client_id: "a.b",
            keep_alive_s: 10,
            clean_session: false,
            username: Some("a.b"),
            password: Some(b"pw"),
            will: Some(Will {
                topic: "t",
                payload: b"x",
                qos: 1,
                retain: true,
            }),
        },
    )
    .unwrap();
    let want: &[u8] = &[
        0x10,
        30, // CONNECT, remaining length
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        4,           // protocol name and level
        0b1110_1100, // user, password, will retain, will QoS 1, will flag; clean 0
        0,
        10, // keep alive
        0,
        3,
        b'a',
        b'.',
        b'b', // client id
        0,
        1,
        b't',
        0,
        1,
        b'x', // will topic, will payload
        0,
        3,
        b'a',
        b'.',
        b'b',
        0,
        2,
        b'p',
        b'w', // user, password
    ];
    assert_eq!(&buf[..n], want);
}

#[test]
fn publish_subscribe_ack_ping_disconnect() {
    let mut buf = [0u8; 64];
    let n = publish(&mut buf, "a/b", b"hi", 1, true, false, 7).unwrap();
    assert_eq!(
        &buf[..n],
        &[0x33, 9, 0, 3, b'a', b'/', b'b', 0, 7, b'h', b'i']
    );
    set_dup(&mut buf[..n]);
    assert_eq!(buf[0], 0x3B);
    let n = publish(&mut buf, "a", b"", 0, false, true, 7).unwrap();
    assert_eq!(
        &buf[..n],
        &[0x30, 3, 0, 1, b'a'],
        "QoS 0: no packet id, no DUP"
    );
    let n = subscribe(&mut buf, 2, "c/#", 1).unwrap();
    assert_eq!(&buf[..n], &[0x82, 8, 0, 2, 0, 3, b'c', b'/', b'#', 1]);
    let n = puback(&mut buf, 0x1234).unwrap();
    assert_eq!(&buf[..n], &[0x40, 2, 0x12, 0x34]);
    assert_eq!(pingreq(&mut buf).unwrap(), 2);
    assert_eq!(&buf[..2], &[0xC0, 0]);
    assert_eq!(disconnect(&mut buf).unwrap(), 2);
    assert_eq!(&buf[..2], &[0xE0, 0]);
}

#[test]
fn long_remaining_length_and_buffer_full() {
    let payload = [7u8; 300];
    let mut buf = [0u8; 400];
    let n = publish(&mut buf, "t", &payload, 1, false, false, 1).unwrap();
    // 2 + 1 + 2 + 300 = 305 = 0xB1 0x02
    assert_eq!(&buf[..3], &[0x32, 0xB1, 0x02]);
    assert_eq!(n, 3 + 305);
    assert_eq!(parse_header(&buf[..n]).unwrap(), Some((0x32, 305, 3)));
    let mut small = [0u8; 10];
    assert_eq!(
        publish(&mut small, "t", &payload, 1, false, false, 1),
        Err(EncodeError::BufferFull)
    );
    let long = "x".repeat(70_000);
    assert_eq!(
        publish(&mut [0u8; 80_000], &long, b"", 1, false, false, 1),
        Err(EncodeError::TooLong)
    );
}

#[test]
fn decodes_broker_packets() {
    assert_eq!(
        decode(&[0x20, 2, 1, 0]),
        Ok(Packet::ConnAck {
            session_present: true,
            code: 0
        })
    );
    assert_eq!(decode(&[0x40, 2, 0, 9]), Ok(Packet::PubAck { pkid: 9 }));
    assert_eq!(
        decode(&[0x90, 3, 0, 2, 0x80]),
        Ok(Packet::SubAck {
            pkid: 2,
            code: 0x80
        })
    );
    assert_eq!(decode(&[0xD0, 0]), Ok(Packet::PingResp));
    assert_eq!(
        decode(&[0x32, 8, 0, 3, b'a', b'/', b'b', 0, 5, b'!']),
        Ok(Packet::Publish {
            dup: false,
            qos: 1,
            retain: false,
            topic: "a/b",
            pkid: Some(5),
            payload: b"!"
        })
    );
}

#[test]
fn refuses_malformed_packets() {
    assert_eq!(
        decode(&[0x20, 2, 2, 0]),
        Err(DecodeError::Malformed),
        "reserved connack flag"
    );
    assert_eq!(
        decode(&[0x41, 2, 0, 1]),
        Err(DecodeError::Malformed),
        "puback flags"
    );
    assert_eq!(
        decode(&[0x40, 3, 0, 1, 0]),
        Err(DecodeError::Malformed),
        "puback length"
    );
    assert_eq!(
        decode(&[0x36, 5, 0, 1, b'a', 0, 1]),
        Err(DecodeError::Malformed),
        "QoS 3"
    );
    assert_eq!(
        decode(&[0x34, 5, 0, 1, b'a', 0, 1]),
        Err(DecodeError::Unexpected(3)),
        "QoS 2"
    );
    assert_eq!(
        decode(&[0x32, 5, 0, 1, b'a', 0, 0]),
        Err(DecodeError::Malformed),
        "pkid 0"
    );
    assert_eq!(
        decode(&[0x30, 3, 0, 9, b'a']),
        Err(DecodeError::Malformed),
        "topic past the end"
    );
    assert_eq!(decode(&[0x30, 3, 0, 1, 0xFF]), Err(DecodeError::BadUtf8));
    assert_eq!(
        decode(&[0x10, 0]),
        Err(DecodeError::Unexpected(1)),
        "CONNECT from a broker"
    );
    assert_eq!(
        decode(&[0xD0, 0, 0]),
        Err(DecodeError::Malformed),
        "trailing bytes"
    );
    assert_eq!(
        parse_header(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 1]),
        Err(DecodeError::BadLength)
    );
}

#[test]
fn framer_skips_oversized_packets_and_stays_in_step() {
    let mut f = Framer::<16>::new();
    let mut big = vec![0x30, 40, 0, 1, b't'];
    big.extend_from_slice(&[b'x'; 37]);
    let mut results = Vec::new();
    for b in big.iter().chain([0xD0, 0].iter()) {
        results.push(f.push(*b).unwrap());
    }
    assert_eq!(results.iter().filter(|r| **r == Frame::Skipped).count(), 1);
    assert_eq!(results.last(), Some(&Frame::Ready(2)));
    assert_eq!(decode(f.packet(2)), Ok(Packet::PingResp));
}

proptest! {
    #[test]
    fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&bytes);
        let _ = parse_header(&bytes);
        let mut f = Framer::<64>::new();
        for b in &bytes {
            if let Ok(Frame::Ready(n)) = f.push(*b) {
                let _ = decode(f.packet(n));
            }
        }
    }

    #[test]
    fn publish_round_trips(topic in "[a-z/]{1,40}", payload in proptest::collection::vec(any::<u8>(), 0..200), pkid in 1u16.., retain: bool) {
        let mut buf = [0u8; 300];
        let n = publish(&mut buf, &topic, &payload, 1, retain, false, pkid).unwrap();
        let p = decode(&buf[..n]).unwrap();
        prop_assert_eq!(p, Packet::Publish { dup: false, qos: 1, retain, topic: &topic, pkid: Some(pkid), payload: &payload });
    }

    #[test]
    fn truncated_packets_are_errors_not_panics(cut in 0usize..20) {
        let mut buf = [0u8; 64];
        let n = publish(&mut buf, "fire/v1/a/b/cmd", b"{}", 1, false, false, 3).unwrap();
        let cut = cut.min(n - 1);
        prop_assert!(decode(&buf[..cut]).is_err());
    }
}
