//! What the daemon keeps of itself for `admin.status`: the last commit of its writer and
//! of its sweeper, each written by its one thread and read by any request without a lock;
//! and whether the writer is moving, for the watchdog (`health`).

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::store::Millis;

/// One commit as last recorded: when, how many it carried, how long its commit took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    pub at: Millis,
    pub count: u64,
    pub micros: u64,
}

/// The last [`Commit`] of one thread (the writer's, the sweeper's): a sequence lock over
/// three atomics, so that a reader gets the three figures of one commit, never a mix of
/// two, without ever making the recording thread wait. Only one thread records.
#[derive(Debug, Default)]
pub struct LastCommit {
    /// Odd while a commit is being recorded; 0 before the first.
    seq: AtomicU64,
    at: AtomicU64,
    count: AtomicU64,
    micros: AtomicU64,
    /// The counts of every commit recorded, summed.
    total: AtomicU64,
}

impl LastCommit {
    /// Records `commit`. Called by one thread only.
    pub fn record(&self, commit: Commit) {
        self.seq.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.at.store(commit.at, Ordering::Relaxed);
        self.count.store(commit.count, Ordering::Relaxed);
        self.micros.store(commit.micros, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);
        self.total.fetch_add(commit.count, Ordering::Relaxed);
    }

    /// The counts of every commit recorded so far, summed.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The last commit recorded, if any. A recording takes nanoseconds and comes once a
    /// commit, so a reader that met one reads again at once and meets none the next time.
    pub fn get(&self) -> Option<Commit> {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before == 0 {
                return None;
            }
            let commit = Commit {
                at: self.at.load(Ordering::Relaxed),
                count: self.count.load(Ordering::Relaxed),
                micros: self.micros.load(Ordering::Relaxed),
            };
            fence(Ordering::Acquire);
            if before % 2 == 0 && self.seq.load(Ordering::Relaxed) == before {
                return Some(commit);
            }
            std::thread::yield_now();
        }
    }
}

/// A moment as milliseconds since a fixed start, in one atomic.
#[derive(Debug)]
pub struct Moment {
    base: Instant,
    millis: AtomicU64,
}

impl Moment {
    pub fn new(base: Instant) -> Moment {
        Moment {
            base,
            millis: AtomicU64::new(0),
        }
    }

    pub fn mark(&self) {
        let millis = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.millis.store(millis, Ordering::Relaxed);
    }

    pub fn age(&self) -> Duration {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.millis.load(Ordering::Relaxed)))
    }
}

/// The writer's progress, marked by the writer thread and its handles.
#[derive(Debug)]
pub struct Progress {
    /// The last batch taken or finished, or change queued into an empty queue.
    last: Moment,
    /// A batch is being applied.
    working: AtomicBool,
}

impl Default for Progress {
    fn default() -> Progress {
        let progress = Progress {
            last: Moment::new(Instant::now()),
            working: AtomicBool::new(false),
        };
        progress.last.mark();
        progress
    }
}

impl Progress {
    /// A change went into a queue that was empty: the writer should move from now on.
    pub fn woken(&self) {
        self.last.mark();
    }

    /// The writer took a batch.
    pub fn taken(&self) {
        self.working.store(true, Ordering::Relaxed);
        self.last.mark();
    }

    /// The writer finished its batch.
    pub fn finished(&self) {
        self.last.mark();
        self.working.store(false, Ordering::Relaxed);
    }

    /// How long the writer has not moved while it should have (`waiting` changes queued),
    /// when that is so.
    pub fn stalled_for(&self, waiting: usize) -> Option<Duration> {
        let expected = waiting > 0 || self.working.load(Ordering::Relaxed);
        expected.then(|| self.last.age())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;

    #[test]
    fn nothing_before_the_first_then_the_last() {
        let last = LastCommit::default();
        assert_eq!(last.get(), None);
        let first = Commit {
            at: 1,
            count: 2,
            micros: 3,
        };
        last.record(first);
        assert_eq!(last.get(), Some(first));
    }

    /// A reader racing the recording thread sees one commit's figures, never two mixed.
    #[test]
    fn a_reader_never_sees_two_commits_mixed() {
        let last = Arc::new(LastCommit::default());
        let recording = {
            let last = last.clone();
            std::thread::spawn(move || {
                for n in 1..=200_000 {
                    last.record(Commit {
                        at: n,
                        count: n,
                        micros: n,
                    });
                }
            })
        };
        let mut seen = 0;
        // Read until the recording has finished, and once after: however the two threads
        // are scheduled (a loaded machine may run the recording to its end first), at
        // least one read is made and checked.
        loop {
            let finished = recording.is_finished();
            if let Some(commit) = last.get() {
                assert_eq!((commit.at, commit.at), (commit.count, commit.micros));
                seen += 1;
            }
            if finished {
                break;
            }
        }
        recording.join().unwrap();
        assert_eq!(last.get().unwrap().at, 200_000);
        assert!(seen > 0);
    }
}
