//! systemd's watchdog, on each store: under a service manager that asks for pings
//! (`WATCHDOG_USEC`), the daemon sends `WATCHDOG=1` while it moves and a `STATUS=` line
//! with its connections and last commit; when its writer thread is stopped (ptrace stops
//! that one thread, as a hung disk or a deadlock would) and a change waits for it, the
//! pings stop, the status and the log say why, and once the thread runs again the change
//! is answered and the pings resume.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use compartment_e2e::{each_store, poll, Daemon, DaemonOptions, ROOT};
use nix::sys::ptrace;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// The watchdog interval the test daemon is given: pings every half second, a stall after
/// one.
const WATCHDOG_USEC: &str = "2000000";

/// Every datagram the daemon sent to its notify socket, with when it came.
#[derive(Clone, Default)]
struct Notes(Arc<Mutex<Vec<(Instant, String)>>>);

impl Notes {
    fn listen(socket: UnixDatagram) -> Notes {
        let notes = Notes::default();
        let keep = notes.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let said = String::from_utf8_lossy(&buf[..n]).into_owned();
                keep.0.lock().unwrap().push((Instant::now(), said));
            }
        });
        notes
    }

    /// The datagrams that came after `since`.
    fn since(&self, since: Instant) -> Vec<String> {
        let notes = self.0.lock().unwrap();
        notes
            .iter()
            .filter(|(at, _)| *at > since)
            .map(|(_, said)| said.clone())
            .collect()
    }

    fn pings_since(&self, since: Instant) -> usize {
        self.since(since)
            .iter()
            .filter(|said| said.lines().any(|line| line == "WATCHDOG=1"))
            .count()
    }
}

/// The thread of `pid` named `name` (as `/proc` shortens it, to 15 bytes).
fn thread_named(pid: u32, name: &str) -> Pid {
    let short = &name[..name.len().min(15)];
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let entry = entry.unwrap();
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == short {
            let tid: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
            return Pid::from_raw(tid);
        }
    }
    panic!("no thread {short} in process {pid}");
}

/// Stops thread `tid` alone until `release` is sent (or dropped), then lets it go. The
/// tracer must be one thread throughout, so all of it happens on a thread of its own.
fn stop_thread(tid: Pid) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (release, released) = mpsc::channel::<()>();
    let (stopped, is_stopped) = mpsc::channel::<()>();
    let tracer = std::thread::spawn(move || {
        ptrace::seize(tid, ptrace::Options::empty()).unwrap();
        ptrace::interrupt(tid).unwrap();
        waitpid(tid, Some(WaitPidFlag::__WALL)).unwrap();
        stopped.send(()).unwrap();
        let _ = released.recv();
        ptrace::detach(tid, None).unwrap();
    });
    is_stopped
        .recv_timeout(Duration::from_secs(10))
        .expect("the thread stops within 10 s");
    (release, tracer)
}

#[test]
fn the_watchdog_is_pinged_only_while_the_writer_moves() {
    for options in each_store("the_watchdog_is_pinged_only_while_the_writer_moves") {
        wedged(options);
    }
}

fn wedged(options: DaemonOptions) {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notes = Notes::listen(UnixDatagram::bind(&notify_path).unwrap());
    let d = Daemon::start(
        options
            .env("NOTIFY_SOCKET", notify_path.to_str().unwrap())
            .env("WATCHDOG_USEC", WATCHDOG_USEC),
    );
    d.create_acme();
    let started = Instant::now();
    poll(Duration::from_secs(10), || {
        (notes.pings_since(started) >= 3).then_some(())
    })
    .expect("three pings within 10 s of a daemon at rest");
    let status = poll(Duration::from_secs(10), || {
        notes.since(started).into_iter().find_map(|said| {
            said.lines()
                .find_map(|l| l.strip_prefix("STATUS="))
                .map(str::to_owned)
        })
    })
    .expect("a STATUS= line");
    assert!(
        status.starts_with("serving; ")
            && status.contains(" connection")
            && status.contains("; last commit "),
        "{status}"
    );

    // The writer stopped, and a change waiting for it.
    let (release, tracer) = stop_thread(thread_named(d.pid().unwrap(), "compartmentd-writer"));
    let waiting = d.spawn_ctl(ROOT, &["org", "create", "beta", "--admin", "b@example.com"]);
    let stalled = poll(Duration::from_secs(10), || {
        notes.0.lock().unwrap().iter().find_map(|(at, said)| {
            said.contains("STATUS=the writer has not moved for ")
                .then_some(*at)
        })
    })
    .expect("the status tells of the stalled writer within 10 s");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        notes.pings_since(stalled),
        0,
        "no ping while the writer is stopped: {:#?}",
        notes.since(stalled)
    );
    assert!(
        notes.since(stalled).len() >= 2,
        "the status goes on being told: {:#?}",
        notes.since(stalled)
    );
    assert!(
        d.log().contains("the watchdog is no longer pinged"),
        "{}",
        d.log()
    );

    // Let go: the change is answered and the pings resume.
    release.send(()).unwrap();
    tracer.join().unwrap();
    let out = waiting
        .wait_timeout(Duration::from_secs(30))
        .expect("org create answered once the writer runs");
    out.assert_success();
    let resumed = Instant::now();
    poll(Duration::from_secs(10), || {
        (notes.pings_since(resumed) >= 2).then_some(())
    })
    .expect("pings again within 10 s");
}
