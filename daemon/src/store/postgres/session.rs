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

use super::flush::{self, Statement};
use super::follow::NOTIFY_AND_COMMIT;
use super::glance;
use super::pending::{Known, Pending};
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

/// How a read-only transaction begins: a consistent view of one moment.
const READ_ONLY: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// [`READ_ONLY`], its statements' plans made once per connection.
const READ_ONLY_GENERIC: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
     SET LOCAL plan_cache_mode = force_generic_plan";

/// A connection with an open transaction.
pub struct Session {
    /// `None` once handed back (at commit, or to the rollback when dropped).
    client: Option<Object>,
    runtime: Handle,
    /// What the transaction appended to the feed, told to the feeds once it commits.
    appended: Mutex<Announcement>,
    /// Whether it appended to the feed, so that its commit wakes every daemon's follower.
    notifies: AtomicBool,
    /// The rows as the transaction knows them (point reads are answered from here: a
    /// read-only transaction sees one moment, and a write transaction is the only writer
    /// while it runs, so what either read stays true), and a write transaction's writes not
    /// yet sent.
    pending: Mutex<Pending>,
}

impl Session {
    /// `client`, about to begin a transaction.
    fn on(client: Object, runtime: Handle) -> Session {
        Session {
            client: Some(client),
            runtime,
            appended: Mutex::default(),
            notifies: AtomicBool::new(false),
            pending: Mutex::default(),
        }
    }

    /// Begins a transaction on `client`.
    pub(super) fn begin(client: Object, runtime: Handle, begin: Begin) -> Result<Session> {
        let session = Session::on(client, runtime);
        session.batch(match begin {
            Begin::ReadOnly => READ_ONLY,
            Begin::Serializable => {
                "BEGIN ISOLATION LEVEL SERIALIZABLE; LOCK TABLE event_head IN EXCLUSIVE MODE"
            }
        })?;
        Ok(session)
    }

    /// Begins a read-only transaction on `client` that knows, from its first round trip,
    /// the rows a decision about `uid` in `org` (else its current organization) reads: its
    /// `BEGIN` and the glance at them are sent together, and the reads of those rows are
    /// answered from what it holds (the transaction sees one moment, so they cannot change).
    pub(super) fn begin_about(
        client: Object,
        runtime: Handle,
        uid: u32,
        org: Option<&str>,
    ) -> Result<Session> {
        let session = Session::on(client, runtime);
        let client = session.client()?;
        let (uids, orgs) = (vec![i64::from(uid)], vec![org]);
        let rows = session.wait(async {
            let statement = client.prepare_cached(glance::sql()).await?;
            // Sent in this order as each is first polled: one round trip. The glance's plan
            // is made once (see `GENERIC_PLANS` in `handle.rs`), for this transaction.
            let (begun, rows) = futures_util::future::join(
                client.batch_execute(READ_ONLY_GENERIC),
                client.query(&statement, &[&uids, &orgs]),
            )
            .await;
            begun?;
            rows
        })?;
        let row = rows
            .first()
            .ok_or_else(|| glance::corrupt("no row for a question".into()))?;
        glance::glance(uid, row)?.teach(&mut session.pending());
        Ok(session)
    }

    /// Commits the transaction, waking every daemon's follower if it appended to the feed
    /// (a notification is delivered at the commit, or never); the connection goes back to
    /// the pool.
    pub fn commit(mut self) -> Result<()> {
        let end = if self.notifies.load(Ordering::Relaxed) {
            NOTIFY_AND_COMMIT
        } else {
            "COMMIT"
        };
        // The pending writes and the commit in one round trip: should a write fail, the
        // transaction is aborted and its COMMIT only rolls it back.
        let unsent = self.pending().take_unsent();
        let statements = flush::statements(unsent)?;
        self.pipeline(&statements, Some(end))?;
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
        self.appended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last = Some(seq);
        self.wakes(orgs);
    }

    /// Records that the feeds of `orgs` are to be woken once the transaction commits.
    pub(in crate::store::postgres) fn wakes(&self, orgs: &[String]) {
        let mut appended = self.appended.lock().unwrap_or_else(PoisonError::into_inner);
        for org in orgs {
            if !appended.orgs.contains(org) {
                appended.orgs.push(org.clone());
            }
        }
    }

    /// What the transaction appended to the feed, to tell the feeds once it commits.
    pub fn announcement(&self) -> Announcement {
        let mut announced =
            std::mem::take(&mut *self.appended.lock().unwrap_or_else(PoisonError::into_inner));
        announced.sealed = self.pending().chain;
        announced
    }

    /// The transaction's pending rows and writes.
    pub(super) fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The row at `key` of the table `table` picks: as the transaction last read or wrote
    /// it, or else as `read` finds it in the database (remembered from then on).
    pub(super) fn remembered<K, V>(
        &self,
        table: impl Fn(&mut Pending) -> &mut Known<K, V>,
        key: K,
        read: impl FnOnce() -> Result<Option<V>>,
    ) -> Result<Option<V>>
    where
        K: Eq + std::hash::Hash + Clone,
        V: Clone,
    {
        if let Some(known) = table(&mut self.pending()).get(&key) {
            return Ok(known);
        }
        let value = read()?;
        table(&mut self.pending()).learn(key, value.clone());
        Ok(value)
    }

    /// Sends the transaction's pending writes, so that the database holds all it wrote: before
    /// a read that ranges over rows, and at the commit.
    pub(super) fn flush(&self) -> Result<()> {
        let unsent = self.pending().take_unsent();
        if unsent.is_empty() {
            return Ok(());
        }
        let statements = flush::statements(unsent)?;
        self.pipeline(&statements, None)
    }

    /// Runs `statements` in order, then `end` if given (a simple statement: `COMMIT`), all
    /// sent at once and waited for together: one round trip.
    fn pipeline(&self, statements: &[Statement], end: Option<&str>) -> Result<()> {
        let client = self.client()?;
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = statements
            .iter()
            .map(|statement| {
                statement
                    .params
                    .iter()
                    .map(|param| &**param as &(dyn ToSql + Sync))
                    .collect()
            })
            .collect();
        self.wait(async {
            let mut prepared = Vec::with_capacity(statements.len());
            for statement in statements {
                prepared.push(client.prepare_cached(statement.sql).await?);
            }
            // Each is sent as it is first polled, in order; the first error (in order) is
            // the one that broke the transaction, the later ones only say it is broken.
            let writes = futures_util::future::join_all(
                prepared
                    .iter()
                    .zip(&params)
                    .map(|(statement, params)| client.execute(statement, params)),
            );
            let (written, ended) = futures_util::future::join(writes, async {
                match end {
                    Some(end) => client.batch_execute(end).await,
                    None => Ok(()),
                }
            })
            .await;
            written
                .into_iter()
                .try_for_each(|result| result.map(drop))?;
            ended
        })
    }

    /// The rows of each of `statements`, sent at once: one round trip.
    pub(super) fn query_all(
        &self,
        statements: &[(&str, &[&(dyn ToSql + Sync)])],
    ) -> Result<Vec<Vec<Row>>> {
        let client = self.client()?;
        self.wait(async {
            let mut prepared = Vec::with_capacity(statements.len());
            for (sql, _) in statements {
                prepared.push(client.prepare_cached(sql).await?);
            }
            futures_util::future::try_join_all(
                prepared
                    .iter()
                    .zip(statements)
                    .map(|(statement, (_, params))| client.query(statement, params)),
            )
            .await
        })
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
