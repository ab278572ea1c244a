//! Invitations (DESIGN §4): `user.invite`, `account.activate`, and the sweeper's expiry.
//!
//! A token's text is returned once, in the invitation; the store keeps only a key derived
//! from it (`token::key_of`: its issue time and a hash of the text).
//! Spent tokens stay as hashes with their fate, so a second use is told precisely why it
//! fails.

use std::time::Duration;

use compartmentctl::email::Email;
use compartmentctl::wire::{
    methods, token_from_url_or_token, AccountStatus, Activated, AuditState, Gated, Invitation,
    MemberStatus, Role, UserInviteParams,
};

use super::identity::{authenticate, in_org, may_vouch_for, Actor};
use super::{
    audit, lifecycle, millis, parse_email, refuse_root, revoke_token, set_token_state, terms,
    Caller, Policy, RuleError, Unbound, MAX_INVITATION_TTL,
};
use crate::clock::{is_due, rfc3339};
use crate::store::{
    AccountRecord, BindingRecord, Changes, MembershipRecord, Millis, Provenance, Reader, TokenHash,
    TokenRecord, TokenState, UnixUser,
};
use crate::token::{key_of, legacy_key, looks_like_token, Token};

/// `user invite`: admins only; the role at most the inviter's own. `named` is the Unix
/// user `--unix-user` named, as NSS resolved it before the change was queued.
pub fn invite(
    txn: &impl Changes,
    caller: &Caller,
    params: &UserInviteParams,
    named: Option<UnixUser>,
    token: &Token,
    policy: &Policy,
    now: Millis,
) -> Result<Invitation, RuleError> {
    let actor = authenticate(txn, caller)?;
    txn.act_as(&audit::actor(&actor));
    let here = in_org(txn, &actor, params.org.as_deref(), now)?;
    here.require(methods::UserInvite::NEEDS)?;
    here.may_grant(params.role)?;
    let email = parse_email(&params.email)?;
    let ttl = invitation_ttl(params.expires_in.as_deref(), policy)?;
    let access_until = params
        .access_until
        .as_deref()
        .map(|text| terms::parse_until(text, "--access-until", now))
        .transpose()?;
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
    let before = audit::state(existing.as_ref(), now);
    let invitation = add_member(
        txn,
        AddMember {
            org: &here.org,
            email: &email,
            role: params.role,
            invited_by: &actor,
            named,
            ttl,
            access_until,
            replacing: existing.as_ref(),
        },
        token,
        policy,
        now,
    )?;
    let mut detail = if existing.is_some() {
        format!("sent again, role {}", params.role)
    } else {
        format!("role {}", params.role)
    };
    if let Some(user) = &invitation.redeemable_by {
        detail.push_str(&format!(", redeemable by {user}"));
    }
    if let Some(until) = &invitation.access_until {
        detail.push_str(&format!(", access until {until}"));
    }
    let after = AuditState {
        role: Some(params.role),
        status: invitation.status.to_string(),
    };
    audit::Entry::new(audit::actor(&actor), "organization.user.invite", now)
        .org(&here.org)
        .account(email.as_str())
        .change(before, after)
        .detail(detail)
        .append(txn)?;
    Ok(invitation)
}

