//! `user.*`: inviting, listing and removing the members of an organization.

use serde::{Deserialize, Serialize};

use super::{MemberStatus, Params, Role};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserInviteParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    pub email: String,
    pub role: Role,
    /// Lifetime of the activation URL in humantime form (`2h`, `7days`); the daemon's
    /// `--invitation-ttl` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
    /// Issue a new token for a pending invitation, revoking the old one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resend: bool,
    /// The only Unix user who may redeem the activation URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_user: Option<String>,
}

/// The longest page `user.list` answers; a `limit` above it (or of 0) is a bad request.
pub const MAX_PAGE: u32 = 1_000;
/// The page `user.list` answers when the request names no `limit`, so that a client
/// written before paging gets the first page and a `next`, never an unbounded reply.
pub const DEFAULT_PAGE: u32 = 100;

/// One page of an organization's members (DESIGN §5: lists are paged by an opaque cursor).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserListParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// At most this many members, 1 to [`MAX_PAGE`]; [`DEFAULT_PAGE`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` of the previous page, as it was received: it names a position in the
    /// organization's list, nothing more, and means nothing to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Only members with this status (as of the daemon's now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MemberStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRemoveParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    pub email: String,
}

/// The outcome of an invitation (`user.invite`, and `org.create`'s first admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub org: String,
    pub email: String,
    pub role: Role,
    /// `invited` with a URL, or `active` when the account already existed.
    pub status: MemberStatus,
    pub activation_url: Option<String>,
    /// RFC 3339, whole seconds, UTC.
    pub expires_at: Option<String>,
    /// The Unix user who already holds the account, when it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    /// The only Unix user who may redeem the activation URL: the account's holder, whose
    /// consent it asks for, or the user the inviter named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeemable_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub email: String,
    pub role: Role,
    pub status: MemberStatus,
    /// When the invitation expires (or expired); `None` for active members.
    pub expires_at: Option<String>,
    /// The Unix user an active member acts as.
    #[serde(default)]
    pub unix_user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberList {
    pub org: String,
    /// Ordered by e-mail; one page of at most the request's `limit`.
    pub members: Vec<Member>,
    /// The cursor of the next page (its request's `after`); absent on the last page. A
    /// page filtered by status may hold fewer than `limit` members, even none, and still
    /// have a `next`: the daemon bounds the rows it reads for one page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub org: String,
    pub email: String,
}

impl Params for UserInviteParams {
    fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }
}

impl Params for UserListParams {
    fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }
}

impl Params for UserRemoveParams {
    fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }
}
