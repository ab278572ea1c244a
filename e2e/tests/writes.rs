//! Changes under pressure: one organization's admin flooding the daemon with changes grows
//! the database only as fast as the change rate allows, another admin's changes keep their
//! pace meanwhile, and below the free-space floor only superusers may change anything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use compartment_e2e::{root_test, Daemon, DaemonOptions, RawConn, TestUser, ROOT};
use serde_json::{json, Value};

/// The admin who floods.
fn flooder() -> TestUser {
    TestUser::get("cpt-flooder")
}

/// The admin of another organization, who only wants to invite someone.
fn bystander() -> TestUser {
    TestUser::get("cpt-calm-admin")
}

/// Root creates `org` with `email` as its admin, and `user` activates it.
fn org_with_admin(d: &Daemon, org: &str, email: &str, user: &TestUser) {
    let out = d.ctl(ROOT, &["org", "create", org, "--admin", email]);
    out.assert_success();
    let invitation =
        compartment_e2e::parse_invitation_lines(&out.stdout_lines()[1..], email, "admin");
    d.activate(user.uid, &invitation.url)
        .assert_ok(&format!("Activated {email}: you are now admin in {org}.\n"));
}

fn invite(id: u64, org: &str, email: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "user.invite",
           "params": {"org": org, "email": email, "role": "viewer"}})
    .to_string()
}

fn remove(id: u64, org: &str, email: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "user.remove",
           "params": {"org": org, "email": email}})
    .to_string()
}

/// What a flood's changes came to: how many were accepted, and the refusals by kind.
#[derive(Debug, Default)]
struct Tally {
    accepted: u64,
    refused: BTreeMap<String, u64>,
    /// The first `busy` refusal, as sent.
    busy: Option<Value>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.accepted += other.accepted;
        for (kind, count) in other.refused {
            *self.refused.entry(kind).or_default() += count;
        }
        self.busy = self.busy.take().or(other.busy);
    }

    fn refused(&self) -> u64 {
        self.refused.values().sum()
    }
}

