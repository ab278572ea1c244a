//! What a rule writes, on the writer's transaction only ([`Changes`], through [`Tracked`]),
//! and what the store derives from each write whatever the backend: the feed's events, and
//! the index keys a backend keeps in step.

use std::cell::{Cell, RefCell};

use compartmentctl::wire::{AuditActor, EventKind};

use super::{
    AccountRecord, AuditRecord, BindingRecord, ChainHash, EventNote, EventRecord, MemberRow,
    MembershipRecord, Millis, OrgRecord, Reader, Result, Sealed, TokenHash, TokenRecord,
    TokenState, SPENT_TOKEN_MEMORY,
};

/// Changes, on the writer's transaction only.
pub trait Changes: Reader {
    fn put_org(&self, name: &str, org: &OrgRecord) -> Result<()>;
    /// Deletes an organization, every `org use` of it, and its part of the feed's and the
    /// audit log's indexes (the records and events themselves stay: history). Its
    /// memberships are deleted before, by the caller.
    fn delete_org(&self, name: &str) -> Result<()>;
    /// Renames an organization, with all that is filed under its name: its memberships and
    /// their indexes, its tokens, every `org use` of it, its part of the feed's and the
    /// audit log's indexes. The records and events themselves keep the name they were
    /// written with (history). `new` must be free.
    fn rename_org(&self, old: &str, new: &str) -> Result<()>;
    fn put_account(&self, email: &str, account: &AccountRecord) -> Result<()>;
    /// Changes an account's e-mail, with all that is filed under it: its binding, its
    /// memberships and their indexes, its pending tokens. Records and events keep the
    /// address they were written with (history). `new` must be free.
    fn rename_account(&self, old: &str, new: &str) -> Result<()>;
    /// Deletes an account; its memberships and binding are deleted before, by the caller.
    fn delete_account(&self, email: &str) -> Result<()>;
    fn put_binding(&self, uid: u32, binding: &BindingRecord) -> Result<()>;
    fn delete_binding(&self, uid: u32) -> Result<()>;
    /// Writes a membership, keeping `account_orgs` and `pending_by_expiry` in step with
    /// it; `old` is the record it replaces.
    fn put_membership(
        &self,
        org: &str,
        email: &str,
        new: &MembershipRecord,
        old: Option<&MembershipRecord>,
    ) -> Result<()>;
    /// Deletes a membership and its index entries; `old` is the record being deleted.
    fn delete_membership(&self, org: &str, email: &str, old: &MembershipRecord) -> Result<()>;
    /// Writes a token, keeping `spent_tokens` in step with its state.
    fn put_token(&self, hash: &TokenHash, token: &TokenRecord) -> Result<()>;
    /// Forgets a token and its index entry.
    fn delete_token(&self, hash: &TokenHash) -> Result<()>;
    fn set_current_org(&self, uid: u32, org: &str) -> Result<()>;
    fn clear_current_org(&self, uid: u32) -> Result<()>;
    fn append_audit(&self, record: &AuditRecord) -> Result<()>;
    /// Claims the sweep for this transaction: false while another daemon sharing the
    /// store holds it (until that daemon's transaction ends), so that daemons do not sweep
    /// the same invitations at once. Alone on its store, a daemon always has it.
    fn claim_sweep(&self) -> Result<bool>;
    /// Keeps a signed checkpoint of the audit log, of its record `seq`.
    fn put_checkpoint(&self, seq: u64, note: &str) -> Result<()>;
    /// Forgets the audit records up to `through` and their index entries, and the
    /// checkpoints before it. `through` must have a checkpoint, which is kept: the records
    /// kept are verified from it. Never the last record (the chain goes on from it).
    fn prune_audit(&self, through: u64) -> Result<()>;
    /// Forgets the feed's events up to `through` and their index entries. Never the last
    /// event (the feed is numbered on from it).
    fn prune_events(&self, through: u64) -> Result<()>;
    /// Names who makes the writes that follow, for the feed's events they make (a rule
    /// calls it once it knows its actor, before it writes). Rows themselves make no events.
    fn act_as(&self, _actor: &AuditActor) {}
}

/// A backend's write transaction as the store drives it: its [`Changes`] write rows and
/// keep their indexes in step, no more; [`Rows::append_event`] appends to the feed. A rule
/// writes through [`Tracked`], which derives the feed's events from each write.
pub trait Rows: Changes {
    /// Appends `event` to the feed, filed under each organization whose feed carries it;
    /// returns its sequence number.
    fn append_event(&self, event: &EventRecord) -> Result<u64>;
}

