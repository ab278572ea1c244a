//! The printed report: the `what | daemon | floor | ratio` table and the scale lines, with
//! numbers in units a reader takes in at a glance.

use std::time::Duration;

use crate::daemon::Memory;
use crate::measure::Measured;

/// One line of the table: a daemon figure, its floor, and daemon ÷ floor.
pub struct Row {
    what: String,
    daemon: String,
    floor: String,
    ratio: String,
    /// How fast the daemon is beside its floor, 1.0 being as fast: daemon ÷ floor for a
    /// rate, floor ÷ daemon at the median for a latency.
    speed: f64,
    /// The target the figure is held to, and whether it met it (`--store postgres`).
    target: Option<String>,
    /// A CPU row's daemon figure, per unit.
    figure: Option<Duration>,
}

impl Row {
    /// A throughput row: units per second of each side.
    pub fn rate(what: &str, daemon: &Measured, floor_name: &str, floor: &Measured) -> Row {
        Row {
            what: what.to_owned(),
            daemon: format!("{}/s", count(daemon.rate())),
            floor: format!("{floor_name}: {}/s", count(floor.rate())),
            ratio: format!("{:.2}", daemon.rate() / floor.rate()),
            speed: daemon.rate() / floor.rate(),
            target: None,
            figure: None,
        }
    }

    /// A CPU row: the daemon's CPU time per unit of work (request, or decision of a batch)
    /// beside the floor server's per unit, in the same phase pair; the ratio is daemon ÷
    /// floor (lower is better).
    pub fn cpu(what: &str, daemon: &Measured, floor_name: &str, floor: &Measured) -> Row {
        let (d, f) = (
            daemon.cpu_per_unit().unwrap_or_default(),
            floor.cpu_per_unit().unwrap_or_default(),
        );
        let ratio = d.as_secs_f64() / f.as_secs_f64().max(f64::MIN_POSITIVE);
        Row {
            what: what.to_owned(),
            daemon: format!("{} CPU", fine(d)),
            floor: format!("{floor_name}: {} CPU", fine(f)),
            ratio: format!("{ratio:.2}"),
            speed: 1.0 / ratio,
            target: None,
            figure: Some(d),
        }
    }

    /// The CPU row held to at most `times` its floor's CPU per unit.
    pub fn at_most_times_floor(self, times: f64) -> Row {
        let met = self.speed >= 1.0 / times;
        self.target(&format!("≤ {times}× floor"), met)
    }

    /// The CPU row held to at most `most` of daemon CPU per unit.
    pub fn at_most(self, most: Duration) -> Row {
        let met = self.figure.is_some_and(|figure| figure <= most);
        self.target(&format!("≤ {}", fine(most)), met)
    }

    /// The latency row whose median is held to at most `times` its floor's.
    pub fn median_within(self, times: f64) -> Row {
        let met = self.speed >= 1.0 / times;
        self.target(&format!("p50 ≤ {times}× floor"), met)
    }

    /// The row held to `target`, which it `met` or not.
    pub fn target(mut self, target: &str, met: bool) -> Row {
        self.target = Some(format!("{target}: {}", if met { "met" } else { "MISSED" }));
        self
    }

    /// The row held to at least half its floor's speed.
    pub fn half_of_floor(self) -> Row {
        let met = self.speed >= 0.5;
        self.target("≥ 50% of floor", met)
    }

    /// A scaling row: how many times the rate of `many` is that of `one`, for the daemon
    /// and for its floor; the ratio is the daemon's factor ÷ the floor's.
    pub fn scaling(
        what: &str,
        (daemon_many, daemon_one): (&Measured, &Measured),
        floor_name: &str,
        (floor_many, floor_one): (&Measured, &Measured),
    ) -> Row {
        let daemon = daemon_many.rate() / daemon_one.rate();
        let floor = floor_many.rate() / floor_one.rate();
        Row {
            what: what.to_owned(),
            daemon: format!("{daemon:.1}×"),
            floor: format!("{floor_name}: {floor:.1}×"),
            ratio: format!("{:.2}", daemon / floor),
            speed: daemon / floor,
            target: None,
            figure: None,
        }
    }

    /// A latency row: p50 / p99 of each side, and the ratio of each.
    pub fn latency(what: &str, daemon: &Measured, floor_name: &str, floor: &Measured) -> Row {
        let pair = |m: &Measured| format!("{} / {}", duration(m.pct(0.5)), duration(m.pct(0.99)));
        let ratio = |q: f64| daemon.pct(q).as_secs_f64() / floor.pct(q).as_secs_f64();
        Row {
            what: format!("{what} p50 / p99"),
            daemon: pair(daemon),
            floor: format!("{floor_name}: {}", pair(floor)),
            ratio: format!("{:.2} / {:.2}", ratio(0.5), ratio(0.99)),
            speed: 1.0 / ratio(0.5),
            target: None,
            figure: None,
        }
    }
}

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    pub fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Prints the table, columns padded to their widest cell.
    pub fn print(&self) {
        let header = Row {
            what: "what".into(),
            daemon: "daemon".into(),
            floor: "floor (same run)".into(),
            ratio: "ratio".into(),
            speed: 1.0,
            target: Some("target".into()),
            figure: None,
        };
        let targets = self.rows.iter().any(|row| row.target.is_some());
        let all: Vec<&Row> = std::iter::once(&header).chain(&self.rows).collect();
        let width = |cell: fn(&Row) -> &str| {
            all.iter()
                .map(|row| cell(row).chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths = [
            width(|r| &r.what),
            width(|r| &r.daemon),
            width(|r| &r.floor),
            width(|r| &r.ratio),
        ];
        println!();
        for (i, row) in all.iter().enumerate() {
            let mut line = format!(
                "{:<w0$} | {:>w1$} | {:<w2$} | ",
                row.what,
                row.daemon,
                row.floor,
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
            );
            if targets {
                let target = row.target.as_deref().unwrap_or("");
                line.push_str(&format!("{:<w3$} | {target}", row.ratio, w3 = widths[3]));
            } else {
                line.push_str(&row.ratio);
            }
            println!("{}", line.trim_end());
            if i == 0 {
                let mut rule = format!(
                    "{}-|-{}-|-{}-|-",
                    "-".repeat(widths[0]),
                    "-".repeat(widths[1]),
                    "-".repeat(widths[2]),
                );
                if targets {
                    rule.push_str(&format!("{}-|-{}", "-".repeat(widths[3]), "-".repeat(22)));
                } else {
                    rule.push_str(&"-".repeat(11));
                }
                println!("{rule}");
            }
        }
    }
}

/// One scale line: what, then the figure.
pub fn line(what: &str, figure: String) {
    println!("  {what:<38} {figure}");
}

/// A count or rate with thousands separators: 12,345.
pub fn count(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A duration in the unit that suits it: µs, ms or s.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1e-3 {
        format!("{:.0} µs", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:.1} ms", secs * 1e3)
    } else {
        format!("{secs:.2} s")
    }
}

/// A short duration to a few significant digits, for CPU time per request: 0.42 µs,
/// 12.3 µs.
pub fn fine(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 10.0 {
        format!("{micros:.2} µs")
    } else if micros < 1000.0 {
        format!("{micros:.1} µs")
    } else {
        duration(d)
    }
}

/// A size given in KiB, in MiB.
pub fn kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A size in bytes, in MB (10^6), as file sizes are usually read.
pub fn bytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Resident memory now and its peak so far.
pub fn memory(memory: Memory) -> String {
    format!(
        "{} (peak so far {})",
        kib(memory.rss_kib),
        kib(memory.peak_kib)
    )
}
