//! What bounds a membership besides its role (DESIGN §4): blocks (`user.block`,
//! `user.unblock`), access that ends by itself (`user invite --access-until`), a role held
//! for a time (`role grant --until`), and the sweeper's recording of each end.
//!
//! Every decision compares a membership's [`Terms`] with `now`
//! ([`crate::store::MembershipRecord::acting_role`]), so access ends on the second whether
//! or not the sweeper has run. The sweeper only records what ended ([`settle`]): the audit
//! log, the feed (so services end sessions), and the membership rewritten so that lists and
//! indexes agree with the decisions.

use compartmentctl::wire::{
    methods, Gated, UserBlockParams, UserBlocked, UserUnblockParams, UserUnblocked,
};

use super::error::AdminLoss;
use super::identity::{authenticate, in_org};
use super::members::has_another_admin;
use super::revoke_token;
use super::terms::{parse_until, shown_block};
use super::{audit, parse_email, Caller, RuleError};
use crate::clock::{is_due, rfc3339};
use crate::store::{Block, Changes, Deadline, MembershipRecord, Millis};

/// The longest reason a block may give, in characters.
pub const MAX_REASON: usize = 500;

/// A block's reason as the request gave it: 1 to [`MAX_REASON`] characters, not blank,
/// without control characters (it is shown to the member and to every service).
fn parse_reason(text: &str) -> Result<String, RuleError> {
    let reason = text.trim();
    if reason.is_empty() {
        return Err(RuleError::BadRequest(
            "a block needs a reason (--reason): the member and the services that ask are shown it"
                .into(),
        ));
    }
    if reason.chars().count() > MAX_REASON {
        return Err(RuleError::BadRequest(format!(
            "a block's reason holds at most {MAX_REASON} characters"
        )));
    }
    if reason.chars().any(char::is_control) {
        return Err(RuleError::BadRequest(
            "a block's reason may not hold control characters (line breaks, tabs, escapes)".into(),
        ));
    }
    Ok(reason.to_owned())
}

/// `user block`: admins (`organization.user.block`), within the target cap; never oneself,
/// and never the last admin nothing bounds. The member's very next request is refused with
/// the reason, and every decision about them says `blocked`.
pub fn block(
    txn: &impl Changes,
    caller: &Caller,
    params: &UserBlockParams,
    now: Millis,
) -> Result<UserBlocked, RuleError> {
    let actor = authenticate(txn, caller)?;
    txn.act_as(&audit::actor(&actor));
    let here = in_org(txn, &actor, params.org.as_deref(), now)?;
    here.require(methods::UserBlock::NEEDS)?;
    let email = parse_email(&params.email)?;
    let email = email.as_str();
    let reason = parse_reason(&params.reason)?;
    let until = params
        .until
        .as_deref()
        .map(|text| parse_until(text, "--until", now))
        .transpose()?;
    let membership = here.member(txn, email)?;
    here.may_change(email, membership.terms.role_at(membership.role, now))?;
    if actor.email.as_deref() == Some(email) {
        return Err(RuleError::BadRequest(format!(
            "you cannot block yourself in {}",
            here.org
        )));
    }
    if membership.is_active_admin() && !has_another_admin(txn, &here.org)? {
        return Err(RuleError::LastAdmin {
            org: here.org,
            change: AdminLoss::Block,
        });
    }
    let block = Block {
        reason,
        by: actor.label(),
        at: now,
        until,
    };
    let mut blocked = membership.clone();
    blocked.terms.block = Some(block.clone());
    txn.put_membership(&here.org, email, &blocked, Some(&membership))?;
    let mut detail = format!("reason: {}", block.reason);
    if let Some(until) = until {
        detail.push_str(&format!(", until {}", rfc3339(until)));
    }
    audit::Entry::new(audit::actor(&actor), "organization.user.block", now)
        .org(&here.org)
        .account(email)
        .change(
            audit::state(Some(&membership), now),
            audit::state(Some(&blocked), now),
        )
        .detail(detail)
        .append(txn)?;
    Ok(UserBlocked {
        org: here.org,
        email: email.to_owned(),
        block: shown_block(&block),
    })
}

