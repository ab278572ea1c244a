//! The rules' refusals, one variant per reason, each with one sentence for the user, a
//! hint where there is something to do, and its wire kind.
//!
//! `Display` is what the daemon logs: the user's sentence for a refusal, the technical
//! cause for a failure inside (store, writer, bug). The sentence a client sees is built
//! with the reply, by [`RuleError::user_message`].

use std::fmt;

use compartmentctl::wire::{ErrorKind, Permission, Role, RpcError};

use crate::clock::rfc3339;
use crate::limits::OverRate;
use crate::store::{Millis, StoreError};
use crate::writer::WriteError;

/// A change the last-admin rule refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminLoss {
    Removal,
    Demotion,
    Block,
}

/// Why a uid acts without an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unbound {
    /// It was never bound, or a superuser unbound it.
    NoBinding,
    /// It is bound, but no longer resolves to the user it was bound as: the user was
    /// deleted, or the uid now belongs to someone else. The binding holds for nobody until
    /// a superuser rebinds or unbinds it.
    UserChanged {
        recorded: Option<String>,
        now: Option<String>,
    },
}

impl fmt::Display for Unbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unbound::NoBinding => f.write_str("it is not bound to an account"),
            Unbound::UserChanged { recorded, now } => {
                let was = match recorded {
                    Some(name) => format!("Unix user {name}"),
                    None => "a Unix user that no longer existed at the upgrade".into(),
                };
                let is = match now {
                    Some(name) => format!("it now belongs to {name}"),
                    None => "it has no user now".into(),
                };
                write!(f, "its binding was made for {was}, and {is}")
            }
        }
    }
}

/// What a permission needs, in the words refusals and answers use: "the admin role", "the
/// deployer role or above".
pub(crate) fn needed(role: Role) -> Needed {
    Needed(role)
}

/// [`needed`]'s words, written where they are shown.
pub(crate) struct Needed(Role);

impl Needed {
    /// Writes the words into `out`, piece by piece (no `format_args!` between).
    pub(crate) fn put(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match self.0 {
            Role::Admin => out.write_str("the admin role"),
            other => {
                out.write_str("the ")?;
                out.write_str(other.as_str())?;
                out.write_str(" role or above")
            }
        }
    }
}

impl fmt::Display for Needed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.put(f)
    }
}

