//! The change feed (`events.subscribe`): a connection that, once subscribed, carries only
//! the membership changes its subscriber may see, as JSON-RPC notifications.
//!
//! The feed is the store's `events` table, which every change to a membership or binding
//! appends to in its own transaction, keyed by a sequence number. A subscriber reads it
//! from where it is (`after`) at its own pace, a batch at a time, and waits for the
//! writer's announcement of a new commit when it has caught up. So nothing is ever lost
//! or sent twice, a reconnecting subscriber replays exactly what it missed, and no
//! subscriber can hold up the writer, which announces a commit by setting one number.
//!
//! What bounds a subscriber is how far it may trail: one that reads slower than changes
//! are made falls behind, and once more than `--feed-max-lag` changes made since it
//! subscribed are still unsent, the feed ends with an `events.closed` saying so (`behind`);
//! it resubscribes from its last sequence number. (The replay of what it missed before
//! subscribing does not count.) One that stops reading altogether cannot be told anything:
//! the write timeout disconnects it like any other client.
//!
//! Before each batch is sent, the subscriber's right to it is checked again, so an admin
//! removed from the organization (or a user dropped from the service group) gets nothing
//! more: the feed ends with an `events.closed` notification saying why.
//!
//! A feed costs what it delivers. An organization's feed reads the store's index of that
//! organization's events (`org_events`), never the rest of the host's history, and waits on
//! its organization's head, which other organizations' commits do not move. A replay (a
//! subscription from before the newest change, until it has caught up) has its batches read
//! and encoded by the daemon's one thread for replays, which runs at the lowest CPU priority
//! ([`Replays::in_background`]): however many replay, requests and changes are served
//! first, and the runtime's workers only send what it wrote out. Only so many replay at
//! once: [`Limits::feed_replays_per_uid`] per uid and [`Limits::feed_replays`] in all,
//! superusers excepted. One past either is refused `busy`.
//!
//! [`Limits::feed_replays_per_uid`]: crate::limits::Limits::feed_replays_per_uid
//! [`Limits::feed_replays`]: crate::limits::Limits::feed_replays

mod run;

pub(crate) use run::run_feed;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use compartmentctl::wire::{
    methods, Event, EventKind, EventsSubscribeParams, FeedClosed, FeedEnd, Gated, Subscribed,
    EVENT_METHOD, FEED_CLOSED_METHOD, JSONRPC,
};
use serde::Serialize;

use crate::clock::rfc3339;
use crate::rules::{identity, Caller, RuleError};
use crate::store::{EventRecord, Millis, ReadSide, Reader, StoreError};

/// The most events read and sent at a time.
pub const FEED_BATCH: usize = 256;

/// Who a feed is for, checked again before every batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A superuser or a member of the service group: every organization.
    Service,
    /// An admin of `org`, for `org` only.
    Admin { org: String },
}

/// A subscription the connection is turned into once its answer is sent.
#[derive(Debug)]
pub struct Feed {
    /// Only this organization's changes; every change when `None`.
    pub org: Option<FeedOrg>,
    /// The last sequence number the subscriber has.
    pub after: u64,
    /// The last change when it subscribed: what it missed before is replayed whatever its
    /// number; only the changes made since count toward how far behind it may fall.
    pub head: u64,
    pub access: Access,
    /// Its place among the replays while it reads what was written before it subscribed;
    /// given back once it has caught up.
    pub replaying: Option<Replaying>,
}

/// The organization an organization's feed is of: its name now, and when it was made,
/// which tells it apart from a later organization under the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedOrg {
    pub name: String,
    pub created_at: Millis,
}

impl FeedOrg {
    /// The organization under `name` on `snapshot`, if there is one.
    pub fn named(snapshot: &impl Reader, name: &str) -> Result<Option<FeedOrg>, StoreError> {
        Ok(snapshot.org(name)?.map(|record| FeedOrg {
            name: name.to_owned(),
            created_at: record.created_at,
        }))
    }
}

