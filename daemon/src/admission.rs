//! Whether a change may go to the writer at all. A superuser's always may. Anyone else's is
//! refused `unavailable` while the state directory's filesystem has less free space than
//! `--min-free-space` (a full disk would stop every tenant's changes, and the superusers'
//! repairs with them), and `busy` when its uid asks for changes faster than
//! `--max-changes-per-sec` (one organization's admin must not grow the database without
//! bound, nor keep the writer from everyone else).

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::limits::{ChangeRate, Limits};
use crate::rules::{Caller, RuleError};

/// How old a reading of the free space may be: the filesystem is asked at most this often,
/// so the floor costs a request nothing. A change of a few hundred bytes each, at the rate
/// limit, cannot take much in this long.
pub const REREAD_FREE_SPACE_AFTER: Duration = Duration::from_millis(250);

/// The changes admitted to the writer: the rate per uid and the free-space floor.
pub struct Admission {
    rate: ChangeRate,
    floor: SpaceFloor,
}

impl Admission {
    /// Admission under `limits`, the floor measured on the filesystem holding `state_dir`;
    /// no floor without one (a store that is not a file here: PostgreSQL watches its own
    /// disk).
    pub fn new(limits: &Limits, state_dir: Option<PathBuf>) -> Admission {
        let floor = match state_dir {
            Some(dir) => SpaceFloor::new(dir, limits.min_free_space),
            None => SpaceFloor::new(PathBuf::new(), 0),
        };
        Admission {
            rate: ChangeRate::new(limits.max_changes_per_sec, limits.changes_burst),
            floor,
        }
    }

    /// Admits a change `caller` asks for, or says why not. It counts against the caller's
    /// rate whether the rules then accept it or not.
    pub fn admit(&self, caller: &Caller) -> Result<(), RuleError> {
        if caller.superuser {
            return Ok(());
        }
        let now = Instant::now();
        self.floor.check(now)?;
        self.rate
            .take(caller.uid, now)
            .map_err(|over| RuleError::TooManyChanges {
                uid: caller.uid,
                over,
            })
    }
}

/// The free-space floor of one directory's filesystem, read through `statvfs` at most every
/// [`REREAD_FREE_SPACE_AFTER`].
pub struct SpaceFloor {
    dir: PathBuf,
    /// Bytes that must stay free; 0 turns the floor off.
    floor: u64,
    last: Mutex<Option<Reading>>,
}

#[derive(Clone, Copy)]
struct Reading {
    at: Instant,
    /// None when the filesystem could not be asked: the floor then refuses nothing (the
    /// store's own handling of a full disk still stands behind it).
    free: Option<u64>,
}

impl SpaceFloor {
    pub fn new(dir: PathBuf, floor: u64) -> SpaceFloor {
        SpaceFloor {
            dir,
            floor,
            last: Mutex::new(None),
        }
    }

    /// Refuses when less than the floor was free at the latest reading.
    pub fn check(&self, now: Instant) -> Result<(), RuleError> {
        if self.floor == 0 {
            return Ok(());
        }
        match self.free(now) {
            Some(free) if free < self.floor => Err(RuleError::DiskNearlyFull { floor: self.floor }),
            _ => Ok(()),
        }
    }

    /// The bytes free for the daemon at `now`, as read at most
    /// [`REREAD_FREE_SPACE_AFTER`] before.
    fn free(&self, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(reading) = *last {
            if now.saturating_duration_since(reading.at) < REREAD_FREE_SPACE_AFTER {
                return reading.free;
            }
        }
        let free = match nix::sys::statvfs::statvfs(&self.dir) {
            Ok(stat) => Some(stat.blocks_available().saturating_mul(stat.fragment_size())),
            Err(err) => {
                tracing::warn!(error = %err, dir = %self.dir.display(), "cannot read the free space of the state directory");
                None
            }
        };
        *last = Some(Reading { at: now, free });
        free
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use compartmentctl::wire::{ErrorKind, RpcError};

    use super::*;

    fn caller(uid: u32, superuser: bool) -> Caller {
        Caller {
            uid,
            gid: uid,
            pid: None,
            superuser,
            user: None,
            groups: Default::default(),
        }
    }

    fn limits(per_sec: u32, burst: u32, min_free_space: u64) -> Limits {
        Limits {
            max_changes_per_sec: per_sec,
            changes_burst: burst,
            min_free_space,
            ..Limits::default()
        }
    }

    #[test]
    fn over_the_rate_a_change_is_refused_busy_with_when_to_retry() {
        let dir = tempfile::tempdir().unwrap();
        let admission = Admission::new(&limits(4, 2, 0), Some(dir.path().to_owned()));
        let user = caller(1001, false);
        admission.admit(&user).unwrap();
        admission.admit(&user).unwrap();
        let refused: RpcError = admission.admit(&user).unwrap_err().into();
        assert_eq!(refused.kind(), ErrorKind::Busy);
        assert_eq!(
            refused.message,
            "uid 1001 is making changes faster than the 4 a second (in bursts of up to 2) one user may"
        );
        let hint = refused.hint().unwrap();
        let ms: u64 = hint
            .strip_prefix("slow down: retry in ")
            .and_then(|rest| rest.strip_suffix(" ms"))
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=250).contains(&ms), "{hint}");
        // Superusers are not counted.
        for _ in 0..100 {
            admission.admit(&caller(0, true)).unwrap();
        }
    }

    #[test]
    fn below_the_floor_only_superusers_may_change_anything() {
        let dir = tempfile::tempdir().unwrap();
        let admission = Admission::new(&limits(1000, 1000, u64::MAX), Some(dir.path().to_owned()));
        let refused: RpcError = admission.admit(&caller(1001, false)).unwrap_err().into();
        assert_eq!(refused.kind(), ErrorKind::Unavailable);
        assert_eq!(
            refused.message,
            "the disk of the daemon's state directory is nearly full: less than the 16.0 EiB kept for repairs is free"
        );
        assert_eq!(
            refused.hint(),
            Some("a superuser must free space on the filesystem of the daemon's state directory; until then only superusers may make changes")
        );
        admission.admit(&caller(0, true)).unwrap();
        // With the floor off, or below what is free, everyone may.
        let off = Admission::new(&limits(1000, 1000, 0), Some(dir.path().to_owned()));
        off.admit(&caller(1001, false)).unwrap();
        let low = Admission::new(&limits(1000, 1000, 1), Some(dir.path().to_owned()));
        low.admit(&caller(1001, false)).unwrap();
        // A store that is not a file here (PostgreSQL) has no floor of the daemon's.
        let elsewhere = Admission::new(&limits(1000, 1000, u64::MAX), None);
        elsewhere.admit(&caller(1001, false)).unwrap();
    }

    #[test]
    fn the_free_space_is_read_at_most_every_quarter_second() {
        let dir = tempfile::tempdir().unwrap();
        let floor = SpaceFloor::new(dir.path().to_owned(), 1);
        let t0 = Instant::now();
        assert!(floor.free(t0).is_some());
        // A reading kept from t0 answers until it is too old, whatever the disk does.
        *floor.last.lock().unwrap() = Some(Reading {
            at: t0,
            free: Some(0),
        });
        assert!(floor.check(t0 + Duration::from_millis(249)).is_err());
        assert!(floor.check(t0 + REREAD_FREE_SPACE_AFTER).is_ok());
    }
}
