//! Members of an organization: `user.list`, `user.remove`, `role.grant`.

use compartmentctl::wire::{
    Granted, Member, MemberList, MemberStatus, Removed, Role, RoleGrantParams, UserRemoveParams,
};

use super::error::AdminLoss;
use super::identity::{authenticate, in_org};
use super::invitations::revoke_token;
use super::{audit, parse_email, Caller, RuleError};
use crate::clock::rfc3339;
use crate::store::{Changes, MembershipRecord, Millis, Reader};

/// `user list`: every member with role and status; readonly and above.
pub fn list(
    reader: &impl Reader,
    caller: &Caller,
    org: Option<&str>,
    now: Millis,
) -> Result<MemberList, RuleError> {
    let actor = authenticate(reader, caller)?;
    let here = in_org(reader, &actor, org)?;
    here.require(Role::Readonly, "listing the members of")?;
    let mut members = Vec::new();
    for (email, m) in reader.members(&here.org)? {
        let status = m.status_at(now);
        members.push(Member {
            unix_user: unix_user_of(reader, &email, &m)?,
            email,
            role: m.role,
            status,
            expires_at: match status {
                MemberStatus::Active => None,
                MemberStatus::Invited | MemberStatus::Expired => m.expires_at.map(rfc3339),
            },
        });
    }
    Ok(MemberList {
        org: here.org,
        members,
    })
}

/// The Unix user an active member acts as: the name its uid was bound as, while the uid is
/// still bound to this account.
fn unix_user_of(
    reader: &impl Reader,
    email: &str,
    membership: &MembershipRecord,
) -> Result<Option<String>, RuleError> {
    let Some(uid) = membership
        .uid
        .filter(|_| membership.status == MemberStatus::Active)
    else {
        return Ok(None);
    };
    Ok(reader
        .binding(uid)?
        .filter(|b| b.email == email)
        .and_then(|b| b.user_name))
}

/// Active admins of `org`: what the last-admin rule counts.
fn active_admins(reader: &impl Reader, org: &str) -> Result<usize, RuleError> {
    Ok(reader
        .members(org)?
        .iter()
        .filter(|(_, m)| m.is_active_admin())
        .count())
}

/// `user remove`: admins only; never the last active admin. Immediate: the member's next
/// request is judged without the membership, and a pending token dies with it.
pub fn remove(
    txn: &impl Changes,
    caller: &Caller,
    params: &UserRemoveParams,
    now: Millis,
) -> Result<Removed, RuleError> {
    let actor = authenticate(txn, caller)?;
    let here = in_org(txn, &actor, params.org.as_deref())?;
    here.require(Role::Admin, "removing users from")?;
    let email = parse_email(&params.email)?;
    let email = email.as_str();
    let membership = here.member(txn, email)?;
    here.may_change(email, membership.role)?;
    // Counted inside the write transaction, so two admins removing each other at once
    // cannot both succeed: the writer applies one change at a time.
    if membership.is_active_admin() && active_admins(txn, &here.org)? <= 1 {
        return Err(RuleError::LastAdmin {
            org: here.org,
            change: AdminLoss::Removal,
        });
    }
    if let Some(hash) = &membership.token_hash {
        revoke_token(txn, hash)?;
    }
    txn.delete_membership(&here.org, email, &membership)?;
    audit(
        txn,
        Some(&actor),
        "user.remove",
        &here.org,
        Some(email),
        None,
        now,
    )?;
    Ok(Removed {
        org: here.org,
        email: email.to_owned(),
    })
}

/// `role grant`: deployers and admins, capped at their own role, never above a target
/// whose role is above theirs, never demoting the last active admin.
pub fn grant(
    txn: &impl Changes,
    caller: &Caller,
    params: &RoleGrantParams,
    now: Millis,
) -> Result<Granted, RuleError> {
    let actor = authenticate(txn, caller)?;
    let here = in_org(txn, &actor, params.org.as_deref())?;
    here.require(Role::Deployer, "granting roles in")?;
    here.may_grant(params.role)?;
    let email = parse_email(&params.email)?;
    let email = email.as_str();
    let membership = here.member(txn, email)?;
    here.may_change(email, membership.role)?;
    if membership.is_active_admin()
        && params.role < Role::Admin
        && active_admins(txn, &here.org)? <= 1
    {
        return Err(RuleError::LastAdmin {
            org: here.org,
            change: AdminLoss::Demotion,
        });
    }
    let previous_role = membership.role;
    let mut updated = membership.clone();
    updated.role = params.role;
    txn.put_membership(&here.org, email, &updated, Some(&membership))?;
    let detail = format!("{previous_role} -> {}", params.role);
    audit(
        txn,
        Some(&actor),
        "role.grant",
        &here.org,
        Some(email),
        Some(detail),
        now,
    )?;
    Ok(Granted {
        org: here.org,
        email: email.to_owned(),
        role: params.role,
        previous_role,
    })
}
