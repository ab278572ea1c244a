//! A write transaction's unsent writes (`pending.rs`) as SQL: one statement per table and
//! kind, whatever the number of rows, each row's columns passed as arrays and `unnest`ed.
//! The statements are independent of one another (a row is written once, as the transaction
//! left it, and the foreign keys are checked at commit), so they are sent at once and
//! answered together.

use tokio_postgres::types::ToSql;

use super::columns::{OrgColumns, TermsColumns};
use super::pending::{Appended, Unsent};
use super::values::{bound, json_text, spelled, stored};
use crate::store::{
    AccountRecord, BindingRecord, MembershipRecord, OrgRecord, Provenance, Result, Sealed,
    TokenRecord,
};

/// A parameter: a column of rows.
pub(super) type Column = Box<dyn ToSql + Sync + Send>;

/// One statement to send, with its parameters.
pub(super) struct Statement {
    pub(super) sql: &'static str,
    pub(super) params: Vec<Column>,
}

fn column<T: ToSql + Sync + Send + 'static>(values: Vec<T>) -> Column {
    Box::new(values)
}

/// The statements that write `unsent`.
pub(super) fn statements(unsent: Unsent) -> Result<Vec<Statement>> {
    let mut out = Vec::new();
    let (orgs, _) = split(unsent.orgs);
    if !orgs.is_empty() {
        out.push(orgs_upsert(orgs)?);
    }
    let (accounts, deleted) = split(unsent.accounts);
    if !accounts.is_empty() {
        out.push(accounts_upsert(accounts)?);
    }
    if !deleted.is_empty() {
        // Its memberships and binding go in this transaction too: the foreign keys that
        // refer to it are checked at the commit.
        out.push(Statement {
            sql: "DELETE FROM accounts WHERE email = ANY($1::text[])",
            params: vec![column(deleted)],
        });
    }
    let (bindings, unbound) = split(unsent.bindings);
    if !bindings.is_empty() {
        out.push(bindings_upsert(bindings)?);
    }
    if !unbound.is_empty() {
        out.push(Statement {
            sql: "DELETE FROM bindings WHERE uid = ANY($1::bigint[])",
            params: vec![column(unbound.into_iter().map(i64::from).collect())],
        });
    }
    let (memberships, removed) = split(unsent.memberships);
    if !memberships.is_empty() {
        out.push(memberships_upsert(memberships)?);
    }
    if !removed.is_empty() {
        let (orgs, emails): (Vec<String>, Vec<String>) = removed.into_iter().unzip();
        out.push(Statement {
            sql: "DELETE FROM memberships AS m
                  USING unnest($1::text[], $2::text[]) AS gone (org, email)
                  WHERE m.org = gone.org AND m.email = gone.email",
            params: vec![column(orgs), column(emails)],
        });
    }
    let (tokens, forgotten) = split(unsent.tokens);
    if !tokens.is_empty() {
        out.push(tokens_upsert(tokens)?);
    }
    if !forgotten.is_empty() {
        out.push(Statement {
            sql: "DELETE FROM tokens WHERE key = ANY($1::bytea[])",
            params: vec![column(
                forgotten
                    .into_iter()
                    .map(|hash| hash.0.to_vec())
                    .collect::<Vec<_>>(),
            )],
        });
    }
    let (current, cleared) = split(unsent.current_org);
    if !current.is_empty() {
        let (uids, orgs): (Vec<u32>, Vec<String>) = current.into_iter().unzip();
        out.push(Statement {
            sql: "INSERT INTO current_org (uid, org)
                  SELECT * FROM unnest($1::bigint[], $2::text[])
                  ON CONFLICT (uid) DO UPDATE SET org = excluded.org",
            params: vec![
                column(uids.into_iter().map(i64::from).collect()),
                column(orgs),
            ],
        });
    }
    if !cleared.is_empty() {
        out.push(Statement {
            sql: "DELETE FROM current_org WHERE uid = ANY($1::bigint[])",
            params: vec![column(cleared.into_iter().map(i64::from).collect())],
        });
    }
    if !unsent.audit.is_empty() {
        out.push(audit_insert(unsent.audit)?);
    }
    if !unsent.events.is_empty() {
        out.extend(events_insert(unsent.events)?);
    }
    if let Some(head) = unsent.head {
        out.push(Statement {
            sql: "UPDATE event_head SET seq = $1",
            params: vec![Box::new(bound(head))],
        });
    }
    Ok(out)
}

