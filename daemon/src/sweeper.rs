//! The sweeper: sleeps until the earliest pending expiry (woken early when a new
//! invitation may expire sooner), then marks what is due as expired, chunk after chunk,
//! looking again at once after each until nothing is due: an invitation that fell due
//! while a chunk was swept is swept right after it. Only an error makes it wait its
//! longest sleep. The same chunks forget spent tokens that no longer matter
//! (`store::SPENT_TOKEN_MEMORY` past their expiry), so the tokens table stays the size of
//! what recent invitations left.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::{is_due, Clock};
use crate::rules::invitations::{expire_due_up_to, forget_spent_tokens};
use crate::rules::RuleError;
use crate::status::{self, LastCommit};
use crate::store::{Backend as _, Changes as _, Millis, Reader, Store, StoreError};
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
    /// right after (which counts one more change). On a store other daemons share, whose
    /// writes this one cannot count, always the smaller.
    fn next_chunk(&mut self, sent: u64, shared: bool) -> usize {
        let others_wrote = shared || self.after_last_chunk.is_some_and(|after| sent > after);
        self.after_last_chunk = Some(sent + 1);
        if others_wrote {
            SHARED_SWEEP_CHUNK
        } else {
            SWEEP_CHUNK
        }
    }
}

/// How a change that made something due reaches the sweeper: when it next looks, and a way
/// to make it look sooner. A new invitation that expires after that look changes nothing
/// the sweeper does, and costs it no read of the store.
#[derive(Debug, Default)]
pub struct Wake {
    notify: Notify,
    /// When the sweeper looks next, or [`LOOKING`] while it reads what falls due next (on a
    /// view that may predate a change told now).
    next_look: AtomicU64,
}

/// [`Wake::next_look`] while the sweeper reads.
const LOOKING: Millis = 0;

impl Wake {
    /// Told that something falls due at `at`: wakes the sweeper if it would look later than
    /// that, or is looking now.
    pub fn due_at(&self, at: Millis) {
        let next = self.next_look.load(Ordering::SeqCst);
        if next == LOOKING || at < next {
            self.notify.notify_one();
        }
    }

    /// Told that something may fall due at any time: wakes the sweeper.
    pub fn now(&self) {
        self.notify.notify_one();
    }

    fn looking(&self) {
        self.next_look.store(LOOKING, Ordering::SeqCst);
    }

    fn sleeping_until(&self, at: Millis) {
        self.next_look.store(at.max(LOOKING + 1), Ordering::SeqCst);
    }
}

pub struct Sweeper {
    pub store: Arc<Store>,
    pub writer: Writer,
    pub clock: Arc<dyn Clock>,
    /// Told of every new invitation's expiry.
    pub wake: Arc<Wake>,
    /// The longest it sleeps, whatever the next expiry: a safety net against a clock
    /// that jumps.
    pub max_sleep: Duration,
    /// Its last sweep transaction, for `admin.status`.
    pub last_sweep: Arc<LastCommit>,
}