impl Feed {
    /// How many changes made since the subscription the subscriber has not had yet, when
    /// the newest change is `newest`.
    pub fn behind(&self, newest: u64) -> u64 {
        newest.saturating_sub(self.after.max(self.head))
    }

    /// The organization's name, `None` for the whole host's feed.
    pub fn org_name(&self) -> Option<&str> {
        self.org.as_ref().map(|org| org.name.as_str())
    }

    /// Follows the feed's organization to its new name `name`: the changes filed under the
    /// old one are under it now, and so are its admins.
    pub fn follow(&mut self, name: &str) {
        if let Some(org) = &mut self.org {
            org.name = name.to_owned();
        }
        if let Access::Admin { org } = &mut self.access {
            *org = name.to_owned();
        }
    }
}

/// What became of a feed's organization that is no longer under its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// Deleted: the feed ends.
    Deleted,
    /// Renamed, to this name: the feed follows it there.
    Renamed(String),
}

/// What [`batch_of`] read.
pub struct Batch {
    pub events: Vec<(u64, EventRecord)>,
    /// Everything up to this sequence number has been read.
    pub seen: u64,
    /// Nothing more is there to read on this snapshot.
    pub caught_up: bool,
    /// The first change kept, when the changes after the feed's position were pruned:
    /// the feed cannot go on without skipping them.
    pub pruned: Option<u64>,
    /// The feed's organization is no longer under its name: deleted, or renamed.
    pub gone: Option<Gone>,
}

/// The next batch of the feed of `org` (every organization when `None`) after `after`, read
/// from the store's latest commit, and its lines: what a feed asks for each time it reads.
pub fn read_batch(
    store: &ReadSide,
    org: Option<&FeedOrg>,
    after: u64,
) -> Result<(Vec<u8>, Batch), StoreError> {
    let snapshot = store.read()?;
    let mut batch = batch_of(&snapshot, org, after)?;
    Ok((batch.take_lines(), batch))
}

/// The next batch of the feed of `org` (every organization when `None`) after `after` on
/// `snapshot`, and the sequence number it has seen everything up to once it has them: the
/// last event of the batch, or, when the batch holds the last of them, the snapshot's newest
/// (an organization's feed skips the others' changes without reading them).
pub fn batch_of(
    snapshot: &impl Reader,
    org: Option<&FeedOrg>,
    after: u64,
) -> Result<Batch, StoreError> {
    // An organization deleted has no feed any more (one made later under its name starts
    // its own); one renamed has its feed under its new name.
    if let Some(of) = org {
        let here = snapshot.org(&of.name)?;
        if here.is_none_or(|record| record.created_at != of.created_at) {
            let gone = match renamed_to(snapshot, of, after)? {
                Some(name) => Gone::Renamed(name),
                None => Gone::Deleted,
            };
            return Ok(Batch {
                events: Vec::new(),
                seen: after,
                caught_up: true,
                pruned: None,
                gone: Some(gone),
            });
        }
    }
    let events = match org {
        Some(of) => snapshot.org_events_after(&of.name, after, FEED_BATCH)?,
        None => snapshot.events_after(after, FEED_BATCH)?,
    };
    // Changes pruned while the feed was behind them would be skipped without a word.
    let pruned = match events.first() {
        Some(&(seq, _)) if seq == after + 1 => None,
        _ => pruned_after(snapshot, after)?,
    };
    let caught_up = events.len() < FEED_BATCH;
    let seen = match (caught_up, events.last()) {
        (true, _) => snapshot.last_event_seq()?.max(after),
        (false, Some(&(seq, _))) => seq,
        (false, None) => after,
    };
    Ok(Batch {
        events,
        seen,
        caught_up,
        pruned,
        gone: None,
    })
}

