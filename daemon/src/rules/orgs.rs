//! Organizations: `org.create`, `org.delete`, `org.rename` and the Unix groups mapped to a
//! role (`org.map_group`, `org.unmap_group`), all for superusers; `org.list`, `org.use`.

use compartmentctl::wire::{
    GroupMapped, GroupUnmapped, MemberStatus, OrgCreateParams, OrgCreated, OrgDeleteParams,
    OrgDeleted, OrgEntry, OrgList, OrgMapGroupParams, OrgRenameParams, OrgRenamed,
    OrgUnmapGroupParams, OrgUsed, Role,
};

use super::identity::{authenticate, current_org, in_org, visible_orgs};
use super::invitations::{add_member, invitation_ttl, AddMember};
use super::revoke_token;
use super::{audit, parse_email, valid_org_name, Caller, Policy, RuleError};
use crate::store::{Changes, GroupMap, Millis, OrgRecord, Reader, UnixUser};
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
            groups: Default::default(),
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
            ttl: invitation_ttl(params.expires_in.as_deref(), policy)?,
            access_until: None,
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

/// Deletes an organization: refused while it has members (an invitation, pending or
/// expired, is none) unless `force`, which removes them. Their memberships go as `user
/// remove` removes one (each on the feed, each invitation's URL revoked); every `org use`
/// of it is forgotten. Its records stay in the audit log; an organization made later under
/// the same name does not read them.
pub fn delete(
    txn: &impl Changes,
    caller: &Caller,
    params: &OrgDeleteParams,
    now: Millis,
) -> Result<OrgDeleted, RuleError> {
    let actor = authenticate(txn, caller)?;
    caller.require_superuser("deleting an organization")?;
    txn.act_as(&audit::actor(&actor));
    let name = params.name.as_str();
    if txn.org(name)?.is_none() {
        return Err(RuleError::OrgNotFound(name.to_owned()));
    }
    let memberships = txn.members(name)?;
    let (removed, invitations): (Vec<String>, Vec<String>) = {
        let (joined, invited): (Vec<_>, Vec<_>) = memberships
            .iter()
            .partition(|(_, membership)| membership.status == MemberStatus::Active);
        (
            joined.into_iter().map(|(email, _)| email.clone()).collect(),
            invited
                .into_iter()
                .map(|(email, _)| email.clone())
                .collect(),
        )
    };
    if !removed.is_empty() && !params.force {
        return Err(RuleError::OrgInUse {
            org: name.to_owned(),
            members: removed,
        });
    }
    for (email, membership) in &memberships {
        if let Some(hash) = &membership.token_hash {
            revoke_token(txn, hash)?;
        }
        txn.delete_membership(name, email, membership)?;
    }
    txn.delete_org(name)?;
    let mut detail = Vec::new();
    if !removed.is_empty() {
        detail.push(format!("removed {}", removed.join(", ")));
    }
    if !invitations.is_empty() {
        detail.push(format!(
            "revoked the invitations of {}",
            invitations.join(", ")
        ));
    }
    let mut entry =
        audit::Entry::new(audit::actor(&actor), "organization.delete", now).organization(name);
    if !detail.is_empty() {
        entry = entry.detail(detail.join("; "));
    }
    entry.append(txn)?;
    Ok(OrgDeleted {
        org: name.to_owned(),
        removed,
        invitations,
    })
}