impl Sweeper {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut pace = Pace::default();
        loop {
            self.wake.looking();
            let sleep_for = match self.next_due() {
                Ok(Some(at)) => {
                    let now = self.clock.now();
                    if is_due(at, now) {
                        match self.sweep(&mut pace, at).await {
                            // Look again at once: more may be due, or have fallen due
                            // while this chunk was swept.
                            Swept::LookAgain => continue,
                            Swept::BackOff => self.max_sleep,
                            Swept::Elsewhere => self.max_sleep.min(ANOTHER_SWEEPS),
                        }
                    } else {
                        self.max_sleep.min(Duration::from_millis(at - now))
                    }
                }
                Ok(None) => self.max_sleep,
                Err(err) => {
                    tracing::error!(error = %err, "sweeper cannot read the expiry index");
                    self.max_sleep
                }
            };
            let sleep_ms = Millis::try_from(sleep_for.as_millis()).unwrap_or(Millis::MAX);
            self.wake
                .sleeping_until(self.clock.now().saturating_add(sleep_ms));
            tokio::select! {
                _ = tokio::time::sleep(sleep_for) => {}
                _ = self.wake.notify.notified() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// When the next thing falls due: an invitation's expiry, or a spent token that may be
    /// forgotten.
    fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        let snapshot = self.store.read()?;
        let invitation = snapshot.next_due()?;
        let spent = snapshot.next_spent_token_due()?;
        Ok(invitation.into_iter().chain(spent).min())
    }

    /// Sweeps one chunk of what is due, the earliest due at `due`. Backs off only when
    /// something is wrong: the sweep failed, or expired nothing while that same invitation
    /// is still due (the sweeper must not spin on it).
    async fn sweep(&self, pace: &mut Pace, due: Millis) -> Swept {
        let started = std::time::Instant::now();
        let chunk = pace.next_chunk(self.writer.changes_sent(), self.store.is_shared());
        let sweep = self.writer.write(move |txn, now| {
            if !txn.claim_sweep()? {
                return Ok(None);
            }
            let expired = expire_due_up_to(txn, now, chunk)?;
            let forgotten = forget_spent_tokens(txn, now, chunk)?;
            Ok::<_, RuleError>(Some((expired, forgotten)))
        });
        match sweep.await {
            Ok(None) => {
                tracing::debug!("another daemon is sweeping");
                Swept::Elsewhere
            }
            Ok(Some((expired, forgotten))) => {
                // From queueing the sweep to its commit: what it cost the writer and those
                // queued behind it.
                let micros = started.elapsed().as_micros();
                self.last_sweep.record(status::Commit {
                    at: self.clock.now(),
                    count: expired as u64,
                    micros: u64::try_from(micros).unwrap_or(u64::MAX),
                });
                if expired > 0 || forgotten == 0 {
                    tracing::info!(expired, micros, "expired invitations");
                }
                if forgotten > 0 {
                    tracing::debug!(forgotten, micros, "forgot spent tokens");
                }
                if expired + forgotten > 0 {
                    return Swept::LookAgain;
                }
                let now = self.clock.now();
                match self.next_due() {
                    Ok(Some(at)) if at == due && is_due(at, now) => {
                        tracing::error!(
                            "an index names an invitation or a spent token due that the sweep did not take; sweeping again later"
                        );
                        Swept::BackOff
                    }
                    Ok(_) => Swept::LookAgain,
                    Err(err) => {
                        tracing::error!(error = %err, "sweeper cannot read the expiry index");
                        Swept::BackOff
                    }
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "sweeping expired invitations failed");
                Swept::BackOff
            }
        }
    }
}

/// What the sweeper does after a chunk.
enum Swept {
    /// Reads the index again at once.
    LookAgain,
    /// Sleeps its longest (or until woken): something is wrong.
    BackOff,
    /// Another daemon sharing the store is sweeping: looks again in a while
    /// ([`ANOTHER_SWEEPS`]), by when that one has swept what is due or stopped.
    Elsewhere,
}

/// How long the sweeper waits while another daemon sweeps.
const ANOTHER_SWEEPS: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::sync::atomic::{AtomicU64, Ordering};

    use compartmentctl::wire::{MemberStatus, OrgCreateParams, Role, UserInviteParams};

    use super::*;
    use crate::rules::tests::{policy, root};
    use crate::rules::{invitations, orgs};
    use crate::token::Token;

    const T0: Millis = 1_777_636_800_000;

    /// A clock that moves on by `step` each time it is read: time passes while the
    /// sweeper works, as it does on a real host.
    struct Ticking {
        now: AtomicU64,
        step: u64,
    }

    impl Clock for Ticking {
        fn now(&self) -> Millis {
            self.now.fetch_add(self.step, Ordering::SeqCst)
        }
    }

    fn status(store: &Store, email: &str) -> MemberStatus {
        let snapshot = store.read().unwrap();
        snapshot.membership("acme", email).unwrap().unwrap().status
    }

    /// The invitations' lifetime of the tests' policy.
    fn ttl() -> Millis {
        u64::try_from(policy().invitation_ttl.as_millis()).unwrap()
    }