/// The name `of` has now, when it was renamed (perhaps more than once) since `after`: the
/// renamings the feed tells of since then, followed from its name, to the one that is still
/// the organization made at its time. Read only once a feed's organization is no longer
/// under its name, which ends or moves the feed.
fn renamed_to(
    snapshot: &impl Reader,
    of: &FeedOrg,
    after: u64,
) -> Result<Option<String>, StoreError> {
    let mut names = vec![of.name.clone()];
    let mut from = after;
    loop {
        let events = snapshot.events_after(from, FEED_BATCH)?;
        for (_, event) in &events {
            let previous = event
                .note
                .as_ref()
                .and_then(|note| note.previous_name.as_ref());
            if let (EventKind::OrgRenamed, Some(previous), Some(new)) =
                (event.kind, previous, &event.org)
            {
                if names.contains(previous) && !names.contains(new) {
                    names.push(new.clone());
                }
            }
        }
        match events.last() {
            Some(&(seq, _)) if events.len() == FEED_BATCH => from = seq,
            _ => break,
        }
    }
    for name in names.into_iter().skip(1).rev() {
        if snapshot
            .org(&name)?
            .is_some_and(|record| record.created_at == of.created_at)
        {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// The first change kept, when those just after `after` were pruned (`--audit-retention`).
pub fn pruned_after(snapshot: &impl Reader, after: u64) -> Result<Option<u64>, StoreError> {
    Ok(snapshot
        .events_after(0, 1)?
        .first()
        .map(|&(first, _)| first)
        .filter(|&first| after + 1 < first))
}

impl Batch {
    /// The batch's events, taken out of it, as the lines of their notifications.
    pub fn take_lines(&mut self) -> Vec<u8> {
        let mut lines = Vec::new();
        for (seq, record) in self.events.drain(..) {
            lines.extend(event_line(seq, record));
        }
        lines
    }
}

/// The feeds replaying what was written before they subscribed.
#[derive(Debug)]
pub struct Replays {
    per_uid: usize,
    total: usize,
    running: Mutex<Running>,
    /// The thread that reads and encodes replays' batches, one at a time, at the lowest CPU
    /// priority; `None` when it could not be started (batches are then read where asked).
    reader: Option<std::sync::mpsc::Sender<Job>>,
}

/// A batch to read on the replays' thread.
type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, Default)]
struct Running {
    total: usize,
    per_uid: HashMap<u32, usize>,
}

impl Replays {
    /// At most `per_uid` replays of one uid at once, and `total` in all (superusers' not
    /// counted against either).
    pub fn new(per_uid: usize, total: usize) -> Arc<Replays> {
        Arc::new(Replays {
            per_uid,
            total,
            running: Mutex::default(),
            reader: spawn_reader(),
        })
    }

    /// A place for a replay of `caller`'s, or why there is none.
    pub fn begin(self: &Arc<Replays>, caller: &Caller) -> Result<Replaying, RuleError> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if !caller.superuser {
            let hint = "subscribe once your other feeds have caught up, or without --after to \
                        follow new changes only";
            if running.total >= self.total {
                return Err(RuleError::Busy {
                    reason: format!(
                        "compartmentd is replaying its maximum of {} feeds",
                        self.total
                    ),
                    hint,
                });
            }
            let mine = running.per_uid.get(&caller.uid).copied().unwrap_or(0);
            if mine >= self.per_uid {
                return Err(RuleError::Busy {
                    reason: format!(
                        "uid {} already replays as many feeds as one user may ({mine})",
                        caller.uid
                    ),
                    hint,
                });
            }
            running.total += 1;
            *running.per_uid.entry(caller.uid).or_insert(0) += 1;
        }
        Ok(Replaying {
            replays: self.clone(),
            uid: caller.uid,
            counted: !caller.superuser,
        })
    }

    /// Runs `read` on the replays' thread, after the batches asked for before it, and waits
    /// for its answer without holding a worker (where that thread is missing, runs it here).
    /// `None` when the read panicked.
    pub async fn in_background<T: Send + 'static>(
        &self,
        read: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer_tx.send(read());
        });
        let unsent = match &self.reader {
            Some(reader) => reader.send(job).err().map(|unsent| unsent.0),
            None => Some(job),
        };
        if let Some(job) = unsent {
            job();
        }
        answer_rx.await.ok()
    }
}

