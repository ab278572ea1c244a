//! Invitations (DESIGN §4): `user.invite`, `account.activate`, and the sweeper's expiry.
//!
//! A token's text is returned once, in the invitation; the store keeps its SHA-256 only.
//! Spent tokens stay as hashes with their fate, so a second use is told precisely why it
//! fails.

use std::time::Duration;

use compartmentctl::email::Email;
use compartmentctl::wire::{
    token_from_url_or_token, AccountStatus, Activated, Invitation, MemberStatus, Role,
    UserInviteParams,
};

use super::identity::{authenticate, in_org, Actor};
use super::{audit, millis, parse_email, Caller, Policy, RuleError, MAX_INVITATION_TTL};
use crate::clock::rfc3339;
use crate::store::{
    AccountRecord, AuditRecord, MembershipRecord, Millis, TokenHash, TokenRecord, TokenState,
    Writer,
};
use crate::token::{hash_text, looks_like_token, Token};

/// `user invite`: admins only; the role at most the inviter's own.
pub fn invite(
    txn: &impl Writer,
    caller: Caller,
    params: &UserInviteParams,
    token: &Token,
    policy: &Policy,
    now: Millis,
) -> Result<Invitation, RuleError> {
    let actor = authenticate(txn, caller)?;
    let here = in_org(txn, &actor, params.org.as_deref())?;
    here.require(Role::Admin, "inviting users to")?;
    here.may_grant(params.role)?;
    let email = parse_email(&params.email)?;
    let ttl = invitation_ttl(params.expires_in.as_deref(), policy)?;
    let existing = txn.membership(&here.org, email.as_str())?;
    if let Some(existing) = &existing {
        here.may_change(email.as_str(), existing.role)?;
        match existing.status_at(now) {
            MemberStatus::Active => {
                return Err(RuleError::AlreadyMember {
                    org: here.org,
                    email: email.to_string(),
                })
            }
            MemberStatus::Invited if !params.resend => {
                return Err(RuleError::AlreadyInvited {
                    org: here.org,
                    email: email.to_string(),
                })
            }
            MemberStatus::Invited | MemberStatus::Expired => {}
        }
    }
    let action = if existing.is_some() {
        "user.reinvite"
    } else {
        "user.invite"
    };
    let invitation = add_member(
        txn,
        AddMember {
            org: &here.org,
            email: &email,
            role: params.role,
            invited_by: &actor,
            ttl,
            replacing: existing.as_ref(),
        },
        token,
        policy,
        now,
    )?;
    let detail = format!("role {}", params.role);
    audit(
        txn,
        Some(&actor),
        action,
        &here.org,
        Some(email.as_str()),
        Some(detail),
        now,
    )?;
    Ok(invitation)
}

/// The lifetime an inviter asked for, within (0, 30 days]; the daemon's default if none.
fn invitation_ttl(expires_in: Option<&str>, policy: &Policy) -> Result<Duration, RuleError> {
    let Some(text) = expires_in else {
        return Ok(policy.invitation_ttl);
    };
    let ttl = humantime::parse_duration(text).map_err(|err| {
        let shown: String = text.chars().take(40).collect();
        RuleError::BadRequest(format!(
            "{shown:?} is not a duration ({err}); write it like 2h, 3days or 1week"
        ))
    })?;
    if ttl.is_zero() || ttl > MAX_INVITATION_TTL {
        return Err(RuleError::BadRequest(format!(
            "an invitation must expire within 30 days, not in {}",
            humantime::format_duration(ttl)
        )));
    }
    Ok(ttl)
}

/// A membership to write by [`add_member`].
pub(super) struct AddMember<'a> {
    pub org: &'a str,
    pub email: &'a Email,
    pub role: Role,
    pub invited_by: &'a Actor,
    pub ttl: Duration,
    /// The membership this one replaces (a resend or a re-invitation after expiry).
    pub replacing: Option<&'a MembershipRecord>,
}

/// Writes a membership for an invitation: active at once when the account is already
/// active, otherwise invited with `token`, whose hash alone is stored. A token the
/// replaced membership held is revoked.
pub(super) fn add_member(
    txn: &impl Writer,
    new: AddMember<'_>,
    token: &Token,
    policy: &Policy,
    now: Millis,
) -> Result<Invitation, RuleError> {
    let email = new.email.as_str();
    if let Some(hash) = new.replacing.and_then(|m| m.token_hash.as_ref()) {
        revoke_token(txn, hash)?;
    }
    let account = txn.account(email)?;
    let already_active = matches!(&account, Some(a) if a.status == AccountStatus::Active);
    if account.is_none() {
        txn.put_account(
            email,
            &AccountRecord {
                status: AccountStatus::Pending,
                uid: None,
                created_at: now,
                activated_at: None,
            },
        )?;
    }
    let mut membership = MembershipRecord {
        role: new.role,
        status: MemberStatus::Active,
        invited_by: new.invited_by.label(),
        invited_at: now,
        expires_at: None,
        token_hash: None,
    };
    let mut invitation = Invitation {
        org: new.org.to_owned(),
        email: email.to_owned(),
        role: new.role,
        status: MemberStatus::Active,
        activation_url: None,
        expires_at: None,
    };
    if !already_active {
        let expires_at = now.saturating_add(millis(new.ttl));
        let hash = token.hash();
        txn.put_token(
            &hash,
            &TokenRecord {
                org: new.org.to_owned(),
                email: email.to_owned(),
                expires_at,
                state: TokenState::Pending,
            },
        )?;
        membership.status = MemberStatus::Invited;
        membership.expires_at = Some(expires_at);
        membership.token_hash = Some(hash);
        invitation.status = MemberStatus::Invited;
        invitation.activation_url = Some(format!(
            "{}/activate?token={}",
            policy.public_url,
            token.as_str()
        ));
        invitation.expires_at = Some(rfc3339(expires_at));
    }
    txn.put_membership(new.org, email, &membership, new.replacing)?;
    Ok(invitation)
}

