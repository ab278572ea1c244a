//! The accept loop. Identity comes first: the peer credentials are read as a connection is
//! accepted, and a connection without them is dropped; one over the caps is answered
//! `busy`. Shutdown stops accepting, lets each connection finish the request it is
//! serving, then stops the sweeper and the writer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::connection;
use crate::dispatch::Context;
use crate::limits::{Limits, Slots};
use crate::rules::Policy;
use crate::store::Store;
use crate::sweeper::Sweeper;
use crate::users::Directory;
use crate::writer::Writer;

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
}

/// Serves `listener` until `shutdown` completes, then stops gracefully: no new
/// connections, in-flight requests answered, sweeper stopped, writer drained.
pub async fn run(
    listener: UnixListener,
    daemon: Daemon,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (writer, writer_thread) = Writer::spawn(daemon.store.clone(), daemon.clock.clone())?;
    let sweeper_wake = Arc::new(Notify::new());
    let ctx = Arc::new(Context {
        store: daemon.store.clone(),
        writer: writer.clone(),
        clock: daemon.clock.clone(),
        policy: Arc::new(daemon.policy),
        daemon_uid: daemon.daemon_uid,
        sweeper_wake: sweeper_wake.clone(),
        users: daemon.users.clone(),
        stale_audited: Default::default(),
    });
    let slots = Slots::new(daemon.limits);
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(
        Sweeper {
            store: daemon.store,
            writer,
            clock: daemon.clock,
            wake: sweeper_wake,
            max_sleep: daemon.sweep_interval,
        }
        .run(stop.clone()),
    );

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => admit(stream, &ctx, &slots, &tasks, &stop),
                Err(err) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %err, "accept failed");
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
            tracing::warn!(error = %err, "dropping a connection without peer credentials");
            return;
        }
    };
    let caller = ctx.caller(cred.uid(), cred.gid(), cred.pid());
    match slots.take(caller.uid) {
        Ok(slot) => {
            let limits = slots.limits();
            tasks.spawn(connection::serve(
                stream,
                ctx.clone(),
                caller,
                slot,
                limits,
                stop.clone(),
            ));
        }
        Err(busy) => {
            tracing::warn!(
                uid = caller.uid,
                pid = caller.pid,
                "refusing a connection: {busy}"
            );
            tasks.spawn(connection::refuse(stream, busy));
        }
    }
}
