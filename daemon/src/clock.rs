//! Time as a parameter: the rules take `now` from a [`Clock`]; only `main` picks the real one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC: every time the daemon keeps or compares.
pub type Millis = u64;

/// Whether something due at `at` (an invitation's expiry, a spent token's end) is due at
/// `now`: at or before it. Every expiry in the daemon is judged by this one rule (ranges of
/// an index by an inclusive bound, `..=now`).
pub fn is_due(at: Millis, now: Millis) -> bool {
    at <= now
}

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now(&self) -> Millis;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to, for tests of expiry.
pub struct FakeClock(AtomicU64);

impl FakeClock {
    pub fn new(now: Millis) -> FakeClock {
        FakeClock(AtomicU64::new(now))
    }

    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// RFC 3339 in whole seconds, UTC: `2026-05-01T12:00:00Z`.
pub fn rfc3339(at: Millis) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(at)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_documentation_page() {
        assert_eq!(rfc3339(1_777_636_800_000), "2026-05-01T12:00:00Z");
    }

    /// Due at the very millisecond, not one before: an invitation expiring at 12:00:00.000
    /// is refused at 12:00:00.000 by the token check, the list and the sweeper alike.
    #[test]
    fn due_means_at_or_before_now() {
        assert!(is_due(1_000, 1_000));
        assert!(is_due(999, 1_000));
        assert!(!is_due(1_001, 1_000));
    }
}
