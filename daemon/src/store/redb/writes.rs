//! [`Rows`] on redb: each write with the index entries it implies, and the feed's append.

use std::cell::Cell;

use redb::ReadableTable;

use super::tables::Tables;
use crate::store::chain::seal;
use crate::store::change::due_key;
use crate::store::heads::Announcement;
use crate::store::{
    encode, spent_key, AccountRecord, AuditRecord, BindingRecord, Changes, EventRecord,
    MembershipRecord, OrgRecord, Reader, Result, Rows, TokenHash, TokenRecord, GENESIS,
};

impl Tables<'_> {
    /// Files `org`'s groups under `name` in `group_orgs`, in place of what `old` filed.
    fn file_groups(
        &self,
        name: &str,
        old: Option<&OrgRecord>,
        new: Option<&OrgRecord>,
    ) -> Result<()> {
        let gids = |org: Option<&OrgRecord>| -> Vec<u32> {
            org.map(|org| org.groups.iter().map(|map| map.gid).collect())
                .unwrap_or_default()
        };
        let (before, after) = (gids(old), gids(new));
        if before == after {
            return Ok(());
        }
        let mut index = self.group_orgs_table()?;
        for gid in before.iter().filter(|gid| !after.contains(gid)) {
            index.remove((*gid, name))?;
        }
        for gid in after.iter().filter(|gid| !before.contains(gid)) {
            index.insert((*gid, name), ())?;
        }
        Ok(())
    }
}

