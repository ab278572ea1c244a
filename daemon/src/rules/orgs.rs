//! Organizations: `org.create` (superusers), `org.list`, `org.use`.

use compartmentctl::wire::{OrgCreateParams, OrgCreated, OrgEntry, OrgList, OrgUsed, Role};

use super::identity::{authenticate, current_org, in_org, visible_orgs};
use super::invitations::{add_member, AddMember};
use super::{audit, parse_email, valid_org_name, Caller, Policy, RuleError};
use crate::store::{Changes, Millis, OrgRecord, Reader, UnixUser};
use crate::token::Token;

/// Creates an organization and invites its first admin (who joins at once when their
/// account is already active).
pub fn create(
    txn: &impl Changes,
    caller: &Caller,
    params: &OrgCreateParams,
    named: Option<UnixUser>,
    token: &Token,
    policy: &Policy,
    now: Millis,
) -> Result<OrgCreated, RuleError> {
    // An unbound caller is told to activate first, like every other non-public method.
    let actor = authenticate(txn, caller)?;
    caller.require_superuser("creating an organization")?;
    txn.act_as(&audit::actor(&actor));
    let name = params.name.as_str();
    if !valid_org_name(name) {
        let shown: String = name.chars().take(80).collect();
        return Err(RuleError::BadRequest(format!(
            "{shown:?} is not a valid organization name: use 1 to 63 lowercase letters, digits and dashes, starting with a letter"
        )));
    }
    let admin = parse_email(&params.admin)?;
    if txn.org(name)?.is_some() {
        return Err(RuleError::OrgExists(name.to_owned()));
    }
    txn.put_org(
        name,
        &OrgRecord {
            created_at: now,
            created_by_uid: caller.uid,
        },
    )?;
    audit::Entry::new(audit::actor(&actor), "organization.create", now)
        .organization(name)
        .append(txn)?;
    let admin = add_member(
        txn,
        AddMember {
            org: name,
            email: &admin,
            role: Role::Admin,
            invited_by: &actor,
            named,
            ttl: policy.invitation_ttl,
            replacing: None,
        },
        token,
        policy,
        now,
    )?;
    Ok(OrgCreated {
        org: name.to_owned(),
        admin,
    })
}

/// The organizations the caller can act in, with their role and which one is current.
pub fn list(reader: &impl Reader, caller: &Caller) -> Result<OrgList, RuleError> {
    let actor = authenticate(reader, caller)?;
    let current = current_org(reader, &actor)?;
    let mut orgs = Vec::new();
    for name in visible_orgs(reader, &actor)? {
        let role = match &actor.email {
            Some(email) => reader
                .membership(&name, email)?
                .filter(|m| m.is_active_for(caller.uid))
                .map(|m| m.role),
            None => None,
        };
        orgs.push(OrgEntry {
            current: current.as_deref() == Some(name.as_str()),
            name,
            role,
        });
    }
    Ok(OrgList { orgs })
}

/// Chooses the organization commands act in when none is named.
pub fn use_org(txn: &impl Changes, caller: &Caller, name: &str) -> Result<OrgUsed, RuleError> {
    let actor = authenticate(txn, caller)?;
    let org = in_org(txn, &actor, Some(name))?.org;
    txn.set_current_org(caller.uid, &org)?;
    Ok(OrgUsed { org })
}
