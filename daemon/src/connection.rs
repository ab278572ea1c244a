//! One connection: JSON lines in, answers out, in order. A line over the limit is
//! answered `frame_too_long`, the rest of it drained for a bounded time (nginx's lingering
//! close, so a client that writes its whole request before reading sees why), and the
//! connection closed; so is a line left unfinished past the line timeout (slow-loris), a
//! connection idle past the idle timeout (blank lines are not requests), and one whose
//! answer stays unread past the write timeout. No write outlives a stop by more than a
//! moment, so a client that never reads cannot hold up the daemon's exit.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use compartmentctl::wire::{
    decode, Call, ErrorKind, FeedEnd, Id, Incoming, Request, Response, RpcError, JSONRPC, MAX_LINE,
};
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio_util::codec::{AnyDelimiterCodecError, FramedRead};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::Context;
use crate::dispatch::{dispatch, Body};
use crate::events::{self, Feed};
use crate::limits::{Limits, Slot};
use crate::lines::LineCodec;
use crate::logging::{self, RateLimit, RATE_BURST, RATE_WINDOW};
use crate::rules::Caller;
use crate::writer::QUEUED;

/// How long a refused client gets to read why.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Once the daemon is stopping, how long an answer already being written may still take.
const STOP_WRITE_GRACE: Duration = Duration::from_millis(500);

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

/// Answers a connection over a cap with the reason, then closes it.
pub async fn refuse(mut stream: UnixStream, busy: RpcError) {
    let line = encode(&Response::err(Value::Null, busy));
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, stream.write_all(&line)).await;
}

/// Why a connection ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    ClientLeft,
    Stopping,
    LineTooLong,
    LineTimeout,
    Idle,
    ReadFailed,
    WriteFailed,
    WriteTimeout,
    /// The daemon ended a feed, telling the subscriber why.
    FeedClosed,
}