/// The rows written, and the keys of those deleted.
fn split<K, V>(rows: Vec<(K, Option<V>)>) -> (Vec<(K, V)>, Vec<K>) {
    let mut written = Vec::new();
    let mut deleted = Vec::new();
    for (key, value) in rows {
        match value {
            Some(value) => written.push((key, value)),
            None => deleted.push(key),
        }
    }
    (written, deleted)
}

fn orgs_upsert(rows: Vec<(String, OrgRecord)>) -> Result<Statement> {
    let mut columns = OrgColumns::default();
    for (name, org) in &rows {
        columns.push(name, org)?;
    }
    let OrgColumns {
        names,
        created_at,
        created_by_uid,
        groups,
        group_gids,
    } = columns;
    Ok(Statement {
        sql: "INSERT INTO orgs (name, created_at, created_by_uid, groups, group_gids)
              SELECT name, created_at, created_by_uid, groups, group_gids::bigint[]
              FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])
                  AS o (name, created_at, created_by_uid, groups, group_gids)
              ON CONFLICT (name) DO UPDATE
                  SET created_at = excluded.created_at, created_by_uid = excluded.created_by_uid,
                      groups = excluded.groups, group_gids = excluded.group_gids",
        params: vec![
            column(names),
            column(created_at),
            column(created_by_uid),
            column(groups),
            column(group_gids),
        ],
    })
}

fn accounts_upsert(rows: Vec<(String, AccountRecord)>) -> Result<Statement> {
    const TABLE: &str = "accounts";
    let mut emails = Vec::new();
    let mut status = Vec::new();
    let mut uids = Vec::new();
    let mut created_at = Vec::new();
    let mut activated_at = Vec::new();
    for (email, account) in rows {
        emails.push(email);
        status.push(spelled(TABLE, &account.status)?);
        uids.push(account.uid.map(i64::from));
        created_at.push(stored(TABLE, account.created_at)?);
        activated_at.push(
            account
                .activated_at
                .map(|at| stored(TABLE, at))
                .transpose()?,
        );
    }
    Ok(Statement {
        sql: "INSERT INTO accounts (email, status, uid, created_at, activated_at)
              SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                                   $5::bigint[])
              ON CONFLICT (email) DO UPDATE
                  SET status = excluded.status, uid = excluded.uid,
                      created_at = excluded.created_at, activated_at = excluded.activated_at",
        params: vec![
            column(emails),
            column(status),
            column(uids),
            column(created_at),
            column(activated_at),
        ],
    })
}

fn bindings_upsert(rows: Vec<(u32, BindingRecord)>) -> Result<Statement> {
    const TABLE: &str = "bindings";
    let mut uids = Vec::new();
    let mut emails = Vec::new();
    let mut names = Vec::new();
    let mut bound_at = Vec::new();
    let mut provenances = Vec::new();
    let mut provenance_orgs = Vec::new();
    for (uid, binding) in rows {
        let (provenance, org) = match binding.provenance {
            Provenance::Superuser => ("superuser", None),
            Provenance::Org(org) => ("org", Some(org)),
            Provenance::Unknown => ("unknown", None),
        };
        uids.push(i64::from(uid));
        emails.push(binding.email);
        names.push(binding.user_name);
        bound_at.push(stored(TABLE, binding.bound_at)?);
        provenances.push(provenance);
        provenance_orgs.push(org);
    }
    Ok(Statement {
        sql: "INSERT INTO bindings (uid, email, user_name, bound_at, provenance, provenance_org)
              SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[],
                                   $5::text[], $6::text[])
              ON CONFLICT (uid) DO UPDATE
                  SET email = excluded.email, user_name = excluded.user_name,
                      bound_at = excluded.bound_at, provenance = excluded.provenance,
                      provenance_org = excluded.provenance_org",
        params: vec![
            column(uids),
            column(emails),
            column(names),
            column(bound_at),
            column(provenances),
            column(provenance_orgs),
        ],
    })
}

