//! `authz.check`: what the rules would decide, at this instant, if the subject asked to do
//! something in an organization. It goes through the same steps as every request: the
//! binding ([`identity::authenticate`]), the organization and how the subject stands there
//! ([`identity::resolve_org`]), its role ([`identity::Standing::role`]) and the permission
//! table ([`Role::permits`]); where one says no, the answer says which and why.

use std::collections::HashMap;
use std::fmt;

use compartmentctl::wire::{Decision, MemberStatus, Permission, Reason, Role};

use super::error::needed;
use super::identity::{self, Actor, Barred, Standing};
use super::{Caller, RuleError, Unbound};
use crate::clock::rfc3339;
use crate::store::{Millis, Reader};

/// A decision's sentence from its pieces, written once into text of its own (services ask
/// thousands of times a second).
macro_rules! sentence {
    ($($piece:expr),+ $(,)?) => {{
        let mut text = String::with_capacity(SENTENCE_BYTES);
        // Writing to a `String` does not fail.
        $(let _ = Piece::put(&$piece, &mut text);)+
        text
    }};
}

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
    let authenticated = authenticate(reader, subject)?;
    decide_as(reader, subject, &authenticated, permission, org, None, now)
}

/// How one subject stands in each organization a batch's checks name, read once for all
/// the checks there (a batch mostly asks one subject's permissions in a few
/// organizations), on one snapshot at one instant: what [`identity::resolve_org`] gives.
#[derive(Default)]
pub struct Standings {
    named: HashMap<String, (String, Standing), foldhash::fast::RandomState>,
    /// Where the subject acts when a check names no organization.
    unnamed: Option<(String, Standing)>,
}

impl Standings {
    fn resolve(
        &mut self,
        reader: &impl Reader,
        actor: &Actor,
        requested: Option<&str>,
        now: Millis,
    ) -> Result<(&str, &Standing), RuleError> {
        let found = match requested {
            Some(name) => {
                if !self.named.contains_key(name) {
                    let resolved = identity::resolve_org(reader, actor, requested, now)?;
                    self.named.insert(name.to_owned(), resolved);
                }
                self.named.get(name)
            }
            None => {
                if self.unnamed.is_none() {
                    self.unnamed = Some(identity::resolve_org(reader, actor, None, now)?);
                }
                self.unnamed.as_ref()
            }
        };
        let (org, here) = found.ok_or(RuleError::Internal("a standing just read is gone"))?;
        Ok((org.as_str(), here))
    }
}

/// Who `subject` is to the rules, read once for every check about it (a batch's): its
/// actor, or why its uid acts without an account; `None` for a subject that is no uid (and
/// for [`decide_as`], not authenticated yet).
pub fn authenticate(
    reader: &impl Reader,
    subject: &Subject,
) -> Result<Option<Result<Actor, Unbound>>, RuleError> {
    let Subject::Uid { caller, .. } = subject else {
        return Ok(None);
    };
    authenticate_uid(reader, caller).map(Some)
}

fn authenticate_uid(
    reader: &impl Reader,
    caller: &Caller,
) -> Result<Result<Actor, Unbound>, RuleError> {
    match identity::authenticate(reader, caller) {
        Ok(actor) => Ok(Ok(actor)),
        Err(RuleError::Unauthenticated { why, .. }) => Ok(Err(why)),
        Err(other) => Err(other),
    }
}

