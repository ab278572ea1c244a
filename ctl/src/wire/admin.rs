//! `admin.*`: the daemon's account of itself for its operators (superusers).

use serde::{Deserialize, Serialize};

/// What `admin.status` reports: the daemon, its store, and what its writer, sweeper and
/// feed last did. Every figure is the daemon's own, kept as it runs: answering never asks
/// the store, so a store out of reach is reported rather than waited for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AdminStatus {
    /// The daemon's version.
    pub version: String,
    /// The store's schema version this daemon runs (and migrates the store to).
    pub schema_version: u64,
    /// Which store, and where; never a password.
    pub store: StoreInfo,
    /// Seconds since the daemon began serving.
    pub uptime_secs: u64,
    /// Connections open now, this one included.
    pub connections: u64,
    /// Changes waiting for the writer now.
    pub writer_queue: u64,
    /// The writer's last committed transaction; `null` before the first.
    pub last_batch: Option<LastBatch>,
    /// The sweeper's last sweep transaction; `null` before the first.
    pub last_sweep: Option<LastSweep>,
    /// The sequence number of the last event of the change feed this daemon has seen.
    pub feed_head: u64,
    /// Whether the store answered when last asked: always for redb; for PostgreSQL, whether
    /// the daemon's own connection to it is up and its schema is this daemon's.
    pub reachable: bool,
    /// PostgreSQL only (`null` on redb): write transactions refused as conflicting with
    /// another's (another daemon's, on the same database) and run again, since the start.
    pub conflicts: Option<u64>,
}

/// The store a daemon runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "engine", rename_all = "lowercase")]
pub enum StoreInfo {
    /// The embedded database file.
    Redb { path: String },
    /// A PostgreSQL database, as `--store` named it completed from the environment.
    Postgresql {
        hosts: Vec<String>,
        ports: Vec<u16>,
        database: Option<String>,
        user: Option<String>,
    },
}

/// A committed write transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LastBatch {
    /// The changes it carried (taken from the queue together; when one of them had to run
    /// alone, their transactions together).
    pub changes: u64,
    /// When it committed, by the daemon's clock (RFC 3339).
    pub at: String,
    /// How long its commit took (the durable commit itself, not applying the changes).
    pub commit_micros: u64,
}

/// A committed sweep transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LastSweep {
    /// When it committed, by the daemon's clock (RFC 3339).
    pub at: String,
    /// The invitations it marked expired.
    pub expired: u64,
}
