//! The sweeper's figures: invitations made to expire soon after they are issued (once the
//! daemon is stopped), so that the new daemon finds them all due at once, and the
//! daemon's own account of each sweep transaction (its `expired invitations` log lines,
//! with the count and the time from queueing the sweep to its commit).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::log::field;

/// A lifetime for `count` invitations that outlasts issuing them all, at `rate` per second
/// as populating went, twice over and at least a second (the shortest the daemon accepts):
/// none may expire, and be swept, before the daemon is stopped.
pub fn lifetime_for(count: usize, rate: f64) -> Duration {
    let issuing = count as f64 / rate.max(1.0);
    Duration::from_secs((2.0 * issuing).ceil().max(1.0) as u64)
}

/// The sweep transactions the daemon logged (from its log file), in order.
#[derive(Debug, Default)]
pub struct Sweeps {
    /// Each transaction's count and its time from queueing to commit.
    pub transactions: Vec<(usize, Duration)>,
}

impl Sweeps {
    pub fn expired(&self) -> usize {
        self.transactions.iter().map(|(n, _)| n).sum()
    }

    pub fn busy(&self) -> Duration {
        self.transactions.iter().map(|(_, d)| *d).sum()
    }

    pub fn longest(&self) -> Duration {
        self.transactions
            .iter()
            .map(|(_, d)| *d)
            .max()
            .unwrap_or_default()
    }
}

/// Waits (up to `timeout`) until the log after byte `from` records `expected` invitations
/// expired, and returns those sweeps.
pub fn wait_for_sweeps(log: &Path, from: usize, expected: usize, timeout: Duration) -> Sweeps {
    let started = Instant::now();
    loop {
        let text = std::fs::read(log).unwrap_or_default();
        let sweeps = parse(&String::from_utf8_lossy(
            text.get(from..).unwrap_or_default(),
        ));
        if sweeps.expired() >= expected {
            return sweeps;
        }
        if started.elapsed() > timeout {
            panic!(
                "compartmentd expired {} of {expected} due invitations within {timeout:?}",
                sweeps.expired()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `expired invitations expired=N micros=M` lines of `log`.
fn parse(log: &str) -> Sweeps {
    Sweeps {
        transactions: log
            .lines()
            .filter(|line| line.contains("expired invitations"))
            .filter_map(|line| {
                let count = field(line, "expired=")?;
                let micros = field(line, "micros=")?;
                Some((count as usize, Duration::from_micros(micros)))
            })
            .collect(),
    }
}

/// Asks the kernel to drop its clean page cache (root only), so that the next start reads
/// the database from the disk; says why not when it cannot.
pub fn drop_page_cache() -> Result<(), String> {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_lines_are_read_from_the_log() {
        let log = "2026-11-27T16:00:00Z  INFO compartmentd::sweeper: expired invitations expired=1000 micros=15000\n\
                   2026-11-27T16:00:00Z  INFO compartmentd: request method=\"user.invite\"\n\
                   2026-11-27T16:00:01Z  INFO compartmentd::sweeper: expired invitations expired=7 micros=900\n";
        let sweeps = parse(log);
        assert_eq!(sweeps.expired(), 1007);
        assert_eq!(sweeps.longest(), Duration::from_millis(15));
        assert_eq!(sweeps.busy(), Duration::from_micros(15900));
    }

    #[test]
    fn a_lifetime_outlasts_issuing() {
        assert_eq!(lifetime_for(1000, 10_000.0), Duration::from_secs(1));
        assert_eq!(lifetime_for(100_000, 16_000.0), Duration::from_secs(13));
        assert_eq!(lifetime_for(10, 0.0), Duration::from_secs(20));
    }
}