#[derive(Debug)]
pub enum RuleError {
    BadRequest(String),
    Unauthenticated {
        uid: u32,
        why: Unbound,
    },
    /// The activation URL was issued for another Unix user to redeem.
    NotTheRedeemer,
    /// No Unix user of that name may hold an account here.
    NoSuchUnixUser(String),
    /// No Unix group of that name (to map), or no mapping of it (to unmap).
    NoSuchUnixGroup(String),
    NotMapped {
        org: String,
        group: String,
    },
    /// No account has this e-mail.
    AccountNotFound(String),
    /// An account already has this e-mail.
    AccountExists(String),
    /// Deleting the account without `force` while it is a member of these organizations.
    AccountInUse {
        email: String,
        orgs: Vec<String>,
    },
    /// Deleting an organization without `force` while it has these members.
    OrgInUse {
        org: String,
        members: Vec<String>,
    },
    /// The caller's role is below what the action needs.
    RoleTooLow {
        permission: Permission,
        org: String,
        own: Role,
    },
    /// Asking what another user may do, without being a superuser or in the service group.
    NotAService,
    /// Only a superuser may do this.
    SuperuserOnly {
        action: &'static str,
    },
    /// Activation would bind a uid or an account that is already bound elsewhere.
    BindingConflict(String),
    /// Missing, or not visible to the caller: the same answer, so existence does not leak.
    OrgNotFound(String),
    NotMember {
        org: String,
        email: String,
    },
    OrgExists(String),
    AlreadyMember {
        org: String,
        email: String,
    },
    AlreadyInvited {
        org: String,
        email: String,
    },
    LastAdmin {
        org: String,
        change: AdminLoss,
    },
    /// The caller is blocked in the organization.
    Blocked {
        org: String,
        reason: String,
        until: Option<Millis>,
    },
    /// The caller's access to the organization ended (`--access-until`).
    AccessEnded {
        org: String,
        at: Millis,
    },
    /// Subscribing after a change older than what the feed keeps.
    FeedPruned {
        after: u64,
        first: u64,
    },
    GrantAboveOwn {
        org: String,
        role: Role,
        own: Role,
    },
    TargetAboveOwn {
        org: String,
        email: String,
        target: Role,
        own: Role,
    },
    InvalidToken,
    TokenRevoked,
    TokenUsed,
    TokenExpired {
        at: Millis,
    },
    OrgRequired {
        orgs: Vec<String>,
    },
    /// Over a limit of what one user, or everyone together, may have the daemon do at once;
    /// the hint says what to do instead.
    Busy {
        reason: String,
        hint: &'static str,
    },
    /// The caller asked for changes faster than `--max-changes-per-sec` allows.
    TooManyChanges {
        uid: u32,
        over: OverRate,
    },
    /// The state directory's filesystem has less free space than `--min-free-space`, which
    /// is kept for superusers.
    DiskNearlyFull {
        floor: u64,
    },
    /// The writer gave no answer of the change's own: it has stopped, or the change
    /// panicked.
    Write(WriteError),
    /// A bug, already logged: the client learns only that it happened.
    Internal(&'static str),
    Store(StoreError),
}

impl From<StoreError> for RuleError {
    fn from(err: StoreError) -> RuleError {
        RuleError::Store(err)
    }
}

impl crate::writer::ChangeError for RuleError {
    fn store_error(&self) -> Option<&StoreError> {
        match self {
            RuleError::Store(err) => Some(err),
            _ => None,
        }
    }
}

impl From<WriteError> for RuleError {
    fn from(err: WriteError) -> RuleError {
        RuleError::Write(err)
    }
}

impl RuleError {
    /// The organization the refusal is about, when it names one (the caller's current
    /// organization, resolved by the rules, when the request named none).
    pub fn org(&self) -> Option<&str> {
        match self {
            RuleError::RoleTooLow { org, .. }
            | RuleError::NotMember { org, .. }
            | RuleError::AlreadyMember { org, .. }
            | RuleError::AlreadyInvited { org, .. }
            | RuleError::LastAdmin { org, .. }
            | RuleError::GrantAboveOwn { org, .. }
            | RuleError::TargetAboveOwn { org, .. }
            | RuleError::OrgInUse { org, .. }
            | RuleError::Blocked { org, .. }
            | RuleError::NotMapped { org, .. }
            | RuleError::AccessEnded { org, .. } => Some(org),
            RuleError::OrgNotFound(org) | RuleError::OrgExists(org) => Some(org),
            _ => None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            RuleError::BadRequest(_) => ErrorKind::BadRequest,
            RuleError::Unauthenticated { .. } => ErrorKind::Unauthenticated,
            RuleError::NoSuchUnixUser(_)
            | RuleError::NoSuchUnixGroup(_)
            | RuleError::NotMapped { .. }
            | RuleError::AccountNotFound(_) => ErrorKind::NotFound,
            RuleError::NotTheRedeemer
            | RuleError::RoleTooLow { .. }
            | RuleError::SuperuserOnly { .. }
            | RuleError::NotAService
            | RuleError::BindingConflict(_)
            | RuleError::AccessEnded { .. } => ErrorKind::Forbidden,
            RuleError::Blocked { .. } => ErrorKind::Blocked,
            RuleError::OrgNotFound(_) | RuleError::NotMember { .. } => ErrorKind::NotFound,
            RuleError::OrgExists(_) | RuleError::AccountExists(_) => ErrorKind::AlreadyExists,
            RuleError::AccountInUse { .. } | RuleError::OrgInUse { .. } => ErrorKind::NotEmpty,
            RuleError::AlreadyMember { .. } => ErrorKind::AlreadyMember,
            RuleError::AlreadyInvited { .. } => ErrorKind::AlreadyInvited,
            RuleError::LastAdmin { .. } => ErrorKind::LastAdmin,
            RuleError::GrantAboveOwn { .. } | RuleError::TargetAboveOwn { .. } => {
                ErrorKind::RoleAboveOwn
            }
            RuleError::InvalidToken | RuleError::TokenRevoked => ErrorKind::InvalidToken,
            RuleError::TokenUsed => ErrorKind::TokenUsed,
            RuleError::TokenExpired { .. } => ErrorKind::TokenExpired,
            RuleError::OrgRequired { .. } => ErrorKind::OrgRequired,
            RuleError::FeedPruned { .. } => ErrorKind::BadRequest,
            RuleError::Busy { .. } => ErrorKind::Busy,
            RuleError::TooManyChanges { .. } => ErrorKind::Busy,
            RuleError::DiskNearlyFull { .. } => ErrorKind::Unavailable,
            RuleError::Write(WriteError::ShuttingDown) => ErrorKind::Unavailable,
            RuleError::Write(WriteError::Panicked) => ErrorKind::Internal,
            RuleError::Store(err) if err.is_storage_full() => ErrorKind::Unavailable,
            RuleError::Store(StoreError::Reopening) => ErrorKind::Unavailable,
            RuleError::Store(err) if err.is_unreachable() => ErrorKind::Unavailable,
            RuleError::Store(err) if err.is_retryable() => ErrorKind::Busy,
            RuleError::Store(_) | RuleError::Internal(_) => ErrorKind::Internal,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            RuleError::Unauthenticated {
                why: Unbound::NoBinding,
                ..
            } => {
                "activate your invitation first: run compartment activate and paste its URL".into()
            }
            RuleError::Unauthenticated { .. } => {
                "ask a superuser to rebind or unbind it (compartment account bind|unbind)".into()
            }
            RuleError::NotTheRedeemer => {
                "run compartment activate as the Unix user the invitation names".into()
            }
            RuleError::NoSuchUnixUser(_) => {
                "name an existing user (getent passwd NAME shows it)".into()
            }
            RuleError::NoSuchUnixGroup(_) => {
                "name an existing group (getent group NAME shows it)".into()
            }
            RuleError::NotMapped { org, .. } => {
                format!("compartment user list --org {org} shows its groups")
            }
            RuleError::AccountNotFound(_) => "compartment account list shows the accounts".into(),
            RuleError::OrgInUse { org, .. } => format!(
                "remove them first, or pass --force to delete it with its members (compartment org delete --force {org})"
            ),
            RuleError::AccountInUse { email, .. } => format!(
                "remove it from them first, or pass --force to delete it with its memberships (compartment account delete --force {email})"
            ),
            RuleError::RoleTooLow {
                org, permission, ..
            } => {
                format!("ask an admin of {org} for the {} role", permission.lowest_role())
            }
            RuleError::SuperuserOnly { .. } => "run it as root".into(),
            RuleError::NotAService => {
                "ask about yourself (without --user or --email), or have a superuser add your user to the daemon's --service-group".into()
            }
            RuleError::OrgNotFound(_) => "compartment org list shows your organizations".into(),
            RuleError::NotMember { .. } => "compartment user list shows the members".into(),
            RuleError::AlreadyInvited { .. } => {
                "pass --resend to issue a new activation URL and revoke the old one".into()
            }
            RuleError::AlreadyMember { email, .. } => {
                format!("to change their role: compartment role grant {email} ROLE")
            }
            RuleError::LastAdmin { .. } => "grant admin to another member first".into(),
            RuleError::Blocked { org, .. } => {
                format!("ask an admin of {org} to unblock you (compartment user unblock)")
            }
            RuleError::AccessEnded { org, .. } => {
                format!("ask an admin of {org} to invite you again")
            }
            RuleError::FeedPruned { first, .. } => format!(
                "read the state afresh (user list), then watch without --after, or with --after {} or later",
                first - 1
            ),
            RuleError::GrantAboveOwn { org, role, .. } => {
                format!("ask an admin of {org} to grant {role}")
            }
            RuleError::TargetAboveOwn { .. } => {
                "only a member with at least their role can change them".into()
            }
            RuleError::InvalidToken => "check that the URL was copied whole".into(),
            RuleError::TokenRevoked | RuleError::TokenUsed | RuleError::TokenExpired { .. } => {
                "ask an admin to invite you again".into()
            }
            RuleError::OrgRequired { orgs } if orgs.is_empty() => {
                "you are not a member of any organization yet".into()
            }
            RuleError::OrgRequired { orgs } => format!(
                "pass --org, set COMPARTMENT_ORG, or run compartment org use <name>; yours: {}",
                orgs.join(", ")
            ),
            RuleError::Store(err) if err.is_storage_full() => {
                "free space on the daemon's state directory, then try again".into()
            }
            RuleError::Store(err) if err.is_unreachable() => {
                "the daemon reconnects by itself once PostgreSQL is back; its log says why it cannot reach it".into()
            }
            RuleError::Store(err) if err.is_retryable() => {
                "nothing was changed; try again".into()
            }
            RuleError::Busy { hint, .. } => (*hint).into(),
            RuleError::TooManyChanges { over, .. } => {
                format!("slow down: retry in {} ms", over.retry_in.as_millis())
            }
            RuleError::DiskNearlyFull { .. } => {
                "a superuser must free space on the filesystem of the daemon's state directory; until then only superusers may make changes".into()
            }
            _ => return None,
        })
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::BadRequest(message) | RuleError::BindingConflict(message) => {
                f.write_str(message)
            }
            RuleError::Busy { reason, .. } => f.write_str(reason),
            RuleError::FeedPruned { after, first } => write!(
                f,
                "the changes after {after} up to {} are no longer kept (the daemon's --audit-retention)",
                first - 1
            ),
            RuleError::Unauthenticated {
                uid,
                why: Unbound::NoBinding,
            } => write!(f, "uid {uid} is not bound to an account"),
            RuleError::Unauthenticated { uid, why } => {
                write!(f, "uid {uid} acts without an account: {why}")
            }
            RuleError::NotTheRedeemer => {
                f.write_str("this activation URL was issued for another Unix user to redeem")
            }
            RuleError::NoSuchUnixUser(name) => {
                let shown: String = name.chars().take(64).collect();
                write!(
                    f,
                    "there is no Unix user {shown:?} that may hold an account"
                )
            }
            RuleError::AccountNotFound(email) => write!(f, "no account {email}"),
            RuleError::NoSuchUnixGroup(name) => {
                let shown: String = name.chars().take(64).collect();
                write!(f, "there is no Unix group {shown:?}")
            }
            RuleError::NotMapped { org, group } => {
                let shown: String = group.chars().take(64).collect();
                write!(f, "no Unix group {shown:?} is mapped in {org}")
            }
            RuleError::AccountExists(email) => write!(f, "an account {email} already exists"),
            RuleError::AccountInUse { email, orgs } => write!(
                f,
                "{email} is a member of {}; nothing was deleted",
                orgs.join(", ")
            ),
            RuleError::OrgInUse { org, members } => {
                /// The members a refusal names; the rest are counted.
                const NAMED: usize = 5;
                let named = members.iter().take(NAMED).cloned().collect::<Vec<_>>().join(", ");
                let more = match members.len().saturating_sub(NAMED) {
                    0 => String::new(),
                    more => format!(" and {more} more"),
                };
                let count = members.len();
                let noun = if count == 1 { "member" } else { "members" };
                write!(
                    f,
                    "{org} has {count} {noun} ({named}{more}); nothing was deleted"
                )
            }
            RuleError::RoleTooLow {
                permission,
                org,
                own,
            } => {
                let (action, needs) = (permission.doing(), needed(permission.lowest_role()));
                write!(f, "{action} {org} needs {needs}; yours is {own}")
            }
            RuleError::NotAService => f.write_str(
                "asking what another user may do is for superusers and the daemon's service group",
            ),
            RuleError::SuperuserOnly { action } => {
                write!(
                    f,
                    "{action} is for superusers (root or the daemon's own user)"
                )
            }
            RuleError::OrgNotFound(org) => write!(f, "organization {org} not found"),
            RuleError::NotMember { org, email } => write!(f, "{email} is not a member of {org}"),
            RuleError::OrgExists(org) => write!(f, "organization {org} already exists"),
            RuleError::AlreadyMember { org, email } => {
                write!(f, "{email} is already a member of {org}")
            }
            RuleError::AlreadyInvited { org, email } => {
                write!(f, "{email} is already invited to {org}")
            }
            RuleError::LastAdmin { org, change } => match change {
                AdminLoss::Removal => write!(f, "cannot remove the last admin of {org}"),
                AdminLoss::Demotion => write!(f, "cannot demote the last admin of {org}"),
                AdminLoss::Block => write!(
                    f,
                    "cannot block the last admin of {org}: no admin could act there"
                ),
            },
            RuleError::Blocked { org, reason, until } => {
                write!(f, "you are blocked in {org}")?;
                if let Some(until) = until {
                    write!(f, " until {}", rfc3339(*until))?;
                }
                write!(f, ": {reason}")
            }
            RuleError::AccessEnded { org, at } => {
                write!(f, "your access to {org} ended at {}", rfc3339(*at))
            }
            RuleError::GrantAboveOwn { org, role, own } => write!(
                f,
                "you cannot grant {role}: your own role in {org}, {own}, caps what you can grant"
            ),
            RuleError::TargetAboveOwn {
                email, target, own, ..
            } => write!(
                f,
                "you cannot change {email}, whose role {target} is above your own ({own})"
            ),
            RuleError::InvalidToken => f.write_str("this activation URL is not valid"),
            RuleError::TokenRevoked => {
                f.write_str("this activation URL has been replaced or revoked")
            }
            RuleError::TokenUsed => f.write_str("this activation URL has already been used"),
            RuleError::TokenExpired { at } => {
                write!(f, "this activation URL expired at {}", rfc3339(*at))
            }
            RuleError::OrgRequired { .. } => {
                f.write_str("no organization given, and none could be chosen")
            }
            RuleError::TooManyChanges { uid, over } => write!(
                f,
                "uid {uid} is making changes faster than the {} a second (in bursts of up to {}) one user may",
                over.per_sec, over.burst
            ),
            RuleError::DiskNearlyFull { floor } => write!(
                f,
                "the disk of the daemon's state directory is nearly full: less than the {} kept for repairs is free",
                bytesize::ByteSize(*floor)
            ),
            // Failures inside: the technical cause, for the log.
            RuleError::Write(err) => write!(f, "{err}"),
            RuleError::Store(err) => write!(f, "{err}"),
            RuleError::Internal(what) => f.write_str(what),
        }
    }
}

