//! The single writer: one thread owns redb's write side and applies every change, one
//! transaction at a time, so that a rule checked in a change (the last admin, a token's
//! single use) holds when the change commits.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use redb::WriteTransaction;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::rules::RuleError;
use crate::store::{Millis, Store, StoreError};

type Job = Box<dyn FnOnce(&Store, Millis) + Send>;

/// How many changes may wait for the writer before senders wait too.
const QUEUE_DEPTH: usize = 1024;

/// A handle to the writer. Cloned freely; the writer stops when the last clone is dropped
/// and its queue is drained.
#[derive(Clone)]
pub struct Writer {
    jobs_tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread. `now` is read from `clock` as each change begins, so a
    /// rule sees the time at which it is applied, not the time it was queued.
    pub fn spawn(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<(Writer, JoinHandle<()>)> {
        let (jobs_tx, mut jobs_rx) = mpsc::channel::<Job>(QUEUE_DEPTH);
        let handle = std::thread::Builder::new()
            .name("compartmentd-writer".into())
            .spawn(move || {
                while let Some(job) = jobs_rx.blocking_recv() {
                    // A panic in one change must not stop every later one: its caller gets
                    // an internal error (its reply channel is dropped) and the writer goes on.
                    if catch_unwind(AssertUnwindSafe(|| job(&store, clock.now()))).is_err() {
                        tracing::error!("a change panicked and was rolled back");
                    }
                }
            })?;
        Ok((Writer { jobs_tx }, handle))
    }

    /// Applies `change` in its own write transaction: committed (durably) when it returns
    /// `Ok`, rolled back when it returns `Err`.
    pub async fn write<T, F>(&self, change: F) -> Result<T, RuleError>
    where
        F: FnOnce(&WriteTransaction, Millis) -> Result<T, RuleError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: Job = Box::new(move |store, now| {
            // The requester may have gone; the change stands either way.
            let _ = reply_tx.send(apply(store, now, change));
        });
        self.jobs_tx
            .send(job)
            .await
            .map_err(|_| RuleError::ShuttingDown)?;
        reply_rx
            .await
            .map_err(|_| RuleError::Internal("a change panicked and was rolled back"))?
    }
}

/// Runs `change` in one write transaction: committed when it returns `Ok`, rolled back
/// when it returns `Err`. The writer's unit of work, and the test fixtures'.
pub(crate) fn apply<T>(
    store: &Store,
    now: Millis,
    change: impl FnOnce(&WriteTransaction, Millis) -> Result<T, RuleError>,
) -> Result<T, RuleError> {
    let result = (|| {
        let txn = store.begin_write()?;
        match change(&txn, now) {
            Ok(value) => {
                txn.commit().map_err(StoreError::from)?;
                Ok(value)
            }
            Err(err) => {
                if let Err(abort) = txn.abort() {
                    tracing::error!(error = %abort, "rolling back a refused change failed");
                }
                Err(err)
            }
        }
    })();
    if let Err(RuleError::Store(err)) = &result {
        store.note_failure(err);
    }
    result
}
