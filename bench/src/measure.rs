//! One timed phase: a number of threads repeating one operation until a deadline, with the
//! throughput and latency percentiles that come out of it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// What a phase measured.
pub struct Measured {
    /// Operations completed, over all threads.
    pub ops: usize,
    /// Units of work per operation (writes per redb commit); 1 for a request.
    pub units_per_op: usize,
    /// From the moment every thread was ready to the moment the last one stopped.
    pub elapsed: Duration,
    /// Each operation's latency, sorted.
    pub latencies: Vec<Duration>,
    /// The CPU time (user and system, every thread) the server process spent over the
    /// phase, when it was watched ([`with_server_cpu`]).
    pub server_cpu: Option<Duration>,
}

impl Measured {
    /// Units of work per second, over all threads.
    pub fn rate(&self) -> f64 {
        (self.ops * self.units_per_op) as f64 / self.elapsed.as_secs_f64()
    }

    /// The same phase counted in units of `per_line` each (the decisions of a batch line).
    pub fn per_line(mut self, per_line: usize) -> Measured {
        self.units_per_op = per_line;
        self
    }

    /// The server's CPU time per unit of work (per request; per decision of a batch), when
    /// it was watched.
    pub fn cpu_per_unit(&self) -> Option<Duration> {
        let units = (self.ops * self.units_per_op).max(1) as u32;
        self.server_cpu.map(|cpu| cpu / units)
    }

    /// The latency at quantile `q` (0.5 is the median), nearest rank.
    pub fn pct(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies[rank]
    }
}

/// Runs `threads` threads: each makes its state with `setup(thread)` (a connection, say),
/// then, once all are ready, repeats `op(state, thread, i)` until `duration` has passed.
/// Setup is outside the timing, so connecting never counts as throughput.
pub fn run<S, Setup, Op>(
    threads: usize,
    duration: Duration,
    units_per_op: usize,
    setup: Setup,
    op: Op,
) -> Measured
where
    Setup: Fn(usize) -> S + Sync,
    Op: Fn(&mut S, usize, usize) + Sync,
{
    let ready = Barrier::new(threads + 1);
    let (elapsed, mut latencies) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let (ready, setup, op) = (&ready, &setup, &op);
                scope.spawn(move || {
                    // A setup that panics still meets the others at the barrier, so the
                    // phase ends with its panic instead of waiting for it forever.
                    let state = panic::catch_unwind(AssertUnwindSafe(|| setup(thread)));
                    ready.wait();
                    let mut state = state.unwrap_or_else(|panicked| panic::resume_unwind(panicked));
                    let mut latencies = Vec::new();
                    let deadline = Instant::now() + duration;
                    let mut i = 0;
                    loop {
                        let started = Instant::now();
                        if started >= deadline {
                            break;
                        }
                        op(&mut state, thread, i);
                        latencies.push(started.elapsed());
                        i += 1;
                    }
                    latencies
                })
            })
            .collect();
        ready.wait();
        let started = Instant::now();
        let latencies: Vec<Duration> = handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("a phase thread panicked"))
            .collect();
        (started.elapsed(), latencies)
    });
    latencies.sort_unstable();
    Measured {
        ops: latencies.len(),
        units_per_op,
        elapsed,
        latencies,
        server_cpu: None,
    }
}

/// The CPU time process `pid` has spent, user and system, every thread of it, those that
/// ended included (`utime` and `stime` of `/proc/<pid>/stat`): the echo server's threads
/// end with their connections, as the phase does. In clock ticks (10 ms), so a phase's
/// figure is as fine as its length allows: a few parts in a thousand over a full run's
/// phases.
pub fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|err| panic!("read /proc/{pid}/stat: {err}"));
    // The fields after the command name, which is in parentheses and may hold spaces:
    // state is the 3rd field of the line, utime the 14th, stime the 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf reads a constant of the system.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_secs_f64((ticks(14) + ticks(15)) as f64 / per_sec as f64)
}

/// `phase()`, with the CPU time process `pid` spent meanwhile as its `server_cpu`.
pub fn with_server_cpu(pid: u32, phase: impl FnOnce() -> Measured) -> Measured {
    let before = cpu_of(pid);
    let mut measured = phase();
    measured.server_cpu = Some(cpu_of(pid).saturating_sub(before));
    measured
}

/// Round trips per second of `line` (newline included) over `connections` connections to
/// `socket`, each one at a time: the line written as it is, one answer line read back. Each
/// connection's first answer, before the timing, must satisfy `approve`; every later one must
/// be that answer byte for byte. The echo floor and the daemon's raw-line phases share this
/// one client, so that their ratio compares the servers alone.
pub fn line_round_trips(
    socket: &Path,
    line: &[u8],
    connections: usize,
    duration: Duration,
    approve: impl Fn(&[u8]) + Sync,
) -> Measured {
    run(
        connections,
        duration,
        1,
        |_| {
            let stream = UnixStream::connect(socket)
                .unwrap_or_else(|err| panic!("connect to {}: {err}", socket.display()));
            let mut writer = stream.try_clone().expect("clone the stream");
            let mut reader = BufReader::new(stream);
            let mut first = Vec::new();
            writer.write_all(line).expect("write a line");
            reader
                .read_until(b'\n', &mut first)
                .expect("read an answer");
            approve(&first);
            (writer, reader, first, Vec::new())
        },
        |(writer, reader, first, buf): &mut (
            UnixStream,
            BufReader<UnixStream>,
            Vec<u8>,
            Vec<u8>,
        ),
         _,
         _| {
            writer.write_all(line).expect("write a line");
            buf.clear();
            reader.read_until(b'\n', buf).expect("read an answer");
            assert_eq!(buf, first, "the same line answered otherwise");
        },
    )
}

/// `phase()` with the calling thread (and so the threads it starts) and every thread of
/// each process of `pids` on one CPU, all let go onto every CPU again after.
///
/// For the 1-connection phases, the daemon's and the echo's alike. A round trip of one
/// connection wakes the server, then the client, and each wake-up lands on the CPU the
/// kernel picks: a blocking `read` (the echo's) is woken where its waker runs, an `epoll`
/// wait (the daemon's) where it last slept, often the other CPU. On a virtual machine an
/// idle CPU is a halted one, woken by the hypervisor in some 50 µs, so the round trip's
/// median would measure which CPU each side happened to sleep on (the echo was seen at 4 µs
/// and at 55 µs in one run). On one CPU both servers pay the same switches and no
/// hypervisor wake-up, so the ratio compares the servers' own paths.
pub fn on_one_cpu<T>(pids: &[u32], phase: impl FnOnce() -> T) -> T {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;

    let me = Pid::from_raw(0);
    let every = sched_getaffinity(me).expect("this thread's CPUs");
    let Some(cpu) = (0..CpuSet::count()).find(|&cpu| every.is_set(cpu).unwrap_or(false)) else {
        return phase();
    };
    let mut one = CpuSet::new();
    one.set(cpu).expect("a CPU in range");
    let threads = |pid: u32| -> Vec<Pid> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks
                    .filter_map(|task| task.ok()?.file_name().to_str()?.parse().ok())
                    .map(Pid::from_raw)
                    .collect()
            })
            .unwrap_or_default()
    };
    let place = |set: &CpuSet| {
        sched_setaffinity(me, set).expect("place this thread");
        for &pid in pids {
            for thread in threads(pid) {
                // A thread that ended meanwhile has nowhere to be placed.
                let _ = sched_setaffinity(thread, set);
            }
        }
    };
    place(&one);
    let out = phase();
    place(&every);
    out
}
