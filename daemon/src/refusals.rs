//! Refusals in the audit log. A refusal of an authenticated caller (a superuser, or a uid
//! whose binding holds) is a record of its own, as a change is. Anyone else's, and an
//! authenticated caller's beyond its rate, are counted, and each interval's counts written
//! as one record per uid, so that nobody can flood the log, or keep the writer busy, by
//! asking for what they may not have.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use compartmentctl::wire::{AuditActor, ErrorKind};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::limits::{ChangeRate, Limits};
use crate::rules::{audit, Caller};
use crate::store::Millis;
use crate::writer::Writer;

/// How often the counts are written: a minute's refusals of a uid are one record.
pub const COUNTED_EVERY: Duration = Duration::from_secs(60);

/// The uids whose refusals are counted apart within an interval; refusals of uids beyond
/// them are counted together, so the counts take bounded memory whoever asks.
pub const MAX_COUNTED_UIDS: usize = 1024;

/// The event key of a record of counted refusals.
pub const COUNTED_EVENT: &str = "access.refused";

/// What becomes of a refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// A record of its own.
    Record,
    /// Counted with the caller's other refusals.
    Count,
    /// Neither: the daemon failed, the caller was not refused.
    Neither,
}

/// A refusal's fate by its kind alone: the daemon's own failures are no refusal, and a
/// caller without an account, or over its rate, is only counted.
pub fn fate_of(kind: ErrorKind) -> Fate {
    match kind {
        ErrorKind::Internal | ErrorKind::Unavailable => Fate::Neither,
        ErrorKind::Unauthenticated | ErrorKind::Busy => Fate::Count,
        _ => Fate::Record,
    }
}

/// The refusals being counted, and the rate at which an authenticated caller's are
/// recorded one by one.
pub struct Refusals {
    rate: ChangeRate,
    tally: Mutex<Tally>,
}

#[derive(Default)]
struct Tally {
    /// When counting began, for the records' detail.
    since: Option<Millis>,
    by_uid: BTreeMap<u32, Count>,
    /// Uids beyond [`MAX_COUNTED_UIDS`], together.
    others: Count,
}

#[derive(Default)]
struct Count {
    user: Option<Arc<str>>,
    by_kind: BTreeMap<&'static str, u64>,
}

impl Count {
    fn add(&mut self, kind: ErrorKind) {
        *self.by_kind.entry(kind.as_str()).or_default() += 1;
    }

    fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    /// `12 (unauthenticated 10, forbidden 2)`.
    fn describe(&self) -> String {
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        format!("{} ({})", self.total(), kinds.join(", "))
    }
}

impl Refusals {
    /// Records one by one at the rate changes are admitted (`--max-changes-per-sec`).
    pub fn new(limits: &Limits) -> Refusals {
        Refusals {
            rate: ChangeRate::new(limits.max_changes_per_sec, limits.changes_burst),
            tally: Mutex::new(Tally::default()),
        }
    }

    /// Whether `caller`'s refusal may be a record of its own now: a superuser's always.
    pub fn may_record(&self, caller: &Caller) -> bool {
        caller.superuser || self.rate.take(caller.uid, Instant::now()).is_ok()
    }

    /// Counts a refusal of `caller`, of `kind`, at `now`.
    pub fn count(&self, caller: &Caller, kind: ErrorKind, now: Millis) {
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        tally.since.get_or_insert(now);
        let known = tally.by_uid.len();
        let count = match tally.by_uid.get_mut(&caller.uid) {
            Some(count) => count,
            None if known >= MAX_COUNTED_UIDS => {
                tally.others.add(kind);
                return;
            }
            None => tally.by_uid.entry(caller.uid).or_insert_with(|| Count {
                user: caller.user.clone(),
                by_kind: BTreeMap::new(),
            }),
        };
        count.add(kind);
    }

    /// The records of what was counted since the last call, at `now`, and starts again.
    pub fn take(&self, now: Millis) -> Vec<audit::Entry> {
        let tally = std::mem::take(&mut *self.tally.lock().unwrap_or_else(PoisonError::into_inner));
        let Some(since) = tally.since else {
            return Vec::new();
        };
        let since = crate::store::chain::timestamp(since);
        let mut entries: Vec<audit::Entry> = tally
            .by_uid
            .into_iter()
            .map(|(uid, count)| {
                let actor = AuditActor {
                    kind: "user".to_owned(),
                    email: None,
                    uid: Some(uid),
                    user: count.user.as_deref().map(str::to_owned),
                    pid: None,
                };
                audit::Entry::new(actor, COUNTED_EVENT, now)
                    .outcome("refused")
                    .detail(format!(
                        "{} requests refused since {since}, counted rather than recorded one by one",
                        count.describe()
                    ))
            })
            .collect();
        if tally.others.total() > 0 {
            let actor = AuditActor {
                kind: "user".to_owned(),
                email: None,
                uid: None,
                user: None,
                pid: None,
            };
            entries.push(
                audit::Entry::new(actor, COUNTED_EVENT, now)
                    .outcome("refused")
                    .detail(format!(
                        "{} requests of uids beyond the first {MAX_COUNTED_UIDS} refused since \
                         {since}, counted together",
                        tally.others.describe(),
                    )),
            );
        }
        entries
    }
}

