//! The daemon's metrics in Prometheus' text format (version 0.0.4, what node_exporter's
//! textfile collector and `promtool check metrics` read): requests by method and outcome
//! with their latency, connections and why they were refused, the writer's batches and
//! commits, the sweeper, the feed's subscribers and how far behind they are, the store.
//! `admin.metrics` answers the text on the socket; with `--metrics-textfile` it is also
//! written to a file at an interval, replaced atomically, for the textfile collector.
//!
//! What a request pays: one counter's increment and one histogram's observation, on
//! handles made when the daemon starts; a labelled counter is looked up only for an
//! error. Labels come from the protocol's fixed vocabularies (method names, error kinds),
//! never from what a client sent, so no caller can grow the set of series; and none names
//! an organization or a person, so the text tells a reader no tenant's business. What the
//! daemon already keeps (open connections, the queue, the last sweep) is read when the
//! text is made, and costs the requests nothing.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use compartmentctl::wire::{ErrorKind, METHODS};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tokio_util::sync::CancellationToken;

pub use crate::limits::Refused;

/// The media type of the text, as Prometheus names it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The method label of a request line that did not decode into any method.
const UNDECODED: &str = "(undecoded)";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cause {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: &'static str,
}

/// One method's handles, made at start: its successes and its latency.
struct PerMethod {
    ok: Counter,
    seconds: Histogram,
}

/// The writer's histograms, for the daemon's metrics: how many changes each batch carried
/// and how long its durable commit took.
#[derive(Clone, Debug)]
pub struct WriterMetrics {
    pub batch_changes: Histogram,
    pub commit_seconds: Histogram,
}

impl Default for WriterMetrics {
    fn default() -> WriterMetrics {
        WriterMetrics {
            // 1, 2, 4 … `crate::writer::MAX_BATCH`.
            batch_changes: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            // 100 µs doubling to about 3.3 s.
            commit_seconds: Histogram::new(exponential_buckets(100e-6, 2.0, 16)),
        }
    }
}

/// What the daemon keeps elsewhere, read when the text is made.
#[derive(Debug, Clone, Default)]
pub struct Pulled {
    pub uptime: Duration,
    pub connections_open: u64,
    pub writer_queue: u64,
    /// Changes the writer has committed, ever (this run).
    pub writer_changes: u64,
    /// When the sweeper last committed (Unix seconds), and invitations it has expired.
    pub last_sweep_at: Option<f64>,
    pub swept: u64,
    pub feed_head: u64,
    /// The database file's size, for the embedded store.
    pub store_bytes: Option<u64>,
    pub store_reachable: bool,
    /// PostgreSQL: write transactions refused as conflicting and run again.
    pub store_conflicts: Option<u64>,
}

/// Every metric the daemon keeps, and the registry that writes them out.
pub struct Metrics {
    registry: Registry,
    /// Looked up by every request: foldhash, not SipHash, for a key no client chooses.
    per_method: HashMap<&'static str, PerMethod, foldhash::fast::RandomState>,
    outcomes: Family<Outcome, Counter>,
    accepted: Counter,
    refused: Family<Cause, Counter>,
    feed: Feed,
    pulled: PulledHandles,
    /// One writer of the pulled values at a time: counters advanced by a difference must
    /// not be advanced twice by two texts made at once.
    making: Mutex<()>,
}

/// The change feed's subscribers and how far behind they are, together.
#[derive(Clone, Default)]
pub struct Feed {
    subscribers: Gauge,
    behind: Gauge,
}

/// One subscriber's part in [`Feed`]: counted while it lives, its lag updated as it reads.
pub struct Subscribed {
    feed: Feed,
    behind: i64,
}

impl Feed {
    /// A subscriber begins.
    pub fn subscribe(&self) -> Subscribed {
        self.subscribers.inc();
        Subscribed {
            feed: self.clone(),
            behind: 0,
        }
    }
}