/// The write transaction as a change sees it: every write goes through [`Changes`], which
/// records that one happened and appends the feed's events the write makes. The writer runs
/// many changes in one transaction; a change refused after it wrote would leave a trace in
/// its neighbours' commit, so the writer reads [`Tracked::wrote`] and, when it is set on a
/// refused change, runs the batch again one transaction per change. The rows are private,
/// so no write bypasses the record.
pub struct Tracked<'a, R> {
    rows: &'a R,
    wrote: Cell<bool>,
    /// When the change is applied: the time of the events it writes.
    now: Millis,
    /// Who makes the change, for its events ([`Changes::act_as`]).
    actor: RefCell<Option<AuditActor>>,
}

impl<'a, R: Rows> Tracked<'a, R> {
    pub(crate) fn new(rows: &'a R, now: Millis) -> Tracked<'a, R> {
        Tracked {
            rows,
            wrote: Cell::new(false),
            now,
            actor: RefCell::new(None),
        }
    }

    /// True once any write was attempted through this view (even one that failed).
    pub(crate) fn wrote(&self) -> bool {
        self.wrote.get()
    }

    fn mark(&self) -> &'a R {
        self.wrote.set(true);
        self.rows
    }

    /// Who makes the change, as the rule said.
    fn actor(&self) -> Option<AuditActor> {
        self.actor.borrow().clone()
    }

    /// The rows themselves, past the record: for tests that damage what a change wrote.
    #[cfg(test)]
    pub(crate) fn rows(&self) -> &'a R {
        self.mark()
    }
}

impl<R: Rows> Changes for Tracked<'_, R> {
    fn put_org(&self, name: &str, org: &OrgRecord) -> Result<()> {
        self.mark().put_org(name, org)
    }

    fn delete_org(&self, name: &str) -> Result<()> {
        self.mark().delete_org(name)
    }

    /// Tells the feed, once: an event of the organization under its new name, naming the
    /// old one, which services that key their state by name follow.
    fn rename_org(&self, old: &str, new: &str) -> Result<()> {
        let rows = self.mark();
        rows.rename_org(old, new)?;
        rows.append_event(&renamed_event(
            self.now,
            EventKind::OrgRenamed,
            Some(new),
            "",
            old,
            self.actor(),
        ))?;
        Ok(())
    }

    fn put_account(&self, email: &str, account: &AccountRecord) -> Result<()> {
        self.mark().put_account(email, account)
    }

    /// Tells the feed, once: an event of the account under its new e-mail, filed under
    /// each of its organizations, naming the old one.
    fn rename_account(&self, old: &str, new: &str) -> Result<()> {
        let rows = self.mark();
        rows.rename_account(old, new)?;
        rows.append_event(&renamed_event(
            self.now,
            EventKind::AccountRenamed,
            None,
            new,
            old,
            self.actor(),
        ))?;
        Ok(())
    }

    fn delete_account(&self, email: &str) -> Result<()> {
        self.mark().delete_account(email)
    }

    fn put_binding(&self, uid: u32, binding: &BindingRecord) -> Result<()> {
        let rows = self.mark();
        let before = rows.binding(uid)?;
        rows.put_binding(uid, binding)?;
        if before.as_ref().map(|b| &b.email) != Some(&binding.email) {
            if let Some(before) = before {
                rows.append_event(&binding_event(self.now, before.email, None, self.actor()))?;
            }
            rows.append_event(&binding_event(
                self.now,
                binding.email.clone(),
                Some(uid),
                self.actor(),
            ))?;
        }
        Ok(())
    }

    fn delete_binding(&self, uid: u32) -> Result<()> {
        let rows = self.mark();
        let before = rows.binding(uid)?;
        rows.delete_binding(uid)?;
        if let Some(before) = before {
            rows.append_event(&binding_event(self.now, before.email, None, self.actor()))?;
        }
        Ok(())
    }

    fn put_membership(
        &self,
        org: &str,
        email: &str,
        new: &MembershipRecord,
        old: Option<&MembershipRecord>,
    ) -> Result<()> {
        let rows = self.mark();
        rows.put_membership(org, email, new, old)?;
        if let Some(mut event) = membership_event(self.now, org, email, Some(new), old) {
            event.actor = self.actor();
            rows.append_event(&event)?;
        }
        Ok(())
    }

    fn delete_membership(&self, org: &str, email: &str, old: &MembershipRecord) -> Result<()> {
        let rows = self.mark();
        rows.delete_membership(org, email, old)?;
        if let Some(mut event) = membership_event(self.now, org, email, None, Some(old)) {
            event.actor = self.actor();
            rows.append_event(&event)?;
        }
        Ok(())
    }

    fn put_token(&self, hash: &TokenHash, token: &TokenRecord) -> Result<()> {
        self.mark().put_token(hash, token)
    }

    fn delete_token(&self, hash: &TokenHash) -> Result<()> {
        self.mark().delete_token(hash)
    }

    fn set_current_org(&self, uid: u32, org: &str) -> Result<()> {
        self.mark().set_current_org(uid, org)
    }

    fn clear_current_org(&self, uid: u32) -> Result<()> {
        self.mark().clear_current_org(uid)
    }

    fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        self.mark().append_audit(record)
    }

    fn claim_sweep(&self) -> Result<bool> {
        self.rows.claim_sweep()
    }

    fn put_checkpoint(&self, seq: u64, note: &str) -> Result<()> {
        self.rows.put_checkpoint(seq, note)
    }

    fn prune_audit(&self, through: u64) -> Result<()> {
        self.mark().prune_audit(through)
    }

    fn prune_events(&self, through: u64) -> Result<()> {
        self.mark().prune_events(through)
    }

    fn act_as(&self, actor: &AuditActor) {
        *self.actor.borrow_mut() = Some(actor.clone());
    }
}

