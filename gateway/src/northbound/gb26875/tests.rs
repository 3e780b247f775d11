//! Codec tests: the standard's example frame byte for byte, hand-built
//! data units, property tests both ways, hostile bytes.

use super::describe;
use super::frame::*;
use super::unit::*;
use proptest::prelude::*;

/// The centre's confirm frame from the standard's example (checksum 0xAB).
const CONFIRM: [u8; 30] = [
    0x40, 0x40, 0x01, 0x00, 0x01, 0x01, 0x23, 0x3A, 0x09, 0x1A, 0x09, 0x0C, 0x38, 0x5B, 0x01, 0x00,
    0x00, 0x00, 0x79, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xAB, 0x23, 0x23,
];

#[test]
fn the_standards_confirm_frame_decodes_and_re_encodes_byte_for_byte() {
    let f = Frame::decode(&CONFIRM).unwrap();
    assert_eq!(f.serial, 1);
    assert_eq!(f.version, [1, 1]);
    assert_eq!(
        f.time,
        TimeLabel {
            year: 12,
            month: 9,
            day: 26,
            hour: 9,
            minute: 58,
            second: 35
        }
    );
    assert_eq!(f.time.to_string(), "2012-09-26 09:58:35");
    assert_eq!(f.source, [0x38, 0x5B, 0x01, 0, 0, 0]);
    assert_eq!(f.destination, [0x79, 0x03, 0, 0, 0, 0]);
    assert_eq!(f.command, Command::Confirm);
    assert!(f.data.is_empty());
    assert_eq!(checksum(&CONFIRM[2..27]), 0xAB);
    assert_eq!(f.encode().unwrap(), CONFIRM.to_vec());
}

#[test]
fn a_wrong_checksum_a_wrong_end_an_unknown_command_and_an_over_length_are_refused() {
    let mut b = CONFIRM;
    b[27] = 0xAC;
    assert_eq!(
        Frame::decode(&b),
        Err(FrameError::BadChecksum {
            serial: 1,
            got: 0xAC,
            want: 0xAB
        })
    );
    let mut b = CONFIRM;
    b[29] = 0x24;
    assert_eq!(Frame::decode(&b), Err(FrameError::BadEnd { serial: 1 }));
    let mut b = CONFIRM;
    b[26] = 7;
    b[27] = 0xAB + 4;
    assert_eq!(
        Frame::decode(&b),
        Err(FrameError::UnknownCommand { serial: 1, code: 7 })
    );
    let mut b = CONFIRM;
    b[24] = 0x01;
    b[25] = 0x04; // 1025
    assert_eq!(
        Frame::decode(&b),
        Err(FrameError::OverLength {
            serial: 1,
            len: 1025
        })
    );
    assert_eq!(Frame::decode(&CONFIRM[..29]), Err(FrameError::Truncated));
    let mut longer = CONFIRM.to_vec();
    longer.push(0);
    assert_eq!(Frame::decode(&longer), Err(FrameError::Trailing));
}

#[test]
fn descriptions_are_gb18030_cut_at_a_character_boundary() {
    let d = encode_description("一楼配电箱");
    assert_eq!(
        &d[..10],
        &[0xD2, 0xBB, 0xC2, 0xA5, 0xC5, 0xE4, 0xB5, 0xE7, 0xCF, 0xE4]
    );
    assert!(d[10..].iter().all(|b| *b == 0));
    assert_eq!(decode_description(&d), "一楼配电箱");
    // 16 two-byte characters do not fit 31 bytes: 15 do, no half character.
    let long = "配".repeat(16);
    let d = encode_description(&long);
    assert_eq!(decode_description(&d), "配".repeat(15));
    assert_eq!(d[30], 0);
}

/// A component-state frame built by hand from the standard's layout.
#[test]
fn a_component_state_unit_has_the_standards_layout() {
    let t = TimeLabel {
        year: 26,
        month: 12,
        day: 3,
        hour: 19,
        minute: 5,
        second: 7,
    };
    let unit = DataUnit::ComponentState(vec![Timed {
        object: ComponentState {
            system_type: 1,
            system_address: 0,
            component_type: component_type::RESIDUAL_CURRENT_DETECTOR,
            component_address: 0x0102_0304,
            state: component_bits::NORMAL | component_bits::FIRE,
            description: encode_description("一楼"),
        },
        time: t,
    }]);
    let b = unit.encode().unwrap();
    let mut want = vec![2, 1, 1, 0, 17, 0x04, 0x03, 0x02, 0x01, 0x03, 0x00];
    want.extend_from_slice(&[0xD2, 0xBB, 0xC2, 0xA5]);
    want.extend_from_slice(&[0; 27]);
    want.extend_from_slice(&[7, 5, 19, 3, 12, 26]);
    assert_eq!(b, want);
    assert_eq!(b.len(), 2 + 46);
    assert_eq!(DataUnit::decode(&b).unwrap(), unit);
}

