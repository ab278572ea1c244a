//! [`Changes`] and [`Rows`] on PostgreSQL, inside the writer's serializable transaction:
//! each write one statement (an upsert where a record replaces one), the indexes kept by
//! PostgreSQL itself, and the feed's numbers taken from `event_head` in commit order.

use super::reads::{bound, corrupt, spelled};
use super::session::Session;
use crate::store::{
    AccountRecord, AuditRecord, BindingRecord, Changes, EventRecord, MembershipRecord, Millis,
    OrgRecord, Provenance, Reader, Result, Rows, StoreError, TokenHash, TokenRecord,
};

/// A time or uid to store: one this daemon made, so within range (a value beyond is refused
/// rather than stored wrong).
fn stored(table: &'static str, value: Millis) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::Unencodable {
        table,
        detail: format!("the time {value} is out of range"),
    })
}

impl Changes for Session {
    fn put_org(&self, name: &str, org: &OrgRecord) -> Result<()> {
        self.execute(
            "INSERT INTO orgs (name, created_at, created_by_uid) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
                 SET created_at = excluded.created_at, created_by_uid = excluded.created_by_uid",
            &[
                &name,
                &stored("orgs", org.created_at)?,
                &i64::from(org.created_by_uid),
            ],
        )?;
        Ok(())
    }

    fn put_account(&self, email: &str, account: &AccountRecord) -> Result<()> {
        const TABLE: &str = "accounts";
        self.execute(
            "INSERT INTO accounts (email, status, uid, created_at, activated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (email) DO UPDATE
                 SET status = excluded.status, uid = excluded.uid,
                     created_at = excluded.created_at, activated_at = excluded.activated_at",
            &[
                &email,
                &spelled(TABLE, &account.status)?,
                &account.uid.map(i64::from),
                &stored(TABLE, account.created_at)?,
                &account
                    .activated_at
                    .map(|at| stored(TABLE, at))
                    .transpose()?,
            ],
        )?;
        Ok(())
    }

    fn put_binding(&self, uid: u32, binding: &BindingRecord) -> Result<()> {
        const TABLE: &str = "bindings";
        let (provenance, org) = match &binding.provenance {
            Provenance::Superuser => ("superuser", None),
            Provenance::Org(org) => ("org", Some(org.as_str())),
            Provenance::Unknown => ("unknown", None),
        };
        self.execute(
            "INSERT INTO bindings (uid, email, user_name, bound_at, provenance, provenance_org)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (uid) DO UPDATE
                 SET email = excluded.email, user_name = excluded.user_name,
                     bound_at = excluded.bound_at, provenance = excluded.provenance,
                     provenance_org = excluded.provenance_org",
            &[
                &i64::from(uid),
                &binding.email,
                &binding.user_name,
                &stored(TABLE, binding.bound_at)?,
                &provenance,
                &org,
            ],
        )?;
        Ok(())
    }

    fn delete_binding(&self, uid: u32) -> Result<()> {
        self.execute("DELETE FROM bindings WHERE uid = $1", &[&i64::from(uid)])?;
        Ok(())
    }

    fn put_membership(
        &self,
        org: &str,
        email: &str,
        new: &MembershipRecord,
        _old: Option<&MembershipRecord>,
    ) -> Result<()> {
        const TABLE: &str = "memberships";
        self.execute(
            "INSERT INTO memberships
                 (org, email, role, uid, status, invited_by, invited_at, expires_at, token_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (org, email) DO UPDATE
                 SET role = excluded.role, uid = excluded.uid, status = excluded.status,
                     invited_by = excluded.invited_by, invited_at = excluded.invited_at,
                     expires_at = excluded.expires_at, token_key = excluded.token_key",
            &[
                &org,
                &email,
                &spelled(TABLE, &new.role)?,
                &new.uid.map(i64::from),
                &spelled(TABLE, &new.status)?,
                &new.invited_by,
                &stored(TABLE, new.invited_at)?,
                &new.expires_at.map(|at| stored(TABLE, at)).transpose()?,
                &new.token_hash.as_ref().map(|hash| hash.0.as_slice()),
            ],
        )?;
        Ok(())
    }

    fn delete_membership(&self, org: &str, email: &str, _old: &MembershipRecord) -> Result<()> {
        self.execute(
            "DELETE FROM memberships WHERE org = $1 AND email = $2",
            &[&org, &email],
        )?;
        Ok(())
    }

    fn put_token(&self, hash: &TokenHash, token: &TokenRecord) -> Result<()> {
        const TABLE: &str = "tokens";
        self.execute(
            "INSERT INTO tokens (key, org, email, expires_at, state, redeemer_uid, redeemer_name,
                                 issued_by_superuser)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (key) DO UPDATE
                 SET org = excluded.org, email = excluded.email,
                     expires_at = excluded.expires_at, state = excluded.state,
                     redeemer_uid = excluded.redeemer_uid, redeemer_name = excluded.redeemer_name,
                     issued_by_superuser = excluded.issued_by_superuser",
            &[
                &hash.0.as_slice(),
                &token.org,
                &token.email,
                &stored(TABLE, token.expires_at)?,
                &spelled(TABLE, &token.state)?,
                &token.redeemer.as_ref().map(|user| i64::from(user.uid)),
                &token.redeemer.as_ref().map(|user| user.name.as_str()),
                &token.issued_by_superuser,
            ],
        )?;
        Ok(())
    }

