//! What a successful command prints: the documentation page's sentences, aligned tables,
//! or the result as compact JSON, and the one place that writes it to stdout. Every string
//! the daemon sent goes into the text through [`escaped`], so that no name acts on the
//! terminal and a table's widths are those of what is printed.

use std::borrow::Cow;
use std::io::{self, Write};

use compartmentctl::wire::{
    AccountBinding, AccountDeleted, AccountDetail, AccountList, AccountRenamed, AccountStatus,
    Activated, AdminStatus, AuditActor, AuditCheckpoint, AuditPage, AuditRecordView, AuditState,
    AuditVerified, AuthzAnswer, BackupHeader, Decision, Granted, GroupMapped, GroupMembers,
    GroupUnmapped, Invitation, Member, MemberBlock, MemberElevation, MemberList, MemberStatus,
    MetricsText, OrgCreated, OrgDeleted, OrgList, OrgRenamed, OrgUsed, Pong, Removed, RoleInfo,
    RoleList, StoreInfo, Subscribed, UserBlocked, UserUnblocked, WhoAmI,
};
use serde::Serialize;

use super::escape::{escaped, escaped_lines};

/// Left-aligned columns separated by two spaces, each padded to its widest cell. The last
/// column is never padded and every line is trimmed, so no line ends in spaces.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|cell| cell.chars().count());
    widen(&mut widths, rows);
    let mut out = String::new();
    let header = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        push_row(&mut out, row, &widths);
    }
    out
}

/// Widens `widths` to fit every cell of `rows`; never narrows.
pub fn widen<const N: usize, S: AsRef<str>>(widths: &mut [usize; N], rows: &[[S; N]]) {
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(width_of(cell.as_ref()));
        }
    }
}

/// A cell's width in characters; an ASCII cell's is its length, found without decoding.
fn width_of(cell: &str) -> usize {
    if cell.is_ascii() {
        cell.len()
    } else {
        cell.chars().count()
    }
}

/// Padding, pushed a slice at a time rather than a character at a time.
const SPACES: &str = "                                ";

/// Appends one table line: cells padded to `widths` (the last not at all), trimmed. Written
/// in place, with no allocation of its own: `user list` calls it for every member.
pub fn push_row<const N: usize, S: AsRef<str>>(
    out: &mut String,
    row: &[S; N],
    widths: &[usize; N],
) {
    let start = out.len();
    for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
        let cell = cell.as_ref();
        if column > 0 {
            out.push_str("  ");
        }
        out.push_str(cell);
        if column + 1 < N {
            let mut pad = width.saturating_sub(width_of(cell));
            while pad > 0 {
                let spaces = pad.min(SPACES.len());
                out.push_str(&SPACES[..spaces]);
                pad -= spaces;
            }
        }
    }
    let kept = out[start..].trim_end().len();
    out.truncate(start + kept);
    out.push('\n');
}

/// The result object as one line of compact JSON.
pub fn json<T: Serialize>(result: &T) -> Result<String, serde_json::Error> {
    let mut line = serde_json::to_string(result)?;
    line.push('\n');
    Ok(line)
}

/// The page's invitation sentences; without an activation URL the account already exists
/// and the membership is active now.
pub fn invitation(invitation: &Invitation) -> String {
    let Invitation {
        email,
        role,
        activation_url,
        expires_at,
        held_by,
        redeemable_by,
        access_until,
        ..
    } = invitation;
    let email = escaped(email);
    let access_ends = access_until
        .as_deref()
        .map(|until| format!("Access ends at: {}\n", escaped(until)))
        .unwrap_or_default();
    let mut out = format!("Invited {email} as {role}.\n");
    match activation_url {
        Some(url) => {
            out.push_str(&format!("Activation URL: {}\n", escaped(url)));
            if let Some(expires_at) = expires_at {
                out.push_str(&format!("Invitation expires at: {}\n", escaped(expires_at)));
            }
            out.push_str(&access_ends);
            match (
                held_by.as_deref().map(escaped),
                redeemable_by.as_deref().map(escaped),
            ) {
                (Some(holder), _) => out.push_str(&format!(
                    "{email} already has an account, held by Unix user {holder}: only {holder} can redeem this URL.\n"
                )),
                (None, Some(user)) => {
                    out.push_str(&format!("Only Unix user {user} can redeem this URL.\n"))
                }
                (None, None) => {}
            }
        }
        None => {
            let held = held_by
                .as_deref()
                .map(|holder| format!(" (Unix user {})", escaped(holder)))
                .unwrap_or_default();
            out.push_str(&format!(
                "{email} already has an account{held}: access is granted now, no activation URL needed.\n"
            ));
            out.push_str(&access_ends);
        }
    }
    out
}

pub fn org_created(created: &OrgCreated) -> String {
    format!(
        "Created organization {}.\n{}",
        escaped(&created.org),
        invitation(&created.admin)
    )
}

/// `user list`'s columns.
pub const MEMBER_HEADER: [&str; 5] = ["EMAIL", "ROLE", "STATUS", "UNIX USER", "EXPIRES"];

/// One member as `user list`'s table cells (`list::member_row` streams the same cells).
pub fn member_row(member: &Member) -> [String; 5] {
    [
        escaped(&member.email).into_owned(),
        member.role.to_string(),
        member_status(member.status, member.blocked.as_ref(), member.binding_stale).to_owned(),
        dash(member.unix_user.as_deref()),
        member_expires(
            member.status,
            member.expires_at.as_deref(),
            member.blocked.as_ref(),
            member.access_until.as_deref(),
            member.elevation.as_ref(),
        )
        .into_owned(),
    ]
}

/// `user list`'s STATUS cell: `blocked` for an active member under a block, `binding
/// stale` for one whose uid no longer belongs to the Unix user it was bound as (as
/// `account list` says it), since nobody acts as them.
pub fn member_status(
    status: MemberStatus,
    blocked: Option<&MemberBlock>,
    binding_stale: bool,
) -> &'static str {
    match (status, blocked) {
        (MemberStatus::Active, Some(_)) => "blocked",
        (MemberStatus::Active, None) if binding_stale => "binding stale",
        (status, _) => status.as_str(),
    }
}

/// `user list`'s EXPIRES cell. An invitation's is when it expires (or expired); an active
/// member's is each end that falls due by itself, earliest first: `<until> (block ends)`,
/// `<until> (then <role>)` for a role held until then, `<until> (access ends)`. `-` when
/// nothing ends. Borrowed from the member unless escaping or joining made it anew.
pub fn member_expires<'a>(
    status: MemberStatus,
    expires_at: Option<&'a str>,
    blocked: Option<&'a MemberBlock>,
    access_until: Option<&'a str>,
    elevation: Option<&'a MemberElevation>,
) -> Cow<'a, str> {
    let mut ends: Vec<(&str, Cow<'_, str>)> = Vec::new();
    if status == MemberStatus::Active {
        if let Some(until) = blocked.and_then(|block| block.until.as_deref()) {
            ends.push((until, Cow::Borrowed("block ends")));
        }
        if let Some(elevation) = elevation {
            ends.push((
                &elevation.until,
                Cow::Owned(format!("then {}", elevation.fallback)),
            ));
        }
        if let Some(until) = access_until {
            ends.push((until, Cow::Borrowed("access ends")));
        }
    }
    if ends.is_empty() {
        return escaped(expires_at.unwrap_or("-"));
    }
    // By the instant each names; one that does not read as a time goes last. The sort is
    // stable, so ends at the same instant keep the order above.
    ends.sort_by_key(|(until, _)| {
        let at = humantime::parse_rfc3339_weak(until).ok();
        (at.is_none(), at)
    });
    let cells: Vec<String> = ends
        .iter()
        .map(|(until, what)| format!("{} ({what})", escaped(until)))
        .collect();
    Cow::Owned(cells.join(", "))
}

