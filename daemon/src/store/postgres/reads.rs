//! [`Reader`] on PostgreSQL: each read one statement in the session's transaction, its rows
//! in the order the embedded store's keys give (text keys sort by their bytes). A row the
//! transaction read, or a write transaction wrote, is answered from what it knows
//! (`pending.rs`), and a write transaction's pending writes are sent before a read that
//! ranges over rows.

use compartmentctl::wire::MemberStatus;
use tokio_postgres::Row;

use super::columns::{
    account, audit, binding, event, member_row, membership, org, prefixed, strings, token, AUDIT,
    BINDING, EVENT, MEMBERSHIP, MEMBER_ROW, ORG, TOKEN,
};
use super::pending::Head;
use super::session::Session;
use super::values::{bound, corrupt, limit, millis, token_hash, uid_of};
use crate::store::{
    AccountRecord, BindingRecord, ChainHash, EventRecord, MemberRow, MembershipRecord, Millis,
    OrgRecord, Reader, Result, Sealed, TokenHash, TokenRecord,
};

impl Reader for Session {
    fn org(&self, name: &str) -> Result<Option<OrgRecord>> {
        self.remembered(
            |pending| &mut pending.orgs,
            name.to_owned(),
            || {
                self.query_opt(&format!("SELECT {ORG} FROM orgs WHERE name = $1"), &[&name])?
                    .map(|row| org(&row))
                    .transpose()
            },
        )
    }

    fn org_names(&self) -> Result<Vec<String>> {
        self.flush()?;
        strings(self.query("SELECT name FROM orgs ORDER BY name", &[])?)
    }

    fn account(&self, email: &str) -> Result<Option<AccountRecord>> {
        self.remembered(
            |pending| &mut pending.accounts,
            email.to_owned(),
            || {
                self.query_opt(
                    "SELECT status, uid, created_at, activated_at FROM accounts WHERE email = $1",
                    &[&email],
                )?
                .map(|row| account(&row))
                .transpose()
            },
        )
    }

    fn binding(&self, uid: u32) -> Result<Option<BindingRecord>> {
        self.remembered(
            |pending| &mut pending.bindings,
            uid,
            || {
                self.query_opt(
                    &format!("SELECT {BINDING} FROM bindings WHERE uid = $1"),
                    &[&i64::from(uid)],
                )?
                .map(|row| binding(&row))
                .transpose()
            },
        )
    }

    fn accounts(&self) -> Result<Vec<(String, AccountRecord)>> {
        self.flush()?;
        self.query(
            "SELECT email, status, uid, created_at, activated_at FROM accounts ORDER BY email",
            &[],
        )?
        .iter()
        .map(|row| Ok((row.try_get("email")?, account(row)?)))
        .collect()
    }

    fn membership(&self, org: &str, email: &str) -> Result<Option<MembershipRecord>> {
        {
            let mut pending = self.pending();
            let key = (org.to_owned(), email.to_owned());
            if pending.memberships.get(&key).is_none() && pending.memberships_of.contains(email) {
                pending.memberships.learn(key, None);
            }
        }
        self.remembered(
            |pending| &mut pending.memberships,
            (org.to_owned(), email.to_owned()),
            || {
                self.query_opt(
                    &format!("SELECT {MEMBERSHIP} FROM memberships WHERE org = $1 AND email = $2"),
                    &[&org, &email],
                )?
                .map(|row| membership(&row))
                .transpose()
            },
        )
    }

    fn members(&self, org: &str) -> Result<Vec<(String, MembershipRecord)>> {
        self.flush()?;
        self.query(
            &format!("SELECT email, {MEMBERSHIP} FROM memberships WHERE org = $1 ORDER BY email"),
            &[&org],
        )?
        .iter()
        .map(|row| Ok((row.try_get("email")?, membership(row)?)))
        .collect()
    }

