//! The handle on a PostgreSQL database: a pool of connections, a read-only transaction per
//! snapshot and a serializable one per write, and the follower (`follow.rs`) that brings
//! the schema to this daemon's version and moves the feed's heads past other daemons'
//! commits.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime, Timeouts,
};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_postgres::NoTls;

use super::follow::{self, Follower, Shared};
use super::glance::{self, Glance, Glances};
use super::schema::SchemaError;
use super::session::{wait, Begin, Session};
use super::target::Target;
use crate::store::heads::FeedHeads;
use crate::store::{Announcement, Result, StoreError};

/// Connections the pool keeps at most: the writer's, and the readers'.
const POOL_SIZE: usize = 16;

/// How long a read or a write waits for a connection of the pool before it is answered
/// `unavailable`: all of them busy this long means PostgreSQL is not answering.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// Set on each connection. Every statement the daemon sends reads rows by a key or a key's
/// range, which an index serves. Before ANALYZE has seen a table that grew from empty (and
/// autovacuum looks once a minute), PostgreSQL's estimates can make reading it whole look
/// cheaper, and a plan made then is kept: the commit's foreign-key checks read `accounts`,
/// `orgs` and `events` whole, a row at a time, and populating 100,000 members ran 4 times
/// slower, or not, depending on when autovacuum came by. With sequential scans off, one is
/// chosen only where no index serves. JIT compilation, which their disabled cost would then
/// start (30 ms for a one-row table), never pays for statements this small.
const SETTINGS: &str = "SET enable_seqscan = off; SET jit = off";

/// Set on each connection of the glances' own pool besides [`SETTINGS`]. A glance is
/// prepared once per connection; left to choose, PostgreSQL plans it anew at each execution
/// (its estimate of an array's length makes a plan for the one at hand look cheaper), and
/// planning its joins then costs several times their execution. A generic plan is made
/// once, and again when the tables' statistics change (ANALYZE). Only the glances'
/// connections are set so: the other statements keep PostgreSQL's choice.
const GENERIC_PLANS: &str = "SET plan_cache_mode = force_generic_plan";

/// A PostgreSQL database as the daemon's store.
pub struct Store {
    pool: Pool,
    runtime: Handle,
    target: Target,
    shared: Arc<Shared>,
    /// Transactions refused as conflicting with another's, each run again.
    conflicts: AtomicU64,
    glances: Glances,
    /// Ends the follower when the store is dropped.
    _follower: follow::Stop,
}

/// A consistent view of one moment (a read-only, repeatable-read transaction), which any
/// number of reads share.
pub type Snapshot = Arc<Session>;