/// Reads see the transaction, writes of this change included.
impl<R: Rows> Reader for Tracked<'_, R> {
    fn org(&self, name: &str) -> Result<Option<OrgRecord>> {
        self.rows.org(name)
    }

    fn org_names(&self) -> Result<Vec<String>> {
        self.rows.org_names()
    }

    fn account(&self, email: &str) -> Result<Option<AccountRecord>> {
        self.rows.account(email)
    }

    fn binding(&self, uid: u32) -> Result<Option<BindingRecord>> {
        self.rows.binding(uid)
    }

    fn accounts(&self) -> Result<Vec<(String, AccountRecord)>> {
        self.rows.accounts()
    }

    fn membership(&self, org: &str, email: &str) -> Result<Option<MembershipRecord>> {
        self.rows.membership(org, email)
    }

    fn members(&self, org: &str) -> Result<Vec<(String, MembershipRecord)>> {
        self.rows.members(org)
    }

    fn members_after(
        &self,
        org: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, MemberRow)>> {
        self.rows.members_after(org, after, limit)
    }

    fn active_admins(&self, org: &str, at_most: usize) -> Result<usize> {
        self.rows.active_admins(org, at_most)
    }

    fn orgs_of(&self, email: &str) -> Result<Vec<String>> {
        self.rows.orgs_of(email)
    }

    fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>> {
        self.rows.token(hash)
    }

    fn current_org(&self, uid: u32) -> Result<Option<String>> {
        self.rows.current_org(uid)
    }

    fn orgs_of_groups(&self, gids: &[u32]) -> Result<Vec<String>> {
        self.rows.orgs_of_groups(gids)
    }

    fn next_due(&self) -> Result<Option<Millis>> {
        self.rows.next_due()
    }

    fn due_memberships_up_to(&self, now: Millis, limit: usize) -> Result<Vec<(String, String)>> {
        self.rows.due_memberships_up_to(now, limit)
    }

    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<Sealed>> {
        self.rows.audit_after(after, limit)
    }

    fn org_audit_after(&self, org: &str, after: u64, limit: usize) -> Result<Vec<Sealed>> {
        self.rows.org_audit_after(org, after, limit)
    }

    fn audit_head(&self) -> Result<Option<(u64, ChainHash)>> {
        self.rows.audit_head()
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>> {
        self.rows.latest_checkpoint()
    }

    fn checkpoint_at(&self, seq: u64) -> Result<Option<String>> {
        self.rows.checkpoint_at(seq)
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, EventRecord)>> {
        self.rows.events_after(after, limit)
    }

    fn org_events_after(
        &self,
        org: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EventRecord)>> {
        self.rows.org_events_after(org, after, limit)
    }

    fn spent_tokens_due(&self, now: Millis, limit: usize) -> Result<Vec<TokenHash>> {
        self.rows.spent_tokens_due(now, limit)
    }

    fn next_spent_token_due(&self) -> Result<Option<Millis>> {
        self.rows.next_spent_token_due()
    }

    fn last_event_seq(&self) -> Result<u64> {
        self.rows.last_event_seq()
    }
}

/// When the sweeper must next look at a membership, if ever: its invitation's expiry while
/// it is pending, or what its terms make due (a block's end, a warning, access or an
/// elevation ending), the earliest. The key of the due index of every backend.
pub(crate) fn due_key(record: &MembershipRecord) -> Option<Millis> {
    let expiry = match (record.status, record.expires_at) {
        (compartmentctl::wire::MemberStatus::Invited, Some(expires_at)) => Some(expires_at),
        _ => None,
    };
    [expiry, record.terms.next_due()]
        .into_iter()
        .flatten()
        .min()
}

