//! What a membership's terms say, as rules and answers need them: when an end a request
//! names falls, what a new invitation or an elevation holds, and how a block or an
//! elevation is shown. Pure: no store, no clock, no other rule.

use std::time::Duration;

use compartmentctl::wire::{MemberBlock, MemberElevation, MemberStatus, Role};

use super::{millis, RuleError};
use crate::clock::{is_due, rfc3339};
use crate::store::{Block, Deadline, Elevation, MembershipRecord, Millis, Terms};

/// The furthest ahead an end may be set: ten years, so that nobody mistakes a typo for a
/// date (and no time overflows).
pub const MAX_AHEAD: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// When something set at `now` ends: `text` is an RFC 3339 time (`2027-01-31T00:00:00Z`),
/// a date alone (its midnight, UTC) or a humantime duration from now (`30days`, `2h`),
/// strictly after `now` and at most
/// [`MAX_AHEAD`] later. `flag` names the option in the refusal.
pub fn parse_until(text: &str, flag: &str, now: Millis) -> Result<Millis, RuleError> {
    let shown: String = text.chars().take(40).collect();
    // A date alone is its first second, in UTC.
    let time = match text.len() {
        10 => format!("{text}T00:00:00Z"),
        _ => text.to_owned(),
    };
    let at = if let Ok(duration) = humantime::parse_duration(text) {
        now.saturating_add(millis(duration))
    } else if let Ok(time) = humantime::parse_rfc3339_weak(&time) {
        time.duration_since(std::time::UNIX_EPOCH)
            .map(millis)
            .unwrap_or(0)
    } else {
        return Err(RuleError::BadRequest(format!(
            "{flag} {shown:?} is neither a time nor a duration: write it like 2027-01-31T00:00:00Z, 30days or 12h"
        )));
    };
    if is_due(at, now) {
        return Err(RuleError::BadRequest(format!(
            "{flag} {shown:?} is not in the future (it is now {})",
            rfc3339(now)
        )));
    }
    if at > now.saturating_add(millis(MAX_AHEAD)) {
        return Err(RuleError::BadRequest(format!(
            "{flag} {shown:?} is more than ten years ahead"
        )));
    }
    Ok(at)
}

/// A block as the wire shows it.
pub fn shown_block(block: &Block) -> MemberBlock {
    MemberBlock {
        reason: block.reason.clone(),
        by: block.by.clone(),
        at: rfc3339(block.at),
        until: block.until.map(rfc3339),
    }
}

/// An elevation as the wire shows it.
pub fn shown_elevation(elevation: &Elevation) -> MemberElevation {
    MemberElevation {
        until: rfc3339(elevation.until.at),
        fallback: elevation.fallback,
    }
}

/// The elevation `role grant ROLE --until` sets on `membership`: `role` until `until`, then
/// the role held before any elevation. Only a role above that one is an elevation.
pub fn elevation(
    membership: &MembershipRecord,
    email: &str,
    role: Role,
    until: Millis,
    now: Millis,
) -> Result<Elevation, RuleError> {
    let held = match &membership.terms.elevation {
        Some(elevation) => elevation.fallback,
        None => membership.role,
    };
    if role <= held {
        return Err(RuleError::BadRequest(format!(
            "--until grants a role above the one held for a time; {email} holds {held}: grant {role} without --until"
        )));
    }
    Ok(Elevation {
        until: Deadline::set(until, now),
        fallback: held,
    })
}

/// The terms of a new invitation: only its end, if it has one (an invitation sent again
/// starts without the old one's block or elevation).
pub fn fresh_terms(access_until: Option<Millis>, now: Millis) -> Terms {
    Terms {
        block: None,
        access_until: access_until.map(|at| Deadline::set(at, now)),
        elevation: None,
    }
}

/// Whether a member's status reads as blocked at `now`.
pub fn is_blocked(membership: &MembershipRecord, now: Millis) -> bool {
    membership.status == MemberStatus::Active && membership.terms.block_at(now).is_some()
}
