//! The tables' columns as the reads name them, and a row read back into its record: shared
//! by the reads (`reads.rs`), the glances (`glance.rs`) and the backups (`backup.rs`).

use compartmentctl::wire::EventKind;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::values::{
    corrupt, from_json_text, json_text, millis, parsed, spelled, stored, token_hash, uid, uid_of,
};
use crate::store::change::due_key;
use crate::store::{
    AccountRecord, BindingRecord, Block, Deadline, Elevation, EventNote, EventRecord, MemberRow,
    MembershipRecord, OrgRecord, Provenance, Result, Sealed, Terms, TokenRecord, UnixUser,
};

pub(super) const MEMBERSHIP: &str = "role, uid, status, invited_by, invited_at, expires_at, \
    token_key, block_reason, block_by, block_at, block_until, access_until, access_warned, \
    elevated_until, elevation_warned, fallback_role";

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
        terms: terms(row)?,
    })
}

/// What a member list shows of a membership.
pub(super) const MEMBER_ROW: &str = "role, uid, status, expires_at, block_reason, block_by, \
    block_at, block_until, access_until, access_warned, elevated_until, elevation_warned, \
    fallback_role";

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
        terms: terms(row)?,
    })
}

/// A membership's terms, from the columns [`MEMBERSHIP`] and [`MEMBER_ROW`] name: each
/// group whole or absent, as the table's checks hold it.
fn terms(row: &Row) -> Result<Terms> {
    const TABLE: &str = "memberships";
    let time = |column| -> Result<Option<u64>> {
        row.try_get::<_, Option<i64>>(column)?
            .map(|at| millis(TABLE, at))
            .transpose()
    };
    let warned = |column| -> Result<Option<u8>> {
        row.try_get::<_, Option<i16>>(column)?
            .map(|warned| {
                u8::try_from(warned).map_err(|_| corrupt(TABLE, format!("{warned} warnings")))
            })
            .transpose()
    };
    let block = match (
        row.try_get::<_, Option<String>>("block_reason")?,
        row.try_get::<_, Option<String>>("block_by")?,
        time("block_at")?,
        time("block_until")?,
    ) {
        (Some(reason), Some(by), Some(at), until) => Some(Block {
            reason,
            by,
            at,
            until,
        }),
        (None, None, None, None) => None,
        _ => return Err(corrupt(TABLE, "a block without its reason, author or time")),
    };
    let access_until = match (time("access_until")?, warned("access_warned")?) {
        (Some(at), Some(warned)) => Some(Deadline { at, warned }),
        (None, None) => None,
        _ => return Err(corrupt(TABLE, "an end of access without its warnings")),
    };
    let elevation = match (
        time("elevated_until")?,
        warned("elevation_warned")?,
        row.try_get::<_, Option<&str>>("fallback_role")?,
    ) {
        (Some(at), Some(warned), Some(fallback)) => Some(Elevation {
            until: Deadline { at, warned },
            fallback: parsed(TABLE, fallback)?,
        }),
        (None, None, None) => None,
        _ => return Err(corrupt(TABLE, "an elevation without its end or fallback")),
    };
    Ok(Terms {
        block,
        access_until,
        elevation,
    })
}

/// The columns of memberships' terms and due times, one array per column, as a statement
/// that writes many memberships passes them (`flush.rs`, `backup.rs`).
#[derive(Default)]
pub(super) struct TermsColumns {
    pub(super) block_reason: Vec<Option<String>>,
    pub(super) block_by: Vec<Option<String>>,
    pub(super) block_at: Vec<Option<i64>>,
    pub(super) block_until: Vec<Option<i64>>,
    pub(super) access_until: Vec<Option<i64>>,
    pub(super) access_warned: Vec<Option<i16>>,
    pub(super) elevated_until: Vec<Option<i64>>,
    pub(super) elevation_warned: Vec<Option<i16>>,
    pub(super) fallback_role: Vec<Option<String>>,
    /// [`due_key`]: when the sweeper must next look at the membership.
    pub(super) due_at: Vec<Option<i64>>,
}

