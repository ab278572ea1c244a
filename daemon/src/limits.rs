//! What one client may hold: connections in total and per uid, how long a connection
//! may sit on a partial line, do nothing, or leave an answer unread, and how fast one uid
//! may change the store. A connection over a cap is answered `busy`, never silently
//! dropped. The last few slots of the total are kept for superusers (PostgreSQL's
//! `superuser_reserved_connections`), so that however many connections other uids hold,
//! root can still get in to look and repair.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use compartmentctl::wire::{ErrorKind, RpcError};

/// The limits, each a daemon flag.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_uid: usize,
    /// Of `max_connections`, how many only superusers may take.
    pub superuser_reserved_connections: usize,
    /// A request line must be complete this long after it started (slow-loris).
    pub line_timeout: Duration,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// An answer that cannot be written for this long (the client does not read) closes the
    /// connection.
    pub write_timeout: Duration,
    /// A feed whose subscriber has not had this many changes made since it subscribed is
    /// ended as behind.
    pub feed_max_lag: u64,
    /// How many feeds of one uid may replay what was written before they subscribed at
    /// once (superusers excepted).
    pub feed_replays_per_uid: usize,
    /// How many feeds may replay at once, from everyone together (superusers excepted).
    pub feed_replays: usize,
    /// Changes one uid may make a second, on average (superusers: no limit).
    pub max_changes_per_sec: u32,
    /// Changes one uid may make at once after a quiet while.
    pub changes_burst: u32,
    /// Free space the state directory's filesystem keeps for superusers: below it, other
    /// uids' changes are refused.
    pub min_free_space: u64,
}

/// The default of `--max-changes-per-sec`: a script inviting users one by one is never
/// slowed within [`DEFAULT_CHANGES_BURST`], and at this pace one uid's changes add a few
/// megabytes a minute to the database (about 400 bytes each: the record, its event, its
/// audit record), not the 1.1 GB a minute of an unlimited flood.
pub const DEFAULT_MAX_CHANGES_PER_SEC: u32 = 20;

/// The default of `--changes-burst`: a bulk invitation of a few hundred users goes through
/// at full speed.
pub const DEFAULT_CHANGES_BURST: u32 = 500;

/// The default of `--min-free-space`: room for superusers to repair, and for the database
/// to grow a few regions, once other uids' changes stop.
pub const DEFAULT_MIN_FREE_SPACE: u64 = 256 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_connections_per_uid: 64,
            superuser_reserved_connections: 3,
            line_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(10),
            feed_max_lag: 10_000,
            feed_replays_per_uid: 4,
            feed_replays: 32,
            max_changes_per_sec: DEFAULT_MAX_CHANGES_PER_SEC,
            changes_burst: DEFAULT_CHANGES_BURST,
            min_free_space: DEFAULT_MIN_FREE_SPACE,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `--max-connections` were open.
    Full,
    /// Only the slots kept for superusers were left.
    Reserved,
    /// Its uid held `--max-connections-per-uid` already.
    PerUid,
    /// The process was out of file descriptors.
    OutOfDescriptors,
    /// Its peer credentials could not be read.
    NoCredentials,
}

impl Refused {
    /// The cause as the metrics label it.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Full => "max_connections",
            Refused::Reserved => "superuser_reserved",
            Refused::PerUid => "max_connections_per_uid",
            Refused::OutOfDescriptors => "out_of_descriptors",
            Refused::NoCredentials => "no_credentials",
        }
    }
}

/// Counts open connections, in total and per uid.
#[derive(Debug)]
pub struct Slots {
    limits: Limits,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_uid: HashMap<u32, usize>,
}

/// One open connection's place; it is given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    uid: u32,
}

impl Slots {
    pub fn new(limits: Limits) -> Arc<Slots> {
        Arc::new(Slots {
            limits,
            open: Mutex::new(Open::default()),
        })
    }

