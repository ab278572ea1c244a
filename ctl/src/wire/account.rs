//! `account.*` and `whoami`: an account, its activation and binding, and who the caller is.

use serde::{Deserialize, Serialize};

use super::{AccountStatus, MemberBlock, MemberStatus, Params, Permission, Role};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateParams {
    /// The token, or the whole activation URL.
    pub token: String,
}

/// Activation names no organization: the token decides which one.
impl Params for ActivateParams {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Activated {
    pub org: String,
    pub email: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AccountInfo {
    pub email: String,
    pub status: AccountStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrgMembership {
    pub org: String,
    pub role: Role,
    pub status: MemberStatus,
    /// In `account.show`: false for an active membership pinned to a uid that no longer
    /// holds the account, through which nobody acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usable: Option<bool>,
    /// In `whoami`: the block in force, when the member is blocked there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<MemberBlock>,
    /// In `whoami`: the Unix group whose mapping gives the role, when it gives more than
    /// any membership (`org map-group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Who the daemon thinks the caller is, from the socket's peer credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WhoAmI {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// uid 0 or the daemon's own uid: admin power in every organization.
    pub superuser: bool,
    /// The caller's Unix user, as NSS names its uid.
    #[serde(default)]
    pub unix_user: Option<String>,
    /// Why the uid's binding no longer holds (its user was deleted or the uid reused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_problem: Option<String>,
    pub account: Option<AccountInfo>,
    /// The organization commands act in when `--org` is not given, if one can be chosen.
    pub current_org: Option<String>,
    pub memberships: Vec<OrgMembership>,
    /// What the caller may do in `current_org` (absent from daemons before permission
    /// keys, and empty when there is no current organization).
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

/// Params naming one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountParams {
    pub email: String,
}

impl Params for AccountParams {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountBindParams {
    pub email: String,
    /// The Unix user to bind the account to.
    pub unix_user: String,
    /// Carry every active membership over to the new uid, also those made through a binding
    /// no superuser vouched for (the old holder may have been someone else altogether).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub carry_all: bool,
}

impl Params for AccountBindParams {}

/// Params of `account.rename`: an account's e-mail changes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRenameParams {
    pub email: String,
    pub new_email: String,
}

impl Params for AccountRenameParams {}

/// An account whose e-mail changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AccountRenamed {
    /// Its new e-mail.
    pub email: String,
    /// Its former e-mail.
    pub previous: String,
    /// How many memberships (and invitations) moved with it.
    pub memberships: u64,
}

/// Params of `account.delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountDeleteParams {
    pub email: String,
    /// Delete it also while it is a member somewhere: its memberships are removed with it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

impl Params for AccountDeleteParams {}

/// An account deleted, and what went with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AccountDeleted {
    pub email: String,
    /// The organizations it was removed from (`force`), by name.
    pub removed_from: Vec<String>,
    /// The uid it was bound to, now unbound, and that uid's user name when bound.
    pub uid: Option<u32>,
    pub unix_user: Option<String>,
}

/// An account, its binding and its memberships (`account.show`, `account.list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AccountDetail {
    pub email: String,
    pub status: AccountStatus,
    /// The bound uid, and the user name it was bound as.
    pub uid: Option<u32>,
    pub unix_user: Option<String>,
    /// Whom the bound uid belongs to now (NSS); a name other than `unix_user`, or null,
    /// means the binding no longer holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid_now_belongs_to: Option<Option<String>>,
    /// RFC 3339, whole seconds, UTC.
    pub bound_at: Option<String>,
    /// Who made the binding: "a superuser", "organization acme", ….
    pub bound_through: Option<String>,
    pub memberships: Vec<OrgMembership>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AccountList {
    /// Ordered by e-mail.
    pub accounts: Vec<AccountDetail>,
}

/// A binding made or undone by a superuser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AccountBinding {
    pub email: String,
    pub uid: u32,
    pub unix_user: Option<String>,
    /// `account.bind`: the active memberships moved to the new uid, by organization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried: Vec<BoundMembership>,
    /// `account.bind`: the active memberships left pinned to the uid that held them, as no
    /// superuser vouched for the binding they were made through (`carry_all` moves them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<BoundMembership>,
}

/// An organization's membership that `account.bind` carried over or left behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BoundMembership {
    pub org: String,
    pub role: Role,
}

/// Pulls the token out of an activation URL (`…/activate?token=…`), or returns the input
/// when it is a bare token.
pub fn token_from_url_or_token(input: &str) -> &str {
    let input = input.trim();
    match input.split_once("token=") {
        Some((_, rest)) => rest.split(['&', '#']).next().unwrap_or(rest),
        None => input,
    }
}