/// Starts the replays' thread: it lowers its own CPU priority to the lowest (nice 19), then
/// runs the batches it is given until the daemon lets go of it. `None`, with a log line,
/// when it cannot be started.
fn spawn_reader() -> Option<std::sync::mpsc::Sender<Job>> {
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("compartmentd-replays".into())
        .spawn(move || {
            lowest_priority();
            for job in jobs_rx {
                // A panic ends that batch's feed (its answer is never sent), not the thread.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        });
    match spawned {
        Ok(_) => Some(jobs_tx),
        Err(err) => {
            tracing::warn!(error = %err, "cannot start the thread for feed replays; they are read on the runtime's workers");
            None
        }
    }
}

/// Gives the calling thread the lowest CPU priority, nice 19, so that it runs only on what
/// time every other thread leaves. (On Linux a nice value belongs to a thread, and
/// `setpriority` with 0 for the process means the calling thread.) Lowering one's priority
/// needs no privilege; should it fail anyway, the thread runs at the daemon's priority.
#[allow(unsafe_code)]
fn lowest_priority() {
    // SAFETY: setpriority reads only its three integer arguments.
    let lowered = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, 19) } == 0;
    if !lowered {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot lower the priority of the thread for feed replays"
        );
    }
}

/// A replay's place, given back when dropped.
#[derive(Debug)]
pub struct Replaying {
    replays: Arc<Replays>,
    uid: u32,
    counted: bool,
}

impl Drop for Replaying {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let mut running = self
            .replays
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        running.total = running.total.saturating_sub(1);
        if let Some(mine) = running.per_uid.get_mut(&self.uid) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                running.per_uid.remove(&self.uid);
            }
        }
    }
}

/// What a feed asks of the daemon: the store, the replays' places, and who its subscriber
/// is now. The daemon's request context answers it; the feed borrows nothing else.
pub trait Daemon {
    fn store(&self) -> &ReadSide;
    /// The daemon's clock: a subscriber blocked or whose access ended is judged on it.
    fn now(&self) -> Millis;
    fn replays(&self) -> &Arc<Replays>;
    /// The feed's subscribers, for the daemon's metrics.
    fn feed_metrics(&self) -> &crate::metrics::Feed;
    /// `caller` with its Unix user as the host names it now (within the cache's bound).
    fn identify(&self, caller: Caller) -> impl std::future::Future<Output = Caller> + Send;
    /// Whether `caller` may watch every organization: a superuser or a service.
    fn is_service(&self, caller: &Caller) -> impl std::future::Future<Output = bool> + Send;
}

/// Authorizes `params` for `caller` on `snapshot`: the feed and its answer. Superusers and
/// services may subscribe to one organization or to all; anyone else only to an
/// organization they administer (their current one when none is named). Only then is
/// `after` judged, so that nobody else learns how far the host's changes have gone; and a
/// subscription from before the newest change takes a place among the replays.
pub async fn subscribe(
    ctx: &impl Daemon,
    caller: &Caller,
    params: &EventsSubscribeParams,
    snapshot: &impl Reader,
) -> Result<(Feed, Subscribed), RuleError> {
    let (org, access) = if ctx.is_service(caller).await {
        (params.org.clone(), Access::Service)
    } else {
        let here = admin_of(snapshot, caller, params.org.as_deref(), ctx.now())?;
        (Some(here.clone()), Access::Admin { org: here })
    };
    let of = match &org {
        Some(name) => match FeedOrg::named(snapshot, name)? {
            Some(of) => Some(of),
            None => return Err(RuleError::OrgNotFound(name.clone())),
        },
        None => None,
    };
    let head = snapshot.last_event_seq()?;
    let after = params.after.unwrap_or(head);
    if after > head {
        return Err(RuleError::BadRequest(format!(
            "after {after} is past the last change, {head}"
        )));
    }
    if let Some(first) = pruned_after(snapshot, after)? {
        return Err(RuleError::FeedPruned { after, first });
    }
    let replaying = if after < head {
        Some(ctx.replays().begin(caller)?)
    } else {
        None
    };
    let feed = Feed {
        org: of,
        after,
        head,
        access,
        replaying,
    };
    Ok((feed, Subscribed { org, after, head }))
}

