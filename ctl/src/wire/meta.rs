//! Methods about the daemon itself (`ping`) and params shared by methods that take none.

use serde::{Deserialize, Serialize};

use super::Params;

/// Params of a method that takes none: absent, `null` and `{}` are all accepted.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Pong {
    /// The daemon's version.
    pub version: String,
}

impl Params for NoParams {}
