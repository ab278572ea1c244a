//! What a backup reads and a restore writes, beyond the rules' reads and writes: every row
//! of every table a page at a time in key order ([`Export`], on a snapshot), and the rows
//! written back as they were, sequence numbers included ([`Import`], in one write
//! transaction). The indexes are not exported: they are derived, and the restore's writes
//! keep them in step as the rules' writes do.

use compartmentctl::wire::BackupCounts;

use super::{
    AccountRecord, BindingRecord, EventRecord, MembershipRecord, OrgRecord, Reader, Result, Sealed,
    TokenHash, TokenRecord,
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
    /// The feed by organization: (organization, sequence number) of each event an
    /// organization's feed carries.
    fn feed_entries_after(
        &self,
        after: Option<(&str, u64)>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>>;
}

/// Rows a restore writes back at once, table by table.
#[derive(Debug, Default)]
pub struct Batch {
    pub orgs: Vec<(String, OrgRecord)>,
    pub accounts: Vec<(String, AccountRecord)>,
    pub bindings: Vec<(u32, BindingRecord)>,
    pub memberships: Vec<(String, String, MembershipRecord)>,
    pub tokens: Vec<(TokenHash, TokenRecord)>,
    pub current_orgs: Vec<(u32, String)>,
    /// Sealed as they were: a restore carries the chain, never seals it again.
    pub audit: Vec<Sealed>,
    pub events: Vec<(u64, EventRecord)>,
    pub feed_entries: Vec<(String, u64)>,
}

impl Batch {
    /// How many rows it holds.
    pub fn len(&self) -> usize {
        self.orgs.len()
            + self.accounts.len()
            + self.bindings.len()
            + self.memberships.len()
            + self.tokens.len()
            + self.current_orgs.len()
            + self.audit.len()
            + self.events.len()
            + self.feed_entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties it, keeping its room for the next batch.
    pub fn clear(&mut self) {
        self.orgs.clear();
        self.accounts.clear();
        self.bindings.clear();
        self.memberships.clear();
        self.tokens.clear();
        self.current_orgs.clear();
        self.audit.clear();
        self.events.clear();
        self.feed_entries.clear();
    }
}

/// Rows written back as a backup holds them, sequence numbers included, in the write
/// transaction of a restore, a batch at a time (PostgreSQL writes each table's share of a
/// batch in one statement). The indexes are kept in step as the rules' writes keep them.
pub trait Import {
    /// How many rows each table holds: a restore into a store that holds any is refused
    /// unless it replaces it.
    fn counts(&self) -> Result<BackupCounts>;
    /// Empties every table, in this transaction.
    fn clear(&self) -> Result<()>;
    /// Writes `batch`: rows that are new (a key already written is refused, `Duplicate` or
    /// PostgreSQL's unique violation), each event filed under the organizations of its
    /// feed entries only.
    fn import(&self, batch: &Batch) -> Result<()>;
    /// After the last batch: the feed's head (and whatever else numbers rows) set to go on
    /// after `last_event`, as the store the backup was taken from would have.
    fn finish_import(&self, last_event: u64) -> Result<()>;
}
