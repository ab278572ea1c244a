//! One connection: JSON lines in, replies out, in order. A line over the limit is
//! answered `frame_too_long`, the rest of it drained for a bounded time (nginx's lingering
//! close, so a client that writes its whole request before reading sees why), and the
//! connection closed; so is a line left unfinished past the line timeout (slow-loris), a
//! connection idle past the idle timeout (blank lines are not requests), and one whose
//! reply stays unread past the write timeout. No write outlives a stop by more than a
//! moment, so a client that never reads cannot hold up the daemon's exit. The requests in
//! flight are the [`crate::pipeline`]'s, what each line gets back is a
//! [`Reply`](crate::reply::Reply) (a refusal the connection makes itself, a wire
//! [`Response`] alone on its line), and a connection that subscribes becomes the change
//! feed's ([`crate::events`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use compartmentctl::wire::{decode, Response, RpcError, MAX_LINE};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio_util::codec::{AnyDelimiterCodecError, FramedRead};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backup::run_backup;
use crate::context::Context;
use crate::dispatch::Takeover;
use crate::events::run_feed;
use crate::limits::{Limits, Slot};
use crate::lines::LineCodec;
use crate::logging::{RateLimit, RATE_BURST, RATE_WINDOW};
use crate::peek::PeekingRead;
use crate::pipeline::{reply_to, Pipeline};
use crate::reply::Reply;
use crate::rules::Caller;
use crate::sending::{encode, send, Ending};

/// How long a refused client gets to read why.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Lingering close after `frame_too_long`: the rest of the line is read and dropped for at
/// most this long in all, this many bytes, or until the client is quiet this long.
const LINGER_TIME: Duration = Duration::from_secs(2);

const LINGER_BYTES: usize = 4 * 1024 * 1024;

const LINGER_QUIET: Duration = Duration::from_millis(500);

/// Connections that end badly (too long, too slow, unread), logged a few per window.
static BAD_ENDINGS: RateLimit = RateLimit::new(RATE_WINDOW, RATE_BURST);

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

/// Replies to a connection over a cap with the reason, then closes it.
pub async fn refuse(mut stream: UnixStream, busy: RpcError) {
    let line = encode(&Response::err(Value::Null, busy));
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, stream.write_all(&line)).await;
}

async fn serve_lines(
    stream: UnixStream,
    ctx: &Context,
    caller: Caller,
    limits: Limits,
    stop: CancellationToken,
) {
    let (read_half, mut write_half) = stream.into_split();
    let mut lines = FramedRead::new(PeekingRead::new(read_half), LineCodec::new(MAX_LINE));
    // The codec holds a partial line in its buffer; a tick looks at it, since bytes that do
    // not finish a line wake nobody.
    let tick_every =
        (limits.line_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_request = Instant::now();
    let mut partial_since: Option<Instant> = None;
    let mut pipeline = Pipeline::new(ctx, &caller);
    // Why reading stopped, while the replies already begun are still being sent.
    let mut closing: Option<Ending> = None;
    // Watched from one future for the connection's life, not one per turn of the loop.
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let ending = loop {
        if let Some(ending) = closing {
            if pipeline.is_idle() {
                break ending;
            }
        }
        pipeline.start_held();
        let reading = closing.is_none() && pipeline.has_room();
        tokio::select! {
            // Replies first: a client that pipelines gets them as they are ready.
            biased;
            Some(reply) = pipeline.next_reply() => {
                if let Some(reply) = reply {
                    let mut conn = Conn { lines: &mut lines, write_half: &mut write_half, limits: &limits, stop: &stop };
                    if let Some(ending) = deliver(reply, &mut pipeline, &mut conn).await {
                        break ending;
                    }
                }
            }
            frame = lines.next(), if reading => match frame {
                // The client has said all it will: it still gets the replies it awaits.
                None => closing = Some(Ending::ClientLeft),
                Some(Ok(line)) => {
                    partial_since = None;
                    // A blank line is no request: it keeps nothing alive past the idle timeout.
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    last_request = Instant::now();
                    let incoming = decode(&line);
                    if pipeline.is_idle() && !Pipeline::pipelines(&incoming) {
                        // A line that runs alone, with nothing before it to wait for: answered
                        // here and now, as the pipeline would, without a task of its own.
                        if let Some(reply) = reply_to(ctx, &caller, incoming).await {
                            let mut conn = Conn { lines: &mut lines, write_half: &mut write_half, limits: &limits, stop: &stop };
                            if let Some(ending) = deliver(reply, &mut pipeline, &mut conn).await {
                                break ending;
                            }
                        }
                        // Waiting on the daemon is not idling.
                        last_request = Instant::now();
                        continue;
                    }
                    pipeline.push(incoming, line.len());
                }
                Some(Err(AnyDelimiterCodecError::MaxChunkLengthExceeded)) => {
                    // The replies to the lines before it come first, in order.
                    if let Err(ending) = pipeline.drain(&mut write_half, &limits, &stop).await {
                        break ending;
                    }
                    let response = Response::err(Value::Null, RpcError::frame_too_long());
                    if let Err(ending) = send(&mut write_half, &encode(&response), &limits, &stop).await {
                        break ending;
                    }
                    break Ending::LineTooLong;
                }
                Some(Err(AnyDelimiterCodecError::Io(err))) => {
                    tracing::debug!(error = %err, "connection read failed");
                    closing = Some(Ending::ReadFailed);
                }
            },
            // Requests not begun are dropped; those begun are answered (within a grace).
            () = &mut stopped, if closing.is_none() => {
                pipeline.drop_held();
                closing = Some(Ending::Stopping);
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if !pipeline.is_idle() {
                    // Waiting on the daemon is not idling.
                    last_request = now;
                } else if lines.read_buffer().is_empty() {
                    partial_since = None;
                    if now.duration_since(last_request) >= limits.idle_timeout {
                        break Ending::Idle;
                    }
                } else if now.duration_since(*partial_since.get_or_insert(now)) >= limits.line_timeout {
                    break Ending::LineTimeout;
                }
            }
        }
    };
    if ending == Ending::LineTooLong {
        // The reply is out; the client sees it followed by end of file while the rest of
        // its line is read and dropped.
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, write_half.shutdown()).await;
        linger(lines.into_inner(), &stop).await;
    }
    match ending {
        Ending::ClientLeft | Ending::Stopping | Ending::FeedClosed | Ending::BackupEnded => {
            tracing::debug!(?ending, "connection closed")
        }
        _ => {
            if let Some(more) = BAD_ENDINGS.check() {
                tracing::info!(?ending, "connection closed{more}");
            }
        }
    }
}