/// A pool of at most `size` connections to `target`, each given `setup` when made.
fn connections(
    target: &Target,
    size: usize,
    setup: &'static [&'static str],
) -> Result<Pool, SchemaError> {
    let manager = Manager::from_config(
        target.config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let builder = Pool::builder(manager)
        .max_size(size)
        .timeouts(Timeouts {
            wait: Some(POOL_WAIT),
            create: target.config.get_connect_timeout().copied(),
            recycle: None,
        })
        .runtime(Runtime::Tokio1)
        .post_create(Hook::async_fn(move |client, _| {
            Box::pin(async move {
                client
                    .batch_execute(&setup.join("; "))
                    .await
                    .map_err(HookError::Backend)
            })
        }));
    builder
        .build()
        .map_err(|err| SchemaError::Unreachable(err.to_string()))
}

impl Store {
    /// The database `target` names, with a pool of connections on `runtime`. Waits for the
    /// first attempt to reach it: a schema newer than this daemon's, or settings PostgreSQL
    /// refuses (a wrong user or database), fail the open; a server that cannot be reached
    /// yet does not: the store is then answered unreachable, and its follower keeps trying
    /// and migrates once it can, so that the daemon may start before its database.
    pub async fn open(target: &Target, runtime: Handle) -> Result<Store, SchemaError> {
        let pool = connections(target, POOL_SIZE, &[SETTINGS])?;
        let glance_pool = connections(target, glance::AT_ONCE, &[SETTINGS, GENERIC_PLANS])?;
        let shared = Arc::new(Shared {
            heads: FeedHeads::new(0),
            ready: AtomicBool::new(false),
            reachable: AtomicBool::new(false),
        });
        let (first, first_attempt) = oneshot::channel();
        let stop = Follower::start(target.clone(), shared.clone(), first, &runtime);
        match first_attempt.await {
            Ok(Err(err)) => return Err(err),
            Ok(Ok(())) => {}
            // The follower gave up on its first attempt only by being stopped.
            Err(_) => return Err(SchemaError::Unreachable("the follower stopped".into())),
        }
        Ok(Store {
            glances: Glances::new(glance_pool, shared.clone()),
            pool,
            runtime,
            target: target.clone(),
            shared,
            conflicts: AtomicU64::new(0),
            _follower: stop,
        })
    }

    /// A snapshot of the last commit.
    pub fn read(&self) -> Result<Snapshot> {
        Ok(Arc::new(self.session(|client, runtime| {
            Session::begin(client, runtime, Begin::ReadOnly)
        })?))
    }

    /// A snapshot of the last commit that holds, from its first round trip, the rows a
    /// decision about `uid` in `org` (else its current organization) reads.
    pub fn read_about(&self, uid: u32, org: Option<&str>) -> Result<Snapshot> {
        Ok(Arc::new(self.session(|client, runtime| {
            Session::begin_about(client, runtime, uid, org)
        })?))
    }

    /// How many glances were answered from what the glances remembered, and how many
    /// answers they remember now.
    #[cfg(test)]
    pub(super) fn glances_remembered(&self) -> (u64, usize) {
        self.glances.remembered()
    }

    /// What a decision about `uid` in `org` (else its current organization) reads, as the
    /// database has it after this call (see `glance.rs`).
    pub async fn glance(&self, uid: u32, org: Option<&str>) -> Result<Glance> {
        self.glances.glance(uid, org).await
    }

    /// The writer's transaction: serializable, rolled back unless committed.
    pub fn begin_write(&self) -> Result<Session> {
        self.session(|client, runtime| Session::begin(client, runtime, Begin::Serializable))
    }

    /// Told of every store error a change met: counts the conflicts.
    pub fn note_failure(&self, err: &StoreError) {
        if err.is_retryable() {
            self.conflicts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many transactions were refused as conflicting with another's (and run again).
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// Whether the database answered this daemon's follower last it asked, and its schema
    /// is this daemon's.
    pub fn is_reachable(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire) && self.shared.reachable.load(Ordering::Acquire)
    }

    /// Where the database is, without the password.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Tells this daemon's feeds of a commit.
    pub fn committed(&self, announced: &Announcement) {
        self.shared.heads.announce(announced);
    }

    /// [`Backend::event_head`](crate::store::Backend::event_head).
    pub fn event_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.heads.event_head()
    }

    /// [`Backend::org_event_head`](crate::store::Backend::org_event_head).
    pub fn org_event_head(&self, org: &str) -> tokio::sync::watch::Receiver<u64> {
        self.shared.heads.org_event_head(org)
    }

    /// [`Backend::last_sealed`](crate::store::Backend::last_sealed).
    pub fn last_sealed(&self) -> Option<(u64, crate::store::ChainHash)> {
        self.shared.heads.last_sealed()
    }

    /// A transaction begun by `begin` on a connection of the pool.
    fn session(&self, begin: impl Fn(Object, Handle) -> Result<Session>) -> Result<Session> {
        if !self.shared.ready.load(Ordering::Acquire) {
            return Err(StoreError::Unreachable(format!(
                "{} has not been reached since the daemon started",
                self.target
            )));
        }
        // A connection of the pool may have died with the server it talked to (a restart,
        // a failover) without the pool knowing yet: its BEGIN fails, nothing was done, and
        // the next is tried (a dead one is not handed out again). A server that is down
        // fails the new connection's connect instead, and that is the answer.
        let mut attempts = 0;
        loop {
            let client = wait(&self.runtime, self.pool.get())?
                .map_err(|err| StoreError::Unreachable(err.to_string()))?;
            match begin(client, self.runtime.clone()) {
                Err(err) if err.is_unreachable() && attempts < POOL_SIZE => attempts += 1,
                session => return session,
            }
        }
    }
}