#[test]
fn downstream_units_decode() {
    // 91 查岗, one object: answer within 5 minutes.
    assert_eq!(
        DataUnit::decode(&[91, 1, 5]).unwrap(),
        DataUnit::DutyCheck(vec![5])
    );
    // 90 time sync.
    assert_eq!(
        DataUnit::decode(&[90, 1, 35, 58, 9, 26, 9, 12]).unwrap(),
        DataUnit::TimeSync(vec![TimeLabel {
            year: 12,
            month: 9,
            day: 26,
            hour: 9,
            minute: 58,
            second: 35
        }])
    );
    // 62 read component state: system 1, address 0, component 7.
    assert_eq!(
        DataUnit::decode(&[62, 1, 1, 0, 7, 0, 0, 0]).unwrap(),
        DataUnit::Read {
            kind: 62,
            objects: vec![vec![1, 0, 7, 0, 0, 0]]
        }
    );
    assert_eq!(
        DataUnit::decode(&[81, 1, 0]).unwrap(),
        DataUnit::Read {
            kind: 81,
            objects: vec![vec![0]]
        }
    );
    assert_eq!(
        DataUnit::decode(&[89, 1, 0]).unwrap(),
        DataUnit::Initialise(vec![0])
    );
    assert_eq!(
        DataUnit::decode(&[70, 1, 0]),
        Err(UnitError::UnknownType(70))
    );
    assert_eq!(
        DataUnit::decode(&[91, 2, 5]),
        Err(UnitError::Length {
            kind: 91,
            count: 2,
            need: 4,
            have: 3
        })
    );
    assert_eq!(DataUnit::decode(&[]), Err(UnitError::Empty));
}

#[test]
fn time_labels_are_china_standard_time() {
    // 2012-09-26 09:58:35 CST = 01:58:35 UTC = 1348624715 s.
    let t = TimeLabel::from_unix_ms(1_348_624_715_000);
    assert_eq!(t.to_string(), "2012-09-26 09:58:35");
    assert_eq!(t.to_unix_ms(), Some(1_348_624_715_000));
    assert_eq!(TimeLabel::default().to_unix_ms(), None);
}

#[test]
fn the_deframer_takes_several_frames_per_read_one_frame_across_reads_and_resyncs() {
    let mut stream = b"\x00\x01@#garbage@".to_vec();
    stream.extend_from_slice(&CONFIRM);
    stream.extend_from_slice(&CONFIRM);
    let mut bad = CONFIRM;
    bad[27] ^= 1;
    stream.extend_from_slice(&bad);
    stream.extend_from_slice(b"@@@");
    stream.extend_from_slice(&CONFIRM);
    // One byte at a time.
    let mut d = Deframer::new();
    let mut got = Vec::new();
    for b in &stream {
        assert_eq!(d.push(std::slice::from_ref(b)), 1);
        while let Some(r) = d.next_frame() {
            got.push(r.map(|f| f.serial));
        }
    }
    assert_eq!(
        got,
        vec![
            Ok(1),
            Ok(1),
            Err(FrameError::BadChecksum {
                serial: 1,
                got: 0xAA,
                want: 0xAB
            }),
            Ok(1)
        ]
    );
    // All at once.
    let mut d = Deframer::new();
    assert_eq!(d.push(&stream), stream.len());
    let mut n = 0;
    while let Some(r) = d.next_frame() {
        n += usize::from(r.is_ok());
    }
    assert_eq!(n, 3);
    assert_eq!(d.buffered(), 0);
}

#[test]
fn the_deframer_is_bounded() {
    let mut d = Deframer::new();
    let flood = vec![b'@'; 100_000];
    let mut total = 0;
    for _ in 0..100 {
        total += d.push(&flood);
        while d.next_frame().is_some() {}
        assert!(d.buffered() <= Deframer::ROOM + MAX_FRAME);
    }
    assert!(total > 0);
    // A header announcing 1024 bytes that never come: held, not grown.
    let mut d = Deframer::new();
    let mut head = CONFIRM[..27].to_vec();
    head[24] = 0x00;
    head[25] = 0x04;
    d.push(&head);
    assert!(d.next_frame().is_none());
    assert_eq!(d.buffered(), 27);
}

