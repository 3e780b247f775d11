//! Names built from ids, and the ids with a meaning of their own.

/// The username a node logs in with: `{site}.{node}` (ids never contain dots).
pub fn node_username(site: &str, node: &str) -> String {
    format!("{site}.{node}")
}

/// Channel id a node uses in an `event` to report its own power supply.
pub const SUPPLY_CHANNEL: &str = "supply";
