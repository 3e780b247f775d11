//! MQTT session over a byte stream: CONNECT with Last Will and persistent
//! session, SUBSCRIBE after CONNACK, QoS 1 in flight until PUBACK, resend
//! with DUP after a reconnect, keep-alive, loss detection by timeout,
//! backoff, and garbage from the broker ending the connection, not the node.

mod common;

use common::{packets, Pipe};
use firmware::mqtt::codec::{self, Packet};
use firmware::mqtt::session::State;
use firmware::mqtt::{Event, Session, SessionConfig};

fn cfg() -> SessionConfig<'static> {
    SessionConfig {
        client_id: "home_a.n01",
        username: Some("home_a.n01"),
        password: Some(b"pw"),
        keep_alive_s: 10,
        will: Some(("fire/v1/home_a/n01/status", br#"{"state":"offline"}"#)),
        subscribe: Some("fire/v1/home_a/n01/cmd"),
        response_timeout_ms: 3_000,
        backoff_min_ms: 250,
        backoff_max_ms: 1_000,
    }
}

fn connected(s: &mut Session<'_>, io: &mut Pipe) {
    assert_eq!(s.poll(io, 0), None);
    let sent = packets(&io.take_tx());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0][0], 0x10, "CONNECT first");
    // clean session 0, will retained QoS 1, user and password
    assert_eq!(sent[0][9], 0b1110_1100);
    io.feed(&[0x20, 2, 0, 0]);
    assert_eq!(
        s.poll(io, 10),
        Some(Event::Connected {
            session_present: false
        })
    );
    let sent = packets(&io.take_tx());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0][0], 0x82, "SUBSCRIBE after CONNACK");
}

#[test]
fn publishes_qos1_and_waits_for_puback() {
    let (mut s, mut io) = (Session::new(cfg()), Pipe::default());
    connected(&mut s, &mut io);
    let pkid = s.publish(&mut io, "t", b"x", false, 20).unwrap();
    assert!(!s.can_publish());
    assert_eq!(
        s.publish(&mut io, "t", b"y", false, 21),
        Err(firmware::mqtt::SessionError::Busy)
    );
    let sent = io.take_tx();
    assert!(
        matches!(codec::decode(&sent), Ok(Packet::Publish { qos: 1, pkid: Some(p), .. }) if p == pkid)
    );
    io.feed(&[0x40, 2, 0, pkid as u8 + 1]);
    assert_eq!(s.poll(&mut io, 30), None, "a stale PUBACK is ignored");
    io.feed(&[0x40, 2, (pkid >> 8) as u8, pkid as u8]);
    assert_eq!(s.poll(&mut io, 40), Some(Event::PubAck(pkid)));
    assert!(s.can_publish());
}

#[test]
fn lost_puback_reconnects_with_backoff_and_resends_with_dup() {
    let (mut s, mut io) = (Session::new(cfg()), Pipe::default());
    connected(&mut s, &mut io);
    let pkid = s.publish(&mut io, "t", b"x", false, 100).unwrap();
    io.take_tx();
    assert_eq!(s.poll(&mut io, 3_100), Some(Event::Disconnected));
    assert_eq!(s.state(), State::Idle { retry_at: 3_350 });
    assert_eq!(s.poll(&mut io, 3_200), None);
    assert!(io.take_tx().is_empty(), "waits for the backoff");
    // Stale bytes of the old connection are ignored.
    io.feed(&[0x40, 2]);
    s.poll(&mut io, 3_300);
    s.poll(&mut io, 3_350);
    let sent = packets(&io.take_tx());
    assert_eq!(sent[0][0], 0x10, "CONNECT again");
    // No CONNACK: the next backoff doubles.
    s.poll(&mut io, 6_400);
    assert_eq!(s.state(), State::Idle { retry_at: 6_900 });
    s.poll(&mut io, 6_900);
    io.take_tx();
    io.feed(&[0x20, 2, 1, 0]);
    assert_eq!(
        s.poll(&mut io, 7_000),
        Some(Event::Connected {
            session_present: true
        })
    );
    let sent = packets(&io.take_tx());
    assert_eq!(sent[0][0], 0x3A, "the publication again, DUP set");
    assert!(
        matches!(codec::decode(&sent[0]), Ok(Packet::Publish { dup: true, pkid: Some(p), .. }) if p == pkid)
    );
    assert_eq!(sent[1][0], 0x82);
    assert_eq!(s.stats().resent, 1);
}

#[test]
fn keep_alive_pings_and_missing_pingresp_is_a_loss() {
    let (mut s, mut io) = (Session::new(cfg()), Pipe::default());
    connected(&mut s, &mut io);
    s.poll(&mut io, 5_010);
    assert_eq!(io.take_tx(), vec![0xC0, 0]);
    io.feed(&[0xD0, 0]);
    s.poll(&mut io, 5_100);
    s.poll(&mut io, 10_110);
    assert_eq!(io.take_tx(), vec![0xC0, 0]);
    assert_eq!(s.poll(&mut io, 13_200), Some(Event::Disconnected));
}

#[test]
fn incoming_qos1_message_is_acked_and_handed_out() {
    let (mut s, mut io) = (Session::new(cfg()), Pipe::default());
    connected(&mut s, &mut io);
    let mut buf = [0u8; 64];
    let n = codec::publish(
        &mut buf,
        "fire/v1/home_a/n01/cmd",
        b"{}",
        1,
        false,
        false,
        77,
    )
    .unwrap();
    io.feed(&buf[..n]);
    assert_eq!(
        s.poll(&mut io, 50),
        Some(Event::Message {
            topic: "fire/v1/home_a/n01/cmd",
            payload: b"{}"
        })
    );
    assert_eq!(io.take_tx(), vec![0x40, 2, 0, 77]);
}

#[test]
fn refused_connect_and_garbage_do_not_panic() {
    let (mut s, mut io) = (Session::new(cfg()), Pipe::default());
    s.poll(&mut io, 0);
    io.feed(&[0x20, 2, 0, 5]);
    assert_eq!(s.poll(&mut io, 1), Some(Event::Refused(5)));
    let (mut s, mut io) = (Session::new(cfg()), Pipe::default());
    connected(&mut s, &mut io);
    io.feed(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
    assert_eq!(s.poll(&mut io, 20), Some(Event::Disconnected));
    assert_eq!(s.stats().protocol_errors, 1);
}

proptest::proptest! {
    #[test]
    fn hostile_broker_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        let (mut s, mut io) = (Session::new(cfg()), Pipe::default());
        s.poll(&mut io, 0);
        io.feed(&[0x20, 2, 0, 0]);
        s.poll(&mut io, 1);
        io.feed(&bytes);
        for t in 0..700u64 {
            let _ = s.poll(&mut io, 2 + t * 10);
            if s.can_publish() {
                let _ = s.publish(&mut io, "t", b"x", false, t);
            }
        }
    }
}
