//! The single writer: one thread owns the store's write side and applies every change, so that
//! a rule checked in a change (the last admin, a token's single use) holds when it commits.
//!
//! Group commit: the thread takes every change waiting (up to [`MAX_BATCH`]) and applies
//! them one after another in ONE write transaction with one durable commit, then answers
//! each. Changes wait in lanes, one per uid and one for the daemon's own, and a batch takes
//! one change from each lane in turn (see [`Writer`]). Invariants:
//!
//! - Changes of one lane apply in the order they were queued; one connection's changes,
//!   all of one uid, therefore apply in the order it sent them (see [`QUEUED`]).
//! - A change sees the writes of the changes before it in its batch (the same
//!   transaction), exactly as if they had committed one by one in batch order: two admins
//!   removing each other in one batch still leave one.
//! - A refused change leaves no trace and does not disturb its batch: it ran on a
//!   [`Tracked`] view that records whether it wrote anything. Refused without writing, it
//!   is answered its refusal and the batch goes on; refused (or panicked) after writing,
//!   the transaction is dropped and every change of the batch runs again, one transaction
//!   each. Changes are therefore `FnMut`: running one again must give the same effect
//!   (rules read nothing but the transaction and what they captured).
//! - A failed commit (a storage error) fails the batch; its changes run again one by one,
//!   each in its own transaction, so each gets its true answer.
//! - Nobody sees a change before it is durable: answers are sent after the commit, and
//!   readers use the store's read snapshots, which only ever see committed transactions.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::clock::Clock;
use crate::metrics::WriterMetrics;
use crate::status::{self, LastCommit, Progress};
use crate::store::{Backend as _, Committing, Millis, Store, StoreError, Tracked};

/// How many changes of one lane (one uid's, or the daemon's own) may wait for the writer
/// before that lane's senders wait too: two full batches, so a busy uid's next batch is
/// ready while one is applied.
pub const LANE_DEPTH: usize = 2 * MAX_BATCH;

/// The most changes one transaction carries: bounds the work lost to a change that sends
/// its batch back to one transaction per change, and the wait of the batch's first.
pub const MAX_BATCH: usize = 256;

/// Why the writer gave no answer of the change's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The writer has stopped: the daemon is on its way out.
    ShuttingDown,
    /// The change panicked; whatever it did was rolled back.
    Panicked,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::ShuttingDown => f.write_str("the writer has stopped"),
            WriteError::Panicked => f.write_str("a change panicked and was rolled back"),
        }
    }
}

impl std::error::Error for WriteError {}

/// What the writer needs of a change's error: to carry the writer's own failures and the
/// store's, and to say whether it is the store's (a storage error fails the whole batch,
/// whose changes then run again one by one). The rules' `RuleError` is one; the writer
/// knows nothing else of the rules.
pub trait ChangeError: From<WriteError> + From<StoreError> + Send + 'static {
    /// The store's error this is, if it is one.
    fn store_error(&self) -> Option<&StoreError>;
}

/// One queued change with its requester's reply channel, type-erased for the queue.
pub(crate) trait Job: Send {
    /// Runs the change on `txn` at `now` and keeps its result until [`Job::answer`];
    /// true when it succeeded.
    fn run(&mut self, txn: &Tracked<'_, '_>, now: Millis) -> bool;
    /// The store error the last run met, if any.
    fn store_error(&self) -> Option<&StoreError>;
    /// Sends the kept result (the requester may have gone; the change stands either way).
    fn answer(self: Box<Self>);
    /// Sends the store's error instead of a result: the transaction it ran in failed.
    fn fail_in_store(self: Box<Self>, err: StoreError);
    /// Sends the writer's own error instead of a result.
    fn fail(self: Box<Self>, err: WriteError);
    /// The account the change is about, when the request names one: the store may read
    /// its rows ahead, with the other changes' of the batch, in one go.
    fn about(&self) -> Option<&str> {
        None
    }
    /// The uid that asked for the change, if one did: its binding is read ahead too.
    fn caller(&self) -> Option<u32> {
        None
    }
    /// The organization the request names, if it names one: read ahead too.
    fn org(&self) -> Option<&str> {
        None
    }
}

struct Queued<T, E, F> {
    change: F,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
    about: Option<String>,
    org: Option<String>,
    caller: Option<u32>,
}

impl<T, E, F> Job for Queued<T, E, F>
where
    F: FnMut(&Tracked<'_, '_>, Millis) -> Result<T, E> + Send,
    T: Send,
    E: ChangeError,
{
    fn run(&mut self, txn: &Tracked<'_, '_>, now: Millis) -> bool {
        let result = (self.change)(txn, now);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn store_error(&self) -> Option<&StoreError> {
        match &self.result {
            Some(Err(err)) => err.store_error(),
            _ => None,
        }
    }

    fn answer(self: Box<Self>) {
        // Every path of the writer runs a change before it answers it; should one not,
        // the requester hears that the change was rolled back, as after a panic.
        let result = self.result.unwrap_or(Err(WriteError::Panicked.into()));
        let _ = self.reply.send(result);
    }

    fn fail_in_store(self: Box<Self>, err: StoreError) {
        let _ = self.reply.send(Err(err.into()));
    }

    fn fail(self: Box<Self>, err: WriteError) {
        let _ = self.reply.send(Err(err.into()));
    }

    fn about(&self) -> Option<&str> {
        self.about.as_deref()
    }

    fn caller(&self) -> Option<u32> {
        self.caller
    }

    fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }
}

/// Queue-ready form of `change` and the receiver of its answer.
#[cfg(test)]
pub(crate) fn job<'a, T, E, F>(change: F) -> (Box<dyn Job + 'a>, oneshot::Receiver<Result<T, E>>)
where
    F: FnMut(&Tracked<'_, '_>, Millis) -> Result<T, E> + Send + 'a,
    T: Send + 'a,
    E: ChangeError,
{
    job_about(change, Lane::Daemon, About::default())
}

/// What a change is about, as its request names it: read ahead with the batch's others.
#[derive(Default)]
struct About {
    account: Option<String>,
    org: Option<String>,
}

/// [`job`] for a change about `about`.
fn job_about<'a, T, E, F>(
    change: F,
    lane: Lane,
    about: About,
) -> (Box<dyn Job + 'a>, oneshot::Receiver<Result<T, E>>)
where
    F: FnMut(&Tracked<'_, '_>, Millis) -> Result<T, E> + Send + 'a,
    T: Send + 'a,
    E: ChangeError,
{
    let (reply, reply_rx) = oneshot::channel();
    let job = Queued {
        change,
        result: None,
        reply,
        about: about.account,
        org: about.org,
        caller: match lane {
            Lane::Uid(uid) => Some(uid),
            Lane::Daemon => None,
        },
    };
    (Box::new(job), reply_rx)
}

/// Whose turn a change waits for: each uid's changes wait in a lane of their own, and the
/// daemon's own (the sweeper's, the audit of a stale binding) in another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    Daemon,
    Uid(u32),
}