/// The lifetime an inviter asked for, within (0, 30 days]; the daemon's default if none.
pub(super) fn invitation_ttl(
    expires_in: Option<&str>,
    policy: &Policy,
) -> Result<Duration, RuleError> {
    let Some(text) = expires_in else {
        return Ok(policy.invitation_ttl);
    };
    let ttl = humantime::parse_duration(text).map_err(|err| {
        let shown: String = text.chars().take(40).collect();
        RuleError::BadRequest(format!(
            "{shown:?} is not a duration ({err}); write it like 2h, 3days or 1week"
        ))
    })?;
    if ttl < Duration::from_secs(1) || ttl > MAX_INVITATION_TTL {
        return Err(RuleError::BadRequest(format!(
            "an invitation must expire in 1 second to 30 days, not in {}",
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
    /// The only Unix user who may redeem the invitation (`--unix-user`).
    pub named: Option<UnixUser>,
    pub ttl: Duration,
    /// When the membership ends by itself (`--access-until`).
    pub access_until: Option<Millis>,
    /// The membership this one replaces (a resend or a re-invitation after expiry).
    pub replacing: Option<&'a MembershipRecord>,
}

/// Writes a membership for an invitation (DESIGN §4). An account already bound joins at
/// once when the inviter may vouch for its binding; otherwise, and for every account not
/// yet bound, the membership waits for `token`, whose hash alone is stored, and which only
/// the account's holder (or the user `--unix-user` named) may redeem. A token the replaced
/// membership held is revoked.
pub(super) fn add_member(
    txn: &impl Changes,
    new: AddMember<'_>,
    token: &Token,
    policy: &Policy,
    now: Millis,
) -> Result<Invitation, RuleError> {
    let email = new.email.as_str();
    let inviter = &new.invited_by.caller;
    if let Some(named) = &new.named {
        refuse_unbindable(txn, named, email)?;
    }
    let holder = match txn.account(email)? {
        Some(account) => holder_of(txn, email, &account)?,
        None => {
            txn.put_account(
                email,
                &AccountRecord {
                    status: AccountStatus::Pending,
                    uid: None,
                    created_at: now,
                    activated_at: None,
                },
            )?;
            None
        }
    };
    // Whom the URL is for: the account's holder, whose consent the URL asks for, or the
    // user the inviter named; they must agree.
    let redeemer = match (&holder, new.named) {
        (Some((uid, binding)), named) => {
            let Some(name) = binding.user_name.clone() else {
                return Err(RuleError::BindingConflict(format!(
                    "{email} is bound to uid {uid}, whose user no longer exists; a superuser can unbind it (compartment account unbind {email})"
                )));
            };
            if named.is_some_and(|n| n.uid != *uid || n.name != name) {
                return Err(RuleError::BindingConflict(format!(
                    "{email} is already held by Unix user {name}; a superuser can unbind it (compartment account unbind {email})"
                )));
            }
            Some(UnixUser { uid: *uid, name })
        }
        (None, named) => named,
    };
    if let Some(hash) = new.replacing.and_then(|m| m.token_hash.as_ref()) {
        revoke_token(txn, hash)?;
    }
    let vouched = holder
        .as_ref()
        .is_some_and(|(_, binding)| may_vouch_for(binding, inviter, new.org));
    let mut membership = MembershipRecord {
        role: new.role,
        uid: None,
        status: MemberStatus::Active,
        invited_by: new.invited_by.label(),
        invited_at: now,
        expires_at: None,
        token_hash: None,
        terms: terms::fresh_terms(new.access_until, now),
    };
    let mut invitation = Invitation {
        org: new.org.to_owned(),
        email: email.to_owned(),
        role: new.role,
        status: MemberStatus::Active,
        activation_url: None,
        expires_at: None,
        held_by: holder.as_ref().and_then(|(_, b)| b.user_name.clone()),
        redeemable_by: None,
        access_until: new.access_until.map(rfc3339),
    };
    if vouched {
        membership.uid = redeemer.map(|r| r.uid);
    } else {
        let expires_at = now.saturating_add(millis(new.ttl));
        let hash = token.key();
        invitation.redeemable_by = redeemer.as_ref().map(|r| r.name.clone());
        txn.put_token(
            &hash,
            &TokenRecord {
                org: new.org.to_owned(),
                email: email.to_owned(),
                expires_at,
                state: TokenState::Pending,
                redeemer,
                issued_by_superuser: inviter.superuser,
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

/// The uid bound to an active account and its binding, if it has one.
fn holder_of(
    reader: &impl Reader,
    email: &str,
    account: &AccountRecord,
) -> Result<Option<(u32, BindingRecord)>, RuleError> {
    let Some(uid) = account.uid else {
        return Ok(None);
    };
    Ok(reader
        .binding(uid)?
        .filter(|b| b.email == email)
        .map(|b| (uid, b)))
}

/// Refuses to name a Unix user who cannot hold `email`: a superuser, or one that already
/// holds another account.
fn refuse_unbindable(reader: &impl Reader, named: &UnixUser, email: &str) -> Result<(), RuleError> {
    refuse_root(named)?;
    match reader.binding(named.uid)? {
        Some(binding) if binding.email != email => Err(RuleError::BindingConflict(format!(
            "Unix user {} already holds another account; each Unix user holds one",
            named.name
        ))),
        _ => Ok(()),
    }
}

/// The token `url_or_token` names (a URL or the token itself), and its store key: `None`
/// when it is not one this daemon issued.
fn find_token(
    reader: &impl Reader,
    url_or_token: &str,
) -> crate::store::Result<Option<(TokenHash, TokenRecord)>> {
    let text = token_from_url_or_token(url_or_token);
    if !looks_like_token(text) {
        return Ok(None);
    }
    // Tokens issued before schema 3 are stored under their text's SHA-256.
    for hash in [key_of(text), legacy_key(text)] {
        if let Some(token) = reader.token(&hash)? {
            return Ok(Some((hash, token)));
        }
    }
    Ok(None)
}

/// What the activation page may tell about a token at `now`, without consuming it
/// (DESIGN §10): everything the invitee needs for a valid one; for any other, only which
/// kind of not valid it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preview {
    Valid {
        org: String,
        email: String,
        role: Role,
        expires_at: Millis,
        /// When the membership's access ends by itself, if it does.
        access_until: Option<Millis>,
        /// The only Unix user who may redeem it (`--unix-user`).
        redeemer: Option<String>,
    },
    Expired,
    Used,
    Revoked,
    Unknown,
}

/// [`Preview`] of `url_or_token` at `now`, judged as [`activate`] judges it (but for who
/// redeems it, which only the host knows).
pub fn preview(
    reader: &impl Reader,
    url_or_token: &str,
    now: Millis,
) -> crate::store::Result<Preview> {
    let Some((hash, token)) = find_token(reader, url_or_token)? else {
        return Ok(Preview::Unknown);
    };
    match token.state {
        TokenState::Pending if is_due(token.expires_at, now) => return Ok(Preview::Expired),
        TokenState::Pending => {}
        TokenState::Used => return Ok(Preview::Used),
        TokenState::Revoked => return Ok(Preview::Revoked),
        TokenState::Expired => return Ok(Preview::Expired),
    }
    let membership = reader
        .membership(&token.org, &token.email)?
        .filter(|m| m.status == MemberStatus::Invited && m.token_hash == Some(hash));
    let Some(membership) = membership else {
        return Ok(Preview::Revoked);
    };
    Ok(Preview::Valid {
        role: membership.role,
        expires_at: token.expires_at,
        access_until: membership.terms.access_until.map(|deadline| deadline.at),
        redeemer: token.redeemer.map(|user| user.name),
        org: token.org,
        email: token.email,
    })
}

/// `activate`: spends a token (single use, unexpired at `now` whether or not the sweeper
/// has run, redeemable by this caller), binds the caller's uid to the account if it is not
/// yet, and makes active exactly the membership the token was issued for, for this uid.
pub fn activate(
    txn: &impl Changes,
    caller: &Caller,
    url_or_token: &str,
    now: Millis,
) -> Result<Activated, RuleError> {
    let Some((hash, mut token)) = find_token(txn, url_or_token)? else {
        return Err(RuleError::InvalidToken);
    };
    match token.state {
        TokenState::Pending if is_due(token.expires_at, now) => {
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
    if let Some(redeemer) = &token.redeemer {
        if redeemer.uid != caller.uid || caller.user.as_deref() != Some(redeemer.name.as_str()) {
            return Err(RuleError::NotTheRedeemer);
        }
    }
    let Some(user_name) = caller.user.as_deref() else {
        return Err(RuleError::BindingConflict(format!(
            "uid {} has no Unix user (deleted, nobody or unmapped), so it cannot be bound to an account",
            caller.uid
        )));
    };
    let binding = match txn.binding(caller.uid)? {
        Some(binding) if binding.user_name.as_deref() != Some(user_name) => {
            return Err(RuleError::Unauthenticated {
                uid: caller.uid,
                why: Unbound::UserChanged {
                    recorded: binding.user_name,
                    now: Some(user_name.to_owned()),
                },
            })
        }
        Some(binding) if binding.email != email => {
            return Err(RuleError::BindingConflict(format!(
                "uid {} is already bound to {}; each account is activated by its own Unix user",
                caller.uid, binding.email
            )))
        }
        binding => binding,
    };
    let mut account = txn.account(&email)?.unwrap_or(AccountRecord {
        status: AccountStatus::Pending,
        uid: None,
        created_at: now,
        activated_at: None,
    });
    if account.uid.is_some_and(|uid| uid != caller.uid) {
        return Err(RuleError::BindingConflict(format!(
            "{email} is already bound to another Unix user; a superuser can unbind it (compartment account unbind {email})"
        )));
    }
    let actor = Actor {
        caller: caller.clone(),
        email: Some(email.clone()),
    };
    txn.act_as(&audit::actor(&actor));
    if binding.is_none() {
        let provenance = if token.issued_by_superuser {
            Provenance::Superuser
        } else {
            Provenance::Org(org.clone())
        };
        txn.put_binding(
            caller.uid,
            &BindingRecord {
                email: email.clone(),
                user_name: Some(user_name.to_owned()),
                bound_at: now,
                provenance,
            },
        )?;
    }
    if account.status != AccountStatus::Active {
        account.status = AccountStatus::Active;
        account.activated_at = Some(now);
    }
    account.uid = Some(caller.uid);
    txn.put_account(&email, &account)?;

    let mut active = membership.clone();
    active.status = MemberStatus::Active;
    active.uid = Some(caller.uid);
    active.expires_at = None;
    active.token_hash = None;
    txn.put_membership(&org, &email, &active, Some(&membership))?;
    token.state = TokenState::Used;
    txn.put_token(&hash, &token)?;

    audit::Entry::new(audit::actor(&actor), "account.activate", now)
        .org(&org)
        .account(&email)
        .change(
            audit::state(Some(&membership), now),
            audit::state(Some(&active), now),
        )
        .detail(format!("Unix user {user_name} (uid {})", caller.uid))
        .append(txn)?;
    Ok(Activated {
        org,
        email,
        role: active.role,
    })
}

/// Marks every invitation due at `now` as expired and spends its token; returns how many.
/// Costs what expired, not what exists: it walks the expiry index from its start.
pub fn expire_due(txn: &impl Changes, now: Millis) -> Result<usize, RuleError> {
    expire_due_up_to(txn, now, usize::MAX)
}

/// [`expire_due`] for at most `limit` due memberships, the earliest due first, so that a
/// large sweep is split into transactions other changes can come between: invitations that
/// lapsed are marked expired, and what their terms made due is recorded
/// ([`lifecycle::settle`]). Counts only the memberships it changed, so a stray index entry
/// cannot make the sweeper loop on full chunks.
pub fn expire_due_up_to(txn: &impl Changes, now: Millis, limit: usize) -> Result<usize, RuleError> {
    let due = txn.due_memberships_up_to(now, limit)?;
    txn.act_as(&audit::daemon());
    let mut changed_count = 0;
    for (org, email) in &due {
        let Some(mut membership) = txn.membership(org, email)? else {
            continue;
        };
        let lapsed = membership.status == MemberStatus::Invited
            && membership.expires_at.is_some_and(|at| is_due(at, now));
        if lapsed {
            if let Some(hash) = &membership.token_hash {
                set_token_state(txn, hash, TokenState::Expired)?;
            }
            let mut expired = membership.clone();
            expired.status = MemberStatus::Expired;
            expired.token_hash = None;
            txn.put_membership(org, email, &expired, Some(&membership))?;
            audit::Entry::new(audit::daemon(), "organization.invitation.expire", now)
                .org(org)
                .account(email)
                .change(
                    audit::state(Some(&membership), now.saturating_sub(1)),
                    audit::state(Some(&expired), now),
                )
                .append(txn)?;
            membership = expired;
        }
        let settled = lifecycle::settle(txn, org, email, &membership, now)?;
        changed_count += usize::from(lapsed || settled);
    }
    Ok(changed_count)
}

/// Forgets at most `limit` spent tokens that no longer matter at `now` (see
/// [`crate::store::SPENT_TOKEN_MEMORY`]), earliest first; returns how many. Costs what it
/// forgets: it walks the spent tokens' index from its start.
pub fn forget_spent_tokens(
    txn: &impl Changes,
    now: Millis,
    limit: usize,
) -> Result<usize, RuleError> {
    let due = txn.spent_tokens_due(now, limit)?;
    for hash in &due {
        txn.delete_token(hash)?;
    }
    Ok(due.len())
}
