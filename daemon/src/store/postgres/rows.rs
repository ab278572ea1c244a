//! [`Changes`] and [`Rows`] on PostgreSQL, inside the writer's serializable transaction:
//! each write changes the transaction's pending rows (`pending.rs`), sent with the others as
//! one statement per table before a read that needs them and at the commit (`flush.rs`); the
//! indexes are kept by PostgreSQL itself, and the feed's numbers taken from `event_head` in
//! commit order.

use super::pending::{Appended, Head};
use super::session::Session;
use super::values::corrupt;
use crate::store::chain::seal;
use crate::store::{
    AccountRecord, AuditRecord, BindingRecord, Changes, EventRecord, MembershipRecord, OrgRecord,
    Reader, Result, Rows, TokenHash, TokenRecord, GENESIS,
};

impl Changes for Session {
    fn put_org(&self, name: &str, org: &OrgRecord) -> Result<()> {
        self.pending()
            .orgs
            .write(name.to_owned(), Some(org.clone()));
        Ok(())
    }

    /// Executed at once, after what is pending (the memberships deleted before it). The
    /// audit log's records stay filed under the name (a generated column): the reads of a
    /// later organization of the same name skip what is older than it.
    fn delete_org(&self, name: &str) -> Result<()> {
        self.flush()?;
        self.execute(
            "WITH uses AS (DELETE FROM current_org WHERE org = $1),
                  feed AS (DELETE FROM org_events WHERE org = $1)
             DELETE FROM orgs WHERE name = $1",
            &[&name],
        )?;
        self.pending().forget_rows();
        Ok(())
    }

    fn rename_org(&self, old: &str, new: &str) -> Result<()> {
        self.flush()?;
        // The foreign keys are checked at commit, when every row names the new name.
        self.execute(
            "WITH orgs AS (UPDATE orgs SET name = $2 WHERE name = $1),
                  members AS (UPDATE memberships SET org = $2 WHERE org = $1),
                  tokens AS (UPDATE tokens SET org = $2 WHERE org = $1 AND state = 'pending'),
                  uses AS (UPDATE current_org SET org = $2 WHERE org = $1),
                  feed AS (UPDATE org_events SET org = $2 WHERE org = $1)
             UPDATE audit_log SET org = $2 WHERE org = $1",
            &[&old, &new],
        )?;
        // The organization (with its groups), its memberships, invitations and uses are
        // under the new name now; a later change of the batch reads them there.
        self.pending().forget_rows();
        // The feeds of the old name follow it to the new one once woken.
        self.wakes(&[old.to_owned()]);
        Ok(())
    }

    fn rename_account(&self, old: &str, new: &str) -> Result<()> {
        self.flush()?;
        // The foreign keys are checked at commit, when every row names the new address.
        self.execute(
            "WITH accounts AS (UPDATE accounts SET email = $2 WHERE email = $1),
                  bindings AS (UPDATE bindings SET email = $2 WHERE email = $1),
                  members AS (UPDATE memberships SET email = $2 WHERE email = $1)
             UPDATE tokens SET email = $2 WHERE email = $1 AND state = 'pending'",
            &[&old, &new],
        )?;
        self.pending().forget_rows();
        Ok(())
    }

    fn put_account(&self, email: &str, account: &AccountRecord) -> Result<()> {
        self.pending()
            .accounts
            .write(email.to_owned(), Some(account.clone()));
        Ok(())
    }

    fn delete_account(&self, email: &str) -> Result<()> {
        self.pending().accounts.write(email.to_owned(), None);
        Ok(())
    }

    fn put_binding(&self, uid: u32, binding: &BindingRecord) -> Result<()> {
        self.pending().bindings.write(uid, Some(binding.clone()));
        Ok(())
    }

    fn delete_binding(&self, uid: u32) -> Result<()> {
        self.pending().bindings.write(uid, None);
        Ok(())
    }

    fn put_membership(
        &self,
        org: &str,
        email: &str,
        new: &MembershipRecord,
        _old: Option<&MembershipRecord>,
    ) -> Result<()> {
        self.pending()
            .memberships
            .write((org.to_owned(), email.to_owned()), Some(new.clone()));
        Ok(())
    }

    fn delete_membership(&self, org: &str, email: &str, _old: &MembershipRecord) -> Result<()> {
        self.pending()
            .memberships
            .write((org.to_owned(), email.to_owned()), None);
        Ok(())
    }

