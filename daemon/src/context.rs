//! The context every request is served in: the store, the writer, the clock, the host's
//! users and what the daemon was started with; and the lookups of who a caller or a subject
//! is, which several methods share. A method declared `read` or `routine` is served with a
//! [`ReadContext`], the same context without the writer. The change feed asks either
//! through [`events::Daemon`].

use std::collections::HashSet;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use compartmentctl::email::Email;
use compartmentctl::wire::{Access, AdminStatus, Check, LastBatch, LastSweep, Reads, Writes};

use crate::admission::Admission;
use crate::clock::{rfc3339, Clock};
use crate::events;
use crate::limits::Slots;
use crate::refusals::{self, Fate, Refusals};
use crate::rules::authz::Subject;
use crate::rules::{audit, identity, Caller, Policy, RuleError};
use crate::status::LastCommit;
use crate::store::{Glance, Millis, ReadSide, Reader, Snapshot, UnixUser};
use crate::users::{CallerNames, Directory};
use crate::writer::Writer;

/// What every request handler shares.
pub struct Context {
    pub store: ReadSide,
    pub writer: Writer,
    pub clock: Arc<dyn Clock>,
    pub policy: Arc<Policy>,
    /// The uid the daemon runs as: a superuser, like uid 0.
    pub daemon_uid: u32,
    /// Wakes the sweeper when an invitation that may expire sooner is written.
    pub sweeper_wake: Arc<crate::sweeper::Wake>,
    /// The host's users (NSS); answers about others cached a few seconds.
    pub users: Arc<dyn Directory>,
    /// Callers' own names, as their connections' lookups gave them.
    pub caller_names: CallerNames,
    /// The gid of `--service-group`: its members may ask what anyone may do.
    pub service_group: Option<u32>,
    /// Stale bindings already audited in this run, by (uid, recorded name).
    pub stale_audited: Mutex<HashSet<(u32, Option<String>)>>,
    /// The change feeds replaying past changes, and how many may.
    pub replays: Arc<events::Replays>,
    /// Whether a caller's change may go to the writer: its rate, the free-space floor.
    pub admission: Admission,
    /// When the daemon began serving.
    pub started: Instant,
    /// The connections open, by uid.
    pub slots: Arc<Slots>,
    /// The sweeper's last sweep.
    pub last_sweep: Arc<LastCommit>,
    /// The audit log's signing key, and the last record the daemon saw it hold.
    pub audit: Arc<crate::checkpoint::Keeper>,
    /// Refusals being counted, and the rate at which they are recorded one by one.
    pub refusals: Arc<Refusals>,
    /// Requests, connections, the writer, the sweeper, the feed: for `admin.metrics` and
    /// `--metrics-textfile`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The [`Context`] as a handler of a method with access `A` may reach it: a
/// [`ReadContext`] or a [`WriteContext`]. One reference, copied: a request costs nothing
/// more for it.
pub struct Scope<'a, A> {
    ctx: &'a Context,
    access: PhantomData<A>,
}

/// What a read is served with: the [`Context`] seen without its writer, its admission and
/// the sweeper's wake, so that the handler of a method declared `read` or `routine` cannot
/// queue a change: a snapshot, the clock, the host's users, and the lookups of who a caller
/// or a subject is.
///
/// ```compile_fail
/// use compartmentctl::wire::methods;
/// use compartmentd::dispatch::HandlerContext;
///
/// // `whoami` is declared `routine`: its handler's context has no writer.
/// fn whoami(ctx: HandlerContext<'_, methods::Whoami>) {
///     let _writer = &ctx.writer;
/// }
/// ```
///
/// whereas a method declared `write` is served with the whole [`Context`]:
///
/// ```
/// use compartmentctl::wire::methods;
/// use compartmentd::dispatch::HandlerContext;
///
/// fn org_use(ctx: HandlerContext<'_, methods::OrgUse>) {
///     let _writer = &ctx.writer;
/// }
/// ```
pub type ReadContext<'a> = Scope<'a, Reads>;

/// What a change is served with: the whole [`Context`], writer included.
pub type WriteContext<'a> = Scope<'a, Writes>;

impl<'a, A: Access> Scope<'a, A> {
    /// `ctx` as the handlers of methods with access `A` see it.
    pub(crate) fn new(ctx: &'a Context) -> Scope<'a, A> {
        Scope {
            ctx,
            access: PhantomData,
        }
    }
}

impl<A> Clone for Scope<'_, A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for Scope<'_, A> {}

impl Deref for WriteContext<'_> {
    type Target = Context;

    fn deref(&self) -> &Context {
        self.ctx
    }
}

