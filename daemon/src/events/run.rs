//! A subscribed connection's loop: the feed's batches sent as they come, a replay's read on
//! the replays' thread, the subscriber's right checked before each batch, and the end told
//! in an `events.closed` notification.

use compartmentctl::wire::{decode, Call, ErrorKind, FeedEnd, Incoming, Response, RpcError};
use futures_util::StreamExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::events::{self, Daemon, Feed, Gone};
use crate::limits::Limits;
use crate::lines::LineCodec;
use crate::peek::PeekingRead;
use crate::rules::Caller;
use crate::sending::{encode, send, Ending};

/// Sends `feed`'s events until the client leaves, the daemon stops, or the subscriber
/// may no longer have them or falls too far behind (see `events`). The connection carries
/// only the feed: a request the client sends meanwhile is answered with an error saying so.
pub(crate) async fn run_feed(
    ctx: &impl Daemon,
    caller: &Caller,
    mut feed: Feed,
    lines: &mut FramedRead<PeekingRead, LineCodec>,
    write_half: &mut OwnedWriteHalf,
    limits: &Limits,
    stop: &CancellationToken,
) -> Ending {
    // The head that tells of new events: the organization's own for an organization's feed,
    // so that the rest of the host's changes do not wake it.
    let mut wake = match feed.org_name() {
        Some(org) => ctx.store().org_event_head(org),
        None => ctx.store().event_head(),
    };
    let newest = ctx.store().event_head();
    let mut counted = ctx.feed_metrics().subscribe();
    loop {
        // Marked seen before the snapshot is taken: a commit announced from here on wakes
        // the wait below, and one announced before is in the snapshot.
        wake.borrow_and_update();
        // A replay's batch is read and written out on the replays' thread; a feed that has
        // caught up reads the few changes a commit made here.
        let (store, org, after) = (ctx.store().clone(), feed.org.clone(), feed.after);
        let read = move || events::read_batch(&store, org.as_ref(), after);
        let batch = if feed.replaying.is_some() {
            ctx.replays().in_background(read).await
        } else {
            Some(read())
        };
        let (out, mut batch) = match batch {
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
        // An organization renamed keeps its feed, under its new name: the feed follows it
        // there (its next batch begins with `org.renamed`) and waits on that name's head.
        if let Some(Gone::Renamed(name)) = &batch.gone {
            feed.follow(name);
            wake = ctx.store().org_event_head(name);
            continue;
        }
        // The feed cannot go on: its organization is gone, or changes it has not sent were
        // pruned (it would skip them without a word).
        let ended = if batch.gone.take().is_some() {
            Some((
                FeedEnd::Revoked,
                format!(
                    "organization {} was deleted",
                    feed.org_name().unwrap_or("-")
                ),
            ))
        } else {
            batch.pruned.map(|first| {
                (
                    FeedEnd::Behind,
                    format!(
                        "the changes after {} up to {} are no longer kept (the daemon's \
                         --audit-retention): read the state afresh, then subscribe without after",
                        feed.after,
                        first - 1
                    ),
                )
            })
        };
        if let Some((cause, reason)) = ended {
            return close_feed(write_half, feed.after, cause, reason, limits, stop).await;
        }
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
        counted.behind(behind);
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

/// The reply to a request sent on a connection that has become a feed: an error for each
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
