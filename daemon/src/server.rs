//! The accept loop. Identity comes first: the peer credentials are read as a connection is
//! accepted, and a connection without them is dropped; the uid's user is then asked of NSS,
//! uncached, before the connection's first request; one over the caps is answered
//! `busy`, and so is one that arrives when the process is out of file descriptors (a spare
//! descriptor is kept for that moment). Warnings about refused connections and failed
//! accepts are rate-limited. Shutdown stops accepting, lets each connection finish the
//! request it is serving, then stops the sweeper and the writer.

use std::fs::File;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use compartmentctl::wire::{ErrorKind, Response, RpcError};
use serde_json::Value;

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::checkpoint::Keeper;
use crate::clock::Clock;
use crate::connection;
use crate::context::Context;
use crate::events::Replays;
use crate::health::{Beat, Health, Watched};
use crate::limits::{Limits, Slots};
use crate::logging::{RateLimit, RATE_BURST, RATE_WINDOW};
use crate::metrics::{Metrics, Refused};
use crate::refusals::Refusals;
use crate::rules::Policy;
use crate::status::LastCommit;
use crate::store::{ReadSide, Store};
use crate::sweeper::Sweeper;
use crate::users::Directory;
use crate::writer::Writer;

/// Refused connections (over a cap, out of descriptors), logged a few per window.
static REFUSED: RateLimit = RateLimit::new(RATE_WINDOW, RATE_BURST);
/// Accepts that failed for another reason.
static ACCEPT_FAILED: RateLimit = RateLimit::new(RATE_WINDOW, RATE_BURST);

/// Everything the daemon serves from.
pub struct Daemon {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub policy: Policy,
    /// The uid the daemon runs as (a superuser).
    pub daemon_uid: u32,
    /// The longest the sweeper sleeps.
    pub sweep_interval: Duration,
    pub limits: Limits,
    /// The host's users: NSS in the daemon, a table in tests.
    pub users: Arc<dyn Directory>,
    /// The gid of `--service-group`, whose members may ask about anyone.
    pub service_group: Option<u32>,
    /// The audit log's signing key and checkpoints.
    pub audit: Arc<Keeper>,
    /// How long the audit log and the feed keep what they hold.
    pub audit_retention: crate::retention::Retention,
    /// Where the activation page is served (`--http-listen`), bound already.
    pub http: Option<tokio::net::TcpListener>,
    /// Where and how often the metrics are written (`--metrics-textfile`).
    pub metrics_textfile: Option<(std::path::PathBuf, Duration)>,
    /// systemd's watchdog interval, when the unit sets one (`WatchdogSec=`); `STATUS=`
    /// and the pings are sent only under a service manager.
    pub watchdog: Option<Duration>,
}

