//! Accounts and their bindings, for superusers (break-glass): `account.list`,
//! `account.show`, `account.unbind`, `account.bind` and `account.delete`.
//!
//! Unbinding frees the uid and the account; the account's active memberships stay pinned
//! to the uid they were activated for, so a later binding made through some organization's
//! invitation inherits none of them. Binding by a superuser is the one way to carry them
//! over: it vouches for the new holder.
//!
//! What it carries without being told to carry everything: a binding's provenance says who
//! vouched that a uid holds an address; a membership says only that the uid holding the
//! account then accepted it. A membership made through a binding only an organization
//! vouched for may have been accepted by a squatter (an organization's admin who invited an
//! address nobody had activated and redeemed it as a uid of their own): moving it would
//! join the address's real owner to that organization without their consent. So a rebind
//! carries the memberships a superuser vouched for (a superuser invited, or the binding they
//! were made through was a superuser's) and leaves the rest pinned to the old uid, saying
//! which, unless the superuser asks for `carry_all`. Organizations vouching for their own
//! bindings is what a squat forges, so it is not enough here.

use compartmentctl::wire::{
    AccountBindParams, AccountBinding, AccountDeleteParams, AccountDeleted, AccountDetail,
    AccountList, AccountRenameParams, AccountRenamed, AccountStatus, BoundMembership, MemberStatus,
    OrgMembership,
};

use super::error::AdminLoss;
use super::members::has_another_admin;
use super::revoke_token;
use super::{parse_email, refuse_root, Caller, RuleError};
use crate::clock::rfc3339;
use crate::store::{AccountRecord, BindingRecord, Changes, Millis, Provenance, Reader, UnixUser};
use crate::users::Directory;

/// Every account with its binding and memberships.
pub fn list(
    reader: &impl Reader,
    caller: &Caller,
    users: &dyn Directory,
    now: Millis,
) -> Result<AccountList, RuleError> {
    caller.require_superuser("listing accounts")?;
    let mut accounts = Vec::new();
    for (email, account) in reader.accounts()? {
        accounts.push(detail(reader, users, email, &account, now)?);
    }
    Ok(AccountList { accounts })
}

/// One account with its binding and memberships.
pub fn show(
    reader: &impl Reader,
    caller: &Caller,
    users: &dyn Directory,
    email: &str,
    now: Millis,
) -> Result<AccountDetail, RuleError> {
    caller.require_superuser("showing accounts")?;
    let email = parse_email(email)?;
    let account = reader
        .account(email.as_str())?
        .ok_or_else(|| RuleError::AccountNotFound(email.to_string()))?;
    detail(reader, users, email.to_string(), &account, now)
}

fn detail(
    reader: &impl Reader,
    users: &dyn Directory,
    email: String,
    account: &AccountRecord,
    now: Millis,
) -> Result<AccountDetail, RuleError> {
    let binding = match account.uid {
        Some(uid) => reader.binding(uid)?.filter(|b| b.email == email),
        None => None,
    };
    let mut memberships = Vec::new();
    for org in reader.orgs_of(&email)? {
        if let Some(m) = reader.membership(&org, &email)? {
            let status = m.status_at(now);
            // Pinned to a uid that no longer holds the account: nobody acts through it.
            let orphaned =
                status == MemberStatus::Active && m.uid.is_some() && m.uid != account.uid;
            memberships.push(OrgMembership {
                org,
                role: m.role,
                status,
                usable: Some(!orphaned),
                blocked: Default::default(),
                group: Default::default(),
            });
        }
    }
    let uid = binding.as_ref().and(account.uid);
    Ok(AccountDetail {
        status: account.status,
        uid,
        unix_user: binding.as_ref().and_then(|b| b.user_name.clone()),
        uid_now_belongs_to: uid.map(|uid| users.name_of(uid)),
        bound_at: binding.as_ref().map(|b| rfc3339(b.bound_at)),
        bound_through: binding.as_ref().map(|b| match &b.provenance {
            Provenance::Superuser => "a superuser".to_owned(),
            Provenance::Org(org) => format!("organization {org}"),
            Provenance::Unknown => "an activation before provenance was recorded".to_owned(),
        }),
        email,
        memberships,
    })
}

