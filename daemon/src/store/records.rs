//! The records the store keeps, one struct per table value.
//!
//! A record is stored as one format byte (`BINARY_RECORD`, in `encoding.rs`) and its fields in
//! postcard's compact binary form, in declaration order. Schema 3 and before stored JSON
//! objects, which begin with `{`; those still read, and are rewritten in the binary form
//! when next written. JSON cost a member list most of its time (decoding field names and
//! skipping what a list does not show) and doubled the bytes of a membership.
//!
//! So the order of fields and of enum variants is the format: a field is added at the end
//! with a schema migration, never inserted, and no variant is reordered (the unit tests pin
//! the bytes of each record). `#[serde(default)]` is for the JSON records only;
//! `skip_serializing_if` would drop a field from the binary form and must not be used here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use compartmentctl::wire::{
    AccountStatus, AuditActor, AuditState, AuditTarget, EventKind, MemberStatus, Role,
};
use serde::{Deserialize, Serialize};

pub use crate::clock::Millis;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub created_at: Millis,
    pub created_by_uid: u32,
    /// Unix groups whose users act here with a role, without an invitation (schema 8;
    /// before, none). Kept with the organization, so that a decision reads them with it.
    #[serde(default)]
    pub groups: Vec<GroupMap>,
}

/// A Unix group mapped to a role in an organization (`org map-group`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMap {
    /// The group, by the gid NSS gave its name when it was mapped: a group renamed keeps
    /// its mapping, one deleted and its gid reused hands it on (as `/etc/group` would).
    pub gid: u32,
    /// Its name when mapped, for people.
    pub name: String,
    #[serde(serialize_with = "role_name")]
    pub role: Role,
    /// Who mapped it: an e-mail, or `uid N` for a superuser without an account.
    pub by: String,
    pub at: Millis,
}

impl OrgRecord {
    /// The highest role any of `gids` is mapped to here, and the mapping that gives it.
    pub fn group_role(&self, gids: &[u32]) -> Option<&GroupMap> {
        self.groups
            .iter()
            .filter(|map| gids.contains(&map.gid))
            .max_by_key(|map| map.role)
    }
}

/// An organization as schemas 4 to 7 wrote it, without its groups: read only by the
/// migration to schema 8.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LegacyOrgRecord {
    pub created_at: Millis,
    pub created_by_uid: u32,
}

impl From<LegacyOrgRecord> for OrgRecord {
    fn from(old: LegacyOrgRecord) -> OrgRecord {
        OrgRecord {
            created_at: old.created_at,
            created_by_uid: old.created_by_uid,
            groups: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub status: AccountStatus,
    /// The Unix uid bound to the account by its activation.
    pub uid: Option<u32>,
    pub created_at: Millis,
    pub activated_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipRecord {
    #[serde(serialize_with = "role_name")]
    pub role: Role,
    /// The uid this membership was made active for (by redeeming its token, or at once
    /// when the inviter could vouch for the account's binding). Only that uid, while it
    /// is still bound to the account, acts through it: a later binding of the same
    /// account, made elsewhere, inherits nothing.
    #[serde(default)]
    pub uid: Option<u32>,
    /// `Invited` or `Expired` while the account has not joined through this membership.
    pub status: MemberStatus,
    /// Who invited: an e-mail, or `uid N` for a superuser without an account.
    pub invited_by: String,
    pub invited_at: Millis,
    /// The invitation's expiry while `status` is `Invited` or `Expired`.
    pub expires_at: Option<Millis>,
    /// The store key of the pending invitation's token, while `status` is `Invited`.
    pub token_hash: Option<TokenHash>,
    /// What bounds the membership besides its role and status: a block, an end to its
    /// access, a temporary elevation (schema 8; before, none).
    #[serde(default)]
    pub terms: Terms,
}

/// What bounds a membership besides its role and status. Each is exact at decision time:
/// a request compares it with `now`, whether or not the sweeper has recorded it yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// The member may not act while blocked.
    pub block: Option<Block>,
    /// When the membership ends by itself.
    pub access_until: Option<Deadline>,
    /// A role held until a time, after which the member holds `fallback` again.
    pub elevation: Option<Elevation>,
}

/// An admin's block of a member: why, by whom, since and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The admin's words, shown to the member and to every service that asks.
    pub reason: String,
    /// Who blocked: an e-mail, or `uid N` for a superuser without an account.
    pub by: String,
    pub at: Millis,
    /// When the block lifts by itself; `None` until someone unblocks.
    pub until: Option<Millis>,
}

/// A time something ends, and how many of the warnings before it ([`WARNINGS`]) the feed
/// has given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    pub at: Millis,
    pub warned: u8,
}

