//! The follower: a connection of the daemon's own to its PostgreSQL, apart from the pool.
//! It brings the schema to this daemon's version as soon as the database can be reached,
//! then listens on the channel every commit that appends to the feed notifies ([`LISTEN`]),
//! and moves this daemon's feed heads past what any daemon committed.
//!
//! A notification only wakes it: what it announces it reads from `event_head` and
//! `org_events`, from where it last caught up. Notifications lost with a connection lose
//! nothing, then: after each reconnect it catches up the same way, and it listens before
//! it reads, so that a commit in between wakes it again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::schema::{self, SchemaError, CURRENT_SCHEMA_VERSION};
use super::target::Target;
use crate::store::heads::FeedHeads;
use crate::store::Announcement;

/// What the follower listens on.
const LISTEN: &str = "LISTEN compartment_events";

/// How a transaction that appended to the feed commits: the notification on the same
/// channel is delivered at the commit, or never.
pub(super) const NOTIFY_AND_COMMIT: &str = "NOTIFY compartment_events; COMMIT";

/// How the follower's connection shows in `pg_stat_activity`.
pub(super) const APPLICATION_NAME: &str = "compartmentd follower";

/// The first wait before connecting again, doubled after each failure up to
/// [`RETRY_AT_MOST`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_AT_MOST: Duration = Duration::from_secs(5);

/// Past this many events behind, every organization's feed is woken rather than asking
/// which organizations the events were under.
const CATCH_UP_BY_ORG: u64 = 10_000;

/// What the store and its follower share.
pub(super) struct Shared {
    /// What this daemon's feed subscribers wait on.
    pub(super) heads: FeedHeads,
    /// Set once the schema is this daemon's version: until then, every read and write is
    /// answered as unreachable.
    pub(super) ready: AtomicBool,
    /// Whether the follower's own connection is up: PostgreSQL as last seen.
    pub(super) reachable: AtomicBool,
}

/// Stops the follower when dropped.
pub(super) struct Stop(CancellationToken);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Why the follower stopped following.
enum Failure {
    /// What no waiting mends: a schema newer than this daemon's, settings PostgreSQL
    /// refuses. Fails the daemon's start; later, it is logged and tried again.
    Refused(SchemaError),
    /// The server cannot be reached, or the connection was lost.
    Unreachable(String),
}

pub(super) struct Follower {
    target: Target,
    shared: Arc<Shared>,
    /// The feed's head as last caught up; `None` before the first catch-up.
    cursor: Option<u64>,
    /// Told how the first attempt went, then `None`.
    first: Option<oneshot::Sender<Result<(), SchemaError>>>,
}

impl Follower {
    /// Starts following on `runtime`; `first` is told how the first attempt went.
    pub(super) fn start(
        target: Target,
        shared: Arc<Shared>,
        first: oneshot::Sender<Result<(), SchemaError>>,
        runtime: &Handle,
    ) -> Stop {
        let stop = CancellationToken::new();
        let follower = Follower {
            target,
            shared,
            cursor: None,
            first: Some(first),
        };
        runtime.spawn(stop.clone().run_until_cancelled_owned(follower.run()));
        Stop(stop)
    }

