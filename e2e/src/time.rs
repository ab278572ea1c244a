//! Time and polling: the wall clock in seconds, RFC 3339 timestamps as the CLI prints them,
//! and waiting for a condition with a deadline.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64
}

/// Parses exactly `YYYY-MM-DDTHH:MM:SSZ`, the form the CLI prints, into seconds since the
/// epoch. Other RFC 3339 forms (fractions, offsets, a space for the `T`) are `None`, so
/// that a test parsing the CLI's output also checks its shape.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339(text).ok()?;
    // humantime accepts fractional seconds too; only the whole-second form round-trips.
    if humantime::format_rfc3339_seconds(time).to_string() != text {
        return None;
    }
    let seconds = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(seconds).ok()
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_clis_rfc3339_form_only() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-05-01T12:00:00Z"), Some(1_777_636_800));
        assert_eq!(parse_rfc3339("2026-05-01 12:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-05-01T12:00:00+00:00"), None);
        assert_eq!(parse_rfc3339("2026-05-01T12:00:00.5Z"), None);
        assert_eq!(parse_rfc3339("2026-02-30T12:00:00Z"), None);
    }
}