/// Sends `uid`'s changes from `lines` on a connection of its own until `stop` is set,
/// `window` at a time without waiting for their answers (pipelined), and counts the
/// answers.
fn flood(
    socket: PathBuf,
    uid: u32,
    stop: Arc<AtomicBool>,
    window: usize,
    mut lines: impl FnMut(u64) -> String + Send + 'static,
) -> std::thread::JoinHandle<Tally> {
    std::thread::spawn(move || {
        let mut conn = RawConn::connect_as(&socket, uid);
        let mut tally = Tally::default();
        let mut id = 0;
        while !stop.load(Ordering::Relaxed) {
            let mut text = String::new();
            for _ in 0..window {
                id += 1;
                text.push_str(&lines(id));
                text.push('\n');
            }
            conn.send(text.as_bytes());
            for _ in 0..window {
                let reply = conn.read_json();
                match reply["error"]["data"]["kind"].as_str() {
                    None => tally.accepted += 1,
                    Some(kind) => {
                        *tally.refused.entry(kind.to_owned()).or_default() += 1;
                        if kind == "busy" && tally.busy.is_none() {
                            tally.busy = Some(reply["error"].clone());
                        }
                    }
                }
            }
        }
        tally
    })
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

const MB: f64 = 1e6;

/// One test of this file at a time: each floods its own daemon, and the pace test measures
/// latencies that another test's flood on the same cores would distort.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

root_test!(
    an_admin_inviting_and_removing_in_a_loop_grows_the_database_only_a_little,
    || {
        let _serial = one_at_a_time();
        let d = Daemon::start_default();
        let admin = flooder();
        org_with_admin(&d, "acme", "admin@example.com", &admin);
        let before = file_size(&d.db_path());

        // The attack as reported: invite and remove the same few addresses in a loop, flat
        // out, on several connections, for 30 s.
        const CONNECTIONS: u64 = 8;
        const SECONDS: u64 = 30;
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let floods: Vec<_> = (0..CONNECTIONS)
            .map(|conn| {
                flood(d.socket(), admin.uid, stop.clone(), 32, move |id| {
                    let email = format!("loop-{conn}-{}@example.com", (id / 2) % 4);
                    if id % 2 == 1 {
                        invite(id, "acme", &email)
                    } else {
                        remove(id, "acme", &email)
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(SECONDS));
        stop.store(true, Ordering::Relaxed);
        let mut tally = Tally::default();
        for flood in floods {
            tally.add(flood.join().unwrap());
        }
        let took = started.elapsed();
        let after = file_size(&d.db_path());
        let growth = after.saturating_sub(before);
        eprintln!(
            "writes: {} changes accepted and {} refused ({:?}) in {:.1} s; the database grew by {:.2} MB ({:.2} -> {:.2} MB)",
            tally.accepted,
            tally.refused(),
            tally.refused,
            took.as_secs_f64(),
            growth as f64 / MB,
            before as f64 / MB,
            after as f64 / MB,
        );

        // A refusal says which limit and when to retry.
        let busy = tally.busy.clone().expect("the flood met the change rate");
        assert_eq!(
            busy["message"],
            format!(
                "uid {} is making changes faster than the 20 a second (in bursts of up to 500) one user may",
                admin.uid
            ),
            "{busy}"
        );
        let hint = busy["data"]["hint"].as_str().unwrap();
        let ms: u64 = hint
            .strip_prefix("slow down: retry in ")
            .and_then(|rest| rest.strip_suffix(" ms"))
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("hint {hint:?}"));
        assert!((1..=50).contains(&ms), "{hint}");
        assert_eq!(busy["code"], -32014);

        // The default burst and rate, and not one change more (a change refused by a rule
        // counts too).
        let allowed = 500 + 20 * took.as_secs_f64().ceil() as u64;
        assert!(
            tally.accepted + tally.refused() - tally.refused["busy"] <= allowed,
            "{tally:?} over {allowed}"
        );
        assert!(growth < 50_000_000, "the database grew by {growth} bytes");

        // The organization is whole, and its admin is served again once it slows down: told
        // `busy` (its rate) until then, and nothing else; a minute only fails a test that
        // hangs.
        let mut conn = RawConn::connect_as(&d.socket(), admin.uid);
        let served = compartment_e2e::poll(Duration::from_secs(60), || {
            let reply = conn.call(&invite(1, "acme", "after@example.com"));
            if reply["error"].is_object() {
                assert_eq!(reply["error"]["data"]["kind"], "busy", "{reply}");
            }
            (reply["result"]["status"] == "invited").then_some(())
        });
        assert!(served.is_some(), "the admin was never served again");
    }
);

/// The latencies of `count` invitations by `uid` into `org`, one at a time.
fn invite_latencies(socket: &Path, uid: u32, org: &str, tag: &str, count: usize) -> Vec<Duration> {
    let mut conn = RawConn::connect_as(socket, uid);
    (0..count)
        .map(|i| {
            let line = invite(i as u64, org, &format!("{tag}-{i}@example.com"));
            let started = Instant::now();
            let reply = conn.call(&line);
            let took = started.elapsed();
            assert_eq!(reply["result"]["status"], "invited", "{reply}");
            took
        })
        .collect()
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() * 99 / 100]
}

root_test!(
    another_admins_invitations_keep_their_pace_while_one_uid_floods,
    || {
        let _serial = one_at_a_time();
        // No change rate: the flood must reach the writer, whose turns between uids are
        // what keeps the other admin's pace here.
        let d = Daemon::start(DaemonOptions::new().args(&[
            "--max-changes-per-sec",
            "1000000",
            "--changes-burst",
            "1000000",
        ]));
        let (loud, calm) = (flooder(), bystander());
        org_with_admin(&d, "loud", "loud@example.com", &loud);
        org_with_admin(&d, "calm", "calm@example.com", &calm);

        // Warm up; then rounds of the idle figure beside the loaded one. On shared CPUs one
        // round's idle p99 can fall on a quiet moment and its loaded one on a burst of
        // others' load: the rule holds when one of three rounds keeps the pace (a writer
        // that let one uid starve the others misses it in every round, by far more).
        invite_latencies(&d.socket(), calm.uid, "calm", "warm", 50);
        let mut rounds = Vec::new();
        for round in 0..3 {
            let (idle, loaded) = flood_round(&d, &loud, &calm, round);
            rounds.push((idle, loaded));
            if loaded <= idle * 3 {
                return;
            }
        }
        panic!("p99 under another uid's flood over 3x the idle in every round (idle, loaded): {rounds:?}");
    }
);

/// One round: the calm admin's p99 alone, then while the loud uid floods the writer from
/// 16 connections.
fn flood_round(d: &Daemon, loud: &TestUser, calm: &TestUser, round: usize) -> (Duration, Duration) {
    const SAMPLES: usize = 500;
    let idle = p99(invite_latencies(
        &d.socket(),
        calm.uid,
        "calm",
        &format!("idle{round}"),
        SAMPLES,
    ));

    // 16 connections of the other uid, 32 changes in flight on each: new invitations
    // (accepted) and invitations of its own admin (refused `already_member`).
    let stop = Arc::new(AtomicBool::new(false));
    let floods: Vec<_> = (0..16u64)
        .map(|conn| {
            flood(d.socket(), loud.uid, stop.clone(), 32, move |id| {
                if id % 2 == 0 {
                    invite(
                        id,
                        "loud",
                        &format!("flood-{round}-{conn}-{id}@example.com"),
                    )
                } else {
                    invite(id, "loud", "loud@example.com")
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let loaded_started = Instant::now();
    let loaded = p99(invite_latencies(
        &d.socket(),
        calm.uid,
        "calm",
        &format!("loaded{round}"),
        SAMPLES,
    ));
    let loaded_took = loaded_started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for flood in floods {
        tally.add(flood.join().unwrap());
    }
    eprintln!(
            "writes: calm admin's user.invite p99 idle {:.2} ms, while another uid floods {:.2} ms ({:.1}x; {SAMPLES} samples each, the loaded ones in {:.1} s, while the flood had {} changes accepted and {:?} refused)",
            idle.as_secs_f64() * 1e3,
            loaded.as_secs_f64() * 1e3,
            loaded.as_secs_f64() / idle.as_secs_f64(),
            loaded_took.as_secs_f64(),
            tally.accepted,
            tally.refused,
        );
    assert!(
        tally.refused["already_member"] > 0 && tally.accepted > 0,
        "{tally:?}"
    );
    (idle, loaded)
}

root_test!(
    below_the_free_space_floor_only_superusers_may_change_anything,
    || {
        let _serial = one_at_a_time();
        // A floor larger than any disk: the disk is always "nearly full".
        let d = Daemon::start(DaemonOptions::new().args(&["--min-free-space", "1EiB"]));
        let user = TestUser::get("cpt-floor-admin");
        // Root's changes go through.
        let out = d.ctl(
            ROOT,
            &["org", "create", "acme", "--admin", "admin@example.com"],
        );
        out.assert_success();
        let invitation = compartment_e2e::parse_invitation_lines(
            &out.stdout_lines()[1..],
            "admin@example.com",
            "admin",
        );
        // Another user's change is refused, with what to do about it.
        d.activate(user.uid, &invitation.url).assert_err_hint(
            1,
            "the disk of the daemon's state directory is nearly full: less than the 1.0 EiB kept for repairs is free",
            "a superuser must free space on the filesystem of the daemon's state directory; until then only superusers may make changes",
        );
        let mut conn = RawConn::connect_as(&d.socket(), user.uid);
        let reply = conn.call(&invite(1, "acme", "x@example.com"));
        assert_eq!(reply["error"]["data"]["kind"], "unavailable", "{reply}");
        assert_eq!(reply["error"]["code"], -32015, "{reply}");
        // Reads go on, for everyone.
        d.ctl(user.uid, &["whoami"]).assert_success();
        assert_eq!(d.members("acme").members.len(), 1);
        // And a superuser may still repair: here, invite.
        d.ctl(
            ROOT,
            &[
                "--org",
                "acme",
                "user",
                "invite",
                "ops@example.com",
                "--role",
                "viewer",
            ],
        )
        .assert_success();
        assert_eq!(d.members("acme").members.len(), 2);
    }
);
