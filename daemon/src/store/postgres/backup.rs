//! [`Export`] and [`Import`] on PostgreSQL: each page one statement, in the order of the
//! embedded store's keys, on the session's transaction (a snapshot's repeatable read for a
//! backup, the serializable write of a restore).
//!
//! A page after no key starts after a key that sorts before every stored one: the empty
//! text (no organization or e-mail is empty), uid -1, sequence number 0, the empty key.

use compartmentctl::wire::BackupCounts;
use tokio_postgres::Row;

use super::reads::{
    account, audit, binding, bound, corrupt, limit, membership, millis, token, token_hash, uid,
    AUDIT, BINDING, MEMBERSHIP, TOKEN,
};
use super::session::Session;
use crate::store::{
    AccountRecord, AuditRecord, BindingRecord, EventRecord, Export, Import, MembershipRecord,
    OrgRecord, Reader, Result, TokenHash, TokenRecord,
};

const COUNTS: &str = "SELECT (SELECT count(*) FROM orgs), (SELECT count(*) FROM accounts),
    (SELECT count(*) FROM bindings), (SELECT count(*) FROM memberships),
    (SELECT count(*) FROM tokens), (SELECT count(*) FROM current_org),
    (SELECT count(*) FROM audit), (SELECT count(*) FROM events),
    (SELECT count(*) FROM org_events)";

fn counts(session: &Session) -> Result<BackupCounts> {
    let row = session
        .query_opt(COUNTS, &[])?
        .ok_or_else(|| corrupt("orgs", "no counts"))?;
    let count = |index: usize| -> Result<u64> {
        let count: i64 = row.try_get(index)?;
        Ok(u64::try_from(count).unwrap_or(0))
    };
    Ok(BackupCounts {
        org: count(0)?,
        account: count(1)?,
        binding: count(2)?,
        membership: count(3)?,
        token: count(4)?,
        current_org: count(5)?,
        audit: count(6)?,
        event: count(7)?,
        feed_entry: count(8)?,
    })
}

fn seq(table: &'static str, row: &Row, column: &str) -> Result<u64> {
    let seq: i64 = row.try_get(column)?;
    u64::try_from(seq).map_err(|_| corrupt(table, format!("sequence number {seq}")))
}

fn uid_of(table: &'static str, row: &Row, column: &str) -> Result<u32> {
    uid(table, Some(row.try_get(column)?))?.ok_or_else(|| corrupt(table, "no uid"))
}

impl Export for Session {
    fn counts(&self) -> Result<BackupCounts> {
        counts(self)
    }