/// The organization `caller` administers, by the same steps as every request: who they are,
/// which organization, and whether their role there holds the audit log's permission.
fn admin_of(
    reader: &impl Reader,
    caller: &Caller,
    org: Option<&str>,
    now: Millis,
) -> Result<String, RuleError> {
    let actor = identity::authenticate(reader, caller)?;
    let here = identity::in_org(reader, &actor, org, now)?;
    here.require(methods::EventsSubscribe::NEEDS)?;
    Ok(here.org)
}

/// Whether `caller` may still have `feed`'s events; why not when not.
pub async fn still_allowed(
    ctx: &impl Daemon,
    caller: &Caller,
    feed: &Feed,
) -> Result<(), (FeedEnd, String)> {
    let caller = ctx.identify(caller.clone()).await;
    match &feed.access {
        Access::Service => {
            if ctx.is_service(&caller).await {
                Ok(())
            } else {
                let reason = "the subscriber is no longer in the daemon's service group";
                Err((FeedEnd::Revoked, reason.to_owned()))
            }
        }
        Access::Admin { org } => {
            let snapshot = ctx.store().read().map_err(|err| {
                tracing::error!(error = %err, "a feed cannot read the store");
                let reason = "internal error; the daemon's log has details";
                (FeedEnd::Internal, reason.to_owned())
            })?;
            admin_of(&snapshot, &caller, Some(org), ctx.now())
                .map(|_| ())
                .map_err(|err| (FeedEnd::Revoked, err.user_message()))
        }
    }
}

/// A notification line, newline included.
pub fn notification(method: &'static str, params: &impl Serialize) -> Vec<u8> {
    #[derive(Serialize)]
    struct Notification<'a, P> {
        jsonrpc: &'static str,
        method: &'static str,
        params: &'a P,
    }
    let mut line = serde_json::to_vec(&Notification {
        jsonrpc: JSONRPC,
        method,
        params,
    })
    .unwrap_or_default();
    line.push(b'\n');
    line
}

/// The `event` notification of the event `seq`.
pub fn event_line(seq: u64, record: EventRecord) -> Vec<u8> {
    let previous = |kind: EventKind| {
        record
            .note
            .as_ref()
            .filter(|_| record.kind == kind)
            .and_then(|note| note.previous_name.clone())
    };
    let event = Event {
        seq,
        at: rfc3339(record.at),
        kind: record.kind,
        org: record.org,
        email: record.email,
        role: record.role,
        previous_role: record.previous_role,
        status: record.status,
        uid: record.uid,
        actor: record.actor,
        until: record
            .note
            .as_ref()
            .and_then(|note| note.until)
            .map(rfc3339),
        reason: record.note.as_ref().and_then(|note| note.reason.clone()),
        previous_org: previous(EventKind::OrgRenamed),
        previous_email: previous(EventKind::AccountRenamed),
    };
    notification(EVENT_METHOD, &event)
}

/// The `events.closed` notification that ends a feed.
pub fn closed_line(after: u64, cause: FeedEnd, reason: String) -> Vec<u8> {
    notification(
        FEED_CLOSED_METHOD,
        &FeedClosed {
            after,
            cause,
            reason,
        },
    )
}
