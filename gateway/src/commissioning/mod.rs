//! Commissioning (安装调试): node registration (`registry`), node MQTT
//! credentials (`credentials`), the provisioning artefact (`artefact`),
//! the gateway's own CA for node certificates (`ca`), baseline learning
//! and setpoint checks (`baseline`), and the commissioning report with
//! its sign-off (`report`).

pub mod artefact;
pub use crate::alarms::baseline;
pub mod ca;
pub use crate::auth::credentials;
pub mod registry;
pub mod report;
