use super::record::{record_crc, CRC32C};
use super::*;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

fn rec<'a>(source: &'a str, seq: u32, text: &'a str) -> Record<'a> {
    Record {
        source: source.as_bytes(),
        boot: 7,
        seq,
        lines: if text.is_empty() {
            0
        } else {
            text.split('\n').count() as u32
        },
        text: text.as_bytes(),
    }
}

#[test]
fn record_bytes_are_exact() {
    let mut out = Vec::new();
    encode_record(&mut out, &rec("a/b", 258, "x 1\ny 2"));
    let body_len = 14 + 3 + 7;
    let mut expected = Vec::new();
    expected.extend_from_slice(&(body_len as u32).to_le_bytes());
    let crc_placeholder = expected.len();
    expected.extend_from_slice(&[0; 4]);
    expected.extend_from_slice(&[3, 0, b'a', b'/', b'b']);
    expected.extend_from_slice(&[7, 0, 0, 0, 2, 1, 0, 0, 2, 0, 0, 0]);
    expected.extend_from_slice(b"x 1\ny 2");
    // CRC-32C (Castagnoli) of the length bytes and the body.
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI)
        .checksum(&[&expected[..4], &expected[8..]].concat());
    expected[crc_placeholder..crc_placeholder + 4].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(out, expected);
    assert_eq!(out.len(), 8 + body_len);
    // The check value of CRC-32C, so the table is the right one.
    assert_eq!(CRC32C.checksum(b"123456789"), 0xE306_9283);
    match decode_record(&out) {
        Decoded::Record(r, size) => {
            assert_eq!(size, out.len());
            assert_eq!(r, rec("a/b", 258, "x 1\ny 2"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn decodes_end_incomplete_and_corrupt() {
    let mut out = Vec::new();
    encode_record(&mut out, &rec("s/n", 1, "m,site=s value=1i 0"));
    assert_eq!(decode_record(&[]), Decoded::End);
    for cut in 1..out.len() {
        assert_eq!(decode_record(&out[..cut]), Decoded::Incomplete, "cut {cut}");
    }
    let mut bad = out.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(decode_record(&bad), Decoded::Corrupt("checksum mismatch"));
    let mut bad = out.clone();
    bad[0..4].copy_from_slice(&(MAX_RECORD as u32 + 1).to_le_bytes());
    assert_eq!(
        decode_record(&bad),
        Decoded::Corrupt("record length out of range")
    );
    bad[0..4].copy_from_slice(&3u32.to_le_bytes());
    assert_eq!(
        decode_record(&bad),
        Decoded::Corrupt("record length out of range")
    );
    // A zeroed tail (a file extended but never written) is not a record.
    assert_eq!(
        decode_record(&[0u8; 64]),
        Decoded::Corrupt("record length out of range")
    );
}

#[test]
fn source_length_past_the_body_is_corrupt_with_a_valid_crc() {
    // The CRC is right but the body lies about its source length.
    let mut body = Vec::new();
    body.extend_from_slice(&200u16.to_le_bytes());
    body.extend_from_slice(&[0; 12]);
    let len = (body.len() as u32).to_le_bytes();
    let crc = record_crc(&len, &body);
    let mut out = len.to_vec();
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
    assert_eq!(
        decode_record(&out),
        Decoded::Corrupt("source longer than the record")
    );
}

#[test]
fn scan_counts_lines_and_finds_the_mark() {
    let mut out = Vec::new();
    encode_record(&mut out, &rec("s/n", 1, "a\nb"));
    let first = out.len();
    encode_record(&mut out, &rec("s/n", 2, ""));
    encode_record(&mut out, &rec("s/n", 3, "c\nd\ne"));
    let mut seqs = Vec::new();
    let s = scan(&out, first, |r, _| seqs.push(r.seq));
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(s.records, 3);
    assert_eq!(s.lines, 5);
    assert_eq!(s.valid_len, out.len());
    assert_eq!(s.lines_before_mark, 2);
    assert!(s.mark_on_boundary);
    assert_eq!(s.torn, None);
    let s = scan(&out, first + 1, |_, _| {});
    assert!(!s.mark_on_boundary);
}

/// SplitMix64: a deterministic stream for the sweeps below.
fn rng(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn random_segment(seed: &mut u64) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut ends = Vec::new();
    for seq in 0..(rng(seed) % 20) as u32 {
        let n = (rng(seed) % 4) as usize;
        let text: Vec<String> = (0..n)
            .map(|i| format!("q,site=s,node=n,ch=c{i} value={}i {seq}", rng(seed) % 1000))
            .collect();
        let text = text.join("\n");
        encode_record(&mut out, &rec("home_a/n01", seq, &text));
        ends.push(out.len());
    }
    (out, ends)
}

#[test]
fn a_torn_tail_is_cut_at_the_last_whole_record() {
    let mut seed = 1;
    for _ in 0..200 {
        let (seg, ends) = random_segment(&mut seed);
        let cut = if seg.is_empty() {
            0
        } else {
            (rng(&mut seed) as usize) % (seg.len() + 1)
        };
        let s = scan(&seg[..cut], 0, |_, _| {});
        let whole = ends.iter().filter(|e| **e <= cut).count();
        assert_eq!(s.records, whole as u64);
        let want = if whole == 0 { 0 } else { ends[whole - 1] };
        assert_eq!(s.valid_len, want);
        assert_eq!(s.torn.is_some(), s.valid_len != cut);
    }
}

#[test]
fn corrupt_bytes_never_panic_and_keep_only_intact_records() {
    let mut seed = 42;
    for _ in 0..2000 {
        let (mut seg, ends) = random_segment(&mut seed);
        if seg.is_empty() {
            continue;
        }
        // Flip, overwrite or insert a few bytes.
        let first_hit = (0..1 + rng(&mut seed) % 3)
            .map(|_| {
                let at = (rng(&mut seed) as usize) % seg.len();
                match rng(&mut seed) % 3 {
                    0 => seg[at] ^= 1 << (rng(&mut seed) % 8),
                    1 => seg[at] = rng(&mut seed) as u8,
                    _ => seg.insert(at, rng(&mut seed) as u8),
                }
                at
            })
            .min()
            .unwrap_or(0);
        let s = scan(&seg, 0, |r, _| {
            assert!(r.text.len() <= seg.len());
        });
        assert!(s.valid_len <= seg.len());
        // Records wholly before the first damaged byte are all kept.
        let intact = ends.iter().filter(|e| **e <= first_hit).count() as u64;
        assert!(s.records >= intact, "{} < {intact}", s.records);
    }
    // Pure noise.
    for _ in 0..2000 {
        let n = (rng(&mut seed) % 300) as usize;
        let noise: Vec<u8> = (0..n).map(|_| rng(&mut seed) as u8).collect();
        let s = scan(&noise, 0, |_, _| {});
        assert!(s.valid_len <= noise.len());
    }
}

#[test]
fn cursor_round_trips_and_rejects_damage() {
    let p = Position {
        segment: 0x1234,
        offset: 99,
    };
    let b = encode_cursor(p);
    assert_eq!(&b[..8], b"FIRECUR1");
    assert_eq!(decode_cursor(&b), Some(p));
    for i in 0..b.len() {
        let mut d = b;
        d[i] ^= 0x10;
        assert_eq!(decode_cursor(&d), None, "byte {i}");
    }
    assert_eq!(decode_cursor(&b[..20]), None);
}

#[test]
fn segment_names() {
    assert_eq!(segment_name(26), "000000000000001a.seg");
    assert_eq!(parse_segment_name("000000000000001a.seg"), Some(26));
    assert_eq!(parse_segment_name("1a.seg"), None);
    assert_eq!(parse_segment_name("000000000000001a.corrupt"), None);
    assert_eq!(parse_segment_name("00000000000000zz.seg"), None);
}

fn config(dir: &Path, max: u64, seg: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: max,
        segment_bytes: seg,
        batch_lines: 1000,
    }
}

fn wait_durable(sp: &Spool, ticket: u64) {
    let rx = sp.durable();
    let deadline = Instant::now() + Duration::from_secs(10);
    while *rx.borrow() < ticket {
        assert!(Instant::now() < deadline, "not durable");
        std::thread::yield_now();
    }
}

fn drain(sp: &Spool) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(b) = sp.read_batch(3).unwrap() {
        got.extend(
            String::from_utf8(b.body.clone())
                .unwrap()
                .split('\n')
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
        sp.commit(&b).unwrap();
    }
    got
}

#[test]
fn survives_reopen_delivers_in_order_and_cuts_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let (sp, rec0) =
        Spool::open(config(dir.path(), 1 << 20, 256), metrics.clone(), |_| {}).unwrap();
    assert_eq!(rec0, Recovery::default());
    let mut t = 0;
    for i in 0..10u32 {
        let text = format!("l{i}a\nl{i}b");
        t = sp.append(&rec("s/n", i, &text));
    }
    wait_durable(&sp, t);
    // Deliver the first batch (3 lines: whole records, so 4).
    let b = sp.read_batch(3).unwrap().unwrap();
    assert_eq!(b.body, b"l0a\nl0b\nl1a\nl1b");
    sp.commit(&b).unwrap();
    sp.close();
    drop(sp);
    // A torn tail on the newest segment with data, as kill -9 leaves.
    let mut segs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| parse_segment_name(&e.unwrap().file_name().to_string_lossy()))
        .collect();
    segs.sort();
    let mut last_with_data = None;
    for id in &segs {
        let p = dir.path().join(segment_name(*id));
        if std::fs::metadata(&p).unwrap().len() > HEADER_LEN {
            last_with_data = Some(p);
        }
    }
    let p = last_with_data.unwrap();
    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(&[40, 0, 0, 0, 1, 2]).unwrap();
    drop(f);

    let mut seen = Vec::new();
    let (sp, rec1) = Spool::open(config(dir.path(), 1 << 20, 256), metrics.clone(), |r| {
        seen.push(r.seq)
    })
    .unwrap();
    assert_eq!(rec1.torn, 1);
    assert_eq!(rec1.lines, 16);
    assert_eq!(metrics.spool_torn_records.load(Ordering::Relaxed), 1);
    assert!(seen.ends_with(&[9]), "{seen:?}");
    let got = drain(&sp);
    let want: Vec<String> = (2..10)
        .flat_map(|i| [format!("l{i}a"), format!("l{i}b")])
        .collect();
    assert_eq!(got, want);
    assert_eq!(sp.backlog_lines(), 0);
    sp.close();
}

#[test]
fn full_spool_drops_the_oldest_segment_and_counts_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    // Segments of ~2 records; room for ~3 segments.
    let (sp, _) = Spool::open(config(dir.path(), 300, 100), metrics.clone(), |_| {}).unwrap();
    let mut t = 0;
    for i in 0..40u32 {
        let text = format!("x{i:02}");
        t = sp.append(&rec("s/n", i, &text));
        wait_durable(&sp, t);
    }
    let _ = t;
    let dropped = metrics.sink_lines_dropped.load(Ordering::Relaxed);
    assert!(dropped > 0);
    assert_eq!(metrics.sink_dropped("spool_full"), dropped);
    let got = drain(&sp);
    // What is left is exactly the newest 40 - dropped lines, in order.
    let want: Vec<String> = (dropped as u32..40).map(|i| format!("x{i:02}")).collect();
    assert_eq!(got, want);
    assert!(metrics.spool_bytes.load(Ordering::Relaxed) <= 300 + 100);
    sp.close();
}

#[test]
fn a_batch_in_flight_from_a_dropped_segment_is_not_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let (sp, _) = Spool::open(config(dir.path(), 300, 100), metrics.clone(), |_| {}).unwrap();
    let t = sp.append(&rec("s/n", 0, "a0\na1\na2"));
    wait_durable(&sp, t);
    let inflight = sp.read_batch(2).unwrap().unwrap();
    assert_eq!(inflight.lines, 3);
    for i in 1..40u32 {
        let t = sp.append(&rec("s/n", i, &format!("x{i:02}")));
        wait_durable(&sp, t);
    }
    sp.commit(&inflight).unwrap();
    let dropped = metrics.sink_lines_dropped.load(Ordering::Relaxed);
    let rest = drain(&sp);
    assert_eq!(3 + dropped + rest.len() as u64, 3 + 39);
    sp.close();
}