impl Changes for Tables<'_> {
    fn put_org(&self, name: &str, org: &OrgRecord) -> Result<()> {
        let old = self.org(name)?;
        self.orgs_table()?
            .insert(name, encode("orgs", org)?.as_slice())?;
        self.file_groups(name, old.as_ref(), Some(org))
    }

    fn delete_org(&self, name: &str) -> Result<()> {
        let old = self.org(name)?;
        self.file_groups(name, old.as_ref(), None)?;
        self.orgs_table()?.remove(name)?;
        self.current_org_table()?.retain(|_, org| org != name)?;
        self.org_events_table()?
            .retain_in((name, 0)..=(name, u64::MAX), |_, _| false)?;
        self.audit_by_org_table()?
            .retain_in((name, 0)..=(name, u64::MAX), |_, _| false)?;
        Ok(())
    }

    fn rename_org(&self, old: &str, new: &str) -> Result<()> {
        let Some(record) = self.org(old)? else {
            return Ok(());
        };
        self.put_org(new, &record)?;
        for (email, membership) in self.members(old)? {
            if let Some(hash) = &membership.token_hash {
                if let Some(mut token) = self.token(hash)? {
                    token.org = new.to_owned();
                    self.put_token(hash, &token)?;
                }
            }
            self.delete_membership(old, &email, &membership)?;
            self.put_membership(new, &email, &membership, None)?;
        }
        let users: Vec<u32> = {
            let table = self.current_org_table()?;
            let mut users = Vec::new();
            for entry in table.iter()? {
                let (uid, org) = entry?;
                if org.value() == old {
                    users.push(uid.value());
                }
            }
            users
        };
        for uid in users {
            self.current_org_table()?.insert(uid, new)?;
        }
        let feed: Vec<u64> = {
            let table = self.org_events_table()?;
            let mut seqs = Vec::new();
            for entry in table.range((old, 0)..=(old, u64::MAX))? {
                seqs.push(entry?.0.value().1);
            }
            seqs
        };
        let mut org_events = self.org_events_table()?;
        org_events.retain_in((old, 0)..=(old, u64::MAX), |_, _| false)?;
        for seq in feed {
            org_events.insert((new, seq), ())?;
        }
        drop(org_events);
        let audit: Vec<u64> = {
            let table = self.audit_by_org_table()?;
            let mut seqs = Vec::new();
            for entry in table.range((old, 0)..=(old, u64::MAX))? {
                seqs.push(entry?.0.value().1);
            }
            seqs
        };
        let mut audit_by_org = self.audit_by_org_table()?;
        audit_by_org.retain_in((old, 0)..=(old, u64::MAX), |_, _| false)?;
        for seq in audit {
            audit_by_org.insert((new, seq), ())?;
        }
        drop(audit_by_org);
        // The feeds of the old name follow it to the new one once woken.
        let mut touched = self.touched_orgs.borrow_mut();
        if !touched.iter().any(|org| org == old) {
            touched.push(old.to_owned());
        }
        drop(touched);
        self.file_groups(old, Some(&record), None)?;
        self.orgs_table()?.remove(old)?;
        Ok(())
    }

    fn put_account(&self, email: &str, account: &AccountRecord) -> Result<()> {
        self.accounts_table()?
            .insert(email, encode("accounts", account)?.as_slice())?;
        Ok(())
    }

    fn rename_account(&self, old: &str, new: &str) -> Result<()> {
        let Some(account) = self.account(old)? else {
            return Ok(());
        };
        self.put_account(new, &account)?;
        if let Some(uid) = account.uid {
            if let Some(mut binding) = self.binding(uid)?.filter(|b| b.email == old) {
                binding.email = new.to_owned();
                self.put_binding(uid, &binding)?;
            }
        }
        for org in self.orgs_of(old)? {
            let Some(membership) = self.membership(&org, old)? else {
                continue;
            };
            if let Some(hash) = &membership.token_hash {
                if let Some(mut token) = self.token(hash)? {
                    token.email = new.to_owned();
                    self.put_token(hash, &token)?;
                }
            }
            self.delete_membership(&org, old, &membership)?;
            self.put_membership(&org, new, &membership, None)?;
        }
        self.delete_account(old)
    }

    fn delete_account(&self, email: &str) -> Result<()> {
        self.accounts_table()?.remove(email)?;
        Ok(())
    }

    fn put_binding(&self, uid: u32, binding: &BindingRecord) -> Result<()> {
        self.bindings_table()?
            .insert(uid, encode("bindings", binding)?.as_slice())?;
        Ok(())
    }

    fn delete_binding(&self, uid: u32) -> Result<()> {
        self.bindings_table()?.remove(uid)?;
        Ok(())
    }

    fn put_membership(
        &self,
        org: &str,
        email: &str,
        new: &MembershipRecord,
        old: Option<&MembershipRecord>,
    ) -> Result<()> {
        self.memberships_table()?
            .insert((org, email), encode("memberships", new)?.as_slice())?;
        if old.is_none() {
            self.account_orgs_table()?.insert((email, org), ())?;
        }
        let (old_key, new_key) = (old.and_then(due_key), due_key(new));
        if old_key != new_key {
            let mut pending = self.pending_table()?;
            if let Some(expires_at) = old_key {
                pending.remove((expires_at, org, email))?;
            }
            if let Some(expires_at) = new_key {
                pending.insert((expires_at, org, email), ())?;
            }
        }
        let was_admin = old.is_some_and(MembershipRecord::is_active_admin);
        if was_admin != new.is_active_admin() {
            let mut admins = self.admins_table()?;
            if was_admin {
                admins.remove((org, email))?;
            } else {
                admins.insert((org, email), ())?;
            }
        }
        Ok(())
    }

    fn delete_membership(&self, org: &str, email: &str, old: &MembershipRecord) -> Result<()> {
        self.memberships_table()?.remove((org, email))?;
        self.account_orgs_table()?.remove((email, org))?;
        if let Some(expires_at) = due_key(old) {
            self.pending_table()?.remove((expires_at, org, email))?;
        }
        if old.is_active_admin() {
            self.admins_table()?.remove((org, email))?;
        }
        Ok(())
    }

    fn put_token(&self, hash: &TokenHash, token: &TokenRecord) -> Result<()> {
        let old = self.token(hash)?;
        self.tokens_table()?
            .insert(&hash.0, encode("tokens", token)?.as_slice())?;
        let (old_key, new_key) = (old.as_ref().and_then(spent_key), spent_key(token));
        if old_key != new_key {
            let mut spent = self.spent_tokens_table()?;
            if let Some(at) = old_key {
                spent.remove((at, &hash.0))?;
            }
            if let Some(at) = new_key {
                spent.insert((at, &hash.0), ())?;
            }
        }
        Ok(())
    }

    fn delete_token(&self, hash: &TokenHash) -> Result<()> {
        let old = self.token(hash)?;
        self.tokens_table()?.remove(&hash.0)?;
        if let Some(at) = old.as_ref().and_then(spent_key) {
            self.spent_tokens_table()?.remove((at, &hash.0))?;
        }
        Ok(())
    }

    fn set_current_org(&self, uid: u32, org: &str) -> Result<()> {
        self.current_org_table()?.insert(uid, org)?;
        Ok(())
    }

    fn clear_current_org(&self, uid: u32) -> Result<()> {
        self.current_org_table()?.remove(uid)?;
        Ok(())
    }

    fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        let (last, previous) = match self.chain_head.get() {
            Some(head) => head,
            None => self.audit_head()?.unwrap_or((0, GENESIS)),
        };
        let sealed = seal(&previous, last + 1, record)?;
        self.put_sealed(&sealed, record.org.as_deref())?;
        self.chain_head.set(Some((sealed.seq, sealed.hash)));
        Ok(())
    }

    /// The file is one daemon's: its sweep is never another's.
    fn put_checkpoint(&self, seq: u64, note: &str) -> Result<()> {
        self.audit_checkpoints_table()?.insert(seq, note)?;
        Ok(())
    }

    fn claim_sweep(&self) -> Result<bool> {
        Ok(true)
    }

    fn prune_audit(&self, through: u64) -> Result<()> {
        let last = self.audit_head()?.map_or(0, |(last, _)| last);
        let through = through.min(last.saturating_sub(1));
        self.audit_table()?.retain_in(..=through, |_, _| false)?;
        remove_filed_through(&mut *self.audit_by_org_table()?, through)?;
        self.audit_checkpoints_table()?
            .retain_in(..through, |_, _| false)?;
        Ok(())
    }

    fn prune_events(&self, through: u64) -> Result<()> {
        let through = through.min(self.last_event_seq()?.saturating_sub(1));
        self.events_table()?.retain_in(..=through, |_, _| false)?;
        remove_filed_through(&mut *self.org_events_table()?, through)
    }
}

