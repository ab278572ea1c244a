//! A feed costs what it delivers (DESIGN §8): another organization's admin replaying its
//! change feed on every connection it may open, over a host with a long history, leaves
//! root's pings and other admins' changes as quick as they were. Alone in its test binary,
//! so that no other test's load is measured with it; the figures are printed beside their
//! idle ones.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use compartment_e2e::{add_history, root_test, Daemon, RawConn, TestUser, ROOT};
use serde_json::Value;

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

/// The p50 and p99 of `samples`, in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99))
}

/// Root's pings and another admin's invitations, each timed from request to answer.
fn latencies(daemon: &Daemon, admin: u32, round: &str) -> (Vec<Duration>, Vec<Duration>) {
    let mut root = daemon.raw();
    let mut pings = Vec::new();
    for _ in 0..400 {
        let started = Instant::now();
        assert!(root.call(PING)["result"].is_object());
        pings.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut conn = RawConn::connect_as(&daemon.socket(), admin);
    let mut invites = Vec::new();
    for i in 0..60 {
        let line = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "user.invite",
            "params": {"org": "acme", "email": format!("{round}-{i}@example.com"), "role": "viewer"}});
        let started = Instant::now();
        let reply = conn.call(&line.to_string());
        invites.push(started.elapsed());
        assert_eq!(reply["result"]["status"], "invited", "{reply}");
    }
    (pings, invites)
}

// The host holds a long history (most of it a third organization's, a fifth of it the
// attacker's own organization's); the attacker subscribes from the start on 64 connections
// and, each time a feed has caught up or been refused, subscribes again.
root_test!(an_admins_feed_replays_do_not_stall_anyone_else, || {
    let events: usize = std::env::var("COMPARTMENT_TEST_HISTORY")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let mut daemon = Daemon::start_default();
    let victim = TestUser::get("cpt-st-acme");
    let attacker = TestUser::get("cpt-st-evil");
    let acme = daemon.create_acme();
    daemon.activate(victim.uid, &acme.url).assert_success();
    for (org, admin, user) in [
        ("evil", "evil@example.com", Some(&attacker)),
        ("others", "others@example.com", None),
    ] {
        let out = daemon.ctl(ROOT, &["org", "create", org, "--admin", admin]);
        let lines =
            compartment_e2e::parse_invitation_lines(&out.stdout_lines()[1..], admin, "admin");
        if let Some(user) = user {
            daemon.activate(user.uid, &lines.url).assert_success();
        }
        daemon
            .ctl(
                ROOT,
                &[
                    "--org",
                    org,
                    "user",
                    "invite",
                    &format!("pawn@{org}.example"),
                    "--role",
                    "viewer",
                ],
            )
            .assert_success();
    }
    daemon.stop();
    let started = Instant::now();
    let evil_last = add_history(&daemon.state_dir(), "evil", "pawn@evil.example", events / 5);
    add_history(
        &daemon.state_dir(),
        "others",
        "pawn@others.example",
        events - events / 5,
    );
    println!(
        "wrote {events} events of history in {:?}",
        started.elapsed()
    );
    daemon.restart();

    let (idle_pings, idle_invites) = latencies(&daemon, victim.uid, "idle");

    let stop = Arc::new(AtomicBool::new(false));
    let (subscribed, refused, delivered) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let attackers: Vec<_> = (0..64)
        .map(|_| {
            let (socket, stop) = (daemon.socket(), stop.clone());
            let (subscribed, refused, delivered) =
                (subscribed.clone(), refused.clone(), delivered.clone());
            let uid = attacker.uid;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Over the connection cap, the daemon answers `busy` and closes.
                    let mut conn = RawConn::connect_as(&socket, uid);
                    let subscribe =
                        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"events.subscribe\",\"params\":{\"after\":0}}\n";
                    let reply = match conn.try_send(subscribe).and_then(|()| conn.try_read_line()) {
                        Ok(Some(line)) => serde_json::from_str::<Value>(&line).unwrap(),
                        _ => Value::Null,
                    };
                    if reply["result"].is_null() {
                        assert!(
                            reply.is_null() || reply["error"]["data"]["kind"] == "busy",
                            "{reply}"
                        );
                        refused.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    subscribed.fetch_add(1, Ordering::Relaxed);
                    // Reads until the feed reaches the last change of its organization (the
                    // last line a replay sends before it waits), looking only for that line,
                    // so that the attacker's own parsing takes no CPU from the daemon here.
                    let last = format!("\"seq\":{evil_last},");
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(Some(line)) = conn.try_read_line() else { break };
                        delivered.fetch_add(1, Ordering::Relaxed);
                        if line.contains(&last) {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (busy_pings, busy_invites) = latencies(&daemon, victim.uid, "busy");
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.join().unwrap();
    }

    let (idle_ping_p50, idle_ping_p99) = percentiles(idle_pings);
    let (busy_ping_p50, busy_ping_p99) = percentiles(busy_pings);
    let (idle_invite_p50, idle_invite_p99) = percentiles(idle_invites);
    let (busy_invite_p50, busy_invite_p99) = percentiles(busy_invites);
    println!(
        "history: {events} events, {} of them the attacker's organization's",
        events / 5
    );
    println!(
        "attacker: {} subscriptions served, {} refused busy, {} events delivered",
        subscribed.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        delivered.load(Ordering::Relaxed)
    );
    println!("root's ping:        idle p50 {idle_ping_p50:.2} ms p99 {idle_ping_p99:.2} ms; under the replays p50 {busy_ping_p50:.2} ms p99 {busy_ping_p99:.2} ms (target p99 < 20 ms)");
    println!("acme's user.invite: idle p50 {idle_invite_p50:.2} ms p99 {idle_invite_p99:.2} ms; under the replays p50 {busy_invite_p50:.2} ms p99 {busy_invite_p99:.2} ms (target p99 < 3x idle)");
    assert!(
        subscribed.load(Ordering::Relaxed) > 0,
        "the attack never ran"
    );
    assert!(
        busy_ping_p99 < 20.0,
        "root's ping p99 {busy_ping_p99:.2} ms"
    );
    assert!(
        busy_invite_p99 < 3.0 * idle_invite_p99,
        "user.invite p99 {busy_invite_p99:.2} ms against {idle_invite_p99:.2} ms idle"
    );
});
