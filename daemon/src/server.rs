//! The accept loop and one task per connection. Identity comes first: the peer
//! credentials are read before any request, and a connection without them is dropped.
//! Then JSON lines in, answers out, in order. Shutdown stops accepting, lets each
//! connection finish the request it is serving, then stops the sweeper and the writer.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use compartmentctl::wire::{decode_request, ErrorKind, Response, RpcError, MAX_LINE};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, FramedRead};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::clock::Clock;
use crate::dispatch::{dispatch, Context};
use crate::rules::{Caller, Policy};
use crate::store::Store;
use crate::sweeper::Sweeper;
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
        }
        .run(stop.clone()),
    );

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tasks.spawn(serve_connection(stream, ctx.clone(), stop.clone()));
                }
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

async fn serve_connection(stream: UnixStream, ctx: Arc<Context>, stop: CancellationToken) {
    let cred = match stream.peer_cred() {
        Ok(cred) => cred,
        Err(err) => {
            tracing::warn!(error = %err, "dropping a connection without peer credentials");
            return;
        }
    };
    let caller = ctx.caller(cred.uid(), cred.gid(), cred.pid());
    let span = tracing::info_span!("conn", uid = caller.uid, pid = caller.pid);
    serve_lines(stream, &ctx, caller, stop)
        .instrument(span)
        .await;
}

async fn serve_lines(stream: UnixStream, ctx: &Context, caller: Caller, stop: CancellationToken) {
    let (read_half, mut write_half) = stream.into_split();
    let codec = AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), b"\n".to_vec(), MAX_LINE);
    let mut lines = FramedRead::new(read_half, codec);
    loop {
        let frame = tokio::select! {
            frame = lines.next() => frame,
            () = stop.cancelled() => break,
        };
        let response = match frame {
            None => break,
            Some(Ok(line)) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                answer(ctx, caller, &line).await
            }
            Some(Err(AnyDelimiterCodecError::MaxChunkLengthExceeded)) => {
                tracing::warn!(limit = MAX_LINE, "request line too long; closing");
                let response = Response::err(Value::Null, RpcError::frame_too_long());
                let _ = send(&mut write_half, &response).await;
                break;
            }
            Some(Err(AnyDelimiterCodecError::Io(err))) => {
                tracing::debug!(error = %err, "connection read failed");
                break;
            }
        };
        if send(&mut write_half, &response).await.is_err() {
            break;
        }
    }
}

/// Decodes, authorizes and serves one line. Logs the method, organization and outcome,
/// never params (they may hold a token).
async fn answer(ctx: &Context, caller: Caller, line: &[u8]) -> Response {
    let started = Instant::now();
    let (id, request) = decode_request(line);
    let request = match request {
        Ok(request) => request,
        Err(error) => {
            tracing::info!(outcome = %error.kind(), "undecodable request");
            return Response::err(id, error);
        }
    };
    let method = request.method();
    let requested_org = request.org().map(str::to_owned);
    let result = dispatch(ctx, caller, request).await;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match result {
        Ok(result) => {
            // The organization acted in, as resolved by the rules when the caller named none.
            let org = result
                .get("org")
                .and_then(Value::as_str)
                .or(requested_org.as_deref());
            tracing::info!(
                method,
                org = org.unwrap_or("-"),
                outcome = "ok",
                micros,
                "request"
            );
            Response::ok(id, result)
        }
        Err(err) => {
            let kind = err.kind();
            if kind == ErrorKind::Internal {
                tracing::error!(method, error = ?err, "request failed");
            }
            let org = requested_org.as_deref().unwrap_or("-");
            tracing::info!(method, org, outcome = %kind, micros, "request");
            Response::err(id, err.into())
        }
    }
}

async fn send(
    write_half: &mut tokio::net::unix::OwnedWriteHalf,
    response: &Response,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write_half.write_all(&line).await
}
