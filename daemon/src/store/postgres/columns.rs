//! The tables' columns as the reads name them, and a row read back into its record: shared
//! by the reads (`reads.rs`), the glances (`glance.rs`) and the backups (`backup.rs`).

use compartmentctl::wire::EventKind;
use tokio_postgres::Row;

use super::values::{corrupt, from_json_text, millis, parsed, token_hash, uid, uid_of};
use crate::store::{
    AccountRecord, BindingRecord, EventRecord, MemberRow, MembershipRecord, OrgRecord, Provenance,
    Result, Sealed, TokenRecord, UnixUser,
};

pub(super) const MEMBERSHIP: &str =
    "role, uid, status, invited_by, invited_at, expires_at, token_key";

pub(super) fn membership(row: &Row) -> Result<MembershipRecord> {
    const TABLE: &str = "memberships";
    Ok(MembershipRecord {
        role: parsed(TABLE, row.try_get("role")?)?,
        uid: uid(TABLE, row.try_get("uid")?)?,
        status: parsed(TABLE, row.try_get("status")?)?,
        invited_by: row.try_get("invited_by")?,
        invited_at: millis(TABLE, row.try_get("invited_at")?)?,
        expires_at: row
            .try_get::<_, Option<i64>>("expires_at")?
            .map(|at| millis(TABLE, at))
            .transpose()?,
        token_hash: row
            .try_get::<_, Option<&[u8]>>("token_key")?
            .map(|key| token_hash(TABLE, key))
            .transpose()?,
    })
}

/// What a member list shows of a membership.
pub(super) const MEMBER_ROW: &str = "role, uid, status, expires_at";

pub(super) fn member_row(row: &Row) -> Result<MemberRow> {
    const TABLE: &str = "memberships";
    Ok(MemberRow {
        role: parsed(TABLE, row.try_get("role")?)?,
        uid: uid(TABLE, row.try_get("uid")?)?,
        status: parsed(TABLE, row.try_get("status")?)?,
        expires_at: row
            .try_get::<_, Option<i64>>("expires_at")?
            .map(|at| millis(TABLE, at))
            .transpose()?,
    })
}

pub(super) const EVENT: &str = "seq, at, kind, org, email, role, previous_role, status, uid, actor";

pub(super) fn event(row: &Row) -> Result<(u64, EventRecord)> {
    const TABLE: &str = "events";
    let seq: i64 = row.try_get("seq")?;
    let kind: String = row.try_get("kind")?;
    let role = |column| -> Result<_> {
        row.try_get::<_, Option<&str>>(column)?
            .map(|text| parsed(TABLE, text))
            .transpose()
    };
    Ok((
        u64::try_from(seq).map_err(|_| corrupt(TABLE, format!("sequence number {seq}")))?,
        EventRecord {
            at: millis(TABLE, row.try_get("at")?)?,
            kind: kind
                .parse::<EventKind>()
                .map_err(|err| corrupt(TABLE, err))?,
            org: row.try_get("org")?,
            email: row.try_get("email")?,
            role: role("role")?,
            previous_role: role("previous_role")?,
            status: row
                .try_get::<_, Option<&str>>("status")?
                .map(|text| parsed(TABLE, text))
                .transpose()?,
            uid: uid(TABLE, row.try_get("uid")?)?,
            actor: row
                .try_get::<_, Option<&str>>("actor")?
                .map(|text| from_json_text(TABLE, text))
                .transpose()?,
        },
    ))
}

pub(super) fn account(row: &Row) -> Result<AccountRecord> {
    const TABLE: &str = "accounts";
    Ok(AccountRecord {
        status: parsed(TABLE, row.try_get("status")?)?,
        uid: uid(TABLE, row.try_get("uid")?)?,
        created_at: millis(TABLE, row.try_get("created_at")?)?,
        activated_at: row
            .try_get::<_, Option<i64>>("activated_at")?
            .map(|at| millis(TABLE, at))
            .transpose()?,
    })
}

pub(super) fn org(row: &Row) -> Result<OrgRecord> {
    const TABLE: &str = "orgs";
    Ok(OrgRecord {
        created_at: millis(TABLE, row.try_get("created_at")?)?,
        created_by_uid: uid_of(TABLE, row, "created_by_uid")?,
    })
}

pub(super) const BINDING: &str = "email, user_name, bound_at, provenance, provenance_org";

pub(super) fn binding(row: &Row) -> Result<BindingRecord> {
    const TABLE: &str = "bindings";
    let provenance: String = row.try_get("provenance")?;
    let org: Option<String> = row.try_get("provenance_org")?;
    Ok(BindingRecord {
        email: row.try_get("email")?,
        user_name: row.try_get("user_name")?,
        bound_at: millis(TABLE, row.try_get("bound_at")?)?,
        provenance: match (provenance.as_str(), org) {
            ("superuser", None) => Provenance::Superuser,
            ("unknown", None) => Provenance::Unknown,
            ("org", Some(org)) => Provenance::Org(org),
            (other, _) => return Err(corrupt(TABLE, format!("provenance {other}"))),
        },
    })
}

pub(super) const TOKEN: &str =
    "org, email, expires_at, state, redeemer_uid, redeemer_name, issued_by_superuser";

pub(super) fn token(row: &Row) -> Result<TokenRecord> {
    const TABLE: &str = "tokens";
    let redeemer_uid = uid(TABLE, row.try_get("redeemer_uid")?)?;
    let redeemer_name: Option<String> = row.try_get("redeemer_name")?;
    Ok(TokenRecord {
        org: row.try_get("org")?,
        email: row.try_get("email")?,
        expires_at: millis(TABLE, row.try_get("expires_at")?)?,
        state: parsed(TABLE, row.try_get("state")?)?,
        redeemer: match (redeemer_uid, redeemer_name) {
            (Some(uid), Some(name)) => Some(UnixUser { uid, name }),
            _ => None,
        },
        issued_by_superuser: row.try_get("issued_by_superuser")?,
    })
}

pub(super) const AUDIT: &str = "seq, record, hash";

/// An audit record as stored.
pub(super) fn audit(row: &Row) -> Result<Sealed> {
    const TABLE: &str = "audit_log";
    let seq: i64 = row.try_get("seq")?;
    let seq = u64::try_from(seq).map_err(|_| corrupt(TABLE, format!("sequence number {seq}")))?;
    let hash: &[u8] = row.try_get("hash")?;
    Ok(Sealed {
        seq,
        text: row.try_get("record")?,
        hash: crate::store::chain::stored_hash(TABLE, seq, hash)?,
    })
}

/// `columns` (a list as the reads name them) each taken from the table `alias`.
pub(super) fn prefixed(alias: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|column| format!("{alias}.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn strings(rows: Vec<Row>) -> Result<Vec<String>> {
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}
