//! The monitoring gateway (智慧用电/消防设施监测网关).
//!
//! Data flow, one module each:
//! `mqtt` (ingest) → `pipeline` (decode, `dedup`, `runtime` rules) →
//! `store` (alarms, tickets) + `sink` (time-series DB, through the disk `spool`) + `api::views` events →
//! `api` (HTTP API, `/metrics`, the console). `app` wires them; `broker` is the in-process
//! MQTT broker, behind `gate` (credentials and topic ACL); `registry` and `live`
//! add installer-registered nodes to the configuration in force; `demo` runs simulated nodes; `modbus` polls Modbus devices into the same
//! pipeline. See ARCHITECTURE.md.

pub mod api;
pub mod app;
pub mod artefact;
pub mod audit;
pub mod auth;
pub mod baseline;
pub mod broker;
pub mod ca;
pub mod commissioning;
pub mod config;
pub mod credentials;
pub mod dedup;
pub mod demo;
pub mod evidence;
pub mod gate;
pub mod labels;
pub mod ledger;
pub mod linker;
pub mod live;
pub mod metrics;
pub mod modbus;
pub mod mosquitto;
pub mod mqtt;
pub mod node_limits;
pub mod northbound;
pub mod notify;
pub mod pipeline;
pub mod rabbitmq;
pub mod redact;
pub mod registry;
pub mod report;
pub mod risk;
pub mod rollup;
pub mod runtime;
pub mod selftest;
pub mod sink;
pub mod store;
pub mod ticket;
pub mod time;
pub mod tls;
pub mod user_admin;
