//! Hostile clients meet the daemon's limits: connection caps answered `busy` (and another
//! uid still served), slow-loris lines and idle connections closed on time, and memory
//! that stays flat however long a line is.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use compartment_e2e::{root_test, Daemon, DaemonOptions, Endpoint, RawConn, TestUser};

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

/// Connects and expects the connection to be refused with `busy` and closed.
fn assert_busy(daemon: &Endpoint, message: &str) {
    let mut conn = RawConn::connect(&daemon.socket());
    let reply = conn.read_json();
    assert_eq!(reply["error"]["data"]["kind"], "busy", "{reply}");
    assert_eq!(reply["error"]["message"], message, "{reply}");
    assert!(conn.is_closed());
}

fn answers_ping(conn: &mut RawConn) -> bool {
    conn.call(PING)["result"]["version"].is_string()
}

/// Opens `n` connections that each answer a ping. The daemon gives a slot back when it
/// sees a client's close, a moment after the client closed (the harness's own readiness
/// ping, say), so a refused set is dropped and tried again.
fn hold(daemon: &Endpoint, n: usize) -> Vec<RawConn> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut conns: Vec<RawConn> = (0..n).map(|_| RawConn::connect(&daemon.socket())).collect();
        let all_served = conns.iter_mut().all(|conn| {
            let mut line = PING.as_bytes().to_vec();
            line.push(b'\n');
            conn.try_send(&line).is_ok()
                && matches!(conn.try_read_line(), Ok(Some(reply)) if reply.contains("\"result\""))
        });
        if all_served {
            return conns;
        }
        assert!(Instant::now() < deadline, "could not hold {n} connections");
        drop(conns);
        std::thread::sleep(Duration::from_millis(50));
    }
}

root_test!(
    one_uid_over_its_cap_is_told_busy_and_others_are_still_served,
    || {
        let daemon = Daemon::start(DaemonOptions::new().args(&["--max-connections-per-uid", "8"]));
        let mut held = hold(&daemon, 8);
        assert_busy(
            &daemon,
            "uid 0 already holds 8 connections, the most one user may",
        );
        // Another user is served while root is at its cap.
        let out = daemon.ctl(TestUser::get("cpt-bystander").uid, &["ping"]);
        out.assert_success();
        // A slot comes back when a connection closes.
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut conn = RawConn::connect(&daemon.socket());
            let reply = conn.call(PING);
            if reply["result"].is_object() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the closed connection's slot never came back"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
);

#[test]
fn the_total_cap_holds_across_uids() {
    let daemon = Daemon::in_process(DaemonOptions::new().args(&["--max-connections", "5"]));
    let _held = hold(&daemon, 5);
    assert_busy(
        &daemon,
        "compartmentd is serving its maximum of 5 connections",
    );
}

/// Cut off on time: not before the line timeout, and before a line trickled at a pace that
/// would complete it only long after has its last byte.
#[test]
fn a_line_trickled_byte_by_byte_is_cut_off_on_time() {
    let daemon = Daemon::in_process(DaemonOptions::new().args(&["--line-timeout", "1s"]));
    let mut stream = UnixStream::connect(daemon.socket()).unwrap();
    // One byte every 200 ms (the read's timeout paces the writes): the whole line would take
    // eight times the line timeout.
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let mut sent = 0;
    let closed_after = loop {
        assert!(
            sent < PING.len(),
            "the whole line was trickled in {:?} and the connection is still open",
            started.elapsed()
        );
        if stream.write_all(&PING.as_bytes()[sent..][..1]).is_err() {
            break started.elapsed();
        }
        sent += 1;
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(0) => break started.elapsed(),
            Ok(n) => panic!("unexpected answer: {}", String::from_utf8_lossy(&buf[..n])),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {
                break started.elapsed()
            }
            Err(_) => {}
        }
    };
    println!(
        "trickled {sent} of the line's {} bytes; closed after {closed_after:?}",
        PING.len()
    );
    assert!(
        closed_after >= Duration::from_secs(1),
        "closed before the line timeout: {closed_after:?}"
    );
    // A client that finishes its line promptly is unaffected.
    let mut conn = RawConn::connect(&daemon.socket());
    assert!(answers_ping(&mut conn));
}

/// With a 1 s idle timeout, the idle connection is closed while the other, which pings more
/// often than that, is served before and after.
#[test]
fn idle_connections_close_and_busy_ones_stay() {
    let daemon = Daemon::in_process(DaemonOptions::new().args(&["--idle-timeout", "1s"]));
    let mut idle = RawConn::connect(&daemon.socket());
    let mut busy = RawConn::connect(&daemon.socket());
    // The read ends when the daemon closes the connection (or fails the test after the
    // harness's read timeout).
    let closed = std::thread::spawn(move || idle.is_closed());
    let mut pings = 0;
    while !closed.is_finished() {
        assert!(answers_ping(&mut busy), "an active connection was closed");
        pings += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(closed.join().unwrap(), "the idle connection stayed open");
    assert!(
        answers_ping(&mut busy),
        "the active connection was closed with the idle one, after {pings} pings"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_hundred_mebibytes_without_a_newline_leave_memory_flat() {
    // The built daemon: the memory measured is its process's alone.
    let daemon = Daemon::start_default();
    let pid = daemon.pid().unwrap();
    let before = rss_kib(pid);
    let chunk = vec![b'x'; 64 * 1024];
    let target: usize = 100 * 1024 * 1024;
    let (mut total, mut connections, mut peak) = (0usize, 0, before);
    // Several senders at once, each writing until the daemon cuts it off, until 100 MiB
    // have gone out in all.
    while total < target {
        let mut streams: Vec<(UnixStream, usize)> = (0..8)
            .map(|_| (UnixStream::connect(daemon.socket()).unwrap(), 0))
            .collect();
        connections += streams.len();
        for (stream, sent) in &mut streams {
            stream
                .set_write_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            while total < target {
                match stream.write(&chunk) {
                    Ok(n) => (total, *sent) = (total + n, *sent + n),
                    Err(_) => break,
                }
            }
            peak = peak.max(rss_kib(pid));
        }
        for (mut stream, sent) in streams {
            let mut reply = String::new();
            let _ = stream.shutdown(std::net::Shutdown::Write);
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let _ = stream.read_to_string(&mut reply);
            // The reply may be lost to a reset; when it arrives it names the reason. (The
            // last sender may stop short of the limit: its bytes are then a bad request.)
            if !reply.is_empty() && sent > 64 * 1024 {
                assert!(reply.contains("\"frame_too_long\""), "{reply}");
            }
        }
    }
    let after = rss_kib(pid);
    println!(
        "sent {} MiB over {connections} connections; daemon RSS {before} KiB before, peak {peak} KiB, {after} KiB after",
        total / (1024 * 1024)
    );
    assert!(
        peak < before + 16 * 1024,
        "RSS grew from {before} KiB to {peak} KiB"
    );
    // Still serving.
    let mut conn = RawConn::connect(&daemon.socket());
    assert!(answers_ping(&mut conn));
}
