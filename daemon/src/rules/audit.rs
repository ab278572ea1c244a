//! What the rules write to the audit log: one record per change, in the change's own
//! transaction, naming who acted, the event key, what it was about and what it was before
//! and after.

use std::borrow::Cow;

use compartmentctl::wire::{
    methods, AuditActor, AuditCheckpoint, AuditEntry, AuditListParams, AuditPage, AuditState,
    AuditTarget, AuditVerified, AuditVerifyParams, Gated as _, Request, DECLARATIONS,
    DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE,
};

use super::identity::{authenticate, in_org, Actor};
use super::{Caller, RuleError};
use crate::checkpoint::Signer;
use crate::store::chain::{self, timestamp, Anchor};
use crate::store::{AuditRecord, ChainHash, Changes, MembershipRecord, Millis, Reader};

/// The actor of a request: its account when its binding held, else its uid alone.
pub fn actor(actor: &Actor) -> AuditActor {
    caller_as(&actor.caller, actor.email.as_deref())
}

/// The caller, with the account it acts as when there is one.
pub fn caller_as(caller: &Caller, email: Option<&str>) -> AuditActor {
    AuditActor {
        kind: if caller.superuser {
            "superuser"
        } else {
            "user"
        }
        .to_owned(),
        email: email.map(str::to_owned),
        uid: Some(caller.uid),
        user: caller.user.as_deref().map(str::to_owned),
        pid: caller.pid,
    }
}

/// The daemon itself: the sweeper, its own checks.
pub fn daemon() -> AuditActor {
    AuditActor {
        kind: "daemon".to_owned(),
        email: None,
        uid: None,
        user: None,
        pid: None,
    }
}

/// A membership's role and status at `now`, or not a member.
pub fn state(membership: Option<&MembershipRecord>, now: Millis) -> AuditState {
    match membership {
        Some(membership) if super::terms::is_blocked(membership, now) => AuditState {
            role: Some(membership.terms.role_at(membership.role, now)),
            status: "blocked".to_owned(),
        },
        Some(membership) => AuditState {
            role: Some(membership.terms.role_at(membership.role, now)),
            status: membership.status_at(now).to_string(),
        },
        None => AuditState {
            role: None,
            status: "none".to_owned(),
        },
    }
}

/// One record being made.
#[derive(Debug, Clone)]
pub struct Entry(AuditRecord);

impl Entry {
    /// `event` by `actor` at `now`, allowed.
    pub fn new(actor: AuditActor, event: &str, now: Millis) -> Entry {
        Entry(AuditRecord {
            at: now,
            actor,
            event: event.to_owned(),
            org: None,
            target: None,
            before: None,
            after: None,
            outcome: "ok".to_owned(),
            detail: None,
        })
    }

    pub fn org(mut self, org: &str) -> Entry {
        self.0.org = Some(org.to_owned());
        self
    }

    /// About an account.
    pub fn account(mut self, email: &str) -> Entry {
        self.0.target = Some(AuditTarget {
            kind: "account".to_owned(),
            id: email.to_owned(),
        });
        self
    }

    /// About an organization (also the organization it happened in).
    pub fn organization(mut self, name: &str) -> Entry {
        self.0.target = Some(AuditTarget {
            kind: "organization".to_owned(),
            id: name.to_owned(),
        });
        self.org(name)
    }

    /// A membership's state before and after.
    pub fn change(mut self, before: AuditState, after: AuditState) -> Entry {
        self.0.before = Some(before);
        self.0.after = Some(after);
        self
    }