    /// Takes a slot for a connection from `uid`, or says why there is none. Superusers may
    /// take the reserved slots too; everyone else stops short of them.
    pub fn take(self: &Arc<Slots>, uid: u32, superuser: bool) -> Result<Slot, (Refused, RpcError)> {
        // The counts stay consistent even if a holder panicked: recover the guard.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let max = self.limits.max_connections;
        if open.total >= max {
            return Err((
                Refused::Full,
                RpcError::new(
                    ErrorKind::Busy,
                    format!("compartmentd is serving its maximum of {max} connections"),
                )
                .with_hint("retry in a moment"),
            ));
        }
        let reserved = self.limits.superuser_reserved_connections;
        if !superuser && open.total >= max.saturating_sub(reserved) {
            return Err((
                Refused::Reserved,
                RpcError::new(
                    ErrorKind::Busy,
                    format!(
                        "compartmentd is serving its maximum of {max} connections ({reserved} of them kept for superusers)"
                    ),
                )
                .with_hint("retry in a moment"),
            ));
        }
        let mine = open.per_uid.entry(uid).or_insert(0);
        if *mine >= self.limits.max_connections_per_uid {
            return Err((
                Refused::PerUid,
                RpcError::new(
                    ErrorKind::Busy,
                    format!(
                        "uid {uid} already holds {} connections, the most one user may",
                        self.limits.max_connections_per_uid
                    ),
                )
                .with_hint("close idle connections, then retry"),
            ));
        }
        *mine += 1;
        open.total += 1;
        Ok(Slot {
            slots: self.clone(),
            uid,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.per_uid.get_mut(&self.uid) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                open.per_uid.remove(&self.uid);
            }
        }
    }
}

/// How fast each uid may change the store: a token bucket per uid, holding up to `burst`
/// changes and refilled at `per_sec`. Every change asked for takes a token, whether the
/// rules then accept or refuse it: a refused change costs the writer about as much.
///
/// A full bucket says nothing a fresh one would not, so full buckets are dropped whenever
/// the map has doubled since it was last trimmed: it holds the uids that changed something
/// in the last `burst / per_sec` seconds, not every uid ever seen.
#[derive(Debug)]
pub struct ChangeRate {
    per_sec: u32,
    burst: u32,
    buckets: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    by_uid: HashMap<u32, Bucket>,
    /// The map's size at which full buckets are next dropped.
    trim_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The fewest buckets kept before any is dropped.
const MIN_TRIM_AT: usize = 64;

/// A change refused for going faster than [`ChangeRate`] allows, and when one would be
/// accepted again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverRate {
    pub per_sec: u32,
    pub burst: u32,
    pub retry_in: Duration,
}

impl ChangeRate {
    pub fn new(per_sec: u32, burst: u32) -> ChangeRate {
        ChangeRate {
            per_sec: per_sec.max(1),
            burst: burst.max(1),
            buckets: Mutex::new(Buckets {
                by_uid: HashMap::new(),
                trim_at: MIN_TRIM_AT,
            }),
        }
    }

