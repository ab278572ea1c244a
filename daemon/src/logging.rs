//! Logs: the journal under systemd, else stderr as text or JSON. Requests are logged with
//! the caller's uid and pid and the method; params never (they may hold a token).

use std::io::IsTerminal;

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