/// Frees the account and its uid. The account's memberships stay, pinned to the old uid.
pub fn unbind(
    txn: &impl Changes,
    caller: &Caller,
    email: &str,
    now: Millis,
) -> Result<AccountBinding, RuleError> {
    caller.require_superuser("unbinding accounts")?;
    txn.act_as(&super::audit::caller_as(caller, None));
    let email = parse_email(email)?;
    let email = email.as_str();
    let mut account = txn
        .account(email)?
        .ok_or_else(|| RuleError::AccountNotFound(email.to_owned()))?;
    let Some(uid) = account.uid.take() else {
        return Err(RuleError::BadRequest(format!("{email} is not bound")));
    };
    let binding = txn.binding(uid)?.filter(|b| b.email == email);
    if binding.is_some() {
        txn.delete_binding(uid)?;
        txn.clear_current_org(uid)?;
    }
    txn.put_account(email, &account)?;
    let unix_user = binding.and_then(|b| b.user_name);
    append(
        txn,
        caller,
        "account.unbind",
        email,
        format!("uid {uid} ({})", unix_user.as_deref().unwrap_or("no user")),
        now,
    )?;
    Ok(AccountBinding {
        email: email.to_owned(),
        uid,
        unix_user,
        carried: Vec::new(),
        dropped: Vec::new(),
    })
}

/// Deletes an account that is a member nowhere, or with `force` also its memberships (and
/// their invitations' tokens), never an organization's last active admin; unbinds its uid.
/// What it leaves: the feed's and the audit's records of it, and tokens already spent or
/// revoked, which redeem nothing.
pub fn delete(
    txn: &impl Changes,
    caller: &Caller,
    params: &AccountDeleteParams,
    now: Millis,
) -> Result<AccountDeleted, RuleError> {
    caller.require_superuser("deleting accounts")?;
    txn.act_as(&super::audit::caller_as(caller, None));
    let email = parse_email(&params.email)?;
    let email = email.as_str();
    let account = txn
        .account(email)?
        .ok_or_else(|| RuleError::AccountNotFound(email.to_owned()))?;
    let orgs = txn.orgs_of(email)?;
    if !orgs.is_empty() && !params.force {
        return Err(RuleError::AccountInUse {
            email: email.to_owned(),
            orgs,
        });
    }
    // Every removal judged before any is written, as `user remove` judges one.
    let mut memberships = Vec::with_capacity(orgs.len());
    for org in &orgs {
        let Some(membership) = txn.membership(org, email)? else {
            continue;
        };
        if membership.is_active_admin() && !has_another_admin(txn, org)? {
            return Err(RuleError::LastAdmin {
                org: org.clone(),
                change: AdminLoss::Removal,
            });
        }
        memberships.push((org, membership));
    }
    for (org, membership) in memberships {
        if let Some(hash) = &membership.token_hash {
            revoke_token(txn, hash)?;
        }
        txn.delete_membership(org, email, &membership)?;
    }
    let (mut uid, mut unix_user) = (None, None);
    if let Some(bound) = account.uid {
        if let Some(binding) = txn.binding(bound)?.filter(|b| b.email == email) {
            txn.delete_binding(bound)?;
            txn.clear_current_org(bound)?;
            (uid, unix_user) = (Some(bound), binding.user_name);
        }
    }
    txn.delete_account(email)?;
    let detail = format!(
        "removed from {}; {}",
        match &orgs[..] {
            [] => "no organization".to_owned(),
            orgs => orgs.join(", "),
        },
        match uid {
            Some(uid) => format!(
                "unbound uid {uid} ({})",
                unix_user.as_deref().unwrap_or("no user")
            ),
            None => "bound to no uid".to_owned(),
        }
    );
    append(txn, caller, "account.delete", email, detail, now)?;
    Ok(AccountDeleted {
        email: email.to_owned(),
        removed_from: orgs,
        uid,
        unix_user,
    })
}

