//! Hostile bytes into the pure decoders this work added: the gate's PUBACK
//! filter (whole broker frames in, the same frames less PUBACKs out) and a
//! node's saved de-duplication window read back from the database. Never
//! a panic; wrong input is an error or `None`.

use gateway::ingest::dedup::{SeqTracker, Verdict};
use gateway::ingest::gate::without_pubacks;
use proptest::prelude::*;

/// One MQTT frame of `kind` with `body` (remaining length encoded).
fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind << 4 | if kind == 8 || kind == 6 { 2 } else { 0 }];
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn pubacks_go_and_everything_else_stays_in_order(
        frames in proptest::collection::vec((1u8..15, proptest::collection::vec(any::<u8>(), 0..300)), 0..20)
    ) {
        let mut all = Vec::new();
        let mut expected = Vec::new();
        for (kind, body) in &frames {
            let f = frame(*kind, body);
            all.extend_from_slice(&f);
            if *kind != 4 {
                expected.extend_from_slice(&f);
            }
        }
        let kept = without_pubacks(&all).unwrap();
        prop_assert_eq!(&kept[..], &expected[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_filter(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        if let Ok(kept) = without_pubacks(&bytes) {
            prop_assert!(kept.len() <= bytes.len());
        }
    }

    #[test]
    fn arbitrary_text_is_never_a_window_unless_well_formed(text in ".{0,1200}") {
        if let Some(t) = SeqTracker::from_text(&text) {
            // Whatever it read, it writes back to itself.
            prop_assert_eq!(SeqTracker::from_text(&t.to_text().unwrap()).unwrap().to_text(), t.to_text());
        }
    }

    #[test]
    fn a_saved_window_recognises_what_it_saw(steps in proptest::collection::vec(1u32..=gateway::ingest::dedup::MAX_LEAP, 1..200)) {
        // A node's own sequence: rising, gaps within what the window
        // follows in order (a leap further is confirmed by later messages,
        // see `dedup`).
        let seqs: Vec<u32> = steps.iter().scan(0u32, |s, d| { *s += d; Some(*s) }).collect();
        let mut t = SeqTracker::default();
        for s in &seqs {
            let in_order = matches!(t.observe(3, *s), Verdict::InOrder { .. });
            prop_assert!(in_order, "seq {}", s);
        }
        let mut back = SeqTracker::from_text(&t.to_text().unwrap()).unwrap();
        let highest = *seqs.iter().max().unwrap();
        for s in &seqs {
            if highest - s < gateway::ingest::dedup::WINDOW {
                prop_assert_eq!(back.observe(3, *s), Verdict::Duplicate);
            }
        }
    }
}

#[test]
fn a_cut_frame_is_an_error() {
    let mut f = frame(3, b"abcdef");
    f.pop();
    assert!(without_pubacks(&f).is_err());
}
