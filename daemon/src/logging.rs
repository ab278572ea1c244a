//! Logs: the journal under systemd, else stderr as text or JSON. Requests are logged with
//! the caller's uid and pid and the method; params never (they may hold a token). No client
//! can fill the disk through the log: strings from requests are clipped, and floods of one
//! kind of line are rate-limited with a count of what was left out.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// Installs the global subscriber. A journal that cannot be reached falls back to stderr
/// rather than stopping the daemon; the returned note says so.
pub fn init(format: LogFormat) -> Option<String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let want_journal = match format {
        LogFormat::Journald => true,
        LogFormat::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
        LogFormat::Text | LogFormat::Json => false,
    };
    let mut note = None;
    if want_journal {
        match tracing_journald::layer() {
            Ok(layer) => {
                // Fields go in as named (UID, PID, METHOD, ORG, OUTCOME), not F_-prefixed,
                // so `journalctl -u compartmentd METHOD=user.remove` reads naturally.
                let layer = layer
                    .with_syslog_identifier("compartmentd".into())
                    .with_field_prefix(None);
                if registry.with(layer).try_init().is_ok() {
                    return None;
                }
                return Some("a logger was already installed".into());
            }
            Err(err) => {
                note = Some(format!(
                    "the journal is unreachable ({err}); logging to stderr"
                ))
            }
        }
    }
    let result = if format == LogFormat::Json {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    if result.is_err() {
        note = Some("a logger was already installed".into());
    }
    note
}

/// The most characters of a request-supplied string (an organization name, say) a log line
/// carries: a request cannot make one log line longer than this.
pub const MAX_LOGGED_CHARS: usize = 64;

/// A request-supplied string as logs show it: at most [`MAX_LOGGED_CHARS`] characters,
/// control characters escaped, and a mark where it was cut. Borrowed when nothing needs
/// changing, so that each log layer records it as the plain string it is.
pub fn clip(text: &str) -> Cow<'_, str> {
    let fits = text.chars().count() <= MAX_LOGGED_CHARS;
    if fits && !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut clipped = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(MAX_LOGGED_CHARS) {
        if c.is_control() {
            clipped.extend(c.escape_default());
        } else {
            clipped.push(c);
        }
    }
    let rest = chars.count();
    if rest > 0 {
        clipped.push_str(&format!("…(+{rest} chars)"));
    }
    Cow::Owned(clipped)
}

/// How long a rate limit's window lasts, and how many events of one kind each window logs.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
pub const RATE_BURST: u32 = 20;
/// How many request lines of one ordinary uid each window logs: more than any person types,
/// far less than a script hammering the socket.
pub const REQUEST_BURST: u32 = 100;

/// Lets through at most `burst` events per window and counts the rest, so that a flood of
/// one kind of event (refused connections, failed accepts) costs a few lines per window
/// however fast it comes. The first event of a later window carries the count of those
/// left out before it.
#[derive(Debug)]
pub struct RateLimit {
    window: Duration,
    burst: u32,
    state: Mutex<RateState>,
}

#[derive(Debug, Default, Clone, Copy)]
struct RateState {
    window_start: Option<Instant>,
    passed: u32,
    suppressed: u64,
}

impl RateState {
    fn check(&mut self, now: Instant, window: Duration, burst: u32) -> Option<Suppressed> {
        let started = *self.window_start.get_or_insert(now);
        if now.duration_since(started) >= window {
            self.window_start = Some(now);
            self.passed = 0;
        }
        if self.passed >= burst {
            self.suppressed = self.suppressed.saturating_add(1);
            return None;
        }
        self.passed += 1;
        Some(Suppressed {
            count: std::mem::take(&mut self.suppressed),
            window,
        })
    }
}

/// How many events were left out before this one: shown as " (and N more in the last
/// 10s)" after a message, or nothing when none were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suppressed {
    pub count: u64,
    pub window: Duration,
}

impl std::fmt::Display for Suppressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.count > 0 {
            write!(
                f,
                " (and {} more in the last {})",
                self.count,
                humantime::format_duration(self.window)
            )?;
        }
        Ok(())
    }
}

