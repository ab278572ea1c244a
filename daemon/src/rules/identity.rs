//! Who the caller is: their account from the uid binding, the organizations they can
//! act in, and their role there. Also `whoami`.

use compartmentctl::wire::{AccountInfo, MemberStatus, OrgMembership, Permission, Role, WhoAmI};

use super::{Caller, RuleError, Unbound};
use crate::store::{BindingRecord, MembershipRecord, Millis, Provenance, Reader};

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

/// The caller as an [`Actor`]; only superusers may act without an account.
pub fn authenticate(reader: &impl Reader, caller: &Caller) -> Result<Actor, RuleError> {
    let email = match binding_of(reader, caller)? {
        Ok(binding) => Some(binding.email),
        Err(_) if caller.superuser => None,
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

/// The actor's role in `org`, or `None` when the organization does not exist or is not
/// theirs to act in.
pub(crate) fn role_in(
    reader: &impl Reader,
    actor: &Actor,
    org: &str,
) -> Result<Option<Role>, RuleError> {
    if reader.org(org)?.is_none() {
        return Ok(None);
    }
    if actor.caller.superuser {
        return Ok(Some(Role::Admin));
    }
    let Some(email) = &actor.email else {
        return Ok(None);
    };
    Ok(reader
        .membership(org, email)?
        .filter(|m| m.is_active_for(actor.caller.uid))
        .map(|m| m.role))
}

/// The organizations the actor can act in, by name.
pub fn visible_orgs(reader: &impl Reader, actor: &Actor) -> Result<Vec<String>, RuleError> {
    if actor.caller.superuser {
        return Ok(reader.org_names()?);
    }
    let Some(email) = &actor.email else {
        return Ok(Vec::new());
    };
    let mut orgs = Vec::new();
    for org in reader.orgs_of(email)? {
        if role_in(reader, actor, &org)?.is_some() {
            orgs.push(org);
        }
    }
    Ok(orgs)
}

/// The organization a request acts in (DESIGN §2): the one named, else the one chosen
/// with `org use`, else the actor's only one.
pub fn in_org(
    reader: &impl Reader,
    actor: &Actor,
    requested: Option<&str>,
) -> Result<InOrg, RuleError> {
    let org = match requested {
        Some(org) => org.to_owned(),
        None => match current_org(reader, actor)? {
            Some(org) => org,
            None => {
                return Err(RuleError::OrgRequired {
                    orgs: visible_orgs(reader, actor)?,
                })
            }
        },
    };
    match role_in(reader, actor, &org)? {
        Some(role) => Ok(InOrg {
            actor: actor.clone(),
            org,
            role,
        }),
        None => Err(RuleError::OrgNotFound(org)),
    }
}

/// The organization used when none is named, if one can be chosen.
pub fn current_org(reader: &impl Reader, actor: &Actor) -> Result<Option<String>, RuleError> {
    if let Some(org) = reader.current_org(actor.caller.uid)? {
        if role_in(reader, actor, &org)?.is_some() {
            return Ok(Some(org));
        }
    }
    let mut visible = visible_orgs(reader, actor)?;
    Ok(match visible.len() {
        1 => visible.pop(),
        _ => None,
    })
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
                    role: m.role,
                    status: m.status_at(now),
                    usable: None,
                });
            }
        }
    }
    let current_org = if caller.superuser || email.is_some() {
        current_org(reader, &actor)?
    } else {
        None
    };
    let permissions = match &current_org {
        Some(org) => role_in(reader, &actor, org)?.map(Role::permissions),
        None => None,
    };
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