impl<'a> ReadContext<'a> {
    /// A snapshot of the store as of now.
    pub fn snapshot(self) -> crate::store::Result<Snapshot> {
        self.ctx.store.read()
    }

    /// A snapshot of the store as of now, in which the rows that say how `caller` stands
    /// in `org` (else its current organization) cost nothing more to read.
    pub fn snapshot_for(
        self,
        caller: &Caller,
        org: Option<&str>,
    ) -> crate::store::Result<Snapshot> {
        self.ctx.store.read_about(caller.uid, org)
    }

    /// A glance at what a decision about `uid` in `org` (else its current organization)
    /// reads, as of now ([`Glance`]).
    pub async fn glance(self, uid: u32, org: Option<&str>) -> crate::store::Result<Glance> {
        self.ctx.store.glance(uid, org).await
    }

    /// The daemon's clock, now.
    pub fn now(self) -> Millis {
        self.ctx.clock.now()
    }

    /// The host's users.
    /// The last audit record this daemon committed: its number and hash.
    pub fn last_sealed(self) -> Option<(u64, crate::store::ChainHash)> {
        self.ctx.store.last_sealed()
    }

    /// The audit log's key and the last record the daemon saw it hold.
    pub fn audit(self) -> &'a Arc<crate::checkpoint::Keeper> {
        &self.ctx.audit
    }

    pub fn users(self) -> &'a dyn Directory {
        self.ctx.users.as_ref()
    }

    /// The daemon's account of itself (`admin.status`): what the context, the writer, the
    /// sweeper and the store's handle keep, read without a lock on any request's way and
    /// without asking the store, so that it answers while the store is out of reach.
    pub fn status(self) -> AdminStatus {
        let ctx = self.ctx;
        let health = ctx.store.health();
        let feed_head = *ctx.store.event_head().borrow();
        AdminStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version: health.schema_version,
            store: health.info,
            uptime_secs: ctx.started.elapsed().as_secs(),
            connections: ctx.slots.open() as u64,
            writer_queue: ctx.writer.queued() as u64,
            last_batch: ctx.writer.last_batch().map(|batch| LastBatch {
                changes: batch.count,
                at: rfc3339(batch.at),
                commit_micros: batch.micros,
            }),
            last_sweep: ctx.last_sweep.get().map(|sweep| LastSweep {
                at: rfc3339(sweep.at),
                expired: sweep.count,
            }),
            feed_head,
            reachable: health.reachable,
            conflicts: health.conflicts,
        }
    }

    /// The daemon's metrics, as text (`admin.metrics`).
    pub fn metrics_text(self) -> String {
        self.ctx.metrics_text()
    }

    /// See [`Context::is_service`].
    pub(crate) async fn is_service(self, caller: &Caller) -> bool {
        self.ctx.is_service(caller).await
    }

    /// See [`Context::subject`].
    pub(crate) async fn subject(
        self,
        caller: &Caller,
        check: &Check,
        service: bool,
        snapshot: &impl Reader,
    ) -> Result<Subject, RuleError> {
        self.ctx.subject(caller, check, service, snapshot).await
    }

    /// See [`Context::group_users`].
    pub(crate) async fn group_users(self, list: &mut compartmentctl::wire::MemberList) {
        self.ctx.group_users(list).await
    }

    /// Marks the members of `list` at the places `bound` gives whose uid (given beside each)
    /// no longer belongs to the Unix user the list shows for them: a user deleted, or the
    /// uid handed to another. Asked of the users' cache (NSS within its few seconds), one
    /// lookup per uid, on a blocking thread.
    pub(crate) async fn mark_stale_bindings(
        self,
        list: &mut compartmentctl::wire::MemberList,
        bound: Vec<(usize, u32)>,
    ) {
        if bound.is_empty() {
            return;
        }
        let users = self.ctx.users.clone();
        let mut uids: Vec<u32> = bound.iter().map(|(_, uid)| *uid).collect();
        uids.sort_unstable();
        uids.dedup();
        let Ok(names) = tokio::task::spawn_blocking(move || {
            uids.into_iter()
                .map(|uid| (uid, users.name_of(uid)))
                .collect::<std::collections::HashMap<u32, Option<String>>>()
        })
        .await
        else {
            return;
        };
        for (place, uid) in bound {
            if let (Some(member), Some(now)) = (list.members.get_mut(place), names.get(&uid)) {
                member.binding_stale = now.as_deref() != member.unix_user.as_deref();
            }
        }
    }
}

