//! A pooled connection inside a transaction, driven from the store's synchronous reads and
//! writes: each statement is sent on the daemon's runtime and waited for on the calling
//! thread (out of the runtime's way when that thread is one of its workers). The
//! transaction ends when the session is dropped (rolled back) or committed.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use deadpool_postgres::Object;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::follow::NOTIFY_AND_COMMIT;
use crate::store::{Announcement, Result, StoreError};

/// How a session's transaction begins.
#[derive(Debug, Clone, Copy)]
pub(super) enum Begin {
    /// A consistent view of one moment, that writes nothing.
    ReadOnly,
    /// The writer's: serializable, and first of all the feed's lock (see the schema), which
    /// runs every daemon's write transactions one after another. Taken before the
    /// transaction's snapshot (LOCK TABLE takes none), each sees the last commit and none
    /// is refused for another's: behind a long one (a sweep's chunk) the next waits, rather
    /// than failing and retrying until its retries run out. Serializable still, so that a
    /// write that somehow skips the lock is refused (40001) rather than let through.
    Serializable,
}

/// A connection with an open transaction.
pub struct Session {
    /// `None` once handed back (at commit, or to the rollback when dropped).
    client: Option<Object>,
    runtime: Handle,
    /// What the transaction appended to the feed, told to the feeds once it commits.
    appended: Mutex<Announcement>,
    /// Whether it appended to the feed, so that its commit wakes every daemon's follower.
    notifies: AtomicBool,
}

impl Session {
    /// Begins a transaction on `client`.
    pub(super) fn begin(client: Object, runtime: Handle, begin: Begin) -> Result<Session> {
        let session = Session {
            client: Some(client),
            runtime,
            appended: Mutex::default(),
            notifies: AtomicBool::new(false),
        };
        session.batch(match begin {
            Begin::ReadOnly => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            Begin::Serializable => {
                "BEGIN ISOLATION LEVEL SERIALIZABLE; LOCK TABLE event_head IN EXCLUSIVE MODE"
            }
        })?;
        Ok(session)
    }

    /// Commits the transaction, waking every daemon's follower if it appended to the feed
    /// (a notification is delivered at the commit, or never); the connection goes back to
    /// the pool.
    pub fn commit(mut self) -> Result<()> {
        self.batch(if self.notifies.load(Ordering::Relaxed) {
            NOTIFY_AND_COMMIT
        } else {
            "COMMIT"
        })?;
        self.client = None;
        Ok(())
    }

    /// Commits without waiting for the commit to reach the disk: visible at once, lost if
    /// PostgreSQL's host fails before it syncs. For tests whose data need not survive.
    pub fn commit_without_sync(self) -> Result<()> {
        self.batch("SET LOCAL synchronous_commit TO off")?;
        self.commit()
    }

    /// Records that the transaction appended event `seq` to the feeds of `orgs`.
    pub(in crate::store::postgres) fn appended(&self, seq: u64, orgs: &[String]) {
        self.notifies.store(true, Ordering::Relaxed);
        let mut appended = self.appended.lock().unwrap_or_else(PoisonError::into_inner);
        appended.last = Some(seq);
        for org in orgs {
            if !appended.orgs.contains(org) {
                appended.orgs.push(org.clone());
            }
        }
    }

    /// What the transaction appended to the feed, to tell the feeds once it commits.
    pub fn announcement(&self) -> Announcement {
        std::mem::take(&mut *self.appended.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The rows `sql` returns, its statement prepared once per connection.
    pub(super) fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let client = self.client()?;
        self.wait(async {
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, params).await
        })
    }

    /// The one row `sql` returns, if any.
    pub(super) fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs `sql`; how many rows it changed.
    pub(super) fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let client = self.client()?;
        self.wait(async {
            let statement = client.prepare_cached(sql).await?;
            client.execute(&statement, params).await
        })
    }

    fn batch(&self, sql: &str) -> Result<()> {
        let client = self.client()?;
        self.wait(client.batch_execute(sql))
    }

    fn client(&self) -> Result<&Object> {
        self.client.as_ref().ok_or(StoreError::Reopening)
    }

    fn wait<T>(&self, work: impl Future<Output = Result<T, tokio_postgres::Error>>) -> Result<T> {
        wait(&self.runtime, work)?.map_err(StoreError::from)
    }
}

/// Waits for `work` on the calling thread: directly outside the runtime, out of the way of
/// the other tasks on one of its workers. A current-thread runtime cannot wait for itself:
/// that is refused rather than deadlocked.
pub(super) fn wait<T>(runtime: &Handle, work: impl Future<Output = T>) -> Result<T> {
    match Handle::try_current() {
        Err(_) => Ok(runtime.block_on(work)),
        Ok(current) if current.runtime_flavor() == RuntimeFlavor::MultiThread => {
            Ok(tokio::task::block_in_place(|| runtime.block_on(work)))
        }
        Ok(_) => Err(StoreError::Unreachable(
            "the PostgreSQL store is used from a current-thread runtime, which cannot wait for it"
                .into(),
        )),
    }
}

impl Drop for Session {
    /// Rolls an uncommitted transaction back without waiting: the connection returns to the
    /// pool once the rollback is done.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.runtime.spawn(async move {
                if let Err(err) = client.batch_execute("ROLLBACK").await {
                    tracing::debug!(error = %err, "rolling back a PostgreSQL transaction failed");
                }
            });
        }
    }
}