/// Serves `listener` until `shutdown` completes, then stops gracefully: no new
/// connections, in-flight requests answered, sweeper stopped, writer drained.
pub async fn run(
    listener: UnixListener,
    daemon: Daemon,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (writer, writer_thread) = Writer::spawn(daemon.store.clone(), daemon.clock.clone())?;
    let sweeper_wake = Arc::new(crate::sweeper::Wake::default());
    let slots = Slots::new(daemon.limits);
    let last_sweep = Arc::new(LastCommit::default());
    let metrics = Arc::new(Metrics::new(
        writer.metrics(),
        daemon.store.path().is_some(),
    ));
    let ctx = Arc::new(Context {
        store: ReadSide::new(daemon.store.clone()),
        writer: writer.clone(),
        clock: daemon.clock.clone(),
        policy: Arc::new(daemon.policy),
        daemon_uid: daemon.daemon_uid,
        sweeper_wake: sweeper_wake.clone(),
        users: daemon.users.clone(),
        service_group: daemon.service_group,
        caller_names: Default::default(),
        stale_audited: Default::default(),
        replays: Replays::new(
            daemon.limits.feed_replays_per_uid,
            daemon.limits.feed_replays,
        ),
        admission: Admission::new(&daemon.limits, state_dir_of(&daemon.store)),
        started: std::time::Instant::now(),
        slots: slots.clone(),
        last_sweep: last_sweep.clone(),
        audit: daemon.audit.clone(),
        refusals: Arc::new(Refusals::new(&daemon.limits)),
        metrics,
    });
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(
        Sweeper {
            store: daemon.store,
            writer,
            clock: daemon.clock,
            wake: sweeper_wake,
            max_sleep: daemon.sweep_interval,
            last_sweep,
        }
        .run(stop.clone()),
    );

    tasks.spawn(crate::checkpoint::keep(
        daemon.audit.clone(),
        ctx.writer.clone(),
        stop.clone(),
    ));
    tasks.spawn(crate::retention::keep(
        daemon.audit.clone(),
        daemon.audit_retention,
        ctx.writer.clone(),
        stop.clone(),
    ));
    if let Some(listener) = daemon.http {
        tasks.spawn(crate::page::serve(
            listener,
            ctx.store.clone(),
            ctx.clock.clone(),
            stop.clone(),
        ));
    }
    tasks.spawn(crate::refusals::keep(
        ctx.refusals.clone(),
        ctx.writer.clone(),
        ctx.clock.clone(),
        stop.clone(),
    ));

    if let Some((path, interval)) = daemon.metrics_textfile {
        let ctx = ctx.clone();
        tasks.spawn(crate::metrics::keep_textfile(
            path,
            interval,
            move || ctx.metrics_text(),
            stop.clone(),
        ));
    }
    let health = Health {
        watchdog: daemon.watchdog,
    };
    let beat = Arc::new(Beat::default());
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let watched = Watched {
            beat: beat.clone(),
            writer: ctx.writer.clone(),
            slots: slots.clone(),
        };
        tasks.spawn(crate::health::watch(health, watched, stop.clone()));
    }
    // The accept loop beats at each turn, and at least this often while nobody connects.
    let mut beats = tokio::time::interval(health.beat_every());
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut spare = open_spare();
    tokio::pin!(shutdown);
    loop {
        beat.beat();
        // The spare comes before any new connection: a descriptor freed while it was out
        // (a connection's lookup in the user database opens files of its own, and may take
        // the spare's just as it is let go) goes back to it, not to the next accept, or the
        // daemon would stay at its limit with no way to answer `busy` again.
        if spare.is_none() {
            spare = File::open("/dev/null").ok();
        }
        tokio::select! {
            () = &mut shutdown => break,
            _ = beats.tick() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => admit(stream, &ctx, &slots, &tasks, &stop),
                Err(err) if is_out_of_descriptors(&err) => {
                    ctx.metrics.refused(Refused::OutOfDescriptors);
                    refuse_with_spare(&listener, &mut spare).await;
                }
                Err(err) => {
                    if let Some(more) = ACCEPT_FAILED.check() {
                        tracing::warn!(error = %err, "accept failed{more}");
                    }
                    // Wait rather than spin on an error that will come back at once.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    tracing::info!("shutting down");
    drop(listener);
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    // The last writer handle goes with the context; the writer drains its queue and ends.
    drop(ctx);
    tokio::task::spawn_blocking(move || {
        if writer_thread.join().is_err() {
            tracing::error!("the writer thread panicked");
        }
    })
    .await
    .map_err(std::io::Error::other)?;
    tracing::info!("stopped");
    Ok(())
}

/// The directory holding the database, whose filesystem the free-space floor watches; none
/// for a store that is not a file here.
fn state_dir_of(store: &Store) -> Option<std::path::PathBuf> {
    match store.path()?.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => Some(dir.to_owned()),
        _ => Some(".".into()),
    }
}

/// Gives an accepted connection its task, or tells it why it cannot have one.
fn admit(
    stream: UnixStream,
    ctx: &Arc<Context>,
    slots: &Arc<Slots>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) {
    let cred = match stream.peer_cred() {
        Ok(cred) => cred,
        Err(err) => {
            ctx.metrics.refused(Refused::NoCredentials);
            if let Some(more) = REFUSED.check() {
                tracing::warn!(error = %err, "dropping a connection without peer credentials{more}");
            }
            return;
        }
    };
    let caller = ctx.caller(cred.uid(), cred.gid(), cred.pid());
    match slots.take(caller.uid, caller.superuser) {
        Ok(slot) => {
            ctx.metrics.accepted();
            let (ctx, limits, stop) = (ctx.clone(), slots.limits(), stop.clone());
            tasks.spawn(async move {
                // Who the uid is now, asked before any request is read and never from a
                // cache: a uid handed to a new user does not act as the old one.
                let caller = ctx.identify_at_connect(caller).await;
                connection::serve(stream, ctx, caller, slot, limits, stop).await;
            });
        }
        Err((cause, busy)) => {
            ctx.metrics.refused(cause);
            if let Some(more) = REFUSED.check() {
                tracing::warn!(
                    uid = caller.uid,
                    pid = caller.pid,
                    "refusing a connection: {busy}{more}"
                );
            }
            tasks.spawn(connection::refuse(stream, busy));
        }
    }
}

fn is_out_of_descriptors(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(code) if code == nix::libc::EMFILE || code == nix::libc::ENFILE
    )
}

/// A descriptor held in reserve for the moment the process runs out: closing it lets the
/// waiting connection be accepted and told `busy`, instead of left hanging in the queue.
fn open_spare() -> Option<File> {
    match File::open("/dev/null") {
        Ok(file) => Some(file),
        Err(err) => {
            tracing::warn!(error = %err, "cannot hold a spare descriptor: when descriptors run out, connections will wait instead of being answered busy");
            None
        }
    }
}

/// Out of descriptors: frees the spare, accepts the waiting connection with it, answers it
/// `busy` and closes it, then takes the spare back. Without a spare (another task took the
/// descriptor first), waits a moment instead.
async fn refuse_with_spare(listener: &UnixListener, spare: &mut Option<File>) {
    let busy = RpcError::new(
        ErrorKind::Busy,
        "compartmentd has run out of file descriptors",
    )
    .with_hint("retry in a moment");
    if let Some(more) = REFUSED.check() {
        tracing::warn!("refusing a connection: {}{more}", busy.message);
    }
    if spare.take().is_some() {
        if let Ok(Ok((stream, _))) =
            tokio::time::timeout(Duration::from_millis(50), listener.accept()).await
        {
            let mut line =
                serde_json::to_vec(&Response::err(Value::Null, busy)).unwrap_or_default();
            line.push(b'\n');
            // A fresh connection's buffer takes a short line at once; if not, it goes
            // unanswered rather than holding the accept loop.
            let _ = stream.try_write(&line);
        }
    }
    *spare = File::open("/dev/null").ok();
    if spare.is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