impl Context {
    /// The daemon's metrics in Prometheus' text format: what requests and connections
    /// counted, with what the writer, the sweeper, the feed and the store keep read now.
    pub fn metrics_text(&self) -> String {
        let health = self.store.health();
        let store_bytes = match &health.info {
            compartmentctl::wire::StoreInfo::Redb { path } => {
                std::fs::metadata(path).ok().map(|meta| meta.len())
            }
            compartmentctl::wire::StoreInfo::Postgresql { .. } => None,
        };
        let pulled = crate::metrics::Pulled {
            uptime: self.started.elapsed(),
            connections_open: self.slots.open() as u64,
            writer_queue: self.writer.queued() as u64,
            writer_changes: self.writer.changes_committed(),
            last_sweep_at: self.last_sweep.get().map(|sweep| sweep.at as f64 / 1000.0),
            swept: self.last_sweep.total(),
            feed_head: *self.store.event_head().borrow(),
            store_bytes,
            store_reachable: health.reachable,
            store_conflicts: health.conflicts,
        };
        self.metrics.render(&pulled)
    }

    /// The caller of a connection, from its peer credentials; its Unix user is looked up
    /// as each request is served.
    pub fn caller(&self, uid: u32, gid: u32, pid: Option<i32>) -> Caller {
        Caller {
            uid,
            gid,
            pid,
            superuser: uid == 0 || uid == self.daemon_uid,
            user: None,
            groups: Default::default(),
        }
    }

    /// The caller of a connection being opened, with its Unix user as NSS names it at this
    /// moment, never from a cache: a uid deleted and handed to a new user is the new user
    /// from that user's first connection on (DESIGN §8). Asked on a blocking thread.
    pub async fn identify_at_connect(&self, mut caller: Caller) -> Caller {
        caller.user = self.caller_name_now(caller.uid).await;
        caller.groups = self.groups_of(caller.uid).await;
        caller
    }

    /// The caller with its Unix user as NSS named it when its connection opened, or, on a
    /// long-lived connection, at most [`crate::users::CACHE_TTL`] ago: a binding is checked
    /// against a name never older than that (DESIGN §2). Answers about others never stand
    /// in for it.
    pub(crate) async fn identify(&self, mut caller: Caller) -> Caller {
        caller.user = match self.caller_names.fresh(caller.uid) {
            Some(name) => name,
            None => self.caller_name_now(caller.uid).await,
        };
        caller.groups = self.groups_of(caller.uid).await;
        caller
    }

    /// `uid`'s groups, from the cache when it is fresh (at most
    /// [`crate::users::CACHE_TTL`] old: how long a user taken out of a group keeps what the
    /// group's mapping gives), else from NSS on a blocking thread.
    async fn groups_of(&self, uid: u32) -> Arc<[u32]> {
        if let Some(hit) = self.users.cached_groups_of(uid) {
            return hit;
        }
        let users = self.users.clone();
        tokio::task::spawn_blocking(move || users.groups_of(uid))
            .await
            .unwrap_or_else(|_| Arc::from([]))
    }

    /// `uid`'s name from NSS now, kept for the requests of the next few seconds.
    async fn caller_name_now(&self, uid: u32) -> Option<Arc<str>> {
        let asked = std::time::Instant::now();
        // NSS may ask a directory server: never on a runtime worker.
        let users = self.users.clone();
        let name = tokio::task::spawn_blocking(move || users.name_of_now(uid))
            .await
            .ok()
            .flatten()
            .map(Arc::from);
        self.caller_names.put(uid, asked, name.clone());
        name
    }

    /// `uid`'s name as an answer about someone else: from the cache when it is fresh
    /// (at most [`crate::users::CACHE_TTL`] old), else from NSS on a blocking thread.
    async fn name_of_other(&self, uid: u32) -> Option<Arc<str>> {
        let name = match self.users.cached_name_of(uid) {
            Some(hit) => hit,
            None => {
                let users = self.users.clone();
                tokio::task::spawn_blocking(move || users.name_of(uid))
                    .await
                    .ok()
                    .flatten()
            }
        };
        name.map(Arc::from)
    }

    /// The user called `name` as an answer about someone else, cached like
    /// [`Context::name_of_other`].
    async fn user_named_other(&self, name: &str) -> Option<UnixUser> {
        if let Some(hit) = self.users.cached_user_named(name) {
            return hit;
        }
        let users = self.users.clone();
        let owned = name.to_owned();
        tokio::task::spawn_blocking(move || users.user_named(&owned))
            .await
            .ok()
            .flatten()
    }

