//! Alarms (报警): what the gateway makes of a message — the pipeline (the
//! pure evaluation step and its I/O loop), the rules runtime with
//! root-cause suppression (`runtime`), end-to-end self-tests
//! (`selftest`), readings linked to open tickets (`linker`), hourly
//! rollups (`rollup`), and the events it announces (`events`) to the
//! duty desk, the notifier and the northbound link.

pub mod baseline;
pub mod events;
pub mod linker;
pub mod pipeline;
pub mod rollup;
pub mod runtime;
pub mod selftest;
