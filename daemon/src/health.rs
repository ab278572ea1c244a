//! Whether the daemon is making progress, told to systemd: `WATCHDOG=1` only while the
//! accept loop and the writer both move, so that a wedged one gets the daemon restarted
//! (the unit's `WatchdogSec=`), and `STATUS=` with the connections and the last commit for
//! `systemctl status`.
//!
//! - The accept loop beats at every turn and at least every [`Health::beat_every`] while it
//!   waits: a beat older than half the watchdog's interval means it is not being run.
//! - The writer is expected to move while a change waits or a batch is being applied; it
//!   has stalled when, so expected, it has neither taken nor finished a batch for half the
//!   interval (a change queued into an empty queue restarts the count, so a writer idle for
//!   an hour is not taken for stalled by the change that wakes it).
//!
//! Half the interval, and a ping every quarter: one missed ping is no restart, and a stall
//! is acted on within the interval and a half.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::status::Moment;

/// The accept loop's beat.
#[derive(Debug)]
pub struct Beat(Moment);

impl Default for Beat {
    fn default() -> Beat {
        let beat = Beat(Moment::new(Instant::now()));
        beat.0.mark();
        beat
    }
}

impl Beat {
    pub fn beat(&self) {
        self.0.mark();
    }

    fn age(&self) -> Duration {
        self.0.age()
    }
}

/// What the daemon tells systemd, and how often.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    /// systemd's `WATCHDOG_USEC`: pings are due within it. None: no watchdog, `STATUS=`
    /// only.
    pub watchdog: Option<Duration>,
}

/// How often `STATUS=` is told without a watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(10);

impl Health {
    /// How often the accept loop beats while it waits.
    pub fn beat_every(self) -> Duration {
        self.tick()
    }

    /// A ping every quarter of the interval.
    fn tick(self) -> Duration {
        self.watchdog.map_or(STATUS_EVERY, |interval| {
            (interval / 4).max(Duration::from_millis(50))
        })
    }

    /// Longer than this without a move is a stall.
    fn patience(self) -> Duration {
        self.watchdog.map_or(Duration::MAX, |interval| interval / 2)
    }
}

/// What the watchdog reads of the daemon each turn.
pub struct Watched {
    pub beat: Arc<Beat>,
    pub writer: crate::writer::Writer,
    pub slots: Arc<crate::limits::Slots>,
}

/// The daemon's state as one `STATUS=` line, and whether it is making progress.
fn judge(health: Health, watched: &Watched) -> (bool, String) {
    let connections = watched.slots.open();
    let last = match watched.writer.last_batch() {
        Some(batch) => format!(
            "last commit {} ({} change{}, {:.1} ms)",
            crate::clock::rfc3339(batch.at),
            batch.count,
            if batch.count == 1 { "" } else { "s" },
            batch.micros as f64 / 1000.0
        ),
        None => "no commit yet".to_owned(),
    };
    let mut status = format!(
        "serving; {connections} connection{}; {last}",
        if connections == 1 { "" } else { "s" }
    );
    let patience = health.patience();
    let mut moving = true;
    if let Some(stalled) = watched.writer.stalled_for() {
        if stalled > patience {
            moving = false;
            status = format!(
                "the writer has not moved for {} s with {} change(s) waiting; {status}",
                stalled.as_secs(),
                watched.writer.queued()
            );
        }
    }
    let beat = watched.beat.age();
    if beat > patience {
        moving = false;
        status = format!(
            "the accept loop has not run for {} s; {status}",
            beat.as_secs()
        );
    }
    (moving, status)
}

/// Tells systemd how the daemon is, every quarter of the watchdog's interval (or every
/// [`STATUS_EVERY`] without one), until `stop`: `STATUS=` always, `WATCHDOG=1` only while
/// both the accept loop and the writer are moving. Runs only under a service manager
/// (`NOTIFY_SOCKET` set).
pub async fn watch(health: Health, watched: Watched, stop: CancellationToken) {
    // The first after one tick: READY=1 goes first, alone.
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + health.tick(), health.tick());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_moving = true;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let (moving, status) = judge(health, &watched);
        if moving != was_moving {
            if moving {
                tracing::info!("moving again; the watchdog is pinged again");
            } else {
                tracing::error!(
                    "{status}: the watchdog is no longer pinged, so the service manager will restart the daemon"
                );
            }
            was_moving = moving;
        }
        let mut states = vec![sd_notify::NotifyState::Status(&status)];
        if moving && health.watchdog.is_some() {
            states.push(sd_notify::NotifyState::Watchdog);
        }
        if let Err(err) = sd_notify::notify(&states) {
            tracing::debug!(error = %err, "cannot notify the service manager");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Progress;

    #[test]
    fn an_idle_writer_is_never_stalled() {
        let progress = Progress::default();
        assert_eq!(progress.stalled_for(0), None);
    }

    #[test]
    fn a_writer_expected_to_move_counts_from_its_last_move() {
        let progress = Progress::default();
        progress.taken();
        std::thread::sleep(Duration::from_millis(30));
        assert!(progress
            .stalled_for(0)
            .is_some_and(|d| d >= Duration::from_millis(30)));
        progress.finished();
        assert_eq!(progress.stalled_for(0), None);
        // Queued and never taken: stalled from the moment it was queued.
        progress.woken();
        assert!(progress
            .stalled_for(1)
            .is_some_and(|d| d < Duration::from_millis(30)));
    }

    #[test]
    fn pings_come_four_times_an_interval_and_a_stall_is_half_of_one() {
        let health = Health {
            watchdog: Some(Duration::from_secs(30)),
        };
        assert_eq!(health.tick(), Duration::from_millis(7500));
        assert_eq!(health.patience(), Duration::from_secs(15));
        let without = Health { watchdog: None };
        assert_eq!(without.tick(), STATUS_EVERY);
        assert_eq!(without.patience(), Duration::MAX);
    }
}
