//! What a rule reads, on a snapshot or inside the write transaction.

use compartmentctl::wire::AuditEntry;

use super::{
    AccountRecord, BindingRecord, ChainHash, EventRecord, MemberRow, MembershipRecord, Millis,
    OrgRecord, Result, Sealed, TokenHash, TokenRecord,
};

/// Reads shared by snapshots and the write transaction.
pub trait Reader {
    fn org(&self, name: &str) -> Result<Option<OrgRecord>>;
    /// Every organization, by name.
    fn org_names(&self) -> Result<Vec<String>>;
    fn account(&self, email: &str) -> Result<Option<AccountRecord>>;
    /// The binding of `uid`, if it has one (whether or not it still holds).
    fn binding(&self, uid: u32) -> Result<Option<BindingRecord>>;
    /// The e-mail of the account `uid` is bound to (whether or not the binding holds).
    fn bound_email(&self, uid: u32) -> Result<Option<String>> {
        Ok(self.binding(uid)?.map(|b| b.email))
    }
    /// Every account, by e-mail.
    fn accounts(&self) -> Result<Vec<(String, AccountRecord)>>;
    fn membership(&self, org: &str, email: &str) -> Result<Option<MembershipRecord>>;
    /// Every membership of `org`, by e-mail.
    fn members(&self, org: &str) -> Result<Vec<(String, MembershipRecord)>>;
    /// At most `limit` memberships of `org` by e-mail, starting just after `after` (from
    /// the first when `None`). A range read: it costs what it returns, whatever the
    /// organization's size.
    fn members_after(
        &self,
        org: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, MemberRow)>>;
    /// How many active admins `org` has, counted up to `at_most`: the last-admin rule
    /// asks only whether there is another, whatever the organization's size.
    fn active_admins(&self, org: &str, at_most: usize) -> Result<usize>;
    /// The organizations `email` has a membership in (any status), by name.
    fn orgs_of(&self, email: &str) -> Result<Vec<String>>;
    fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>>;
    fn current_org(&self, uid: u32) -> Result<Option<String>>;
    /// The organizations that map any of `gids` to a role (`org map-group`), by name.
    fn orgs_of_groups(&self, gids: &[u32]) -> Result<Vec<String>>;
    /// The earliest time the sweeper must look at a membership ([`super::change::due_key`]):
    /// a pending invitation's expiry, or what its [`super::Terms`] make due.
    fn next_due(&self) -> Result<Option<Millis>>;
    /// Memberships due at or before `now`, as (org, email).
    fn due_memberships(&self, now: Millis) -> Result<Vec<(String, String)>> {
        self.due_memberships_up_to(now, usize::MAX)
    }
    /// The first `limit` of [`Reader::due_memberships`], earliest first.
    fn due_memberships_up_to(&self, now: Millis, limit: usize) -> Result<Vec<(String, String)>>;
    /// At most `limit` audit records, as stored, with sequence numbers above `after`.
    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<Sealed>>;
    /// At most `limit` audit records naming `org`, with sequence numbers above `after`.
    fn org_audit_after(&self, org: &str, after: u64, limit: usize) -> Result<Vec<Sealed>>;
    /// The last audit record's number and hash: where the chain goes on.
    fn audit_head(&self) -> Result<Option<(u64, ChainHash)>>;
    /// The newest signed checkpoint kept: its record's number and its note.
    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>>;
    /// The signed checkpoint of record `seq`, if one is kept: after a prune, the one the
    /// records kept are verified from.
    fn checkpoint_at(&self, seq: u64) -> Result<Option<String>>;
    /// Every audit record's entry, in order (for tests and migrations).
    fn audit(&self) -> Result<Vec<AuditEntry>> {
        let mut entries = Vec::new();
        let mut after = 0;
        loop {
            let page = self.audit_after(after, 4096)?;
            let Some(last) = page.last() else {
                return Ok(entries);
            };
            after = last.seq;
            for sealed in &page {
                entries.push(sealed.entry()?);
            }
        }
    }
    /// At most `limit` events with sequence numbers above `after`, in order.
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, EventRecord)>>;
    /// At most `limit` of the events `org`'s feed carries with sequence numbers above
    /// `after`, in order: a range read of its own rows, whatever the rest of the feed holds.
    fn org_events_after(
        &self,
        org: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EventRecord)>>;
    /// The keys of at most `limit` spent tokens that may be forgotten at `now`, earliest
    /// first.
    fn spent_tokens_due(&self, now: Millis, limit: usize) -> Result<Vec<TokenHash>>;
    /// When the earliest spent token may be forgotten.
    fn next_spent_token_due(&self) -> Result<Option<Millis>>;
    /// The last event's sequence number; 0 before the first.
    fn last_event_seq(&self) -> Result<u64>;
}