/// [`decide`], `subject` already authenticated ([`authenticate`]) as `authenticated`; in a
/// batch, with how it stands where earlier checks asked kept in `standings`.
pub fn decide_as(
    reader: &impl Reader,
    subject: &Subject,
    authenticated: &Option<Result<Actor, Unbound>>,
    permission: Permission,
    org: Option<&str>,
    standings: Option<&mut Standings>,
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
    let uid_label = UidLabel(caller);

    let fresh;
    let authenticated = match authenticated {
        Some(known) => known,
        None => {
            fresh = authenticate_uid(reader, caller)?;
            &fresh
        }
    };
    let actor = match authenticated {
        Ok(actor) => actor,
        Err(why) => {
            decision.email = asked_email.clone();
            let reason = match why {
                Unbound::NoBinding => Reason::Unbound,
                Unbound::UserChanged { .. } => Reason::BindingStale,
            };
            return Ok(refuse(decision, reason, format!("{uid_label}: {why}")));
        }
    };
    decision.email = actor.email.clone();
    if let Some(asked) = asked_email {
        if actor.email.as_deref() != Some(asked.as_str()) {
            decision.email = Some(asked.clone());
            return Ok(refuse(
                decision,
                Reason::Unbound,
                sentence![asked, " is not bound to ", uid_label],
            ));
        }
    }
    let who = Who {
        email: actor.email.as_deref(),
        uid: uid_label,
    };

    let resolved;
    let (org, here) = match standings {
        Some(standings) => standings.resolve(reader, actor, org, now)?,
        None => {
            resolved = identity::resolve_org(reader, actor, org, now)?;
            (resolved.0.as_str(), &resolved.1)
        }
    };

    let Some(role) = here.role(actor.caller.uid, now) else {
        let (reason, message) = match here.barred(actor.caller.uid, now) {
            Some(Barred::Blocked(block)) => (
                Reason::Blocked,
                match block.until {
                    Some(until) => format!(
                        "{who} is blocked in {org} until {}: {}",
                        rfc3339(until),
                        block.reason
                    ),
                    None => format!("{who} is blocked in {org}: {}", block.reason),
                },
            ),
            Some(Barred::Ended(at)) => (
                Reason::AccessEnded,
                format!("{who}'s access to {org} ended at {}", rfc3339(at)),
            ),
            None => why_not_in(here, &who, org, now),
        };
        decision.org = Some(org.to_owned());
        return Ok(refuse(decision, reason, message));
    };
    decision.role = Some(role);
    decision.allowed = role.permits(permission);
    let needs = Needs(permission);
    let group = here.through_group(actor.caller.uid, now);
    decision.reason = match (here, decision.allowed) {
        (Standing::Superuser, _) => Reason::Superuser,
        (_, true) if group.is_some() => Reason::Group,
        (_, true) => Reason::Role,
        (_, false) => Reason::RoleTooLow,
    };
    decision.message = match (here, group) {
        (Standing::Superuser, _) => sentence![
            who,
            " is a superuser, with admin power in every organization, and ",
            needs
        ],
        (_, Some(map)) => sentence![
            who,
            " is ",
            role,
            " in ",
            org,
            " through Unix group ",
            map.name,
            " (gid ",
            map.gid,
            "), and ",
            needs
        ],
        (
            Standing::Member {
                membership: Some(membership),
                ..
            },
            None,
        ) => match membership
            .terms
            .elevation
            .filter(|elevation| !crate::clock::is_due(elevation.until.at, now))
        {
            Some(elevation) => sentence![
                who,
                " is ",
                role,
                " in ",
                org,
                " until ",
                rfc3339(elevation.until.at),
                ", then ",
                elevation.fallback,
                " (invited by ",
                super::shown_inviter(&membership.invited_by),
                "), and ",
                needs
            ],
            None => sentence![
                who,
                " is ",
                role,
                " in ",
                org,
                " (invited by ",
                super::shown_inviter(&membership.invited_by),
                "), and ",
                needs
            ],
        },
        (Standing::Member { .. } | Standing::NoOrg, None) => {
            sentence![who, " is ", role, " in ", org, ", and ", needs]
        }
    };
    decision.org = Some(org.to_owned());
    Ok(decision)
}

/// About the longest sentence a decision holds, to write it without growing its text.
const SENTENCE_BYTES: usize = 192;

/// What a decision's sentence is made of: each piece writes itself into the text, with no
/// `format_args!` between (whose machinery was a fifth of a decision's instructions).
trait Piece {
    fn put(&self, out: &mut impl fmt::Write) -> fmt::Result;
}

impl<T: Piece + ?Sized> Piece for &T {
    fn put(&self, out: &mut impl fmt::Write) -> fmt::Result {
        (**self).put(out)
    }
}

impl Piece for str {
    fn put(&self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str(self)
    }
}

impl Piece for String {
    fn put(&self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str(self)
    }
}

impl Piece for Role {
    fn put(&self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str(self.as_str())
    }
}

impl Piece for u32 {
    fn put(&self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str(itoa::Buffer::new().format(*self))
    }
}

/// The subject as a uid: "uid 1000 (alice)", or "uid 1000" when no user has it.
#[derive(Clone, Copy)]
struct UidLabel<'a>(&'a Caller);

impl Piece for UidLabel<'_> {
    fn put(&self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str("uid ")?;
        self.0.uid.put(out)?;
        if let Some(name) = &self.0.user {
            out.write_str(" (")?;
            out.write_str(name)?;
            out.write_str(")")?;
        }
        Ok(())
    }
}

impl fmt::Display for UidLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.put(f)
    }
}

/// The subject as an answer names it: its account's e-mail, else its uid.
struct Who<'a> {
    email: Option<&'a str>,
    uid: UidLabel<'a>,
}

impl Piece for Who<'_> {
    fn put(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match self.email {
            Some(email) => out.write_str(email),
            None => self.uid.put(out),
        }
    }
}

impl fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.put(f)
    }
}

/// "deployment.create needs the deployer role or above".
struct Needs(Permission);

impl Piece for Needs {
    fn put(&self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str(self.0.key())?;
        out.write_str(" needs ")?;
        needed(self.0.lowest_role()).put(out)
    }
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
fn why_not_in(here: &Standing, who: &Who<'_>, org: &str, now: Millis) -> (Reason, String) {
    let status = match here {
        Standing::Member {
            membership: Some(membership),
            ..
        } => Some(membership.status_at(now)),
        Standing::Member { .. } | Standing::NoOrg | Standing::Superuser => None,
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
