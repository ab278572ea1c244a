//! Members of an organization: `user.list`, `user.remove`, `role.grant`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use compartmentctl::wire::{
    methods, Gated, Granted, GroupMembers, Member, MemberList, MemberStatus, Removed,
    RoleGrantParams, UserListParams, UserRemoveParams, DEFAULT_PAGE, MAX_PAGE,
};

use super::error::AdminLoss;
use super::identity::{authenticate, in_org};
use super::revoke_token;
use super::{audit, parse_email, terms, Caller, RuleError};
use crate::clock::{is_due, rfc3339};
use crate::store::{Changes, MemberRow, Millis, Reader};

/// How many rows one filtered page may read per member it may return: a `--status`
/// filter that matches little stops after `limit × SCAN_FACTOR` rows and answers a short
/// page with a `next`, so no page costs more than a bounded read.
pub const SCAN_FACTOR: usize = 10;

/// The longest cursor accepted; a cursor names an e-mail (at most 254 bytes), so anything
/// longer was not made by this daemon.
const MAX_CURSOR: usize = 512;

/// A page's `next`: the last e-mail read, base64url. It names a position in whichever
/// organization the next request is authorized for, so it grants nothing by itself.
fn cursor_of(email: &str) -> String {
    URL_SAFE_NO_PAD.encode(email.as_bytes())
}

