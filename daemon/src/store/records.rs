//! The records the store keeps, one struct per table value. Serialized as JSON so a
//! database can be read with any redb tool and new optional fields need no migration.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use compartmentctl::wire::{AccountStatus, MemberStatus, Role};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = u64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub created_at: Millis,
    pub created_by_uid: u32,
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
    pub role: Role,
    /// The uid this membership was made active for (by redeeming its token, or at once
    /// when the inviter could vouch for the account's binding). Only that uid, while it
    /// is still bound to the account, acts through it: a later binding of the same
    /// account, made elsewhere, inherits nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

    /// An active admin is what the last-admin rule protects.
    pub fn is_active_admin(&self) -> bool {
        self.status == MemberStatus::Active && self.role == Role::Admin
    }
}

/// The store key of an activation token (`token::key_of`, or the SHA-256 of its text for
/// tokens issued by schema 2 and before); the only form in which a token is stored.
///
/// Stored as 43 base64url characters; records written before schema 3 hold it as an array of
/// 32 numbers, which still reads. (The array was most of a membership's bytes, and most of
/// the time spent reading one.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TokenHash, D::Error> {
        deserializer.deserialize_any(TokenHashVisitor)
    }
}

/// Reads either stored form of a [`TokenHash`] without buffering it first.
struct TokenHashVisitor;

impl<'de> serde::de::Visitor<'de> for TokenHashVisitor {
    type Value = TokenHash;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a token key: 32 bytes of base64url, or 32 numbers")
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

/// An invitation still pending after its expiry is expired, whether or not the sweeper
/// has marked it yet.
fn status_at(status: MemberStatus, expires_at: Option<Millis>, now: Millis) -> MemberStatus {
    match (status, expires_at) {
        (MemberStatus::Invited, Some(expires_at)) if expires_at <= now => MemberStatus::Expired,
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
}

impl From<&MembershipRecord> for MemberRow {
    fn from(record: &MembershipRecord) -> MemberRow {
        MemberRow {
            role: record.role,
            uid: record.uid,
            status: record.status,
            expires_at: record.expires_at,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeemer: Option<UnixUser>,
    /// Issued by a superuser: a binding it makes has a superuser's provenance.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
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

/// One line of the audit log: who changed what, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: Millis,
    /// `None` for the daemon's own actions (the sweeper).
    pub uid: Option<u32>,
    pub pid: Option<i32>,
    pub action: String,
    pub org: Option<String>,
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
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
        let record = MembershipRecord {
            role: Role::Deployer,
            uid: Some(1001),
            status: MemberStatus::Invited,
            invited_by: "uid 0 (root)".into(),
            invited_at: 5,
            expires_at: Some(9),
            token_hash: Some(TokenHash([7; 32])),
        };
        let text = serde_json::to_vec(&record).unwrap();
        let row: MemberRow = serde_json::from_slice(&text).unwrap();
        assert_eq!(row, MemberRow::from(&record));
        assert_eq!(row.status_at(9), MemberStatus::Expired);
        assert_eq!(row.status_at(8), MemberStatus::Invited);
    }
}
