//! Who the caller is: their account from the uid binding, the organizations they can
//! act in, and their role there. Also `whoami`.

use compartmentctl::wire::{AccountInfo, MemberStatus, OrgMembership, Permission, Role, WhoAmI};

use super::{Caller, RuleError, Unbound};
use crate::store::{BindingRecord, Block, GroupMap, MembershipRecord, Millis, Provenance, Reader};

/// An authenticated caller: a superuser, or a uid bound to an account.
#[derive(Debug, Clone)]
pub struct Actor {
    pub caller: Caller,
    /// The bound account; a superuser may have none.
    pub email: Option<String>,
}

/// The caller's binding, if it holds: the uid is bound and still resolves to the user name
/// recorded when it was bound. Otherwise why not.
pub fn binding_of(
    reader: &impl Reader,
    caller: &Caller,
) -> Result<Result<BindingRecord, Unbound>, RuleError> {
    let Some(binding) = reader.binding(caller.uid)? else {
        return Ok(Err(Unbound::NoBinding));
    };
    if binding.user_name.is_some() && binding.user_name.as_deref() == caller.user.as_deref() {
        return Ok(Ok(binding));
    }
    Ok(Err(Unbound::UserChanged {
        recorded: binding.user_name,
        now: caller.user.as_deref().map(str::to_owned),
    }))
}

/// True when an invitation to `org` by `inviter` may make `binding`'s account a member at
/// once: the inviter is a superuser, or the binding was made by a superuser or through this
/// same organization (DESIGN §4). Anyone else's binding needs its holder's consent.
pub fn may_vouch_for(binding: &BindingRecord, inviter: &Caller, org: &str) -> bool {
    inviter.superuser
        || match &binding.provenance {
            Provenance::Superuser => true,
            Provenance::Org(made_in) => made_in == org,
            Provenance::Unknown => false,
        }
}

impl Actor {
    /// How the actor is named in `invited_by` and the audit log.
    pub fn label(&self) -> String {
        self.email.clone().unwrap_or_else(|| self.caller.label())
    }
}

/// The actor inside one organization.
#[derive(Debug, Clone)]
pub struct InOrg {
    pub actor: Actor,
    pub org: String,
    /// Admin for a superuser; else the role of the actor's active membership.
    pub role: Role,
}

impl InOrg {
    /// The grant cap: nobody grants a role above their own, by grant or by invitation.
    pub fn may_grant(&self, role: Role) -> Result<(), RuleError> {
        if role <= self.role {
            return Ok(());
        }
        Err(RuleError::GrantAboveOwn {
            org: self.org.clone(),
            role,
            own: self.role,
        })
    }

    /// The target cap: nobody changes or removes a member whose role is above their own.
    pub fn may_change(&self, email: &str, target: Role) -> Result<(), RuleError> {
        if target <= self.role {
            return Ok(());
        }
        Err(RuleError::TargetAboveOwn {
            org: self.org.clone(),
            email: email.to_owned(),
            target,
            own: self.role,
        })
    }

    /// The membership of `email` here, which the request is about.
    pub fn member(&self, reader: &impl Reader, email: &str) -> Result<MembershipRecord, RuleError> {
        reader
            .membership(&self.org, email)?
            .ok_or_else(|| RuleError::NotMember {
                org: self.org.clone(),
                email: email.to_owned(),
            })
    }

    /// Refuses unless the actor's role holds `permission` (DESIGN §3, as
    /// [`compartmentctl::wire::TABLE`] states it).
    pub fn require(&self, permission: Permission) -> Result<(), RuleError> {
        if self.role.permits(permission) {
            return Ok(());
        }
        Err(RuleError::RoleTooLow {
            permission,
            org: self.org.clone(),
            own: self.role,
        })
    }
}