    fn members_after(
        &self,
        org: &str,
        after: Option<&str>,
        limit_to: usize,
    ) -> Result<Vec<(String, MemberRow)>> {
        self.flush()?;
        // Two statements rather than one with an optional bound, so that each is planned
        // as the range read of the primary key it is.
        let rows = match after {
            Some(after) => self.query(
                &format!(
                    "SELECT email, {MEMBER_ROW} FROM memberships
                     WHERE org = $1 AND email > $2 ORDER BY email LIMIT $3"
                ),
                &[&org, &after, &limit(limit_to)],
            )?,
            None => self.query(
                &format!(
                    "SELECT email, {MEMBER_ROW} FROM memberships
                     WHERE org = $1 ORDER BY email LIMIT $2"
                ),
                &[&org, &limit(limit_to)],
            )?,
        };
        let members = rows
            .iter()
            .map(|row| Ok((row.try_get("email")?, member_row(row)?)))
            .collect::<Result<Vec<(String, MemberRow)>>>()?;
        self.read_bindings_of(&members)?;
        Ok(members)
    }

    fn active_admins(&self, org: &str, at_most: usize) -> Result<usize> {
        self.flush()?;
        // The admins nothing bounds (`MembershipRecord::is_active_admin`), as the index
        // `active_admins` and the trigger `keep_an_admin` name them.
        let row = self.query_opt(
            "SELECT count(*) FROM (SELECT FROM memberships
                 WHERE org = $1 AND role = 'admin' AND status = 'active'
                   AND block_at IS NULL AND access_until IS NULL AND elevated_until IS NULL
                 LIMIT $2) AS admins",
            &[&org, &limit(at_most)],
        )?;
        let count: i64 = match row {
            Some(row) => row.try_get(0)?,
            None => 0,
        };
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    fn orgs_of(&self, email: &str) -> Result<Vec<String>> {
        self.flush()?;
        strings(self.query(
            "SELECT org FROM memberships WHERE email = $1 ORDER BY org",
            &[&email],
        )?)
    }

    fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>> {
        self.remembered(
            |pending| &mut pending.tokens,
            *hash,
            || {
                self.query_opt(
                    &format!("SELECT {TOKEN} FROM tokens WHERE key = $1"),
                    &[&hash.0.as_slice()],
                )?
                .map(|row| token(&row))
                .transpose()
            },
        )
    }

    /// Through the index of `group_gids`, which the writes keep with `groups`.
    fn orgs_of_groups(&self, gids: &[u32]) -> Result<Vec<String>> {
        if gids.is_empty() {
            return Ok(Vec::new());
        }
        self.flush()?;
        let gids: Vec<i64> = gids.iter().copied().map(i64::from).collect();
        strings(self.query(
            "SELECT name FROM orgs WHERE group_gids && $1::bigint[] ORDER BY name",
            &[&gids],
        )?)
    }

    fn current_org(&self, uid: u32) -> Result<Option<String>> {
        self.remembered(
            |pending| &mut pending.current_org,
            uid,
            || {
                let row = self.query_opt(
                    "SELECT org FROM current_org WHERE uid = $1",
                    &[&i64::from(uid)],
                )?;
                Ok(row.map(|row| row.try_get(0)).transpose()?)
            },
        )
    }

    fn next_due(&self) -> Result<Option<Millis>> {
        self.flush()?;
        let row = self.query_opt(
            "SELECT due_at FROM memberships WHERE due_at IS NOT NULL ORDER BY due_at LIMIT 1",
            &[],
        )?;
        row.map(|row| millis("memberships", row.try_get(0)?))
            .transpose()
    }

    fn due_memberships_up_to(&self, now: Millis, limit_to: usize) -> Result<Vec<(String, String)>> {
        self.flush()?;
        // Due as `clock::is_due` says: at or before `now`.
        self.query(
            "SELECT org, email FROM memberships
             WHERE due_at <= $1
             ORDER BY due_at, org, email LIMIT $2",
            &[&bound(now), &limit(limit_to)],
        )?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
    }

