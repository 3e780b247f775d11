//! The monitoring gateway (智慧用电/消防设施监测网关).
//!
//! Folders in the order data flows, each layer importing only the ones
//! before it (see ARCHITECTURE.md, "Layers", for the arrows that still
//! point up): `domain` (labels, China time) → `ingest` (MQTT client,
//! in-process broker behind its `gate`, Modbus, de-duplication) → `alarms`
//! (the pipeline: decode, dedup, `runtime` rules, self-tests; its events) →
//! `store` (alarms, tickets, … one file per aggregate) → `tickets` (the
//! closed loop, ledger, reports, risk, evidence), `notify`, `sink`
//! (time-series DB, through the disk `spool`), `northbound`,
//! `commissioning` (registration, credentials, artefact, CA, baselines,
//! report) → `api` (HTTP API, `/metrics`, the console) → `app` wiring.
//! `live` adds installer-registered nodes to the configuration in force;
//! `demo` runs simulated nodes. See ARCHITECTURE.md.

pub mod domain;

pub mod ingest;

pub mod alarms;

pub mod store;

pub mod commissioning;
pub mod northbound;
pub mod notify;
pub mod sink;
pub mod tickets;

pub mod auth;
pub mod config;
pub mod live;
pub mod metrics;
pub mod redact;
pub mod tls;
pub mod user_admin;

pub mod api;

pub mod app;
pub mod demo;
pub mod heap;
pub mod replica;