/// Writes what was counted every [`COUNTED_EVERY`], and once more when `stop` is cancelled,
/// so that no count is lost to a restart.
pub async fn keep(
    refusals: Arc<Refusals>,
    writer: Writer,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    loop {
        let stopping = tokio::select! {
            () = tokio::time::sleep(COUNTED_EVERY) => false,
            () = stop.cancelled() => true,
        };
        write(&refusals, &writer, clock.now()).await;
        if stopping {
            return;
        }
    }
}

/// Writes the counts so far.
pub async fn write(refusals: &Refusals, writer: &Writer, now: Millis) {
    let entries = refusals.take(now);
    if entries.is_empty() {
        return;
    }
    let records = entries.len();
    let written = writer
        .write(move |txn, _| {
            for entry in &entries {
                entry.clone().append(txn)?;
            }
            Ok::<_, crate::rules::RuleError>(())
        })
        .await;
    if let Err(err) = written {
        tracing::error!(error = %err, records, "cannot record the refusals counted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(uid: u32) -> Caller {
        Caller {
            uid,
            gid: uid,
            pid: Some(1),
            superuser: false,
            user: Some(format!("u{uid}").into()),
            groups: Default::default(),
        }
    }

    #[test]
    fn counts_are_told_per_uid_and_take_bounded_memory() {
        let refusals = Refusals::new(&Limits::default());
        assert!(
            refusals.take(1).is_empty(),
            "nothing counted, nothing written"
        );
        let beyond = MAX_COUNTED_UIDS as u32 + 10;
        for uid in 0..beyond {
            refusals.count(&caller(1000 + uid), ErrorKind::Unauthenticated, 5);
        }
        refusals.count(&caller(1000), ErrorKind::Forbidden, 6);
        let entries = refusals.take(7);
        assert_eq!(entries.len(), MAX_COUNTED_UIDS + 1);
        let first = entries[0].record();
        assert_eq!(
            (
                first.event.as_str(),
                first.actor.uid,
                first.actor.user.as_deref()
            ),
            (COUNTED_EVENT, Some(1000), Some("u1000"))
        );
        assert_eq!(first.outcome, "refused");
        assert_eq!(
            first.detail.as_deref(),
            Some(
                "2 (forbidden 1, unauthenticated 1) requests refused since \
                 1970-01-01T00:00:00.005Z, counted rather than recorded one by one"
            )
        );
        let others = entries[MAX_COUNTED_UIDS].record();
        assert_eq!(others.actor.uid, None);
        assert_eq!(
            others.detail.as_deref(),
            Some(
                "10 (unauthenticated 10) requests of uids beyond the first 1024 refused since \
                 1970-01-01T00:00:00.005Z, counted together"
            )
        );
        assert!(refusals.take(8).is_empty(), "each count is written once");
    }

    #[test]
    fn a_superuser_is_always_recorded_and_others_within_their_rate() {
        let refusals = Refusals::new(&Limits {
            max_changes_per_sec: 1,
            changes_burst: 2,
            ..Limits::default()
        });
        let mut root = caller(0);
        root.superuser = true;
        assert!((0..100).all(|_| refusals.may_record(&root)));
        let user = caller(1001);
        assert!(refusals.may_record(&user) && refusals.may_record(&user));
        assert!(!refusals.may_record(&user), "beyond the burst, counted");
        assert!(
            refusals.may_record(&caller(1002)),
            "each uid has its own rate"
        );
    }

    #[test]
    fn only_refusals_are_recorded_and_only_callers_with_accounts_one_by_one() {
        assert_eq!(fate_of(ErrorKind::Forbidden), Fate::Record);
        assert_eq!(fate_of(ErrorKind::LastAdmin), Fate::Record);
        assert_eq!(fate_of(ErrorKind::BadRequest), Fate::Record);
        assert_eq!(fate_of(ErrorKind::Unauthenticated), Fate::Count);
        assert_eq!(fate_of(ErrorKind::Busy), Fate::Count);
        assert_eq!(fate_of(ErrorKind::Internal), Fate::Neither);
        assert_eq!(fate_of(ErrorKind::Unavailable), Fate::Neither);
    }
}