impl TermsColumns {
    /// Adds `membership`'s row.
    pub(super) fn push(&mut self, membership: &MembershipRecord) -> Result<()> {
        const TABLE: &str = "memberships";
        let time = |at: Option<u64>| at.map(|at| stored(TABLE, at)).transpose();
        let terms = &membership.terms;
        let block = terms.block.as_ref();
        self.block_reason
            .push(block.map(|block| block.reason.clone()));
        self.block_by.push(block.map(|block| block.by.clone()));
        self.block_at.push(time(block.map(|block| block.at))?);
        self.block_until
            .push(time(block.and_then(|block| block.until))?);
        self.access_until
            .push(time(terms.access_until.map(|deadline| deadline.at))?);
        self.access_warned.push(
            terms
                .access_until
                .map(|deadline| i16::from(deadline.warned)),
        );
        let elevation = terms.elevation.as_ref();
        self.elevated_until
            .push(time(elevation.map(|elevation| elevation.until.at))?);
        self.elevation_warned
            .push(elevation.map(|elevation| i16::from(elevation.until.warned)));
        self.fallback_role.push(
            elevation
                .map(|elevation| spelled(TABLE, &elevation.fallback))
                .transpose()?,
        );
        self.due_at.push(time(due_key(membership))?);
        Ok(())
    }
}

pub(super) const EVENT: &str =
    "seq, at, kind, org, email, role, previous_role, status, uid, actor, until, reason, previous_name";

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
            note: match (
                row.try_get::<_, Option<i64>>("until")?
                    .map(|at| millis(TABLE, at))
                    .transpose()?,
                row.try_get::<_, Option<String>>("reason")?,
                row.try_get::<_, Option<String>>("previous_name")?,
            ) {
                (None, None, None) => None,
                (until, reason, previous_name) => Some(EventNote {
                    until,
                    reason,
                    previous_name,
                }),
            },
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

/// What the reads name of an organization: its name aside. `group_gids` is only an index
/// of `groups`, read by `orgs_of_groups`.
pub(super) const ORG: &str = "created_at, created_by_uid, groups";

pub(super) fn org(row: &Row) -> Result<OrgRecord> {
    const TABLE: &str = "orgs";
    Ok(OrgRecord {
        created_at: millis(TABLE, row.try_get("created_at")?)?,
        created_by_uid: uid_of(TABLE, row, "created_by_uid")?,
        groups: from_json_text(TABLE, row.try_get("groups")?)?,
    })
}

/// The rows of organizations, one array per column, as a statement that writes many
/// passes them (`flush.rs`, `backup.rs`): `$1` to `$5` of
/// `unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])`, the last cast
/// back with `::bigint[]` row by row.
#[derive(Default)]
pub(super) struct OrgColumns {
    pub(super) names: Vec<String>,
    pub(super) created_at: Vec<i64>,
    pub(super) created_by_uid: Vec<i64>,
    /// The JSON text of the groups.
    pub(super) groups: Vec<String>,
    /// Their gids, each list as PostgreSQL spells an array (`{100,200}`): an array of
    /// arrays of different lengths is no parameter PostgreSQL takes.
    pub(super) group_gids: Vec<String>,
}

impl OrgColumns {
    /// Adds the row of the organization `name`.
    pub(super) fn push(&mut self, name: &str, org: &OrgRecord) -> Result<()> {
        const TABLE: &str = "orgs";
        self.names.push(name.to_owned());
        self.created_at.push(stored(TABLE, org.created_at)?);
        self.created_by_uid.push(i64::from(org.created_by_uid));
        self.groups.push(json_text(TABLE, &org.groups)?);
        let gids: Vec<String> = org.groups.iter().map(|map| map.gid.to_string()).collect();
        self.group_gids.push(format!("{{{}}}", gids.join(",")));
        Ok(())
    }

    /// The parameters, in order.
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [
            &self.names,
            &self.created_at,
            &self.created_by_uid,
            &self.groups,
            &self.group_gids,
        ]
    }
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
