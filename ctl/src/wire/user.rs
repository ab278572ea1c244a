//! `user.*`: inviting, listing and removing the members of an organization.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{GroupMembers, MemberStatus, Params, Role};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// When the membership ends by itself: an RFC 3339 time, or a humantime duration from
    /// now (`30days`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_until: Option<String>,
}

/// The longest page `user.list` answers; a `limit` above it (or of 0) is a bad request.
pub const MAX_PAGE: u32 = 1_000;
/// The page `user.list` answers when the request names no `limit`, so that a client
/// written before paging gets the first page and a `next`, never an unbounded response.
pub const DEFAULT_PAGE: u32 = 100;

/// One page of an organization's members (DESIGN §5: lists are paged by an opaque cursor).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserListParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// At most this many members, 1 to 1,000; 100 when absent.
    // MAX_PAGE and DEFAULT_PAGE; a test holds the range to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
    /// The `next` of the previous page, as it was received: it names a position in the
    /// organization's list, nothing more, and means nothing to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Only members with this status (as of the daemon's now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MemberStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRemoveParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    pub email: String,
}

/// The outcome of an invitation (`user.invite`, and `org.create`'s first admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// When the membership ends by itself (`access_until`), RFC 3339 in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_until: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Member {
    pub email: String,
    pub role: Role,
    pub status: MemberStatus,
    /// When the invitation expires (or expired); null for active members.
    pub expires_at: Option<String>,
    /// The Unix user an active member acts as.
    #[serde(default)]
    pub unix_user: Option<String>,
    /// The block in force, if the member is blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<MemberBlock>,
    /// When the membership ends by itself, RFC 3339 in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_until: Option<String>,
    /// A role held until a time (`role grant --until`), and the role held after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elevation: Option<MemberElevation>,
    /// The member's uid no longer belongs to `unix_user` (the user was deleted, or the uid
    /// handed to another): nobody acts as the member until the account is bound again.
    /// Present only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub binding_stale: bool,
}

/// A block of a member (`user block`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemberBlock {
    /// The blocking admin's words.
    pub reason: String,
    /// Who blocked: an e-mail, or `uid N`.
    pub by: String,
    /// Since when, RFC 3339 in UTC.
    pub at: String,
    /// When the block lifts by itself; absent until someone unblocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// A role held until a time, then `fallback` again (`role grant --until`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemberElevation {
    /// RFC 3339 in UTC.
    pub until: String,
    pub fallback: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemberList {
    pub org: String,
    /// The cursor of the next page (its request's `after`); absent on the last page. A
    /// page filtered by status may hold fewer than `limit` members, even none, and still
    /// have a `next`: the daemon bounds the rows it reads for one page. Sent before the
    /// members, so that a client can ask for the next page before it reads this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Ordered by e-mail; one page of at most the request's `limit`.
    pub members: Vec<Member>,
    /// The Unix groups mapped to a role here and their users (`org map-group`), on the
    /// first page only (a request without `after`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupMembers>,
}

/// A [`MemberList`] read in place: its text borrowed from the response's line rather than
/// copied into a `String` per field, for a client that reads many pages (`user list`).
/// Decodes what [`MemberList`] decodes, and refuses what it refuses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub struct MemberPage<'a> {
    #[serde(borrow)]
    pub org: Text<'a>,
    #[serde(default, borrow)]
    pub next: Option<Text<'a>>,
    #[serde(borrow)]
    pub members: Vec<MemberView<'a>>,
    #[serde(default)]
    pub groups: Vec<GroupMembers>,
}

/// A [`Member`] read in place; serializes exactly as [`Member`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemberView<'a> {
    #[serde(borrow)]
    pub email: Text<'a>,
    pub role: Role,
    pub status: MemberStatus,
    #[serde(borrow)]
    pub expires_at: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub unix_user: Option<Text<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<MemberBlock>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub access_until: Option<Text<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elevation: Option<MemberElevation>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub binding_stale: bool,
}