    async fn run(mut self) {
        let mut delay = RETRY_FIRST;
        let mut failing = false;
        loop {
            let (failure, followed) = self.follow(failing).await;
            self.shared.reachable.store(false, Ordering::Release);
            if followed {
                delay = RETRY_FIRST;
            }
            match failure {
                Failure::Refused(err) => {
                    if let Some(first) = self.first.take() {
                        let _ = first.send(Err(err));
                        return;
                    }
                    tracing::error!(store = %self.target, error = %err, "PostgreSQL refuses this daemon; trying again");
                }
                Failure::Unreachable(why) => {
                    if let Some(first) = self.first.take() {
                        tracing::warn!(store = %self.target, error = %why, "PostgreSQL cannot be reached yet: requests are answered `unavailable` until it can, and the daemon keeps trying");
                        let _ = first.send(Ok(()));
                    } else if !failing {
                        tracing::warn!(store = %self.target, error = %why, "PostgreSQL cannot be reached: requests are answered `unavailable` until it can, and the daemon keeps trying");
                    }
                }
            }
            failing = true;
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_AT_MOST);
        }
    }

    /// Connects, migrates if the schema is not yet this daemon's, listens and catches up
    /// at each wake-up, until the connection fails; returns why, and whether it got as
    /// far as following.
    async fn follow(&mut self, was_failing: bool) -> (Failure, bool) {
        let mut config = self.target.config.clone();
        config.application_name(APPLICATION_NAME);
        let (mut client, mut connection) = match config.connect(NoTls).await {
            Ok(connected) => connected,
            Err(err) => return (classify(err), false),
        };
        let wake = Arc::new(Notify::new());
        // Aborted with the follower: the connection is not left running behind it.
        let mut driver = AbortOnDropHandle::new(tokio::spawn({
            let wake = wake.clone();
            async move {
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                        Some(Ok(_)) => {}
                        Some(Err(err)) => return super::Explained(&err).to_string(),
                        None => return "the connection was closed".to_owned(),
                    }
                }
            }
        }));
        let failure = async {
            if !self.shared.ready.load(Ordering::Acquire) {
                let found = schema::migrate(&mut client).await.map_err(|err| match err {
                    SchemaError::Postgres(err) => classify(err),
                    SchemaError::Unreachable(why) => Failure::Unreachable(why),
                    refused @ (SchemaError::TooNew { .. } | SchemaError::ServerTooOld { .. }) => {
                        Failure::Refused(refused)
                    }
                })?;
                if found < CURRENT_SCHEMA_VERSION {
                    tracing::info!(store = %self.target, from = found, to = CURRENT_SCHEMA_VERSION, "PostgreSQL schema migrated");
                }
                self.shared.ready.store(true, Ordering::Release);
            }
            client
                .batch_execute(LISTEN)
                .await
                .map_err(classify)?;
            self.shared.reachable.store(true, Ordering::Release);
            if was_failing {
                tracing::info!(store = %self.target, "PostgreSQL reached again");
            }
            // Prepared once for the connection: each wake-up is then a round trip a
            // statement, not a prepare, an execute and a close.
            let statements = CatchUp::prepare(&client).await.map_err(classify)?;
            loop {
                self.catch_up(&client, &statements)
                    .await
                    .map_err(classify)?;
                // The open returns once the heads are the feed's: a subscriber from then on
                // starts from where the feed is.
                if let Some(first) = self.first.take() {
                    let _ = first.send(Ok(()));
                }
                tokio::select! {
                    () = wake.notified() => {}
                    why = &mut driver => return Err::<(), _>(Failure::Unreachable(
                        why.unwrap_or_else(|err| err.to_string()),
                    )),
                }
            }
        }
        .await;
        let followed = self.shared.reachable.load(Ordering::Acquire);
        match failure {
            Err(failure) => (failure, followed),
            Ok(()) => (
                Failure::Unreachable("the connection ended".into()),
                followed,
            ),
        }
    }

    /// Moves this daemon's heads to the feed's, waking the organizations whose feeds
    /// gained events since the last catch-up.
    async fn catch_up(
        &mut self,
        client: &Client,
        statements: &CatchUp,
    ) -> Result<(), tokio_postgres::Error> {
        let head: i64 = client.query_one(&statements.head, &[]).await?.get(0);
        let head = u64::try_from(head).unwrap_or_default();
        let heads = &self.shared.heads;
        match self.cursor {
            None => heads.announce(&Announcement {
                last: Some(head),
                orgs: Vec::new(),
                sealed: None,
            }),
            Some(cursor) if head <= cursor => {}
            Some(cursor) if head - cursor > CATCH_UP_BY_ORG => heads.announce_everywhere(head),
            Some(cursor) => {
                let orgs = client
                    .query(&statements.orgs, &[&bound(cursor), &bound(head)])
                    .await?
                    .into_iter()
                    .map(|row| row.get(0))
                    .collect();
                heads.announce(&Announcement {
                    last: Some(head),
                    orgs,
                    sealed: None,
                });
            }
        }
        self.cursor = Some(head);
        Ok(())
    }
}

/// The statements of a catch-up, prepared on the follower's connection.
struct CatchUp {
    /// The feed's head.
    head: Statement,
    /// The organizations whose feeds gained events in a range of the feed, and those
    /// renamed in it (whose feeds follow them to their new names).
    orgs: Statement,
}

impl CatchUp {
    async fn prepare(client: &Client) -> Result<CatchUp, tokio_postgres::Error> {
        Ok(CatchUp {
            head: client.prepare("SELECT seq FROM event_head").await?,
            orgs: client
                .prepare(
                    "SELECT org FROM org_events WHERE seq > $1 AND seq <= $2
                     UNION
                     SELECT previous_name FROM events
                     WHERE seq > $1 AND seq <= $2 AND kind = 'org.renamed'
                       AND previous_name IS NOT NULL",
                )
                .await?,
        })
    }
}

fn bound(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Whether `err` is the server out of reach (no answer, a lost connection, a server
/// starting or stopping, too many connections), which waiting mends, or a refusal
/// (credentials, a database that does not exist, missing rights), which it does not.
fn classify(err: tokio_postgres::Error) -> Failure {
    let transient = match err.code() {
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                ]
                .contains(code)
        }
        None => is_io(&err) || err.is_closed(),
    };
    if transient {
        Failure::Unreachable(super::Explained(&err).to_string())
    } else {
        Failure::Refused(SchemaError::Postgres(err))
    }
}

/// Whether an I/O error (refused, reset, timed out, no such socket) is behind `err`.
fn is_io(err: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}
