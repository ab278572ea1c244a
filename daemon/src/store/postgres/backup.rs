//! [`Export`] and [`Import`] on PostgreSQL: each page one statement, in the order of the
//! embedded store's keys, on the session's transaction (a snapshot's repeatable read for a
//! backup, the serializable write of a restore).
//!
//! A page after no key starts after a key that sorts before every stored one: the empty
//! text (no organization or e-mail is empty), uid -1, sequence number 0, the empty key.

use compartmentctl::wire::BackupCounts;
use tokio_postgres::Row;

use super::columns::{
    account, binding, membership, org, token, OrgColumns, TermsColumns, BINDING, MEMBERSHIP, ORG,
    TOKEN,
};
use super::session::Session;
use super::values::{bound, corrupt, json_text, limit, spelled, stored, token_hash, uid_of};
use crate::store::{
    AccountRecord, Batch, BindingRecord, Export, Import, MembershipRecord, OrgRecord, Provenance,
    Reader, Result, TokenHash, TokenRecord,
};

const COUNTS: &str = "SELECT (SELECT count(*) FROM orgs), (SELECT count(*) FROM accounts),
    (SELECT count(*) FROM bindings), (SELECT count(*) FROM memberships),
    (SELECT count(*) FROM tokens), (SELECT count(*) FROM current_org),
    (SELECT count(*) FROM audit_log), (SELECT count(*) FROM events),
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

impl Export for Session {
    fn counts(&self) -> Result<BackupCounts> {
        counts(self)
    }

