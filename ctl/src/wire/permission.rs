//! Permissions: what a role lets its holder do, named by keys in the product's own
//! vocabulary (`organization.user.invite`, `deployment.create`, …).
//!
//! [`TABLE`] is DESIGN §3's table as data, and the only place it is written: the daemon's
//! rules ask it ([`Role::permits`]), `role list`, `role show`, `auth can` and the man page
//! print it, and a test holds it against DESIGN §3 row by row. Roles are a total order and
//! each holds every permission of those below it, so a row is a set of permissions and
//! the lowest role that holds them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Role;

/// Declares the permissions once: variant, key, what it lets one do (for `role show`), and
/// the gerund a refusal names it by ("inviting users to acme needs the admin role").
macro_rules! permissions {
    ($($variant:ident = $key:literal, $what:literal, $doing:literal;)*) => {
        /// One thing a member may do in an organization. It reads and writes as its key.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Permission {
            $(
                #[doc = $what]
                $variant,
            )*
        }

        impl Permission {
            /// Every permission, in [`TABLE`]'s order.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant),*];

            /// Its key, as the wire, the CLI and the documentation name it.
            pub fn key(self) -> &'static str {
                match self {
                    $(Permission::$variant => $key,)*
                }
            }

            /// What it lets one do, in a few words.
            pub fn what(self) -> &'static str {
                match self {
                    $(Permission::$variant => $what,)*
                }
            }

            /// What a refusal calls the act, followed by the organization's name.
            pub fn doing(self) -> &'static str {
                match self {
                    $(Permission::$variant => $doing,)*
                }
            }
        }
    };
}

permissions! {
    OrganizationRead = "organization.read", "see the organization", "seeing";
    ProjectRead = "project.read", "see its projects", "seeing the projects of";
    DeploymentRead = "deployment.read", "see its deployments", "seeing the deployments of";
    OrganizationMemberList = "organization.member.list", "list the members (user list)",
        "listing the members of";
    OrganizationSettingsRead = "organization.settings.read", "read the organization's settings",
        "reading the settings of";
    VariableMetadataRead = "variable.metadata.read",
        "read variables, sensitive values masked", "reading the variables of";
    VariableValueRead = "variable.value.read", "read sensitive variable values",
        "reading sensitive values in";
    DeploymentCreate = "deployment.create", "deploy", "deploying in";
    ProjectManage = "project.manage", "create, change and delete projects",
        "managing the projects of";
    ServiceManage = "service.manage", "create, change and delete services",
        "managing the services of";
    VariableWrite = "variable.write", "set and delete variables", "writing the variables of";
    OrganizationRoleGrant = "organization.role.grant",
        "grant roles up to one's own (role grant)", "granting roles in";
    OrganizationUserInvite = "organization.user.invite", "invite users (user invite)",
        "inviting users to";
    OrganizationUserRemove = "organization.user.remove",
        "remove users and revoke invitations (user remove)", "removing users from";
    OrganizationUserBlock = "organization.user.block", "block and unblock users (user block)",
        "blocking users in";
    OrganizationAuthManage = "organization.auth.manage", "configure SSO providers",
        "configuring SSO for";
    OrganizationSettingsManage = "organization.settings.manage",
        "change the organization's settings", "changing the settings of";
    OrganizationAuditRead = "organization.audit.read", "read the audit log",
        "reading the audit log of";
}

/// One row of DESIGN §3's table: what it says, the lowest role that may, and the
/// permissions that stand for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// The row as DESIGN §3 words it.
    pub what: &'static str,
    /// The lowest role with these permissions; every role above has them too.
    pub lowest: Role,
    pub permissions: &'static [Permission],
}

