use super::decode::raw_value;
use super::*;

fn ch(value_type: ValueType, order: WordOrder) -> ChannelSpec {
    ChannelSpec {
        id: ChannelId::new("x").unwrap(),
        quantity: Quantity::Current,
        function: Function::Holding,
        address: 10,
        value_type,
        order,
        scale: 1.0,
        offset: 0.0,
        sentinels: vec![],
    }
}

fn block(start: u16, words: &[u16]) -> Block {
    Block {
        request: ReadRequest {
            function: Function::Holding,
            start,
            count: words.len() as u16,
        },
        words: Some(words.to_vec()),
    }
}

fn read(spec: &ChannelSpec, words: &[u16]) -> (i32, ChannelStatus) {
    let raw = raw_value(spec, &[block(spec.address, words)]).unwrap();
    convert(spec, raw)
}

/// 0x12345678 = 305419896, as each order puts its bytes A B C D on the wire.
#[test]
fn thirty_two_bit_orders_with_exact_bytes() {
    let cases = [
        (WordOrder::Abcd, [0x1234, 0x5678]),
        (WordOrder::Cdab, [0x5678, 0x1234]),
        (WordOrder::Badc, [0x3412, 0x7856]),
        (WordOrder::Dcba, [0x7856, 0x3412]),
    ];
    for (order, words) in cases {
        for t in [ValueType::U32, ValueType::I32] {
            let spec = ch(t, order);
            assert_eq!(
                read(&spec, &words),
                (0x1234_5678, ChannelStatus::Ok),
                "{order:?} {t:?}"
            );
            assert_eq!(
                words_for_raw(&spec, 0x1234_5678),
                words.to_vec(),
                "{order:?}"
            );
        }
    }
    // Negative i32: -2 = 0xFFFFFFFE.
    assert_eq!(
        read(&ch(ValueType::I32, WordOrder::Cdab), &[0xFFFE, 0xFFFF]).0,
        -2
    );
    assert_eq!(
        read(&ch(ValueType::U32, WordOrder::Abcd), &[0x7FFF, 0xFFFF]).0,
        i32::MAX
    );
    // Past i32: not a wrap, a range fault.
    assert_eq!(
        read(&ch(ValueType::U32, WordOrder::Abcd), &[0x8000, 0x0000]),
        (0, ChannelStatus::Range)
    );
}

#[test]
fn sixteen_bit_byte_order_and_sign() {
    assert_eq!(read(&ch(ValueType::U16, WordOrder::Abcd), &[0x0102]).0, 258);
    assert_eq!(read(&ch(ValueType::U16, WordOrder::Cdab), &[0x0102]).0, 258);
    assert_eq!(read(&ch(ValueType::U16, WordOrder::Badc), &[0x0201]).0, 258);
    assert_eq!(read(&ch(ValueType::U16, WordOrder::Dcba), &[0x0201]).0, 258);
    assert_eq!(
        read(&ch(ValueType::I16, WordOrder::Abcd), &[0xFF38]).0,
        -200
    );
    assert_eq!(
        read(&ch(ValueType::U16, WordOrder::Abcd), &[0xFF38]).0,
        65336
    );
}

/// 12.5 = 0x41480000 as f32.
#[test]
fn floats_in_every_order_and_nan_is_a_fault() {
    let cases = [
        (WordOrder::Abcd, [0x4148, 0x0000]),
        (WordOrder::Cdab, [0x0000, 0x4148]),
        (WordOrder::Badc, [0x4841, 0x0000]),
        (WordOrder::Dcba, [0x0000, 0x4841]),
    ];
    for (order, words) in cases {
        let mut spec = ch(ValueType::F32, order);
        spec.scale = 10.0;
        assert_eq!(read(&spec, &words), (125, ChannelStatus::Ok), "{order:?}");
    }
    let spec = ch(ValueType::F32, WordOrder::Abcd);
    assert_eq!(read(&spec, &[0x7FC0, 0x0000]), (0, ChannelStatus::Fault)); // NaN
    assert_eq!(read(&spec, &[0x7F80, 0x0000]), (0, ChannelStatus::Fault)); // +inf
    assert_eq!(read(&spec, &[0xFF80, 0x0000]), (0, ChannelStatus::Fault)); // -inf
    let mut big = ch(ValueType::F32, WordOrder::Abcd);
    big.scale = 1e6;
    assert_eq!(read(&big, &[0x7F7F, 0xFFFF]), (0, ChannelStatus::Range)); // f32::MAX × 1e6
}