async fn serve_lines(
    stream: UnixStream,
    ctx: &Context,
    caller: Caller,
    limits: Limits,
    stop: CancellationToken,
) {
    let (read_half, mut write_half) = stream.into_split();
    let mut lines = FramedRead::new(read_half, LineCodec::new(MAX_LINE));
    // The codec holds a partial line in its buffer; a tick looks at it, since bytes that do
    // not finish a line wake nobody.
    let tick_every =
        (limits.line_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_request = Instant::now();
    let mut partial_since: Option<Instant> = None;
    let mut pipeline = Pipeline::new(ctx, &caller);
    // Why reading stopped, while the answers already begun are still being sent.
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
            // Answers first: a client that pipelines gets them as they are ready.
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
                // The client has said all it will: it still gets the answers it awaits.
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
                        if let Some(reply) = answer(ctx, &caller, incoming).await {
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
                    // The answers to the lines before it come first, in order.
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
        // The answer is out; the client sees it followed by end of file while the rest of
        // its line is read and dropped.
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, write_half.shutdown()).await;
        linger(lines.into_inner(), &stop).await;
    }
    match ending {
        Ending::ClientLeft | Ending::Stopping | Ending::FeedClosed => {
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
    lines: &'a mut FramedRead<OwnedReadHalf, LineCodec>,
    write_half: &'a mut OwnedWriteHalf,
    limits: &'a Limits,
    stop: &'a CancellationToken,
}

/// Sends `reply`; when it turned the connection into a feed (after the answers already
/// begun), runs the feed. The connection's ending, when it ends here.
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
    let feed = reply.take_feed()?;
    // Requests already begun are answered; nothing more is read.
    if let Err(ending) = pipeline.drain(write_half, limits, stop).await {
        return Some(ending);
    }
    let (ctx, caller) = (pipeline.ctx, pipeline.caller);
    Some(run_feed(ctx, caller, *feed, lines, write_half, limits, stop).await)
}

/// Sends `feed`'s events until the client leaves, the daemon stops, or the subscriber
/// may no longer have them or falls too far behind (see `events`). The connection carries
/// only the feed: a request the client sends meanwhile is answered with an error saying so.
async fn run_feed(
    ctx: &Context,
    caller: &Caller,
    mut feed: Feed,
    lines: &mut FramedRead<OwnedReadHalf, LineCodec>,
    write_half: &mut OwnedWriteHalf,
    limits: &Limits,
    stop: &CancellationToken,
) -> Ending {
    // The head that tells of new events: the organization's own for an organization's feed,
    // so that the rest of the host's changes do not wake it.
    let mut wake = match &feed.org {
        Some(org) => ctx.store.org_event_head(org),
        None => ctx.store.event_head(),
    };
    let newest = ctx.store.event_head();
    loop {
        // Marked seen before the snapshot is taken: a commit announced from here on wakes
        // the wait below, and one announced before is in the snapshot.
        wake.borrow_and_update();
        // A replay's batch is read and written out on the replays' thread; a feed that has
        // caught up reads the few changes a commit made here.
        let (store, org, after) = (ctx.store.clone(), feed.org.clone(), feed.after);
        let read = move || events::read_batch(&store, org.as_deref(), after);
        let batch = if feed.replaying.is_some() {
            ctx.replays.in_background(read).await
        } else {
            Some(read())
        };
        let (out, batch) = match batch {
            Some(Ok(read)) => read,
            failed => {
                match failed {
                    Some(Err(err)) => tracing::error!(error = %err, "a feed cannot read the store"),
                    _ => tracing::error!("reading a feed's batch panicked"),
                }
                let reason = "internal error; the daemon's log has details".to_owned();
                return close_feed(
                    write_half,
                    feed.after,
                    FeedEnd::Internal,
                    reason,
                    limits,
                    stop,
                )
                .await;
            }
        };
        if !out.is_empty() {
            if let Err((cause, reason)) = events::still_allowed(ctx, caller, &feed).await {
                return close_feed(write_half, feed.after, cause, reason, limits, stop).await;
            }
            if let Err(ending) = send(write_half, &out, limits, stop).await {
                return ending;
            }
        }
        feed.after = batch.seen;
        let behind = feed.behind(*newest.borrow());
        if behind > limits.feed_max_lag {
            let reason = format!(
                "the subscriber fell {behind} changes behind the newest, more than the \
                 daemon's --feed-max-lag of {}",
                limits.feed_max_lag
            );
            return close_feed(
                write_half,
                feed.after,
                FeedEnd::Behind,
                reason,
                limits,
                stop,
            )
            .await;
        }
        if !batch.caught_up {
            // More to read: the next batch after everyone else's turn.
            tokio::task::yield_now().await;
            continue;
        }
        // No longer a replay: its place goes to another.
        feed.replaying = None;
        tokio::select! {
            biased;
            () = stop.cancelled() => {
                let reason = "compartmentd is stopping".to_owned();
                return close_feed(write_half, feed.after, FeedEnd::Stopping, reason, limits, stop).await;
            }
            changed = wake.changed() => {
                if changed.is_err() {
                    return Ending::Stopping;
                }
            }
            frame = lines.next() => match frame {
                None => return Ending::ClientLeft,
                Some(Err(_)) => return Ending::ReadFailed,
                Some(Ok(line)) => {
                    if let Some(refusal) = feed_refusal(&line) {
                        if let Err(ending) = send(write_half, &refusal, limits, stop).await {
                            return ending;
                        }
                    }
                }
            },
        }
    }
}

/// The answer to a request sent on a connection that has become a feed: an error for each
/// request with an id (none for notifications and blank lines).
fn feed_refusal(line: &[u8]) -> Option<Vec<u8>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let refusal = || {
        RpcError::new(
            ErrorKind::BadRequest,
            "this connection carries the change feed and answers no other request",
        )
        .with_hint("send other requests on a connection of their own")
    };
    let refuse = |call: Call| call.id.map(|id| Response::err(id, refusal()));
    match decode(line) {
        Incoming::Single(call) => refuse(call).map(|response| encode(&response)),
        Incoming::Batch(calls) => {
            let responses: Vec<Response> = calls.into_iter().filter_map(refuse).collect();
            (!responses.is_empty()).then(|| encode(&responses))
        }
    }
}

/// Ends a feed with its `events.closed` notification.
async fn close_feed(
    write_half: &mut OwnedWriteHalf,
    after: u64,
    cause: FeedEnd,
    reason: String,
    limits: &Limits,
    stop: &CancellationToken,
) -> Ending {
    let line = events::closed_line(after, cause, reason);
    match send(write_half, &line, limits, stop).await {
        Ok(()) => Ending::FeedClosed,
        Err(ending) => ending,
    }
}