#[test]
fn hex_and_words_for_installers() {
    let text =
        "40 40 01 00 01 01 23 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 00 00 03 AB 23 23";
    let bytes = describe::parse_hex(text).unwrap();
    assert_eq!(bytes, CONFIRM.to_vec());
    let words = describe::stream(&bytes);
    assert!(words.contains("3 确认"), "{words}");
    assert!(words.contains("2012-09-26 09:58:35"), "{words}");
    assert!(words.contains("00000001"), "{words}");
    assert!(describe::parse_hex("4").is_err());
    assert!(describe::parse_hex("zz").is_err());
    assert!(describe::stream(b"nothing").contains("no frame"));
}

fn time() -> impl Strategy<Value = TimeLabel> {
    any::<[u8; 6]>().prop_map(TimeLabel::from_bytes)
}

fn timed<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Timed<T>> {
    (s, time()).prop_map(|(object, time)| Timed { object, time })
}

fn unit() -> impl Strategy<Value = DataUnit> {
    let read_kind = prop::sample::select(vec![
        61u8, 62, 63, 64, 65, 66, 67, 68, 81, 82, 83, 84, 85, 86, 87, 88,
    ]);
    prop_oneof![
        prop::collection::vec(
            timed(any::<(u8, u8, u16)>().prop_map(|(a, b, c)| SystemState {
                system_type: a,
                system_address: b,
                state: c
            })),
            0..50
        )
        .prop_map(DataUnit::SystemState),
        prop::collection::vec(
            timed(
                (any::<(u8, u8, u8, u32, u16)>(), any::<[u8; 31]>()).prop_map(
                    |((a, b, c, d, e), description)| ComponentState {
                        system_type: a,
                        system_address: b,
                        component_type: c,
                        component_address: d,
                        state: e,
                        description
                    }
                )
            ),
            0..22
        )
        .prop_map(DataUnit::ComponentState),
        prop::collection::vec(
            timed(
                any::<(u8, u8, u8, u32, u8, i16)>().prop_map(|(a, b, c, d, e, v)| {
                    ComponentAnalog {
                        system_type: a,
                        system_address: b,
                        component_type: c,
                        component_address: d,
                        analog_type: e,
                        value: v,
                    }
                })
            ),
            0..60
        )
        .prop_map(DataUnit::ComponentAnalog),
        prop::collection::vec(
            timed(
                any::<(u8, u8, u8, u8)>().prop_map(|(a, b, c, d)| Operation {
                    system_type: a,
                    system_address: b,
                    operation: c,
                    operator: d
                })
            ),
            0..100
        )
        .prop_map(DataUnit::Operation),
        prop::collection::vec(timed(any::<u8>()), 0..140).prop_map(DataUnit::DeviceState),
        prop::collection::vec(
            timed(any::<(u8, u8)>().prop_map(|(a, b)| DeviceOperation {
                operation: a,
                operator: b
            })),
            0..120
        )
        .prop_map(DataUnit::DeviceOperation),
        prop::collection::vec(time(), 0..150).prop_map(DataUnit::DeviceTime),
        prop::collection::vec(time(), 0..150).prop_map(DataUnit::TimeSync),
        prop::collection::vec(any::<u8>(), 0..255).prop_map(DataUnit::Initialise),
        prop::collection::vec(any::<u8>(), 0..255).prop_map(DataUnit::DutyCheck),
        (
            read_kind,
            any::<u8>(),
            prop::collection::vec(any::<[u8; 9]>(), 0..100)
        )
            .prop_map(|(kind, _, objs)| {
                let len = read_object_len(kind).unwrap();
                DataUnit::Read {
                    kind,
                    objects: objs.into_iter().map(|o| o[..len].to_vec()).collect(),
                }
            }),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        any::<u16>(),
        any::<[u8; 2]>(),
        time(),
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
        1u8..=6,
        prop::collection::vec(any::<u8>(), 0..=MAX_DATA),
    )
        .prop_map(
            |(serial, version, time, source, destination, c, data)| Frame {
                serial,
                version,
                time,
                source,
                destination,
                command: Command::from_code(c).unwrap(),
                data,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn frames_round_trip(f in frame()) {
        let b = f.encode().unwrap();
        prop_assert_eq!(b.len(), f.data.len() + OVERHEAD);
        prop_assert_eq!(Frame::decode(&b).unwrap(), f);
    }

    #[test]
    fn units_round_trip_both_ways(u in unit()) {
        match u.encode() {
            Ok(b) => {
                prop_assert!(b.len() <= MAX_DATA);
                let back = DataUnit::decode(&b).unwrap();
                prop_assert_eq!(back.encode().unwrap(), b);
                prop_assert_eq!(back, u);
            }
            Err(EncodeError::TooLong(n)) => prop_assert!(n > MAX_DATA),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn decoded_units_re_encode_byte_for_byte(b in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(u) = DataUnit::decode(&b) {
            prop_assert_eq!(u.encode().unwrap(), b);
        }
    }

    #[test]
    fn frames_split_anywhere_with_garbage_between_come_out_whole(
        frames in prop::collection::vec(frame(), 1..5),
        garbage in prop::collection::vec(prop::collection::vec(any::<u8>().prop_filter("no @", |b| *b != b'@'), 0..40), 5),
        cuts in prop::collection::vec(1usize..700, 1..20),
    ) {
        let mut stream = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            stream.extend_from_slice(&garbage[i]);
            stream.extend_from_slice(&f.encode().unwrap());
        }
        let mut d = Deframer::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        let mut i = 0;
        while !rest.is_empty() {
            let want = cuts[i % cuts.len()].min(rest.len());
            i += 1;
            let took = d.push(&rest[..want]);
            rest = &rest[took..];
            while let Some(r) = d.next_frame() {
                got.push(r.unwrap());
            }
        }
        prop_assert_eq!(got, frames);
        prop_assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn hostile_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..3000)) {
        let _ = Frame::decode(&b);
        let _ = DataUnit::decode(&b);
        let _ = describe::stream(&b);
        let mut d = Deframer::new();
        let mut rest = &b[..];
        loop {
            let took = d.push(rest);
            rest = &rest[took..];
            while let Some(r) = d.next_frame() {
                if let Ok(f) = r {
                    let _ = describe::frame(&f);
                }
            }
            prop_assert!(d.buffered() <= Deframer::ROOM + MAX_FRAME);
            if rest.is_empty() { break; }
        }
    }

    #[test]
    fn hostile_frames_with_valid_framing_never_panic(data in prop::collection::vec(any::<u8>(), 0..400), k in any::<u8>()) {
        let mut data = data;
        if !data.is_empty() { data[0] = k; }
        let f = Frame { serial: 9, version: [1, 1], time: TimeLabel::default(), source: [0; 6], destination: [0; 6], command: Command::Send, data };
        let b = f.encode().unwrap();
        let _ = describe::stream(&b);
    }
}

mod mapping {
    use super::super::map::*;
    use super::super::unit::*;
    use crate::config::Config;
    use crate::store::{AlarmRow, LatestRow};

    fn config() -> Config {
        Config::from_toml(
            "[[sites]]\nid = \"home_a\"\n\
             [[sites.nodes]]\nid = \"n01\"\nlocation = \"一楼\"\n\
             [[sites.nodes.channels]]\nid = \"rc1\"\nquantity = \"residual_current\"\n\
             [[sites.nodes.channels]]\nid = \"t1\"\nquantity = \"temperature\"\nlocation = \"配电箱\"\n\
             [[sites.nodes]]\nid = \"n02\"\n",
        )
        .unwrap()
    }

    fn row(kind: &str, level: &str, cause: &str, state: &str, channel: &str) -> AlarmRow {
        AlarmRow {
            id: 7,
            site: "home_a".into(),
            node: "n01".into(),
            channel: channel.into(),
            cause: cause.into(),
            kind: kind.into(),
            level: level.into(),
            state: state.into(),
            quantity: (!channel.is_empty()).then(|| "temperature".to_string()),
            value: None,
            setpoint: None,
            peak: None,
            raised_at: 1_000,
            updated_at: 2_000,
            cleared_at: (state == "cleared").then_some(3_000),
            acked_at: None,
            acked_by: None,
            ticket_id: None,
            suppressed: false,
            flapping: false,
        }
    }

    fn state_of(o: &Outgoing) -> (u16, u8, u32) {
        match &o.unit {
            DataUnit::ComponentState(v) => (
                v[0].object.state,
                v[0].object.component_type,
                v[0].object.component_address,
            ),
            u => panic!("{u:?}"),
        }
    }

    #[test]
    fn alarms_faults_offline_supply_and_clears_become_the_documented_bits() {
        let c = config();
        let b = component_bits::NORMAL;
        let cases = [
            (
                row(
                    "electrical_fire",
                    "alarm",
                    "temperature_high",
                    "active",
                    "t1",
                ),
                b | component_bits::FIRE,
                18,
                1002,
                true,
            ),
            (
                row(
                    "electrical_fire",
                    "pre_alarm",
                    "temperature_high",
                    "active",
                    "t1",
                ),
                b | component_bits::SUPERVISORY,
                18,
                1002,
                false,
            ),
            (
                row(
                    "fire_facility",
                    "alarm",
                    "water_pressure_low",
                    "active",
                    "t1",
                ),
                b | component_bits::FAULT,
                18,
                1002,
                false,
            ),
            (
                row("fault", "fault", "fault", "active", "t1"),
                b | component_bits::FAULT,
                18,
                1002,
                false,
            ),
            (
                row("offline", "offline", "offline", "active", ""),
                b | component_bits::FAULT,
                16,
                1000,
                false,
            ),
            (
                row("fault", "fault", "supply", "active", ""),
                b | component_bits::MAIN_POWER_FAULT,
                16,
                1000,
                false,
            ),
            (
                row(
                    "electrical_fire",
                    "alarm",
                    "temperature_high",
                    "latched",
                    "t1",
                ),
                b | component_bits::FIRE,
                18,
                1002,
                true,
            ),
            (
                row(
                    "electrical_fire",
                    "alarm",
                    "temperature_high",
                    "cleared",
                    "t1",
                ),
                b,
                18,
                1002,
                false,
            ),
        ];
        for (r, bits, ty, addr, fire) in cases {
            let o = alarm_unit(&c, 1, &r).unwrap();
            assert_eq!(
                state_of(&o),
                (bits, ty, addr),
                "{} {} {}",
                r.kind,
                r.level,
                r.state
            );
            assert_eq!(o.fire, fire);
            assert_eq!(o.alarm_id, Some(7));
        }
        let raised =
            alarm_unit(&c, 1, &row("electrical_fire", "alarm", "x", "active", "t1")).unwrap();
        let cleared = alarm_unit(
            &c,
            1,
            &row("electrical_fire", "alarm", "x", "cleared", "t1"),
        )
        .unwrap();
        assert_eq!(raised.subject, "alarm:7:alarm");
        assert_eq!(cleared.subject, "alarm:7:clear");
        let mut suppressed = row("electrical_fire", "alarm", "x", "active", "t1");
        suppressed.suppressed = true;
        assert!(alarm_unit(&c, 1, &suppressed).is_none());
        assert!(alarm_unit(&c, 1, &row("fault", "fault", "seq_restart", "cleared", "")).is_none());
        // The description: node and channel locations.
        match &raised.unit {
            DataUnit::ComponentState(v) => {
                assert_eq!(v[0].object.description_text(), "一楼 配电箱")
            }
            _ => unreachable!(),
        }
        // Device state: fire and line fault folded in.
        let standing = [
            row("electrical_fire", "alarm", "x", "active", "t1"),
            row("offline", "offline", "offline", "active", ""),
        ];
        assert_eq!(
            device_state(&standing, false),
            device_bits::NORMAL | device_bits::FIRE | device_bits::FAULT | device_bits::LINE_FAULT
        );
    }

    #[test]
    fn readings_become_analog_values_in_the_documented_types() {
        let c = config();
        let latest = |channel: &str, quantity: &str, value: i64| LatestRow {
            site: "home_a".into(),
            node: "n01".into(),
            channel: channel.into(),
            quantity: quantity.into(),
            value,
            at: 0,
        };
        let rows = [
            latest("rc1", "residual_current", 512),
            latest("t1", "temperature", 812),
            latest("t1", "voltage", 2200),
            latest("t1", "water_pressure", 100_000),
        ];
        let units = analog_units(&c, 1, &rows, 5);
        assert_eq!(units.len(), 1);
        match &units[0].unit {
            DataUnit::ComponentAnalog(v) => {
                let got: Vec<(u8, u32, u8, i16)> = v
                    .iter()
                    .map(|t| {
                        let o = &t.object;
                        (
                            o.component_type,
                            o.component_address,
                            o.analog_type,
                            o.value,
                        )
                    })
                    .collect();
                assert_eq!(
                    got,
                    vec![
                        (17, 1001, 128, 512),
                        (18, 1002, 3, 812),
                        (99, 1002, 5, i16::MAX)
                    ]
                );
            }
            u => panic!("{u:?}"),
        }
        // 200 readings: four units of at most 60, each within 1024 bytes.
        let many: Vec<LatestRow> = (0..200)
            .map(|_| latest("rc1", "residual_current", 1))
            .collect();
        let units = analog_units(&c, 1, &many, 5);
        assert_eq!(units.len(), 4);
        assert!(units.iter().all(|u| u.unit.encode().unwrap().len() <= 1024));
    }
}