/// The caller as an [`Actor`]; only superusers, and users of a Unix group an organization
/// maps to a role (`org map-group`), may act without an account.
pub fn authenticate(reader: &impl Reader, caller: &Caller) -> Result<Actor, RuleError> {
    let email = match binding_of(reader, caller)? {
        Ok(binding) => Some(binding.email),
        Err(_) if caller.superuser => None,
        Err(_) if in_a_mapped_group(reader, caller)? => None,
        Err(why) => {
            return Err(RuleError::Unauthenticated {
                uid: caller.uid,
                why,
            })
        }
    };
    Ok(Actor {
        caller: caller.clone(),
        email,
    })
}

/// Whether any organization maps one of `caller`'s Unix groups to a role.
fn in_a_mapped_group(reader: &impl Reader, caller: &Caller) -> Result<bool, RuleError> {
    Ok(!caller.groups.is_empty() && !reader.orgs_of_groups(&caller.groups)?.is_empty())
}

/// How an actor stands in an organization, read once: all that its role there, and why it
/// has none, are decided from.
#[derive(Debug, Clone)]
// The membership is held inline: a decision reads one and drops it at once, and boxing it
// would cost every request an allocation to save stack it only briefly uses.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Standing {
    /// No such organization.
    NoOrg,
    /// A superuser: admin power in every organization.
    Superuser,
    /// Anyone else: the membership of the actor's account there, whatever its status
    /// (`None` when there is none or the actor has no account), and the mapping of the
    /// actor's Unix groups that gives the highest role there, if any does.
    Member {
        membership: Option<MembershipRecord>,
        group: Option<GroupMap>,
    },
}

impl Standing {
    /// The role the actor acts with at `now`: admin for a superuser, else the role of a
    /// membership made active for this very uid, neither blocked nor ended, as its terms
    /// make it at `now` (an elevation ends on the second, swept or not).
    ///
    /// A membership and a group mapping combine to the higher role; a block of the
    /// membership stops both (it is the member who is blocked), while access that ended
    /// leaves what the group gives.
    pub(crate) fn role(&self, uid: u32, now: Millis) -> Option<Role> {
        match self {
            Standing::Superuser => Some(Role::Admin),
            Standing::Member { membership, group } => {
                if matches!(self.barred(uid, now), Some(Barred::Blocked(_))) {
                    return None;
                }
                let member = membership.as_ref().and_then(|m| m.acting_role(uid, now));
                member.max(group.as_ref().map(|map| map.role))
            }
            Standing::NoOrg => None,
        }
    }

    /// The group mapping the role comes from, when it gives more than the membership.
    pub(crate) fn through_group(&self, uid: u32, now: Millis) -> Option<&GroupMap> {
        let Standing::Member { membership, group } = self else {
            return None;
        };
        let member = membership.as_ref().and_then(|m| m.acting_role(uid, now));
        group.as_ref().filter(|map| Some(map.role) > member)
    }

    /// Why a member who holds an active membership for `uid` does not act with it at
    /// `now`: a block, or access that ended.
    pub(crate) fn barred(&self, uid: u32, now: Millis) -> Option<Barred<'_>> {
        match self {
            Standing::Member {
                membership: Some(m),
                ..
            } if m.is_active_for(uid) => {
                if let Some(at) = m.terms.access_ended_at(now) {
                    Some(Barred::Ended(at))
                } else {
                    m.terms.block_at(now).map(Barred::Blocked)
                }
            }
            _ => None,
        }
    }
}

/// Why an active member does not act: see [`Standing::barred`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Barred<'a> {
    Blocked(&'a Block),
    /// Access ended at this time.
    Ended(Millis),
}

impl Barred<'_> {
    /// The refusal of a barred member's request in `org`.
    pub(crate) fn refusal(&self, org: &str) -> RuleError {
        match self {
            Barred::Blocked(block) => RuleError::Blocked {
                org: org.to_owned(),
                reason: block.reason.clone(),
                until: block.until,
            },
            Barred::Ended(at) => RuleError::AccessEnded {
                org: org.to_owned(),
                at: *at,
            },
        }
    }
}