/// Reads and drops what the client still sends, within [`LINGER_TIME`], [`LINGER_BYTES`]
/// and [`LINGER_QUIET`], so that closing does not cut off a client still writing the line
/// it will then read the answer to (it would see a broken pipe instead of the error).
async fn linger(mut read_half: OwnedReadHalf, stop: &CancellationToken) {
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

/// Requests of one connection begun but not yet answered, whose answers go out in the
/// order the lines came.
///
/// A request that changes the store is begun as soon as it arrives (up to [`PIPELINE_DEPTH`]
/// in flight), so a client that sends many without waiting gets them committed together by
/// the writer instead of one commit each. Their changes still apply in the order sent: each
/// waits to queue its change until the one before it has queued its own (see
/// `writer::QUEUED`). Any other line (a read, a batch, one that does not decode) waits
/// until everything before it is answered and runs alone, so it sees every change sent
/// before it, as if the connection were served one line at a time.
struct Pipeline<'a> {
    ctx: &'a Context,
    caller: &'a Caller,
    in_flight: FuturesOrdered<Answering<'a>>,
    /// The request bytes of the lines in flight (and held): bounds what one connection
    /// makes the daemon hold, whatever its lines' sizes.
    bytes: usize,
    /// Fires when the last pipelined request has queued its change (or ended without one).
    last_queued: Option<oneshot::Receiver<()>>,
    /// A line that must run alone, waiting for those in flight to be answered, with its
    /// size.
    held: Option<(Incoming, usize)>,
}

/// A line being answered: its size, and its reply.
type Answering<'a> = Pin<Box<dyn Future<Output = (usize, Option<Reply>)> + Send + 'a>>;

/// The most requests of one connection begun and not yet answered.
const PIPELINE_DEPTH: usize = 64;
/// The most request bytes of one connection in flight: a few lines of the largest size,
/// so a connection of big lines holds little more than one served a line at a time.
const PIPELINE_BYTES: usize = 2 * MAX_LINE;

impl<'a> Pipeline<'a> {
    fn new(ctx: &'a Context, caller: &'a Caller) -> Pipeline<'a> {
        Pipeline {
            ctx,
            caller,
            in_flight: FuturesOrdered::new(),
            bytes: 0,
            last_queued: None,
            held: None,
        }
    }

    fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.held.is_none()
    }

    /// Whether another line may be read now.
    fn has_room(&self) -> bool {
        self.held.is_none() && self.in_flight.len() < PIPELINE_DEPTH && self.bytes < PIPELINE_BYTES
    }

    /// Whether `incoming` is begun as soon as it arrives: a single request that changes
    /// the store. Any other line runs alone.
    fn pipelines(incoming: &Incoming) -> bool {
        matches!(
            incoming,
            Incoming::Single(Call { request: Ok(request), .. }) if request.writes()
        )
    }

    /// Begins (or holds) `incoming`, decoded from a line of `len` bytes.
    fn push(&mut self, incoming: Incoming, len: usize) {
        self.bytes += len;
        if !Pipeline::pipelines(&incoming) {
            self.held = Some((incoming, len));
            self.start_held();
            return;
        }
        let (queued, next_may_queue) = oneshot::channel();
        let before = self.last_queued.replace(next_may_queue);
        let (ctx, caller) = (self.ctx, self.caller);
        self.in_flight.push_back(Box::pin(async move {
            if let Some(before) = before {
                // Fired or dropped: either way the request before has queued or ended.
                let _ = before.await;
            }
            let reply = QUEUED
                .scope(RefCell::new(Some(queued)), answer(ctx, caller, incoming))
                .await;
            (len, reply)
        }));
    }

    /// Begins the held line once nothing else is in flight.
    fn start_held(&mut self) {
        if !self.in_flight.is_empty() {
            return;
        }
        if let Some((incoming, len)) = self.held.take() {
            let (ctx, caller) = (self.ctx, self.caller);
            self.in_flight.push_back(Box::pin(async move {
                (len, answer(ctx, caller, incoming).await)
            }));
            self.last_queued = None;
        }
    }

    fn drop_held(&mut self) {
        if let Some((_, len)) = self.held.take() {
            self.bytes -= len;
        }
    }

    /// The next answer in order; pending forever when nothing is in flight (for `select!`).
    async fn next_reply(&mut self) -> Option<Option<Reply>> {
        if self.in_flight.is_empty() {
            return std::future::pending().await;
        }
        let (len, reply) = self.in_flight.next().await?;
        self.bytes -= len;
        Some(reply)
    }

    /// Sends every answer in flight, in order.
    async fn drain(
        &mut self,
        write_half: &mut OwnedWriteHalf,
        limits: &Limits,
        stop: &CancellationToken,
    ) -> Result<(), Ending> {
        self.drop_held();
        while !self.in_flight.is_empty() {
            if let Some(reply) = self.next_reply().await.flatten() {
                send(write_half, &reply.line(), limits, stop).await?;
            }
        }
        Ok(())
    }
}

