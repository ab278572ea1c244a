//! The handle on a PostgreSQL database: a pool of connections, the schema brought to this
//! daemon's version on open, a read-only transaction per snapshot and a serializable one
//! per write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::runtime::Handle;
use tokio_postgres::NoTls;

use super::schema::{self, SchemaError};
use super::session::{wait, Begin, Session};
use crate::store::heads::FeedHeads;
use crate::store::{Announcement, Result, StoreError};

/// Connections the pool keeps at most: the writer's, and the readers'.
const POOL_SIZE: usize = 16;

/// A PostgreSQL database as the daemon's store.
pub struct Store {
    pool: Pool,
    runtime: Handle,
    /// What this daemon's feed subscribers wait on.
    heads: FeedHeads,
    /// Transactions refused as conflicting with another's, each run again.
    conflicts: AtomicU64,
}

/// A consistent view of one moment (a read-only, repeatable-read transaction), which any
/// number of reads share.
pub type Snapshot = Arc<Session>;

impl Store {
    /// Connects to the database `config` names (a libpq connection string, in the key =
    /// value or the URL form), brings its schema to this daemon's version, and keeps a pool
    /// of connections on `runtime`.
    pub async fn open(config: &str, runtime: Handle) -> Result<Store, SchemaError> {
        let config: tokio_postgres::Config = config.parse()?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|err| SchemaError::Unreachable(err.to_string()))?;
        let mut client = pool
            .get()
            .await
            .map_err(|err| SchemaError::Unreachable(err.to_string()))?;
        schema::migrate(&mut client).await?;
        let last: i64 = client
            .query_one("SELECT seq FROM event_head", &[])
            .await?
            .get(0);
        Ok(Store {
            pool,
            runtime,
            heads: FeedHeads::new(u64::try_from(last).unwrap_or_default()),
            conflicts: AtomicU64::new(0),
        })
    }

    /// A snapshot of the last commit.
    pub fn read(&self) -> Result<Snapshot> {
        Ok(Arc::new(self.session(Begin::ReadOnly)?))
    }

    /// The writer's transaction: serializable, rolled back unless committed.
    pub fn begin_write(&self) -> Result<Session> {
        self.session(Begin::Serializable)
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

    /// Tells this daemon's feeds of a commit.
    pub fn committed(&self, announced: &Announcement) {
        self.heads.announce(announced);
    }

    /// [`Backend::event_head`](crate::store::Backend::event_head).
    pub fn event_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.heads.event_head()
    }

    /// [`Backend::org_event_head`](crate::store::Backend::org_event_head).
    pub fn org_event_head(&self, org: &str) -> tokio::sync::watch::Receiver<u64> {
        self.heads.org_event_head(org)
    }

    fn session(&self, begin: Begin) -> Result<Session> {
        let client = wait(&self.runtime, self.pool.get())?
            .map_err(|err| StoreError::Unreachable(err.to_string()))?;
        Session::begin(client, self.runtime.clone(), begin)
    }
}