    /// Takes one change from `uid`'s bucket at `now`, or says when there will be one.
    pub fn take(&self, uid: u32, now: Instant) -> Result<(), OverRate> {
        let (per_sec, burst) = (f64::from(self.per_sec), f64::from(self.burst));
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.by_uid.len() >= buckets.trim_at && !buckets.by_uid.contains_key(&uid) {
            buckets
                .by_uid
                .retain(|_, bucket| bucket.refilled(now, per_sec, burst).tokens < burst);
            buckets.trim_at = (2 * buckets.by_uid.len()).max(MIN_TRIM_AT);
        }
        let bucket = buckets.by_uid.entry(uid).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        *bucket = bucket.refilled(now, per_sec, burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / per_sec;
        Err(OverRate {
            per_sec: self.per_sec,
            burst: self.burst,
            // Whole milliseconds, rounded up: retrying after that many is never too soon.
            retry_in: Duration::from_millis((wait * 1000.0).ceil() as u64),
        })
    }

    /// How many uids have a bucket now.
    #[cfg(test)]
    fn buckets(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_uid
            .len()
    }
}

impl Bucket {
    /// The bucket at `now`, refilled for the time since it was last looked at. A `now`
    /// before that (callers read the clock before taking the lock) refills nothing.
    fn refilled(self, now: Instant, per_sec: f64, burst: f64) -> Bucket {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        Bucket {
            tokens: (self.tokens + elapsed * per_sec).min(burst),
            at: self.at.max(now),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn caps_hold_per_uid_and_in_total_and_slots_come_back() {
        let slots = Slots::new(Limits {
            max_connections: 3,
            max_connections_per_uid: 2,
            superuser_reserved_connections: 0,
            ..Limits::default()
        });
        let a1 = slots.take(1, false).unwrap();
        let _a2 = slots.take(1, false).unwrap();
        let (cause, err) = slots.take(1, false).unwrap_err();
        assert_eq!(cause, Refused::PerUid);
        assert_eq!(err.kind(), ErrorKind::Busy);
        assert_eq!(
            err.message,
            "uid 1 already holds 2 connections, the most one user may"
        );
        let _b1 = slots.take(2, false).unwrap();
        let (cause, err) = slots.take(3, false).unwrap_err();
        assert_eq!(cause, Refused::Full);
        assert_eq!(
            err.message,
            "compartmentd is serving its maximum of 3 connections"
        );
        drop(a1);
        let _a3 = slots.take(1, false).unwrap();
    }

    #[test]
    fn reserved_slots_are_for_superusers_only() {
        let slots = Slots::new(Limits {
            max_connections: 4,
            max_connections_per_uid: 10,
            superuser_reserved_connections: 2,
            ..Limits::default()
        });
        let _others: Vec<Slot> = (0..2)
            .map(|uid| slots.take(uid + 1000, false).unwrap())
            .collect();
        let (cause, err) = slots.take(1002, false).unwrap_err();
        assert_eq!(cause, Refused::Reserved);
        assert_eq!(err.kind(), ErrorKind::Busy);
        assert_eq!(
            err.message,
            "compartmentd is serving its maximum of 4 connections (2 of them kept for superusers)"
        );
        let _root = slots.take(0, true).unwrap();
        let _daemon_user = slots.take(999, true).unwrap();
        let (_, err) = slots.take(0, true).unwrap_err();
        assert_eq!(
            err.message,
            "compartmentd is serving its maximum of 4 connections"
        );
    }

    #[test]
    fn a_uid_gets_its_burst_then_its_rate() {
        let rate = ChangeRate::new(10, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            rate.take(1000, t0).unwrap();
        }
        let over = rate.take(1000, t0).unwrap_err();
        assert_eq!(
            over,
            OverRate {
                per_sec: 10,
                burst: 3,
                retry_in: Duration::from_millis(100),
            }
        );
        // Refused changes take nothing: a tenth of a second later one more goes through.
        assert_eq!(
            rate.take(1000, t0 + Duration::from_millis(40))
                .unwrap_err()
                .retry_in,
            Duration::from_millis(60)
        );
        rate.take(1000, t0 + Duration::from_millis(100)).unwrap();
        assert!(rate.take(1000, t0 + Duration::from_millis(100)).is_err());
        // Another uid has a bucket of its own.
        rate.take(1001, t0).unwrap();
        // A long quiet refills the bucket to its burst, no more.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            rate.take(1000, later).unwrap();
        }
        assert!(rate.take(1000, later).is_err());
    }

    #[test]
    fn a_sustained_flood_gets_the_rate_and_no_more() {
        let rate = ChangeRate::new(20, 500);
        let t0 = Instant::now();
        // Ten thousand changes a second for thirty seconds, one every 100 µs.
        let accepted = (0..300_000u64)
            .filter(|i| rate.take(7, t0 + Duration::from_micros(i * 100)).is_ok())
            .count();
        assert!(
            (500 + 20 * 30 - 1..=500 + 20 * 30).contains(&accepted),
            "{accepted}"
        );
    }

    #[test]
    fn full_buckets_are_dropped_so_the_map_stays_small() {
        let rate = ChangeRate::new(10, 5);
        let t0 = Instant::now();
        for uid in 0..10_000 {
            rate.take(uid, t0 + Duration::from_secs(u64::from(uid)))
                .unwrap();
        }
        // Each bucket is full again half a second after its one change: at most the map's
        // trim size are ever held.
        assert!(rate.buckets() <= MIN_TRIM_AT, "{}", rate.buckets());
        // A bucket that is not full is kept, however many others come and go.
        let busy = t0 + Duration::from_secs(20_000);
        for _ in 0..5 {
            rate.take(99_999, busy).unwrap();
        }
        for uid in 0..1000 {
            rate.take(uid, busy + Duration::from_micros(40 * u64::from(uid)))
                .unwrap();
        }
        assert!(rate.take(99_999, busy + Duration::from_millis(50)).is_err());
    }
}