    fn orgs_after(&self, after: Option<&str>, limit_to: usize) -> Result<Vec<(String, OrgRecord)>> {
        self.query(
            &format!("SELECT name, {ORG} FROM orgs WHERE name > $1 ORDER BY name LIMIT $2"),
            &[&after.unwrap_or(""), &limit(limit_to)],
        )?
        .iter()
        .map(|row| Ok((row.try_get("name")?, org(row)?)))
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
    /// admins on the way is no last-admin violation), and the audit restarts.
    fn clear(&self) -> Result<()> {
        self.execute(
            "TRUNCATE orgs, accounts, bindings, memberships, tokens, current_org, audit_log,
                      audit_checkpoints, events, org_events RESTART IDENTITY",
            &[],
        )?;
        self.execute("UPDATE event_head SET seq = 0", &[])?;
        Ok(())
    }

    /// Each table's share of the batch in one statement (`unnest` of one array per
    /// column): a million members restore in a minute rather than in ten, one statement a
    /// row. Plain inserts, so a key already there is refused by its unique constraint.
    fn import(&self, batch: &Batch) -> Result<()> {
        if !batch.orgs.is_empty() {
            let mut columns = OrgColumns::default();
            for (name, org) in &batch.orgs {
                columns.push(name, org)?;
            }
            self.execute(
                "INSERT INTO orgs (name, created_at, created_by_uid, groups, group_gids)
                 SELECT name, created_at, created_by_uid, groups, group_gids::bigint[]
                 FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])
                     AS o (name, created_at, created_by_uid, groups, group_gids)",
                &columns.params(),
            )?;
        }
        if !batch.accounts.is_empty() {
            let rows = &batch.accounts;
            let emails: Vec<&str> = rows.iter().map(|(email, _)| email.as_str()).collect();
            let statuses = rows
                .iter()
                .map(|(_, account)| spelled("accounts", &account.status))
                .collect::<Result<Vec<String>>>()?;
            let uids: Vec<Option<i64>> = rows.iter().map(|(_, a)| a.uid.map(i64::from)).collect();
            let created: Vec<i64> = rows.iter().map(|(_, a)| bound(a.created_at)).collect();
            let activated: Vec<Option<i64>> = rows
                .iter()
                .map(|(_, a)| a.activated_at.map(bound))
                .collect();
            self.execute(
                "INSERT INTO accounts (email, status, uid, created_at, activated_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                                      $5::bigint[])",
                &[&emails, &statuses, &uids, &created, &activated],
            )?;
        }
        if !batch.bindings.is_empty() {
            let rows = &batch.bindings;
            let uids: Vec<i64> = rows.iter().map(|(uid, _)| i64::from(*uid)).collect();
            let emails: Vec<&str> = rows.iter().map(|(_, b)| b.email.as_str()).collect();
            let names: Vec<Option<&str>> =
                rows.iter().map(|(_, b)| b.user_name.as_deref()).collect();
            let bound_at: Vec<i64> = rows.iter().map(|(_, b)| bound(b.bound_at)).collect();
            let (provenances, orgs): (Vec<&str>, Vec<Option<&str>>) = rows
                .iter()
                .map(|(_, b)| match &b.provenance {
                    Provenance::Superuser => ("superuser", None),
                    Provenance::Org(org) => ("org", Some(org.as_str())),
                    Provenance::Unknown => ("unknown", None),
                })
                .unzip();
            self.execute(
                "INSERT INTO bindings (uid, email, user_name, bound_at, provenance, provenance_org)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[],
                                      $5::text[], $6::text[])",
                &[&uids, &emails, &names, &bound_at, &provenances, &orgs],
            )?;
        }
        if !batch.memberships.is_empty() {
            const TABLE: &str = "memberships";
            let rows = &batch.memberships;
            let orgs: Vec<&str> = rows.iter().map(|(org, _, _)| org.as_str()).collect();
            let emails: Vec<&str> = rows.iter().map(|(_, email, _)| email.as_str()).collect();
            let roles = rows
                .iter()
                .map(|(_, _, m)| spelled(TABLE, &m.role))
                .collect::<Result<Vec<String>>>()?;
            let uids: Vec<Option<i64>> =
                rows.iter().map(|(_, _, m)| m.uid.map(i64::from)).collect();
            let statuses = rows
                .iter()
                .map(|(_, _, m)| spelled(TABLE, &m.status))
                .collect::<Result<Vec<String>>>()?;
            let invited_by: Vec<&str> =
                rows.iter().map(|(_, _, m)| m.invited_by.as_str()).collect();
            let invited_at: Vec<i64> = rows.iter().map(|(_, _, m)| bound(m.invited_at)).collect();
            let expires_at: Vec<Option<i64>> = rows
                .iter()
                .map(|(_, _, m)| m.expires_at.map(bound))
                .collect();
            let keys: Vec<Option<&[u8]>> = rows
                .iter()
                .map(|(_, _, m)| m.token_hash.as_ref().map(|hash| hash.0.as_slice()))
                .collect();
            let mut terms = TermsColumns::default();
            for (_, _, m) in rows {
                terms.push(m)?;
            }
            self.execute(
                "INSERT INTO memberships
                     (org, email, role, uid, status, invited_by, invited_at, expires_at, token_key,
                      block_reason, block_by, block_at, block_until, access_until, access_warned,
                      elevated_until, elevation_warned, fallback_role, due_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
                                      $5::text[], $6::text[], $7::bigint[], $8::bigint[],
                                      $9::bytea[], $10::text[], $11::text[], $12::bigint[],
                                      $13::bigint[], $14::bigint[], $15::smallint[],
                                      $16::bigint[], $17::smallint[], $18::text[],
                                      $19::bigint[])",
                &[
                    &orgs,
                    &emails,
                    &roles,
                    &uids,
                    &statuses,
                    &invited_by,
                    &invited_at,
                    &expires_at,
                    &keys,
                    &terms.block_reason,
                    &terms.block_by,
                    &terms.block_at,
                    &terms.block_until,
                    &terms.access_until,
                    &terms.access_warned,
                    &terms.elevated_until,
                    &terms.elevation_warned,
                    &terms.fallback_role,
                    &terms.due_at,
                ],
            )?;
        }
        if !batch.tokens.is_empty() {
            let rows = &batch.tokens;
            let keys: Vec<&[u8]> = rows.iter().map(|(key, _)| key.0.as_slice()).collect();
            let orgs: Vec<&str> = rows.iter().map(|(_, t)| t.org.as_str()).collect();
            let emails: Vec<&str> = rows.iter().map(|(_, t)| t.email.as_str()).collect();
            let expires_at: Vec<i64> = rows.iter().map(|(_, t)| bound(t.expires_at)).collect();
            let states = rows
                .iter()
                .map(|(_, t)| spelled("tokens", &t.state))
                .collect::<Result<Vec<String>>>()?;
            let redeemer_uids: Vec<Option<i64>> = rows
                .iter()
                .map(|(_, t)| t.redeemer.as_ref().map(|user| i64::from(user.uid)))
                .collect();
            let redeemer_names: Vec<Option<&str>> = rows
                .iter()
                .map(|(_, t)| t.redeemer.as_ref().map(|user| user.name.as_str()))
                .collect();
            let by_superuser: Vec<bool> = rows.iter().map(|(_, t)| t.issued_by_superuser).collect();
            self.execute(
                "INSERT INTO tokens (key, org, email, expires_at, state, redeemer_uid,
                                     redeemer_name, issued_by_superuser)
                 SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::bigint[],
                                      $5::text[], $6::bigint[], $7::text[], $8::boolean[])",
                &[
                    &keys,
                    &orgs,
                    &emails,
                    &expires_at,
                    &states,
                    &redeemer_uids,
                    &redeemer_names,
                    &by_superuser,
                ],
            )?;
        }
        if !batch.current_orgs.is_empty() {
            let (uids, orgs): (Vec<i64>, Vec<&str>) = batch
                .current_orgs
                .iter()
                .map(|(uid, org)| (i64::from(*uid), org.as_str()))
                .unzip();
            self.execute(
                "INSERT INTO current_org (uid, org) SELECT * FROM unnest($1::bigint[], $2::text[])",
                &[&uids, &orgs],
            )?;
        }
        if !batch.audit.is_empty() {
            let rows = &batch.audit;
            let seqs: Vec<i64> = rows.iter().map(|sealed| bound(sealed.seq)).collect();
            let texts: Vec<&str> = rows.iter().map(|sealed| sealed.text.as_str()).collect();
            let hashes: Vec<&[u8]> = rows.iter().map(|sealed| &sealed.hash[..]).collect();
            self.execute(
                "INSERT INTO audit_log (seq, record, hash)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[])",
                &[&seqs, &texts, &hashes],
            )?;
        }
        if !batch.events.is_empty() {
            const TABLE: &str = "events";
            let rows = &batch.events;
            let role = |role: &Option<compartmentctl::wire::Role>| {
                role.as_ref().map(|role| spelled(TABLE, role)).transpose()
            };
            let seqs: Vec<i64> = rows.iter().map(|(seq, _)| bound(*seq)).collect();
            let at: Vec<i64> = rows.iter().map(|(_, e)| bound(e.at)).collect();
            let kinds: Vec<&str> = rows.iter().map(|(_, e)| e.kind.as_str()).collect();
            let orgs: Vec<Option<&str>> = rows.iter().map(|(_, e)| e.org.as_deref()).collect();
            let emails: Vec<&str> = rows.iter().map(|(_, e)| e.email.as_str()).collect();
            let roles = rows
                .iter()
                .map(|(_, e)| role(&e.role))
                .collect::<Result<Vec<Option<String>>>>()?;
            let previous = rows
                .iter()
                .map(|(_, e)| role(&e.previous_role))
                .collect::<Result<Vec<Option<String>>>>()?;
            let statuses = rows
                .iter()
                .map(|(_, e)| e.status.as_ref().map(|s| spelled(TABLE, s)).transpose())
                .collect::<Result<Vec<Option<String>>>>()?;
            let uids: Vec<Option<i64>> = rows.iter().map(|(_, e)| e.uid.map(i64::from)).collect();
            let actors = rows
                .iter()
                .map(|(_, e)| e.actor.as_ref().map(|a| json_text(TABLE, a)).transpose())
                .collect::<Result<Vec<Option<String>>>>()?;
            let untils = rows
                .iter()
                .map(|(_, e)| {
                    let until = e.note.as_ref().and_then(|note| note.until);
                    until.map(|at| stored(TABLE, at)).transpose()
                })
                .collect::<Result<Vec<Option<i64>>>>()?;
            let reasons: Vec<Option<&str>> = rows
                .iter()
                .map(|(_, e)| e.note.as_ref().and_then(|note| note.reason.as_deref()))
                .collect();
            let previous_names: Vec<Option<&str>> = rows
                .iter()
                .map(|(_, e)| {
                    e.note
                        .as_ref()
                        .and_then(|note| note.previous_name.as_deref())
                })
                .collect();
            self.execute(
                "INSERT INTO events
                     (seq, at, kind, org, email, role, previous_role, status, uid, actor, until,
                      reason, previous_name)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                                      $5::text[], $6::text[], $7::text[], $8::text[],
                                      $9::bigint[], $10::text[], $11::bigint[], $12::text[],
                                      $13::text[])",
                &[
                    &seqs,
                    &at,
                    &kinds,
                    &orgs,
                    &emails,
                    &roles,
                    &previous,
                    &statuses,
                    &uids,
                    &actors,
                    &untils,
                    &reasons,
                    &previous_names,
                ],
            )?;
        }
        if !batch.feed_entries.is_empty() {
            let (orgs, seqs): (Vec<&str>, Vec<i64>) = batch
                .feed_entries
                .iter()
                .map(|(org, seq)| (org.as_str(), bound(*seq)))
                .unzip();
            self.execute(
                "INSERT INTO org_events (org, seq) SELECT * FROM unnest($1::text[], $2::bigint[])",
                &[&orgs, &seqs],
            )?;
        }
        Ok(())
    }

    /// The feed's head at the backup's last event (the audit goes on from its last row). The
    /// commit then wakes the followers of daemons running on this
    /// database (an empty one, or the documentation asks them stopped), whose feeds move
    /// to the new head.
    fn finish_import(&self, last_event: u64) -> Result<()> {
        self.execute(
            "UPDATE event_head SET seq = greatest($1, (SELECT coalesce(max(seq), 0) FROM events))",
            &[&bound(last_event)],
        )?;
        self.appended(self.last_event_seq()?, &[]);
        Ok(())
    }
}