impl RuleError {
    /// The one sentence the client sees: a refusal's own sentence, and for a failure
    /// inside what the client can do about it, never its technical cause (that is logged).
    pub fn user_message(&self) -> String {
        match self {
            RuleError::Write(WriteError::ShuttingDown) => {
                "compartmentd is shutting down; try again in a moment".into()
            }
            RuleError::Store(err) if err.is_storage_full() => {
                "the change was not saved: the daemon's disk is full".into()
            }
            RuleError::Store(StoreError::Reopening) => {
                "the database is being reopened after a failed write; try again".into()
            }
            RuleError::Store(err) if err.is_unreachable() => {
                "the database cannot be reached; try again in a moment".into()
            }
            RuleError::Store(err) if err.is_retryable() => {
                "the change kept conflicting with other daemons' changes to the same database"
                    .into()
            }
            RuleError::Write(WriteError::Panicked)
            | RuleError::Store(_)
            | RuleError::Internal(_) => "internal error; the daemon's log has details".into(),
            refusal => refusal.to_string(),
        }
    }
}

impl From<RuleError> for RpcError {
    fn from(err: RuleError) -> RpcError {
        let rpc = RpcError::new(err.kind(), err.user_message());
        match err.hint() {
            Some(hint) => rpc.with_hint(hint),
            None => rpc,
        }
    }
}