    /// Writes acme, its admin invited at `T0`, into `store`; returns the admin's token.
    fn acme(store: &Store) -> Token {
        let create = OrgCreateParams {
            name: "acme".into(),
            admin: "admin@example.com".into(),
            admin_unix_user: None,
            expires_in: Default::default(),
        };
        let token = Token::from_text(&format!("{:0>43}", 1));
        crate::writer::apply(store, T0, |txn, now| {
            orgs::create(txn, &root(), &create, None, &token, &policy(), now)
        })
        .unwrap();
        token
    }

    /// A sweeper on `store` with `clock`, its writer and a runtime of its own, until
    /// [`Running::stop`].
    struct Running {
        runtime: tokio::runtime::Runtime,
        writer: Writer,
        thread: std::thread::JoinHandle<()>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    impl Running {
        fn start(store: &Arc<Store>, clock: Arc<dyn Clock>) -> Running {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let (writer, thread) = Writer::spawn(store.clone(), clock.clone()).unwrap();
            let shutdown = CancellationToken::new();
            let sweeper = Sweeper {
                store: store.clone(),
                writer: writer.clone(),
                clock,
                wake: Arc::new(Wake::default()),
                max_sleep: Duration::from_secs(3600),
                last_sweep: Arc::default(),
            };
            let task = runtime.spawn(sweeper.run(shutdown.clone()));
            Running {
                runtime,
                writer,
                thread,
                shutdown,
                task,
            }
        }

        /// Waits up to 5 s for `done`; fails saying `what` did not happen.
        fn wait_for(&self, what: &str, done: impl Fn() -> bool) {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !done() {
                assert!(std::time::Instant::now() < deadline, "{what} within 5 s");
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        fn stop(self) {
            self.shutdown.cancel();
            self.runtime.block_on(self.task).unwrap();
            drop(self.writer);
            self.thread.join().unwrap();
        }
    }

    /// Whether the sweeper would wake now: a notification is waiting for it.
    fn woken(wake: &Wake) -> bool {
        use futures_util::FutureExt as _;
        wake.notify.notified().now_or_never().is_some()
    }

    /// A new invitation wakes the sweeper only when it expires before the sweeper's next
    /// look, or while the sweeper reads (its view may not hold the invitation); a later one
    /// leaves it asleep, and the store unread.
    #[test]
    fn a_new_invitation_wakes_the_sweeper_only_when_it_falls_due_before_its_next_look() {
        let wake = Wake::default();
        assert!(!woken(&wake), "nothing was told");
        wake.due_at(T0);
        assert!(woken(&wake), "told while the sweeper has not looked yet");

        wake.sleeping_until(T0 + 1000);
        wake.due_at(T0 + 1000);
        wake.due_at(T0 + 5000);
        assert!(!woken(&wake), "due no sooner than the next look");
        wake.due_at(T0 + 999);
        assert!(woken(&wake), "due before the next look");

        wake.looking();
        wake.due_at(T0 + 5000);
        assert!(woken(&wake), "told while the sweeper reads");

        wake.sleeping_until(T0 + 1000);
        wake.now();
        assert!(woken(&wake), "told that anything may be due");
    }

    /// An invitation that falls due while a sweep runs (a second after the
    /// one it expired) is swept at once, not a whole `max_sleep` later; and once nothing is
    /// due the sweeper sleeps rather than spins.
    #[test]
    fn an_invitation_due_during_a_sweep_is_swept_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        acme(&store);
        let invite = UserInviteParams {
            org: Some("acme".into()),
            email: "late@example.com".into(),
            role: Role::Viewer,
            expires_in: None,
            resend: false,
            unix_user: None,
            access_until: Default::default(),
        };
        let token = Token::from_text(&format!("{:0>43}", 2));
        crate::writer::apply(&store, T0 + 1500, |txn, now| {
            invitations::invite(txn, &root(), &invite, None, &token, &policy(), now)
        })
        .unwrap();
        // The admin's invitation is due now; the other 1.5 s later, while the first sweep
        // runs (each reading of the clock moves it a second on).
        let clock = Arc::new(Ticking {
            now: AtomicU64::new(T0 + ttl()),
            step: 1000,
        });
        let running = Running::start(&store, clock);
        running.wait_for(
            "the invitation that fell due during a sweep was not swept",
            || status(&store, "late@example.com") == MemberStatus::Expired,
        );
        assert_eq!(status(&store, "admin@example.com"), MemberStatus::Expired);
        // Nothing is due any more: the sweeper sleeps instead of sweeping again.
        let sent = running.writer.changes_sent();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(running.writer.changes_sent(), sent, "the sweeper spun");
        running.stop();
    }

    /// A month past its expiry, an invitation's token is forgotten by the sweeper that
    /// expired it, in the same run of sweeps.
    #[test]
    fn the_sweeper_forgets_spent_tokens_once_they_no_longer_matter() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let key = acme(&store).key();
        assert!(store.read().unwrap().token(&key).unwrap().is_some());
        let clock = Arc::new(crate::clock::FakeClock::new(
            T0 + ttl() + crate::store::SPENT_TOKEN_MEMORY,
        ));
        let running = Running::start(&store, clock);
        running.wait_for("the spent token was not forgotten", || {
            store.read().unwrap().token(&key).unwrap().is_none()
        });
        assert_eq!(status(&store, "admin@example.com"), MemberStatus::Expired);
        assert_eq!(store.read().unwrap().next_spent_token_due().unwrap(), None);
        running.stop();
    }

