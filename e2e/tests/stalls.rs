//! Nobody stalls or locks out the daemon: a client that never reads is cut off and cannot
//! hold up SIGTERM; superusers get in however many connections others hold; blank lines
//! keep nothing alive; running out of descriptors is answered `busy`; a flood of bad
//! requests from an ordinary uid leaves a small log; an oversized line written whole is
//! answered; SIGHUP is survived; and a stop removes only the daemon's own socket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use compartment_e2e::{poll, root_test, Daemon, DaemonOptions, RawConn};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
/// A request an unbound uid is refused, which is logged at info.
const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"user.list"}"#;
const PYTHON: &str = "/usr/bin/python3";

/// Writes pings on `stream` as fast as the socket takes them and never reads, counting the
/// bytes written; ends when a write fails (the daemon closed the connection).
fn pipeline_without_reading(
    mut stream: UnixStream,
) -> (Arc<AtomicUsize>, std::thread::JoinHandle<()>) {
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut batch = Vec::new();
    for _ in 0..100 {
        batch.extend_from_slice(PING.as_bytes());
        batch.push(b'\n');
    }
    let writer = std::thread::spawn(move || {
        while let Ok(n) = stream.write(&batch) {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    });
    (written, writer)
}

/// Waits until the count stops growing for half a second: the client's writes block, so
/// the daemon's write of an answer blocks too.
fn wait_until_stuck(written: &AtomicUsize) -> usize {
    let mut last = written.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = written.load(Ordering::Relaxed);
        if now == last && now > 0 {
            return now;
        }
        assert!(Instant::now() < deadline, "the writes never stalled");
        last = now;
    }
}

#[test]
fn a_client_that_pipelines_and_never_reads_is_cut_off_after_the_write_timeout() {
    let daemon = Daemon::start(DaemonOptions::new().args(&["--write-timeout", "1s"]));
    let (written, writer) = pipeline_without_reading(UnixStream::connect(daemon.socket()).unwrap());
    let stuck_at = wait_until_stuck(&written);
    let started = Instant::now();
    // The daemon closes the connection; the blocked write then fails and the thread ends.
    let ended = poll(Duration::from_secs(15), || {
        writer.is_finished().then_some(())
    });
    assert!(
        ended.is_some(),
        "still connected 15 s after the writes stalled; log:\n{}",
        daemon.log()
    );
    println!(
        "stalled after {stuck_at} bytes of requests; cut off {:?} later",
        started.elapsed()
    );
    let log = daemon.log();
    assert!(
        log.contains("connection closed") && log.contains("WriteTimeout"),
        "{log}"
    );
    // Everyone else is still served.
    assert!(daemon.raw().call(PING)["result"]["version"].is_string());
}

#[test]
fn sigterm_stops_the_daemon_cleanly_while_a_client_never_reads() {
    // A write timeout far beyond the test: only the stop can end that write.
    let mut daemon = Daemon::start(DaemonOptions::new().args(&["--write-timeout", "1h"]));
    let stream = UnixStream::connect(daemon.socket()).unwrap();
    let (written, _writer) = pipeline_without_reading(stream);
    wait_until_stuck(&written);
    let started = Instant::now();
    // Asserts a clean exit (status 0) within 10 s of SIGTERM.
    daemon.stop();
    println!("stopped {:?} after SIGTERM", started.elapsed());
    assert!(!daemon.socket().exists(), "the socket was left behind");
}

/// A child process, as `uid`, holding `n` connections to `socket`, each served a ping; it
/// prints `held` once they all are, and holds them until killed. The daemon gives a slot
/// back when it sees a client's close, a moment after the client closed (the harness's
/// readiness ping, say), so a refused set is let go and tried again; after 10 s the test
/// fails.
fn hold_as(uid: u32, socket: &Path, n: usize) -> Child {
    let mut refused = String::new();
    poll(Duration::from_secs(10), || {
        try_hold_as(uid, socket, n)
            .map_err(|line| refused = line)
            .ok()
    })
    .unwrap_or_else(|| panic!("uid {uid} could not hold {n} connections: {refused}"))
}

