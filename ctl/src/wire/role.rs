//! Roles, their hierarchy and names, and `role.*`: granting one, listing them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Params, Permission};

/// A role in an organization. The order is the hierarchy: `Viewer < Readonly < Deployer <
/// Admin`, and each role holds every permission of those below it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Readonly,
    Deployer,
    Admin,
}

impl Role {
    /// Highest first, as people read the hierarchy.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Deployer, Role::Readonly, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Readonly => "readonly",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }

    /// What the role may do, in the words of the documentation page.
    pub fn description(self) -> &'static str {
        match self {
            Role::Admin => {
                "Full access: manage users, configure SSO, change organization settings, deploy and manage all projects"
            }
            Role::Deployer => {
                "Deploy and manage projects and services; cannot manage users, SSO, or organization settings"
            }
            Role::Readonly => {
                "View projects and deployments; cannot see sensitive variable values or make changes"
            }
            Role::Viewer => "Read-only access with a narrower scope than readonly",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roles = "roles are admin, deployer, readonly and viewer";
        let names = [Role::Admin, Role::Deployer, Role::Readonly, Role::Viewer].map(Role::as_str);
        match super::did_you_mean(&self.0, names) {
            Some(meant) => write!(
                f,
                "{:?} is not a role: did you mean {meant}? ({roles})",
                self.0
            ),
            None => write!(f, "{:?} is not a role: {roles}", self.0),
        }
    }
}

impl std::error::Error for UnknownRole {}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.chars().take(40).collect()))
    }
}

/// A role reads from its name, borrowed where the format lends it (a page of a thousand
/// members decodes a thousand roles), with [`UnknownRole`]'s sentence for any other string.
impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Role, D::Error> {
        super::deserialize_by_name(deserializer, "a role: admin, deployer, readonly or viewer")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleGrantParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    pub email: String,
    pub role: Role,
    /// Grant the role only until then (an RFC 3339 time, or a humantime duration from now);
    /// the member then holds the role held before. Only for a role above the member's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Granted {
    pub org: String,
    pub email: String,
    pub role: Role,
    pub previous_role: Role,
    /// When the role falls back to `previous_role`, RFC 3339 in UTC, for a grant `--until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RoleInfo {
    pub name: Role,
    pub description: String,
    /// Every permission the role holds (absent from daemons before permission keys).
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

impl RoleInfo {
    /// `role`, as DESIGN §3 describes it.
    pub fn of(role: Role) -> RoleInfo {
        RoleInfo {
            name: role,
            description: role.description().to_owned(),
            permissions: role.permissions(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RoleList {
    /// Highest first.
    pub roles: Vec<RoleInfo>,
}

impl Params for RoleGrantParams {
    fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }
}
