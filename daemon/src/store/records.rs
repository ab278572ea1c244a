//! The records the store keeps, one struct per table value. Serialized as JSON so a
//! database can be read with any redb tool and new optional fields need no migration.

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
    /// `Invited` or `Expired` while the account has not joined through this membership.
    pub status: MemberStatus,
    /// Who invited: an e-mail, or `uid N` for a superuser without an account.
    pub invited_by: String,
    pub invited_at: Millis,
    /// The invitation's expiry while `status` is `Invited` or `Expired`.
    pub expires_at: Option<Millis>,
    /// SHA-256 of the pending invitation's token, while `status` is `Invited`.
    pub token_hash: Option<TokenHash>,
}

impl MembershipRecord {
    /// The status a reader should see at `now`: an invitation past its expiry is
    /// `expired` even before the sweeper has marked it.
    pub fn status_at(&self, now: Millis) -> MemberStatus {
        match (self.status, self.expires_at) {
            (MemberStatus::Invited, Some(expires_at)) if expires_at <= now => MemberStatus::Expired,
            (status, _) => status,
        }
    }

    /// An active admin is what the last-admin rule protects.
    pub fn is_active_admin(&self) -> bool {
        self.status == MemberStatus::Active && self.role == Role::Admin
    }
}

/// SHA-256 of an activation token; the only form in which a token is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenHash(pub [u8; 32]);

/// What became of a token. Spent tokens are kept as hashes so that a second use is told
/// "already used" or "expired" rather than "unknown".
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