/// A [`Response`] as the daemon sends it: the same members in the same order, its result
/// a [`Body`] written into the line as it is.
#[derive(Debug, serde::Serialize)]
struct Answer {
    jsonrpc: &'static str,
    id: Id,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Body>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<RpcError>,
    /// The feed the connection becomes once this answer is sent.
    #[serde(skip)]
    feed: Option<Box<Feed>>,
}

impl Answer {
    fn ok(id: Id, result: Body, feed: Option<Box<Feed>>) -> Answer {
        Answer {
            jsonrpc: JSONRPC,
            id,
            result: Some(result),
            error: None,
            feed,
        }
    }

    fn err(id: Id, error: RpcError) -> Answer {
        Answer {
            jsonrpc: JSONRPC,
            id,
            result: None,
            error: Some(error),
            feed: None,
        }
    }

    /// About the length of the result's text, if any.
    fn text_len(&self) -> usize {
        self.result.as_ref().map_or(0, Body::len_hint)
    }
}

/// What a line is answered with: one response, or the array of a batch's responses.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum Reply {
    One(Answer),
    Batch(Vec<Answer>),
}

/// Decodes and serves one line: its reply, or `None` when the line held only
/// notifications (JSON-RPC 2.0 answers those with nothing at all). A batch's requests are
/// served one after the other, in the order sent, so a batch is no faster a way to load
/// the daemon than the same requests on separate lines.
async fn answer(ctx: &Context, caller: &Caller, incoming: Incoming) -> Option<Reply> {
    match incoming {
        Incoming::Single(call) => answer_call(ctx, caller, call).await.map(Reply::One),
        Incoming::Batch(calls) => {
            let mut replies = Vec::with_capacity(calls.len());
            for call in calls {
                if let Ok(Request::EventsSubscribe(_)) = &call.request {
                    // A feed takes the whole connection: it cannot be one answer of many.
                    let refusal = RpcError::new(
                        ErrorKind::BadRequest,
                        "events.subscribe must be sent alone, not in a batch",
                    );
                    replies.extend(call.id.map(|id| Answer::err(id, refusal)));
                    continue;
                }
                replies.extend(answer_call(ctx, caller, call).await);
            }
            (!replies.is_empty()).then_some(Reply::Batch(replies))
        }
    }
}

/// Serves one call: its response, or `None` for a notification, which is run (when it
/// decodes) but never answered, even with an error.
async fn answer_call(ctx: &Context, caller: &Caller, call: Call) -> Option<Answer> {
    let Call { id, request } = call;
    let request = match request {
        Ok(request) => request,
        Err(error) => {
            if may_log(caller, tracing::Level::INFO) {
                tracing::info!(outcome = %error.kind(), "undecodable request");
            }
            return id.map(|id| Answer::err(id, error));
        }
    };
    let response = serve_request(ctx, caller, request).await;
    id.map(|id| match response {
        Ok((result, feed)) => Answer::ok(id, result, feed.map(Box::new)),
        Err(error) => Answer::err(id, error),
    })
}

/// Reads that tell a caller only about itself or about the protocol, or that services ask
/// thousands of times a second (`authz.check`): logged at debug when they succeed, so that
/// the journal holds changes, refusals and reads of others' data, not every routine
/// question. (Each line costs the daemon about as much as answering such a read.)
const ROUTINE_READS: &[&str] = &[
    "ping",
    "whoami",
    "org.list",
    "role.list",
    "role.show",
    "authz.check",
    "rpc.discover",
];