    fn delete_token(&self, hash: &TokenHash) -> Result<()> {
        self.execute("DELETE FROM tokens WHERE key = $1", &[&hash.0.as_slice()])?;
        Ok(())
    }

    fn set_current_org(&self, uid: u32, org: &str) -> Result<()> {
        self.execute(
            "INSERT INTO current_org (uid, org) VALUES ($1, $2)
             ON CONFLICT (uid) DO UPDATE SET org = excluded.org",
            &[&i64::from(uid), &org],
        )?;
        Ok(())
    }

    fn clear_current_org(&self, uid: u32) -> Result<()> {
        self.execute("DELETE FROM current_org WHERE uid = $1", &[&i64::from(uid)])?;
        Ok(())
    }

    fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        self.execute(
            "INSERT INTO audit (at, uid, pid, action, org, target, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &stored("audit", record.at)?,
                &record.uid.map(i64::from),
                &record.pid,
                &record.action,
                &record.org,
                &record.target,
                &record.detail,
            ],
        )?;
        Ok(())
    }

    /// An advisory lock held until the transaction ends: one daemon sweeps at a time, and
    /// the others' writes do not queue behind two sweeps of the same invitations.
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
        // The row is held from here to the commit: whoever appends next, on any daemon,
        // numbers after this transaction's events (see the schema).
        let row = self
            .query_opt("UPDATE event_head SET seq = seq + 1 RETURNING seq", &[])?
            .ok_or_else(|| corrupt("event_head", "no row"))?;
        let seq: i64 = row.try_get(0)?;
        let seq = u64::try_from(seq)
            .map_err(|_| corrupt("event_head", format!("sequence number {seq}")))?;
        self.insert_event(seq, event)?;
        // Filed under each organization whose feed carries it: a membership's under its
        // own, a binding's under every organization the account is a member of.
        let orgs = match &event.org {
            Some(org) => vec![org.clone()],
            None => self.orgs_of(&event.email)?,
        };
        for org in &orgs {
            self.execute(
                "INSERT INTO org_events (org, seq) VALUES ($1, $2)",
                &[org, &bound(seq)],
            )?;
        }
        self.appended(seq, &orgs);
        Ok(seq)
    }
}

impl Session {
    /// Writes the event `seq` (and nothing else: neither the feed's head nor its
    /// organizations' entries).
    pub(super) fn insert_event(&self, seq: u64, event: &EventRecord) -> Result<()> {
        const TABLE: &str = "events";
        let role = |role: &Option<compartmentctl::wire::Role>| {
            role.as_ref().map(|role| spelled(TABLE, role)).transpose()
        };
        self.execute(
            "INSERT INTO events (seq, at, kind, org, email, role, previous_role, status, uid)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &bound(seq),
                &bound(event.at),
                &event.kind.as_str(),
                &event.org,
                &event.email,
                &role(&event.role)?,
                &role(&event.previous_role)?,
                &event
                    .status
                    .as_ref()
                    .map(|status| spelled(TABLE, status))
                    .transpose()?,
                &event.uid.map(i64::from),
            ],
        )?;
        Ok(())
    }
}
