//! The statuses of memberships and accounts, as results show them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A membership's status as `user list` shows it.
//
// The order of the variants is part of compartmentd's database (a record stores a
// variant's index): add variants at the end, never reorder them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// The account has been activated.
    Active,
    /// Waiting for activation.
    Invited,
    /// The invitation lapsed; the row stays until removed or invited again.
    Expired,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Active => "active",
            MemberStatus::Invited => "invited",
            MemberStatus::Expired => "expired",
        }
    }
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An account's status: `pending` until its first activation.
//
// The order of the variants is part of compartmentd's database (a record stores a
// variant's index): add variants at the end, never reorder them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Pending,
    Active,
}