impl Subscribed {
    /// The subscriber is now `behind` changes behind the newest.
    pub fn behind(&mut self, behind: u64) {
        let behind = i64::try_from(behind).unwrap_or(i64::MAX);
        self.feed.behind.inc_by(behind - self.behind);
        self.behind = behind;
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.feed.behind.dec_by(self.behind);
        self.feed.subscribers.dec();
    }
}

struct PulledHandles {
    uptime: Gauge<f64, AtomicU64>,
    connections_open: Gauge,
    writer_queue: Gauge,
    writer_changes: Counter,
    last_sweep: Gauge<f64, AtomicU64>,
    swept: Counter,
    feed_head: Gauge,
    store_bytes: Gauge,
    store_reachable: Gauge,
    store_conflicts: Counter,
}

/// The latency buckets: 25 µs doubling to about 3.3 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(25e-6, 2.0, 18)
}

impl Metrics {
    /// The metrics of a daemon whose writer keeps `writer`'s histograms; the database
    /// file's size only for the `embedded` store.
    pub fn new(writer: WriterMetrics, embedded: bool) -> Metrics {
        let mut root = Registry::with_prefix("compartment");
        let build = Family::<Build, Gauge>::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        root.register(
            "build_info",
            "The daemon's version, as a label; always 1",
            build,
        );
        let outcomes = Family::<Outcome, Counter>::default();
        root.register(
            "requests",
            "Requests answered, by method and outcome (ok, or the error's kind)",
            outcomes.clone(),
        );
        let latency = Family::<MethodLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(latency_buckets())) as fn() -> Histogram,
        );
        root.register_with_unit(
            "request_duration",
            "Time from a request's decoding to its answer, by method",
            Unit::Seconds,
            latency.clone(),
        );
        let per_method = METHODS
            .iter()
            .chain([UNDECODED].iter())
            .map(|&method| {
                let ok = outcomes
                    .get_or_create(&Outcome {
                        method,
                        outcome: "ok",
                    })
                    .clone();
                let seconds = latency.get_or_create(&MethodLabel { method }).clone();
                (method, PerMethod { ok, seconds })
            })
            .collect();
        let accepted = Counter::default();
        root.register(
            "connections_accepted",
            "Connections given a slot",
            accepted.clone(),
        );
        let refused = Family::<Cause, Counter>::default();
        root.register(
            "connections_refused",
            "Connections refused, by cause",
            refused.clone(),
        );
        let pulled = PulledHandles {
            uptime: Gauge::default(),
            connections_open: Gauge::default(),
            writer_queue: Gauge::default(),
            writer_changes: Counter::default(),
            last_sweep: Gauge::default(),
            swept: Counter::default(),
            feed_head: Gauge::default(),
            store_bytes: Gauge::default(),
            store_reachable: Gauge::default(),
            store_conflicts: Counter::default(),
        };
        root.register_with_unit(
            "uptime",
            "Time since the daemon began serving",
            Unit::Seconds,
            pulled.uptime.clone(),
        );
        root.register(
            "connections_open",
            "Connections open now",
            pulled.connections_open.clone(),
        );
        root.register(
            "writer_queue",
            "Changes waiting for the writer now",
            pulled.writer_queue.clone(),
        );
        root.register(
            "writer_changes",
            "Changes the writer has committed",
            pulled.writer_changes.clone(),
        );
        root.register(
            "writer_batch_changes",
            "Changes per batch the writer committed together",
            writer.batch_changes,
        );
        root.register_with_unit(
            "writer_commit_duration",
            "Time of each batch's durable commit",
            Unit::Seconds,
            writer.commit_seconds,
        );
        root.register(
            "sweeper_last_run_timestamp_seconds",
            "When the sweeper last committed, in seconds since the Unix epoch (0: not yet)",
            pulled.last_sweep.clone(),
        );
        root.register(
            "sweeper_expired",
            "Invitations the sweeper has expired",
            pulled.swept.clone(),
        );
        let feed = Feed::default();
        root.register(
            "feed_subscribers",
            "Connections carrying the change feed now",
            feed.subscribers.clone(),
        );
        root.register(
            "feed_behind_changes",
            "Changes made and not yet sent, summed over the feed's subscribers",
            feed.behind.clone(),
        );
        root.register(
            "feed_head",
            "The newest change's sequence number",
            pulled.feed_head.clone(),
        );
        if embedded {
            root.register_with_unit(
                "store_size",
                "The database file's size",
                Unit::Bytes,
                pulled.store_bytes.clone(),
            );
        }
        root.register(
            "store_reachable",
            "1 while the store answers, 0 while it is out of reach",
            pulled.store_reachable.clone(),
        );
        if !embedded {
            root.register(
                "store_conflicts",
                "Write transactions PostgreSQL refused as conflicting, run again",
                pulled.store_conflicts.clone(),
            );
        }
        Metrics {
            registry: root,
            per_method,
            outcomes,
            accepted,
            refused,
            feed,
            pulled,
            making: Mutex::new(()),
        }
    }

    /// A request of `method` answered `outcome` (`None`: ok) after `elapsed`.
    pub fn request(&self, method: &'static str, outcome: Option<ErrorKind>, elapsed: Duration) {
        let Some(handles) = self.per_method.get(method) else {
            return;
        };
        handles.seconds.observe(elapsed.as_secs_f64());
        match outcome {
            None => {
                handles.ok.inc();
            }
            Some(kind) => {
                self.outcomes
                    .get_or_create(&Outcome {
                        method,
                        outcome: kind.as_str(),
                    })
                    .inc();
            }
        }
    }

    /// A request line that decoded into no method, refused with `kind`.
    pub fn undecoded(&self, kind: ErrorKind) {
        self.outcomes
            .get_or_create(&Outcome {
                method: UNDECODED,
                outcome: kind.as_str(),
            })
            .inc();
    }

    /// A connection was given a slot.
    pub fn accepted(&self) {
        self.accepted.inc();
    }

    /// A connection was refused.
    pub fn refused(&self, cause: Refused) {
        self.refused
            .get_or_create(&Cause {
                cause: cause.label(),
            })
            .inc();
    }

    /// The feed's subscribers, for each feed to count itself in.
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// The text of every metric, `pulled` read just now.
    pub fn render(&self, pulled: &Pulled) -> String {
        let _one = self.making.lock().unwrap_or_else(PoisonError::into_inner);
        let handles = &self.pulled;
        handles.uptime.set(pulled.uptime.as_secs_f64());
        handles.connections_open.set(gauge(pulled.connections_open));
        handles.writer_queue.set(gauge(pulled.writer_queue));
        advance(&handles.writer_changes, pulled.writer_changes);
        handles.last_sweep.set(pulled.last_sweep_at.unwrap_or(0.0));
        advance(&handles.swept, pulled.swept);
        handles.feed_head.set(gauge(pulled.feed_head));
        handles
            .store_bytes
            .set(gauge(pulled.store_bytes.unwrap_or(0)));
        handles
            .store_reachable
            .set(i64::from(pulled.store_reachable));
        advance(
            &handles.store_conflicts,
            pulled.store_conflicts.unwrap_or(0),
        );
        let mut text = String::with_capacity(64 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Moves `counter` up to `total`, a count kept elsewhere that only grows.
fn advance(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// Writes `text` to `path` atomically: into a new temporary file beside it (a name nobody
/// can guess, created exclusively, so a link planted in a shared directory is never
/// followed), flushed, then renamed over it, so that a collector reading at any moment
/// reads a whole text. Readable by everyone (the collector runs as its own user); it names
/// no organization or person.
pub fn write_textfile(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // The collector reads `*.prom` only: a file in the making is not one.
    let mut file = tempfile::Builder::new()
        .prefix(".compartmentd-metrics-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    // Created 0600; the daemon's umask may be stricter still.
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    file.write_all(text.as_bytes())?;
    file.as_file().sync_data()?;
    file.persist(path).map_err(|err| err.error)?;
    Ok(())
}

/// Writes the metrics to `path` every `interval` until `stop`, and once more as the
/// daemon stops. A failure is logged (the first of a run of them, and the recovery).
pub async fn keep_textfile(
    path: PathBuf,
    interval: Duration,
    text: impl Fn() -> String + Send + 'static,
    stop: CancellationToken,
) {
    let mut failing = false;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            _ = ticks.tick() => false,
        };
        let contents = text();
        let target = path.clone();
        let written = tokio::task::spawn_blocking(move || write_textfile(&target, &contents))
            .await
            .unwrap_or_else(|err| Err(std::io::Error::other(err)));
        match written {
            Err(err) if !failing => {
                failing = true;
                tracing::warn!(path = %path.display(), error = %err, "cannot write the metrics textfile");
            }
            Ok(()) if failing => {
                failing = false;
                tracing::info!(path = %path.display(), "writing the metrics textfile again");
            }
            _ => {}
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn metrics() -> Metrics {
        Metrics::new(WriterMetrics::default(), true)
    }

    #[test]
    fn requests_are_counted_by_method_and_outcome() {
        let metrics = metrics();
        metrics.request("whoami", None, Duration::from_micros(40));
        metrics.request("whoami", None, Duration::from_micros(40));
        metrics.request(
            "user.invite",
            Some(ErrorKind::Forbidden),
            Duration::from_millis(2),
        );
        metrics.request("no.such.method", None, Duration::ZERO);
        let text = metrics.render(&Pulled::default());
        assert!(
            text.contains("compartment_requests_total{method=\"whoami\",outcome=\"ok\"} 2\n"),
            "{text}"
        );
        assert!(text.contains(
            "compartment_requests_total{method=\"user.invite\",outcome=\"forbidden\"} 1\n"
        ));
        assert!(text.contains("compartment_request_duration_seconds_count{method=\"whoami\"} 2\n"));
        assert!(text.contains(
            "compartment_request_duration_seconds_bucket{method=\"whoami\",le=\"5e-05\"} 2\n"
        ));
        // A name no method has makes no series.
        assert!(!text.contains("no.such.method"));
    }

    #[test]
    fn pulled_counters_only_grow_and_gauges_follow() {
        let metrics = metrics();
        let mut pulled = Pulled {
            writer_changes: 5,
            connections_open: 3,
            ..Pulled::default()
        };
        metrics.render(&pulled);
        pulled.writer_changes = 7;
        pulled.connections_open = 1;
        let text = metrics.render(&pulled);
        assert!(
            text.contains("compartment_writer_changes_total 7\n"),
            "{text}"
        );
        assert!(text.contains("compartment_connections_open 1\n"));
    }

    #[test]
    fn a_feed_counts_its_subscribers_and_their_lag() {
        let metrics = metrics();
        let mut one = metrics.feed().subscribe();
        let mut two = metrics.feed().subscribe();
        one.behind(10);
        two.behind(5);
        one.behind(3);
        let text = metrics.render(&Pulled::default());
        assert!(text.contains("compartment_feed_subscribers 2\n"), "{text}");
        assert!(text.contains("compartment_feed_behind_changes 8\n"));
        drop(one);
        let text = metrics.render(&Pulled::default());
        assert!(text.contains("compartment_feed_subscribers 1\n"));
        assert!(text.contains("compartment_feed_behind_changes 5\n"));
    }

    #[test]
    fn the_textfile_is_replaced_whole_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compartmentd.prom");
        write_textfile(&path, "a 1\n").unwrap();
        write_textfile(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["compartmentd.prom"]);
    }

    /// A link planted where the file goes is replaced, never followed: the daemon (root,
    /// outside the packaged unit) writes nowhere but the file it was told.
    #[test]
    fn a_planted_link_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let path = dir.path().join("compartmentd.prom");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_textfile(&path, "a 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 1\n");
    }
}
