//! `[storage]`: the data directory, the database and the alarm path's batches.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    /// Directory for the SQLite file and other state.
    pub data_dir: PathBuf,
    /// Database URL; default `sqlite://{data_dir}/gateway.db`.
    pub database_url: Option<String>,
    /// The alarm path commits messages in batches, one transaction each: at
    /// most this many messages a batch…
    pub batch_max_messages: usize,
    /// …gathered for at most this long while more keep arriving (a lone
    /// message is handled at once; 0 = only what is already queued).
    pub batch_max_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./data"),
            database_url: None,
            batch_max_messages: 1000,
            batch_max_ms: 5,
        }
    }
}

impl StorageConfig {
    /// The database URL in force, as written (see [`Config::database_url`]
    /// for the one the gateway connects with).
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("gateway.db").display()))
    }
}
