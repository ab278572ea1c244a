//! Figures the daemon logs of itself: its log lines are `key=value` fields after a message.

use std::path::Path;

/// The number after `name` (`expired=`, `micros=`, …) in one log line.
pub fn field(line: &str, name: &str) -> Option<u64> {
    line.split(name)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The log's length now, in bytes: where the lines of a phase about to start begin.
pub fn len(log: &Path) -> usize {
    std::fs::metadata(log).map_or(0, |m| m.len() as usize)
}

/// The mean number of changes per committed write transaction in the log between bytes
/// `from` and `to` (the writer's `batch committed changes=N` trace lines), or `None` when it
/// logged none there (its trace level is off).
pub fn mean_batch(log: &Path, from: usize, to: usize) -> Option<f64> {
    let text = std::fs::read(log).ok()?;
    mean_batch_of(&String::from_utf8_lossy(text.get(from..to)?))
}

/// The first line at `WARN` or `ERROR` in the log from byte `from` on: what the daemon said
/// of a refusal it answered `internal`.
pub fn first_problem(log: &Path, from: usize) -> Option<String> {
    let text = std::fs::read(log).ok()?;
    String::from_utf8_lossy(text.get(from..)?)
        .lines()
        .find(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .map(str::to_owned)
}

fn mean_batch_of(text: &str) -> Option<f64> {
    let sizes: Vec<u64> = text
        .lines()
        .filter(|line| line.contains("batch committed"))
        .filter_map(|line| field(line, "changes="))
        .collect();
    (!sizes.is_empty()).then(|| sizes.iter().sum::<u64>() as f64 / sizes.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_batch_is_read_from_the_writers_trace() {
        let log = "2026-11-27T16:00:00Z TRACE compartmentd::writer: batch committed changes=30 apply_us=1 commit_us=2\n\
                   2026-11-27T16:00:00Z  INFO compartmentd: request method=\"user.invite\"\n\
                   2026-11-27T16:00:01Z TRACE compartmentd::writer: batch committed changes=1 apply_us=1 commit_us=2\n";
        assert_eq!(mean_batch_of(log), Some(15.5));
        assert_eq!(mean_batch_of("nothing\n"), None);
    }
}