/// A string of a response, borrowed from its line; copied only when JSON escapes in it had
/// to be undone. (A bare `Cow<str>` inside an `Option` would always be copied.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Removed {
    pub org: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBlockParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    pub email: String,
    /// Why, in the blocking admin's words: shown to the member and to every service that
    /// asks about them. 1 to 500 characters.
    pub reason: String,
    /// When the block lifts by itself: an RFC 3339 time, or a humantime duration from now.
    /// Absent: until `user unblock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UserBlocked {
    pub org: String,
    pub email: String,
    pub block: MemberBlock,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUnblockParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UserUnblocked {
    pub org: String,
    pub email: String,
    /// The block that was lifted.
    pub block: MemberBlock,
}

impl Params for UserBlockParams {
    fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }
}

impl Params for UserUnblockParams {
    fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn list() -> MemberList {
        let member = Member {
            email: "a@example.com".into(),
            role: Role::Viewer,
            status: MemberStatus::Invited,
            expires_at: Some("2026-05-01T12:00:00Z".into()),
            unix_user: None,
            blocked: None,
            access_until: None,
            elevation: None,
            binding_stale: Default::default(),
        };
        MemberList {
            org: "acme".into(),
            members: vec![
                member.clone(),
                Member {
                    email: "\"b\"\\é\u{1}@example.com".into(),
                    role: Role::Admin,
                    status: MemberStatus::Active,
                    expires_at: None,
                    unix_user: Some("b\tob".into()),
                    blocked: Some(MemberBlock {
                        reason: "laptop \"lost\"".into(),
                        by: "uid 0".into(),
                        at: "2026-05-01T12:00:00Z".into(),
                        until: None,
                    }),
                    access_until: Some("2026-06-01T00:00:00Z".into()),
                    elevation: Some(MemberElevation {
                        until: "2026-05-02T00:00:00Z".into(),
                        fallback: Role::Deployer,
                    }),
                    binding_stale: Default::default(),
                },
            ],
            next: Some("YkBleGFtcGxlLmNvbQ".into()),
            groups: Default::default(),
        }
    }

    #[test]
    fn a_member_page_reads_as_a_member_list_and_writes_its_members_alike() {
        let list = list();
        let line = serde_json::to_string(&list).unwrap();
        let page: MemberPage<'_> = serde_json::from_str(&line).unwrap();
        assert_eq!(page.org.as_str(), list.org);
        assert_eq!(page.next.as_ref().map(Text::as_str), list.next.as_deref());
        assert_eq!(page.members.len(), list.members.len());
        for (view, member) in page.members.iter().zip(&list.members) {
            let expected = serde_json::to_string(member).unwrap();
            assert_eq!(serde_json::to_string(view).unwrap(), expected);
        }
        // Text without escapes is borrowed from the line, not copied.
        assert!(matches!(page.members[0].email.0, Cow::Borrowed(_)));
        assert!(matches!(
            page.members[0].expires_at.as_ref().map(|t| &t.0),
            Some(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn a_member_page_refuses_what_a_member_list_refuses() {
        for line in [
            r#"{"members":[]}"#,
            r#"{"org":"acme","members":[{"role":"admin","status":"active"}]}"#,
            r#"{"org":"acme","members":[{"email":"a@b.c","role":"owner","status":"active","expires_at":null}]}"#,
        ] {
            assert!(serde_json::from_str::<MemberList>(line).is_err(), "{line}");
            assert!(
                serde_json::from_str::<MemberPage<'_>>(line).is_err(),
                "{line}"
            );
        }
        // Fields it does not know are passed over, as in a member list.
        let extra = r#"{"org":"acme","members":[],"extra":1}"#;
        assert!(serde_json::from_str::<MemberList>(extra).is_ok());
        assert!(serde_json::from_str::<MemberPage<'_>>(extra).is_ok());
        // Absent options are `None`, as in a member list.
        let short =
            r#"{"org":"acme","members":[{"email":"a@b.c","role":"admin","status":"active"}]}"#;
        let list: MemberList = serde_json::from_str(short).unwrap();
        let page: MemberPage<'_> = serde_json::from_str(short).unwrap();
        assert_eq!(page.members[0].unix_user, None);
        assert_eq!(page.members[0].expires_at, None);
        assert_eq!(list.members[0].expires_at, None);
        assert_eq!(page.next, None);
    }
}
