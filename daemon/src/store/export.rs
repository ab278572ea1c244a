//! What a backup reads and a restore writes, beyond the rules' reads and writes: every row
//! of every table a page at a time in key order ([`Export`], on a snapshot), and the rows
//! written back as they were, sequence numbers included ([`Import`], in one write
//! transaction). The indexes are not exported: they are derived, and the restore's writes
//! keep them in step as the rules' writes do.

use compartmentctl::wire::BackupCounts;

use super::{
    AccountRecord, AuditRecord, BindingRecord, Changes, EventRecord, MembershipRecord, OrgRecord,
    Reader, Result, TokenHash, TokenRecord,
};

/// Every row of every table, a page of at most `limit` at a time, each page starting just
/// after the key of the last one (from the first when `None`): range reads that cost what
/// they return. On one snapshot, pages read one after another make one consistent copy.
/// (The feed's events are read with [`Reader::events_after`].)
pub trait Export: Reader {
    /// How many rows each table holds.
    fn counts(&self) -> Result<BackupCounts>;
    fn orgs_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, OrgRecord)>>;
    fn accounts_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, AccountRecord)>>;
    fn bindings_after(&self, after: Option<u32>, limit: usize)
        -> Result<Vec<(u32, BindingRecord)>>;
    /// Memberships by (organization, e-mail).
    fn memberships_after(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<(String, String, MembershipRecord)>>;
    fn tokens_after(
        &self,
        after: Option<&TokenHash>,
        limit: usize,
    ) -> Result<Vec<(TokenHash, TokenRecord)>>;
    fn current_orgs_after(&self, after: Option<u32>, limit: usize) -> Result<Vec<(u32, String)>>;
    /// Audit records with their sequence numbers above `after`.
    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, AuditRecord)>>;
    /// The feed by organization: (organization, sequence number) of each event an
    /// organization's feed carries.
    fn feed_entries_after(
        &self,
        after: Option<(&str, u64)>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>>;
}

/// Rows written back as a backup holds them, in the write transaction of a restore. The
/// rows themselves go through [`Changes`] (`put_*` with no old record), which keeps the
/// indexes in step; what the rules never write directly (sequence numbers) comes here.
pub trait Import: Changes {
    /// How many rows each table holds: a restore into a store that holds any is refused
    /// unless it replaces it.
    fn counts(&self) -> Result<BackupCounts>;
    /// Empties every table, in this transaction.
    fn clear(&self) -> Result<()>;
    /// The audit record `seq`.
    fn import_audit(&self, seq: u64, record: &AuditRecord) -> Result<()>;
    /// The feed's event `seq`, filed under no organization (see
    /// [`Import::import_feed_entry`]).
    fn import_event(&self, seq: u64, event: &EventRecord) -> Result<()>;
    /// Files the event `seq` under `org`'s feed.
    fn import_feed_entry(&self, org: &str, seq: u64) -> Result<()>;
    /// After the last row: the feed's head (and whatever else numbers rows) set to go on
    /// after `last_event`, as the store the backup was taken from would have.
    fn finish_import(&self, last_event: u64) -> Result<()>;
}