/// Whether a request line at `level` is written for `caller`: when the level is on, and
/// the caller's lines are within their rate. Ordinary users' request lines are rate-limited
/// per uid, so none can fill the disk through the log; a line that would not be written
/// anyway takes nothing from that rate. (Errors of the daemon's own are always logged.)
fn may_log(caller: &Caller, level: tracing::Level) -> bool {
    let enabled = if level == tracing::Level::DEBUG {
        tracing::enabled!(tracing::Level::DEBUG)
    } else {
        tracing::enabled!(tracing::Level::INFO)
    };
    enabled && logging::request_log_limit().allow(caller.uid, caller.superuser)
}

/// Authorizes and serves one request. Logs the method, organization (clipped) and outcome,
/// never params (they may hold a token).
async fn serve_request(
    ctx: &Context,
    caller: &Caller,
    request: compartmentctl::wire::Request,
) -> Result<(Body, Option<Feed>), RpcError> {
    let started = Instant::now();
    let method = request.method();
    let requested_org = request.org().map(str::to_owned);
    let result = dispatch(ctx, caller.clone(), request).await;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match result {
        Ok(result) => {
            // The organization acted in, as resolved by the rules when the caller named none.
            let org = result.org.as_deref().or(requested_org.as_deref());
            if ROUTINE_READS.contains(&method) {
                if may_log(caller, tracing::Level::DEBUG) {
                    let org = logging::clip(org.unwrap_or("-"));
                    tracing::debug!(method, org = &*org, outcome = "ok", micros, "request");
                }
            } else if may_log(caller, tracing::Level::INFO) {
                let org = logging::clip(org.unwrap_or("-"));
                tracing::info!(method, org = &*org, outcome = "ok", micros, "request");
            }
            Ok((result.body, result.feed))
        }
        Err(err) => {
            let kind = err.kind();
            if kind == ErrorKind::Internal {
                tracing::error!(method, error = ?err, "request failed");
            }
            if may_log(caller, tracing::Level::INFO) {
                let org = logging::clip(requested_org.as_deref().unwrap_or("-"));
                tracing::info!(method, org = &*org, outcome = %kind, micros, "request");
            }
            Err(err.into())
        }
    }
}

fn encode(response: &impl serde::Serialize) -> Vec<u8> {
    encode_into(Vec::new(), response)
}

/// [`encode`] into `line`, whose capacity is kept: a reply whose size is known (a page of
/// members) is written without regrowing its buffer.
fn encode_into(mut line: Vec<u8>, response: &impl serde::Serialize) -> Vec<u8> {
    // A response is plain data; should it ever fail to encode, the client gets an empty
    // line rather than the connection task a panic.
    if serde_json::to_writer(&mut line, response).is_err() {
        line.clear();
    }
    line.push(b'\n');
    line
}

impl Reply {
    /// The feed a lone `events.subscribe` answered with success turns the connection into.
    fn take_feed(&mut self) -> Option<Box<Feed>> {
        match self {
            Reply::One(answer) => answer.feed.take(),
            Reply::Batch(_) => None,
        }
    }

    /// The reply's line, newline included.
    fn line(&self) -> Vec<u8> {
        let results = match self {
            Reply::One(answer) => answer.text_len(),
            Reply::Batch(answers) => answers.iter().map(Answer::text_len).sum(),
        };
        // The envelopes around the results are small next to a page of members.
        encode_into(Vec::with_capacity(results + 256), self)
    }
}

/// Writes one answer within the write timeout, and once the daemon is stopping within
/// [`STOP_WRITE_GRACE`]: a client that does not read loses its connection, never holds a
/// task (or the daemon's exit) hostage.
async fn send(
    write_half: &mut OwnedWriteHalf,
    line: &[u8],
    limits: &Limits,
    stop: &CancellationToken,
) -> Result<(), Ending> {
    // Most answers fit the socket's buffer at once: written so, they need no timer and no
    // watch on the stop. (Only a write that cannot finish now waits, within the limits.)
    let line = match write_half.try_write(line) {
        Ok(written) if written == line.len() => return Ok(()),
        Ok(written) => line.get(written..).unwrap_or_default(),
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => line,
        Err(_) => return Err(Ending::WriteFailed),
    };
    let stopping = async {
        stop.cancelled().await;
        tokio::time::sleep(STOP_WRITE_GRACE).await;
    };
    tokio::select! {
        written = tokio::time::timeout(limits.write_timeout, write_half.write_all(line)) => match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ending::WriteFailed),
            Err(_) => Err(Ending::WriteTimeout),
        },
        () = stopping => Err(Ending::Stopping),
    }
}