/// Marks a token unusable because its invitation was replaced or removed.
pub(super) fn revoke_token(txn: &impl Writer, hash: &TokenHash) -> Result<(), RuleError> {
    set_token_state(txn, hash, TokenState::Revoked)
}

fn set_token_state(
    txn: &impl Writer,
    hash: &TokenHash,
    state: TokenState,
) -> Result<(), RuleError> {
    if let Some(mut record) = txn.token(hash)? {
        if record.state == TokenState::Pending {
            record.state = state;
            txn.put_token(hash, &record)?;
        }
    }
    Ok(())
}

/// `activate`: spends a token (single use, unexpired at `now` whether or not the sweeper
/// has run), binds the caller's uid to the account and makes the membership active.
pub fn activate(
    txn: &impl Writer,
    caller: Caller,
    url_or_token: &str,
    now: Millis,
) -> Result<Activated, RuleError> {
    let text = token_from_url_or_token(url_or_token);
    if !looks_like_token(text) {
        return Err(RuleError::InvalidToken);
    }
    let hash = hash_text(text);
    let Some(mut token) = txn.token(&hash)? else {
        return Err(RuleError::InvalidToken);
    };
    match token.state {
        TokenState::Pending if token.expires_at <= now => {
            return Err(RuleError::TokenExpired {
                at: token.expires_at,
            })
        }
        TokenState::Pending => {}
        TokenState::Used => return Err(RuleError::TokenUsed),
        TokenState::Revoked => return Err(RuleError::TokenRevoked),
        TokenState::Expired => {
            return Err(RuleError::TokenExpired {
                at: token.expires_at,
            })
        }
    }
    let (org, email) = (token.org.clone(), token.email.clone());
    let membership = txn
        .membership(&org, &email)?
        .filter(|m| m.status == MemberStatus::Invited && m.token_hash == Some(hash));
    let Some(membership) = membership else {
        return Err(RuleError::TokenRevoked);
    };
    if caller.superuser {
        return Err(RuleError::BindingConflict(format!(
            "uid {} is a superuser and needs no account; run activate as the invited person's own Unix user",
            caller.uid
        )));
    }
    if let Some(bound) = txn.bound_email(caller.uid)? {
        if bound != email {
            return Err(RuleError::BindingConflict(format!(
                "uid {} is already bound to {bound}; each account is activated by its own Unix user",
                caller.uid
            )));
        }
    }
    let mut account = txn.account(&email)?.unwrap_or(AccountRecord {
        status: AccountStatus::Pending,
        uid: None,
        created_at: now,
        activated_at: None,
    });
    if let Some(uid) = account.uid.filter(|&uid| uid != caller.uid) {
        return Err(RuleError::BindingConflict(format!(
            "{email} is already bound to another Unix user (uid {uid})"
        )));
    }
    if account.status != AccountStatus::Active {
        account.status = AccountStatus::Active;
        account.activated_at = Some(now);
    }
    account.uid = Some(caller.uid);
    txn.put_account(&email, &account)?;
    txn.bind_uid(caller.uid, &email)?;

    let mut active = membership.clone();
    active.status = MemberStatus::Active;
    active.expires_at = None;
    active.token_hash = None;
    txn.put_membership(&org, &email, &active, Some(&membership))?;
    token.state = TokenState::Used;
    txn.put_token(&hash, &token)?;

    let actor = Actor {
        caller,
        email: Some(email.clone()),
    };
    audit(
        txn,
        Some(&actor),
        "account.activate",
        &org,
        Some(&email),
        None,
        now,
    )?;
    Ok(Activated {
        org,
        email,
        role: active.role,
    })
}

/// Marks every invitation due at `now` as expired and spends its token; returns how many.
/// Costs what expired, not what exists: it walks the expiry index from its start.
pub fn expire_due(txn: &impl Writer, now: Millis) -> Result<usize, RuleError> {
    let due = txn.due_invitations(now)?;
    for (org, email) in &due {
        let Some(membership) = txn.membership(org, email)? else {
            continue;
        };
        if let Some(hash) = &membership.token_hash {
            set_token_state(txn, hash, TokenState::Expired)?;
        }
        let mut expired = membership.clone();
        expired.status = MemberStatus::Expired;
        expired.token_hash = None;
        txn.put_membership(org, email, &expired, Some(&membership))?;
        txn.append_audit(&AuditRecord {
            at: now,
            uid: None,
            pid: None,
            action: "invitation.expire".into(),
            org: Some(org.clone()),
            target: Some(email.clone()),
            detail: None,
        })?;
    }
    Ok(due.len())
}
