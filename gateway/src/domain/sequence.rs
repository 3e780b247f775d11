//! A node's message numbering, `(boot, seq)`: how far back the
//! de-duplication window reaches (`ingest::dedup` judges by it; the sink's
//! spool keeps as much of each source on recovery).

/// Sequence numbers remembered behind the highest one seen.
pub const WINDOW: u32 = 4096;