/// DESIGN §3, lowest role first. Every permission is in exactly one row (a test holds it).
pub const TABLE: &[Row] = {
    use Permission::*;
    &[
        Row {
            what: "see the organization, projects and deployments",
            lowest: Role::Viewer,
            permissions: &[OrganizationRead, ProjectRead, DeploymentRead],
        },
        Row {
            what: "list members (`user list`)",
            lowest: Role::Readonly,
            permissions: &[OrganizationMemberList],
        },
        Row {
            what: "read settings and variables, sensitive values masked",
            lowest: Role::Readonly,
            permissions: &[OrganizationSettingsRead, VariableMetadataRead],
        },
        Row {
            what: "read sensitive values",
            lowest: Role::Deployer,
            permissions: &[VariableValueRead],
        },
        Row {
            what: "deploy, manage projects, services, variables",
            lowest: Role::Deployer,
            permissions: &[
                DeploymentCreate,
                ProjectManage,
                ServiceManage,
                VariableWrite,
            ],
        },
        Row {
            what: "grant roles (`role grant`), capped as below",
            lowest: Role::Deployer,
            permissions: &[OrganizationRoleGrant],
        },
        Row {
            what: "invite and remove users",
            lowest: Role::Admin,
            permissions: &[
                OrganizationUserInvite,
                OrganizationUserRemove,
                OrganizationUserBlock,
            ],
        },
        Row {
            what: "SSO providers, organization settings, audit log",
            lowest: Role::Admin,
            permissions: &[
                OrganizationAuthManage,
                OrganizationSettingsManage,
                OrganizationAuditRead,
            ],
        },
    ]
};

impl Permission {
    /// The lowest role that holds it. A permission missing from [`TABLE`] (which a test
    /// rules out) would be held by admins only: the table can only fail closed.
    pub fn lowest_role(self) -> Role {
        TABLE
            .iter()
            .find(|row| row.permissions.contains(&self))
            .map_or(Role::Admin, |row| row.lowest)
    }
}

impl Role {
    /// Whether this role holds `permission`.
    pub fn permits(self, permission: Permission) -> bool {
        self >= permission.lowest_role()
    }

    /// Every permission this role holds, in [`TABLE`]'s order.
    pub fn permissions(self) -> Vec<Permission> {
        Permission::ALL
            .iter()
            .copied()
            .filter(|permission| self.permits(*permission))
            .collect()
    }
}

/// DESIGN §3's table as Markdown, derived from [`TABLE`]: the documentation's copy, and
/// what the test compares with DESIGN §3.
pub fn markdown_table() -> String {
    let mut out = String::from("| permission | viewer | readonly | deployer | admin |\n");
    out.push_str("|---|---|---|---|---|\n");
    for row in TABLE {
        out.push_str("| ");
        out.push_str(row.what);
        for role in [Role::Viewer, Role::Readonly, Role::Deployer, Role::Admin] {
            out.push_str(if role >= row.lowest {
                " | yes"
            } else {
                " | –"
            });
        }
        out.push_str(" |\n");
    }
    out
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A permission key that names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPermission(pub String);

impl fmt::Display for UnknownPermission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = "compartment role show admin lists them all";
        match super::did_you_mean(&self.0, Permission::ALL.iter().map(|p| p.key())) {
            Some(meant) => write!(
                f,
                "{:?} is not a permission: did you mean {meant}? ({all})",
                self.0
            ),
            None => write!(f, "{:?} is not a permission: {all}", self.0),
        }
    }
}

impl std::error::Error for UnknownPermission {}

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(key: &str) -> Result<Permission, UnknownPermission> {
        Permission::ALL
            .iter()
            .copied()
            .find(|permission| permission.key() == key)
            .ok_or_else(|| UnknownPermission(key.chars().take(60).collect()))
    }
}

impl Serialize for Permission {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.key())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Permission, D::Error> {
        super::deserialize_by_name(deserializer, "a permission key, such as deployment.create")
    }
}