/// The connection's two halves and its limits, for what [`deliver`] does with them.
struct Conn<'a> {
    lines: &'a mut FramedRead<PeekingRead, LineCodec>,
    write_half: &'a mut OwnedWriteHalf,
    limits: &'a Limits,
    stop: &'a CancellationToken,
}

/// Sends `reply`; when it turned the connection into a feed or a backup (after the replies
/// already begun), runs it. The connection's ending, when it ends here.
async fn deliver(
    mut reply: Reply,
    pipeline: &mut Pipeline<'_>,
    conn: &mut Conn<'_>,
) -> Option<Ending> {
    let Conn {
        lines,
        write_half,
        limits,
        stop,
    } = conn;
    if let Err(ending) = send(write_half, &reply.line(), limits, stop).await {
        return Some(ending);
    }
    // The answer is out: what it answered comes out of the socket now (see `peek`).
    if let Err(err) = lines.get_mut().consume() {
        tracing::debug!(error = %err, "connection read failed");
        return Some(Ending::ReadFailed);
    }
    let takeover = reply.take_takeover()?;
    // Requests already begun are answered; nothing more is read.
    if let Err(ending) = pipeline.drain(write_half, limits, stop).await {
        return Some(ending);
    }
    let (ctx, caller) = (pipeline.ctx, pipeline.caller);
    Some(match *takeover {
        Takeover::Feed(feed) => run_feed(ctx, caller, feed, lines, write_half, limits, stop).await,
        Takeover::Backup(backup) => run_backup(ctx, backup, write_half, limits, stop).await,
    })
}

/// Reads and drops what the client still sends, within [`LINGER_TIME`], [`LINGER_BYTES`]
/// and [`LINGER_QUIET`], so that closing does not cut off a client still writing the line
/// it will then read the reply to (it would see a broken pipe instead of the error).
async fn linger(mut read_half: PeekingRead, stop: &CancellationToken) {
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut buf = vec![0u8; 16 * 1024];
    let mut drained = 0usize;
    while drained < LINGER_BYTES {
        let quiet_until = deadline.min(tokio::time::Instant::now() + LINGER_QUIET);
        let read = tokio::select! {
            read = tokio::time::timeout_at(quiet_until, read_half.read(&mut buf)) => read,
            () = stop.cancelled() => return,
        };
        match read {
            Ok(Ok(n)) if n > 0 => drained += n,
            // End of file, an error, or quiet for long enough.
            _ => return,
        }
    }
}