    /// The user `name` as NSS resolves it, refused when there is none that may hold an
    /// account.
    pub(crate) async fn unix_user(&self, name: &str) -> Result<UnixUser, RuleError> {
        let users = self.users.clone();
        let owned = name.to_owned();
        tokio::task::spawn_blocking(move || users.user_named_now(&owned))
            .await
            .ok()
            .flatten()
            .ok_or_else(|| RuleError::NoSuchUnixUser(name.to_owned()))
    }

    /// Records that `caller` was refused what it `asked`, with `error`: a record of its own
    /// when the caller is authenticated (a superuser, or its binding holds) and within its
    /// rate; counted otherwise (see [`crate::refusals`]). Written before the refusal is
    /// answered, so that nothing refused goes unrecorded.
    pub(crate) async fn record_refusal(
        &self,
        caller: &Caller,
        asked: &audit::Asked,
        error: &RuleError,
    ) {
        let kind = error.kind();
        let now = self.clock.now();
        match refusals::fate_of(kind) {
            Fate::Neither => return,
            Fate::Count => return self.refusals.count(caller, kind, now),
            Fate::Record => {}
        }
        let actor = match self
            .store
            .read()
            .map(|snapshot| identity::authenticate(&snapshot, caller))
        {
            Ok(Ok(actor)) => actor,
            // Not authenticated (or the store cannot say): counted.
            _ => return self.refusals.count(caller, kind, now),
        };
        if !self.refusals.may_record(caller) {
            return self.refusals.count(caller, kind, now);
        }
        let entry = asked.refused(audit::actor(&actor), now, error);
        let written = self
            .writer
            .write(move |txn, _| entry.clone().append(txn))
            .await;
        if let Err(err) = written {
            tracing::error!(error = %err, event = %asked.event(), "cannot record a refusal");
        }
    }

    /// Audits, once per daemon run and binding, that a uid no longer resolves to the user
    /// it was bound as: a deleted user, or a reused uid trying the old account.
    pub(crate) async fn audit_stale_binding(
        &self,
        caller: &Caller,
        recorded: Option<String>,
        now: Option<String>,
    ) {
        let first = self
            .stale_audited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((caller.uid, recorded.clone()));
        if !first {
            return;
        }
        let uid = caller.uid;
        let actor = audit::caller_as(caller, None);
        let detail = format!(
            "uid {uid} was bound as {}, now {}",
            recorded.as_deref().unwrap_or("(no user)"),
            now.as_deref().unwrap_or("(no user)")
        );
        tracing::warn!(uid, "{detail}; the caller acts without its account");
        let written = self
            .writer
            .write(move |txn, at| {
                let mut entry = audit::Entry::new(actor.clone(), "account.binding.stale", at);
                if let Some(binding) = txn.binding(uid)? {
                    entry = entry.account(&binding.email);
                }
                entry.detail(detail.clone()).append(txn)
            })
            .await;
        if let Err(err) = written {
            tracing::error!(error = %err, "cannot audit a stale binding");
        }
    }

    /// Whether `caller` may ask what others may do: a superuser, or a user the user
    /// database puts in the service group (its passwd entry's primary group, or a group
    /// that lists it). The gid the process runs with counts for nothing: a setgid program or
    /// `sg` makes nobody a service. Asked of the group cache, so a user moved out of the
    /// group loses the rights within [`crate::users::CACHE_TTL`], on open connections and
    /// feeds too (they ask again before each answer and each batch).
    pub(crate) async fn is_service(&self, caller: &Caller) -> bool {
        if caller.superuser {
            return true;
        }
        // A uid without a user is nobody's service, whatever its number.
        let (Some(gid), Some(_)) = (self.service_group, caller.user.as_ref()) else {
            return false;
        };
        let (users, uid) = (self.users.clone(), caller.uid);
        if let Some(hit) = users.cached_in_group(uid, gid) {
            return hit;
        }
        // NSS may ask a directory server: never on a runtime worker.
        tokio::task::spawn_blocking(move || users.in_group(uid, gid))
            .await
            .unwrap_or(false)
    }

    /// The uid `uid` as a caller presenting it would be, its user named by an answer about
    /// someone else (cached).
    pub(crate) async fn caller_for_uid(&self, uid: u32) -> Caller {
        // The gid is not known from a uid; nothing the rules decide reads it.
        let mut subject = self.caller(uid, u32::MAX, None);
        subject.user = self.name_of_other(uid).await;
        subject.groups = self.groups_of(uid).await;
        subject
    }