/// One page as a whole table (`user list` itself streams; see `list`).
pub fn member_list(list: &MemberList) -> String {
    let rows: Vec<[String; 5]> = list.members.iter().map(member_row).collect();
    let mut out = table(MEMBER_HEADER, &rows);
    if !list.groups.is_empty() {
        out.push_str(&group_members(&list.groups));
    }
    out
}

/// The Unix groups mapped to a role, after `user list`'s members: where a group member's
/// role comes from.
pub fn group_members(groups: &[GroupMembers]) -> String {
    let rows: Vec<[String; 4]> = groups
        .iter()
        .map(|group| {
            let users = if group.users.is_empty() {
                "-".to_owned()
            } else {
                group
                    .users
                    .iter()
                    .map(|user| escaped(user).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            [
                escaped(&group.group).into_owned(),
                group.gid.to_string(),
                group.role.to_string(),
                users,
            ]
        })
        .collect();
    format!(
        "\nBy Unix group (org map-group):\n{}",
        table(["GROUP", "GID", "ROLE", "USERS"], &rows)
    )
}

pub fn group_mapped(mapped: &GroupMapped) -> String {
    let was = mapped
        .previous_role
        .map(|role| format!(" (was {role})"))
        .unwrap_or_default();
    format!(
        "Mapped Unix group {} (gid {}) to {} in {}{was}.\n",
        escaped(&mapped.group),
        mapped.gid,
        mapped.role,
        escaped(&mapped.org)
    )
}

pub fn group_unmapped(unmapped: &GroupUnmapped) -> String {
    format!(
        "Unmapped Unix group {} (gid {}) from {} (was {}).\n",
        escaped(&unmapped.group),
        unmapped.gid,
        escaped(&unmapped.org),
        unmapped.role
    )
}

/// A cell's text, escaped, or `-` when it has none.
fn dash(cell: Option<&str>) -> String {
    escaped(cell.unwrap_or("-")).into_owned()
}

pub fn account_list(list: &AccountList) -> String {
    let rows: Vec<[String; 5]> = list
        .accounts
        .iter()
        .map(|account| {
            [
                escaped(&account.email).into_owned(),
                // A binding whose uid no longer resolves to the user it was made for holds
                // for nobody: not `active`.
                match &account.uid_now_belongs_to {
                    Some(now) if now.as_deref() != account.unix_user.as_deref() => {
                        "binding stale".to_owned()
                    }
                    _ => account_status(account.status).to_owned(),
                },
                dash(account.unix_user.as_deref()),
                account
                    .uid
                    .map_or_else(|| "-".to_owned(), |uid| uid.to_string()),
                dash(account.bound_through.as_deref()),
            ]
        })
        .collect();
    table(
        ["EMAIL", "STATUS", "UNIX USER", "UID", "BOUND THROUGH"],
        &rows,
    )
}

pub fn account_detail(account: &AccountDetail) -> String {
    let mut out = format!(
        "account: {}\nstatus: {}\n",
        escaped(&account.email),
        account_status(account.status)
    );
    match (account.uid, &account.unix_user) {
        (Some(uid), user) => {
            let user = escaped(user.as_deref().unwrap_or("(no user at the upgrade)"));
            out.push_str(&format!("bound to: Unix user {user} (uid {uid})"));
            if let Some(now) = &account.uid_now_belongs_to {
                if now.as_deref() != account.unix_user.as_deref() {
                    let now = escaped(now.as_deref().unwrap_or("no user"));
                    out.push_str(&format!(
                        "; uid {uid} is now {now}: the binding does not hold"
                    ));
                }
            }
            out.push('\n');
        }
        (None, _) => out.push_str("bound to: nobody\n"),
    }
    if let Some(at) = &account.bound_at {
        out.push_str(&format!("bound at: {}\n", escaped(at)));
    }
    if let Some(through) = &account.bound_through {
        out.push_str(&format!("bound through: {}\n", escaped(through)));
    }
    if !account.memberships.is_empty() {
        let rows: Vec<[String; 3]> = account
            .memberships
            .iter()
            .map(|m| {
                let status = match m.usable {
                    Some(false) => format!("{} (pinned to an earlier uid)", m.status),
                    _ => m.status.to_string(),
                };
                [escaped(&m.org).into_owned(), m.role.to_string(), status]
            })
            .collect();
        out.push_str(&table(["ORGANIZATION", "ROLE", "STATUS"], &rows));
    }
    out
}

pub fn unbound(binding: &AccountBinding) -> String {
    let user = escaped(binding.unix_user.as_deref().unwrap_or("(no user)"));
    format!(
        "Unbound {} from Unix user {user} (uid {}).\n",
        escaped(&binding.email),
        binding.uid
    )
}

pub fn account_renamed(renamed: &AccountRenamed) -> String {
    renaming(
        "account",
        &renamed.previous,
        &renamed.email,
        renamed.memberships,
    )
}

pub fn org_renamed(renamed: &OrgRenamed) -> String {
    renaming(
        "organization",
        &renamed.previous,
        &renamed.org,
        renamed.memberships,
    )
}

/// `Renamed account a to b (2 memberships moved with it).`
fn renaming(what: &str, previous: &str, new: &str, memberships: u64) -> String {
    let noun = if memberships == 1 {
        "membership"
    } else {
        "memberships"
    };
    format!(
        "Renamed {what} {} to {} ({memberships} {noun} moved with it).\n",
        escaped(previous),
        escaped(new)
    )
}

pub fn org_deleted(deleted: &OrgDeleted) -> String {
    let mut out = format!("Deleted organization {}.\n", escaped(&deleted.org));
    let listed = |emails: &[String]| {
        emails
            .iter()
            .map(|email| escaped(email).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !deleted.removed.is_empty() {
        out.push_str(&format!(
            "Removed its members: {}.\n",
            listed(&deleted.removed)
        ));
    }
    if !deleted.invitations.is_empty() {
        out.push_str(&format!(
            "Revoked its invitations: {}.\n",
            listed(&deleted.invitations)
        ));
    }
    out
}

pub fn account_deleted(deleted: &AccountDeleted) -> String {
    let mut out = format!("Deleted account {}.\n", escaped(&deleted.email));
    if !deleted.removed_from.is_empty() {
        let orgs: Vec<_> = deleted
            .removed_from
            .iter()
            .map(|org| escaped(org))
            .collect();
        out.push_str(&format!("Removed it from {}.\n", orgs.join(", ")));
    }
    if let Some(uid) = deleted.uid {
        let user = escaped(deleted.unix_user.as_deref().unwrap_or("(no user)"));
        out.push_str(&format!("Unbound Unix user {user} (uid {uid}).\n"));
    }
    out
}

pub fn bound(binding: &AccountBinding) -> String {
    let user = escaped(binding.unix_user.as_deref().unwrap_or("(no user)"));
    let mut out = format!(
        "Bound {} to Unix user {user} (uid {}).\n",
        escaped(&binding.email),
        binding.uid
    );
    for m in &binding.carried {
        out.push_str(&format!(
            "Carried over: {} in {}.\n",
            m.role,
            escaped(&m.org)
        ));
    }
    for m in &binding.dropped {
        out.push_str(&format!(
            "Not carried over: {} in {} (made through a binding no superuser vouched for).\n",
            m.role,
            escaped(&m.org)
        ));
    }
    if !binding.dropped.is_empty() {
        out.push_str("To carry those over too, bind again with --carry-all.\n");
    }
    out
}

pub fn removed(removed: &Removed) -> String {
    format!(
        "Removed {} from {}.\n",
        escaped(&removed.email),
        escaped(&removed.org)
    )
}

/// `user block`: who, where, until when, and the reason as the member is told it.
pub fn user_blocked(blocked: &UserBlocked) -> String {
    format!(
        "Blocked {} in {} {}: {}\n",
        escaped(&blocked.email),
        escaped(&blocked.org),
        block_lasts(blocked.block.until.as_deref()),
        escaped(&blocked.block.reason)
    )
}

/// How long a block lasts: `until <time>`, or `until unblocked` when it has no end.
pub fn block_lasts(until: Option<&str>) -> String {
    match until {
        Some(until) => format!("until {}", escaped(until)),
        None => "until unblocked".to_owned(),
    }
}

pub fn user_unblocked(unblocked: &UserUnblocked) -> String {
    format!(
        "Unblocked {} in {}.\n",
        escaped(&unblocked.email),
        escaped(&unblocked.org)
    )
}

/// `role grant`; a role granted `--until` says when it ends and that the one before comes
/// back then.
pub fn granted(granted: &Granted) -> String {
    let Granted {
        org,
        email,
        role,
        previous_role,
        until,
    } = granted;
    let (email, org) = (escaped(email), escaped(org));
    match until {
        None => format!("Granted {role} to {email} in {org} (was {previous_role}).\n"),
        Some(until) => format!(
            "Granted {role} to {email} in {org} until {} (was {previous_role}; \
             {previous_role} again after).\n",
            escaped(until)
        ),
    }
}

pub fn role_list(list: &RoleList) -> String {
    let rows: Vec<[String; 2]> = list
        .roles
        .iter()
        .map(|role| {
            [
                role.name.to_string(),
                escaped(&role.description).into_owned(),
            ]
        })
        .collect();
    table(["ROLE", "DESCRIPTION"], &rows)
}

/// `role show`: the role's description, then each permission it holds and what it allows.
pub fn role_info(info: &RoleInfo) -> String {
    let rows: Vec<[String; 2]> = info
        .permissions
        .iter()
        .map(|permission| [permission.key().to_owned(), permission.what().to_owned()])
        .collect();
    format!(
        "{}: {}\n\n{}",
        info.name,
        escaped(&info.description),
        table(["PERMISSION", "ALLOWS"], &rows)
    )
}

/// A JSON document as people read it, indented; serde escapes C0 controls in its strings,
/// not the rest.
pub fn pretty(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    escaped_lines(&text).into_owned()
}

/// `events.subscribe`'s answer (`events watch` prints its own first line).
/// `admin.backup`'s answer alone (the CLI's `admin backup` writes the backup itself).
pub fn backup_header(header: &BackupHeader) -> String {
    format!(
        "A backup of {} records taken at {}.\n",
        header.counts.total(),
        escaped(&header.taken_at)
    )
}

pub fn subscribed(subscribed: &Subscribed) -> String {
    format!("Subscribed after #{}.\n", subscribed.after)
}

/// `auth can`: `yes` or `no` on the first line and why on the next; for many checks, a
/// line each.
pub fn authz_answer(answer: &AuthzAnswer) -> String {
    let verdict = |decision: &Decision| if decision.allowed { "yes" } else { "no" };
    match answer {
        AuthzAnswer::One(decision) => {
            format!("{}\n{}\n", verdict(decision), escaped(&decision.message))
        }
        AuthzAnswer::Many { decisions } => {
            let rows: Vec<[String; 3]> = decisions
                .iter()
                .map(|d| {
                    [
                        verdict(d).to_owned(),
                        d.permission.to_string(),
                        escaped(&d.message).into_owned(),
                    ]
                })
                .collect();
            table(["ANSWER", "PERMISSION", "WHY"], &rows)
        }
    }
}

pub fn activated(activated: &Activated) -> String {
    format!(
        "Activated {}: you are now {} in {}.\n",
        escaped(&activated.email),
        activated.role,
        escaped(&activated.org)
    )
}

pub fn whoami(who: &WhoAmI) -> String {
    let uid = match &who.unix_user {
        Some(user) => format!("{} ({})", who.uid, escaped(user)),
        None => who.uid.to_string(),
    };
    if let Some(problem) = &who.binding_problem {
        return format!(
            "uid {uid}: no account: {}; ask a superuser to rebind or unbind it\n",
            escaped(problem)
        );
    }
    let mut out = match (&who.account, who.superuser) {
        (Some(account), false) => {
            format!(
                "uid {uid}: {} ({})\n",
                escaped(&account.email),
                account_status(account.status)
            )
        }
        (Some(account), true) => format!(
            "uid {uid}: {} ({}), superuser\n",
            escaped(&account.email),
            account_status(account.status)
        ),
        (None, true) => format!("uid {uid}: superuser (admin power in every organization)\n"),
        (None, false) if !who.memberships.is_empty() => {
            format!("uid {uid}: no account, acting through Unix groups\n")
        }
        (None, false) => format!(
            "uid {uid}: no account yet (activate an invitation: run compartment activate and paste its URL)\n"
        ),
    };
    let current_org = who.current_org.as_deref().map(escaped);
    if let Some(org) = &current_org {
        out.push_str(&format!("current organization: {org}\n"));
    }
    if !who.memberships.is_empty() {
        let rows: Vec<[String; 3]> = who
            .memberships
            .iter()
            .map(|m| {
                let status = match (&m.blocked, &m.group) {
                    (Some(_), _) => "blocked".to_owned(),
                    (None, Some(group)) => format!("{} (group {})", m.status, escaped(group)),
                    (None, None) => m.status.to_string(),
                };
                [escaped(&m.org).into_owned(), m.role.to_string(), status]
            })
            .collect();
        out.push_str(&table(["ORGANIZATION", "ROLE", "STATUS"], &rows));
    }
    if let (Some(org), false) = (&current_org, who.permissions.is_empty()) {
        let keys: Vec<&str> = who.permissions.iter().map(|p| p.key()).collect();
        out.push_str(&format!("permissions in {org}: {}\n", keys.join(", ")));
    }
    out
}

fn account_status(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Pending => "invited",
        AccountStatus::Active => "active",
    }
}

pub fn org_list(list: &OrgList) -> String {
    let rows: Vec<[String; 3]> = list
        .orgs
        .iter()
        .map(|org| {
            [
                escaped(&org.name).into_owned(),
                org.role
                    .map_or_else(|| "-".to_owned(), |role| role.to_string()),
                if org.current { "*" } else { "" }.to_owned(),
            ]
        })
        .collect();
    table(["ORGANIZATION", "ROLE", "CURRENT"], &rows)
}

pub fn org_used(used: &OrgUsed) -> String {
    format!("Now using organization {}.\n", escaped(&used.org))
}

/// `admin metrics`: the text as the daemon made it, control characters escaped like any
/// text from the daemon.
pub fn metrics_text(metrics: &MetricsText) -> String {
    escaped_lines(&metrics.text).into_owned()
}

/// `admin status`: one `key: value` line a figure, the values aligned.
pub fn admin_status(status: &AdminStatus) -> String {
    let store = match &status.store {
        StoreInfo::Redb { path } => format!("redb {}", escaped(path)),
        StoreInfo::Postgresql {
            hosts,
            ports,
            database,
            user,
        } => {
            let mut shown = format!("postgresql host={}", escaped(&hosts.join(",")));
            if !ports.is_empty() {
                let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                shown.push_str(&format!(" port={}", ports.join(",")));
            }
            if let Some(database) = database {
                shown.push_str(&format!(" dbname={}", escaped(database)));
            }
            if let Some(user) = user {
                shown.push_str(&format!(" user={}", escaped(user)));
            }
            shown
        }
    };
    let last_batch = match &status.last_batch {
        Some(batch) => format!(
            "{} change{} at {}, commit {}",
            batch.changes,
            if batch.changes == 1 { "" } else { "s" },
            escaped(&batch.at),
            millis(batch.commit_micros)
        ),
        None => "none yet".to_owned(),
    };
    let last_sweep = match &status.last_sweep {
        Some(sweep) => format!("{} expired at {}", sweep.expired, escaped(&sweep.at)),
        None => "none yet".to_owned(),
    };
    let yes_no = |yes: bool| if yes { "yes" } else { "no" }.to_owned();
    let mut lines = vec![
        ("version", escaped(&status.version).into_owned()),
        ("schema", status.schema_version.to_string()),
        ("store", store),
        ("reachable", yes_no(status.reachable)),
        (
            "uptime",
            humantime::format_duration(std::time::Duration::from_secs(status.uptime_secs))
                .to_string(),
        ),
        ("connections", status.connections.to_string()),
        ("writer queue", status.writer_queue.to_string()),
        ("last batch", last_batch),
        ("last sweep", last_sweep),
        ("feed head", status.feed_head.to_string()),
    ];
    /// The longest key, so that the column is the same on either store.
    const CONFLICTS: &str = "conflicts retried";
    if let Some(conflicts) = status.conflicts {
        lines.push((CONFLICTS, conflicts.to_string()));
    }
    let width = CONFLICTS.len() + 1;
    lines
        .into_iter()
        .map(|(key, value)| format!("{:width$} {value}\n", format!("{key}:")))
        .collect()
}

/// Microseconds as milliseconds with up to three decimals: `1.234 ms`.
fn millis(micros: u64) -> String {
    format!("{}.{:03} ms", micros / 1000, micros % 1000)
}

pub fn pong(pong: &Pong) -> String {
    format!("compartmentd {} is running.\n", escaped(&pong.version))
}

/// `ping` as it is printed: which daemon answered, where, and as whom.
pub fn pong_at(pong: &Pong, socket: &std::path::Path, server_uid: u32) -> String {
    let whose = match server_uid {
        0 => "root's: the system daemon".to_owned(),
        uid => match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            Ok(Some(user)) => format!("{}'s (uid {uid})", escaped(&user.name)),
            _ => format!("uid {uid}'s"),
        },
    };
    format!(
        "compartmentd {} is running at {} ({whose}).\n",
        escaped(&pong.version),
        escaped(&socket.display().to_string())
    )
}

/// Writes everything to stdout. A reader that went away (`| head`) has all it wanted, so a
/// broken pipe is a normal end, not an error.
pub fn write_stdout(text: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(text).and_then(|()| stdout.flush()) {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// Who acted, in a few words: `admin@example.com (alice)`, `root`, `uid 1001`, `the
/// daemon`; the daemon's strings escaped.
pub fn actor_name(actor: &AuditActor) -> String {
    match (&actor.email, &actor.user, actor.uid) {
        _ if actor.kind == "daemon" => "the daemon".to_owned(),
        (Some(email), Some(user), _) => format!("{} ({})", escaped(email), escaped(user)),
        (Some(email), None, Some(uid)) => format!("{} (uid {uid})", escaped(email)),
        (None, Some(user), _) => escaped(user).into_owned(),
        (_, _, Some(uid)) => format!("uid {uid}"),
        _ => escaped(&actor.kind).into_owned(),
    }
}

/// One audit record on one line: `#SEQ TIME EVENT by ACTOR in ORG on TARGET: BEFORE ->
/// AFTER OUTCOME (DETAIL)`, each part there when the record has it.
pub fn audit_line(record: &AuditRecordView) -> String {
    let entry = &record.entry;
    let who = actor_name(&entry.actor);
    let mut line = format!(
        "#{} {} {} by {who}",
        entry.seq,
        escaped(&entry.at),
        escaped(&entry.event)
    );
    if let Some(org) = &entry.org {
        line.push_str(&format!(" in {}", escaped(org)));
    }
    if let Some(target) = &entry.target {
        if entry.org.as_deref() != Some(target.id.as_str()) || target.kind != "organization" {
            line.push_str(&format!(
                " on {} {}",
                escaped(&target.kind),
                escaped(&target.id)
            ));
        }
    }
    let state = |state: &AuditState| match state.role {
        Some(role) => format!("{role} {}", escaped(&state.status)),
        None => escaped(&state.status).into_owned(),
    };
    if let (Some(before), Some(after)) = (&entry.before, &entry.after) {
        line.push_str(&format!(": {} -> {}", state(before), state(after)));
    }
    line.push_str(&format!(" [{}]", escaped(&entry.outcome)));
    if let Some(detail) = &entry.detail {
        line.push_str(&format!(" ({})", escaped(detail)));
    }
    line.push('\n');
    line
}

/// A page of `audit.list`, for a caller that asks for one.
pub fn audit_page(page: &AuditPage) -> String {
    page.records.iter().map(audit_line).collect()
}

pub fn audit_verified(verified: &AuditVerified) -> String {
    let mut out = match (verified.first, verified.last) {
        (Some(first), Some(last)) => format!("Checked records {first} to {last}"),
        _ => "The audit log is empty".to_owned(),
    };
    if verified.checked_against.is_empty() {
        out.push_str(".\n");
    } else {
        out.push_str(", against:\n");
        for anchor in &verified.checked_against {
            out.push_str(&format!("  {}\n", escaped(anchor)));
        }
    }
    match &verified.broken {
        None => out.push_str("The audit log is whole.\n"),
        Some(broken) => out.push_str(&format!(
            "BROKEN at record {}: {}\n",
            broken.seq,
            escaped(&broken.problem)
        )),
    }
    out
}

/// The signed note itself, as it is to be kept.
pub fn audit_checkpoint(checkpoint: &AuditCheckpoint) -> String {
    checkpoint.note.clone()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use compartmentctl::wire::{
        AccountInfo, BoundMembership, Member, MemberStatus, OrgEntry, OrgMembership, Permission,
        Reason, Role,
    };

    /// Every figure on its line, the values in one column on either store, PostgreSQL's
    /// target as `--store` reads and a host name's controls escaped.
    #[test]
    fn admin_status_reads_as_aligned_lines() {
        let mut status = AdminStatus {
            version: "0.1.0".into(),
            schema_version: 3,
            store: StoreInfo::Postgresql {
                hosts: vec!["db1.example".into(), "db\u{1b}[2J".into()],
                ports: vec![5432, 5433],
                database: Some("compartment".into()),
                user: Some("compartmentd".into()),
            },
            uptime_secs: 3723,
            connections: 12,
            writer_queue: 40,
            last_batch: Some(compartmentctl::wire::LastBatch {
                changes: 64,
                at: "2026-05-01T12:00:00Z".into(),
                commit_micros: 1805,
            }),
            last_sweep: Some(compartmentctl::wire::LastSweep {
                at: "2026-05-01T11:59:58Z".into(),
                expired: 1000,
            }),
            feed_head: 1041,
            reachable: false,
            conflicts: Some(7),
        };
        assert_eq!(
            admin_status(&status),
            "version:           0.1.0\n\
             schema:            3\n\
             store:             postgresql host=db1.example,db\\u{1b}[2J port=5432,5433 dbname=compartment user=compartmentd\n\
             reachable:         no\n\
             uptime:            1h 2m 3s\n\
             connections:       12\n\
             writer queue:      40\n\
             last batch:        64 changes at 2026-05-01T12:00:00Z, commit 1.805 ms\n\
             last sweep:        1000 expired at 2026-05-01T11:59:58Z\n\
             feed head:         1041\n\
             conflicts retried: 7\n"
        );
        status.store = StoreInfo::Redb {
            path: "/var/lib/compartment/compartment.redb".into(),
        };
        status.conflicts = None;
        status.last_batch = None;
        status.last_sweep = None;
        let text = admin_status(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            "store:             redb /var/lib/compartment/compartment.redb"
        );
        assert_eq!(lines[7], "last batch:        none yet");
        assert_eq!(lines[8], "last sweep:        none yet");
        assert_eq!(lines.len(), 10);
    }

    fn invited() -> Invitation {
        Invitation {
            org: "acme".into(),
            email: "deploy@example.com".into(),
            role: Role::Deployer,
            status: MemberStatus::Invited,
            activation_url: Some("https://your-compartment-host/activate?token=abc".into()),
            expires_at: Some("2026-05-01T12:00:00Z".into()),
            held_by: None,
            redeemable_by: None,
            access_until: None,
        }
    }

    #[test]
    fn table_aligns_columns_without_trailing_spaces() {
        let rows = [
            [
                "admin@example.com".to_owned(),
                "admin".into(),
                "active".into(),
                "-".into(),
            ],
            [
                "deploy@example.com".to_owned(),
                "deployer".into(),
                "invited".into(),
                "2026-05-01T12:00:00Z".into(),
            ],
        ];
        assert_eq!(
            table(["EMAIL", "ROLE", "STATUS", "EXPIRES"], &rows),
            "EMAIL               ROLE      STATUS   EXPIRES\n\
             admin@example.com   admin     active   -\n\
             deploy@example.com  deployer  invited  2026-05-01T12:00:00Z\n"
        );
    }

    #[test]
    fn table_trims_an_empty_last_cell_and_prints_a_lone_header() {
        let rows = [
            ["acme".to_owned(), "admin".into(), "*".into()],
            ["beta-corporation".to_owned(), "-".into(), String::new()],
        ];
        let text = table(["ORGANIZATION", "ROLE", "CURRENT"], &rows);
        assert_eq!(
            text,
            "ORGANIZATION      ROLE   CURRENT\n\
             acme              admin  *\n\
             beta-corporation  -\n"
        );
        assert_eq!(table(["EMAIL", "ROLE"], &[]), "EMAIL  ROLE\n");
    }

    #[test]
    fn invitation_prints_the_pages_three_lines() {
        assert_eq!(
            invitation(&invited()),
            "Invited deploy@example.com as deployer.\n\
             Activation URL: https://your-compartment-host/activate?token=abc\n\
             Invitation expires at: 2026-05-01T12:00:00Z\n"
        );
    }

    #[test]
    fn an_invitation_says_when_access_ends() {
        let mut contractor = invited();
        contractor.access_until = Some("2027-01-01T00:00:00Z".into());
        contractor.redeemable_by = Some("bob".into());
        assert_eq!(
            invitation(&contractor),
            "Invited deploy@example.com as deployer.\n\
             Activation URL: https://your-compartment-host/activate?token=abc\n\
             Invitation expires at: 2026-05-01T12:00:00Z\n\
             Access ends at: 2027-01-01T00:00:00Z\n\
             Only Unix user bob can redeem this URL.\n"
        );
        contractor.status = MemberStatus::Active;
        contractor.activation_url = None;
        contractor.expires_at = None;
        contractor.redeemable_by = None;
        assert_eq!(
            invitation(&contractor),
            "Invited deploy@example.com as deployer.\n\
             deploy@example.com already has an account: access is granted now, no activation URL needed.\n\
             Access ends at: 2027-01-01T00:00:00Z\n"
        );
    }

    #[test]
    fn invitation_of_an_existing_account_needs_no_url() {
        let active = Invitation {
            email: "ops@example.com".into(),
            status: MemberStatus::Active,
            activation_url: None,
            expires_at: None,
            ..invited()
        };
        assert_eq!(
            invitation(&active),
            "Invited ops@example.com as deployer.\n\
             ops@example.com already has an account: access is granted now, no activation URL needed.\n"
        );
    }

    #[test]
    fn org_created_announces_the_org_then_the_admins_invitation() {
        let created = OrgCreated {
            org: "acme".into(),
            admin: Invitation {
                role: Role::Admin,
                ..invited()
            },
        };
        assert_eq!(
            org_created(&created),
            "Created organization acme.\n\
             Invited deploy@example.com as admin.\n\
             Activation URL: https://your-compartment-host/activate?token=abc\n\
             Invitation expires at: 2026-05-01T12:00:00Z\n"
        );
    }

    #[test]
    fn member_list_with_no_members_is_the_header() {
        let list = MemberList {
            org: "acme".into(),
            members: vec![],
            next: None,
            groups: Default::default(),
        };
        assert_eq!(
            member_list(&list),
            "EMAIL  ROLE  STATUS  UNIX USER  EXPIRES\n"
        );
        let list = MemberList {
            org: "acme".into(),
            members: vec![Member {
                email: "a@example.com".into(),
                role: Role::Viewer,
                status: MemberStatus::Expired,
                expires_at: Some("2026-05-01T12:00:00Z".into()),
                unix_user: None,
                blocked: None,
                access_until: None,
                elevation: None,
                binding_stale: Default::default(),
            }],
            next: None,
            groups: Default::default(),
        };
        assert_eq!(
            member_list(&list),
            "EMAIL          ROLE    STATUS   UNIX USER  EXPIRES\n\
             a@example.com  viewer  expired  -          2026-05-01T12:00:00Z\n"
        );
        let list = MemberList {
            org: "acme".into(),
            members: vec![Member {
                email: "a@example.com".into(),
                role: Role::Admin,
                status: MemberStatus::Active,
                expires_at: None,
                unix_user: Some("alice".into()),
                blocked: None,
                access_until: None,
                elevation: None,
                binding_stale: Default::default(),
            }],
            next: None,
            groups: Default::default(),
        };
        assert_eq!(
            member_list(&list),
            "EMAIL          ROLE   STATUS  UNIX USER  EXPIRES\n\
             a@example.com  admin  active  alice      -\n"
        );
    }

    fn block(until: Option<&str>) -> MemberBlock {
        MemberBlock {
            reason: "laptop lost".into(),
            by: "admin@example.com".into(),
            at: "2026-12-01T09:00:00Z".into(),
            until: until.map(Into::into),
        }
    }

    fn active(email: &str) -> Member {
        Member {
            email: email.into(),
            role: Role::Deployer,
            status: MemberStatus::Active,
            expires_at: None,
            unix_user: Some("alice".into()),
            blocked: None,
            access_until: None,
            elevation: None,
            binding_stale: Default::default(),
        }
    }

    #[test]
    fn block_unblock_and_a_grant_until_read_as_sentences() {
        let blocked = UserBlocked {
            org: "acme".into(),
            email: "alice@example.com".into(),
            block: block(Some("2026-12-14T00:00:00Z")),
        };
        assert_eq!(
            user_blocked(&blocked),
            "Blocked alice@example.com in acme until 2026-12-14T00:00:00Z: laptop lost\n"
        );
        let blocked = UserBlocked {
            block: block(None),
            ..blocked
        };
        assert_eq!(
            user_blocked(&blocked),
            "Blocked alice@example.com in acme until unblocked: laptop lost\n"
        );
        assert_eq!(
            user_unblocked(&UserUnblocked {
                org: "acme".into(),
                email: "alice@example.com".into(),
                block: block(None),
            }),
            "Unblocked alice@example.com in acme.\n"
        );
        assert_eq!(
            granted(&Granted {
                org: "acme".into(),
                email: "oncall@example.com".into(),
                role: Role::Admin,
                previous_role: Role::Deployer,
                until: Some("2026-12-14T08:00:00Z".into()),
            }),
            "Granted admin to oncall@example.com in acme until 2026-12-14T08:00:00Z \
             (was deployer; deployer again after).\n"
        );
    }

    #[test]
    fn user_list_shows_a_block_and_every_end_earliest_first() {
        let mut blocked = active("a@example.com");
        blocked.blocked = Some(block(None));
        let mut blocked_until = active("b@example.com");
        blocked_until.blocked = Some(block(Some("2026-12-14T00:00:00Z")));
        let mut contractor = active("c@example.com");
        contractor.access_until = Some("2027-01-01T00:00:00Z".into());
        let mut oncall = active("d@example.com");
        oncall.role = Role::Admin;
        oncall.elevation = Some(MemberElevation {
            until: "2026-12-02T08:00:00Z".into(),
            fallback: Role::Deployer,
        });
        // All three, given out of order; the block's end is the latest, the elevation's
        // the earliest, and a fraction of a second sorts as time, not as text.
        let mut all = active("e@example.com");
        all.role = Role::Admin;
        all.blocked = Some(block(Some("2027-02-01T00:00:00Z")));
        all.access_until = Some("2027-01-01T00:00:00.5Z".into());
        all.elevation = Some(MemberElevation {
            until: "2027-01-01T00:00:00Z".into(),
            fallback: Role::Readonly,
        });
        // An invitation keeps its expiry, whatever end its membership will have.
        let mut invited = active("f@example.com");
        invited.status = MemberStatus::Invited;
        invited.unix_user = None;
        invited.expires_at = Some("2026-12-08T00:00:00Z".into());
        invited.access_until = Some("2027-01-01T00:00:00Z".into());
        let cells = |member: &Member| {
            let [_, _, status, _, expires] = member_row(member);
            (status, expires)
        };
        let cell = |status: &str, expires: &str| (status.to_owned(), expires.to_owned());
        assert_eq!(cells(&blocked), cell("blocked", "-"));
        assert_eq!(
            cells(&blocked_until),
            cell("blocked", "2026-12-14T00:00:00Z (block ends)")
        );
        assert_eq!(
            cells(&contractor),
            cell("active", "2027-01-01T00:00:00Z (access ends)")
        );
        assert_eq!(
            cells(&oncall),
            cell("active", "2026-12-02T08:00:00Z (then deployer)")
        );
        assert_eq!(
            cells(&all),
            cell(
                "blocked",
                "2027-01-01T00:00:00Z (then readonly), 2027-01-01T00:00:00.5Z (access ends), \
                 2027-02-01T00:00:00Z (block ends)"
            )
        );
        assert_eq!(cells(&invited), cell("invited", "2026-12-08T00:00:00Z"));
        let list = MemberList {
            org: "acme".into(),
            members: vec![
                blocked,
                blocked_until,
                contractor,
                oncall,
                active("g@example.com"),
            ],
            next: None,
            groups: Default::default(),
        };
        assert_eq!(
            member_list(&list),
            "EMAIL          ROLE      STATUS   UNIX USER  EXPIRES\n\
             a@example.com  deployer  blocked  alice      -\n\
             b@example.com  deployer  blocked  alice      2026-12-14T00:00:00Z (block ends)\n\
             c@example.com  deployer  active   alice      2027-01-01T00:00:00Z (access ends)\n\
             d@example.com  admin     active   alice      2026-12-02T08:00:00Z (then deployer)\n\
             g@example.com  deployer  active   alice      -\n"
        );
    }

    #[test]
    fn sentences() {
        let removed_text = removed(&Removed {
            org: "acme".into(),
            email: "former-colleague@example.com".into(),
        });
        assert_eq!(
            removed_text,
            "Removed former-colleague@example.com from acme.\n"
        );
        let granted_text = granted(&Granted {
            org: "acme".into(),
            email: "user@example.com".into(),
            role: Role::Deployer,
            previous_role: Role::Readonly,
            until: None,
        });
        assert_eq!(
            granted_text,
            "Granted deployer to user@example.com in acme (was readonly).\n"
        );
        let activated_text = activated(&Activated {
            org: "acme".into(),
            email: "deploy@example.com".into(),
            role: Role::Deployer,
        });
        assert_eq!(
            activated_text,
            "Activated deploy@example.com: you are now deployer in acme.\n"
        );
        assert_eq!(
            org_used(&OrgUsed { org: "acme".into() }),
            "Now using organization acme.\n"
        );
        assert_eq!(
            pong(&Pong {
                version: "0.1.0".into()
            }),
            "compartmentd 0.1.0 is running.\n"
        );
    }

    #[test]
    fn role_list_is_a_table() {
        let list = RoleList {
            roles: vec![
                RoleInfo {
                    name: Role::Admin,
                    description: "all".into(),
                    permissions: vec![],
                },
                RoleInfo {
                    name: Role::Readonly,
                    description: "look".into(),
                    permissions: vec![],
                },
            ],
        };
        assert_eq!(
            role_list(&list),
            "ROLE      DESCRIPTION\nadmin     all\nreadonly  look\n"
        );
    }

    fn who(uid: u32, superuser: bool, account: Option<&str>) -> WhoAmI {
        WhoAmI {
            uid,
            gid: uid,
            pid: Some(42),
            superuser,
            unix_user: None,
            binding_problem: None,
            account: account.map(|email| AccountInfo {
                email: email.into(),
                status: AccountStatus::Active,
            }),
            current_org: None,
            memberships: vec![],
            permissions: vec![],
        }
    }

    #[test]
    fn role_show_lists_each_permission_and_what_it_allows() {
        assert_eq!(
            role_info(&RoleInfo::of(Role::Readonly)),
            "readonly: View projects and deployments; cannot see sensitive variable values or make changes\n\
             \n\
             PERMISSION                  ALLOWS\n\
             organization.read           see the organization\n\
             project.read                see its projects\n\
             deployment.read             see its deployments\n\
             organization.member.list    list the members (user list)\n\
             organization.settings.read  read the organization's settings\n\
             variable.metadata.read      read variables, sensitive values masked\n"
        );
    }

    fn decision(allowed: bool, permission: Permission, message: &str) -> Decision {
        Decision {
            allowed,
            permission,
            org: Some("acme".into()),
            uid: Some(1001),
            user: Some("alice".into()),
            email: Some("alice@example.com".into()),
            role: Some(Role::Deployer),
            reason: if allowed {
                Reason::Role
            } else {
                Reason::RoleTooLow
            },
            message: message.into(),
        }
    }

    #[test]
    fn auth_can_says_yes_or_no_then_why() {
        let yes = decision(
            true,
            Permission::DeploymentCreate,
            "alice@example.com is deployer in acme",
        );
        assert_eq!(
            authz_answer(&AuthzAnswer::One(yes.clone())),
            "yes\nalice@example.com is deployer in acme\n"
        );
        let no = decision(false, Permission::OrganizationUserInvite, "needs admin");
        assert_eq!(
            authz_answer(&AuthzAnswer::One(no.clone())),
            "no\nneeds admin\n"
        );
        assert_eq!(
            authz_answer(&AuthzAnswer::Many {
                decisions: vec![yes, no]
            }),
            "ANSWER  PERMISSION                WHY\n\
             yes     deployment.create         alice@example.com is deployer in acme\n\
             no      organization.user.invite  needs admin\n"
        );
    }

    #[test]
    fn whoami_lists_the_permissions_in_the_current_org() {
        let mut me = who(1001, false, Some("deploy@example.com"));
        me.current_org = Some("acme".into());
        me.permissions = Role::Viewer.permissions();
        assert_eq!(
            whoami(&me),
            "uid 1001: deploy@example.com (active)\n\
             current organization: acme\n\
             permissions in acme: organization.read, project.read, deployment.read\n"
        );
    }

    #[test]
    fn whoami_names_each_kind_of_caller() {
        assert_eq!(
            whoami(&who(1001, false, Some("deploy@example.com"))),
            "uid 1001: deploy@example.com (active)\n"
        );
        assert_eq!(
            whoami(&who(0, true, None)),
            "uid 0: superuser (admin power in every organization)\n"
        );
        assert_eq!(
            whoami(&who(0, true, Some("a@example.com"))),
            "uid 0: a@example.com (active), superuser\n"
        );
        assert_eq!(
            whoami(&who(1001, false, None)),
            "uid 1001: no account yet (activate an invitation: run compartment activate and paste its URL)\n"
        );
    }

    #[test]
    fn whoami_names_the_unix_user_and_a_binding_that_no_longer_holds() {
        let mut me = who(1001, false, Some("deploy@example.com"));
        me.unix_user = Some("alice".into());
        assert_eq!(
            whoami(&me),
            "uid 1001 (alice): deploy@example.com (active)\n"
        );
        let mut reused = who(1001, false, None);
        reused.unix_user = Some("bob".into());
        reused.binding_problem =
            Some("its binding was made for Unix user alice, and it now belongs to bob".into());
        assert_eq!(
            whoami(&reused),
            "uid 1001 (bob): no account: its binding was made for Unix user alice, and it now belongs to bob; ask a superuser to rebind or unbind it\n"
        );
    }

    #[test]
    fn an_invitation_says_who_may_redeem_it() {
        let mut held = invited();
        held.held_by = Some("evil".into());
        held.redeemable_by = Some("evil".into());
        assert_eq!(
            invitation(&held),
            "Invited deploy@example.com as deployer.\n\
             Activation URL: https://your-compartment-host/activate?token=abc\n\
             Invitation expires at: 2026-05-01T12:00:00Z\n\
             deploy@example.com already has an account, held by Unix user evil: only evil can redeem this URL.\n"
        );
        let mut named = invited();
        named.redeemable_by = Some("bob".into());
        assert!(
            invitation(&named).ends_with("\nOnly Unix user bob can redeem this URL.\n"),
            "{}",
            invitation(&named)
        );
        let mut joined = invited();
        joined.status = MemberStatus::Active;
        joined.activation_url = None;
        joined.expires_at = None;
        joined.held_by = Some("bob".into());
        assert_eq!(
            invitation(&joined),
            "Invited deploy@example.com as deployer.\n\
             deploy@example.com already has an account (Unix user bob): access is granted now, no activation URL needed.\n"
        );
    }

    #[test]
    fn accounts_show_their_binding() {
        let account = AccountDetail {
            email: "a@example.com".into(),
            status: AccountStatus::Active,
            uid: Some(1001),
            unix_user: Some("alice".into()),
            uid_now_belongs_to: Some(Some("bob".into())),
            bound_at: Some("2026-05-01T12:00:00Z".into()),
            bound_through: Some("organization acme".into()),
            memberships: vec![OrgMembership {
                org: "acme".into(),
                role: Role::Admin,
                status: MemberStatus::Active,
                usable: Some(false),
                blocked: Default::default(),
                group: Default::default(),
            }],
        };
        assert_eq!(
            account_detail(&account),
            "account: a@example.com\n\
             status: active\n\
             bound to: Unix user alice (uid 1001); uid 1001 is now bob: the binding does not hold\n\
             bound at: 2026-05-01T12:00:00Z\n\
             bound through: organization acme\n\
             ORGANIZATION  ROLE   STATUS\n\
             acme          admin  active (pinned to an earlier uid)\n"
        );
        assert_eq!(
            account_list(&AccountList {
                accounts: vec![account]
            }),
            "EMAIL          STATUS         UNIX USER  UID   BOUND THROUGH\n\
             a@example.com  binding stale  alice      1001  organization acme\n"
        );
        // A binding that holds is `active`.
        let holding = AccountDetail {
            email: "h@example.com".into(),
            status: AccountStatus::Active,
            uid: Some(1002),
            unix_user: Some("carol".into()),
            uid_now_belongs_to: Some(Some("carol".into())),
            bound_at: None,
            bound_through: None,
            memberships: Vec::new(),
        };
        assert_eq!(
            account_list(&AccountList {
                accounts: vec![holding]
            }),
            "EMAIL          STATUS  UNIX USER  UID   BOUND THROUGH\n\
             h@example.com  active  carol      1002  -\n"
        );
        // Not yet activated: `invited`, as `user list` says it.
        let pending = AccountDetail {
            email: "p@example.com".into(),
            status: AccountStatus::Pending,
            uid: None,
            unix_user: None,
            uid_now_belongs_to: None,
            bound_at: None,
            bound_through: None,
            memberships: Vec::new(),
        };
        assert_eq!(
            account_list(&AccountList {
                accounts: vec![pending]
            }),
            "EMAIL          STATUS   UNIX USER  UID  BOUND THROUGH\n\
             p@example.com  invited  -          -    -\n"
        );
        let mut binding = AccountBinding {
            email: "a@example.com".into(),
            uid: 1001,
            unix_user: Some("alice".into()),
            carried: Vec::new(),
            dropped: Vec::new(),
        };
        assert_eq!(
            unbound(&binding),
            "Unbound a@example.com from Unix user alice (uid 1001).\n"
        );
        assert_eq!(
            bound(&binding),
            "Bound a@example.com to Unix user alice (uid 1001).\n"
        );
        binding.carried = vec![BoundMembership {
            org: "acme".into(),
            role: Role::Deployer,
        }];
        binding.dropped = vec![BoundMembership {
            org: "squat".into(),
            role: Role::Admin,
        }];
        assert_eq!(
            bound(&binding),
            "Bound a@example.com to Unix user alice (uid 1001).\n\
             Carried over: deployer in acme.\n\
             Not carried over: admin in squat (made through a binding no superuser vouched for).\n\
             To carry those over too, bind again with --carry-all.\n"
        );
    }

    #[test]
    fn whoami_shows_the_current_org_and_memberships() {
        let mut me = who(1001, false, Some("deploy@example.com"));
        me.current_org = Some("acme".into());
        me.memberships = vec![
            OrgMembership {
                org: "acme".into(),
                role: Role::Deployer,
                status: MemberStatus::Active,
                usable: None,
                blocked: Default::default(),
                group: Default::default(),
            },
            OrgMembership {
                org: "beta".into(),
                role: Role::Viewer,
                status: MemberStatus::Invited,
                usable: None,
                blocked: Default::default(),
                group: Default::default(),
            },
        ];
        assert_eq!(
            whoami(&me),
            "uid 1001: deploy@example.com (active)\n\
             current organization: acme\n\
             ORGANIZATION  ROLE      STATUS\n\
             acme          deployer  active\n\
             beta          viewer    invited\n"
        );
    }

    #[test]
    fn org_list_marks_the_current_one() {
        let list = OrgList {
            orgs: vec![
                OrgEntry {
                    name: "acme".into(),
                    role: Some(Role::Admin),
                    current: true,
                },
                OrgEntry {
                    name: "beta".into(),
                    role: None,
                    current: false,
                },
            ],
        };
        assert_eq!(
            org_list(&list),
            "ORGANIZATION  ROLE   CURRENT\nacme          admin  *\nbeta          -\n"
        );
    }

    /// A name that would write the clipboard, set the window title, clear the screen and
    /// reverse what follows, as a hostile daemon or user name could carry.
    const HOSTILE: &str = "\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}]0;t\u{7}\u{1b}[2J\u{202e}x";
    const HOSTILE_SHOWN: &str = "\\u{1b}]52;c;ZXZpbA==\\u{7}\\u{1b}]0;t\\u{7}\\u{1b}[2J\\u{202e}x";

    /// No character that acts on a terminal, newlines aside.
    #[track_caller]
    fn assert_inert(text: &str) {
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && super::super::escape::acts_on_terminal(c)),
            "{text:?}"
        );
    }

    #[test]
    fn every_string_the_daemon_sends_is_escaped() {
        let h = || HOSTILE.to_owned();
        let invited = Invitation {
            org: h(),
            email: h(),
            role: Role::Deployer,
            status: MemberStatus::Invited,
            activation_url: Some(h()),
            expires_at: Some(h()),
            held_by: Some(h()),
            redeemable_by: Some(h()),
            access_until: Some(h()),
        };
        let membership = OrgMembership {
            org: h(),
            role: Role::Viewer,
            status: MemberStatus::Active,
            usable: Some(false),
            blocked: Default::default(),
            group: Default::default(),
        };
        let detail = AccountDetail {
            email: h(),
            status: AccountStatus::Active,
            uid: Some(1001),
            unix_user: Some(h()),
            uid_now_belongs_to: Some(Some("other".into())),
            bound_at: Some(h()),
            bound_through: Some(h()),
            memberships: vec![membership.clone()],
        };
        let binding = AccountBinding {
            email: h(),
            uid: 1001,
            unix_user: Some(h()),
            carried: vec![compartmentctl::wire::BoundMembership {
                org: h(),
                role: Role::Viewer,
            }],
            dropped: vec![compartmentctl::wire::BoundMembership {
                org: h(),
                role: Role::Admin,
            }],
        };
        let mut me = who(1001, false, Some(HOSTILE));
        me.unix_user = Some(h());
        me.current_org = Some(h());
        me.memberships = vec![membership];
        me.permissions = Role::Viewer.permissions();
        let mut unbound_me = who(1001, false, None);
        unbound_me.binding_problem = Some(h());
        let mut no_url = invited.clone();
        no_url.activation_url = None;
        let texts = [
            invitation(&invited),
            invitation(&no_url),
            org_created(&OrgCreated {
                org: h(),
                admin: invited.clone(),
            }),
            member_list(&MemberList {
                org: h(),
                members: vec![Member {
                    email: h(),
                    role: Role::Admin,
                    status: MemberStatus::Active,
                    expires_at: Some(h()),
                    unix_user: Some(h()),
                    blocked: None,
                    access_until: None,
                    elevation: None,
                    binding_stale: Default::default(),
                }],
                next: None,
                groups: Default::default(),
            }),
            account_list(&AccountList {
                accounts: vec![detail.clone()],
            }),
            account_detail(&detail),
            unbound(&binding),
            bound(&binding),
            removed(&Removed {
                org: h(),
                email: h(),
            }),
            granted(&Granted {
                org: h(),
                email: h(),
                role: Role::Admin,
                previous_role: Role::Viewer,
                until: None,
            }),
            role_list(&RoleList {
                roles: vec![RoleInfo {
                    name: Role::Admin,
                    description: h(),
                    permissions: vec![],
                }],
            }),
            role_info(&RoleInfo {
                name: Role::Admin,
                description: h(),
                permissions: vec![],
            }),
            authz_answer(&AuthzAnswer::One(decision(
                true,
                Permission::ProjectRead,
                HOSTILE,
            ))),
            authz_answer(&AuthzAnswer::Many {
                decisions: vec![decision(false, Permission::ProjectRead, HOSTILE)],
            }),
            activated(&Activated {
                org: h(),
                email: h(),
                role: Role::Admin,
            }),
            whoami(&me),
            whoami(&unbound_me),
            org_list(&OrgList {
                orgs: vec![OrgEntry {
                    name: h(),
                    role: None,
                    current: true,
                }],
            }),
            org_used(&OrgUsed { org: h() }),
            pong(&Pong { version: h() }),
            user_blocked(&UserBlocked {
                org: h(),
                email: h(),
                block: MemberBlock {
                    reason: h(),
                    by: h(),
                    at: h(),
                    until: Some(h()),
                },
            }),
            user_unblocked(&UserUnblocked {
                org: h(),
                email: h(),
                block: MemberBlock {
                    reason: h(),
                    by: h(),
                    at: h(),
                    until: None,
                },
            }),
            granted(&Granted {
                org: h(),
                email: h(),
                role: Role::Admin,
                previous_role: Role::Viewer,
                until: Some(h()),
            }),
            member_list(&MemberList {
                org: h(),
                members: vec![Member {
                    email: "a@example.com".into(),
                    role: Role::Admin,
                    status: MemberStatus::Active,
                    expires_at: None,
                    unix_user: None,
                    blocked: Some(MemberBlock {
                        reason: h(),
                        by: h(),
                        at: h(),
                        until: Some(h()),
                    }),
                    access_until: Some(h()),
                    elevation: Some(MemberElevation {
                        until: h(),
                        fallback: Role::Deployer,
                    }),
                    binding_stale: Default::default(),
                }],
                next: None,
                groups: Default::default(),
            }),
        ];
        for text in &texts {
            assert_inert(text);
            assert!(text.contains(HOSTILE_SHOWN), "{text:?}");
        }
        // JSON for people: serde escapes the C0 controls its way, and the rest ours.
        assert_eq!(
            pretty(&serde_json::json!({ "name": HOSTILE })),
            "{\n  \"name\": \"\\u001b]52;c;ZXZpbA==\\u0007\\u001b]0;t\\u0007\\u001b[2J\\u{202e}x\"\n}\n"
        );
    }

    #[test]
    fn a_held_invitation_names_the_holder_escaped() {
        let mut held = invited();
        held.held_by = Some("bob\u{202e}evil".into());
        assert_eq!(
            invitation(&held).lines().last(),
            Some("deploy@example.com already has an account, held by Unix user bob\\u{202e}evil: only bob\\u{202e}evil can redeem this URL.")
        );
    }

    #[test]
    fn a_table_aligns_on_the_escaped_text() {
        let list = MemberList {
            org: "acme".into(),
            members: vec![
                Member {
                    email: "a@example.com".into(),
                    role: Role::Admin,
                    status: MemberStatus::Active,
                    expires_at: None,
                    unix_user: Some("\u{202e}eve".into()),
                    blocked: None,
                    access_until: None,
                    elevation: None,
                    binding_stale: Default::default(),
                },
                Member {
                    email: "b\u{200b}@example.com".into(),
                    role: Role::Viewer,
                    status: MemberStatus::Active,
                    expires_at: None,
                    unix_user: Some("bob".into()),
                    blocked: None,
                    access_until: None,
                    elevation: None,
                    binding_stale: Default::default(),
                },
            ],
            next: None,
            groups: Default::default(),
        };
        assert_eq!(
            member_list(&list),
            "EMAIL                  ROLE    STATUS  UNIX USER    EXPIRES\n\
             a@example.com          admin   active  \\u{202e}eve  -\n\
             b\\u{200b}@example.com  viewer  active  bob          -\n"
        );
    }

    #[test]
    fn json_is_one_compact_line() {
        let line = json(&OrgUsed { org: "acme".into() }).unwrap();
        assert_eq!(line, "{\"org\":\"acme\"}\n");
    }
}