#[test]
fn scale_and_offset_round_half_away_from_zero() {
    // The temperature module: °C = raw / 10 − 50, so 0.1 °C = raw − 500.
    let mut t = ch(ValueType::U16, WordOrder::Abcd);
    t.quantity = Quantity::Temperature;
    t.offset = -500.0;
    assert_eq!(read(&t, &[756]).0, 256); // 25.6 °C
    assert_eq!(read(&t, &[0]).0, -500); // −50.0 °C
                                        // 0.01 mA → µA.
    let mut s = ch(ValueType::U16, WordOrder::Abcd);
    s.scale = 10.0;
    assert_eq!(read(&s, &[1234]).0, 12340);
    // Halves round away from zero, both signs.
    let mut h = ch(ValueType::I16, WordOrder::Abcd);
    h.scale = 0.5;
    assert_eq!(read(&h, &[3]).0, 2); // 1.5 → 2
    assert_eq!(read(&h, &[(-3i16) as u16]).0, -2); // −1.5 → −2
    assert_eq!(read(&h, &[1]).0, 1); // 0.5 → 1
    h.scale = 0.1;
    assert_eq!(read(&h, &[14]).0, 1); // 1.4 → 1
                                      // MPa as f32 → kPa.
    let mut p = ch(ValueType::F32, WordOrder::Cdab);
    p.scale = 1000.0;
    let words = words_for_raw(&p, 0.35f32.to_bits());
    assert_eq!(read(&p, &words).0, 350);
}

#[test]
fn sentinels_come_before_scaling() {
    let mut s = ch(ValueType::U16, WordOrder::Abcd);
    s.sentinels = vec![
        Sentinel {
            raw: 0xE5E5,
            status: ChannelStatus::Short,
        },
        Sentinel {
            raw: 0xFAFA,
            status: ChannelStatus::Open,
        },
    ];
    s.offset = -500.0;
    assert_eq!(read(&s, &[0xE5E5]), (0, ChannelStatus::Short));
    assert_eq!(read(&s, &[0xFAFA]), (0, ChannelStatus::Open));
    assert_eq!(read(&s, &[0xFAFB]), (0xFAFB - 500, ChannelStatus::Ok));
    // A sentinel is matched on the value as ordered, not the wire bytes.
    s.order = WordOrder::Badc;
    assert_eq!(read(&s, &[0xFAFA]), (0, ChannelStatus::Open));
    assert_eq!(read(&s, &[0xE5E5]), (0, ChannelStatus::Short));
    let mut wide = ch(ValueType::U32, WordOrder::Cdab);
    wide.sentinels = vec![Sentinel {
        raw: 0xFFFF_FFFF,
        status: ChannelStatus::Fault,
    }];
    assert_eq!(read(&wide, &[0xFFFF, 0xFFFF]), (0, ChannelStatus::Fault));
}

#[test]
fn encoding_inverts_decoding() {
    for order in [
        WordOrder::Abcd,
        WordOrder::Cdab,
        WordOrder::Badc,
        WordOrder::Dcba,
    ] {
        for t in [
            ValueType::U16,
            ValueType::I16,
            ValueType::U32,
            ValueType::I32,
            ValueType::F32,
        ] {
            let mut spec = ch(t, order);
            spec.scale = 0.1;
            spec.offset = -20.0;
            for v in [-20, 0, 7, 1234, 3000] {
                let raw = raw_for_value(&spec, v);
                let words = words_for_raw(&spec, raw);
                assert_eq!(
                    read(&spec, &words),
                    (v, ChannelStatus::Ok),
                    "{t:?} {order:?} {v}"
                );
            }
        }
    }
}

const ASJ: &str = r#"
model = "asj"
name = "test"
[[channels]]
id = "rc1"
quantity = "residual_current"
address = 0
sentinels = [{ raw = 0xFAFA, status = "open" }]
[[channels]]
id = "t1"
quantity = "temperature"
address = 1
offset = -500.0
[[status]]
address = 0x1B
bit = 0
meaning = "pre_alarm"
channel = "rc1"
[[status]]
address = 0x1B
bit = 1
meaning = "alarm"
channel = "rc1"
[[status]]
address = 0x1B
bit = 2
meaning = "open"
channel = "rc1"
[[status]]
address = 0x1B
bit = 3
meaning = "supply"
"#;

