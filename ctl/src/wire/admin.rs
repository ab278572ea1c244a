//! `admin.*`: the daemon's account of itself for its operators (superusers).
//!
//! `admin.status`: the daemon, its store, and what its writer, sweeper and feed last did.
//!
//! `admin.metrics`: the same and more as counters, gauges and histograms, in Prometheus'
//! text format, for dashboards.
//!
//! `admin.backup`: the whole store from one snapshot, sent over the connection that asked.
//!
//! The answer is the backup's header ([`BackupHeader`], which is also the first line of
//! the file the CLI writes); then the connection carries only the backup: notifications
//! `backup.records`, each a page of record lines ([`BackupRecords`]), and a last one,
//! `backup.end` with the counts of what was sent ([`BackupEnd`], the file's last line), or
//! `backup.failed` saying why the daemon stopped ([`BackupFailed`]). The record lines are
//! the daemon's to define (docs/operations.md, "Backup and restore"); a client writes them
//! as they come.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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

/// What `admin.metrics` answers: the daemon's metrics as Prometheus' text exposition
/// format, the same text `--metrics-textfile` writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MetricsText {
    /// The text's media type: `text/plain; version=0.0.4`.
    pub content_type: String,
    /// The metrics, one sample a line, each family after its `# HELP` and `# TYPE`.
    pub text: String,
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

/// The name of the format, the header's `format`.
pub const BACKUP_FORMAT: &str = "compartment-backup";
/// The version of the format this release writes and reads.
pub const BACKUP_VERSION: u32 = 1;
/// The method of the notifications that carry a page of record lines.
pub const BACKUP_RECORDS_METHOD: &str = "backup.records";
/// The method of the last notification of a backup sent whole.
pub const BACKUP_END_METHOD: &str = "backup.end";
/// The method of the last notification of a backup the daemon could not finish.
pub const BACKUP_FAILED_METHOD: &str = "backup.failed";

/// How many records of each kind a backup holds.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct BackupCounts {
    pub org: u64,
    pub account: u64,
    pub binding: u64,
    pub membership: u64,
    pub token: u64,
    pub current_org: u64,
    pub audit: u64,
    pub event: u64,
    pub feed_entry: u64,
}

impl std::fmt::Display for BackupCounts {
    /// In words: "2 organizations, 5 accounts, …", every kind, each counted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds = [
            (self.org, "organization", "organizations"),
            (self.account, "account", "accounts"),
            (self.binding, "binding", "bindings"),
            (self.membership, "membership", "memberships"),
            (self.token, "token", "tokens"),
            (
                self.current_org,
                "current organization",
                "current organizations",
            ),
            (self.audit, "audit record", "audit records"),
            (self.event, "event", "events"),
            (self.feed_entry, "feed entry", "feed entries"),
        ];
        for (i, (count, one, many)) in kinds.into_iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(
                f,
                "{separator}{count} {}",
                if count == 1 { one } else { many }
            )?;
        }
        Ok(())
    }
}

impl BackupCounts {
    /// Every record, of every kind.
    pub fn total(&self) -> u64 {
        [
            self.org,
            self.account,
            self.binding,
            self.membership,
            self.token,
            self.current_org,
            self.audit,
            self.event,
            self.feed_entry,
        ]
        .iter()
        .sum()
    }
}

/// The first line of a backup, and `admin.backup`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupHeader {
    /// Always `compartment-backup`.
    pub format: String,
    /// The format's version: 1.
    pub version: u32,
    /// The version of the records: the embedded store's schema version (PostgreSQL's
    /// schema 1 holds the same records as the embedded schema 6, its schema 2 those of 7).
    pub schema: u64,
    /// When the snapshot was taken, RFC 3339 in UTC.
    pub taken_at: String,
    /// Which store it was taken from: `redb` or `postgresql`.
    pub store: String,
    /// The last change of the feed when the snapshot was taken (0 before the first).
    pub last_event: u64,
    /// How many records of each kind follow.
    pub counts: BackupCounts,
}

/// `backup.records`: a page of record lines, each a JSON object with its `kind`.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackupRecords<'a> {
    #[serde(borrow)]
    pub records: Vec<&'a RawValue>,
}

/// Records are the daemon's to define: each is an object with its `kind`, whatever else
/// it holds.
impl schemars::JsonSchema for BackupRecords<'_> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BackupRecords".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A page of record lines, each a JSON object with its `kind`.",
            "type": "object",
            "properties": {
                "records": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"kind": {"type": "string"}},
                        "required": ["kind"],
                    },
                },
            },
            "required": ["records"],
        })
    }
}

/// The last line of a backup (`{"kind":"end",…}`), and the params of `backup.end`: what
/// was sent, so that a file cut short is told from a whole one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupEnd {
    /// Always `end`.
    pub kind: String,
    pub counts: BackupCounts,
}

impl BackupEnd {
    /// The trailer of a backup of `counts`.
    pub fn of(counts: BackupCounts) -> BackupEnd {
        BackupEnd {
            kind: "end".to_owned(),
            counts,
        }
    }
}

/// The params of `backup.failed`: why the daemon stopped sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BackupFailed {
    pub reason: String,
}