    fn audit_after(&self, after: u64, limit_to: usize) -> Result<Vec<Sealed>> {
        self.flush()?;
        self.query(
            &format!("SELECT {AUDIT} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[&bound(after), &limit(limit_to)],
        )?
        .iter()
        .map(audit)
        .collect()
    }

    fn org_audit_after(&self, org: &str, after: u64, limit_to: usize) -> Result<Vec<Sealed>> {
        self.flush()?;
        self.query(
            &format!(
                "SELECT {AUDIT} FROM audit_log WHERE org = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ),
            &[&org, &bound(after), &limit(limit_to)],
        )?
        .iter()
        .map(audit)
        .collect()
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>> {
        self.flush()?;
        self.query_opt(
            "SELECT seq, note FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
            &[],
        )?
        .map(|row| {
            let seq: i64 = row.try_get(0)?;
            let seq = u64::try_from(seq)
                .map_err(|_| corrupt("audit_checkpoints", format!("record {seq}")))?;
            Ok((seq, row.try_get(1)?))
        })
        .transpose()
    }

    fn checkpoint_at(&self, seq: u64) -> Result<Option<String>> {
        self.flush()?;
        self.query_opt(
            "SELECT note FROM audit_checkpoints WHERE seq = $1",
            &[&bound(seq)],
        )?
        .map(|row| Ok(row.try_get(0)?))
        .transpose()
    }

    fn audit_head(&self) -> Result<Option<(u64, ChainHash)>> {
        self.flush()?;
        self.query_opt(
            &format!("SELECT {AUDIT} FROM audit_log ORDER BY seq DESC LIMIT 1"),
            &[],
        )?
        .map(|row| audit(&row).map(|sealed| (sealed.seq, sealed.hash)))
        .transpose()
    }

    fn events_after(&self, after: u64, limit_to: usize) -> Result<Vec<(u64, EventRecord)>> {
        self.flush()?;
        self.query(
            &format!("SELECT {EVENT} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[&bound(after), &limit(limit_to)],
        )?
        .iter()
        .map(event)
        .collect()
    }

    fn org_events_after(
        &self,
        org: &str,
        after: u64,
        limit_to: usize,
    ) -> Result<Vec<(u64, EventRecord)>> {
        self.flush()?;
        self.query(
            &format!(
                "SELECT {EVENT} FROM events WHERE seq IN (
                     SELECT seq FROM org_events WHERE org = $1 AND seq > $2
                     ORDER BY seq LIMIT $3)
                 ORDER BY seq"
            ),
            &[&org, &bound(after), &limit(limit_to)],
        )?
        .iter()
        .map(event)
        .collect()
    }

    fn spent_tokens_due(&self, now: Millis, limit_to: usize) -> Result<Vec<TokenHash>> {
        self.flush()?;
        // Due as `clock::is_due` says: at or before `now`.
        self.query(
            "SELECT key FROM tokens WHERE forget_at <= $1 ORDER BY forget_at, key LIMIT $2",
            &[&bound(now), &limit(limit_to)],
        )?
        .iter()
        .map(|row| token_hash("tokens", row.try_get::<_, &[u8]>(0)?))
        .collect()
    }

    fn next_spent_token_due(&self) -> Result<Option<Millis>> {
        self.flush()?;
        let row = self.query_opt(
            "SELECT forget_at FROM tokens WHERE forget_at IS NOT NULL ORDER BY forget_at LIMIT 1",
            &[],
        )?;
        row.map(|row| millis("tokens", row.try_get(0)?)).transpose()
    }

    fn last_event_seq(&self) -> Result<u64> {
        if let Some(head) = self.pending().head {
            return Ok(head.now);
        }
        let row = self.query_opt("SELECT seq FROM event_head", &[])?;
        let seq: i64 = match row {
            Some(row) => row.try_get(0)?,
            None => 0,
        };
        u64::try_from(seq).map_err(|_| corrupt("event_head", format!("sequence number {seq}")))
    }
}

impl Session {
    /// Reads into what the transaction knows the bindings of the uids `members`' active
    /// memberships name, in one statement: a list shows each active member's Unix user,
    /// which would otherwise cost a round trip per member.
    fn read_bindings_of(&self, members: &[(String, MemberRow)]) -> Result<()> {
        let mut uids: Vec<u32> = {
            let pending = self.pending();
            members
                .iter()
                .filter(|(_, m)| m.status == MemberStatus::Active)
                .filter_map(|(_, m)| m.uid)
                .filter(|uid| pending.bindings.get(uid).is_none())
                .collect()
        };
        uids.sort_unstable();
        uids.dedup();
        if uids.is_empty() {
            return Ok(());
        }
        let asked: Vec<i64> = uids.iter().copied().map(i64::from).collect();
        let rows = self.query(
            &format!("SELECT uid, {BINDING} FROM bindings WHERE uid = ANY($1)"),
            &[&asked],
        )?;
        let mut pending = self.pending();
        for row in &rows {
            pending
                .bindings
                .learn(uid_of("bindings", row, "uid")?, Some(binding(row)?));
        }
        for uid in uids {
            pending.bindings.learn(uid, None);
        }
        Ok(())
    }

    /// Reads into what the transaction knows, in one round trip: the feed's head; the
    /// bindings, current organizations and memberships of the uids `callers`; the accounts
    /// `emails` with all their memberships; and the organizations `orgs`, with the callers'
    /// current ones.
    pub(crate) fn read_ahead(&self, callers: &[u32], emails: &[&str], orgs: &[&str]) -> Result<()> {
        let mut emails = emails.to_vec();
        emails.sort_unstable();
        emails.dedup();
        let mut uids: Vec<i64> = callers.iter().copied().map(i64::from).collect();
        uids.sort_unstable();
        uids.dedup();
        let mut orgs = orgs.to_vec();
        orgs.sort_unstable();
        orgs.dedup();
        let bindings = format!("SELECT uid, {BINDING} FROM bindings WHERE uid = ANY($1)");
        let memberships =
            format!("SELECT org, email, {MEMBERSHIP} FROM memberships WHERE email = ANY($1)");
        let found_orgs = format!(
            "SELECT name, {ORG} FROM orgs
             WHERE name = ANY($1) OR name IN (SELECT org FROM current_org WHERE uid = ANY($2))"
        );
        let callers_memberships = format!(
            "SELECT m.org, m.email, {} FROM bindings b JOIN memberships m ON m.email = b.email
             WHERE b.uid = ANY($1)",
            prefixed("m", MEMBERSHIP)
        );
        let read = self.query_all(&[
            ("SELECT seq FROM event_head", &[]),
            (&bindings, &[&uids]),
            (
                "SELECT email, status, uid, created_at, activated_at FROM accounts
                 WHERE email = ANY($1)",
                &[&emails],
            ),
            (&memberships, &[&emails]),
            (&callers_memberships, &[&uids]),
            (
                "SELECT uid, org FROM current_org WHERE uid = ANY($1)",
                &[&uids],
            ),
            (&found_orgs, &[&orgs, &uids]),
        ])?;
        let [head, bindings, accounts, memberships, callers_memberships, current, found_orgs] =
            <[Vec<Row>; 7]>::try_from(read)
                .map_err(|read| corrupt("read_ahead", format!("{} answers", read.len())))?;
        let head = head
            .first()
            .map(|row| row.try_get::<_, i64>(0))
            .transpose()?
            .unwrap_or(0);
        let head = u64::try_from(head)
            .map_err(|_| corrupt("event_head", format!("sequence number {head}")))?;
        let mut pending = self.pending();
        pending.head.get_or_insert(Head {
            sent: head,
            now: head,
        });
        for row in &bindings {
            let found = binding(row)?;
            // Every membership of a caller's account is read ahead below.
            pending.memberships_of.insert(found.email.clone());
            pending
                .bindings
                .learn(uid_of("bindings", row, "uid")?, Some(found));
        }
        for uid in callers {
            pending.bindings.learn(*uid, None);
        }
        for row in &current {
            pending.current_org.learn(
                uid_of("current_org", row, "uid")?,
                Some(row.try_get("org")?),
            );
        }
        for uid in callers {
            pending.current_org.learn(*uid, None);
        }
        for row in &found_orgs {
            pending.orgs.learn(row.try_get("name")?, Some(org(row)?));
        }
        for name in orgs {
            pending.orgs.learn(name.to_owned(), None);
        }
        for row in &accounts {
            pending
                .accounts
                .learn(row.try_get("email")?, Some(account(row)?));
        }
        for row in memberships.iter().chain(&callers_memberships) {
            pending.memberships.learn(
                (row.try_get("org")?, row.try_get("email")?),
                Some(membership(row)?),
            );
        }
        for email in emails {
            pending.accounts.learn(email.to_owned(), None);
            pending.memberships_of.insert(email.to_owned());
        }
        Ok(())
    }
}