fn memberships_upsert(rows: Vec<((String, String), MembershipRecord)>) -> Result<Statement> {
    const TABLE: &str = "memberships";
    let mut orgs = Vec::new();
    let mut emails = Vec::new();
    let mut roles = Vec::new();
    let mut uids = Vec::new();
    let mut status = Vec::new();
    let mut invited_by = Vec::new();
    let mut invited_at = Vec::new();
    let mut expires_at = Vec::new();
    let mut token_keys = Vec::new();
    let mut terms = TermsColumns::default();
    for ((org, email), membership) in rows {
        terms.push(&membership)?;
        orgs.push(org);
        emails.push(email);
        roles.push(spelled(TABLE, &membership.role)?);
        uids.push(membership.uid.map(i64::from));
        status.push(spelled(TABLE, &membership.status)?);
        invited_by.push(membership.invited_by);
        invited_at.push(stored(TABLE, membership.invited_at)?);
        expires_at.push(
            membership
                .expires_at
                .map(|at| stored(TABLE, at))
                .transpose()?,
        );
        token_keys.push(membership.token_hash.map(|hash| hash.0.to_vec()));
    }
    Ok(Statement {
        sql: "INSERT INTO memberships
                  (org, email, role, uid, status, invited_by, invited_at, expires_at, token_key,
                   block_reason, block_by, block_at, block_until, access_until, access_warned,
                   elevated_until, elevation_warned, fallback_role, due_at)
              SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                                   $6::text[], $7::bigint[], $8::bigint[], $9::bytea[],
                                   $10::text[], $11::text[], $12::bigint[], $13::bigint[],
                                   $14::bigint[], $15::smallint[], $16::bigint[],
                                   $17::smallint[], $18::text[], $19::bigint[])
              ON CONFLICT (org, email) DO UPDATE
                  SET role = excluded.role, uid = excluded.uid, status = excluded.status,
                      invited_by = excluded.invited_by, invited_at = excluded.invited_at,
                      expires_at = excluded.expires_at, token_key = excluded.token_key,
                      block_reason = excluded.block_reason, block_by = excluded.block_by,
                      block_at = excluded.block_at, block_until = excluded.block_until,
                      access_until = excluded.access_until,
                      access_warned = excluded.access_warned,
                      elevated_until = excluded.elevated_until,
                      elevation_warned = excluded.elevation_warned,
                      fallback_role = excluded.fallback_role, due_at = excluded.due_at",
        params: vec![
            column(orgs),
            column(emails),
            column(roles),
            column(uids),
            column(status),
            column(invited_by),
            column(invited_at),
            column(expires_at),
            column(token_keys),
            column(terms.block_reason),
            column(terms.block_by),
            column(terms.block_at),
            column(terms.block_until),
            column(terms.access_until),
            column(terms.access_warned),
            column(terms.elevated_until),
            column(terms.elevation_warned),
            column(terms.fallback_role),
            column(terms.due_at),
        ],
    })
}

fn tokens_upsert(rows: Vec<(crate::store::TokenHash, TokenRecord)>) -> Result<Statement> {
    const TABLE: &str = "tokens";
    let mut keys = Vec::new();
    let mut orgs = Vec::new();
    let mut emails = Vec::new();
    let mut expires_at = Vec::new();
    let mut states = Vec::new();
    let mut redeemer_uids = Vec::new();
    let mut redeemer_names = Vec::new();
    let mut by_superuser = Vec::new();
    for (hash, token) in rows {
        keys.push(hash.0.to_vec());
        orgs.push(token.org);
        emails.push(token.email);
        expires_at.push(stored(TABLE, token.expires_at)?);
        states.push(spelled(TABLE, &token.state)?);
        redeemer_uids.push(token.redeemer.as_ref().map(|user| i64::from(user.uid)));
        redeemer_names.push(token.redeemer.map(|user| user.name));
        by_superuser.push(token.issued_by_superuser);
    }
    Ok(Statement {
        sql: "INSERT INTO tokens (key, org, email, expires_at, state, redeemer_uid,
                                  redeemer_name, issued_by_superuser)
              SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::bigint[],
                                   $5::text[], $6::bigint[], $7::text[], $8::boolean[])
              ON CONFLICT (key) DO UPDATE
                  SET org = excluded.org, email = excluded.email,
                      expires_at = excluded.expires_at, state = excluded.state,
                      redeemer_uid = excluded.redeemer_uid, redeemer_name = excluded.redeemer_name,
                      issued_by_superuser = excluded.issued_by_superuser",
        params: vec![
            column(keys),
            column(orgs),
            column(emails),
            column(expires_at),
            column(states),
            column(redeemer_uids),
            column(redeemer_names),
            column(by_superuser),
        ],
    })
}

