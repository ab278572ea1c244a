//! One connection: JSON lines in, answers out, in order. A line over the limit is
//! answered `frame_too_long` and the connection closed; so is a line left unfinished past
//! the line timeout (slow-loris), and a connection idle past the idle timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use compartmentctl::wire::{decode, Call, ErrorKind, Incoming, Response, RpcError, MAX_LINE};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, FramedRead};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::dispatch::{dispatch, Context};
use crate::limits::{Limits, Slot};
use crate::rules::Caller;

/// How long a refused client gets to read why.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves a connection that holds `slot` until the client leaves, a limit ends it, or the
/// daemon stops.
pub async fn serve(
    stream: UnixStream,
    ctx: Arc<Context>,
    caller: Caller,
    slot: Slot,
    limits: Limits,
    stop: CancellationToken,
) {
    let span = tracing::info_span!("conn", uid = caller.uid, pid = caller.pid);
    serve_lines(stream, &ctx, caller, limits, stop)
        .instrument(span)
        .await;
    drop(slot);
}

/// Answers a connection over a cap with the reason, then closes it.
pub async fn refuse(mut stream: UnixStream, busy: RpcError) {
    let mut line = serde_json::to_vec(&Response::err(Value::Null, busy)).unwrap_or_default();
    line.push(b'\n');
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, stream.write_all(&line)).await;
}

/// Why a connection ended, for the log.
#[derive(Debug)]
enum Ending {
    ClientLeft,
    Stopping,
    LineTooLong,
    LineTimeout,
    Idle,
    ReadFailed,
    WriteFailed,
}

async fn serve_lines(
    stream: UnixStream,
    ctx: &Context,
    caller: Caller,
    limits: Limits,
    stop: CancellationToken,
) {
    let (read_half, mut write_half) = stream.into_split();
    let codec = AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), b"\n".to_vec(), MAX_LINE);
    let mut lines = FramedRead::new(read_half, codec);
    // The codec holds a partial line in its buffer; a tick looks at it, since bytes that do
    // not finish a line wake nobody.
    let tick_every =
        (limits.line_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_request = Instant::now();
    let mut partial_since: Option<Instant> = None;
    let ending = loop {
        let frame = tokio::select! {
            frame = lines.next() => frame,
            () = stop.cancelled() => break Ending::Stopping,
            _ = tick.tick() => {
                let now = Instant::now();
                if lines.read_buffer().is_empty() {
                    partial_since = None;
                    if now.duration_since(last_request) >= limits.idle_timeout {
                        break Ending::Idle;
                    }
                } else if now.duration_since(*partial_since.get_or_insert(now)) >= limits.line_timeout {
                    break Ending::LineTimeout;
                }
                continue;
            }
        };
        let response = match frame {
            None => break Ending::ClientLeft,
            Some(Ok(line)) => {
                last_request = Instant::now();
                partial_since = None;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match answer(ctx, &caller, &line).await {
                    Some(reply) => reply,
                    // Only notifications: run, and nothing to send.
                    None => continue,
                }
            }
            Some(Err(AnyDelimiterCodecError::MaxChunkLengthExceeded)) => {
                let response = Response::err(Value::Null, RpcError::frame_too_long());
                let _ = send(&mut write_half, &response).await;
                break Ending::LineTooLong;
            }
            Some(Err(AnyDelimiterCodecError::Io(err))) => {
                tracing::debug!(error = %err, "connection read failed");
                break Ending::ReadFailed;
            }
        };
        if send(&mut write_half, &response).await.is_err() {
            break Ending::WriteFailed;
        }
    };
    match ending {
        Ending::ClientLeft | Ending::Stopping => tracing::debug!(?ending, "connection closed"),
        _ => tracing::info!(?ending, "connection closed"),
    }
}

/// What a line is answered with: one response, or the array of a batch's responses.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum Reply {
    One(Response),
    Batch(Vec<Response>),
}

/// Decodes and serves one line: its reply, or `None` when the line held only
/// notifications (JSON-RPC 2.0 answers those with nothing at all). A batch's requests are
/// served one after the other, in the order sent, so a batch is no faster a way to load
/// the daemon than the same requests on separate lines.
async fn answer(ctx: &Context, caller: &Caller, line: &[u8]) -> Option<Reply> {
    match decode(line) {
        Incoming::Single(call) => answer_call(ctx, caller, call).await.map(Reply::One),
        Incoming::Batch(calls) => {
            let mut replies = Vec::with_capacity(calls.len());
            for call in calls {
                replies.extend(answer_call(ctx, caller, call).await);
            }
            (!replies.is_empty()).then_some(Reply::Batch(replies))
        }
    }
}

/// Serves one call: its response, or `None` for a notification, which is run (when it
/// decodes) but never answered, even with an error.
async fn answer_call(ctx: &Context, caller: &Caller, call: Call) -> Option<Response> {
    let Call { id, request } = call;
    let request = match request {
        Ok(request) => request,
        Err(error) => {
            tracing::info!(outcome = %error.kind(), "undecodable request");
            return id.map(|id| Response::err(id, error));
        }
    };
    let response = serve_request(ctx, caller, request).await;
    id.map(|id| match response {
        Ok(result) => Response::ok(id, result),
        Err(error) => Response::err(id, error),
    })
}

/// Authorizes and serves one request. Logs the method, organization and outcome, never
/// params (they may hold a token).
async fn serve_request(
    ctx: &Context,
    caller: &Caller,
    request: compartmentctl::wire::Request,
) -> Result<Value, RpcError> {
    let started = Instant::now();
    let method = request.method();
    let requested_org = request.org().map(str::to_owned);
    let result = dispatch(ctx, caller.clone(), request).await;
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
            Ok(result)
        }
        Err(err) => {
            let kind = err.kind();
            if kind == ErrorKind::Internal {
                tracing::error!(method, error = ?err, "request failed");
            }
            let org = requested_org.as_deref().unwrap_or("-");
            tracing::info!(method, org, outcome = %kind, micros, "request");
            Err(err.into())
        }
    }
}

async fn send(
    write_half: &mut OwnedWriteHalf,
    response: &impl serde::Serialize,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write_half.write_all(&line).await
}
