//! Retention: what is older than `--audit-retention` leaves the audit log and the change
//! feed, at each checkpoint interval, behind a checkpoint signed of the last record pruned
//! (`rules::audit::prune` says what goes; this is its timer).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::checkpoint::Keeper;
use crate::writer::Writer;

/// How long the audit log and the feed keep what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Forever,
    For(Duration),
}

/// The shortest retention: less would prune what an operator has not yet had a day to
/// copy away.
pub const MIN_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// `--audit-retention`: a duration of at least [`MIN_RETENTION`], or `forever`.
pub fn parse(text: &str) -> Result<Retention, String> {
    if text == "forever" {
        return Ok(Retention::Forever);
    }
    let duration = humantime::parse_duration(text)
        .map_err(|err| format!("{err} (a duration such as 365days, or forever)"))?;
    if duration < MIN_RETENTION {
        return Err("must be at least a day (1day), or forever".into());
    }
    Ok(Retention::For(duration))
}

/// Every [`Keeper::interval`], prunes what `retention` no longer keeps. Ends when `stop`
/// is cancelled; does nothing when the retention is forever.
pub async fn keep(
    keeper: Arc<Keeper>,
    retention: Retention,
    writer: Writer,
    stop: CancellationToken,
) {
    let Retention::For(kept) = retention else {
        return;
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(keeper.interval) => {}
            () = stop.cancelled() => return,
        }
        prune(&keeper, &writer, kept).await;
    }
}

/// Prunes what is older than `kept`, a batch a transaction until none is left.
async fn prune(keeper: &Arc<Keeper>, writer: &Writer, kept: Duration) {
    let kept = u64::try_from(kept.as_millis()).unwrap_or(u64::MAX);
    loop {
        let audit = keeper.clone();
        let pruned = writer
            .write(move |txn, now| {
                crate::rules::audit::prune(txn, &audit.signer, now.saturating_sub(kept), now)
            })
            .await;
        match pruned {
            Ok(pruned) if pruned.is_empty() => return,
            Ok(pruned) => {
                tracing::info!(
                    records = ?pruned.records,
                    events = ?pruned.events,
                    "pruned what is older than the retention"
                );
                if let Some((seq, hash)) = pruned.head {
                    keeper.saw(seq, hash);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot prune the audit log and the feed");
                return;
            }
        }
    }
}
