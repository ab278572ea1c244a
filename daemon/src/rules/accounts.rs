//! Accounts and their bindings, for superusers (break-glass): `account.list`,
//! `account.show`, `account.unbind` and `account.bind`.
//!
//! Unbinding frees the uid and the account; the account's active memberships stay pinned
//! to the uid they were activated for, so a later binding made through some organization's
//! invitation inherits none of them. Binding by a superuser is the one way to carry them
//! over: it vouches for the new holder.

use compartmentctl::wire::{
    AccountBindParams, AccountBinding, AccountDetail, AccountList, AccountStatus, MemberStatus,
    OrgMembership,
};

use super::{parse_email, refuse_root, Caller, RuleError};
use crate::clock::rfc3339;
use crate::store::{
    AccountRecord, AuditRecord, BindingRecord, Changes, Millis, Provenance, Reader, UnixUser,
};
use crate::users::Directory;

fn superuser_only(caller: &Caller, action: &'static str) -> Result<(), RuleError> {
    if caller.superuser {
        Ok(())
    } else {
        Err(RuleError::SuperuserOnly { action })
    }
}

/// Every account with its binding and memberships.
pub fn list(
    reader: &impl Reader,
    caller: &Caller,
    users: &dyn Directory,
    now: Millis,
) -> Result<AccountList, RuleError> {
    superuser_only(caller, "listing accounts")?;
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
    superuser_only(caller, "showing accounts")?;
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
    superuser_only(caller, "unbinding accounts")?;
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
    })
}

/// Binds the account to `user` on a superuser's word, moving it from any uid that held it,
/// and carries the account's active memberships over to the new uid.
pub fn bind(
    txn: &impl Changes,
    caller: &Caller,
    params: &AccountBindParams,
    user: &UnixUser,
    now: Millis,
) -> Result<AccountBinding, RuleError> {
    superuser_only(caller, "binding accounts")?;
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
    if let Some(old) = account.uid.filter(|&old| old != user.uid) {
        if txn.binding(old)?.is_some_and(|b| b.email == email) {
            txn.delete_binding(old)?;
            txn.clear_current_org(old)?;
        }
    }
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
    for org in txn.orgs_of(email)? {
        if let Some(old) = txn.membership(&org, email)? {
            if old.status == MemberStatus::Active && old.uid != Some(user.uid) {
                let mut moved = old.clone();
                moved.uid = Some(user.uid);
                txn.put_membership(&org, email, &moved, Some(&old))?;
            }
        }
    }
    append(
        txn,
        caller,
        "account.bind",
        email,
        format!("uid {} ({})", user.uid, user.name),
        now,
    )?;
    Ok(AccountBinding {
        email: email.to_owned(),
        uid: user.uid,
        unix_user: Some(user.name.clone()),
    })
}

fn append(
    txn: &impl Changes,
    caller: &Caller,
    action: &str,
    email: &str,
    detail: String,
    now: Millis,
) -> Result<(), RuleError> {
    txn.append_audit(&AuditRecord {
        at: now,
        uid: Some(caller.uid),
        pid: caller.pid,
        action: action.to_owned(),
        org: None,
        target: Some(email.to_owned()),
        detail: Some(detail),
    })?;
    Ok(())
}