/// The e-mail a cursor names; anything this daemon could not have made is a bad request.
fn position_of(cursor: &str) -> Result<String, RuleError> {
    let bad = || {
        RuleError::BadRequest(
            "\"after\" is not a cursor from user.list: pass the \"next\" of the previous page as it was"
                .to_owned(),
        )
    };
    if cursor.is_empty() || cursor.len() > MAX_CURSOR {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    String::from_utf8(bytes).map_err(|_| bad())
}

/// `user list`: one page of members with role and status, by e-mail; readonly and above.
/// The organization is resolved and the caller authorized on every page; the cursor only
/// says where the page starts.
pub fn list_page(
    reader: &impl Reader,
    caller: &Caller,
    params: &UserListParams,
    now: Millis,
) -> Result<MemberList, RuleError> {
    list_page_bound(reader, caller, params, now).map(|(list, _)| list)
}

/// [`list_page`], and the members shown acting as a Unix user, by their place on the page,
/// with the uid their membership is pinned to: whether that uid still belongs to the user
/// it was bound as is the host's to say (the dispatcher asks NSS, and marks
/// `binding_stale`).
pub fn list_page_bound(
    reader: &impl Reader,
    caller: &Caller,
    params: &UserListParams,
    now: Millis,
) -> Result<(MemberList, Vec<(usize, u32)>), RuleError> {
    // Who asks is judged first: someone who may not list learns nothing, not even whether
    // the rest of the request was well made.
    let actor = authenticate(reader, caller)?;
    let here = in_org(reader, &actor, params.org.as_deref(), now)?;
    here.require(methods::UserList::NEEDS)?;
    let limit = match params.limit {
        None => DEFAULT_PAGE,
        Some(limit @ 1..=MAX_PAGE) => limit,
        Some(limit) => {
            return Err(RuleError::BadRequest(format!(
                "limit {limit} is out of range: a page holds 1 to {MAX_PAGE} members"
            )))
        }
    } as usize;
    let mut position = params.after.as_deref().map(position_of).transpose()?;

    let budget = limit.saturating_mul(SCAN_FACTOR);
    let mut scanned = 0;
    let mut members = Vec::with_capacity(limit);
    let mut bound = Vec::new();
    let mut expiries = Expiries::default();
    // Whether a row after `position` was seen, so that no read need look for one.
    let mut seen_beyond;
    // Read in chunks of at most `limit` rows (and one more, to see whether there are more)
    // until the page is full, the org's rows end, or the scan budget is spent; `position`
    // is always the last row taken.
    let exhausted = loop {
        let want = if params.status.is_some() {
            limit.min(budget - scanned)
        } else {
            limit - members.len()
        };
        let chunk = reader.members_after(&here.org, position.as_deref(), want + 1)?;
        let short = chunk.len() <= want;
        let mut rows = chunk.into_iter();
        for (email, m) in rows.by_ref().take(want) {
            scanned += 1;
            let status = m.status_at(now);
            if params.status.is_none_or(|wanted| wanted == status) {
                let expires_at = match status {
                    MemberStatus::Active => None,
                    MemberStatus::Invited | MemberStatus::Expired => {
                        m.expires_at.map(|at| expiries.text(at))
                    }
                };
                let unix_user = unix_user_of(reader, &email, &m)?;
                if let (Some(_), Some(uid)) = (&unix_user, m.uid) {
                    bound.push((members.len(), uid));
                }
                members.push(shown_member(
                    email.clone(),
                    &m,
                    status,
                    expires_at,
                    unix_user,
                    now,
                ));
            }
            position = Some(email);
            if members.len() == limit {
                break;
            }
        }
        seen_beyond = rows.next().is_some();
        // Checked in this order: a page filled mid-chunk leaves rows behind even when the
        // chunk was the org's last.
        if members.len() == limit {
            break false;
        }
        if short {
            break true;
        }
        if scanned >= budget {
            break false;
        }
    };
    // A full page may be the last: the last page has no `next`.
    let next = match position {
        Some(last) if !exhausted => {
            let more = seen_beyond || !reader.members_after(&here.org, Some(&last), 1)?.is_empty();
            more.then(|| cursor_of(&last))
        }
        _ => None,
    };
    // The groups mapped here, on the first page; their users are the host's to say (the
    // dispatcher asks NSS).
    let groups = match &params.after {
        Some(_) => Vec::new(),
        None => reader
            .org(&here.org)?
            .map(|record| record.groups)
            .unwrap_or_default()
            .into_iter()
            .map(|map| GroupMembers {
                group: map.name,
                gid: map.gid,
                role: map.role,
                users: Vec::new(),
            })
            .collect(),
    };
    Ok((
        MemberList {
            org: here.org,
            members,
            next,
            groups,
        },
        bound,
    ))
}

/// A member as a list shows it at `now`: the role an ended elevation fell back to, and
/// what bounds the membership (a block in force, access's end, an elevation's end).
fn shown_member(
    email: String,
    row: &MemberRow,
    status: MemberStatus,
    expires_at: Option<String>,
    unix_user: Option<String>,
    now: Millis,
) -> Member {
    let terms = &row.terms;
    Member {
        email,
        role: terms.role_at(row.role, now),
        status,
        expires_at,
        unix_user,
        blocked: terms.block_at(now).map(terms::shown_block),
        access_until: terms.access_until.map(|deadline| rfc3339(deadline.at)),
        elevation: terms
            .elevation
            .filter(|elevation| !is_due(elevation.until.at, now))
            .map(|elevation| terms::shown_elevation(&elevation)),
        binding_stale: Default::default(),
    }
}

/// Expiries as a page shows them, to the second. Invitations made together expire in the
/// same second, so each second is formatted once and copied for the rest.
#[derive(Default)]
struct Expiries {
    last: Option<(Millis, String)>,
}

impl Expiries {
    fn text(&mut self, at: Millis) -> String {
        let second = at / 1000;
        match &self.last {
            Some((cached, text)) if *cached == second => text.clone(),
            _ => {
                let text = rfc3339(at);
                self.last = Some((second, text.clone()));
                text
            }
        }
    }
}

/// Every member at once: the unpaged list the paged one must add up to (tests only; no
/// request reads a whole organization).
#[cfg(test)]
pub fn list(
    reader: &impl Reader,
    caller: &Caller,
    org: Option<&str>,
    now: Millis,
) -> Result<MemberList, RuleError> {
    let actor = authenticate(reader, caller)?;
    let here = in_org(reader, &actor, org, now)?;
    here.require(methods::UserList::NEEDS)?;
    let mut members = Vec::new();
    for (email, m) in reader.members(&here.org)? {
        let status = m.status_at(now);
        let row = MemberRow::from(&m);
        let expires_at = match status {
            MemberStatus::Active => None,
            MemberStatus::Invited | MemberStatus::Expired => m.expires_at.map(rfc3339),
        };
        let unix_user = unix_user_of(reader, &email, &row)?;
        members.push(shown_member(
            email, &row, status, expires_at, unix_user, now,
        ));
    }
    Ok(MemberList {
        org: here.org,
        members,
        next: None,
        groups: Default::default(),
    })
}

/// The Unix user an active member acts as: the name its uid was bound as, while the uid is
/// still bound to this account.
fn unix_user_of(
    reader: &impl Reader,
    email: &str,
    membership: &MemberRow,
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

/// Whether `org` has an active admin besides the one a change would take away: what the
/// last-admin rule asks, answered from the admins' index whatever the organization's size.
pub(super) fn has_another_admin(reader: &impl Reader, org: &str) -> Result<bool, RuleError> {
    Ok(reader.active_admins(org, 2)? >= 2)
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
    txn.act_as(&audit::actor(&actor));
    let here = in_org(txn, &actor, params.org.as_deref(), now)?;
    here.require(methods::UserRemove::NEEDS)?;
    let email = parse_email(&params.email)?;
    let email = email.as_str();
    let membership = here.member(txn, email)?;
    here.may_change(email, membership.role)?;
    // Counted inside the write transaction, so two admins removing each other at once
    // cannot both succeed: the writer applies one change at a time.
    if membership.is_active_admin() && !has_another_admin(txn, &here.org)? {
        return Err(RuleError::LastAdmin {
            org: here.org,
            change: AdminLoss::Removal,
        });
    }
    if let Some(hash) = &membership.token_hash {
        revoke_token(txn, hash)?;
    }
    txn.delete_membership(&here.org, email, &membership)?;
    audit::Entry::new(audit::actor(&actor), "organization.user.remove", now)
        .org(&here.org)
        .account(email)
        .change(
            audit::state(Some(&membership), now),
            audit::state(None, now),
        )
        .append(txn)?;
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
    txn.act_as(&audit::actor(&actor));
    let here = in_org(txn, &actor, params.org.as_deref(), now)?;
    here.require(methods::RoleGrant::NEEDS)?;
    here.may_grant(params.role)?;
    let email = parse_email(&params.email)?;
    let email = email.as_str();
    let until = params
        .until
        .as_deref()
        .map(|text| terms::parse_until(text, "--until", now))
        .transpose()?;
    let membership = here.member(txn, email)?;
    let previous_role = membership.terms.role_at(membership.role, now);
    here.may_change(email, previous_role)?;
    let mut updated = membership.clone();
    // An elevation that has ended, swept or not, is over: the grant starts from the role
    // it fell back to.
    if let Some(elevation) = membership.terms.elevation {
        if is_due(elevation.until.at, now) {
            updated.role = elevation.fallback;
            updated.terms.elevation = None;
        }
    }
    updated.terms.elevation = match until {
        Some(until) => Some(terms::elevation(&updated, email, params.role, until, now)?),
        None => None,
    };
    updated.role = params.role;
    if membership.is_active_admin()
        && !updated.is_active_admin()
        && !has_another_admin(txn, &here.org)?
    {
        return Err(RuleError::LastAdmin {
            org: here.org,
            change: AdminLoss::Demotion,
        });
    }
    txn.put_membership(&here.org, email, &updated, Some(&membership))?;
    let mut detail = format!("{previous_role} -> {}", params.role);
    if let Some(until) = until {
        detail.push_str(&format!(" until {}", rfc3339(until)));
    }
    audit::Entry::new(audit::actor(&actor), "organization.role.grant", now)
        .org(&here.org)
        .account(email)
        .change(
            audit::state(Some(&membership), now),
            audit::state(Some(&updated), now),
        )
        .detail(detail)
        .append(txn)?;
    Ok(Granted {
        org: here.org,
        email: email.to_owned(),
        role: params.role,
        previous_role,
        until: until.map(rfc3339),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_expiry_reads_as_its_own_formatting() {
        let mut expiries = Expiries::default();
        for at in [999, 1_000, 1_001, 1_999, 2_000, 1_000, 1_777_636_800_999] {
            assert_eq!(expiries.text(at), rfc3339(at), "{at}");
        }
    }
}
