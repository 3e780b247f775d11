//! The bottom layer: types and helpers every other layer uses and that
//! import nothing above them — Chinese labels and value display (`labels`,
//! with the ticket statuses' codes and names), China Standard Time
//! (`time`), the hash chain of the audit trail (`audit`), the hazard
//! ticket's closed loop as a pure state machine (`ticket`: statuses, roles,
//! actions) and the electrical-risk figures (`risk`).

pub mod audit;
pub mod codes;
pub mod ids;
pub mod labels;
pub mod modbus;
pub mod risk;
pub mod sequence;
pub mod text;
pub mod ticket;
pub mod time;
