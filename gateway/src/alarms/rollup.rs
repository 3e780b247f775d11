//! Hourly rollups of every channel (每回路每小时 最小/最大/平均/条数), kept
//! by the gateway itself in the SQL store, so trends (daily maximum
//! residual current per loop over 30/90/365 days) work on the embedded
//! defaults without a time-series DB and stay fast over years: a year of
//! one channel is 8,760 rows.
//!
//! The pipeline adds each measured reading (faulted channels carry no
//! measurement) to an in-memory aggregate per (channel, hour); every minute
//! the aggregates are merged into the store (an upsert that keeps min, max,
//! sum and count) and cleared. A crash loses at most that minute of
//! rollups; the readings themselves are in the time-series DB.

use std::collections::HashMap;

pub const HOUR_MS: u64 = 3_600_000;

// The rows it merges into are the store's.
pub use crate::store::{RollupAgg as Agg, RollupKey as Key, RollupLast as Last};

impl Agg {
    fn of(v: i64) -> Agg {
        Agg {
            min: v,
            max: v,
            sum: v,
            count: 1,
        }
    }

    fn add(&mut self, v: i64) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        self.count += 1;
    }
}

/// Aggregates not yet merged into the store, and each channel's latest
/// reading since the last merge.
#[derive(Debug, Default)]
pub struct Rollups {
    pending: HashMap<Key, Agg>,
    last: HashMap<(String, String, String), Last>,
}

impl Rollups {
    pub fn add(&mut self, site: &str, node: &str, channel: &str, quantity: &str, v: i32, at: u64) {
        let key = Key {
            site: site.to_string(),
            node: node.to_string(),
            channel: channel.to_string(),
            quantity: quantity.to_string(),
            hour: (at - at % HOUR_MS) as i64,
        };
        let latest = self
            .last
            .entry((site.to_string(), node.to_string(), channel.to_string()))
            .or_insert_with(|| (quantity.to_string(), v, at));
        if at >= latest.2 {
            *latest = (quantity.to_string(), v, at);
        }
        self.pending
            .entry(key)
            .and_modify(|a| a.add(v.into()))
            .or_insert_with(|| Agg::of(v.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The latest reading of each channel since the last call.
    pub fn take_last(&mut self) -> Vec<((String, String, String), Last)> {
        let mut out: Vec<_> = self.last.drain().collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Everything pending, in key order, leaving nothing behind.
    pub fn take(&mut self) -> Vec<(Key, Agg)> {
        let mut out: Vec<(Key, Agg)> = self.pending.drain().collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Puts back what could not be stored, merging with anything newer.
    pub fn restore(&mut self, rows: Vec<(Key, Agg)>) {
        for (k, a) in rows {
            self.pending
                .entry(k)
                .and_modify(|p| {
                    p.min = p.min.min(a.min);
                    p.max = p.max.max(a.max);
                    p.sum += a.sum;
                    p.count += a.count;
                })
                .or_insert(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_fold_into_their_channel_hour() {
        let mut r = Rollups::default();
        r.add("s", "n", "rc1", "residual_current", 120, 10 * HOUR_MS + 5);
        r.add(
            "s",
            "n",
            "rc1",
            "residual_current",
            80,
            10 * HOUR_MS + 60_000,
        );
        r.add("s", "n", "rc1", "residual_current", 300, 11 * HOUR_MS);
        r.add("s", "n", "t1", "temperature", -52, 10 * HOUR_MS);
        let rows = r.take();
        assert!(r.is_empty());
        let last = r.take_last();
        assert_eq!(last.len(), 2);
        assert_eq!(
            last[0].1,
            ("residual_current".to_string(), 300, 11 * HOUR_MS)
        );
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].0.hour, (10 * HOUR_MS) as i64);
        assert_eq!(
            rows[0].1,
            Agg {
                min: 80,
                max: 120,
                sum: 200,
                count: 2
            }
        );
        assert_eq!(rows[1].1.max, 300);
        assert_eq!(rows[2].1.min, -52);
        // What could not be stored comes back, merged with newer readings.
        r.add("s", "n", "rc1", "residual_current", 50, 10 * HOUR_MS + 7);
        r.restore(rows);
        let again = r.take();
        assert_eq!(
            again[0].1,
            Agg {
                min: 50,
                max: 120,
                sum: 250,
                count: 3
            }
        );
    }
}