    /// `count` invitations to acme, all due at `T0`, written straight into PostgreSQL
    /// (a fixture, not a change: the sweep is what is under test).
    fn due_memberships(server: &compartment_pgtest::Postgres, count: i64) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            crate::store::postgres::schema::tests::connect(server)
                .await
                .batch_execute(&format!(
                    "BEGIN;
                     INSERT INTO orgs VALUES ('acme', 0, 0) ON CONFLICT DO NOTHING;
                     INSERT INTO accounts (email, status, created_at)
                         SELECT 'u' || i || '@example.com', 'pending', 0
                         FROM generate_series(1, {count}) i;
                     INSERT INTO tokens (key, org, email, expires_at, state, issued_by_superuser)
                         SELECT decode(lpad(to_hex(i), 64, '0'), 'hex'), 'acme',
                                'u' || i || '@example.com', {T0}, 'pending', false
                         FROM generate_series(1, {count}) i;
                     INSERT INTO memberships (org, email, role, status, invited_by, invited_at,
                                              expires_at, token_key, due_at)
                         SELECT 'acme', 'u' || i || '@example.com', 'viewer', 'invited', 'uid 0',
                                0, {T0}, decode(lpad(to_hex(i), 64, '0'), 'hex'), {T0}
                         FROM generate_series(1, {count}) i;
                     COMMIT;"
                ))
                .await
                .unwrap();
        });
    }

    /// Two daemons' sweepers on one database expire each due invitation once: the feed and
    /// the audit log say so once per invitation, and nothing is left due.
    #[test]
    fn two_daemons_sweep_each_invitation_once() {
        let Some(server) =
            crate::store::postgres::schema::tests::server("two_daemons_sweep_each_invitation_once")
        else {
            return;
        };
        let stores = crate::store::postgres::schema::tests::store_runtime();
        let open = || {
            Arc::new(crate::store::postgres::schema::tests::open_store(
                &server, &stores,
            ))
        };
        let (a, b) = (open(), open());
        due_memberships(&server, 3000);
        let clock = || Arc::new(crate::clock::FakeClock::new(T0 + 1)) as Arc<dyn Clock>;
        let (on_a, on_b) = (Running::start(&a, clock()), Running::start(&b, clock()));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while a.read().unwrap().next_due().unwrap().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "not swept within a minute"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        on_a.stop();
        on_b.stop();
        let snapshot = b.read().unwrap();
        let events = snapshot.events_after(0, 10_000).unwrap();
        assert_eq!(events.len(), 3000);
        assert!(events
            .iter()
            .all(|(_, e)| e.kind.as_str() == "member.expired"));
        let mut expired: Vec<_> = events.into_iter().map(|(_, e)| e.email).collect();
        expired.sort();
        expired.dedup();
        assert_eq!(expired.len(), 3000, "an invitation expired twice");
        let audited = snapshot
            .audit()
            .unwrap()
            .into_iter()
            .filter(|record| record.event == "organization.invitation.expire")
            .count();
        assert_eq!(audited, 3000);
    }

    /// While one daemon sweeps many due invitations, another daemon's changes go on: each
    /// is committed (none runs out of retries behind the sweep). Prints how long they took.
    /// `SWEEP_UNDER_LOAD` sets how many are due (the figure is 100,000).
    #[test]
    fn a_large_sweep_does_not_stall_another_daemons_writes() {
        let Some(server) = crate::store::postgres::schema::tests::server(
            "a_large_sweep_does_not_stall_another_daemons_writes",
        ) else {
            return;
        };
        let due: i64 = std::env::var("SWEEP_UNDER_LOAD")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(5000);
        let stores = crate::store::postgres::schema::tests::store_runtime();
        let open = || {
            Arc::new(crate::store::postgres::schema::tests::open_store(
                &server, &stores,
            ))
        };
        let (a, b) = (open(), open());
        due_memberships(&server, due);
        let started = std::time::Instant::now();
        let sweeping = Running::start(&a, Arc::new(crate::clock::FakeClock::new(T0 + 1)));
        let (writer, thread) =
            Writer::spawn(b.clone(), Arc::new(crate::clock::FakeClock::new(T0 + 1))).unwrap();
        let mut latencies = Vec::new();
        let mut n = 0;
        let due_now = || {
            a.read()
                .unwrap()
                .next_due()
                .unwrap()
                .is_some_and(|at| at <= T0)
        };
        while due_now() {
            n += 1;
            let invite = UserInviteParams {
                org: Some("acme".into()),
                email: format!("new{n}@example.com"),
                role: Role::Viewer,
                expires_in: None,
                resend: false,
                unix_user: None,
                access_until: Default::default(),
            };
            let token = Token::from_text(&format!("{:0>43}", n));
            let asked = std::time::Instant::now();
            sweeping
                .runtime
                .block_on(writer.write(move |txn, now| {
                    invitations::invite(txn, &root(), &invite, None, &token, &policy(), now)
                }))
                .unwrap_or_else(|err| panic!("change {n} during the sweep: {err}"));
            latencies.push(asked.elapsed());
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "not swept in 10 minutes"
            );
        }
        let swept_in = started.elapsed();
        sweeping.stop();
        drop(writer);
        thread.join().unwrap();
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        eprintln!(
            "{due} due swept in {swept_in:?} on one daemon; the other's {} changes meanwhile: p50 {:?}, p99 {:?}, max {:?}; conflicts retried: {} and {}",
            latencies.len(),
            at(0.5),
            at(0.99),
            at(1.0),
            conflicts(&a),
            conflicts(&b),
        );
        assert!(!latencies.is_empty());
    }

    fn conflicts(store: &Store) -> u64 {
        match store {
            Store::Postgres(store) => store.conflicts(),
            Store::Redb(_) => 0,
        }
    }

    #[test]
    fn a_sweep_takes_small_chunks_only_while_others_write() {
        let mut pace = Pace::default();
        // The first chunk, and every chunk while the sweeper's own are the only changes.
        assert_eq!(pace.next_chunk(10, false), SWEEP_CHUNK);
        assert_eq!(pace.next_chunk(11, false), SWEEP_CHUNK);
        assert_eq!(pace.next_chunk(12, false), SWEEP_CHUNK);
        // Someone else wrote between two chunks: small ones, until nobody else does.
        assert_eq!(pace.next_chunk(14, false), SHARED_SWEEP_CHUNK);
        assert_eq!(pace.next_chunk(20, false), SHARED_SWEEP_CHUNK);
        assert_eq!(pace.next_chunk(21, false), SWEEP_CHUNK);
    }
}
