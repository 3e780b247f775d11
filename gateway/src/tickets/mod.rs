//! Hazard tickets (隐患闭环) above the store: the ledger (台账) and the
//! monthly report rendered from stored rows, the risk figures, evidence
//! files and field limits. The closed loop itself — statuses, roles, the
//! pure state machine — is a domain type ([`crate::domain::ticket`]),
//! re-exported here for its callers.

pub mod evidence;
pub mod ledger;
pub mod limits;
pub mod report;

pub use crate::domain::risk;

pub use crate::domain::ticket::*;
