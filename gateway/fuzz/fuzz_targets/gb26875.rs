//! The GB/T 26875.3 codec fed arbitrary bytes as the monitoring centre's
//! TCP stream: the deframer (cut at a point the input chooses), whole-frame
//! decode, data-unit decode and re-encode, and the installer's words.
//! Nothing may panic, grow without bound, or fail to re-encode what it
//! decoded byte for byte.
//!
//! `cd gateway/fuzz && cargo +nightly fuzz run gb26875`

#![no_main]

use gateway::northbound::gb26875::frame::{Deframer, Frame, MAX_FRAME};
use gateway::northbound::gb26875::{describe, DataUnit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Frame::decode(data);
    if let Ok(u) = DataUnit::decode(data) {
        assert_eq!(u.encode().expect("decoded unit re-encodes"), data);
    }
    let cut = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut d = Deframer::new();
    for chunk in data.chunks(cut) {
        let mut rest = chunk;
        loop {
            let took = d.push(rest);
            rest = &rest[took..];
            while let Some(r) = d.next_frame() {
                if let Ok(f) = r {
                    let bytes = f.encode().expect("decoded frame re-encodes");
                    assert_eq!(Frame::decode(&bytes).as_ref(), Ok(&f));
                    if let Ok(u) = DataUnit::decode(&f.data) {
                        let _ = u.to_string();
                    }
                    let _ = describe::frame(&f);
                }
            }
            assert!(d.buffered() <= Deframer::ROOM + MAX_FRAME);
            if rest.is_empty() {
                break;
            }
        }
    }
});
