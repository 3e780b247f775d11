//! Modbus polling (Modbus 设备轮询): detectors that speak Modbus TCP, RTU on
//! a serial port, or RTU through an RS-485-to-Ethernet serial server are
//! polled by the gateway and enter the same pipeline as MQTT nodes.
//!
//! - [`map`]: register maps as data (TOML per device model), their
//!   validation, the merged read plan and the decoding of words into wire
//!   readings. Pure.
//! - [`config`]: the `[modbus]` section — connections, devices, maps directory.
//! - [`poll`]: one task per connection; device health (ok / degraded /
//!   offline); each poll becomes a `telemetry` [`Inbound`](crate::ingest::Inbound)
//!   for `fire/v1/{site}/{node}/telemetry`, health changes a `status`
//!   online/offline, the device's own alarm bits an `event` (an alarm of
//!   cause `device_alarm` unless the gateway's rule already stands) — the messages
//!   an MQTT node sends, so de-duplication, rules, alarms, tickets, metrics
//!   and the sink apply unchanged.
//! - [`sim`]: an in-process simulated device bank (demo, tests, benchmark).

pub use crate::config::modbus as config;
pub use crate::domain::modbus::map;
pub mod poll;
pub mod sim;

use crate::ingest::Inbound;
use crate::metrics::Metrics;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Starts polling every configured connection; the tasks end when
/// `shutdown` is cancelled (or the pipeline is gone), dropping their senders.
pub fn start(
    config: &crate::config::Config,
    tx: &mpsc::Sender<Inbound>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
    boot: u32,
) -> Vec<JoinHandle<()>> {
    poll::start(
        config.modbus.resolve(),
        tx.clone(),
        metrics.clone(),
        shutdown.clone(),
        boot,
    )
}