#[test]
fn status_bits_set_faults_and_flags() {
    let map = parse_map(ASJ).unwrap();
    let reqs = plan(&map, &[]);
    assert_eq!(
        reqs,
        vec![
            ReadRequest {
                function: Function::Holding,
                start: 0,
                count: 2
            },
            ReadRequest {
                function: Function::Holding,
                start: 0x1B,
                count: 1
            },
        ]
    );
    let blocks = |rc: u16, t: u16, st: u16| {
        vec![
            Block {
                request: reqs[0],
                words: Some(vec![rc, t]),
            },
            Block {
                request: reqs[1],
                words: Some(vec![st]),
            },
        ]
    };
    let r = decode(&map, &[], &blocks(312, 756, 0));
    assert_eq!(
        r.channels
            .iter()
            .map(|d| (d.value, d.status))
            .collect::<Vec<_>>(),
        vec![(312, ChannelStatus::Ok), (256, ChannelStatus::Ok)]
    );
    assert!(r.flags.is_empty());
    let r = decode(&map, &[], &blocks(620, 756, 0b1011));
    assert_eq!(r.channels[0].status, ChannelStatus::Ok);
    let rc1 = Some(ChannelId::new("rc1").unwrap());
    assert_eq!(
        r.flags,
        vec![
            Flag {
                meaning: Meaning::PreAlarm,
                channel: rc1.clone()
            },
            Flag {
                meaning: Meaning::Alarm,
                channel: rc1.clone()
            },
            Flag {
                meaning: Meaning::Supply,
                channel: None
            },
        ]
    );
    // CT break bit → open; the sentinel wins over it.
    let r = decode(&map, &[], &blocks(0, 756, 0b0100));
    assert_eq!(
        (r.channels[0].value, r.channels[0].status),
        (0, ChannelStatus::Open)
    );
    assert_eq!(r.channels[1].status, ChannelStatus::Ok);
    // A failed block: its channels are faults, its bits unknown.
    let mut b = blocks(312, 756, 0b0100);
    b[0].words = None;
    let r = decode(&map, &[], &b);
    assert!(r.channels.iter().all(|c| c.status == ChannelStatus::Fault));
    // Skipped channels are neither read nor reported, nor their bits.
    let skip = [ChannelId::new("rc1").unwrap()];
    assert_eq!(plan(&map, &skip)[0].count, 1);
    assert_eq!(plan(&map, &skip)[0].start, 1);
    let r = decode(&map, &skip, &blocks(0, 756, 0b0111));
    assert_eq!(r.channels.len(), 1);
    assert_eq!(r.flags.len(), 0);
}

#[test]
fn a_short_block_faults_the_channels_it_misses() {
    let map = parse_map(ASJ).unwrap();
    let reqs = plan(&map, &[]);
    let b = vec![Block {
        request: reqs[0],
        words: Some(vec![312]),
    }];
    let r = decode(&map, &[], &b);
    assert_eq!(r.channels[0].status, ChannelStatus::Ok);
    assert_eq!(r.channels[1].status, ChannelStatus::Fault);
}

#[test]
fn planning_merges_contiguous_spans_up_to_the_protocol_limit() {
    let mut text = String::from("model = \"big\"\n");
    // 30 u32 channels at 0..60 and 2 at 200.. (a gap), input table.
    for i in 0..32u32 {
        let addr = if i < 30 { i * 2 } else { 200 + (i - 30) * 2 };
        text += &format!(
                "[[channels]]\nid = \"c{i}\"\nquantity = \"current\"\nfunction = \"input\"\ntype = \"u32\"\naddress = {addr}\n"
            );
    }
    let map = parse_map(&text).unwrap();
    let p = plan(&map, &[]);
    assert_eq!(
        p,
        vec![
            ReadRequest {
                function: Function::Input,
                start: 0,
                count: 60
            },
            ReadRequest {
                function: Function::Input,
                start: 200,
                count: 4
            },
        ]
    );
    // 32 × 4-register-apart? Use 130 contiguous u16s: 125 + 5.
    let mut spans = RegisterMap {
        model: "x".into(),
        name: String::new(),
        channels: vec![],
        status: vec![],
    };
    for i in 0..130u16 {
        let mut c = ch(ValueType::U16, WordOrder::Abcd);
        c.address = i;
        c.id = ChannelId::new(&format!("c{i}")).unwrap();
        spans.channels.push(c);
    }
    let p = plan(&spans, &[]);
    assert_eq!(p.len(), 2);
    assert_eq!((p[0].start, p[0].count), (0, 125));
    assert_eq!((p[1].start, p[1].count), (125, 5));
    // Coils: 2000 per read.
    for c in &mut spans.channels {
        c.function = Function::Coil;
        c.value_type = ValueType::Bool;
    }
    assert_eq!(plan(&spans, &[]).len(), 1);
    // A u32 is never split across two reads.
    let mut split = spans.clone();
    for c in &mut split.channels {
        c.function = Function::Holding;
        c.value_type = ValueType::U16;
    }
    split.channels[124].value_type = ValueType::U32;
    split.channels.remove(125);
    let p = plan(&split, &[]);
    assert_eq!((p[0].start, p[0].count), (0, 124));
    assert_eq!((p[1].start, p[1].count), (124, 6));
}

