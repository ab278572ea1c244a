//! `audit.*`: the audit log, a chain of records each sealed with the hash of the one
//! before, and the signed checkpoints an operator keeps elsewhere to prove it whole.
//!
//! A record is stored as the JSON text of an [`AuditEntry`], and its hash is
//! `SHA-256(previous hash ‖ that text)`, the first record's previous hash being 32 zero
//! bytes. docs/audit.md describes the format, so that anyone can verify an export.

use serde::{Deserialize, Serialize};

use super::{Params, Role};

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditActor {
    /// `user` (a caller through its account, or none), `superuser`, or `daemon` (the
    /// sweeper, the daemon's own checks).
    pub kind: String,
    /// The caller's account, when its binding held.
    pub email: Option<String>,
    pub uid: Option<u32>,
    /// The caller's Unix user, as NSS named its uid.
    pub user: Option<String>,
    pub pid: Option<i32>,
}

/// What a record is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditTarget {
    /// `account`, `organization` or `checkpoint`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The account's e-mail or the organization's name.
    pub id: String,
}

/// A membership's role and status before or after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditState {
    pub role: Option<Role>,
    /// `invited`, `active`, `expired`, or `none` (not a member).
    pub status: String,
}

/// One record of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditEntry {
    /// Dense from 1, in the order the records were committed.
    pub seq: u64,
    /// RFC 3339 with milliseconds, UTC: `2026-12-07T09:30:00.000Z`.
    pub at: String,
    pub actor: AuditActor,
    /// In the permission table's vocabulary: `organization.user.invite`, ….
    pub event: String,
    pub org: Option<String>,
    pub target: Option<AuditTarget>,
    pub before: Option<AuditState>,
    pub after: Option<AuditState>,
    /// `ok`, or the kind of error the request was refused with.
    pub outcome: String,
    pub detail: Option<String>,
}

/// One page of `audit.list`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditListParams {
    /// Only this organization's records (the caller's current one is not implied: a
    /// superuser lists the whole host without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// At most this many records, 1 to 1,000; 100 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Records at or after this time (RFC 3339, or a humantime age such as `2h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Records before this time (RFC 3339, or a humantime age).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Only this event key (`organization.role.grant`), or those under a prefix ending
    /// in a dot (`organization.user.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Only records of this actor: an e-mail, a Unix user name or a uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Only records whose target is of this type (`account`, `organization`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    /// Only records with this outcome: `ok`, `refused` (any error), or an error kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

impl Params for AuditListParams {
    fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }
}

/// The most records one page of `audit.list` holds.
pub const MAX_AUDIT_PAGE: u32 = 1_000;
/// The page `audit.list` answers when the request names no `limit`.
pub const DEFAULT_AUDIT_PAGE: u32 = 100;

/// One page of the audit log, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditPage {
    /// The cursor of the next page; absent when the log held no more at the time of the
    /// request. A filtered page may hold fewer than `limit` records and still have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// When there is no `next`: the cursor of the last record the daemon looked at, to ask
    /// with later for the records appended since (`audit list --follow`). Absent when the
    /// log (or the organization's part of it) was empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<String>,
    pub records: Vec<AuditRecordView>,
}

/// A record as stored: its entry, the exact text that was hashed, and the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditRecordView {
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// `SHA-256(previous hash ‖ text)`, lowercase hex.
    pub hash: String,
}

/// Params of `audit.verify`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditVerifyParams {
    /// A checkpoint kept elsewhere (the text `audit.checkpoint` answered): the log must
    /// reach it and agree with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

impl Params for AuditVerifyParams {}

/// Where the chain breaks, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditBreak {
    /// The first record that does not verify, or the first one missing.
    pub seq: u64,
    pub problem: String,
}

/// What `audit.verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditVerified {
    /// The first and last records kept; absent when the log is empty.
    pub first: Option<u64>,
    pub last: Option<u64>,
    /// The checkpoints the log was checked against: the one given, the newest the store
    /// holds, and what this daemon appended last, each as `seq` and where it came from.
    pub checked_against: Vec<String>,
    /// Null when every record verified and every checkpoint agreed.
    pub broken: Option<AuditBreak>,
}

/// A signed checkpoint (`audit.checkpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditCheckpoint {
    pub seq: u64,
    /// The hash of record `seq`, lowercase hex.
    pub hash: String,
    /// The signed note to keep elsewhere, in the C2SP signed-note format.
    pub note: String,
}