    /// Who `check` asks about. Someone other than `caller` only when `service`: anyone
    /// else is refused before any lookup, whether or not the user or address exists, so
    /// that the refusal tells nothing about them.
    pub(crate) async fn subject(
        &self,
        caller: &Caller,
        check: &Check,
        service: bool,
        snapshot: &impl Reader,
    ) -> Result<Subject, RuleError> {
        let email = match &check.email {
            Some(email) => {
                Some(Email::parse(email).map_err(|err| RuleError::BadRequest(err.to_string()))?)
            }
            None => None,
        };
        if !service {
            let is_self = match (&check.uid, &check.user, &email) {
                (Some(uid), _, _) => *uid == caller.uid,
                (_, Some(user), _) => caller.user.as_deref() == Some(user.as_str()),
                (_, _, Some(email)) => identity::binding_of(snapshot, caller)?
                    .is_ok_and(|binding| binding.email == email.as_str()),
                (None, None, None) => true,
            };
            if !is_self {
                return Err(RuleError::NotAService);
            }
        }
        let as_caller = |subject: Caller, email: Option<String>| Subject::Uid {
            caller: subject,
            email,
        };
        Ok(match (&check.uid, &check.user, email) {
            (Some(uid), _, _) if *uid == caller.uid => as_caller(caller.clone(), None),
            (Some(uid), _, _) => {
                let subject = self.caller_for_uid(*uid).await;
                match subject.user {
                    Some(_) => as_caller(subject, None),
                    None => Subject::NoUserForUid(*uid),
                }
            }
            // The caller's own name: the caller, without asking NSS who that is.
            (_, Some(name), _) if caller.user.as_deref() == Some(name.as_str()) => {
                as_caller(caller.clone(), None)
            }
            (_, Some(name), _) => match self.user_named_other(name).await {
                Some(user) => as_caller(self.caller_for_uid(user.uid).await, None),
                None => Subject::NoSuchUser(name.clone()),
            },
            (_, _, Some(email)) => {
                let email = email.as_str().to_owned();
                match snapshot.account(&email)?.and_then(|account| account.uid) {
                    Some(uid) => as_caller(self.caller_for_uid(uid).await, Some(email)),
                    None => Subject::NoAccount(email),
                }
            }
            (None, None, None) => as_caller(caller.clone(), None),
        })
    }

    pub(crate) async fn named_user(
        &self,
        name: Option<&str>,
    ) -> Result<Option<UnixUser>, RuleError> {
        match name {
            Some(name) => Ok(Some(self.unix_user(name).await?)),
            None => Ok(None),
        }
    }

    /// The Unix group called `name` (gid and name), asked of NSS now on a blocking thread;
    /// refused as not found when there is none.
    pub(crate) async fn unix_group(&self, name: &str) -> Result<(u32, String), RuleError> {
        let users = self.users.clone();
        let asked = name.to_owned();
        tokio::task::spawn_blocking(move || users.group_named(&asked))
            .await
            .ok()
            .flatten()
            .ok_or_else(|| RuleError::NoSuchUnixGroup(name.to_owned()))
    }

    /// Fills in the users of each group `list` shows, from NSS on a blocking thread.
    pub(crate) async fn group_users(&self, list: &mut compartmentctl::wire::MemberList) {
        if list.groups.is_empty() {
            return;
        }
        let users = self.users.clone();
        let gids: Vec<u32> = list.groups.iter().map(|group| group.gid).collect();
        let found = tokio::task::spawn_blocking(move || {
            gids.into_iter()
                .map(|gid| users.group_members(gid))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (group, users) in list.groups.iter_mut().zip(found) {
            group.users = users;
        }
    }
}

impl events::Daemon for Context {
    fn store(&self) -> &ReadSide {
        &self.store
    }

    fn now(&self) -> Millis {
        self.clock.now()
    }

    fn replays(&self) -> &Arc<events::Replays> {
        &self.replays
    }

    fn feed_metrics(&self) -> &crate::metrics::Feed {
        self.metrics.feed()
    }

    fn identify(&self, caller: Caller) -> impl Future<Output = Caller> + Send {
        Context::identify(self, caller)
    }

    fn is_service(&self, caller: &Caller) -> impl Future<Output = bool> + Send {
        Context::is_service(self, caller)
    }
}

impl events::Daemon for ReadContext<'_> {
    fn store(&self) -> &ReadSide {
        &self.ctx.store
    }

    fn now(&self) -> Millis {
        self.ctx.clock.now()
    }

    fn replays(&self) -> &Arc<events::Replays> {
        &self.ctx.replays
    }

    fn feed_metrics(&self) -> &crate::metrics::Feed {
        self.ctx.metrics.feed()
    }

    fn identify(&self, caller: Caller) -> impl Future<Output = Caller> + Send {
        self.ctx.identify(caller)
    }

    fn is_service(&self, caller: &Caller) -> impl Future<Output = bool> + Send {
        self.ctx.is_service(caller)
    }
}
