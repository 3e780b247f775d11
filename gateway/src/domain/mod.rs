//! The bottom layer: types and helpers every other layer uses and that
//! import nothing above them — Chinese labels and value display (`labels`,
//! with the ticket statuses' codes and names) and China Standard Time
//! (`time`), and the hash chain of the audit trail (`audit`).

pub mod audit;
pub mod labels;
pub mod time;