/// How long before access or an elevation ends the feed warns (`member.access_expiring`):
/// a week, then a day, as GitLab and Azure PIM do.
pub const WARNINGS: [Millis; 2] = [7 * 24 * 3_600_000, 24 * 3_600_000];

impl Deadline {
    /// A deadline set at `now`: the warnings whose time has already passed are not given.
    pub fn set(at: Millis, now: Millis) -> Deadline {
        let passed = WARNINGS
            .iter()
            .take_while(|&&ahead| crate::clock::is_due(at.saturating_sub(ahead), now))
            .count();
        Deadline {
            at,
            warned: u8::try_from(passed).unwrap_or(u8::MAX),
        }
    }

    /// When the next warning is due, if one is still to be given.
    pub fn next_warning(&self) -> Option<Millis> {
        WARNINGS
            .get(usize::from(self.warned))
            .map(|ahead| self.at.saturating_sub(*ahead))
    }

    /// The next time the sweeper must look: the next warning, else the end.
    fn next_due(&self) -> Millis {
        self.next_warning().unwrap_or(self.at)
    }
}

/// A role held until a time; then the member holds `fallback`, the role held before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Elevation {
    pub until: Deadline,
    #[serde(serialize_with = "role_name")]
    pub fallback: Role,
}

impl Terms {
    /// The block in force at `now`, if any.
    pub fn block_at(&self, now: Millis) -> Option<&Block> {
        self.block.as_ref().filter(|block| {
            block
                .until
                .is_none_or(|until| !crate::clock::is_due(until, now))
        })
    }

    /// When access ended, if it has by `now`.
    pub fn access_ended_at(&self, now: Millis) -> Option<Millis> {
        self.access_until
            .map(|deadline| deadline.at)
            .filter(|&at| crate::clock::is_due(at, now))
    }

    /// The role held at `now` by a member whose role is `role`: the fallback once an
    /// elevation has ended.
    pub fn role_at(&self, role: Role, now: Millis) -> Role {
        match &self.elevation {
            Some(elevation) if crate::clock::is_due(elevation.until.at, now) => elevation.fallback,
            _ => role,
        }
    }

    /// Whether anything bounds the membership: a member so bound is not an admin the
    /// last-admin rule can rely on, as they may stop acting at any moment.
    pub fn is_bounded(&self) -> bool {
        self.block.is_some() || self.access_until.is_some() || self.elevation.is_some()
    }

    /// When the sweeper must next look at the membership: a block's end, a warning, access
    /// or an elevation ending; the earliest.
    pub fn next_due(&self) -> Option<Millis> {
        [
            self.block.as_ref().and_then(|block| block.until),
            self.access_until.map(|deadline| deadline.next_due()),
            self.elevation.map(|elevation| elevation.until.next_due()),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl MembershipRecord {
    /// The status a reader should see at `now`: an invitation past its expiry is
    /// `expired` even before the sweeper has marked it.
    pub fn status_at(&self, now: Millis) -> MemberStatus {
        status_at(self.status, self.expires_at, now)
    }

    /// True when `uid` acts through this membership: it is active, and active for `uid`.
    pub fn is_active_for(&self, uid: u32) -> bool {
        self.status == MemberStatus::Active && self.uid == Some(uid)
    }

    /// The role `uid` acts with through this membership at `now`, if any: it is active for
    /// `uid`, not blocked, its access has not ended, and an elevation that ended has fallen
    /// back. Exact on the second, whether or not the sweeper has recorded it.
    pub fn acting_role(&self, uid: u32, now: Millis) -> Option<Role> {
        (self.is_active_for(uid)
            && self.terms.access_ended_at(now).is_none()
            && self.terms.block_at(now).is_none())
        .then(|| self.terms.role_at(self.role, now))
    }

    /// An active admin nothing bounds is what the last-admin rule protects: a blocked
    /// admin, or one whose access or admin role ends by itself, cannot be relied on.
    pub fn is_active_admin(&self) -> bool {
        self.status == MemberStatus::Active && self.role == Role::Admin && !self.terms.is_bounded()
    }
}

/// The store key of an activation token (`token::key_of`, or the SHA-256 of its text for
/// tokens issued by schema 2 and before); the only form in which a token is stored.
///
/// In a binary record, 32 bytes. In a JSON record (schema 3 and before), 43 base64url
/// characters, or an array of 32 numbers (schema 2 and before); both still read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&URL_SAFE_NO_PAD.encode(self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TokenHash, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(TokenHashVisitor)
        } else {
            deserializer.deserialize_bytes(TokenHashVisitor)
        }
    }
}