    /// Refused, with the kind of error (`forbidden`, `last_admin`, …).
    pub fn outcome(mut self, kind: &str) -> Entry {
        self.0.outcome = kind.to_owned();
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Entry {
        self.0.detail = Some(detail.into());
        self
    }

    /// The record as it will be appended.
    #[cfg(test)]
    pub fn record(&self) -> &AuditRecord {
        &self.0
    }

    /// Appends it in `txn`.
    pub fn append(self, txn: &impl Changes) -> Result<(), RuleError> {
        txn.append_audit(&self.0)?;
        Ok(())
    }
}

/// What a request asked, for the record of its refusal: its method, the organization it
/// named and whom it was about. Read before the request is served; a routine question's
/// (`authz.check`, `whoami`) keeps its method's name alone, so reading it costs nothing.
#[derive(Debug, Clone)]
pub struct Asked {
    method: &'static str,
    org: Option<String>,
    target: Option<AuditTarget>,
}

impl Asked {
    pub fn of(request: &Request) -> Asked {
        let method = request.method();
        if request.routine() {
            return Asked {
                method,
                org: None,
                target: None,
            };
        }
        let account = |email: &str| {
            Some(AuditTarget {
                kind: "account".to_owned(),
                id: email.to_owned(),
            })
        };
        let organization = |name: &str| {
            Some(AuditTarget {
                kind: "organization".to_owned(),
                id: name.to_owned(),
            })
        };
        let target = match request {
            Request::UserInvite(params) => account(&params.email),
            Request::UserRemove(params) => account(&params.email),
            Request::RoleGrant(params) => account(&params.email),
            Request::UserBlock(params) => account(&params.email),
            Request::UserUnblock(params) => account(&params.email),
            Request::AccountShow(params) | Request::AccountUnbind(params) => account(&params.email),
            Request::AccountDelete(params) => account(&params.email),
            Request::AccountRename(params) => account(&params.email),
            Request::AccountBind(params) => account(&params.email),
            Request::OrgCreate(params) => organization(&params.name),
            Request::OrgDelete(params) => organization(&params.name),
            Request::OrgRename(params) => organization(&params.name),
            Request::OrgMapGroup(params) => organization(&params.name),
            Request::OrgUnmapGroup(params) => organization(&params.name),
            _ => None,
        };
        Asked {
            method,
            org: request.org().map(str::to_owned),
            target,
        }
    }

    /// The event key the request's records carry: in the permission table's words where
    /// the method needs a permission; else the method's own name, an organization's spelt
    /// out as the table spells it (`organization.create`).
    pub fn event(&self) -> Cow<'static, str> {
        let permission = DECLARATIONS
            .iter()
            .find(|declared| declared.name == self.method)
            .and_then(|declared| declared.permission);
        match (permission, self.method.strip_prefix("org.")) {
            (Some(permission), _) => Cow::Borrowed(permission.key()),
            (None, Some(rest)) => Cow::Owned(format!("organization.{rest}")),
            (None, None) => Cow::Borrowed(self.method),
        }
    }

    /// The record of its refusal by `actor` at `now`: the error's kind and its sentence,
    /// in the organization the request named, else the one the refusal names (the
    /// caller's current one, as the rules resolved it).
    pub fn refused(&self, actor: AuditActor, now: Millis, error: &RuleError) -> Entry {
        let mut entry = Entry::new(actor, &self.event(), now)
            .outcome(error.kind().as_str())
            .detail(error.user_message());
        entry.0.org = self.org.clone().or_else(|| error.org().map(str::to_owned));
        entry.0.target.clone_from(&self.target);
        entry
    }
}

/// The records one page of `audit.list` reads at most, matching or not, so that a page
/// with narrow filters costs a bounded read and says where to go on.
const SCAN_BUDGET: usize = 10_000;

