//! The rules of DESIGN §3 and §4: who may do what to whom, checked against one view of
//! the store and applied in the same transaction.
//!
//! Every function takes the caller, `now` and a transaction; none reads a clock, a
//! socket or a global. Errors are [`RuleError`], which maps one-to-one onto the wire's
//! `data.kind`.
//!
//! - [`identity`]: `whoami`, and who a caller is in an organization.
//! - [`orgs`]: `org.create`, `org.list`, `org.use`.
//! - [`members`]: `user.list`, `user.remove`, `role.grant`.
//! - [`invitations`]: `user.invite`, `account.activate`, and the sweeper's expiry.
//! - [`lifecycle`]: blocks, access and roles that end by themselves, and the sweeper's
//!   recording of each end; [`terms`], what a membership's terms say.
//! - [`accounts`]: accounts and their bindings, for superusers (`account.*`).
//! - [`authz`]: `authz.check`, what the rules would decide for anyone, and why.

pub mod accounts;
pub mod audit;
pub mod authz;
mod error;
pub mod identity;
pub mod invitations;
pub mod lifecycle;
pub mod members;
pub mod orgs;
pub mod terms;

#[cfg(test)]
mod properties;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod upgrades;

use std::sync::Arc;
use std::time::Duration;

pub use error::{RuleError, Unbound};

use crate::store::{Changes, TokenHash, TokenState};

/// Who is calling, from the socket's peer credentials; never from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// uid 0 or the daemon's own uid: admin power in every organization.
    pub superuser: bool,
    /// The uid's user name as NSS gave it moments ago (cached a few seconds at most);
    /// `None` when the uid has no user. A binding holds only while this is its name.
    pub user: Option<Arc<str>>,
    /// The groups the uid's user is in as NSS lists them (cached a few seconds at most):
    /// what `org map-group` mappings match. Empty when the uid has no user.
    pub groups: Arc<[u32]>,
}

impl Caller {
    /// How the caller is named in `invited_by`, a block's author and a group's mapper when
    /// it has no account: `uid N` for a superuser (which `account bind` reads back as a
    /// superuser's vouching, `accounts::invited_by_superuser`), and `NAME (uid N)` for
    /// anyone else (a user acting through a Unix group), which never reads as one.
    fn label(&self) -> String {
        match (&self.user, self.superuser) {
            (_, true) | (None, false) => format!("uid {}", self.uid),
            (Some(name), false) => format!("{name} (uid {})", self.uid),
        }
    }

    /// The one gate of what only superusers may do: `action` (as "binding accounts") is
    /// refused to anyone else, with the same sentence wherever it is asked.
    pub fn require_superuser(&self, action: &'static str) -> Result<(), RuleError> {
        if self.superuser {
            Ok(())
        } else {
            Err(RuleError::SuperuserOnly { action })
        }
    }
}

/// Daemon settings the rules need.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `https://host`, without the trailing slash; activation URLs hang off it.
    pub public_url: String,
    /// Lifetime of an invitation when the inviter does not give one.
    pub invitation_ttl: Duration,
}

/// The longest an invitation may live.
pub const MAX_INVITATION_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Validates an organization name: `^[a-z][a-z0-9-]{0,62}$`.
pub fn valid_org_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= 63
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Parses an e-mail from a request, as a `bad_request` when it is not one.
fn parse_email(input: &str) -> Result<compartmentctl::email::Email, RuleError> {
    compartmentctl::email::Email::parse(input).map_err(|err| RuleError::BadRequest(err.to_string()))
}

/// Refuses to bind root, which acts as a superuser and holds no account.
fn refuse_root(user: &crate::store::UnixUser) -> Result<(), RuleError> {
    if user.uid == 0 {
        return Err(RuleError::BadRequest(format!(
            "{} is a superuser and needs no account",
            user.name
        )));
    }
    Ok(())
}

/// Marks a token unusable because its invitation was replaced or removed.
pub(crate) fn revoke_token(txn: &impl Changes, hash: &TokenHash) -> Result<(), RuleError> {
    set_token_state(txn, hash, TokenState::Revoked)
}

/// Sets a pending token's state; a spent one keeps its fate.
pub(crate) fn set_token_state(
    txn: &impl Changes,
    hash: &TokenHash,
    state: TokenState,
) -> Result<(), RuleError> {
    if let Some(mut record) = txn.token(hash)? {
        if record.state == TokenState::Pending {
            record.state = state;
            txn.put_token(hash, &record)?;
        }
    }
    Ok(())
}

/// An `invited_by` as answers show it: root by name, anyone else as recorded.
pub(crate) fn shown_inviter(invited_by: &str) -> &str {
    match invited_by {
        "uid 0" => "root",
        other => other,
    }
}
