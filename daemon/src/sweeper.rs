//! The sweeper: sleeps until the earliest pending expiry (woken early when a new
//! invitation may expire sooner), then marks what is due as expired.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::rules::invitations::expire_due_up_to;
use crate::store::{Reader, Store};
use crate::writer::Writer;

/// The most invitations one sweep transaction expires while nobody else writes: a sweep
/// of many due at once is split into transactions of this size, each its own change in the
/// writer's queue, so the changes queued meanwhile are applied between them instead of
/// after all of them.
pub const SWEEP_CHUNK: usize = 1000;

/// The most while others write: a change queued behind a chunk waits for this many
/// invitations' work, a few milliseconds, rather than [`SWEEP_CHUNK`]'s.
pub const SHARED_SWEEP_CHUNK: usize = 100;

/// The size of each sweep transaction: [`SWEEP_CHUNK`], or [`SHARED_SWEEP_CHUNK`] once
/// anyone else has handed the writer a change since the sweeper's last chunk.
#[derive(Debug, Default)]
struct Pace {
    /// [`Writer::changes_sent`] just after the last chunk was handed over.
    after_last_chunk: Option<u64>,
}

impl Pace {
    /// The next chunk's size, given [`Writer::changes_sent`] now; the chunk is handed over
    /// right after (which counts one more change).
    fn next_chunk(&mut self, sent: u64) -> usize {
        let others_wrote = self.after_last_chunk.is_some_and(|after| sent > after);
        self.after_last_chunk = Some(sent + 1);
        if others_wrote {
            SHARED_SWEEP_CHUNK
        } else {
            SWEEP_CHUNK
        }
    }
}

pub struct Sweeper {
    pub store: Arc<Store>,
    pub writer: Writer,
    pub clock: Arc<dyn Clock>,
    /// Notified after every new invitation.
    pub wake: Arc<Notify>,
    /// The longest it sleeps, whatever the next expiry: a safety net against a clock
    /// that jumps.
    pub max_sleep: Duration,
}

impl Sweeper {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut pace = Pace::default();
        loop {
            let now = self.clock.now();
            let next = match self.store.read().and_then(|r| r.next_expiry()) {
                Ok(next) => next,
                Err(err) => {
                    tracing::error!(error = %err, "sweeper cannot read the expiry index");
                    None
                }
            };
            let mut sleep_for = self.max_sleep;
            if let Some(at) = next {
                if at <= now {
                    let started = std::time::Instant::now();
                    let chunk = pace.next_chunk(self.writer.changes_sent());
                    let sweep = self
                        .writer
                        .write(move |txn, now| expire_due_up_to(txn, now, chunk));
                    match sweep.await {
                        Ok(count) => {
                            // From queueing the sweep to its commit: what it cost the writer
                            // and those queued behind it.
                            let micros = started.elapsed().as_micros();
                            tracing::info!(expired = count, micros, "expired invitations");
                            if count == chunk {
                                // More may be due: the next chunk, behind what was queued.
                                continue;
                            }
                        }
                        Err(err) => {
                            tracing::error!(error = %err, "sweeping expired invitations failed")
                        }
                    }
                    // Whatever happened, the next pass re-reads the index; a failing sweep
                    // waits a full interval rather than spinning.
                    if self.sweep_left_work_due() {
                        sleep_for = self.max_sleep;
                    } else {
                        continue;
                    }
                } else {
                    sleep_for = sleep_for.min(Duration::from_millis(at - now));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(sleep_for) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// True when invitations are still due right after a sweep: something is wrong, and
    /// the sweeper must not spin on it.
    fn sweep_left_work_due(&self) -> bool {
        let now = self.clock.now();
        matches!(self.store.read().and_then(|r| r.next_expiry()), Ok(Some(at)) if at <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_takes_small_chunks_only_while_others_write() {
        let mut pace = Pace::default();
        // The first chunk, and every chunk while the sweeper's own are the only changes.
        assert_eq!(pace.next_chunk(10), SWEEP_CHUNK);
        assert_eq!(pace.next_chunk(11), SWEEP_CHUNK);
        assert_eq!(pace.next_chunk(12), SWEEP_CHUNK);
        // Someone else wrote between two chunks: small ones, until nobody else does.
        assert_eq!(pace.next_chunk(14), SHARED_SWEEP_CHUNK);
        assert_eq!(pace.next_chunk(20), SHARED_SWEEP_CHUNK);
        assert_eq!(pace.next_chunk(21), SWEEP_CHUNK);
    }
}