/// One page of `audit.list`: a superuser's of the whole host (or of `org`); an
/// organization's admins' of their organization's records (its own or the current one).
pub fn list_page(
    reader: &impl Reader,
    caller: &Caller,
    params: &AuditListParams,
    now: Millis,
) -> Result<AuditPage, RuleError> {
    // Who asks is judged first: someone who may not read learns nothing more.
    let org = if caller.superuser && params.org.is_none() {
        None
    } else {
        let actor = authenticate(reader, caller)?;
        let here = in_org(reader, &actor, params.org.as_deref(), now)?;
        here.require(methods::AuditList::NEEDS)?;
        Some(here.org)
    };
    let limit = match params.limit {
        None => DEFAULT_AUDIT_PAGE,
        Some(limit @ 1..=MAX_AUDIT_PAGE) => limit,
        Some(limit) => {
            return Err(RuleError::BadRequest(format!(
                "limit {limit} is out of range: a page holds 1 to {MAX_AUDIT_PAGE} records"
            )))
        }
    } as usize;
    // Where the page starts, and then the last record read.
    let mut position = match &params.after {
        None => 0,
        Some(after) => after.parse::<u64>().map_err(|_| {
            RuleError::BadRequest(format!("{after:?} is not a cursor of audit.list"))
        })?,
    };
    let filter = Filter::of(params, now)?;
    // An organization's records begin with its creation: those of an organization deleted
    // before under the same name are not its own.
    let since = match &org {
        Some(org) => reader.org(org)?.map(|record| timestamp(record.created_at)),
        None => None,
    };
    let mut records = Vec::new();
    let mut scanned = 0;
    let mut ended = false;
    while records.len() < limit && scanned < SCAN_BUDGET {
        let chunk = (limit - records.len()).max(64);
        let page = match &org {
            Some(org) => reader.org_audit_after(org, position, chunk)?,
            None => reader.audit_after(position, chunk)?,
        };
        if page.len() < chunk {
            ended = true;
        }
        for sealed in page {
            scanned += 1;
            position = sealed.seq;
            let view = sealed.view()?;
            let before_it = since
                .as_deref()
                .is_some_and(|since| view.entry.at.as_str() < since);
            if !before_it && filter.admits(&view.entry) {
                records.push(view);
                if records.len() == limit {
                    break;
                }
            }
        }
        if ended {
            break;
        }
    }
    let cursor = (position > 0).then(|| position.to_string());
    let (next, tail) = if ended && records.len() < limit {
        (None, cursor)
    } else {
        (cursor, None)
    };
    Ok(AuditPage {
        next,
        tail,
        records,
    })
}

/// The filters of `audit.list`, read once.
struct Filter<'a> {
    from: Option<String>,
    to: Option<String>,
    event: Option<&'a str>,
    actor: Option<&'a str>,
    target_type: Option<&'a str>,
    outcome: Option<&'a str>,
}