/// A queued change, and its place in its lane's bound: given back when the writer takes
/// the change.
type Waiting = (Box<dyn Job>, OwnedSemaphorePermit);

/// One lane: its changes in the order they were queued, and the room left in it.
struct LaneQueue {
    jobs: VecDeque<Waiting>,
    /// [`LANE_DEPTH`] permits; a sender holds one from before its change is queued until the
    /// writer takes it. Its clones count who may still queue in the lane: the lane is
    /// forgotten only when it is empty and nobody else holds one.
    room: Arc<Semaphore>,
}

impl LaneQueue {
    fn new() -> LaneQueue {
        LaneQueue {
            jobs: VecDeque::new(),
            room: Arc::new(Semaphore::new(LANE_DEPTH)),
        }
    }
}

/// The lanes, and whose turn comes next.
#[derive(Default)]
struct Queues {
    lanes: HashMap<Lane, LaneQueue>,
    /// The lanes with changes waiting, each once, in the order they take turns.
    turns: VecDeque<Lane>,
    /// Every [`Writer`] handle is gone: the writer ends once the lanes are empty.
    closed: bool,
    /// The writer thread has ended: nothing queued now would ever be answered.
    stopped: bool,
}

impl Queues {
    /// Appends `job` to `lane`, which takes turns again if it had none waiting.
    fn push(&mut self, lane: Lane, room: &Arc<Semaphore>, waiting: Waiting) {
        let queue = self.lanes.entry(lane).or_insert_with(|| LaneQueue {
            jobs: VecDeque::new(),
            room: room.clone(),
        });
        if queue.jobs.is_empty() {
            self.turns.push_back(lane);
        }
        queue.jobs.push_back(waiting);
    }

    /// Up to `max` changes, one from each lane in turn: a lane with many waiting gives one
    /// and goes to the back of the turns, behind every other lane with one waiting. The
    /// permits of the changes taken are dropped with the lock held by the caller, which
    /// lets their senders' next changes in.
    fn take_turns(&mut self, max: usize) -> Vec<Box<dyn Job>> {
        let mut batch = Vec::new();
        while batch.len() < max {
            let Some(lane) = self.turns.pop_front() else {
                break;
            };
            let Some(queue) = self.lanes.get_mut(&lane) else {
                continue;
            };
            if let Some((job, permit)) = queue.jobs.pop_front() {
                drop(permit);
                batch.push(job);
            }
            if !queue.jobs.is_empty() {
                self.turns.push_back(lane);
            } else if Arc::strong_count(&queue.room) == 1 {
                self.lanes.remove(&lane);
            }
        }
        batch
    }

    /// Forgets `lane` if it is empty and nobody but the map holds its room. Clones of a room
    /// are made only under the lock, so a count of one cannot rise behind this check.
    fn forget_if_idle(&mut self, lane: Lane) {
        if let Some(queue) = self.lanes.get(&lane) {
            if queue.jobs.is_empty() && Arc::strong_count(&queue.room) == 1 {
                self.lanes.remove(&lane);
            }
        }
    }
}

/// What the writer thread and its handles share.
struct Shared {
    queues: Mutex<Queues>,
    /// Signalled when a change is queued, and when the last handle goes.
    ready: Condvar,
    /// Changes in the lanes now, changed under the queues' lock and read without it.
    queued: AtomicUsize,
    /// The last batch committed.
    last_batch: LastCommit,
    /// Changes committed, ever.
    committed: AtomicU64,
    /// Whether the thread is moving, for the watchdog.
    progress: Progress,
    /// Its batches' sizes and commit times.
    metrics: WriterMetrics,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        // The queues stay consistent whatever panicked while holding the lock: each change
        // to them is a single push or pop.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the next batch, of at most `size(lanes with changes waiting)` changes: waits
    /// until a change is queued; `None` once every handle is gone and nothing is left.
    fn next_batch(&self, size: impl FnOnce(usize) -> usize) -> Option<Vec<Box<dyn Job>>> {
        let mut queues = self.lock();
        while queues.turns.is_empty() {
            if queues.closed {
                return None;
            }
            queues = self
                .ready
                .wait(queues)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let max = size(queues.turns.len());
        let batch = queues.take_turns(max);
        self.progress.taken();
        self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        Some(batch)
    }
}

/// How long after two lanes last had changes waiting at once batches stay short.
const SHARED_FOR: Duration = Duration::from_secs(1);

/// How many changes the next batch takes. [`MAX_BATCH`] while one lane has the writer to
/// itself: the most changes per durable commit. While several lanes write (and for
/// [`SHARED_FOR`] after), only as many as apply in half a commit's time (at least one
/// from each waiting lane): a change that arrives waits for the batch being applied and
/// then its own, and full batches of another uid's changes would make that many times
/// its idle wait.
struct Sizing {
    /// What one change takes to apply, and a commit, averaged over recent batches.
    per_change: Duration,
    commit: Duration,
    shared_until: Option<Instant>,
}

impl Sizing {
    fn new() -> Sizing {
        Sizing {
            per_change: Duration::from_micros(50),
            commit: Duration::from_millis(2),
            shared_until: None,
        }
    }

    fn max_batch(&mut self, lanes_waiting: usize, now: Instant) -> usize {
        if lanes_waiting > 1 {
            self.shared_until = Some(now + SHARED_FOR);
        }
        if self.shared_until.is_none_or(|until| now >= until) {
            return MAX_BATCH;
        }
        let fit = (self.commit / 2).as_nanos() / self.per_change.as_nanos().max(1);
        let fit = usize::try_from(fit).unwrap_or(MAX_BATCH);
        fit.max(lanes_waiting).clamp(1, MAX_BATCH)
    }

    /// Learns from a committed batch of `changes` changes.
    fn ran(&mut self, changes: usize, timing: Timing) {
        let Ok(changes) = u32::try_from(changes) else {
            return;
        };
        if changes == 0 {
            return;
        }
        // An average over the last eight or so batches.
        let mix = |old: Duration, new: Duration| (old * 7 + new) / 8;
        self.per_change = mix(self.per_change, timing.applied / changes);
        self.commit = mix(self.commit, timing.committed);
    }
}

/// How long a committed batch took to apply, and to commit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    applied: Duration,
    committed: Duration,
}

/// Marks the lanes closed when the last [`Writer`] handle is dropped.
struct Handles(Arc<Shared>);

impl Drop for Handles {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_all();
    }
}

/// Marks the writer stopped when its thread ends, however it ends, and answers whatever is
/// still queued: a sender never waits for an answer that cannot come.
struct Stopping(Arc<Shared>);

impl Drop for Stopping {
    fn drop(&mut self) {
        let left = {
            let mut queues = self.0.lock();
            queues.stopped = true;
            queues.take_turns(usize::MAX)
        };
        for job in left {
            job.fail(WriteError::ShuttingDown);
        }
    }
}