/// Binds the account to `user` on a superuser's word, moving it from any uid that held it,
/// and carries over the account's active memberships a superuser vouched for (every one
/// with `carry_all`); the others stay pinned to the uid they were made active for.
pub fn bind(
    txn: &impl Changes,
    caller: &Caller,
    params: &AccountBindParams,
    user: &UnixUser,
    now: Millis,
) -> Result<AccountBinding, RuleError> {
    caller.require_superuser("binding accounts")?;
    txn.act_as(&super::audit::caller_as(caller, None));
    let email = parse_email(&params.email)?;
    let email = email.as_str();
    let mut account = txn
        .account(email)?
        .ok_or_else(|| RuleError::AccountNotFound(email.to_owned()))?;
    refuse_root(user)?;
    if let Some(other) = txn.binding(user.uid)?.filter(|b| b.email != email) {
        return Err(RuleError::BindingConflict(format!(
            "Unix user {} already holds {}; unbind that first (compartment account unbind {})",
            user.name, other.email, other.email
        )));
    }
    // The binding being replaced, read before it goes: whether a superuser made it decides
    // which of the memberships made through it are carried.
    let old_binding = match account.uid {
        Some(old) => txn.binding(old)?.filter(|b| b.email == email),
        None => None,
    };
    if let Some(old) = account.uid.filter(|&old| old != user.uid) {
        if old_binding.is_some() {
            txn.delete_binding(old)?;
            txn.clear_current_org(old)?;
        }
    }
    if account.uid != Some(user.uid) {
        // A uid new to the account starts without a chosen organization.
        txn.clear_current_org(user.uid)?;
    }
    let superuser_binding = old_binding
        .as_ref()
        .is_some_and(|b| b.provenance == Provenance::Superuser);
    let old_uid = account.uid;
    txn.put_binding(
        user.uid,
        &BindingRecord {
            email: email.to_owned(),
            user_name: Some(user.name.clone()),
            bound_at: now,
            provenance: Provenance::Superuser,
        },
    )?;
    if account.status != AccountStatus::Active {
        account.status = AccountStatus::Active;
        account.activated_at = Some(now);
    }
    account.uid = Some(user.uid);
    txn.put_account(email, &account)?;
    let (mut carried, mut dropped) = (Vec::new(), Vec::new());
    for org in txn.orgs_of(email)? {
        let Some(old) = txn.membership(&org, email)? else {
            continue;
        };
        if old.status != MemberStatus::Active || old.uid == Some(user.uid) {
            continue;
        }
        let vouched = invited_by_superuser(&old.invited_by)
            || (superuser_binding && old.uid.is_some() && old.uid == old_uid);
        let entry = BoundMembership {
            org: org.clone(),
            role: old.role,
        };
        if vouched || params.carry_all {
            let mut moved = old.clone();
            moved.uid = Some(user.uid);
            txn.put_membership(&org, email, &moved, Some(&old))?;
            carried.push(entry);
        } else {
            dropped.push(entry);
        }
    }
    let listed = |memberships: &[BoundMembership]| {
        memberships
            .iter()
            .map(|m| format!("{} ({})", m.org, m.role))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut detail = format!("uid {} ({})", user.uid, user.name);
    if !carried.is_empty() {
        detail.push_str(&format!("; carried {}", listed(&carried)));
    }
    if !dropped.is_empty() {
        detail.push_str(&format!(
            "; left pinned to the old uid {}",
            listed(&dropped)
        ));
    }
    append(txn, caller, "account.bind", email, detail, now)?;
    Ok(AccountBinding {
        email: email.to_owned(),
        uid: user.uid,
        unix_user: Some(user.name.clone()),
        carried,
        dropped,
    })
}

/// Whether a membership's `invited_by` names a superuser: only a superuser without an
/// account invites as `uid N` ([`super::identity::Actor::label`]); everyone else invites
/// through their account's address.
fn invited_by_superuser(invited_by: &str) -> bool {
    invited_by
        .strip_prefix("uid ")
        .is_some_and(|uid| uid.parse::<u32>().is_ok())
}

/// Audits `event`, done by a superuser to the account `email`.
fn append(
    txn: &impl Changes,
    caller: &Caller,
    event: &str,
    email: &str,
    detail: String,
    now: Millis,
) -> Result<(), RuleError> {
    super::audit::Entry::new(super::audit::caller_as(caller, None), event, now)
        .account(email)
        .detail(detail)
        .append(txn)
}

/// `account rename`: a superuser changes an account's e-mail to a free one. Its binding,
/// memberships (roles, blocks and ends included) and pending invitations follow, so its
/// user acts on as before; records and events written before keep the old address, as
/// history. The feed tells each of its organizations (`account.renamed`).
pub fn rename(
    txn: &impl Changes,
    caller: &Caller,
    params: &AccountRenameParams,
    now: Millis,
) -> Result<AccountRenamed, RuleError> {
    caller.require_superuser("renaming accounts")?;
    let actor = super::audit::caller_as(caller, None);
    txn.act_as(&actor);
    let old = parse_email(&params.email)?;
    let new = parse_email(&params.new_email)?;
    let (old, new) = (old.as_str(), new.as_str());
    if txn.account(old)?.is_none() {
        return Err(RuleError::AccountNotFound(old.to_owned()));
    }
    if old == new {
        return Err(RuleError::BadRequest(format!(
            "{old} is already its e-mail"
        )));
    }
    if txn.account(new)?.is_some() {
        return Err(RuleError::AccountExists(new.to_owned()));
    }
    let memberships = txn.orgs_of(old)?.len();
    txn.rename_account(old, new)?;
    super::audit::Entry::new(actor, "account.rename", now)
        .account(new)
        .detail(format!("renamed from {old}"))
        .append(txn)?;
    Ok(AccountRenamed {
        email: new.to_owned(),
        previous: old.to_owned(),
        memberships: u64::try_from(memberships).unwrap_or(u64::MAX),
    })
}