impl<'a> Filter<'a> {
    fn of(params: &'a AuditListParams, now: Millis) -> Result<Filter<'a>, RuleError> {
        let time = |given: &Option<String>, flag: &str| -> Result<Option<String>, RuleError> {
            given
                .as_deref()
                .map(|text| instant(text, now).map(timestamp))
                .transpose()
                .map_err(|why| RuleError::BadRequest(format!("--{flag}: {why}")))
        };
        Ok(Filter {
            from: time(&params.from, "from")?,
            to: time(&params.to, "to")?,
            event: params.event.as_deref(),
            actor: params.actor.as_deref(),
            target_type: params.target_type.as_deref(),
            outcome: params.outcome.as_deref(),
        })
    }

    fn admits(&self, entry: &AuditEntry) -> bool {
        let event = |wanted: &str| match wanted.strip_suffix('.') {
            Some(prefix) => entry
                .event
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.')),
            None => entry.event == wanted,
        };
        let actor = |wanted: &str| {
            entry.actor.email.as_deref() == Some(wanted)
                || entry.actor.user.as_deref() == Some(wanted)
                || entry.actor.uid.is_some_and(|uid| uid.to_string() == wanted)
        };
        let outcome = |wanted: &str| match wanted {
            "refused" => entry.outcome != "ok",
            _ => entry.outcome == wanted,
        };
        self.from
            .as_deref()
            .is_none_or(|from| entry.at.as_str() >= from)
            && self.to.as_deref().is_none_or(|to| entry.at.as_str() < to)
            && self.event.is_none_or(event)
            && self.actor.is_none_or(actor)
            && self.target_type.is_none_or(|wanted| {
                entry
                    .target
                    .as_ref()
                    .is_some_and(|target| target.kind == wanted)
            })
            && self.outcome.is_none_or(outcome)
    }
}

/// An instant given as RFC 3339 (`2026-12-07T09:00:00Z`, or a date alone) or as an age
/// (`2h`, `7days`: that long before `now`).
fn instant(text: &str, now: Millis) -> Result<Millis, String> {
    if let Ok(age) = humantime::parse_duration(text) {
        let age = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        return Ok(now.saturating_sub(age));
    }
    let full;
    let text = if text.len() == 10 {
        full = format!("{text}T00:00:00Z");
        full.as_str()
    } else {
        text
    };
    let time = humantime::parse_rfc3339_weak(text).map_err(|_| {
        format!("{text:?} is neither a time (2026-12-07T09:00:00Z) nor an age (2h, 7days)")
    })?;
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{text:?} is before 1970"))?;
    Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// `audit.verify`, for a superuser: the chain walked from its first record, against the
/// checkpoint given (its signature checked with `signer`), the newest one stored, and
/// `known`, the last record this daemon knows was appended.
pub fn verify(
    reader: &impl Reader,
    caller: &Caller,
    params: &AuditVerifyParams,
    signer: &Signer,
    known: Option<Anchor>,
) -> Result<AuditVerified, RuleError> {
    if !caller.superuser {
        return Err(RuleError::SuperuserOnly {
            action: "verifying the audit log",
        });
    }
    let mut anchors = Vec::new();
    if let Some(note) = &params.checkpoint {
        let checkpoint = signer.verify(note).map_err(|why| {
            RuleError::BadRequest(format!("the checkpoint cannot be trusted: {why}"))
        })?;
        anchors.push(Anchor {
            seq: checkpoint.seq,
            hash: checkpoint.hash,
            source: format!(
                "the checkpoint given ({})",
                checkpoint.time.as_deref().unwrap_or("no time")
            ),
        });
    }
    if let Some((_, note)) = reader.latest_checkpoint()? {
        // Stored where the log is: whoever could change the log could change it, so it is
        // one more witness, never the only one; a note this key did not sign is skipped.
        if let Ok(checkpoint) = signer.verify(&note) {
            anchors.push(Anchor {
                seq: checkpoint.seq,
                hash: checkpoint.hash,
                source: format!(
                    "the newest checkpoint stored ({})",
                    checkpoint.time.as_deref().unwrap_or("no time")
                ),
            });
        }
    }
    anchors.extend(known);
    // Records pruned by the retention: the rest follows from the checkpoint signed of the
    // last one pruned, which must be there and be this daemon's.
    let first = reader.audit_after(0, 1)?.first().map(|sealed| sealed.seq);
    let start = match first {
        Some(first) if first > 1 => {
            let pruned = first - 1;
            let vouched = reader
                .checkpoint_at(pruned)?
                .and_then(|note| signer.verify(&note).ok())
                .filter(|checkpoint| checkpoint.seq == pruned);
            match vouched {
                Some(checkpoint) => Some(Anchor {
                    seq: pruned,
                    hash: checkpoint.hash,
                    source: format!(
                        "the checkpoint records 1 to {pruned} were pruned behind ({})",
                        checkpoint.time.as_deref().unwrap_or("no time")
                    ),
                }),
                None => {
                    return Ok(AuditVerified {
                        first: Some(first),
                        last: reader.audit_head()?.map(|(last, _)| last),
                        checked_against: Vec::new(),
                        broken: Some(compartmentctl::wire::AuditBreak {
                            seq: 1,
                            problem: format!(
                                "records 1 to {pruned} are missing, and no checkpoint this \
                                 daemon signed vouches that they were pruned: they were removed"
                            ),
                        }),
                    })
                }
            }
        }
        _ => None,
    };
    if let Some(start) = &start {
        anchors.insert(0, start.clone());
    }
    Ok(chain::verify_from(reader, start.as_ref(), &anchors)?)
}

/// `audit.checkpoint`, for a superuser: signs the log's last record and keeps the note.
pub fn checkpoint(
    txn: &impl Changes,
    caller: &Caller,
    signer: &Signer,
    now: Millis,
) -> Result<AuditCheckpoint, RuleError> {
    if !caller.superuser {
        return Err(RuleError::SuperuserOnly {
            action: "signing a checkpoint of the audit log",
        });
    }
    let (seq, hash) = txn.audit_head()?.ok_or_else(|| {
        RuleError::BadRequest("the audit log is empty: there is nothing to sign".to_owned())
    })?;
    let note = signer.sign(seq, &hash, now);
    txn.put_checkpoint(seq, &note)?;
    Ok(AuditCheckpoint {
        seq,
        hash: chain::hex(&hash),
        note,
    })
}

/// The most audit records, and the most events, one pruning transaction forgets: the
/// writer serves other changes between batches.
pub const PRUNE_BATCH: usize = 10_000;

/// What one pruning transaction forgot: the audit records and the feed's events, first to
/// last, and the log's head after it (its record of the prune).
#[derive(Debug, Default)]
pub struct Pruned {
    pub records: Option<(u64, u64)>,
    pub events: Option<(u64, u64)>,
    pub head: Option<(u64, ChainHash)>,
}

impl Pruned {
    pub fn is_empty(&self) -> bool {
        self.records.is_none() && self.events.is_none()
    }
}

/// Forgets, in `txn`, the oldest audit records and events from before `cutoff`, at most
/// [`PRUNE_BATCH`] of each and never the last of either. The last record pruned gets a
/// checkpoint signed with `signer` first: the records kept are verified from it. The prune
/// is itself a record (`audit.prune`).
pub fn prune(
    txn: &impl Changes,
    signer: &Signer,
    cutoff: Millis,
    now: Millis,
) -> Result<Pruned, RuleError> {
    /// Records and events read at a time, to find where the old ones end.
    const CHUNK: usize = 256;
    let before = timestamp(cutoff);
    let mut pruned = Pruned::default();
    if let Some((head, _)) = txn.audit_head()? {
        let mut range: Option<(u64, u64, ChainHash)> = None;
        let mut after = 0;
        'records: loop {
            let page = txn.audit_after(after, CHUNK)?;
            if page.is_empty() {
                break;
            }
            for sealed in page {
                let taken = range.map_or(0, |(first, last, _)| last - first + 1);
                if sealed.seq >= head || taken >= PRUNE_BATCH as u64 {
                    break 'records;
                }
                if sealed.view()?.entry.at >= before {
                    break 'records;
                }
                let first = range.map_or(sealed.seq, |(first, _, _)| first);
                range = Some((first, sealed.seq, sealed.hash));
                after = sealed.seq;
            }
        }
        if let Some((first, last, hash)) = range {
            txn.put_checkpoint(last, &signer.sign(last, &hash, now))?;
            txn.prune_audit(last)?;
            pruned.records = Some((first, last));
        }
    }
    let newest = txn.last_event_seq()?;
    let mut range: Option<(u64, u64)> = None;
    let mut after = 0;
    'events: loop {
        let page = txn.events_after(after, CHUNK)?;
        if page.is_empty() {
            break;
        }
        for (seq, event) in page {
            let taken = range.map_or(0, |(first, last)| last - first + 1);
            if seq >= newest || taken >= PRUNE_BATCH as u64 || event.at >= cutoff {
                break 'events;
            }
            range = Some((range.map_or(seq, |(first, _)| first), seq));
            after = seq;
        }
    }
    if let Some((_, last)) = range {
        txn.prune_events(last)?;
        pruned.events = range;
    }
    if pruned.is_empty() {
        return Ok(pruned);
    }
    let mut what = Vec::new();
    if let Some((first, last)) = pruned.records {
        what.push(format!("records {first} to {last}"));
    }
    if let Some((first, last)) = pruned.events {
        what.push(format!("the feed's changes {first} to {last}"));
    }
    let behind = pruned
        .records
        .map(|(_, last)| format!("; the log is verified from the checkpoint of record {last}"))
        .unwrap_or_default();
    Entry::new(daemon(), "audit.prune", now)
        .detail(format!(
            "{}, from before {before}, pruned{behind}",
            what.join(" and ")
        ))
        .append(txn)?;
    pruned.head = txn.audit_head()?;
    Ok(pruned)
}
