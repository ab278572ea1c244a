//! `authz.check`: what the rules would decide, at this instant, if the subject asked to do
//! something in an organization. It goes through the same steps as every request: the
//! binding ([`identity::authenticate`]), the organization and how the subject stands there
//! ([`identity::resolve_org`]), its role ([`identity::Standing::role`]) and the permission
//! table ([`Role::permits`]); where one says no, the answer says which and why.

use compartmentctl::wire::{Decision, MemberStatus, Permission, Reason};

use super::error::needed;
use super::identity::{self, Standing};
use super::{Caller, RuleError, Unbound};
use crate::store::{Millis, Reader};

/// Who a check is about, as the dispatcher resolved it (NSS is asked off the rules' path).
#[derive(Debug, Clone)]
pub enum Subject {
    /// A uid as a caller would present it: its user as NSS names it now, and whether it
    /// is a superuser. `email` is the address the check named, if it named one.
    Uid {
        caller: Caller,
        email: Option<String>,
    },
    /// A Unix user name with no user behind it.
    NoSuchUser(String),
    /// A uid with no user behind it.
    NoUserForUid(u32),
    /// An address with no account, or whose account was never bound.
    NoAccount(String),
}

/// The decision for `subject` doing `permission` in `org` (else the subject's current
/// organization), by the rules as they stand in `reader` at `now`.
pub fn decide(
    reader: &impl Reader,
    subject: &Subject,
    permission: Permission,
    org: Option<&str>,
    now: Millis,
) -> Result<Decision, RuleError> {
    let mut decision = Decision {
        allowed: false,
        permission,
        org: org.map(str::to_owned),
        uid: None,
        user: None,
        email: None,
        role: None,
        reason: Reason::Other,
        message: String::new(),
    };
    let (caller, asked_email) = match subject {
        Subject::Uid { caller, email } => (caller, email),
        Subject::NoSuchUser(name) => {
            decision.user = Some(name.clone());
            return Ok(refuse(
                decision,
                Reason::NoSuchUser,
                format!("there is no Unix user {name:?}"),
            ));
        }
        Subject::NoUserForUid(uid) => {
            decision.uid = Some(*uid);
            return Ok(refuse(
                decision,
                Reason::NoSuchUser,
                format!("uid {uid} has no Unix user"),
            ));
        }
        Subject::NoAccount(email) => {
            decision.email = Some(email.clone());
            return Ok(refuse(
                decision,
                Reason::NoAccount,
                format!("{email} has no activated account"),
            ));
        }
    };
    decision.uid = Some(caller.uid);
    decision.user = caller.user.as_deref().map(str::to_owned);
    let uid_label = match &caller.user {
        Some(name) => format!("uid {} ({name})", caller.uid),
        None => format!("uid {}", caller.uid),
    };

    let actor = match identity::authenticate(reader, caller) {
        Ok(actor) => actor,
        Err(RuleError::Unauthenticated { why, .. }) => {
            decision.email = asked_email.clone();
            let reason = match why {
                Unbound::NoBinding => Reason::Unbound,
                Unbound::UserChanged { .. } => Reason::BindingStale,
            };
            return Ok(refuse(decision, reason, format!("{uid_label}: {why}")));
        }
        Err(other) => return Err(other),
    };
    decision.email = actor.email.clone();
    if let Some(asked) = asked_email {
        if actor.email.as_deref() != Some(asked.as_str()) {
            decision.email = Some(asked.clone());
            return Ok(refuse(
                decision,
                Reason::Unbound,
                format!("{asked} is not bound to {uid_label}"),
            ));
        }
    }
    let who = actor.email.clone().unwrap_or_else(|| uid_label.clone());

    let (org, here) = identity::resolve_org(reader, &actor, org)?;
    decision.org = Some(org.clone());

    let Some(role) = here.role(actor.caller.uid) else {
        let (reason, message) = why_not_in(&here, &who, &org, now);
        return Ok(refuse(decision, reason, message));
    };
    decision.role = Some(role);
    decision.allowed = role.permits(permission);
    let needs = format!("{permission} needs {}", needed(permission.lowest_role()));
    let came_from = match here {
        Standing::Superuser => {
            decision.reason = Reason::Superuser;
            decision.message = format!(
                "{who} is a superuser, with admin power in every organization, and {needs}"
            );
            return Ok(decision);
        }
        Standing::Member(Some(membership)) => format!(" (invited by {})", membership.invited_by),
        Standing::Member(None) | Standing::NoOrg => String::new(),
    };
    decision.reason = if decision.allowed {
        Reason::Role
    } else {
        Reason::RoleTooLow
    };
    decision.message = format!("{who} is {role} in {org}{came_from}, and {needs}");
    Ok(decision)
}

fn refuse(mut decision: Decision, reason: Reason, message: String) -> Decision {
    decision.allowed = false;
    decision.reason = reason;
    decision.message = message;
    decision
}

/// Why the subject does not act in `org`: no membership (or no such organization: the same
/// answer, as every rule gives it), an invitation not yet or no longer redeemable, or a
/// membership that another uid activated.
fn why_not_in(here: &Standing, who: &str, org: &str, now: Millis) -> (Reason, String) {
    let status = match here {
        Standing::Member(Some(membership)) => Some(membership.status_at(now)),
        Standing::Member(None) | Standing::NoOrg | Standing::Superuser => None,
    };
    match status {
        None => (Reason::NotMember, format!("{who} is not a member of {org}")),
        Some(MemberStatus::Invited) => (
            Reason::InvitationPending,
            format!("{who} is invited to {org} and has not activated the invitation"),
        ),
        Some(MemberStatus::Expired) => (
            Reason::InvitationExpired,
            format!("{who}'s invitation to {org} expired"),
        ),
        Some(MemberStatus::Active) => (
            Reason::OtherUid,
            format!(
                "{who}'s membership of {org} was activated for another uid, which alone acts through it"
            ),
        ),
    }
}
