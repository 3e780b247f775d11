//! Counters of each (centre, site) link, rendered into `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One link's counters.
#[derive(Default, Debug)]
pub struct LinkCounters {
    /// Data frames written (first sends and resends).
    pub sent: AtomicU64,
    pub confirmed: AtomicU64,
    pub denied: AtomicU64,
    /// Resends after a deny or a missing confirmation.
    pub retried: AtomicU64,
    /// Units dropped from a full outbox (never fire alarms).
    pub dropped: AtomicU64,
    /// Frames from the centre refused (bad checksum, length, command, unit).
    pub refused: AtomicU64,
    pub connects: AtomicU64,
    pub disconnects: AtomicU64,
    /// Unconfirmed units in the outbox.
    pub queue_depth: AtomicI64,
    /// 1 while connected.
    pub up: AtomicI64,
}

type Counter = fn(&LinkCounters) -> &AtomicU64;
type Gauge = fn(&LinkCounters) -> &AtomicI64;

/// Every link's counters, by (centre, site).
#[derive(Default)]
pub struct Gb26875Metrics {
    links: Mutex<BTreeMap<(String, String), Arc<LinkCounters>>>,
}

impl Gb26875Metrics {
    /// The counters of a link, created on first use.
    pub fn link(&self, centre: &str, site: &str) -> Arc<LinkCounters> {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links
            .entry((centre.to_string(), site.to_string()))
            .or_default()
            .clone()
    }

    pub fn render(&self, out: &mut String) {
        let links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if links.is_empty() {
            return;
        }
        let counters: [(&str, &str, Counter); 8] = [
            (
                "sent",
                "Data frames sent to the monitoring centre, resends included.",
                |c| &c.sent,
            ),
            ("confirmed", "Data units the centre confirmed.", |c| {
                &c.confirmed
            }),
            ("denied", "Frames the centre denied.", |c| &c.denied),
            ("retried", "Resends after a deny or no confirmation.", |c| {
                &c.retried
            }),
            (
                "dropped",
                "Units dropped from a full outbox (never fire alarms).",
                |c| &c.dropped,
            ),
            (
                "refused",
                "Frames from the centre refused as malformed.",
                |c| &c.refused,
            ),
            ("connects", "Connections established to the centre.", |c| {
                &c.connects
            }),
            (
                "disconnects",
                "Connections to the centre lost or given up.",
                |c| &c.disconnects,
            ),
        ];
        for (name, help, get) in counters {
            let _ = writeln!(
                out,
                "# HELP gateway_gb26875_{name}_total {help}\n# TYPE gateway_gb26875_{name}_total counter"
            );
            for ((centre, site), c) in links.iter() {
                let _ = writeln!(
                    out,
                    "gateway_gb26875_{name}_total{{centre=\"{centre}\",site=\"{site}\"}} {}",
                    get(c).load(Ordering::Relaxed)
                );
            }
        }
        let gauges: [(&str, &str, Gauge); 2] = [
            (
                "queue_depth",
                "Unconfirmed data units in the outbox.",
                |c| &c.queue_depth,
            ),
            (
                "link_up",
                "1 while connected to the monitoring centre.",
                |c| &c.up,
            ),
        ];
        for (name, help, get) in gauges {
            let _ = writeln!(
                out,
                "# HELP gateway_gb26875_{name} {help}\n# TYPE gateway_gb26875_{name} gauge"
            );
            for ((centre, site), c) in links.iter() {
                let _ = writeln!(
                    out,
                    "gateway_gb26875_{name}{{centre=\"{centre}\",site=\"{site}\"}} {}",
                    get(c).load(Ordering::Relaxed)
                );
            }
        }
    }
}