/// [`hold_as`] once: the holding child, or the line it printed when refused.
fn try_hold_as(uid: u32, socket: &Path, n: usize) -> Result<Child, String> {
    let script = r#"
import socket, sys
path, n = sys.argv[1], int(sys.argv[2])
held = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
    line = s.makefile("rb").readline()
    if b'"result"' not in line:
        print("refused", line.decode(errors="replace"), flush=True)
        sys.exit(1)
    held.append(s)
print("held", flush=True)
sys.stdin.read()
"#;
    let mut child = python_as(uid)
        .arg("-c")
        .arg(script)
        .arg(socket)
        .arg(n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.trim() == "held" {
        Ok(child)
    } else {
        stop_child(child);
        Err(line)
    }
}

/// The first line the daemon sends a connection of `uid` that sends nothing.
fn first_line_as(uid: u32, socket: &Path) -> Value {
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
sys.stdout.write(s.makefile("rb").readline().decode())
"#;
    let out = python_as(uid)
        .arg("-c")
        .arg(script)
        .arg(socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn python_as(uid: u32) -> Command {
    assert!(
        Path::new(PYTHON).exists(),
        "these tests run hostile clients as other uids with {PYTHON}; install python3"
    );
    let mut command = Command::new(PYTHON);
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .uid(uid)
        .gid(uid);
    command
}

fn stop_child(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

root_test!(
    superusers_are_served_while_other_uids_hold_every_other_slot,
    || {
        let daemon = Daemon::start(DaemonOptions::new().args(&[
            "--max-connections",
            "6",
            "--max-connections-per-uid",
            "2",
            "--superuser-reserved-connections",
            "2",
        ]));
        let holders = vec![
            hold_as(61101, &daemon.socket(), 2),
            hold_as(61102, &daemon.socket(), 2),
        ];
        // A third ordinary uid finds every slot open to it taken.
        let reply = first_line_as(61103, &daemon.socket());
        assert_eq!(reply["error"]["data"]["kind"], "busy", "{reply}");
        assert_eq!(
            reply["error"]["message"],
            "compartmentd is serving its maximum of 6 connections (2 of them kept for superusers)"
        );
        // Root still gets in, twice.
        let mut first = daemon.raw();
        let mut second = daemon.raw();
        assert!(first.call(PING)["result"]["version"].is_string());
        assert!(second.call(PING)["result"]["version"].is_string());
        for holder in holders {
            stop_child(holder);
        }
    }
);

#[test]
fn blank_lines_do_not_keep_a_connection_alive() {
    let daemon = Daemon::start(DaemonOptions::new().args(&["--idle-timeout", "1s"]));
    let mut conn = daemon.raw();
    let mut writer = conn.writer();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writing = stop.clone();
    let blank_lines = std::thread::spawn(move || {
        while !stop_writing.load(Ordering::Relaxed) && writer.write_all(b"\n").is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    // Blank lines get no answer: the read ends only when the daemon closes the connection
    // (or fails after the harness's 10 s read timeout).
    assert!(conn.is_closed());
    stop.store(true, Ordering::Relaxed);
    blank_lines.join().unwrap();
    assert!(daemon.log().contains("Idle"), "{}", daemon.log());
}

#[test]
fn a_one_mib_line_written_whole_then_read_gets_frame_too_long() {
    let daemon = Daemon::in_process_default();
    let mut stream = UnixStream::connect(daemon.socket()).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = vec![b'x'; 1024 * 1024];
    line.push(b'\n');
    // A plain client: the whole request first, then the answer.
    stream
        .write_all(&line)
        .expect("the whole line is taken, not cut off by a closed connection");
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).unwrap();
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["error"]["data"]["kind"], "frame_too_long", "{reply}");
    assert_eq!(reply["id"], Value::Null);
    // Then the connection ends.
    let mut rest = Vec::new();
    let _ = (&stream).read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

#[test]
fn sighup_is_logged_and_the_daemon_carries_on() {
    let mut daemon = Daemon::start_default();
    let pid = Pid::from_raw(daemon.pid().unwrap() as i32);
    kill(pid, Signal::SIGHUP).unwrap();
    let logged = poll(Duration::from_secs(5), || {
        daemon.log().contains("SIGHUP received").then_some(())
    });
    assert!(logged.is_some(), "{}", daemon.log());
    assert!(daemon.answers_ping());
    daemon.stop();
}

#[test]
fn a_stop_leaves_a_socket_that_replaced_the_daemons_own() {
    let mut daemon = Daemon::start_default();
    let socket = daemon.socket();
    // Someone else's socket now lives at the path (the daemon's listener lives on).
    std::fs::remove_file(&socket).unwrap();
    let theirs = UnixListener::bind(&socket).unwrap();
    daemon.stop();
    assert!(
        socket.exists(),
        "the daemon removed a socket it did not bind"
    );
    let _client = UnixStream::connect(&socket).unwrap();
    assert!(theirs.accept().is_ok());
    drop(theirs);
    // A plain file in its place is left too.
    std::fs::remove_file(&socket).unwrap();
    daemon.restart();
    std::fs::remove_file(&socket).unwrap();
    std::fs::write(&socket, b"not a socket").unwrap();
    daemon.stop();
    assert_eq!(std::fs::read(&socket).unwrap(), b"not a socket");
    assert!(daemon.log().contains("now holds another file"));
}

#[test]
fn running_out_of_descriptors_is_answered_busy_not_a_hang() {
    // The built daemon: its process's descriptor limit is lowered, not the test's.
    let daemon = Daemon::start_default();
    let pid = daemon.pid().unwrap();
    // Room for two connections: three, if the harness's readiness ping still held one of
    // the descriptors counted here and gives it back later. Either way fewer than the eight
    // below.
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = open + 2;
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit (util-linux) sets the daemon's descriptor limit");
    assert!(status.success());
    let mut conns: Vec<RawConn> = (0..8).map(|_| daemon.raw()).collect();
    let (mut served, mut busy) = (0, 0);
    for conn in &mut conns {
        let _ = conn.try_send(format!("{PING}\n").as_bytes());
        let line = conn
            .try_read_line()
            .expect("every connection is answered, none left hanging")
            .expect("every connection gets a line before it is closed");
        let reply: Value = serde_json::from_str(&line).unwrap();
        if reply["result"].is_object() {
            served += 1;
        } else {
            assert_eq!(reply["error"]["data"]["kind"], "busy", "{reply}");
            assert_eq!(
                reply["error"]["message"],
                "compartmentd has run out of file descriptors"
            );
            busy += 1;
        }
    }
    println!("with {limit} descriptors: {served} served, {busy} answered busy");
    assert!(served >= 1 && busy >= 1, "{served} served, {busy} busy");
    // Descriptors come back as connections close.
    drop(conns);
    let again = poll(Duration::from_secs(5), || {
        daemon.answers_ping().then_some(())
    });
    assert!(again.is_some(), "not served after the connections closed");
}

root_test!(a_flood_from_an_ordinary_uid_leaves_a_small_log, || {
    let daemon = Daemon::start(DaemonOptions::new().args(&["--max-connections-per-uid", "4"]));
    let before = daemon.log().len();
    // One uid pipelines bad JSON, unauthenticated calls with huge organization names,
    // unknown methods with huge names, bad tokens and whoami on four connections at once;
    // another keeps opening connections over its cap; for five seconds.
    let script = r#"
import socket, sys, time, threading
path, secs, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
lines = [b'garbage\n',
         b'{"jsonrpc":"2.0","id":1,"method":"user.list","params":{"org":"' + b'o' * 5000 + b'"}}\n',
         b'{"jsonrpc":"2.0","id":2,"method":"' + b'm' * 3000 + b'"}\n',
         b'{"jsonrpc":"2.0","id":3,"method":"account.activate","params":{"token":"bad"}}\n',
         b'{"jsonrpc":"2.0","id":4,"method":"whoami"}\n']
batch = b''.join(lines) * 40
expected = len(lines) * 40
end = time.time() + secs
count = [0]
def requests():
    while time.time() < end:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            f = s.makefile("rb")
            s.sendall(batch)
            for _ in range(expected):
                if not f.readline():
                    break
                count[0] += 1
            s.close()
        except OSError:
            pass
def connections():
    held = []
    while time.time() < end:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            held.append(s)
            if len(held) > 8:
                held.pop(0).close()
            count[0] += 1
        except OSError:
            time.sleep(0.001)
target = requests if mode == "requests" else connections
threads = [threading.Thread(target=target) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(count[0], flush=True)
"#;
    let flood = |uid: u32, mode: &str| {
        python_as(uid)
            .arg("-c")
            .arg(script)
            .arg(daemon.socket())
            .arg("5")
            .arg(mode)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let connections = flood(61202, "connections");
    let out = flood(61201, "requests").wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let opened = connections.wait_with_output().unwrap();
    assert!(opened.status.success(), "{opened:?}");
    println!(
        "{} connections opened over the cap",
        String::from_utf8_lossy(&opened.stdout).trim()
    );
    let answered = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let grown = daemon.log().len() - before;
    println!("{answered} requests answered in 5 s; the log grew by {grown} bytes");
    assert!(
        answered.parse::<u64>().unwrap() > 500,
        "the flood was too small to prove anything: {answered} requests"
    );
    assert!(grown < 200 * 1024, "the log grew by {grown} bytes");
    // Once the window has passed, the next request of that uid that is logged (a refusal:
    // a successful ping is routine, logged at debug) says how many were left out. Asked
    // again until it does: a refusal still within the window is itself left out.
    let summarized = |log: &str| {
        log.lines()
            .filter(|line| line.contains(" more in the last 10s)"))
            .any(|line| line.contains("request log lines of this uid left out"))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !summarized(&daemon.log()) {
        assert!(
            Instant::now() < deadline,
            "no summary of the left-out lines a minute after the flood; log:\n{}",
            daemon.log()
        );
        let reply = python_as(61201)
            .arg("-c")
            .arg(format!(
                "import socket; s = socket.socket(socket.AF_UNIX); s.connect({:?}); s.sendall(b'{LIST}\\n'); print(s.makefile().readline())",
                daemon.socket().display().to_string()
            ))
            .output()
            .unwrap();
        assert!(reply.status.success(), "{reply:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = daemon.log();
    let summaries: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" more in the last 10s)"))
        .collect();
    println!("{}", summaries.join("\n"));
    assert!(
        !log.contains(&"o".repeat(100)),
        "an organization name went unclipped"
    );
    assert!(daemon.answers_ping());
});

#[test]
fn the_service_unit_allows_more_descriptors_than_the_connection_cap() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/compartmentd.service"),
    )
    .unwrap();
    let limit: usize = unit
        .lines()
        .find_map(|line| line.strip_prefix("LimitNOFILE="))
        .expect("the service sets LimitNOFILE")
        .parse()
        .unwrap();
    let cap = compartmentd::limits::Limits::default().max_connections;
    // A connection's descriptor each, and room for the daemon's own.
    assert!(
        limit >= cap + 64,
        "LimitNOFILE={limit} for {cap} connections"
    );
}