/// How `actor` stands in `org`.
///
/// An actor who is not a superuser costs the same reads whether or not `org` exists (the
/// organization and the membership, always both): how long an answer takes must not tell
/// which organizations exist to someone who is a member of none of them.
pub(crate) fn standing(
    reader: &impl Reader,
    actor: &Actor,
    org: &str,
) -> Result<Standing, RuleError> {
    let record = reader.org(org)?;
    if actor.caller.superuser {
        return Ok(if record.is_some() {
            Standing::Superuser
        } else {
            Standing::NoOrg
        });
    }
    // Only a superuser, or a user of a mapped group, acts without an account
    // ([`authenticate`]).
    let membership = match &actor.email {
        Some(email) => reader.membership(org, email)?,
        None => None,
    };
    Ok(match record {
        Some(record) => Standing::Member {
            membership,
            group: record.group_role(&actor.caller.groups).cloned(),
        },
        None => Standing::NoOrg,
    })
}

/// The organizations the actor can act in at `now`, with how it stands in each; with
/// `barred`, also those where it is blocked or its access ended (so that a request naming
/// no organization is answered by the block, not by "no organization").
fn visible(
    reader: &impl Reader,
    actor: &Actor,
    now: Millis,
    barred: bool,
) -> Result<Vec<(String, Standing)>, RuleError> {
    if actor.caller.superuser {
        let names = reader.org_names()?;
        return Ok(names
            .into_iter()
            .map(|org| (org, Standing::Superuser))
            .collect());
    }
    let mut names = match &actor.email {
        Some(email) => reader.orgs_of(email)?,
        None => Vec::new(),
    };
    if !actor.caller.groups.is_empty() {
        names.extend(reader.orgs_of_groups(&actor.caller.groups)?);
        names.sort();
        names.dedup();
    }
    let mut orgs = Vec::new();
    for org in names {
        let here = standing(reader, actor, &org)?;
        let uid = actor.caller.uid;
        if here.role(uid, now).is_some() || (barred && here.barred(uid, now).is_some()) {
            orgs.push((org, here));
        }
    }
    Ok(orgs)
}

/// The organizations the actor can act in at `now`, by name.
pub fn visible_orgs(
    reader: &impl Reader,
    actor: &Actor,
    now: Millis,
) -> Result<Vec<String>, RuleError> {
    Ok(visible(reader, actor, now, false)?
        .into_iter()
        .map(|(org, _)| org)
        .collect())
}

/// The organization a request acts in (DESIGN §2): the one named, else the one chosen
/// with `org use`, else the actor's only one; and how the actor stands there, read once.
pub(crate) fn resolve_org(
    reader: &impl Reader,
    actor: &Actor,
    requested: Option<&str>,
    now: Millis,
) -> Result<(String, Standing), RuleError> {
    match requested {
        Some(org) => Ok((org.to_owned(), standing(reader, actor, org)?)),
        None => match current(reader, actor, now)? {
            Some(found) => Ok(found),
            None => Err(RuleError::OrgRequired {
                orgs: visible_orgs(reader, actor, now)?,
            }),
        },
    }
}

/// [`resolve_org`], where the actor must act at `now`: an organization it has no role in
/// is answered as one that does not exist; a member who is blocked there, or whose access
/// ended, is told so (they know the organization exists).
pub fn in_org(
    reader: &impl Reader,
    actor: &Actor,
    requested: Option<&str>,
    now: Millis,
) -> Result<InOrg, RuleError> {
    let (org, here) = resolve_org(reader, actor, requested, now)?;
    match here.role(actor.caller.uid, now) {
        Some(role) => Ok(InOrg {
            actor: actor.clone(),
            org,
            role,
        }),
        None => Err(match here.barred(actor.caller.uid, now) {
            Some(barred) => barred.refusal(&org),
            None => RuleError::OrgNotFound(org),
        }),
    }
}

