//! [`Reader`] on redb: a snapshot, and a write transaction's tables.

use redb::ReadableTable;

use super::tables::{unseal, Snapshot, Tables};
use crate::store::{
    decode, decode_event, decode_member_row, AccountRecord, BindingRecord, ChainHash, EventRecord,
    MemberRow, MembershipRecord, Millis, OrgRecord, Reader, Result, Sealed, StoreError, TokenHash,
    TokenRecord,
};

/// Implements [`Reader`] for a transaction type; both of redb's transaction types have
/// `open_table` returning a [`ReadableTable`].
macro_rules! impl_reader {
    ($txn:ty) => {
        impl Reader for $txn {
            fn org(&self, name: &str) -> Result<Option<OrgRecord>> {
                let table = self.orgs_table()?;
                let value = table.get(name)?;
                value.map(|v| decode("orgs", v.value())).transpose()
            }

            fn org_names(&self) -> Result<Vec<String>> {
                let table = self.orgs_table()?;
                let mut names = Vec::new();
                for entry in table.iter()? {
                    let (key, _) = entry?;
                    names.push(key.value().to_owned());
                }
                Ok(names)
            }

            fn account(&self, email: &str) -> Result<Option<AccountRecord>> {
                let table = self.accounts_table()?;
                let value = table.get(email)?;
                value.map(|v| decode("accounts", v.value())).transpose()
            }

            fn binding(&self, uid: u32) -> Result<Option<BindingRecord>> {
                let table = self.bindings_table()?;
                let value = table.get(uid)?;
                value.map(|v| decode("bindings", v.value())).transpose()
            }

            fn accounts(&self) -> Result<Vec<(String, AccountRecord)>> {
                let table = self.accounts_table()?;
                let mut accounts = Vec::new();
                for entry in table.iter()? {
                    let (key, value) = entry?;
                    accounts.push((key.value().to_owned(), decode("accounts", value.value())?));
                }
                Ok(accounts)
            }

            fn membership(&self, org: &str, email: &str) -> Result<Option<MembershipRecord>> {
                let table = self.memberships_table()?;
                let value = table.get((org, email))?;
                value.map(|v| decode("memberships", v.value())).transpose()
            }

            fn members(&self, org: &str) -> Result<Vec<(String, MembershipRecord)>> {
                let table = self.memberships_table()?;
                let mut members = Vec::new();
                for entry in table.range((org, "")..)? {
                    let (key, value) = entry?;
                    let (key_org, email) = key.value();
                    if key_org != org {
                        break;
                    }
                    members.push((email.to_owned(), decode("memberships", value.value())?));
                }
                Ok(members)
            }

            fn members_after(
                &self,
                org: &str,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<(String, MemberRow)>> {
                use std::ops::Bound;
                let table = self.memberships_table()?;
                // Keys order by (org, email), so an org's rows are contiguous and the
                // page starts strictly after the cursor's e-mail within that org.
                let start = match after {
                    Some(email) => Bound::Excluded((org, email)),
                    None => Bound::Included((org, "")),
                };
                let mut members = Vec::new();
                if limit == 0 {
                    return Ok(members);
                }
                for entry in table.range::<(&str, &str)>((start, Bound::Unbounded))? {
                    let (key, value) = entry?;
                    let (key_org, email) = key.value();
                    if key_org != org {
                        break;
                    }
                    members.push((email.to_owned(), decode_member_row(value.value())?));
                    if members.len() >= limit {
                        break;
                    }
                }
                Ok(members)
            }

            fn active_admins(&self, org: &str, at_most: usize) -> Result<usize> {
                let table = self.admins_table()?;
                let mut count = 0;
                for entry in table.range((org, "")..)?.take(at_most) {
                    let (key, _) = entry?;
                    if key.value().0 != org {
                        break;
                    }
                    count += 1;
                }
                Ok(count)
            }

            fn orgs_of(&self, email: &str) -> Result<Vec<String>> {
                let table = self.account_orgs_table()?;
                let mut orgs = Vec::new();
                for entry in table.range((email, "")..)? {
                    let (key, _) = entry?;
                    let (key_email, org) = key.value();
                    if key_email != email {
                        break;
                    }
                    orgs.push(org.to_owned());
                }
                Ok(orgs)
            }

            fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>> {
                let table = self.tokens_table()?;
                let value = table.get(&hash.0)?;
                value.map(|v| decode("tokens", v.value())).transpose()
            }

            fn current_org(&self, uid: u32) -> Result<Option<String>> {
                let table = self.current_org_table()?;
                let value = table.get(uid)?;
                Ok(value.map(|v| v.value().to_owned()))
            }

            fn orgs_of_groups(&self, gids: &[u32]) -> Result<Vec<String>> {
                let table = self.group_orgs_table()?;
                let mut orgs = Vec::new();
                for &gid in gids {
                    for entry in table.range((gid, "")..)? {
                        let (key, _) = entry?;
                        let (key_gid, org) = key.value();
                        if key_gid != gid {
                            break;
                        }
                        orgs.push(org.to_owned());
                    }
                }
                orgs.sort();
                orgs.dedup();
                Ok(orgs)
            }

            fn next_due(&self) -> Result<Option<Millis>> {
                let table = self.pending_table()?;
                let first = table.first()?;
                Ok(first.map(|(key, _)| key.value().0))
            }

            fn due_memberships_up_to(
                &self,
                now: Millis,
                limit: usize,
            ) -> Result<Vec<(String, String)>> {
                let table = self.pending_table()?;
                let mut due = Vec::new();
                // Due as `clock::is_due` says: at or before `now`, so the bound is inclusive.
                let range = table.range(..=(now, "\u{10FFFF}", "\u{10FFFF}"))?;
                for entry in range.take(limit) {
                    let (key, _) = entry?;
                    let (_, org, email) = key.value();
                    due.push((org.to_owned(), email.to_owned()));
                }
                Ok(due)
            }

            fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<Sealed>> {
                let table = self.audit_table()?;
                let mut page = Vec::new();
                for entry in table.range(after.saturating_add(1)..)?.take(limit) {
                    let (key, value) = entry?;
                    page.push(unseal(key.value(), value.value())?);
                }
                Ok(page)
            }

            fn org_audit_after(&self, org: &str, after: u64, limit: usize) -> Result<Vec<Sealed>> {
                let index = self.audit_by_org_table()?;
                let table = self.audit_table()?;
                let mut page = Vec::new();
                let range = index.range((org, after.saturating_add(1))..=(org, u64::MAX))?;
                for entry in range.take(limit) {
                    let seq = entry?.0.value().1;
                    let value = table.get(seq)?.ok_or_else(|| StoreError::Corrupt {
                        table: "audit_by_org",
                        detail: format!("record {seq} of {org} is missing"),
                    })?;
                    page.push(unseal(seq, value.value())?);
                }
                Ok(page)
            }

            fn latest_checkpoint(&self) -> Result<Option<(u64, String)>> {
                Ok(self
                    .audit_checkpoints_table()?
                    .last()?
                    .map(|(seq, note)| (seq.value(), note.value().to_owned())))
            }

            fn checkpoint_at(&self, seq: u64) -> Result<Option<String>> {
                Ok(self
                    .audit_checkpoints_table()?
                    .get(seq)?
                    .map(|note| note.value().to_owned()))
            }

            fn audit_head(&self) -> Result<Option<(u64, ChainHash)>> {
                match self.audit_table()?.last()? {
                    Some((key, value)) => {
                        let sealed = unseal(key.value(), value.value())?;
                        Ok(Some((sealed.seq, sealed.hash)))
                    }
                    None => Ok(None),
                }
            }

            fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, EventRecord)>> {
                let table = self.events_table()?;
                let mut events = Vec::new();
                for entry in table.range(after.saturating_add(1)..)?.take(limit) {
                    let (key, value) = entry?;
                    events.push((key.value(), decode_event(value.value())?));
                }
                Ok(events)
            }

            fn last_event_seq(&self) -> Result<u64> {
                let table = self.events_table()?;
                let last = table.last()?;
                Ok(last.map_or(0, |(key, _)| key.value()))
            }

            fn org_events_after(
                &self,
                org: &str,
                after: u64,
                limit: usize,
            ) -> Result<Vec<(u64, EventRecord)>> {
                let index = self.org_events_table()?;
                let table = self.events_table()?;
                let mut events = Vec::new();
                let range = index.range((org, after.saturating_add(1))..=(org, u64::MAX))?;
                for entry in range.take(limit) {
                    let (key, _) = entry?;
                    let seq = key.value().1;
                    // Every entry names an event of the same commit: the two are written
                    // together, and pruned together.
                    if let Some(value) = table.get(seq)? {
                        events.push((seq, decode_event(value.value())?));
                    }
                }
                Ok(events)
            }

            fn spent_tokens_due(&self, now: Millis, limit: usize) -> Result<Vec<TokenHash>> {
                let table = self.spent_tokens_table()?;
                let mut due = Vec::new();
                // Due as `clock::is_due` says: at or before `now`.
                for entry in table.range(..=(now, &[u8::MAX; 32]))?.take(limit) {
                    let (key, _) = entry?;
                    due.push(TokenHash(*key.value().1));
                }
                Ok(due)
            }

            fn next_spent_token_due(&self) -> Result<Option<Millis>> {
                let table = self.spent_tokens_table()?;
                let first = table.first()?;
                Ok(first.map(|(key, _)| key.value().0))
            }
        }
    };
}

impl_reader!(Snapshot);
impl_reader!(Tables<'_>);