/// `user unblock`: as [`block`]; refused for a member who is not blocked.
pub fn unblock(
    txn: &impl Changes,
    caller: &Caller,
    params: &UserUnblockParams,
    now: Millis,
) -> Result<UserUnblocked, RuleError> {
    let actor = authenticate(txn, caller)?;
    txn.act_as(&audit::actor(&actor));
    let here = in_org(txn, &actor, params.org.as_deref(), now)?;
    here.require(methods::UserUnblock::NEEDS)?;
    let email = parse_email(&params.email)?;
    let email = email.as_str();
    let membership = here.member(txn, email)?;
    here.may_change(email, membership.terms.role_at(membership.role, now))?;
    let Some(block) = membership.terms.block_at(now).cloned() else {
        return Err(RuleError::BadRequest(format!(
            "{email} is not blocked in {}",
            here.org
        )));
    };
    let mut unblocked = membership.clone();
    unblocked.terms.block = None;
    txn.put_membership(&here.org, email, &unblocked, Some(&membership))?;
    audit::Entry::new(audit::actor(&actor), "organization.user.unblock", now)
        .org(&here.org)
        .account(email)
        .change(
            audit::state(Some(&membership), now),
            audit::state(Some(&unblocked), now),
        )
        .detail(format!("was blocked by {}: {}", block.by, block.reason))
        .append(txn)?;
    Ok(UserUnblocked {
        org: here.org,
        email: email.to_owned(),
        block: shown_block(&block),
    })
}

/// Records what has ended or fallen due in `membership`'s terms by `now`, as the daemon:
/// access that ended removes the membership (`member.removed`); a block that ended is
/// lifted (`member.unblocked`); an elevation that ended falls back (`member.role_changed`);
/// a warning that fell due is given (`member.access_expiring`). Returns whether it
/// changed anything.
pub fn settle(
    txn: &impl Changes,
    org: &str,
    email: &str,
    membership: &MembershipRecord,
    now: Millis,
) -> Result<bool, RuleError> {
    let terms = &membership.terms;
    if let Some(ended) = terms.access_ended_at(now) {
        if let Some(hash) = &membership.token_hash {
            revoke_token(txn, hash)?;
        }
        txn.delete_membership(org, email, membership)?;
        audit::Entry::new(audit::daemon(), "organization.access.expire", now)
            .org(org)
            .account(email)
            .change(
                audit::state(Some(membership), ended.saturating_sub(1)),
                audit::state(None, now),
            )
            .detail(format!("access ended at {}", rfc3339(ended)))
            .append(txn)?;
        return Ok(true);
    }
    let mut settled = membership.clone();
    let mut records = Vec::new();
    if let Some(block) = &terms.block {
        if block.until.is_some_and(|until| is_due(until, now)) {
            settled.terms.block = None;
            records.push((
                "organization.user.unblock",
                format!("the block by {} ended: {}", block.by, block.reason),
            ));
        }
    }
    if let Some(elevation) = &terms.elevation {
        if is_due(elevation.until.at, now) {
            settled.role = elevation.fallback;
            settled.terms.elevation = None;
            records.push((
                "organization.role.expire",
                format!(
                    "{} -> {} (held until {})",
                    membership.role,
                    elevation.fallback,
                    rfc3339(elevation.until.at)
                ),
            ));
        }
    }
    // Warnings are for the feed alone; each one due is given once, the last due first
    // (a daemon that slept through the week's warning gives the day's).
    if let Some(deadline) = &mut settled.terms.access_until {
        warn(deadline, now);
    }
    if let Some(elevation) = &mut settled.terms.elevation {
        warn(&mut elevation.until, now);
    }
    if settled == *membership {
        return Ok(false);
    }
    // One change, so one event: the feed tells of the most telling (role, unblock,
    // warning), and the audit log records each end, from what was held just before the
    // first of them.
    txn.put_membership(org, email, &settled, Some(membership))?;
    let ended = [
        terms.block.as_ref().and_then(|block| block.until),
        terms.elevation.map(|elevation| elevation.until.at),
    ]
    .into_iter()
    .flatten()
    .filter(|&at| is_due(at, now))
    .min()
    .unwrap_or(now);
    for (event, detail) in records {
        audit::Entry::new(audit::daemon(), event, now)
            .org(org)
            .account(email)
            .change(
                audit::state(Some(membership), ended.saturating_sub(1)),
                audit::state(Some(&settled), now),
            )
            .detail(detail)
            .append(txn)?;
    }
    Ok(true)
}

/// Marks the warnings of `deadline` due by `now` as given.
fn warn(deadline: &mut Deadline, now: Millis) {
    deadline.warned = deadline.warned.max(Deadline::set(deadline.at, now).warned);
}