/// Reads every stored form of a [`TokenHash`] without buffering it first.
struct TokenHashVisitor;

impl<'de> serde::de::Visitor<'de> for TokenHashVisitor {
    type Value = TokenHash;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a token key: 32 bytes, 32 bytes of base64url, or 32 numbers")
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<TokenHash, E> {
        <[u8; 32]>::try_from(bytes)
            .map(TokenHash)
            .map_err(|_| E::invalid_length(bytes.len(), &self))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<TokenHash, E> {
        let mut bytes = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(text.as_bytes(), &mut bytes) {
            Ok(32) => Ok(TokenHash(bytes)),
            _ => Err(E::invalid_value(serde::de::Unexpected::Str(text), &self)),
        }
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<TokenHash, A::Error> {
        <[u8; 32]>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(TokenHash)
    }
}

/// A role is stored by its name, in either form of record: a name survives any reordering
/// of the enum, whose derived binary form would be the variant's index.
fn role_name<S: serde::Serializer>(role: &Role, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(role.as_str())
}

/// An invitation still pending after its expiry is expired, whether or not the sweeper
/// has marked it yet.
fn status_at(status: MemberStatus, expires_at: Option<Millis>, now: Millis) -> MemberStatus {
    match (status, expires_at) {
        (MemberStatus::Invited, Some(expires_at)) if crate::clock::is_due(expires_at, now) => {
            MemberStatus::Expired
        }
        (status, _) => status,
    }
}

/// A membership as a member list reads it: a [`MembershipRecord`] without what a list never
/// shows (the inviter, the token's key), whose text serde skips without keeping it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MemberRow {
    pub role: Role,
    #[serde(default)]
    pub uid: Option<u32>,
    pub status: MemberStatus,
    pub expires_at: Option<Millis>,
    #[serde(default)]
    pub terms: Terms,
}

impl From<&MembershipRecord> for MemberRow {
    fn from(record: &MembershipRecord) -> MemberRow {
        MemberRow {
            role: record.role,
            uid: record.uid,
            status: record.status,
            expires_at: record.expires_at,
            terms: record.terms.clone(),
        }
    }
}

/// A binary [`MembershipRecord`] read in place: the same fields in the same order, its text
/// borrowed rather than copied (a list reads a thousand per page and shows none of it).
#[derive(Deserialize)]
pub(super) struct MembershipView<'a> {
    role: Role,
    uid: Option<u32>,
    status: MemberStatus,
    #[serde(borrow)]
    _invited_by: &'a str,
    _invited_at: Millis,
    expires_at: Option<Millis>,
    _token_hash: Option<TokenHash>,
    terms: Terms,
}

impl From<MembershipView<'_>> for MemberRow {
    fn from(view: MembershipView<'_>) -> MemberRow {
        MemberRow {
            role: view.role,
            uid: view.uid,
            status: view.status,
            expires_at: view.expires_at,
            terms: view.terms,
        }
    }
}

/// A membership as schemas 4 to 7 wrote it, without its [`Terms`]: read only by the
/// migration to schema 8, which rewrites every membership.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LegacyMembershipRecord {
    pub role: Role,
    pub uid: Option<u32>,
    pub status: MemberStatus,
    pub invited_by: String,
    pub invited_at: Millis,
    pub expires_at: Option<Millis>,
    pub token_hash: Option<TokenHash>,
}

impl From<LegacyMembershipRecord> for MembershipRecord {
    fn from(old: LegacyMembershipRecord) -> MembershipRecord {
        MembershipRecord {
            role: old.role,
            uid: old.uid,
            status: old.status,
            invited_by: old.invited_by,
            invited_at: old.invited_at,
            expires_at: old.expires_at,
            token_hash: old.token_hash,
            terms: Terms::default(),
        }
    }
}