/// The `spent_tokens` key of a token, if it has one: when a spent token may be forgotten.
pub(crate) fn spent_key(token: &TokenRecord) -> Option<Millis> {
    (token.state != TokenState::Pending)
        .then(|| token.expires_at.saturating_add(SPENT_TOKEN_MEMORY))
}

/// The event a membership's change makes, if the feed tells of it: a new membership, an
/// activation, an expiry, a new invitation after an expiry, a role changed, a removal. A
/// change the feed does not tell of (a new URL for a pending invitation) makes none.
pub(super) fn membership_event(
    at: Millis,
    org: &str,
    email: &str,
    new: Option<&MembershipRecord>,
    old: Option<&MembershipRecord>,
) -> Option<EventRecord> {
    use compartmentctl::wire::MemberStatus::{Active, Expired, Invited};
    let (kind, record) = match (old, new) {
        (None, Some(new)) => (EventKind::MemberAdded, new),
        (Some(old), None) => (EventKind::MemberRemoved, old),
        (Some(old), Some(new)) => {
            let kind = match (old.status, new.status) {
                (from, Active) if from != Active => EventKind::MemberActivated,
                (from, Expired) if from != Expired => EventKind::MemberExpired,
                (Expired, Invited) => EventKind::MemberReinvited,
                _ if old.role != new.role => EventKind::RoleChanged,
                _ if new.terms.block.is_some() && old.terms.block != new.terms.block => {
                    EventKind::MemberBlocked
                }
                _ if old.terms.block.is_some() && new.terms.block.is_none() => {
                    EventKind::MemberUnblocked
                }
                _ if warned(old) < warned(new) => EventKind::AccessExpiring,
                _ => return None,
            };
            (kind, new)
        }
        (None, None) => return None,
    };
    Some(EventRecord {
        at,
        kind,
        org: Some(org.to_owned()),
        email: email.to_owned(),
        role: Some(record.role),
        previous_role: match (kind, old) {
            (EventKind::RoleChanged, Some(old)) => Some(old.role),
            // A warning of an elevated role's end names the role it falls back to.
            (EventKind::AccessExpiring, _) => record.terms.elevation.and_then(|elevation| {
                let access = record.terms.access_until.map(|deadline| deadline.at);
                access
                    .is_none_or(|access| elevation.until.at < access)
                    .then_some(elevation.fallback)
            }),
            _ => None,
        },
        status: (kind != EventKind::MemberRemoved).then_some(record.status),
        uid: record.uid,
        actor: None,
        note: note(kind, record),
    })
}

/// How many warnings a membership's ends have had: a warning given raises it.
fn warned(record: &MembershipRecord) -> u16 {
    let terms = &record.terms;
    u16::from(terms.access_until.map_or(0, |deadline| deadline.warned))
        + u16::from(
            terms
                .elevation
                .map_or(0, |elevation| elevation.until.warned),
        )
}

/// What an event adds for services: a block's reason and end, or when what the member
/// holds ends (the earliest of access and an elevated role).
fn note(kind: EventKind, record: &MembershipRecord) -> Option<EventNote> {
    let terms = &record.terms;
    let ends = [
        terms.access_until.map(|deadline| deadline.at),
        terms.elevation.map(|elevation| elevation.until.at),
    ]
    .into_iter()
    .flatten()
    .min();
    let note = match (kind, &terms.block) {
        (EventKind::MemberBlocked, Some(block)) => EventNote {
            until: block.until,
            reason: Some(block.reason.clone()),
            previous_name: None,
        },
        (EventKind::MemberRemoved | EventKind::MemberUnblocked, _) => return None,
        _ => EventNote {
            until: ends,
            reason: None,
            previous_name: None,
        },
    };
    (note != EventNote::default()).then_some(note)
}

/// The event of a renaming (`org.renamed`, `account.renamed`): what is renamed under its
/// new name, the old one in its note.
fn renamed_event(
    at: Millis,
    kind: EventKind,
    org: Option<&str>,
    email: &str,
    old: &str,
    actor: Option<AuditActor>,
) -> EventRecord {
    EventRecord {
        at,
        kind,
        org: org.map(str::to_owned),
        email: email.to_owned(),
        role: None,
        previous_role: None,
        status: None,
        uid: None,
        actor,
        note: Some(EventNote {
            until: None,
            reason: None,
            previous_name: Some(old.to_owned()),
        }),
    }
}

/// The event of `email`'s account being bound to `uid`, or unbound (`None`).
pub(super) fn binding_event(
    at: Millis,
    email: String,
    uid: Option<u32>,
    actor: Option<AuditActor>,
) -> EventRecord {
    EventRecord {
        at,
        kind: EventKind::BindingChanged,
        org: None,
        email,
        role: None,
        previous_role: None,
        status: None,
        uid,
        actor,
        note: None,
    }
}