/// Holds a lane's room while a sender queues in it; forgets the lane when the sender is
/// done (or gives up) and nobody else is in it.
struct InLane<'a> {
    shared: &'a Shared,
    lane: Lane,
    room: Option<Arc<Semaphore>>,
}

impl Drop for InLane<'_> {
    fn drop(&mut self) {
        let mut queues = self.shared.lock();
        drop(self.room.take());
        queues.forget_if_idle(self.lane);
    }
}

/// A handle to the writer. Cloned freely; the writer stops when the last clone is dropped
/// and its lanes are drained.
///
/// Each uid's changes wait in a lane of their own (at most [`LANE_DEPTH`]; a sender over it
/// waits for room), and the writer fills each batch taking one change from each lane in
/// turn: however many changes one uid pipelines on however many connections, another's
/// change waits for at most the batch being applied and one change of each other lane.
/// Within a lane changes keep their order, so one connection's changes (all of one uid)
/// apply in the order they were queued.
#[derive(Clone)]
pub struct Writer {
    shared: Arc<Shared>,
    _handles: Arc<Handles>,
    /// Changes ever handed to the writer, by anyone: how the sweeper tells whether others
    /// are writing while it sweeps.
    sent: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer thread. `now` is read from `clock` as each change begins, so a
    /// rule sees the time at which it is applied, not the time it was queued.
    pub fn spawn(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<(Writer, JoinHandle<()>)> {
        let shared = Arc::new(Shared {
            queues: Mutex::default(),
            ready: Condvar::new(),
            queued: AtomicUsize::new(0),
            last_batch: LastCommit::default(),
            committed: AtomicU64::new(0),
            progress: Progress::default(),
            metrics: WriterMetrics::default(),
        });
        let stopping = Stopping(shared.clone());
        let handle = std::thread::Builder::new()
            .name("compartmentd-writer".into())
            .spawn(move || {
                let stopping = stopping;
                let mut sizing = Sizing::new();
                // Whatever is waiting now joins the batch; nothing waits for more to come,
                // so a lone change is applied as soon as it arrives.
                while let Some(batch) = stopping
                    .0
                    .next_batch(|lanes| sizing.max_batch(lanes, Instant::now()))
                {
                    let changes = batch.len();
                    // The batch's commits (one, or one per change when it had to run them
                    // alone), timed for `admin.status`.
                    let committing = std::cell::Cell::new(Duration::ZERO);
                    let timed = |txn: Committing| {
                        let started = Instant::now();
                        let committed = commit(txn);
                        committing.set(committing.get() + started.elapsed());
                        committed
                    };
                    if let Some(timing) = apply_batch(&store, &*clock, batch, &timed) {
                        sizing.ran(changes, timing);
                    }
                    let shared = &stopping.0;
                    shared.progress.finished();
                    if committing.get() > Duration::ZERO {
                        shared
                            .committed
                            .fetch_add(changes as u64, Ordering::Relaxed);
                        shared.metrics.batch_changes.observe(changes as f64);
                        shared
                            .metrics
                            .commit_seconds
                            .observe(committing.get().as_secs_f64());
                        shared.last_batch.record(status::Commit {
                            at: clock.now(),
                            count: changes as u64,
                            micros: u64::try_from(committing.get().as_micros()).unwrap_or(u64::MAX),
                        });
                    }
                }
            })?;
        Ok((
            Writer {
                _handles: Arc::new(Handles(shared.clone())),
                shared,
                sent: Arc::default(),
            },
            handle,
        ))
    }

    /// Applies `change` in a write transaction, possibly shared with other changes:
    /// committed (durably) when it returns `Ok`, leaving no trace when it returns `Err`.
    /// It may run more than once (see the module's invariants); only its last run counts.
    /// The change is the daemon's own: it waits in the daemon's lane.
    pub async fn write<T, E, F>(&self, change: F) -> Result<T, E>
    where
        F: FnMut(&Tracked<'_, '_>, Millis) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: ChangeError,
    {
        self.write_in(Lane::Daemon, change).await
    }

    /// [`Writer::write`] for a change `uid` asked for: it waits in that uid's lane.
    pub async fn write_as<T, E, F>(&self, uid: u32, change: F) -> Result<T, E>
    where
        F: FnMut(&Tracked<'_, '_>, Millis) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: ChangeError,
    {
        self.write_in(Lane::Uid(uid), change).await
    }

    /// [`Writer::write_as`] for a change about the account `email` in `org` (as the request
    /// names them; the change itself judges them): their rows are read ahead with the
    /// batch's others.
    pub async fn write_about<T, E, F>(
        &self,
        uid: u32,
        email: &str,
        org: Option<&str>,
        change: F,
    ) -> Result<T, E>
    where
        F: FnMut(&Tracked<'_, '_>, Millis) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: ChangeError,
    {
        let about = About {
            account: compartmentctl::email::Email::parse(email)
                .ok()
                .map(|email| email.as_str().to_owned()),
            org: org.map(str::to_owned),
        };
        self.queue(Lane::Uid(uid), about, change).await
    }

    /// [`Writer::write`] in `lane`.
    pub async fn write_in<T, E, F>(&self, lane: Lane, change: F) -> Result<T, E>
    where
        F: FnMut(&Tracked<'_, '_>, Millis) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: ChangeError,
    {
        self.queue(lane, About::default(), change).await
    }

    /// Queues `change` in `lane`, about `about`, and waits for its answer.
    async fn queue<T, E, F>(&self, lane: Lane, about: About, change: F) -> Result<T, E>
    where
        F: FnMut(&Tracked<'_, '_>, Millis) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: ChangeError,
    {
        let (job, reply_rx) = job_about(change, lane, about);
        self.sent.fetch_add(1, Ordering::Relaxed);
        let room = {
            let mut queues = self.shared.lock();
            if queues.stopped {
                return Err(WriteError::ShuttingDown.into());
            }
            let queue = queues.lanes.entry(lane).or_insert_with(LaneQueue::new);
            queue.room.clone()
        };
        // From here the lane is not forgotten until this change is done with it.
        let in_lane = InLane {
            shared: &self.shared,
            lane,
            room: Some(room),
        };
        let room = in_lane.room.clone().ok_or(WriteError::ShuttingDown)?;
        // The semaphore is never closed; an error could only mean it was.
        let permit = room
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        {
            let mut queues = self.shared.lock();
            if queues.stopped {
                return Err(WriteError::ShuttingDown.into());
            }
            queues.push(lane, &room, (job, permit));
            if self.shared.queued.fetch_add(1, Ordering::Relaxed) == 0 {
                self.shared.progress.woken();
            }
        }
        drop(room);
        self.shared.ready.notify_one();
        // The change is in its lane, behind every change queued there before it: the
        // request after this one on its connection may queue its own now.
        let _ = QUEUED.try_with(|queued| queued.borrow_mut().take().map(|tx| tx.send(())));
        // The job is answered on every path of the writer; a dropped channel means the
        // writer thread itself died.
        let answer = reply_rx.await.map_err(|_| WriteError::ShuttingDown);
        drop(in_lane);
        answer?
    }

    /// How many changes wait in the lanes now.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// The last batch committed: when, its changes, how long its commit took.
    pub fn last_batch(&self) -> Option<status::Commit> {
        self.shared.last_batch.get()
    }

    /// Changes committed since the daemon started.
    pub fn changes_committed(&self) -> u64 {
        self.shared.committed.load(Ordering::Relaxed)
    }

    /// The writer's histograms, shared with the daemon's metrics.
    pub fn metrics(&self) -> WriterMetrics {
        self.shared.metrics.clone()
    }

    /// How long the writer thread has not moved while changes waited or a batch was being
    /// applied, when that is so (see `health`).
    pub fn stalled_for(&self) -> Option<Duration> {
        self.shared.progress.stalled_for(self.queued())
    }

    /// How many changes have been handed to the writer so far, by every caller.
    pub fn changes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

tokio::task_local! {
    /// Set while a pipelined request is served (see `connection`): fired when its first
    /// change is in the writer's queue, so that the next request on the connection queues
    /// its change after this one and the two apply in the order they were sent. Dropped
    /// unfired (which lets the next one go too) when the request ends without writing.
    pub(crate) static QUEUED: std::cell::RefCell<Option<oneshot::Sender<()>>>;
}

pub(crate) use crate::store::Commit;

/// The durable commit of a batch; a parameter of [`apply_batch`] so tests can fail it.
pub(crate) fn commit(txn: Committing) -> Result<(), StoreError> {
    txn.durably()
}

/// What became of a job in the shared transaction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// Succeeded, or refused without writing: its kept result is its answer.
    Clean,
    /// Panicked without writing: answered `Panicked`, the batch goes on.
    PanickedClean,
    /// Refused or panicked after writing, or met a store error (after which PostgreSQL
    /// takes nothing more in the transaction): the transaction cannot commit.
    Dirty { panicked: bool },
}

/// How many times a transaction refused as conflicting with another's (PostgreSQL's
/// serialization failure or deadlock, when several daemons write) runs again before its
/// changes are run one by one, each with as many tries of its own.
const CONFLICT_RETRIES: u32 = 8;

/// Waits before running a conflicting transaction again: 1 ms doubling up to 128 ms, less
/// a random part, so that two daemons that met do not meet again at once.
fn back_off(attempt: u32) {
    let ceiling = 1u64 << attempt.min(7);
    let jitter = u64::from(getrandom::u32().unwrap_or(0)) % (ceiling * 500);
    std::thread::sleep(std::time::Duration::from_micros(ceiling * 1000 - jitter));
}

/// What one attempt at a batch came to.
enum Attempt {
    /// Committed: each job is answered its kept result, or `Panicked` where marked.
    Committed(Timing, Vec<bool>),
    /// Refused as conflicting with another transaction: worth running again whole.
    Conflict,
    /// The batch cannot commit as one: its changes run one by one (those marked panicked
    /// are not run again).
    OneByOne(Vec<bool>),
}

/// Applies `batch` in one write transaction committed with `commit`, then answers each
/// job; runs it again when it conflicted with another daemon's transaction, and falls back
/// to one transaction per job as the module's invariants say. How long the shared
/// transaction took, when it committed.
pub(crate) fn apply_batch(
    store: &Store,
    clock: &dyn Clock,
    mut batch: Vec<Box<dyn Job + '_>>,
    commit: Commit<'_>,
) -> Option<Timing> {
    if batch.len() == 1 {
        one_by_one(store, clock, batch, &[], commit);
        return None;
    }
    let mut attempt = 0;
    loop {
        match attempt_batch(store, clock, &mut batch, commit) {
            Attempt::Committed(timing, panicked) => {
                for (job, panicked) in batch.into_iter().zip(panicked) {
                    if panicked {
                        job.fail(WriteError::Panicked);
                    } else {
                        job.answer();
                    }
                }
                return Some(timing);
            }
            Attempt::Conflict if attempt < CONFLICT_RETRIES => {
                back_off(attempt);
                attempt += 1;
            }
            Attempt::Conflict => {
                one_by_one(store, clock, batch, &[], commit);
                return None;
            }
            Attempt::OneByOne(panicked) => {
                one_by_one(store, clock, batch, &panicked, commit);
                return None;
            }
        }
    }
}

/// Runs every job of `batch` in one transaction and commits it with `commit`.
fn attempt_batch(
    store: &Store,
    clock: &dyn Clock,
    batch: &mut [Box<dyn Job + '_>],
    commit: Commit<'_>,
) -> Attempt {
    let started = std::time::Instant::now();
    let txn = match store.begin_write() {
        Ok(txn) => txn,
        Err(err) => {
            store.note_failure(&err);
            return Attempt::OneByOne(Vec::new());
        }
    };
    let callers: Vec<u32> = batch.iter().filter_map(|job| job.caller()).collect();
    let about: Vec<&str> = batch.iter().filter_map(|job| job.about()).collect();
    let orgs: Vec<&str> = batch.iter().filter_map(|job| job.org()).collect();
    if let Err(err) = txn.read_ahead(&callers, &about, &orgs) {
        store.note_failure(&err);
        if err.is_retryable() {
            return Attempt::Conflict;
        }
        return Attempt::OneByOne(Vec::new());
    }
    let mut panicked = vec![false; batch.len()];
    let mut dirty = false;
    let mut conflict = false;
    // Every change of the batch uses the same open tables; they close before the commit.
    let tables = txn.tables();
    for (i, job) in batch.iter_mut().enumerate() {
        let ran = {
            let now = clock.now();
            let view = Tracked::new(&tables, now);
            let outcome = catch_unwind(AssertUnwindSafe(|| job.run(&view, now)));
            match outcome {
                Ok(_) if job.store_error().is_some() => Ran::Dirty { panicked: false },
                Ok(true) => Ran::Clean,
                Ok(false) if !view.wrote() => Ran::Clean,
                Ok(false) => Ran::Dirty { panicked: false },
                Err(_) if !view.wrote() => Ran::PanickedClean,
                Err(_) => Ran::Dirty { panicked: true },
            }
        };
        if let Some(err) = job.store_error() {
            store.note_failure(err);
            conflict = err.is_retryable();
        }
        match ran {
            Ran::Clean => {}
            Ran::PanickedClean => {
                tracing::error!("a change panicked and was rolled back");
                panicked[i] = true;
            }
            Ran::Dirty { panicked: p } => {
                if p {
                    tracing::error!("a change panicked and was rolled back");
                }
                panicked[i] = p;
                dirty = true;
                break;
            }
        }
    }
    let events = tables.last_event();
    drop(tables);
    if dirty {
        // The transaction holds a refused change's writes, or met a store error: none of
        // it may commit.
        if let Err(err) = txn.abort() {
            tracing::error!(error = %err, "rolling back a batch failed");
        }
        if conflict {
            return Attempt::Conflict;
        }
        tracing::debug!(
            changes = batch.len(),
            "a refused change had written; the batch runs one change per transaction"
        );
        return Attempt::OneByOne(panicked);
    }
    let applied = started.elapsed();
    match txn.commit(commit, events) {
        Ok(()) => {
            let committed = started.elapsed() - applied;
            trace_commit(batch.len(), started, applied);
            Attempt::Committed(Timing { applied, committed }, panicked)
        }
        Err(err) => {
            store.note_failure(&err);
            if err.is_retryable() {
                return Attempt::Conflict;
            }
            tracing::warn!(error = %err, changes = batch.len(), "committing a batch failed; its changes run one by one");
            Attempt::OneByOne(panicked)
        }
    }
}

/// Traces a committed transaction of `changes` changes, begun at `started` and applied
/// after `applied` (the benchmark reads the batches the writer made from these lines).
fn trace_commit(changes: usize, started: std::time::Instant, applied: std::time::Duration) {
    tracing::trace!(
        changes,
        apply_us = applied.as_micros(),
        commit_us = (started.elapsed() - applied).as_micros(),
        "batch committed"
    );
}

/// Runs each job in its own transaction and answers it; a job marked in `panicked` is
/// not run again and is answered `Panicked`.
fn one_by_one(
    store: &Store,
    clock: &dyn Clock,
    batch: Vec<Box<dyn Job + '_>>,
    panicked: &[bool],
    commit: Commit<'_>,
) {
    for (i, mut job) in batch.into_iter().enumerate() {
        if panicked.get(i).copied().unwrap_or(false) {
            job.fail(WriteError::Panicked);
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| {
            run_alone(store, clock, &mut job, commit)
        })) {
            Ok(Ok(())) => {
                if let Some(err) = job.store_error() {
                    store.note_failure(err);
                }
                job.answer();
            }
            Ok(Err(err)) => {
                store.note_failure(&err);
                job.fail_in_store(err);
            }
            Err(_) => {
                // The transaction was dropped while unwinding: the store rolls it back.
                tracing::error!("a change panicked and was rolled back");
                job.fail(WriteError::Panicked);
            }
        }
    }
}

/// Runs one job in its own transaction, committed when it succeeds; again, after a pause,
/// when the transaction conflicted with another daemon's. `Ok` when the job holds its
/// answer; the storage error that denied it one otherwise.
fn run_alone(
    store: &Store,
    clock: &dyn Clock,
    job: &mut Box<dyn Job + '_>,
    commit: Commit<'_>,
) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        match run_once(store, clock, job, commit) {
            Err(err) if err.is_retryable() && attempt < CONFLICT_RETRIES => {
                store.note_failure(&err);
                back_off(attempt);
                attempt += 1;
            }
            Ok(())
                if attempt < CONFLICT_RETRIES
                    && job.store_error().is_some_and(StoreError::is_retryable) =>
            {
                if let Some(err) = job.store_error() {
                    store.note_failure(err);
                }
                back_off(attempt);
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// One attempt of [`run_alone`].
fn run_once(
    store: &Store,
    clock: &dyn Clock,
    job: &mut Box<dyn Job + '_>,
    commit: Commit<'_>,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let txn = store.begin_write()?;
    txn.read_ahead(
        &job.caller().into_iter().collect::<Vec<_>>(),
        &job.about().into_iter().collect::<Vec<_>>(),
        &job.org().into_iter().collect::<Vec<_>>(),
    )?;
    let (succeeded, events) = {
        let tables = txn.tables();
        let now = clock.now();
        let succeeded = job.run(&Tracked::new(&tables, now), now);
        (succeeded, tables.last_event())
    };
    if succeeded {
        let applied = started.elapsed();
        txn.commit(commit, events)?;
        trace_commit(1, started, applied);
    } else if let Err(err) = txn.abort() {
        tracing::error!(error = %err, "rolling back a refused change failed");
    }
    Ok(())
}

/// Runs `change` in one write transaction of its own: committed when it returns `Ok`,
/// rolled back when it returns `Err`. The test fixtures' unit of work.
#[cfg(test)]
pub(crate) fn apply<T, E: ChangeError>(
    store: &Store,
    now: Millis,
    change: impl FnOnce(&Tracked<'_, '_>, Millis) -> Result<T, E>,
) -> Result<T, E> {
    let result = (|| {
        let txn = store.begin_write()?;
        let (outcome, events) = {
            let tables = txn.tables();
            let outcome = change(&Tracked::new(&tables, now), now);
            (outcome, tables.last_event())
        };
        match outcome {
            Ok(value) => {
                txn.commit(&commit, events)?;
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
    if let Some(err) = result.as_ref().err().and_then(ChangeError::store_error) {
        store.note_failure(err);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc as std_mpsc;

    use super::*;
    use crate::clock::FakeClock;
    use crate::rules::RuleError;
    use crate::store::{Changes, OrgRecord, Reader};

    const T0: Millis = 1_777_636_800_000;

    fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (Store::open(dir.path()).unwrap(), dir)
    }

    fn org(created_at: Millis) -> OrgRecord {
        OrgRecord {
            created_at,
            created_by_uid: 0,
            groups: Default::default(),
        }
    }

    /// A change that creates organization `name`.
    fn create(name: &'static str) -> impl FnMut(&Tracked<'_, '_>, Millis) -> Result<(), RuleError> {
        move |txn, now| Ok(txn.put_org(name, &org(now))?)
    }

    fn exists(store: &Store, name: &str) -> bool {
        store.read().unwrap().org(name).unwrap().is_some()
    }

    type Reply = oneshot::Receiver<Result<(), RuleError>>;

    fn answer(mut reply: Reply) -> Result<(), RuleError> {
        reply.try_recv().expect("every job of a batch is answered")
    }

    fn run(
        store: &Store,
        changes: Vec<(Box<dyn Job>, Reply)>,
        commit: Commit<'_>,
    ) -> Vec<Result<(), RuleError>> {
        let (jobs, replies): (Vec<_>, Vec<_>) = changes.into_iter().unzip();
        apply_batch(store, &FakeClock::new(T0), jobs, commit);
        replies.into_iter().map(answer).collect()
    }

    #[test]
    fn a_batch_commits_every_accepted_change_once() {
        let (store, _dir) = store();
        let results = run(
            &store,
            vec![job(create("a")), job(create("b")), job(create("c"))],
            &commit,
        );
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert!(["a", "b", "c"].iter().all(|n| exists(&store, n)));
    }

    #[test]
    fn a_change_refused_before_writing_leaves_its_batch_alone() {
        let (store, _dir) = store();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let first = job(move |txn: &Tracked<'_, '_>, now| {
            counted.fetch_add(1, Ordering::SeqCst);
            create("a")(txn, now)
        });
        let refused = job(|txn: &Tracked<'_, '_>, _| {
            // It reads what the change before it wrote, then refuses without writing.
            assert!(txn.org("a")?.is_some());
            Err::<(), _>(RuleError::OrgExists("a".into()))
        });
        let results = run(&store, vec![first, refused, job(create("c"))], &commit);
        assert!(results[0].is_ok() && results[2].is_ok());
        assert!(matches!(results[1], Err(RuleError::OrgExists(_))));
        assert!(exists(&store, "a") && exists(&store, "c"));
        // Nothing was run again: the batch committed as one transaction.
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_change_refused_after_writing_leaves_no_trace_and_its_batch_runs_one_by_one() {
        let (store, _dir) = store();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let first = job(move |txn: &Tracked<'_, '_>, now| {
            counted.fetch_add(1, Ordering::SeqCst);
            create("a")(txn, now)
        });
        let wrote_then_refused = job(|txn: &Tracked<'_, '_>, now| {
            txn.put_org("trace", &org(now))?;
            Err::<(), _>(RuleError::OrgExists("trace".into()))
        });
        let results = run(
            &store,
            vec![first, wrote_then_refused, job(create("c"))],
            &commit,
        );
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(matches!(results[1], Err(RuleError::OrgExists(_))));
        assert!(!exists(&store, "trace"));
        assert!(exists(&store, "a") && exists(&store, "c"));
        // The first change ran in the dropped batch and again on its own.
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_panicking_change_is_answered_internal_and_the_rest_commit() {
        for writes_first in [false, true] {
            let (store, _dir) = store();
            let panics = job(move |txn: &Tracked<'_, '_>, now| -> Result<(), RuleError> {
                if writes_first {
                    txn.put_org("trace", &org(now))?;
                }
                panic!("a bug in a rule");
            });
            let results = run(
                &store,
                vec![job(create("a")), panics, job(create("c"))],
                &commit,
            );
            assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
            let err = results[1].as_ref().unwrap_err();
            assert!(matches!(err, RuleError::Write(WriteError::Panicked)));
            assert_eq!(err.kind(), compartmentctl::wire::ErrorKind::Internal);
            assert!(!exists(&store, "trace"));
            assert!(exists(&store, "a") && exists(&store, "c"));
        }
    }

    #[test]
    fn a_failed_commit_sends_each_change_through_alone_for_its_true_answer() {
        let (store, _dir) = store();
        let commits = AtomicUsize::new(0);
        // The batch's commit fails (a storage error); the commits after it succeed.
        let flaky = |txn: Committing| {
            if commits.fetch_add(1, Ordering::SeqCst) == 0 {
                drop(txn);
                Err(StoreError::Reopening)
            } else {
                commit(txn)
            }
        };
        let refused = job(|_: &Tracked<'_, '_>, _| Err::<(), _>(RuleError::OrgExists("b".into())));
        let results = run(
            &store,
            vec![job(create("a")), refused, job(create("c"))],
            &flaky,
        );
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(matches!(results[1], Err(RuleError::OrgExists(_))));
        assert!(exists(&store, "a") && exists(&store, "c"));
        // The failed batch, then one commit for each accepted change.
        assert_eq!(commits.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_commit_that_keeps_failing_answers_each_change_the_storage_error() {
        let (store, _dir) = store();
        let failing = |txn: Committing| {
            drop(txn);
            Err(StoreError::Reopening)
        };
        let results = run(&store, vec![job(create("a")), job(create("b"))], &failing);
        for result in results {
            assert!(matches!(
                result,
                Err(RuleError::Store(StoreError::Reopening))
            ));
        }
        assert!(!exists(&store, "a") && !exists(&store, "b"));
    }

    /// Readers never see a change before its batch is durable: a reader looking while a
    /// later change of the batch runs does not see the earlier one's write, and sees both
    /// once they are answered.
    #[test]
    fn a_reader_never_sees_a_change_of_a_batch_before_its_commit() {
        let (store, _dir) = store();
        let store = Arc::new(store);
        let (running_tx, running_rx) = std_mpsc::channel::<()>();
        let (go_tx, go_rx) = std_mpsc::channel::<()>();
        let go_rx = std::sync::Mutex::new(go_rx);
        let second = job(move |txn: &Tracked<'_, '_>, now| {
            running_tx.send(()).ok();
            go_rx.lock().unwrap().recv().ok();
            create("b")(txn, now)
        });
        let (jobs, replies): (Vec<_>, Vec<_>) = vec![job(create("a")), second].into_iter().unzip();
        let writer_store = store.clone();
        let writer = std::thread::spawn(move || {
            apply_batch(&writer_store, &FakeClock::new(T0), jobs, &commit);
        });
        running_rx.recv().unwrap();
        // "a" is written in the open transaction, not committed: invisible.
        assert!(!exists(&store, "a"));
        go_tx.send(()).unwrap();
        writer.join().unwrap();
        for reply in replies {
            answer(reply).unwrap();
        }
        assert!(exists(&store, "a") && exists(&store, "b"));
    }

    /// Through the thread: concurrent writers, a reader polling all along; every org the
    /// reader sees was committed, and every answered change is there.
    #[test]
    fn concurrent_writes_through_the_thread_are_batched_and_all_answered() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (store, _dir) = store();
        let store = Arc::new(store);
        let (writer, thread) = Writer::spawn(store.clone(), Arc::new(FakeClock::new(T0))).unwrap();
        const N: usize = 400;
        let names: Vec<&'static str> = (0..N)
            .map(|i| &*Box::leak(format!("org{i}").into_boxed_str()))
            .collect();
        runtime.block_on(async {
            let mut tasks = Vec::new();
            for name in names.iter().copied() {
                let writer = writer.clone();
                tasks.push(tokio::spawn(
                    async move { writer.write(create(name)).await },
                ));
            }
            for task in tasks {
                task.await.unwrap().unwrap();
            }
        });
        drop(writer);
        thread.join().unwrap();
        assert!(names.iter().all(|n| exists(&store, n)));
    }

    #[test]
    fn a_stopped_writer_answers_shutting_down() {
        let (store, _dir) = store();
        let (writer, thread) =
            Writer::spawn(Arc::new(store), Arc::new(FakeClock::new(T0))).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // A handle whose writer thread is gone: its lanes were marked stopped as it ended.
        let shared = Arc::new(Shared {
            queues: Mutex::default(),
            ready: Condvar::new(),
            queued: AtomicUsize::new(0),
            last_batch: LastCommit::default(),
            committed: AtomicU64::new(0),
            progress: Progress::default(),
            metrics: WriterMetrics::default(),
        });
        drop(Stopping(shared.clone()));
        let closed = Writer {
            _handles: Arc::new(Handles(shared.clone())),
            shared,
            sent: Arc::default(),
        };
        let err = runtime.block_on(closed.write(create("a"))).unwrap_err();
        assert!(matches!(err, RuleError::Write(WriteError::ShuttingDown)));
        assert_eq!(err.kind(), compartmentctl::wire::ErrorKind::Unavailable);
        assert_eq!(
            err.user_message(),
            "compartmentd is shutting down; try again in a moment"
        );
        assert_eq!(err.to_string(), "the writer has stopped");
        drop(writer);
        thread.join().unwrap();
    }
    /// A change that records `name` in `order` when it runs, and writes nothing.
    fn recorded(
        order: &Arc<std::sync::Mutex<Vec<String>>>,
        name: String,
    ) -> impl FnMut(&Tracked<'_, '_>, Millis) -> Result<(), RuleError> + Send + 'static {
        let order = order.clone();
        move |_, _| {
            order.lock().unwrap().push(name.clone());
            Ok(())
        }
    }

    /// A batch takes one change from each lane in turn: uid 2's one change, queued behind a
    /// thousand of uid 1's, is the second of the next batch, and each lane keeps its order.
    #[test]
    fn a_batch_takes_one_change_from_each_lane_in_turn() {
        let (store, _dir) = store();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let room = Arc::new(Semaphore::new(2000));
        let mut queues = Queues::default();
        let mut queue = |lane: Lane, name: String| {
            let (job, reply) = job(recorded(&order, name));
            let permit = room.clone().try_acquire_owned().unwrap();
            queues.push(lane, &room, (job, permit));
            reply
        };
        let mut replies: Vec<_> = (0..1000)
            .map(|i| queue(Lane::Uid(1), format!("a{i}")))
            .collect();
        replies.push(queue(Lane::Uid(2), "b".into()));
        replies.push(queue(Lane::Daemon, "sweep".into()));
        let batch = queues.take_turns(MAX_BATCH);
        assert_eq!(batch.len(), MAX_BATCH);
        apply_batch(&store, &FakeClock::new(T0), batch, &commit);
        let ran = order.lock().unwrap().clone();
        assert_eq!(ran[..4], ["a0", "b", "sweep", "a1"]);
        let a: Vec<String> = (0..MAX_BATCH - 2).map(|i| format!("a{i}")).collect();
        let ran_a: Vec<&String> = ran.iter().filter(|n| n.starts_with('a')).collect();
        assert_eq!(
            ran_a,
            a.iter().collect::<Vec<_>>(),
            "uid 1's changes in order"
        );
        // Only uid 1's lane still takes turns; the others were forgotten with their last
        // change (nobody else holds their room here but the map and `room`).
        assert_eq!(queues.turns, [Lane::Uid(1)]);
        assert_eq!(queues.take_turns(usize::MAX).len(), 1000 - (MAX_BATCH - 2));
        assert!(queues.turns.is_empty());
    }

    /// Through the thread: while uid 1 floods (more than its lane holds, so some of its
    /// senders wait for room), uid 2's change waits for no more than one turn of each lane.
    #[test]
    fn a_flood_of_one_uid_does_not_hold_up_another_beyond_one_turn() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (store, _dir) = store();
        let (writer, thread) =
            Writer::spawn(Arc::new(store), Arc::new(FakeClock::new(T0))).unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        const FLOOD: usize = LANE_DEPTH + 300;
        runtime.block_on(async {
            // The writer is held on a change of the daemon's while the lanes fill.
            let (running_tx, running_rx) = std_mpsc::channel::<()>();
            let (go_tx, go_rx) = std_mpsc::channel::<()>();
            let go_rx = std::sync::Mutex::new(go_rx);
            let gate = tokio::spawn({
                let writer = writer.clone();
                async move {
                    writer
                        .write(move |_, _| {
                            running_tx.send(()).ok();
                            go_rx.lock().unwrap().recv().ok();
                            Ok::<_, RuleError>(())
                        })
                        .await
                }
            });
            running_rx.recv().unwrap();
            let mut flood = Vec::new();
            for i in 0..FLOOD {
                let writer = writer.clone();
                let change = recorded(&order, format!("a{i}"));
                flood.push(tokio::spawn(
                    async move { writer.write_as(1, change).await },
                ));
            }
            let queued = |lane: Lane| {
                let queues = writer.shared.lock();
                queues.lanes.get(&lane).map_or(0, |q| q.jobs.len())
            };
            while queued(Lane::Uid(1)) < LANE_DEPTH {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            // The lane is full: the rest of the flood waits for room.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            assert_eq!(queued(Lane::Uid(1)), LANE_DEPTH);
            let other = tokio::spawn({
                let writer = writer.clone();
                let change = recorded(&order, "b".into());
                async move { writer.write_as(2, change).await }
            });
            while queued(Lane::Uid(2)) < 1 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            go_tx.send(()).unwrap();
            gate.await.unwrap().unwrap();
            other.await.unwrap().unwrap();
            for task in flood {
                task.await.unwrap().unwrap();
            }
        });
        let ran = order.lock().unwrap().clone();
        assert_eq!(ran.len(), FLOOD + 1);
        let b = ran.iter().position(|n| n == "b").unwrap();
        assert_eq!(
            b,
            1,
            "uid 2's change ran after one of uid 1's: {:?}",
            &ran[..4]
        );
        // Every lane was forgotten once its senders were done.
        assert!(writer.shared.lock().lanes.is_empty());
        drop(writer);
        thread.join().unwrap();
    }

    /// Alone, a lane gets full batches; once two lanes write at once, and for a second
    /// after, a batch takes only what applies in half a commit, but at least one change of
    /// each waiting lane.
    #[test]
    fn batches_are_short_only_while_lanes_share_the_writer() {
        let mut sizing = Sizing::new();
        let t0 = Instant::now();
        assert_eq!(sizing.max_batch(1, t0), MAX_BATCH);
        for _ in 0..64 {
            sizing.ran(
                100,
                Timing {
                    applied: Duration::from_millis(10),
                    committed: Duration::from_millis(2),
                },
            );
        }
        // 100 µs a change, 2 ms a commit: ten changes fit in half a commit.
        let fit = sizing.max_batch(2, t0);
        assert!((9..=11).contains(&fit), "{fit}");
        assert_eq!(sizing.max_batch(1, t0 + Duration::from_millis(900)), fit);
        assert_eq!(sizing.max_batch(40, t0 + Duration::from_millis(900)), 40);
        assert_eq!(
            sizing.max_batch(1000, t0 + Duration::from_millis(900)),
            MAX_BATCH
        );
        // A second after the last time two lanes waited at once: full batches again.
        assert_eq!(
            sizing.max_batch(1, t0 + Duration::from_millis(1900)),
            MAX_BATCH
        );
    }

    /// Two daemons' writers on one PostgreSQL database, each inviting into the same
    /// organization from several tasks at once: their batches take turns (none is refused
    /// for another's), and every invitation is answered, committed once, and told by the
    /// feed once, numbered densely.
    #[test]
    fn two_daemons_writers_on_one_postgresql_take_turns() {
        use compartmentctl::wire::{OrgCreateParams, Role, UserInviteParams};

        use crate::rules::{invitations, orgs};
        use crate::store::Backend as _;
        use crate::token::Token;

        let Some(server) = crate::store::postgres::schema::tests::server(
            "two_daemons_writers_on_one_postgresql_take_turns",
        ) else {
            return;
        };
        let runtime = crate::store::postgres::schema::tests::store_runtime();
        let open = || {
            Arc::new(crate::store::postgres::schema::tests::open_store(
                &server, &runtime,
            ))
        };
        let (a, b) = (open(), open());
        let clock = Arc::new(FakeClock::new(T0));
        let (writer_a, thread_a) = Writer::spawn(a.clone(), clock.clone()).unwrap();
        let (writer_b, thread_b) = Writer::spawn(b.clone(), clock.clone()).unwrap();
        let policy = crate::rules::tests::policy();
        const PER_TASK: usize = 20;
        const TASKS: usize = 4;
        let invited = runtime.block_on(async {
            let params = OrgCreateParams {
                name: "acme".into(),
                admin: "admin@example.com".into(),
                admin_unix_user: None,
                expires_in: Default::default(),
            };
            let (root, policy_) = (crate::rules::tests::root(), policy.clone());
            let token = Token::from_text(&format!("{:a>43}", ""));
            writer_a
                .write(move |txn, now| {
                    orgs::create(txn, &root, &params, None, &token, &policy_, now)
                })
                .await
                .unwrap();
            let mut tasks = Vec::new();
            for task in 0..TASKS {
                let writer = if task % 2 == 0 {
                    writer_a.clone()
                } else {
                    writer_b.clone()
                };
                let policy = policy.clone();
                tasks.push(tokio::spawn(async move {
                    let mut answered = 0;
                    for i in 0..PER_TASK {
                        let params = UserInviteParams {
                            org: Some("acme".into()),
                            email: format!("t{task}-{i}@example.com"),
                            role: Role::Viewer,
                            expires_in: None,
                            resend: false,
                            unix_user: None,
                            access_until: Default::default(),
                        };
                        let (root, policy) = (crate::rules::tests::root(), policy.clone());
                        let token = Token::from_text(&format!("{:0>40}{task}{i:02}", ""));
                        writer
                            .write(move |txn, now| {
                                invitations::invite(txn, &root, &params, None, &token, &policy, now)
                            })
                            .await
                            .unwrap();
                        answered += 1;
                    }
                    answered
                }));
            }
            let mut answered = 0;
            for task in tasks {
                answered += task.await.unwrap();
            }
            answered
        });
        drop((writer_a, writer_b));
        thread_a.join().unwrap();
        thread_b.join().unwrap();
        assert_eq!(invited, TASKS * PER_TASK);
        let snapshot = b.read().unwrap();
        assert_eq!(
            snapshot.members("acme").unwrap().len(),
            1 + TASKS * PER_TASK
        );
        let feed = snapshot.events_after(0, usize::MAX).unwrap();
        let seqs: Vec<u64> = feed.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(
            seqs,
            (1..=1 + (TASKS * PER_TASK) as u64).collect::<Vec<_>>()
        );
        let conflicts = [&a, &b]
            .iter()
            .map(|store| match &***store {
                Store::Postgres(store) => store.conflicts(),
                Store::Redb(_) => 0,
            })
            .sum::<u64>();
        assert_eq!(
            conflicts, 0,
            "writes taking turns were refused for each other"
        );
    }

    /// A write transaction refused as a serialization failure (here: a row it updates was
    /// changed, after its snapshot, by a transaction that did not take the writers' turn)
    /// is run again, counted, and answered as the rules decide on the second run.
    #[test]
    fn a_write_refused_as_a_serialization_failure_is_run_again() {
        use compartmentctl::wire::AccountStatus;

        use crate::store::{AccountRecord, Changes as _};

        let Some(server) = crate::store::postgres::schema::tests::server(
            "a_write_refused_as_a_serialization_failure_is_run_again",
        ) else {
            return;
        };
        let runtime = crate::store::postgres::schema::tests::store_runtime();
        let store = Arc::new(crate::store::postgres::schema::tests::open_store(
            &server, &runtime,
        ));
        let account = |created_at| AccountRecord {
            status: AccountStatus::Pending,
            uid: None,
            created_at,
            activated_at: None,
        };
        apply(&store, T0, |txn, _| {
            txn.put_account("x@example.com", &account(T0))
                .map_err(crate::rules::RuleError::from)
        })
        .unwrap();
        let client = runtime.block_on(crate::store::postgres::schema::tests::connect(&server));
        // Another transaction holds the account's row, changed and not yet committed.
        runtime
            .block_on(client.batch_execute(
                "BEGIN; UPDATE accounts SET created_at = 1 WHERE email = 'x@example.com'",
            ))
            .unwrap();
        let (writer, thread) = Writer::spawn(store.clone(), Arc::new(FakeClock::new(T0))).unwrap();
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let refused = Arc::new(std::sync::Mutex::new(None));
        let write = runtime.spawn({
            let (writer, runs, refused) = (writer.clone(), runs.clone(), refused.clone());
            async move {
                writer
                    .write(move |txn, _| {
                        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let before = txn.account("x@example.com")?.map(|a| a.created_at);
                        // A read that ranges over rows sends the write first: it waits
                        // there, and is refused there.
                        let wrote = txn
                            .put_account("x@example.com", &account(T0 + 1))
                            .and_then(|()| txn.orgs_of("x@example.com"));
                        if let Err(err) = wrote {
                            // As a client would be told it, had the retries run out.
                            let err = crate::rules::RuleError::Store(err);
                            *refused.lock().unwrap() =
                                Some((err.kind(), err.user_message(), err.hint()));
                            return Err(err);
                        }
                        Ok::<_, crate::rules::RuleError>(before)
                    })
                    .await
            }
        });
        // The write waits for the row; the other commits under it.
        let waiting = || {
            runtime
                .block_on(client.query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                    &[],
                ))
                .unwrap()
                .get::<_, i64>(0)
                == 1
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !waiting() {
            assert!(
                std::time::Instant::now() < deadline,
                "the write never waited"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        runtime.block_on(client.batch_execute("COMMIT")).unwrap();
        // Run again on a new snapshot, it saw the other's change.
        let before = runtime.block_on(write).unwrap().unwrap();
        assert_eq!(before, Some(1));
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(
            refused.lock().unwrap().take().unwrap(),
            (
                compartmentctl::wire::ErrorKind::Busy,
                "the change kept conflicting with other daemons' changes to the same database"
                    .to_owned(),
                Some("nothing was changed; try again".to_owned())
            )
        );
        let Store::Postgres(postgres) = &*store else {
            unreachable!("opened on PostgreSQL")
        };
        assert_eq!(postgres.conflicts(), 1);
        drop(writer);
        thread.join().unwrap();
    }
}