impl MemberRow {
    /// As [`MembershipRecord::status_at`].
    pub fn status_at(&self, now: Millis) -> MemberStatus {
        status_at(self.status, self.expires_at, now)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    Pending,
    Used,
    /// Replaced by `--resend`, or its membership was removed.
    Revoked,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub org: String,
    pub email: String,
    pub expires_at: Millis,
    pub state: TokenState,
    /// The only Unix user who may redeem it: named by `--unix-user`, or the user who
    /// already holds the account when the inviter could not vouch for that binding.
    #[serde(default)]
    pub redeemer: Option<UnixUser>,
    /// Issued by a superuser: a binding it makes has a superuser's provenance.
    #[serde(default)]
    pub issued_by_superuser: bool,
}

/// A Unix user as NSS named it at the time: its uid and its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixUser {
    pub uid: u32,
    pub name: String,
}

/// Who made a binding, and so who may vouch for it (DESIGN §2, §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// A superuser: by `account bind`, or by redeeming a superuser's invitation.
    Superuser,
    /// Redeeming an invitation of this organization.
    Org(String),
    /// Made before bindings recorded their provenance, through no organization the
    /// audit log names: only a superuser may vouch for it.
    Unknown,
}

/// A uid's binding to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingRecord {
    pub email: String,
    /// The uid's user name when it was bound (NSS). The binding holds only while the uid
    /// still resolves to this name; `None` for a binding carried over from a database
    /// whose uid had no user at the upgrade.
    pub user_name: Option<String>,
    pub bound_at: Millis,
    pub provenance: Provenance,
}

/// One record of the audit log, before it is numbered and sealed (`chain.rs`): who did
/// what to whom, what it was before and after, and whether it was allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub at: Millis,
    pub actor: AuditActor,
    /// In the permission table's vocabulary (`organization.user.invite`).
    pub event: String,
    pub org: Option<String>,
    pub target: Option<AuditTarget>,
    pub before: Option<AuditState>,
    pub after: Option<AuditState>,
    /// `ok`, or the kind of error the request was refused with.
    pub outcome: String,
    pub detail: Option<String>,
}

/// A record of the audit log as schema 6 and PostgreSQL schema 1 kept it, and backups of
/// format 1 carry it: read only to be carried into the chain (`AuditRecord::from_legacy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyAuditRecord {
    pub at: Millis,
    /// `None` for the daemon's own actions (the sweeper).
    pub uid: Option<u32>,
    pub pid: Option<i32>,
    pub action: String,
    pub org: Option<String>,
    pub target: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

impl AuditRecord {
    /// A record of before the chain, in today's terms: its action named by its event key,
    /// its target typed, its actor by uid alone (the e-mail was never recorded).
    pub fn from_legacy(old: LegacyAuditRecord) -> AuditRecord {
        let (event, target_type) = legacy_event(&old.action);
        let kind = match old.uid {
            None => "daemon",
            Some(0) => "superuser",
            Some(_) => "user",
        };
        AuditRecord {
            at: old.at,
            actor: AuditActor {
                kind: kind.to_owned(),
                email: None,
                uid: old.uid,
                user: None,
                pid: old.pid,
            },
            event: event.to_owned(),
            target: match (target_type, old.target, &old.org) {
                (_, Some(id), _) => Some(AuditTarget {
                    kind: target_type.to_owned(),
                    id,
                }),
                ("organization", None, Some(org)) => Some(AuditTarget {
                    kind: "organization".to_owned(),
                    id: org.clone(),
                }),
                _ => None,
            },
            org: old.org,
            before: None,
            after: None,
            outcome: "ok".to_owned(),
            detail: old.detail,
        }
    }
}

/// The event key and target type of an action of before the chain (PostgreSQL's
/// migration 0002 maps them alike).
pub fn legacy_event(action: &str) -> (&str, &'static str) {
    match action {
        "org.create" => ("organization.create", "organization"),
        "user.invite" | "user.reinvite" => ("organization.user.invite", "account"),
        "user.remove" => ("organization.user.remove", "account"),
        "role.grant" => ("organization.role.grant", "account"),
        "invitation.expire" => ("organization.invitation.expire", "account"),
        "binding.stale" => ("account.binding.stale", "account"),
        other => (other, "account"),
    }
}

