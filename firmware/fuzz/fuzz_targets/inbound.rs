//! Everything a node receives from the network, as arbitrary bytes: fed to
//! the MQTT framer byte by byte, each framed packet decoded, and every
//! PUBLISH's topic and payload handed to the cmd parser; the same bytes as
//! a provisioning artefact, decoded and set up as the node does at boot.
//! Nothing may panic, and a parsed command must round-trip through the
//! contract's encoder.
#![no_main]

use firmware::mqtt::codec::{decode, Frame, Framer, Packet};
use firmware::node::{NodeIdentity, Publisher};
use libfuzzer_sys::fuzz_target;
use wire::{NodeId, SiteId};

fuzz_target!(|data: &[u8]| {
    let identity = NodeIdentity {
        site: SiteId::new("home_a").unwrap(),
        node: NodeId::new("n01").unwrap(),
        boot: 1,
    };
    let publisher = Publisher::new(identity);
    // The cmd parser on the raw bytes, with the node's own topic.
    if let Ok(cmd) = publisher.parse_cmd("fire/v1/home_a/n01/cmd", data) {
        let mut buf = [0u8; 256];
        let n = wire::encode(&cmd, &mut buf).expect("a parsed command re-encodes");
        assert_eq!(wire::decode_core::<wire::Cmd>(&buf[..n]), Ok(cmd));
    }
    // The bytes as a provisioning artefact; and framed with a good CRC, so
    // the JSON and field checks are reached too.
    let _ = firmware::provision::load(data, 1);
    if data.len() <= wire::provision::MAX_BODY {
        let mut blob = [0u8; wire::provision::MAX_LEN];
        blob[..6].copy_from_slice(b"FPRV\x01\x00");
        blob[6..8].copy_from_slice(&(data.len() as u16).to_le_bytes());
        blob[8..8 + data.len()].copy_from_slice(data);
        let crc = wire::provision::crc32(&blob[..8 + data.len()]);
        blob[8 + data.len()..12 + data.len()].copy_from_slice(&crc.to_le_bytes());
        let _ = firmware::provision::load(&blob[..12 + data.len()], 1);
    }
    // The framer and decoder, as bytes come off the UART.
    let mut framer: Framer<512> = Framer::default();
    for &b in data {
        match framer.push(b) {
            Ok(Frame::Ready(n)) => {
                if let Ok(Packet::Publish { topic, payload, .. }) = decode(framer.packet(n)) {
                    let _ = publisher.parse_cmd(topic, payload);
                }
                framer.reset();
            }
            Ok(_) => {}
            Err(_) => framer.reset(),
        }
    }
});
