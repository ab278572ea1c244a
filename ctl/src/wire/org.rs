//! `org.*`: creating organizations, listing them, choosing the current one, deleting one.

use serde::{Deserialize, Serialize};

use super::{Invitation, Params, Role};

/// Params naming the organization to act in; without `org` the daemon resolves the
/// caller's current organization (DESIGN §2).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgCreateParams {
    pub name: String,
    /// E-mail of the organization's first admin.
    pub admin: String,
    /// The only Unix user who may redeem the first admin's activation URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_unix_user: Option<String>,
    /// Lifetime of the first admin's activation URL in humantime form, as `user.invite`'s;
    /// the daemon's `--invitation-ttl` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgUseParams {
    pub name: String,
}

/// Params of `org.delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgDeleteParams {
    pub name: String,
    /// Delete it with its members; without, an organization with members (other than
    /// pending or expired invitations) is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// An organization deleted, and who went with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrgDeleted {
    pub org: String,
    /// The members removed with it (`force`), by e-mail.
    pub removed: Vec<String>,
    /// The invitations revoked with it (pending or expired), by e-mail.
    pub invitations: Vec<String>,
}

/// Maps a Unix group to a role in an organization: its users act there with that role,
/// without an invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgMapGroupParams {
    /// The organization.
    pub name: String,
    /// The Unix group, by name (as `getent group` shows it).
    pub group: String,
    pub role: Role,
}

/// A Unix group mapped, or its mapping changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GroupMapped {
    pub org: String,
    pub group: String,
    pub gid: u32,
    pub role: Role,
    /// The role it was mapped to before, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_role: Option<Role>,
}

/// Ends a Unix group's mapping in an organization.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgUnmapGroupParams {
    /// The organization.
    pub name: String,
    /// The Unix group, by the name it was mapped with, or by its gid.
    pub group: String,
}

/// A Unix group's mapping ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GroupUnmapped {
    pub org: String,
    pub group: String,
    pub gid: u32,
    /// The role it was mapped to.
    pub role: Role,
}

/// A Unix group mapped to a role, and its users as NSS lists them (`user.list`'s first
/// page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GroupMembers {
    pub group: String,
    pub gid: u32,
    pub role: Role,
    /// The users the group lists as members, by name (its members by primary group are not
    /// listed by NSS, and so not here).
    pub users: Vec<String>,
}

impl Params for OrgMapGroupParams {
    fn org(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Params for OrgUnmapGroupParams {
    fn org(&self) -> Option<&str> {
        Some(&self.name)
    }
}

/// Renames an organization: its memberships, invitations, feed and audit log follow.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgRenameParams {
    pub name: String,
    pub new_name: String,
}

/// An organization renamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrgRenamed {
    /// Its new name.
    pub org: String,
    /// Its former name.
    pub previous: String,
    /// How many memberships (members and invitations) moved with it.
    pub memberships: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrgCreated {
    pub org: String,
    pub admin: Invitation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrgEntry {
    pub name: String,
    /// The caller's role there; null for a superuser who is not a member.
    pub role: Option<Role>,
    pub current: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrgList {
    pub orgs: Vec<OrgEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrgUsed {
    pub org: String,
}

impl Params for OrgParams {
    fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }
}

impl Params for OrgCreateParams {
    fn org(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Params for OrgDeleteParams {
    fn org(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Params for OrgRenameParams {
    fn org(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Params for OrgUseParams {
    fn org(&self) -> Option<&str> {
        Some(&self.name)
    }
}