/// One change of the feed (`events`, keyed by its sequence number): what happened to a
/// membership or a binding, as `events.subscribe` sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub at: Millis,
    pub kind: EventKind,
    pub org: Option<String>,
    pub email: String,
    #[serde(serialize_with = "option_role_name")]
    pub role: Option<Role>,
    #[serde(serialize_with = "option_role_name")]
    pub previous_role: Option<Role>,
    pub status: Option<MemberStatus>,
    pub uid: Option<u32>,
    /// Who made the change: the actor of its audit record (schema 7; an event of schema 6
    /// and before, written without it, reads as a [`LegacyEventRecord`]).
    #[serde(default)]
    pub actor: Option<AuditActor>,
    /// When what the event tells of ends (a block, access, an elevation), and a block's
    /// reason (schema 8; an event of schema 7 reads as a [`LegacyEventRecord`] and its
    /// actor).
    #[serde(default)]
    pub note: Option<EventNote>,
}

/// What an event adds for services: until when and why (a membership's, for services that
/// end sessions), and the former name of what was renamed: an organization's
/// (`org.renamed`) or an account's e-mail (`account.renamed`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventNote {
    pub until: Option<Millis>,
    pub reason: Option<String>,
    pub previous_name: Option<String>,
}

/// An event as schemas 4 to 6 wrote it: without its actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyEventRecord {
    pub at: Millis,
    pub kind: EventKind,
    pub org: Option<String>,
    pub email: String,
    #[serde(serialize_with = "option_role_name")]
    pub role: Option<Role>,
    #[serde(serialize_with = "option_role_name")]
    pub previous_role: Option<Role>,
    pub status: Option<MemberStatus>,
    pub uid: Option<u32>,
}

impl From<LegacyEventRecord> for EventRecord {
    fn from(old: LegacyEventRecord) -> EventRecord {
        EventRecord {
            at: old.at,
            kind: old.kind,
            org: old.org,
            email: old.email,
            role: old.role,
            previous_role: old.previous_role,
            status: old.status,
            uid: old.uid,
            actor: None,
            note: None,
        }
    }
}