/// The organization used when none is named, if one can be chosen, with how the actor
/// stands there. The one chosen with `org use` stays chosen while the actor is blocked
/// there, so that the block, not a neighbouring organization, answers.
fn current(
    reader: &impl Reader,
    actor: &Actor,
    now: Millis,
) -> Result<Option<(String, Standing)>, RuleError> {
    if let Some(org) = reader.current_org(actor.caller.uid)? {
        let here = standing(reader, actor, &org)?;
        let uid = actor.caller.uid;
        if here.role(uid, now).is_some() || here.barred(uid, now).is_some() {
            return Ok(Some((org, here)));
        }
    }
    let mut visible = visible(reader, actor, now, true)?;
    Ok(match visible.len() {
        1 => visible.pop(),
        _ => None,
    })
}

/// The organization used when none is named at `now`, if one can be chosen.
pub fn current_org(
    reader: &impl Reader,
    actor: &Actor,
    now: Millis,
) -> Result<Option<String>, RuleError> {
    Ok(current(reader, actor, now)?.map(|(org, _)| org))
}

/// `whoami`: open to everyone, bound or not.
pub fn whoami(reader: &impl Reader, caller: &Caller, now: Millis) -> Result<WhoAmI, RuleError> {
    let binding = binding_of(reader, caller)?;
    let binding_problem = match &binding {
        Err(why @ Unbound::UserChanged { .. }) => Some(why.to_string()),
        _ => None,
    };
    let email = binding.ok().map(|b| b.email);
    let actor = Actor {
        caller: caller.clone(),
        email: email.clone(),
    };
    let mut account = None;
    let mut memberships = Vec::new();
    if let Some(email) = &email {
        if let Some(record) = reader.account(email)? {
            account = Some(AccountInfo {
                email: email.clone(),
                status: record.status,
            });
        }
        for org in reader.orgs_of(email)? {
            // An active membership pinned to another uid is not this caller's to use.
            let mine = |m: &MembershipRecord| {
                m.status != MemberStatus::Active || m.is_active_for(caller.uid)
            };
            if let Some(m) = reader.membership(&org, email)?.filter(mine) {
                memberships.push(OrgMembership {
                    org,
                    role: m.terms.role_at(m.role, now),
                    status: m.status_at(now),
                    usable: None,
                    blocked: m
                        .terms
                        .block_at(now)
                        .filter(|_| m.status == MemberStatus::Active)
                        .map(super::terms::shown_block),
                    group: None,
                });
            }
        }
    }
    // Where a Unix group's mapping gives more than a membership, or gives a role alone.
    if !caller.groups.is_empty() && !caller.superuser {
        for org in reader.orgs_of_groups(&caller.groups)? {
            let here = standing(reader, &actor, &org)?;
            let (Some(role), Some(map)) = (
                here.role(caller.uid, now),
                here.through_group(caller.uid, now),
            ) else {
                continue;
            };
            let group = Some(map.name.clone());
            match memberships.iter_mut().find(|m| m.org == org) {
                Some(listed) => {
                    listed.role = role;
                    listed.group = group;
                }
                None => memberships.push(OrgMembership {
                    org,
                    role,
                    status: MemberStatus::Active,
                    usable: None,
                    blocked: None,
                    group,
                }),
            }
        }
        memberships.sort_by(|a, b| a.org.cmp(&b.org));
    }
    let current = if caller.superuser || email.is_some() || !memberships.is_empty() {
        current(reader, &actor, now)?
    } else {
        None
    };
    let permissions = current
        .as_ref()
        .and_then(|(_, here)| here.role(caller.uid, now))
        .map(Role::permissions);
    let current_org = current.map(|(org, _)| org);
    Ok(WhoAmI {
        uid: caller.uid,
        gid: caller.gid,
        pid: caller.pid,
        superuser: caller.superuser,
        unix_user: caller.user.as_deref().map(str::to_owned),
        binding_problem,
        account,
        current_org,
        memberships,
        permissions: permissions.unwrap_or_default(),
    })
}