    fn put_token(&self, hash: &TokenHash, token: &TokenRecord) -> Result<()> {
        self.pending().tokens.write(*hash, Some(token.clone()));
        Ok(())
    }

    fn delete_token(&self, hash: &TokenHash) -> Result<()> {
        self.pending().tokens.write(*hash, None);
        Ok(())
    }

    fn set_current_org(&self, uid: u32, org: &str) -> Result<()> {
        self.pending().current_org.write(uid, Some(org.to_owned()));
        Ok(())
    }

    fn clear_current_org(&self, uid: u32) -> Result<()> {
        self.pending().current_org.write(uid, None);
        Ok(())
    }

    fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        let known = self.pending().chain;
        let (last, previous) = match known {
            Some(head) => head,
            None => self.audit_head()?.unwrap_or((0, GENESIS)),
        };
        let sealed = seal(&previous, last + 1, record)?;
        let mut pending = self.pending();
        pending.chain = Some((sealed.seq, sealed.hash));
        pending.audit.push(sealed);
        Ok(())
    }

    /// An advisory lock held until the transaction ends: one daemon sweeps at a time, and
    /// the others' writes do not queue behind two sweeps of the same invitations.
    /// Written at once (nothing refers to it): a checkpoint's row is its own.
    fn put_checkpoint(&self, seq: u64, note: &str) -> Result<()> {
        self.execute(
            "INSERT INTO audit_checkpoints (seq, note) VALUES ($1, $2)
             ON CONFLICT (seq) DO UPDATE SET note = excluded.note",
            &[&super::values::bound(seq), &note],
        )?;
        Ok(())
    }

    /// Executed at once, after what is pending: it touches only rows committed before.
    fn prune_audit(&self, through: u64) -> Result<()> {
        self.flush()?;
        self.execute(
            "WITH bound AS (
                 SELECT least($1, (SELECT coalesce(max(seq), 1) - 1 FROM audit_log)) AS through
             ), pruned AS (
                 DELETE FROM audit_log WHERE seq <= (SELECT through FROM bound)
             )
             DELETE FROM audit_checkpoints WHERE seq < (SELECT through FROM bound)",
            &[&super::values::bound(through)],
        )?;
        Ok(())
    }

    fn prune_events(&self, through: u64) -> Result<()> {
        self.flush()?;
        self.execute(
            "WITH bound AS (
                 SELECT least($1, (SELECT coalesce(max(seq), 1) - 1 FROM events)) AS through
             ), pruned AS (
                 DELETE FROM events WHERE seq <= (SELECT through FROM bound)
             )
             DELETE FROM org_events WHERE seq <= (SELECT through FROM bound)",
            &[&super::values::bound(through)],
        )?;
        Ok(())
    }

    fn claim_sweep(&self) -> Result<bool> {
        let row = self
            .query_opt("SELECT pg_try_advisory_xact_lock($1)", &[&SWEEP_LOCK])?
            .ok_or_else(|| corrupt("pg_try_advisory_xact_lock", "no row"))?;
        Ok(row.try_get(0)?)
    }
}

/// The advisory lock of the sweep (the migrations' is another).
const SWEEP_LOCK: i64 = 0x636f_6d70_7377_6570;

impl Rows for Session {
    fn append_event(&self, event: &EventRecord) -> Result<u64> {
        // The transaction holds the feed's lock from its start to its commit: nobody else
        // numbers events meanwhile, so the head is read once and counted on from there.
        let head = self.pending().head;
        let last = match head {
            Some(head) => head.now,
            None => {
                let sent = self.last_event_seq()?;
                self.pending().head = Some(Head { sent, now: sent });
                sent
            }
        };
        let seq = last + 1;
        // Filed under each organization whose feed carries it: a membership's under its
        // own, a binding's under every organization the account is a member of.
        let orgs = match &event.org {
            Some(org) => vec![org.clone()],
            None => self.orgs_of(&event.email)?,
        };
        let mut pending = self.pending();
        if let Some(head) = &mut pending.head {
            head.now = seq;
        }
        pending.events.push(Appended {
            seq,
            event: event.clone(),
            orgs: orgs.clone(),
        });
        drop(pending);
        self.appended(seq, &orgs);
        Ok(seq)
    }
}