    fn orgs_after(&self, after: Option<&str>, limit_to: usize) -> Result<Vec<(String, OrgRecord)>> {
        const TABLE: &str = "orgs";
        self.query(
            "SELECT name, created_at, created_by_uid FROM orgs WHERE name > $1
             ORDER BY name LIMIT $2",
            &[&after.unwrap_or(""), &limit(limit_to)],
        )?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("name")?,
                OrgRecord {
                    created_at: millis(TABLE, row.try_get("created_at")?)?,
                    created_by_uid: uid_of(TABLE, row, "created_by_uid")?,
                },
            ))
        })
        .collect()
    }

    fn accounts_after(
        &self,
        after: Option<&str>,
        limit_to: usize,
    ) -> Result<Vec<(String, AccountRecord)>> {
        self.query(
            "SELECT email, status, uid, created_at, activated_at FROM accounts WHERE email > $1
             ORDER BY email LIMIT $2",
            &[&after.unwrap_or(""), &limit(limit_to)],
        )?
        .iter()
        .map(|row| Ok((row.try_get("email")?, account(row)?)))
        .collect()
    }

    fn bindings_after(
        &self,
        after: Option<u32>,
        limit_to: usize,
    ) -> Result<Vec<(u32, BindingRecord)>> {
        self.query(
            &format!("SELECT uid, {BINDING} FROM bindings WHERE uid > $1 ORDER BY uid LIMIT $2"),
            &[&after.map_or(-1, i64::from), &limit(limit_to)],
        )?
        .iter()
        .map(|row| Ok((uid_of("bindings", row, "uid")?, binding(row)?)))
        .collect()
    }

    fn memberships_after(
        &self,
        after: Option<(&str, &str)>,
        limit_to: usize,
    ) -> Result<Vec<(String, String, MembershipRecord)>> {
        let (org, email) = after.unwrap_or(("", ""));
        self.query(
            &format!(
                "SELECT org, email, {MEMBERSHIP} FROM memberships WHERE (org, email) > ($1, $2)
                 ORDER BY org, email LIMIT $3"
            ),
            &[&org, &email, &limit(limit_to)],
        )?
        .iter()
        .map(|row| Ok((row.try_get("org")?, row.try_get("email")?, membership(row)?)))
        .collect()
    }

    fn tokens_after(
        &self,
        after: Option<&TokenHash>,
        limit_to: usize,
    ) -> Result<Vec<(TokenHash, TokenRecord)>> {
        self.query(
            &format!("SELECT key, {TOKEN} FROM tokens WHERE key > $1 ORDER BY key LIMIT $2"),
            &[
                &after.map_or(&[][..], |hash| hash.0.as_slice()),
                &limit(limit_to),
            ],
        )?
        .iter()
        .map(|row| {
            Ok((
                token_hash("tokens", row.try_get::<_, &[u8]>("key")?)?,
                token(row)?,
            ))
        })
        .collect()
    }

    fn current_orgs_after(
        &self,
        after: Option<u32>,
        limit_to: usize,
    ) -> Result<Vec<(u32, String)>> {
        self.query(
            "SELECT uid, org FROM current_org WHERE uid > $1 ORDER BY uid LIMIT $2",
            &[&after.map_or(-1, i64::from), &limit(limit_to)],
        )?
        .iter()
        .map(|row| Ok((uid_of("current_org", row, "uid")?, row.try_get("org")?)))
        .collect()
    }

    fn audit_after(&self, after: u64, limit_to: usize) -> Result<Vec<(u64, AuditRecord)>> {
        self.query(
            &format!("SELECT {AUDIT} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[&bound(after), &limit(limit_to)],
        )?
        .iter()
        .map(audit)
        .collect()
    }

    fn feed_entries_after(
        &self,
        after: Option<(&str, u64)>,
        limit_to: usize,
    ) -> Result<Vec<(String, u64)>> {
        let (org, after_seq) = after.unwrap_or(("", 0));
        self.query(
            "SELECT org, seq FROM org_events WHERE (org, seq) > ($1, $2)
             ORDER BY org, seq LIMIT $3",
            &[&org, &bound(after_seq), &limit(limit_to)],
        )?
        .iter()
        .map(|row| Ok((row.try_get("org")?, seq("org_events", row, "seq")?)))
        .collect()
    }
}

impl Import for Session {
    fn counts(&self) -> Result<BackupCounts> {
        counts(self)
    }

    /// TRUNCATE rather than DELETE: no row trigger fires (an organization emptied of its
    /// admins on the way is no last-admin violation), and the audit's numbering restarts.
    fn clear(&self) -> Result<()> {
        self.execute(
            "TRUNCATE orgs, accounts, bindings, memberships, tokens, current_org, audit,
                      events, org_events RESTART IDENTITY",
            &[],
        )?;
        self.execute("UPDATE event_head SET seq = 0", &[])?;
        Ok(())
    }

    fn import_audit(&self, seq: u64, record: &AuditRecord) -> Result<()> {
        self.execute(
            "INSERT INTO audit (seq, at, uid, pid, action, org, target, detail)
             OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &bound(seq),
                &bound(record.at),
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

    fn import_event(&self, seq: u64, event: &EventRecord) -> Result<()> {
        self.insert_event(seq, event)
    }

    fn import_feed_entry(&self, org: &str, seq: u64) -> Result<()> {
        self.execute(
            "INSERT INTO org_events (org, seq) VALUES ($1, $2)",
            &[&org, &bound(seq)],
        )?;
        Ok(())
    }

    /// The feed's head at the backup's last event, and the audit's numbering after its
    /// last record. The commit then wakes the followers of daemons running on this
    /// database (an empty one, or the documentation asks them stopped), whose feeds move
    /// to the new head.
    fn finish_import(&self, last_event: u64) -> Result<()> {
        self.execute(
            "UPDATE event_head SET seq = greatest($1, (SELECT coalesce(max(seq), 0) FROM events))",
            &[&bound(last_event)],
        )?;
        self.query(
            "SELECT setval(pg_get_serial_sequence('audit', 'seq'), max(seq)) FROM audit
             HAVING count(*) > 0",
            &[],
        )?;
        self.appended(self.last_event_seq()?, &[]);
        Ok(())
    }
}