fn audit_insert(records: Vec<Sealed>) -> Result<Statement> {
    let mut seqs = Vec::new();
    let mut texts = Vec::new();
    let mut hashes = Vec::new();
    for sealed in records {
        seqs.push(bound(sealed.seq));
        texts.push(sealed.text);
        hashes.push(sealed.hash.to_vec());
    }
    Ok(Statement {
        sql: "INSERT INTO audit_log (seq, record, hash)
              SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[])",
        params: vec![column(seqs), column(texts), column(hashes)],
    })
}

fn events_insert(appended: Vec<Appended>) -> Result<Vec<Statement>> {
    const TABLE: &str = "events";
    let role = |role: &Option<compartmentctl::wire::Role>| {
        role.as_ref().map(|role| spelled(TABLE, role)).transpose()
    };
    let mut seqs = Vec::new();
    let mut at = Vec::new();
    let mut kinds = Vec::new();
    let mut orgs = Vec::new();
    let mut emails = Vec::new();
    let mut roles = Vec::new();
    let mut previous_roles = Vec::new();
    let mut status = Vec::new();
    let mut uids = Vec::new();
    let mut actors = Vec::new();
    let mut untils = Vec::new();
    let mut reasons = Vec::new();
    let mut previous_names = Vec::new();
    let mut filed_orgs = Vec::new();
    let mut filed_seqs = Vec::new();
    for Appended {
        seq,
        event,
        orgs: feeds,
    } in appended
    {
        seqs.push(bound(seq));
        at.push(bound(event.at));
        kinds.push(event.kind.as_str());
        roles.push(role(&event.role)?);
        previous_roles.push(role(&event.previous_role)?);
        status.push(
            event
                .status
                .as_ref()
                .map(|status| spelled(TABLE, status))
                .transpose()?,
        );
        uids.push(event.uid.map(i64::from));
        actors.push(
            event
                .actor
                .as_ref()
                .map(|actor| json_text(TABLE, actor))
                .transpose()?,
        );
        let note = event.note.unwrap_or_default();
        untils.push(note.until.map(|at| stored(TABLE, at)).transpose()?);
        reasons.push(note.reason);
        previous_names.push(note.previous_name);
        orgs.push(event.org);
        emails.push(event.email);
        for org in feeds {
            filed_orgs.push(org);
            filed_seqs.push(bound(seq));
        }
    }
    let mut out = vec![Statement {
        sql: "INSERT INTO events
                  (seq, at, kind, org, email, role, previous_role, status, uid, actor, until,
                   reason, previous_name)
              SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                                   $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[],
                                   $10::text[], $11::bigint[], $12::text[], $13::text[])",
        params: vec![
            column(seqs),
            column(at),
            column(kinds),
            column(orgs),
            column(emails),
            column(roles),
            column(previous_roles),
            column(status),
            column(uids),
            column(actors),
            column(untils),
            column(reasons),
            column(previous_names),
        ],
    }];
    if !filed_orgs.is_empty() {
        out.push(Statement {
            sql: "INSERT INTO org_events (org, seq)
                  SELECT * FROM unnest($1::text[], $2::bigint[])",
            params: vec![column(filed_orgs), column(filed_seqs)],
        });
    }
    Ok(out)
}
