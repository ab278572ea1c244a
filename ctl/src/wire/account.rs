//! `account.*` and `whoami`: an account, its activation, and who the caller is.

use serde::{Deserialize, Serialize};

use super::{AccountStatus, MemberStatus, Params, Role};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateParams {
    /// The token, or the whole activation URL.
    pub token: String,
}

/// Activation names no organization: the token decides which one.
impl Params for ActivateParams {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activated {
    pub org: String,
    pub email: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub email: String,
    pub status: AccountStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgMembership {
    pub org: String,
    pub role: Role,
    pub status: MemberStatus,
}

/// Who the daemon thinks the caller is, from the socket's peer credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// uid 0 or the daemon's own uid: admin power in every organization.
    pub superuser: bool,
    pub account: Option<AccountInfo>,
    /// The organization commands act in when `--org` is not given, if one can be chosen.
    pub current_org: Option<String>,
    pub memberships: Vec<OrgMembership>,
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
