//! [`Export`] on a snapshot and [`Import`] on a write transaction's tables: what a backup
//! reads and a restore writes, table by table in key order.

use std::ops::Bound;

use compartmentctl::wire::BackupCounts;
use redb::ReadableTableMetadata;

use super::tables::{Snapshot, Tables};
use crate::store::{
    decode, encode, AccountRecord, Batch, BindingRecord, Changes, Export, Import, MembershipRecord,
    OrgRecord, Reader, Result, StoreError, TokenHash, TokenRecord,
};

/// The range after `after`, or the whole table.
fn after<K>(after: Option<K>) -> (Bound<K>, Bound<K>) {
    match after {
        Some(key) => (Bound::Excluded(key), Bound::Unbounded),
        None => (Bound::Unbounded, Bound::Unbounded),
    }
}

impl Export for Snapshot {
    fn counts(&self) -> Result<BackupCounts> {
        Ok(BackupCounts {
            org: self.orgs_table()?.len()?,
            account: self.accounts_table()?.len()?,
            binding: self.bindings_table()?.len()?,
            membership: self.memberships_table()?.len()?,
            token: self.tokens_table()?.len()?,
            current_org: self.current_org_table()?.len()?,
            audit: self.audit_table()?.len()?,
            event: self.events_table()?.len()?,
            feed_entry: self.org_events_table()?.len()?,
        })
    }

    fn orgs_after(&self, from: Option<&str>, limit: usize) -> Result<Vec<(String, OrgRecord)>> {
        let mut page = Vec::new();
        for entry in self.orgs_table()?.range::<&str>(after(from))?.take(limit) {
            let (key, value) = entry?;
            page.push((key.value().to_owned(), decode("orgs", value.value())?));
        }
        Ok(page)
    }

    fn accounts_after(
        &self,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, AccountRecord)>> {
        let mut page = Vec::new();
        for entry in self
            .accounts_table()?
            .range::<&str>(after(from))?
            .take(limit)
        {
            let (key, value) = entry?;
            page.push((key.value().to_owned(), decode("accounts", value.value())?));
        }
        Ok(page)
    }

    fn bindings_after(&self, from: Option<u32>, limit: usize) -> Result<Vec<(u32, BindingRecord)>> {
        let mut page = Vec::new();
        for entry in self
            .bindings_table()?
            .range::<u32>(after(from))?
            .take(limit)
        {
            let (key, value) = entry?;
            page.push((key.value(), decode("bindings", value.value())?));
        }
        Ok(page)
    }

    fn memberships_after(
        &self,
        from: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<(String, String, MembershipRecord)>> {
        let mut page = Vec::new();
        let table = self.memberships_table()?;
        for entry in table.range::<(&str, &str)>(after(from))?.take(limit) {
            let (key, value) = entry?;
            let (org, email) = key.value();
            page.push((
                org.to_owned(),
                email.to_owned(),
                decode("memberships", value.value())?,
            ));
        }
        Ok(page)
    }

    fn tokens_after(
        &self,
        from: Option<&TokenHash>,
        limit: usize,
    ) -> Result<Vec<(TokenHash, TokenRecord)>> {
        let mut page = Vec::new();
        let table = self.tokens_table()?;
        for entry in table
            .range::<&[u8; 32]>(after(from.map(|hash| &hash.0)))?
            .take(limit)
        {
            let (key, value) = entry?;
            page.push((TokenHash(*key.value()), decode("tokens", value.value())?));
        }
        Ok(page)
    }

    fn current_orgs_after(&self, from: Option<u32>, limit: usize) -> Result<Vec<(u32, String)>> {
        let mut page = Vec::new();
        for entry in self
            .current_org_table()?
            .range::<u32>(after(from))?
            .take(limit)
        {
            let (key, value) = entry?;
            page.push((key.value(), value.value().to_owned()));
        }
        Ok(page)
    }

    fn feed_entries_after(
        &self,
        from: Option<(&str, u64)>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>> {
        let mut page = Vec::new();
        let table = self.org_events_table()?;
        for entry in table.range::<(&str, u64)>(after(from))?.take(limit) {
            let (key, _) = entry?;
            let (org, seq) = key.value();
            page.push((org.to_owned(), seq));
        }
        Ok(page)
    }
}

impl Import for Tables<'_> {
    fn counts(&self) -> Result<BackupCounts> {
        Ok(BackupCounts {
            org: self.orgs_table()?.len()?,
            account: self.accounts_table()?.len()?,
            binding: self.bindings_table()?.len()?,
            membership: self.memberships_table()?.len()?,
            token: self.tokens_table()?.len()?,
            current_org: self.current_org_table()?.len()?,
            audit: self.audit_table()?.len()?,
            event: self.events_table()?.len()?,
            feed_entry: self.org_events_table()?.len()?,
        })
    }

    fn clear(&self) -> Result<()> {
        self.orgs_table()?.retain(|_, _| false)?;
        self.accounts_table()?.retain(|_, _| false)?;
        self.memberships_table()?.retain(|_, _| false)?;
        self.account_orgs_table()?.retain(|_, _| false)?;
        self.bindings_table()?.retain(|_, _| false)?;
        self.tokens_table()?.retain(|_, _| false)?;
        self.pending_table()?.retain(|_, _| false)?;
        self.current_org_table()?.retain(|_, _| false)?;
        self.audit_table()?.retain(|_, _| false)?;
        self.audit_by_org_table()?.retain(|_, _| false)?;
        self.audit_checkpoints_table()?.retain(|_, _| false)?;
        self.admins_table()?.retain(|_, _| false)?;
        self.events_table()?.retain(|_, _| false)?;
        self.org_events_table()?.retain(|_, _| false)?;
        self.spent_tokens_table()?.retain(|_, _| false)?;
        self.chain_head.set(None);
        self.next_event.set(None);
        Ok(())
    }

    /// Through the rules' own writes, which keep the indexes in step; a membership is
    /// written as new, so one already there is refused (its index entries would stay).
    fn import(&self, batch: &Batch) -> Result<()> {
        for (name, org) in &batch.orgs {
            self.put_org(name, org)?;
        }
        for (email, account) in &batch.accounts {
            self.put_account(email, account)?;
        }
        for (uid, binding) in &batch.bindings {
            self.put_binding(*uid, binding)?;
        }
        for (org, email, membership) in &batch.memberships {
            if self.membership(org, email)?.is_some() {
                return Err(StoreError::Duplicate {
                    table: "memberships",
                    key: format!("{email} in {org}"),
                });
            }
            self.put_membership(org, email, membership, None)?;
        }
        for (key, token) in &batch.tokens {
            self.put_token(key, token)?;
        }
        for (uid, org) in &batch.current_orgs {
            self.set_current_org(*uid, org)?;
        }
        for sealed in &batch.audit {
            self.put_sealed(sealed, sealed.entry()?.org.as_deref())?;
        }
        {
            let mut events = self.events_table()?;
            for (seq, event) in &batch.events {
                events.insert(*seq, encode("events", event)?.as_slice())?;
            }
        }
        let mut entries = self.org_events_table()?;
        for (org, seq) in &batch.feed_entries {
            entries.insert((org.as_str(), *seq), ())?;
        }
        Ok(())
    }

    /// The feed's head is its last key, the audit's likewise: nothing to set.
    fn finish_import(&self, _last_event: u64) -> Result<()> {
        Ok(())
    }
}