#[test]
fn validation_reports_every_problem_with_its_path() {
    let text = r#"
model = "Bad Model"
colour = "red"
[[channels]]
id = "rc1"
quantity = "residual_current"
address = 0
type = "u64"
[[channels]]
id = "rc1"
quantity = "volume"
address = 0
scale = 0.0
order = "ADCB"
function = "holdings"
[[channels]]
id = "t1"
quantity = "temperature"
address = 4
type = "u32"
sentinels = [{ raw = 0x1FFFFFFFF, status = "ok" }]
[[channels]]
id = "t2"
quantity = "temperature"
address = 5
[[channels]]
id = "c1"
quantity = "current"
function = "coil"
type = "u16"
[[status]]
address = 4
bit = 16
meaning = "burning"
[[status]]
address = 9
meaning = "alarm"
channel = "zz"
[[status]]
address = 9
meaning = "supply"
channel = "t1"
"#;
    let issues = parse_map(text).unwrap_err();
    let got: Vec<String> = issues.iter().map(ToString::to_string).collect();
    let want = [
            "colour: unknown key",
            "model: must match [a-z0-9_-]{1,32}",
            "channels[0].type: unknown type \"u64\" (u16, i16, u32, i32, f32, bool)",
            "channels[1].id: duplicate channel id \"rc1\"",
            "channels[1].quantity: unknown quantity \"volume\"",
            "channels[1].function: unknown function \"holdings\" (holding, input, coil, discrete)",
            "channels[1].order: unknown order \"ADCB\" (ABCD, CDAB, BADC, DCBA)",
            "channels[1].scale: must be a finite number other than zero",
            "channels[2].sentinels[0].raw: 8589934591 does not fit the channel's 2 register(s)",
            "channels[2].sentinels[0].status: \"ok\" must be open, short, range or fault",
            "channels[4].address: is required",
            "channels[4].type: a coil is read as bool",
            "channels[3].address: holding register 5 overlaps channels[2]",
            "status[0].bit: must be 0..=15",
            "status[0].meaning: unknown meaning \"burning\" (pre_alarm, alarm, open, short, fault, supply)",
            "status[1].channel: no channel \"zz\" in the map",
            "status[2].channel: supply is about the device, not a channel",
        ];
    for w in want {
        assert!(got.iter().any(|g| g == w), "missing {w:?} in {got:#?}");
    }
    // Status register 4 is t1's value: reported too.
    assert!(
        got.iter()
            .any(|g| g.starts_with("status[0].address: holding register 4 is channels[2]")),
        "{got:#?}"
    );
}

#[test]
fn hostile_map_text_is_an_error_not_a_panic() {
    for text in [
        "",
        "model = 1",
        "[[channels]]\naddress = -1\nid = \"a\"\nquantity = \"arc\"",
        "[[channels]]\naddress = 65535\nid = \"a\"\nquantity = \"arc\"\ntype = \"f32\"",
        "[[channels]]\naddress = 99999999999\nid = \"a\"\nquantity = \"arc\"",
        "[[status]]\naddress = 1\nbit = -5\nmeaning = \"alarm\"",
        "channels = 5",
        "\u{0}",
    ] {
        assert!(parse_map(text).is_err(), "{text:?}");
    }
}

#[test]
fn shipped_maps_parse_and_keep_within_one_message() {
    for (file, text) in SHIPPED {
        let map = parse_map(text).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        assert!(map.channels.len() <= wire::MAX_CHANNELS);
        assert!(!plan(&map, &[]).is_empty());
        assert_eq!(format!("{}.toml", map.model), *file);
    }
    // DOMAIN.md §4, re-declared here so a wrong constant in a map fails.
    let asj = shipped("acrel_asj").unwrap();
    assert_eq!(asj.channels[0].address, 0x0000);
    assert!(asj.status.iter().all(|s| s.address == 0x001B));
    let aim = shipped("aim_r100").unwrap();
    let rc: Vec<u16> = aim
        .channels
        .iter()
        .filter(|c| c.quantity == Quantity::ResidualCurrent)
        .map(|c| c.address)
        .collect();
    assert_eq!(rc, (0x004A..=0x0055).collect::<Vec<_>>());
    for c in aim
        .channels
        .iter()
        .filter(|c| c.quantity == Quantity::ResidualCurrent)
    {
        assert!(c.sentinels.contains(&Sentinel {
            raw: 0xE5E5,
            status: ChannelStatus::Short
        }));
        assert!(c.sentinels.contains(&Sentinel {
            raw: 0xFAFA,
            status: ChannelStatus::Open
        }));
    }
    let t = shipped("temp_module").unwrap();
    assert_eq!(convert(&t.channels[0], 756), (256, ChannelStatus::Ok));
}