/// The organizations the caller can act in, with their role and which one is current.
pub fn list(reader: &impl Reader, caller: &Caller, now: Millis) -> Result<OrgList, RuleError> {
    let actor = authenticate(reader, caller)?;
    let current = current_org(reader, &actor, now)?;
    let mut orgs = Vec::new();
    for name in visible_orgs(reader, &actor, now)? {
        let role = match &actor.email {
            Some(email) => reader
                .membership(&name, email)?
                .and_then(|m| m.acting_role(caller.uid, now)),
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
pub fn use_org(
    txn: &impl Changes,
    caller: &Caller,
    name: &str,
    now: Millis,
) -> Result<OrgUsed, RuleError> {
    let actor = authenticate(txn, caller)?;
    let org = in_org(txn, &actor, Some(name), now)?.org;
    txn.set_current_org(caller.uid, &org)?;
    Ok(OrgUsed { org })
}

/// `org rename`: a superuser renames an organization to a free, valid name. Everything
/// filed under its name moves with it (memberships, invitations and their URLs, `org use`,
/// its feed and its audit log); the records and events written before keep the old name,
/// as history. The feed tells of it once (`org.renamed`).
pub fn rename(
    txn: &impl Changes,
    caller: &Caller,
    params: &OrgRenameParams,
    now: Millis,
) -> Result<OrgRenamed, RuleError> {
    let actor = authenticate(txn, caller)?;
    caller.require_superuser("renaming an organization")?;
    txn.act_as(&audit::actor(&actor));
    let (old, new) = (params.name.as_str(), params.new_name.as_str());
    if txn.org(old)?.is_none() {
        return Err(RuleError::OrgNotFound(old.to_owned()));
    }
    if !valid_org_name(new) {
        let shown: String = new.chars().take(80).collect();
        return Err(RuleError::BadRequest(format!(
            "{shown:?} is not a valid organization name: use 1 to 63 lowercase letters, digits and dashes, starting with a letter"
        )));
    }
    if old == new {
        return Err(RuleError::BadRequest(format!("{old} is already its name")));
    }
    if txn.org(new)?.is_some() {
        return Err(RuleError::OrgExists(new.to_owned()));
    }
    let memberships = txn.members(old)?.len();
    txn.rename_org(old, new)?;
    audit::Entry::new(audit::actor(&actor), "organization.rename", now)
        .organization(new)
        .detail(format!("renamed from {old}"))
        .append(txn)?;
    Ok(OrgRenamed {
        org: new.to_owned(),
        previous: old.to_owned(),
        memberships: u64::try_from(memberships).unwrap_or(u64::MAX),
    })
}

/// `org map-group`: a superuser maps the Unix group `gid` (called `name` by NSS) to `role`
/// in an organization: its users act there with that role, without an invitation, a
/// membership and a mapping combining to the higher role. Mapping a mapped group again
/// changes its role. A host-level fact, so an organization's admins cannot make it; and an
/// admin by a group does not count for the last-admin rule (the group is edited outside
/// the daemon, and may empty at any moment).
pub fn map_group(
    txn: &impl Changes,
    caller: &Caller,
    params: &OrgMapGroupParams,
    (gid, name): (u32, String),
    now: Millis,
) -> Result<GroupMapped, RuleError> {
    let actor = authenticate(txn, caller)?;
    caller.require_superuser("mapping Unix groups")?;
    txn.act_as(&audit::actor(&actor));
    let org = params.name.as_str();
    let mut record = txn
        .org(org)?
        .ok_or_else(|| RuleError::OrgNotFound(org.to_owned()))?;
    let previous_role = record
        .groups
        .iter()
        .find(|map| map.gid == gid)
        .map(|map| map.role);
    record.groups.retain(|map| map.gid != gid);
    record.groups.push(GroupMap {
        gid,
        name: name.clone(),
        role: params.role,
        by: actor.label(),
        at: now,
    });
    record.groups.sort_by_key(|map| map.gid);
    txn.put_org(org, &record)?;
    let detail = match previous_role {
        Some(was) => format!("Unix group {name} (gid {gid}): {was} -> {}", params.role),
        None => format!("Unix group {name} (gid {gid}) -> {}", params.role),
    };
    audit::Entry::new(audit::actor(&actor), "organization.group.map", now)
        .organization(org)
        .detail(detail)
        .append(txn)?;
    Ok(GroupMapped {
        org: org.to_owned(),
        group: name,
        gid,
        role: params.role,
        previous_role,
    })
}

/// `org unmap-group`: a superuser ends a group's mapping, named as it was mapped or by its
/// gid (so that a group deleted from the host can still be unmapped). Its users' next
/// requests are judged without it.
pub fn unmap_group(
    txn: &impl Changes,
    caller: &Caller,
    params: &OrgUnmapGroupParams,
    now: Millis,
) -> Result<GroupUnmapped, RuleError> {
    let actor = authenticate(txn, caller)?;
    caller.require_superuser("unmapping Unix groups")?;
    txn.act_as(&audit::actor(&actor));
    let org = params.name.as_str();
    let mut record = txn
        .org(org)?
        .ok_or_else(|| RuleError::OrgNotFound(org.to_owned()))?;
    let named = |map: &GroupMap| map.name == params.group || map.gid.to_string() == params.group;
    let Some(map) = record.groups.iter().find(|map| named(map)).cloned() else {
        return Err(RuleError::NotMapped {
            org: org.to_owned(),
            group: params.group.clone(),
        });
    };
    record.groups.retain(|kept| kept.gid != map.gid);
    txn.put_org(org, &record)?;
    audit::Entry::new(audit::actor(&actor), "organization.group.unmap", now)
        .organization(org)
        .detail(format!(
            "Unix group {} (gid {}), was {}",
            map.name, map.gid, map.role
        ))
        .append(txn)?;
    Ok(GroupUnmapped {
        org: org.to_owned(),
        group: map.name,
        gid: map.gid,
        role: map.role,
    })
}