/// Removes the entries of an index by (organization, sequence number) up to `through`, in
/// each organization: a range per organization, the next one found past the last.
fn remove_filed_through(index: &mut redb::Table<'_, (&str, u64), ()>, through: u64) -> Result<()> {
    use std::ops::Bound;
    let mut org: Option<String> = None;
    loop {
        let next = {
            let mut after = match &org {
                None => index.range::<(&str, u64)>(..)?,
                Some(org) => index.range::<(&str, u64)>((
                    Bound::Excluded((org.as_str(), u64::MAX)),
                    Bound::Unbounded,
                ))?,
            };
            match after.next() {
                Some(entry) => entry?.0.value().0.to_owned(),
                None => return Ok(()),
            }
        };
        index.retain_in((next.as_str(), 0)..=(next.as_str(), through), |_, _| false)?;
        org = Some(next);
    }
}

/// The append-only tables and the feed's index, counted once per transaction.
impl Tables<'_> {
    /// The next sequence number of an append-only table, read from it (`last`) once per
    /// transaction and counted from there: each append costs one insert, not a lookup too.
    fn next_seq(
        &self,
        next: &Cell<Option<u64>>,
        last: impl FnOnce() -> Result<Option<u64>>,
    ) -> Result<u64> {
        let seq = match next.get() {
            Some(seq) => seq,
            None => last()?.map_or(1, |last| last + 1),
        };
        next.set(Some(seq + 1));
        Ok(seq)
    }

    /// Files the event `seq` under each organization whose feed carries it: a membership's
    /// under its organization; a binding's under every organization the account is a member
    /// of, so that their admins learn that a member now acts through another uid.
    pub(crate) fn index_event(&self, seq: u64, event: &EventRecord) -> Result<()> {
        let orgs = match &event.org {
            Some(org) => vec![org.clone()],
            None => self.orgs_of(&event.email)?,
        };
        let mut index = self.org_events_table()?;
        let mut touched = self.touched_orgs.borrow_mut();
        for org in orgs {
            index.insert((org.as_str(), seq), ())?;
            if !touched.contains(&org) {
                touched.push(org);
            }
        }
        Ok(())
    }

    /// What the writer announces once the transaction is committed: the sequence number of
    /// the last event it appended, if any, and the organizations whose feeds it appended to.
    pub(crate) fn last_event(&self) -> Announcement {
        Announcement {
            last: self.next_event.get().map(|next| next - 1),
            orgs: self.touched_orgs.take(),
            sealed: self.chain_head.get(),
        }
    }
}

impl Rows for Tables<'_> {
    fn append_event(&self, event: &EventRecord) -> Result<u64> {
        let seq = self.next_seq(&self.next_event, || {
            Ok(self.events_table()?.last()?.map(|(key, _)| key.value()))
        })?;
        self.events_table()?
            .insert(seq, encode("events", event)?.as_slice())?;
        self.index_event(seq, event)?;
        Ok(seq)
    }
}