impl RateLimit {
    pub const fn new(window: Duration, burst: u32) -> RateLimit {
        RateLimit {
            window,
            burst,
            state: Mutex::new(RateState {
                window_start: None,
                passed: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some` when this event may be logged (with the count left out before it), `None`
    /// when it is counted instead.
    pub fn check(&self) -> Option<Suppressed> {
        self.check_at(Instant::now())
    }

    pub fn check_at(&self, now: Instant) -> Option<Suppressed> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.check(now, self.window, self.burst)
    }
}

/// The per-request log lines of ordinary users, limited per uid: an unbound uid pinging or
/// sending garbage as fast as it can gets [`REQUEST_BURST`] lines per window, then one line
/// saying how many were left out. Superusers are never limited: they already hold
/// everything, and their requests are the audit trail of break-glass actions.
#[derive(Debug)]
pub struct RequestLogLimit {
    window: Duration,
    burst: u32,
    per_uid: Mutex<HashMap<u32, RateState>>,
}

/// Past this many tracked uids, the ones whose windows have ended are forgotten, so the map
/// cannot grow with the number of uids ever seen.
const TRACKED_UIDS: usize = 4096;

impl RequestLogLimit {
    pub fn new(window: Duration, burst: u32) -> RequestLogLimit {
        RequestLogLimit {
            window,
            burst,
            per_uid: Mutex::new(HashMap::new()),
        }
    }

    /// True when this request of `uid` may be logged; logs first how many of its requests
    /// were left out, when some were.
    pub fn allow(&self, uid: u32, superuser: bool) -> bool {
        if superuser {
            return true;
        }
        match self.check_at(uid, Instant::now()) {
            Some(Suppressed { count: 0, .. }) => true,
            Some(more) => {
                tracing::info!(
                    uid,
                    suppressed = more.count,
                    "request log lines of this uid left out{more}"
                );
                true
            }
            None => false,
        }
    }

    pub fn check_at(&self, uid: u32, now: Instant) -> Option<Suppressed> {
        let mut per_uid = self.per_uid.lock().unwrap_or_else(PoisonError::into_inner);
        if per_uid.len() >= TRACKED_UIDS && !per_uid.contains_key(&uid) {
            let window = self.window;
            per_uid.retain(|_, state| {
                state
                    .window_start
                    .is_some_and(|start| now.duration_since(start) < window)
            });
        }
        per_uid
            .entry(uid)
            .or_default()
            .check(now, self.window, self.burst)
    }
}

/// The one limit on request log lines, shared by every connection.
pub fn request_log_limit() -> &'static RequestLogLimit {
    static LIMIT: OnceLock<RequestLogLimit> = OnceLock::new();
    LIMIT.get_or_init(|| RequestLogLimit::new(RATE_WINDOW, REQUEST_BURST))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn long_and_control_strings_are_clipped() {
        assert!(matches!(clip("acme"), Cow::Borrowed("acme")));
        assert_eq!(clip("a\nb\u{1b}"), "a\\nb\\u{1b}");
        let long = "x".repeat(1000);
        assert_eq!(clip(&long), format!("{}…(+936 chars)", "x".repeat(64)));
    }

    #[test]
    fn a_flood_passes_a_burst_per_window_and_counts_the_rest() {
        let limit = RateLimit::new(Duration::from_secs(10), 3);
        let t0 = Instant::now();
        let passed: Vec<_> = (0..1000).filter_map(|_| limit.check_at(t0)).collect();
        assert_eq!(passed.len(), 3);
        assert!(passed.iter().all(|s| s.count == 0));
        assert_eq!(passed[0].to_string(), "");
        // Still inside the window: counted, not logged.
        assert_eq!(limit.check_at(t0 + Duration::from_secs(9)), None);
        let next = limit.check_at(t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(next.count, 998);
        assert_eq!(next.to_string(), " (and 998 more in the last 10s)");
        assert_eq!(
            limit.check_at(t0 + Duration::from_secs(10)).unwrap().count,
            0
        );
    }

    #[test]
    fn request_lines_are_limited_per_uid_and_never_for_superusers() {
        let limit = RequestLogLimit::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        assert!(limit.check_at(1000, t0).is_some());
        assert!(limit.check_at(1000, t0).is_some());
        assert!(limit.check_at(1000, t0).is_none());
        // Another uid has its own budget.
        assert!(limit.check_at(1001, t0).is_some());
        assert_eq!(
            limit
                .check_at(1000, t0 + Duration::from_secs(11))
                .unwrap()
                .count,
            1
        );
        assert!((0..100).all(|_| limit.allow(0, true)));
    }
}