/// [`role_name`] for a role that may be absent.
fn option_role_name<S: serde::Serializer>(
    role: &Option<Role>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match role {
        Some(role) => serializer.serialize_some(role.as_str()),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_token_key_is_stored_as_base64url_and_reads_in_both_forms() {
        let key = TokenHash(std::array::from_fn(|i| i as u8 * 7));
        let text = serde_json::to_string(&key).unwrap();
        assert_eq!(text, format!("\"{}\"", URL_SAFE_NO_PAD.encode(key.0)));
        assert_eq!(serde_json::from_str::<TokenHash>(&text).unwrap(), key);
        // As schema 2 and before wrote it.
        let numbers = serde_json::to_string(&key.0).unwrap();
        assert_eq!(serde_json::from_str::<TokenHash>(&numbers).unwrap(), key);
        assert!(serde_json::from_str::<TokenHash>("\"c2hvcnQ\"").is_err());
        assert!(serde_json::from_str::<TokenHash>("[1,2,3]").is_err());
    }

    #[test]
    fn a_member_row_reads_what_a_membership_record_holds_but_its_inviter_and_token() {
        use crate::store::{decode_member_row, encode};
        let record = MembershipRecord {
            role: Role::Deployer,
            uid: Some(1001),
            status: MemberStatus::Invited,
            invited_by: "uid 0 (root)".into(),
            invited_at: 5,
            expires_at: Some(9),
            token_hash: Some(TokenHash([7; 32])),
            terms: Default::default(),
        };
        let binary = encode("memberships", &record).unwrap();
        let json = serde_json::to_vec(&record).unwrap();
        for bytes in [binary, json] {
            let row = decode_member_row(&bytes).unwrap();
            assert_eq!(row, MemberRow::from(&record));
            assert_eq!(row.status_at(9), MemberStatus::Expired);
            assert_eq!(row.status_at(8), MemberStatus::Invited);
        }
    }

    /// The binary form is the order of the fields and of the enums' variants: these bytes
    /// change only with a schema migration that reads the old ones.
    #[test]
    fn each_record_is_stored_as_these_bytes() {
        use crate::store::{decode, encode, BINARY_RECORD};
        fn pinned<T>(table: &'static str, record: T, expected: &[u8])
        where
            T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
        {
            let bytes = encode(table, &record).unwrap();
            assert_eq!(bytes[0], BINARY_RECORD);
            assert_eq!(&bytes[1..], expected, "{table}: {record:?}");
            assert_eq!(decode::<T>(table, &bytes).unwrap(), record);
        }
        pinned(
            "memberships",
            MembershipRecord {
                role: Role::Deployer,
                uid: Some(1001),
                status: MemberStatus::Expired,
                invited_by: "a@b".into(),
                invited_at: 5,
                expires_at: Some(9),
                token_hash: Some(TokenHash([7; 32])),
                terms: Default::default(),
            },
            &[
                8, b'd', b'e', b'p', b'l', b'o', b'y', b'e', b'r', 1, 0xe9, 0x07, 2, 3, b'a', b'@',
                b'b', 5, 1, 9, 1, 32, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
                7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0, 0, 0,
            ],
        );
        // Its terms (schema 8), each field in order.
        pinned(
            "memberships",
            MembershipRecord {
                role: Role::Admin,
                uid: None,
                status: MemberStatus::Active,
                invited_by: "".into(),
                invited_at: 1,
                expires_at: None,
                token_hash: None,
                terms: Terms {
                    block: Some(Block {
                        reason: "r".into(),
                        by: "b".into(),
                        at: 2,
                        until: Some(3),
                    }),
                    access_until: Some(Deadline { at: 4, warned: 1 }),
                    elevation: Some(Elevation {
                        until: Deadline { at: 5, warned: 2 },
                        fallback: Role::Viewer,
                    }),
                },
            },
            &[
                5, b'a', b'd', b'm', b'i', b'n', 0, 0, 0, 1, 0, 0, 1, 1, b'r', 1, b'b', 2, 1, 3, 1,
                4, 1, 1, 5, 2, 6, b'v', b'i', b'e', b'w', b'e', b'r',
            ],
        );
        pinned(
            "accounts",
            AccountRecord {
                status: AccountStatus::Active,
                uid: Some(2),
                created_at: 3,
                activated_at: None,
            },
            &[1, 1, 2, 3, 0],
        );
        pinned(
            "tokens",
            TokenRecord {
                org: "o".into(),
                email: "e".into(),
                expires_at: 300,
                state: TokenState::Revoked,
                redeemer: Some(UnixUser {
                    uid: 7,
                    name: "u".into(),
                }),
                issued_by_superuser: true,
            },
            &[1, b'o', 1, b'e', 0xac, 0x02, 2, 1, 7, 1, b'u', 1],
        );
        pinned(
            "bindings",
            BindingRecord {
                email: "e".into(),
                user_name: None,
                bound_at: 4,
                provenance: Provenance::Org("o".into()),
            },
            &[1, b'e', 0, 4, 1, 1, b'o'],
        );
        pinned(
            "orgs",
            OrgRecord {
                created_at: 1,
                created_by_uid: 0,
                groups: Default::default(),
            },
            &[1, 0, 0],
        );
        // With a group mapped (schema 8).
        pinned(
            "orgs",
            OrgRecord {
                created_at: 1,
                created_by_uid: 0,
                groups: vec![GroupMap {
                    gid: 300,
                    name: "g".into(),
                    role: Role::Viewer,
                    by: "b".into(),
                    at: 2,
                }],
            },
            &[
                1, 0, 1, 0xac, 0x02, 1, b'g', 6, b'v', b'i', b'e', b'w', b'e', b'r', 1, b'b', 2,
            ],
        );
        pinned(
            "audit",
            LegacyAuditRecord {
                at: 1,
                uid: None,
                pid: Some(-1),
                action: "x".into(),
                org: None,
                target: Some("t".into()),
                detail: None,
            },
            &[1, 0, 1, 1, 1, b'x', 0, 1, 1, b't', 0],
        );
        // An event as schemas 4 to 6 wrote it, and as this daemon writes it: the same
        // fields, then its actor.
        let legacy = LegacyEventRecord {
            at: 2,
            kind: EventKind::RoleChanged,
            org: Some("o".into()),
            email: "e".into(),
            role: Some(Role::Admin),
            previous_role: Some(Role::Viewer),
            status: Some(MemberStatus::Active),
            uid: None,
        };
        let legacy_bytes = [
            2, 19, b'm', b'e', b'm', b'b', b'e', b'r', b'.', b'r', b'o', b'l', b'e', b'_', b'c',
            b'h', b'a', b'n', b'g', b'e', b'd', 1, 1, b'o', 1, b'e', 1, 5, b'a', b'd', b'm', b'i',
            b'n', 1, 6, b'v', b'i', b'e', b'w', b'e', b'r', 1, 0, 0,
        ];
        pinned("events", legacy.clone(), &legacy_bytes);
        let mut event = EventRecord::from(legacy.clone());
        event.actor = Some(AuditActor {
            kind: "user".into(),
            email: None,
            uid: Some(7),
            user: Some("u".into()),
            pid: None,
        });
        let mut bytes = legacy_bytes.to_vec();
        bytes.extend([1, 4, b'u', b's', b'e', b'r', 0, 1, 7, 1, 1, b'u', 0]);
        let mut current = bytes.clone();
        current.push(0);
        pinned("events", event.clone(), &current);
        // With a note (schema 8).
        let mut noted = event.clone();
        noted.note = Some(EventNote {
            until: Some(9),
            reason: Some("r".into()),
            previous_name: Some("p".into()),
        });
        let mut noted_bytes = current.clone();
        noted_bytes.pop();
        noted_bytes.extend([1, 1, 9, 1, 1, b'r', 1, 1, b'p']);
        pinned("events", noted.clone(), &noted_bytes);
        // Both read as an event, whichever layout; an event without an actor is stored
        // with the actor's absence, so it is never mistaken for an old one.
        let read = |bytes: &[u8]| {
            let mut stored = vec![BINARY_RECORD];
            stored.extend_from_slice(bytes);
            crate::store::decode_event(&stored).unwrap()
        };
        assert_eq!(read(&legacy_bytes), EventRecord::from(legacy.clone()));
        assert_eq!(read(&bytes), event, "schema 7's layout");
        assert_eq!(read(&current), event);
        assert_eq!(read(&noted_bytes), noted);
        let unknown = EventRecord::from(legacy);
        assert_eq!(read(&encode("events", &unknown).unwrap()[1..]), unknown);
        assert_eq!(
            encode("events", &unknown).unwrap().len(),
            legacy_bytes.len() + 3
        );
        let mut truncated = bytes.clone();
        truncated.pop();
        let mut stored = vec![BINARY_RECORD];
        stored.extend_from_slice(&truncated);
        assert!(crate::store::decode_event(&stored).is_err());
    }

    /// Each variant of each enum a record holds is stored as its index: these are that
    /// mapping, whole, so that reordering any variant (in this crate or in the wire's)
    /// fails here rather than changing what stored records mean.
    #[test]
    fn each_stored_variant_keeps_its_index() {
        fn index<T: Serialize>(value: &T) -> Vec<u8> {
            postcard::to_allocvec(value).unwrap()
        }
        for (status, stored) in [
            (MemberStatus::Active, 0),
            (MemberStatus::Invited, 1),
            (MemberStatus::Expired, 2),
        ] {
            assert_eq!(index(&status), [stored], "{status:?}");
        }
        for (status, stored) in [(AccountStatus::Pending, 0), (AccountStatus::Active, 1)] {
            assert_eq!(index(&status), [stored], "{status:?}");
        }
        for (state, stored) in [
            (TokenState::Pending, 0),
            (TokenState::Used, 1),
            (TokenState::Revoked, 2),
            (TokenState::Expired, 3),
        ] {
            assert_eq!(index(&state), [stored], "{state:?}");
        }
        for (provenance, stored) in [
            (Provenance::Superuser, vec![0]),
            (Provenance::Org("o".into()), vec![1, 1, b'o']),
            (Provenance::Unknown, vec![2]),
        ] {
            assert_eq!(index(&provenance), stored, "{provenance:?}");
        }
    }

    /// A record written by schema 3 and before (JSON) reads; bytes that are neither form, or
    /// a binary record with bytes left over, are reported as damage.
    #[test]
    fn json_records_still_read_and_damage_is_reported() {
        use crate::store::decode;
        let old = br#"{"role":"admin","status":"active","invited_by":"uid 0","invited_at":1,"expires_at":null,"token_hash":null}"#;
        let record: MembershipRecord = decode("memberships", old).unwrap();
        assert_eq!((record.role, record.uid), (Role::Admin, None));
        for bad in [&b""[..], b"\x02abc", b"\x01\x01\x02\x03\x00\x00"] {
            let err = decode::<AccountRecord>("accounts", bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    crate::store::StoreError::Corrupt {
                        table: "accounts",
                        ..
                    }
                ),
                "{bad:?}: {err}"
            );
        }
    }
}