/// A permission is a string, one of the keys.
impl schemars::JsonSchema for Permission {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Permission".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let keys: Vec<&str> = Permission::ALL.iter().map(|p| p.key()).collect();
        schemars::json_schema!({
            "type": "string",
            "enum": keys,
            "description": "A permission key (DESIGN §3): what a role lets its holder do in an organization.",
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// DESIGN §3's table, copied from DESIGN.md as it stands: the derived table must say
    /// exactly this, row by row.
    const DESIGN_3: &str = "\
| permission | viewer | readonly | deployer | admin |
|---|---|---|---|---|
| see the organization, projects and deployments | yes | yes | yes | yes |
| list members (`user list`) | – | yes | yes | yes |
| read settings and variables, sensitive values masked | – | yes | yes | yes |
| read sensitive values | – | – | yes | yes |
| deploy, manage projects, services, variables | – | – | yes | yes |
| grant roles (`role grant`), capped as below | – | – | yes | yes |
| invite and remove users | – | – | – | yes |
| SSO providers, organization settings, audit log | – | – | – | yes |
";

    #[test]
    fn the_table_is_design_3_row_by_row() {
        let derived = markdown_table();
        for (n, (want, got)) in DESIGN_3.lines().zip(derived.lines()).enumerate() {
            assert_eq!(got, want, "row {n}");
        }
        assert_eq!(derived, DESIGN_3);
    }

    #[test]
    fn the_authority_guide_shows_the_derived_table() {
        let readme = include_str!("../../../docs/authority.md");
        assert!(
            readme.contains(&markdown_table()),
            "docs/authority.md's \"Asking what a user may do\" must show markdown_table()"
        );
    }

    #[test]
    fn every_permission_is_in_exactly_one_row() {
        for permission in Permission::ALL {
            let rows = TABLE
                .iter()
                .filter(|row| row.permissions.contains(permission))
                .count();
            assert_eq!(rows, 1, "{permission}");
        }
        let listed: Vec<Permission> = TABLE
            .iter()
            .flat_map(|row| row.permissions)
            .copied()
            .collect();
        assert_eq!(listed, Permission::ALL, "TABLE lists them in ALL's order");
    }

    #[test]
    fn the_membership_rules_need_what_design_3_says() {
        use Permission::*;
        assert_eq!(OrganizationMemberList.lowest_role(), Role::Readonly);
        assert_eq!(OrganizationRoleGrant.lowest_role(), Role::Deployer);
        assert_eq!(OrganizationUserInvite.lowest_role(), Role::Admin);
        assert_eq!(OrganizationUserRemove.lowest_role(), Role::Admin);
        assert!(Role::Deployer.permits(VariableValueRead));
        assert!(!Role::Readonly.permits(VariableValueRead));
        assert!(Role::Viewer.permits(DeploymentRead));
        assert!(!Role::Viewer.permits(OrganizationMemberList));
    }

    #[test]
    fn each_role_holds_what_the_roles_below_hold() {
        let held = |role: Role| role.permissions();
        assert_eq!(held(Role::Viewer).len(), 3);
        assert_eq!(held(Role::Readonly).len(), 6);
        assert_eq!(held(Role::Deployer).len(), 12);
        assert_eq!(held(Role::Admin), Permission::ALL);
        for pair in Role::ALL.windows(2) {
            let (higher, lower) = (held(pair[0]), held(pair[1]));
            assert!(lower.iter().all(|p| higher.contains(p)), "{}", pair[0]);
        }
    }

    #[test]
    fn keys_read_and_write_as_themselves() {
        for permission in Permission::ALL {
            assert_eq!(permission.key().parse::<Permission>().unwrap(), *permission);
            let json = serde_json::to_string(permission).unwrap();
            assert_eq!(json, format!("\"{}\"", permission.key()));
            assert_eq!(
                serde_json::from_str::<Permission>(&json).unwrap(),
                *permission
            );
        }
        let err = "deployment.destroy".parse::<Permission>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"deployment.destroy\" is not a permission: compartment role show admin lists them all"
        );
        let err = serde_json::from_str::<Permission>("\"root\"").unwrap_err();
        assert!(
            err.to_string().starts_with("\"root\" is not a permission"),
            "{err}"
        );
    }
}
