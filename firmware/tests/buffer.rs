//! Offline buffer: oldest-first, drops the oldest telemetry when full,
//! never an alarm event, never the record in flight, and counts drops.

use firmware::buffer::{Body, Outbox, Record};
use wire::{ChannelStatus, EventLevel};

fn tel(seq: u32) -> Record {
    Record {
        boot: 1,
        seq,
        ts: 0,
        body: Body::telemetry(&[(seq as i32, ChannelStatus::Ok)]),
    }
}

fn ev(seq: u32, level: EventLevel) -> Record {
    Record {
        boot: 1,
        seq,
        ts: 0,
        body: Body::Event { ch: 0, level, v: 1 },
    }
}

fn seqs<const N: usize>(o: &Outbox<N>) -> Vec<u32> {
    (0..o.len()).map(|i| o.get(i).unwrap().seq).collect()
}

#[test]
fn fifo_and_drop_oldest_telemetry() {
    let mut o = Outbox::<3>::new();
    for s in 0..3 {
        assert!(o.push(tel(s)));
    }
    assert!(o.push(tel(3)));
    assert_eq!(seqs(&o), [1, 2, 3]);
    assert_eq!(o.dropped(), 1);
    assert_eq!(o.pop_front().unwrap().seq, 1);
    assert_eq!(seqs(&o), [2, 3]);
}

#[test]
fn alarm_events_survive_and_in_flight_is_kept() {
    let mut o = Outbox::<3>::new();
    o.push(tel(0));
    o.push(ev(1, EventLevel::Alarm));
    o.push(tel(2));
    o.mark_in_flight(); // seq 0 is being published
    o.push(tel(3));
    assert_eq!(seqs(&o), [0, 1, 3], "drops seq 2, not the record in flight");
    o.push(ev(4, EventLevel::Alarm));
    assert_eq!(seqs(&o), [0, 1, 4]);
    o.push(ev(5, EventLevel::Normal));
    assert_eq!(
        seqs(&o),
        [0, 1, 4],
        "nothing may go: the new non-alarm record is dropped"
    );
    o.push(ev(6, EventLevel::Alarm));
    assert_eq!(
        seqs(&o),
        [0, 4, 6],
        "all alarms: the oldest not in flight makes room"
    );
    assert_eq!(o.dropped(), 4);
}

#[test]
fn wraps_around_many_times() {
    let mut o = Outbox::<5>::new();
    for s in 0..1000 {
        o.push(tel(s));
        if s % 3 == 0 {
            o.pop_front();
        }
    }
    let v = seqs(&o);
    assert!(v.windows(2).all(|w| w[0] < w[1]), "{v:?}");
    assert_eq!(*v.last().unwrap(), 999);
}
