//! Several daemons on one PostgreSQL, as several hosts run them: what one host changes the
//! other's very next request sees; each host's feed tells every host's changes, in one
//! order, once, and resumes on either; a daemon killed under load on both, and PostgreSQL
//! restarted under load, lose nothing that was answered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use compartment_e2e::{
    parse_invitation_lines, parse_invite, root_test, Daemon, DaemonOptions, Database, TestUser,
    ROOT,
};
use compartmentctl::wire::{
    Event, EventsSubscribeParams, OrgCreateParams, OrgCreated, OrgRenameParams, Request, Role,
    UserInviteParams,
};
use compartmentctl::{Client, ClientError, FeedItem};
use serde_json::Value;

/// Two daemons on one fresh PostgreSQL, as two hosts; `None` (said loudly) without one
/// outside CI.
fn two_hosts(test: &str) -> Option<(Database, Daemon, Daemon)> {
    let database = Database::start(test)?;
    let a = Daemon::start(DaemonOptions::new().postgres(&database));
    let b = Daemon::start(DaemonOptions::new().postgres(&database));
    Some((database, a, b))
}

fn invite(email: &str) -> Request {
    Request::UserInvite(UserInviteParams {
        org: Some("acme".into()),
        email: email.to_owned(),
        role: Role::Viewer,
        expires_in: None,
        resend: false,
        unix_user: None,
        access_until: None,
    })
}

fn create_acme(client: &mut Client) {
    let _: OrgCreated = client
        .call(&Request::OrgCreate(OrgCreateParams {
            name: "acme".into(),
            admin: "admin@example.com".into(),
            admin_unix_user: None,
            expires_in: Default::default(),
        }))
        .expect("org.create");
}

/// The e-mails of acme's members, as `user list` on `d` shows them.
fn members(d: &Daemon) -> BTreeSet<String> {
    let out = d.ctl(ROOT, &["--org", "acme", "--output", "json", "user", "list"]);
    out.assert_success();
    let list: Value = serde_json::from_str(&out.stdout).expect("user list JSON");
    list["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|member| member["email"].as_str().expect("email").to_owned())
        .collect()
}

root_test!(
    a_member_removed_through_one_host_is_refused_on_the_other_at_once,
    || {
        let Some((_database, a, b)) =
            two_hosts("a_member_removed_through_one_host_is_refused_on_the_other_at_once")
        else {
            return;
        };
        let alice = TestUser::get("cpt-hosts-alice");
        let dev = TestUser::get("cpt-hosts-dev");
        // Made on one host, activated on the other.
        let out = a.ctl(
            ROOT,
            &["org", "create", "acme", "--admin", "alice@example.com"],
        );
        out.assert_success();
        let invitation =
            parse_invitation_lines(&out.stdout_lines()[1..], "alice@example.com", "admin");
        b.activate(alice.uid, &invitation.url)
            .assert_ok("Activated alice@example.com: you are now admin in acme.\n");
        let dev_invite = parse_invite(
            &b.ctl(
                alice.uid,
                &["user", "invite", "dev@example.com", "--role", "deployer"],
            ),
            "dev@example.com",
            "deployer",
        );
        a.activate(dev.uid, &dev_invite.url)
            .assert_ok("Activated dev@example.com: you are now deployer in acme.\n");
        for round in 0..5 {
            b.ctl(
                dev.uid,
                &["--org", "acme", "auth", "can", "deployment.create"],
            )
            .assert_success();
            a.ctl(alice.uid, &["user", "remove", "dev@example.com"])
                .assert_ok("Removed dev@example.com from acme.\n");
            // The other host's very next request: refused.
            b.ctl(dev.uid, &["--org", "acme", "user", "list"])
                .assert_err(5, "organization acme not found");
            // And granted again through the other host, at once on the first.
            b.ctl(
                alice.uid,
                &["user", "invite", "dev@example.com", "--role", "deployer"],
            )
            .assert_success();
            a.ctl(dev.uid, &["--org", "acme", "user", "list"])
                .assert_success();
            eprintln!("round {round}: removal and grant seen at once across hosts");
        }
    }
);

/// The next event of `feed`, failing on a close or after 10 s.
fn next_event(feed: &mut compartmentctl::Subscription) -> Event {
    match feed.next_item().unwrap() {
        FeedItem::Event(event) => *event,
        FeedItem::Closed(closed) => panic!("the feed closed: {closed:?}"),
    }
}

/// What a feed said of an event, without its time: sequence, kind, e-mail.
fn told(event: &Event) -> (u64, String, String) {
    let value = serde_json::to_value(event).unwrap();
    (
        value["seq"].as_u64().unwrap(),
        value["kind"].as_str().unwrap().to_owned(),
        value["email"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn each_hosts_feed_tells_every_hosts_changes_once_in_order_and_resumes_on_either() {
    let Some((_database, a, b)) =
        two_hosts("each_hosts_feed_tells_every_hosts_changes_once_in_order_and_resumes_on_either")
    else {
        return;
    };
    let mut on_a = a
        .client()
        .subscribe(EventsSubscribeParams::default())
        .unwrap();
    let mut on_b = b
        .client()
        .subscribe(EventsSubscribeParams::default())
        .unwrap();
    create_acme(&mut a.client());
    // Alternately through each host, each answered before the next is asked.
    let mut expected = vec![(1, "member.added".to_owned(), "admin@example.com".to_owned())];
    for i in 0..20u64 {
        let host = if i % 2 == 0 { &a } else { &b };
        let email = format!("user{i:02}@example.com");
        let _: Value = host.client().call(&invite(&email)).unwrap();
        expected.push((i + 2, "member.added".to_owned(), email));
    }
    let tell = |feed: &mut compartmentctl::Subscription| -> Vec<(u64, String, String)> {
        (0..expected.len())
            .map(|_| told(&next_event(feed)))
            .collect()
    };
    assert_eq!(tell(&mut on_a), expected, "host a's feed");
    assert_eq!(tell(&mut on_b), expected, "host b's feed");
    // Resumed after event 10 on either host: the same events from 11 on.
    for host in [&a, &b] {
        let mut resumed = host
            .client()
            .subscribe(EventsSubscribeParams {
                after: Some(10),
                ..EventsSubscribeParams::default()
            })
            .unwrap();
        let rest: Vec<_> = (10..expected.len())
            .map(|_| told(&next_event(&mut resumed)))
            .collect();
        assert_eq!(rest, expected[10..], "resumed after 10");
    }
}

#[test]
fn a_feed_of_an_organization_follows_it_when_another_host_renames_it() {
    let Some((_database, a, b)) =
        two_hosts("a_feed_of_an_organization_follows_it_when_another_host_renames_it")
    else {
        return;
    };
    create_acme(&mut a.client());
    let mut client = b.client();
    // A feed that is never woken fails the test instead of hanging it.
    client.set_timeout(Duration::from_secs(20)).unwrap();
    let mut on_b = client
        .subscribe(EventsSubscribeParams {
            org: Some("acme".into()),
            ..EventsSubscribeParams::default()
        })
        .unwrap();
    let _: Value = a
        .client()
        .call(&Request::OrgRename(OrgRenameParams {
            name: "acme".into(),
            new_name: "acme-corp".into(),
        }))
        .unwrap();
    let mut invite_corp = invite("late@example.com");
    if let Request::UserInvite(params) = &mut invite_corp {
        params.org = Some("acme-corp".into());
    }
    let _: Value = a.client().call(&invite_corp).unwrap();
    // Host b's feed, woken by host a's renaming, tells of it and goes on under the new name.
    let renamed = serde_json::to_value(next_event(&mut on_b)).unwrap();
    assert_eq!(
        (
            &renamed["seq"],
            &renamed["kind"],
            &renamed["org"],
            &renamed["previous_org"]
        ),
        (
            &2.into(),
            &"org.renamed".into(),
            &"acme-corp".into(),
            &"acme".into()
        )
    );
    assert_eq!(
        told(&next_event(&mut on_b)),
        (3, "member.added".to_owned(), "late@example.com".to_owned())
    );
}

/// Inviters that keep inviting new addresses through one host until told to stop, and
/// keep what was answered.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<String>>>,
    refusals: Arc<Mutex<Vec<String>>>,
}

impl Load {
    /// `per_host` inviters on each of `hosts`, each on connections of its own, each
    /// carrying on after a refusal or a lost connection (reconnecting) until stopped.
    fn start(hosts: &[&Daemon], per_host: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let refusals = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for (h, host) in hosts.iter().enumerate() {
            for t in 0..per_host {
                let socket = host.socket();
                let (stop, refusals) = (stop.clone(), refusals.clone());
                threads.push(std::thread::spawn(move || {
                    let mut answered = Vec::new();
                    let mut client = None;
                    for i in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let email = format!("h{h}-t{t}-{i}@example.com");
                        let connected = match client.take() {
                            Some(client) => Ok(client),
                            None => Client::connect(&socket),
                        };
                        let mut connected = match connected {
                            Ok(connected) => connected,
                            Err(_) => {
                                std::thread::sleep(Duration::from_millis(20));
                                continue;
                            }
                        };
                        match connected.call::<Value>(&invite(&email)) {
                            Ok(_) => {
                                answered.push(email);
                                client = Some(connected);
                            }
                            Err(ClientError::Rpc(err)) => {
                                refusals.lock().unwrap().push(format!(
                                    "{:?}: {} / {}",
                                    err.kind(),
                                    err.message,
                                    err.hint().unwrap_or("")
                                ));
                                client = Some(connected);
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            // The connection broke (the daemon was killed): the change may
                            // or may not have landed; it was not answered.
                            Err(_) => std::thread::sleep(Duration::from_millis(20)),
                        }
                    }
                    answered
                }));
            }
        }
        Load {
            stop,
            threads,
            refusals,
        }
    }

    /// Stops the inviters; what was answered, and every refusal.
    fn stop(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let answered = self
            .threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect();
        let refusals = self.refusals.lock().unwrap().clone();
        (answered, refusals)
    }
}

#[test]
fn a_daemon_killed_under_load_on_both_hosts_loses_nothing_it_answered() {
    let Some((_database, mut a, b)) =
        two_hosts("a_daemon_killed_under_load_on_both_hosts_loses_nothing_it_answered")
    else {
        return;
    };
    create_acme(&mut a.client());
    let load = Load::start(&[&a, &b], 2);
    std::thread::sleep(Duration::from_millis(1500));
    a.kill9();
    std::thread::sleep(Duration::from_millis(500));
    let (answered, refusals) = load.stop();
    assert!(refusals.is_empty(), "refused: {refusals:#?}");
    assert!(answered.len() > 20, "only {} answered", answered.len());
    let on_b = members(&b);
    let lost: Vec<_> = answered.iter().filter(|e| !on_b.contains(*e)).collect();
    assert!(lost.is_empty(), "answered and lost: {lost:?}");
    a.restart();
    assert_eq!(members(&a), on_b, "the restarted host reads the same");
    eprintln!(
        "{} invitations answered through two hosts, one killed mid-load: none lost",
        answered.len()
    );
}

#[test]
fn a_postgresql_restart_under_load_is_ridden_out_and_loses_nothing_answered() {
    let Some((database, a, b)) =
        two_hosts("a_postgresql_restart_under_load_is_ridden_out_and_loses_nothing_answered")
    else {
        return;
    };
    create_acme(&mut a.client());
    let load = Load::start(&[&a, &b], 2);
    std::thread::sleep(Duration::from_millis(1000));
    database.server().stop_server().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    database.server().start_server().unwrap();
    let back = Instant::now();
    // Until both hosts answer changes again.
    let deadline = back + Duration::from_secs(30);
    for (name, host) in [("a", &a), ("b", &b)] {
        for attempt in 0.. {
            let email = format!("{name}-back{attempt}@example.com");
            if host.client().call::<Value>(&invite(&email)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "host {name} never came back");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let recovered = back.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (answered, refusals) = load.stop();
    // While PostgreSQL was down, each refusal said so and what to do.
    assert!(
        !refusals.is_empty(),
        "nothing was refused while PostgreSQL was down"
    );
    let unavailable = "Unavailable: the database cannot be reached; try again in a moment / the daemon reconnects by itself once PostgreSQL is back; its log says why it cannot reach it";
    let other: Vec<_> = refusals.iter().filter(|r| *r != unavailable).collect();
    assert!(other.is_empty(), "refused otherwise: {other:#?}");
    let on_a = members(&a);
    let lost: Vec<_> = answered.iter().filter(|e| !on_a.contains(*e)).collect();
    assert!(lost.is_empty(), "answered and lost: {lost:?}");
    assert_eq!(members(&b), on_a);
    assert!(a.answers_ping() && b.answers_ping());
    eprintln!(
        "PostgreSQL restarted under load: {} answered, {} refused `unavailable` meanwhile, both hosts writing again {recovered:?} after it was back; none lost",
        answered.len(),
        refusals.len()
    );
}

/// A password never goes in `--store`; it comes from the password file, which must be the
/// daemon's alone; a wrong one stops the start with PostgreSQL's own words; and neither
/// the log nor an error ever shows it.
#[test]
fn the_password_comes_from_the_password_file_and_is_never_shown() {
    use std::os::unix::fs::PermissionsExt;

    let Some(database) =
        Database::start("the_password_comes_from_the_password_file_and_is_never_shown")
    else {
        return;
    };
    database.server().password_role("app", "s3cret-pw").unwrap();
    let socket_dir = database.server().socket_dir().display().to_string();
    let conninfo = format!("host={socket_dir} port=5432 user=app dbname=app");

    // In the string: refused before anything starts, without echoing it.
    let out = Daemon::refused_start(
        DaemonOptions::new().args(&["--store", &format!("{conninfo} password=s3cret-pw")]),
    );
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stderr,
        "compartmentd: --store: a password here would show in `ps`, the service's unit and its logs; put it in a passfile (PGPASSFILE, or ~/.pgpass of the daemon's user) instead\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let passfile = dir.path().join("pgpass");
    let passfile_text = passfile.display().to_string();
    let with_passfile = |line: &str, mode: u32| {
        std::fs::write(&passfile, format!("{line}\n")).unwrap();
        std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(mode)).unwrap();
        DaemonOptions::new()
            .args(&["--store", &conninfo])
            .env("PGPASSFILE", &passfile_text)
    };

    // Readable by others: refused, naming the file and what to do.
    let out = Daemon::refused_start(with_passfile("localhost:*:app:app:s3cret-pw", 0o644));
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stderr,
        format!("compartmentd: --store: the password file {passfile_text} may be read by others (mode 0644): make it the daemon's alone (chmod 600 {passfile_text})\n")
    );

    // The wrong password: PostgreSQL's refusal, at once, rather than a wait.
    let out = Daemon::refused_start(with_passfile("localhost:*:app:app:wrong-pw", 0o600));
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stderr,
        "compartmentd: PostgreSQL: FATAL: password authentication failed for user \"app\"\n"
    );

    // The right one, in a file of mode 0400 as systemd's LoadCredential= makes it.
    let d = Daemon::start(with_passfile("localhost:*:app:app:s3cret-pw", 0o400));
    d.ctl(
        ROOT,
        &["org", "create", "acme", "--admin", "admin@example.com"],
    )
    .assert_success();
    let log = d.log();
    assert!(
        log.contains(&format!(
            "postgresql host={socket_dir} port=5432 dbname=app user=app"
        )),
        "{log}"
    );
    assert!(!log.contains("s3cret"), "{log}");
}

/// `compartmentd check` verifies the embedded database only; with `--store` it says what
/// stands for it instead, and fails.
#[test]
fn check_with_a_postgresql_store_says_what_verifies_it_instead() {
    let out = std::process::Command::new(compartment_e2e::binary("compartmentd"))
        .args(["check", "--store", "host=/nowhere dbname=compartment"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout, b"");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "compartmentd: check verifies the embedded database; with --store, PostgreSQL's constraints hold the same rules (its amcheck extension verifies its pages)\n"
    );
}

/// The verifier key a daemon logs at start, as an operator copies it to the other hosts.
fn verifier_key(d: &Daemon) -> String {
    let log = d.log();
    let line = log
        .lines()
        .find(|line| line.contains("audit checkpoints are signed with this key"))
        .unwrap_or_else(|| panic!("the daemon logged no key:\n{log}"));
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("key="))
        .unwrap_or_else(|| panic!("no key= in {line:?}"))
        .trim_matches('"')
        .to_owned()
}

/// Each host signs with its own key: a host trusts another's checkpoints (the one it
/// prunes behind among them) once given that host's key with `--audit-peer-key`, and
/// only then; a key that does not hold together is refused at start.
#[test]
fn a_host_trusts_the_checkpoints_of_the_hosts_whose_keys_it_is_given() {
    let test = "a_host_trusts_the_checkpoints_of_the_hosts_whose_keys_it_is_given";
    let Some(database) = Database::start(test) else {
        return;
    };
    let a = Daemon::start(DaemonOptions::new().postgres(&database));
    let key = verifier_key(&a);
    let trusting = Daemon::start(
        DaemonOptions::new()
            .postgres(&database)
            .args(&["--audit-peer-key", &key]),
    );
    let alone = Daemon::start(DaemonOptions::new().postgres(&database));
    a.ctl(
        ROOT,
        &["org", "create", "acme", "--admin", "admin@example.com"],
    )
    .assert_success();
    let out = a.ctl(ROOT, &["audit", "checkpoint"]);
    out.assert_success();
    let kept = a.dir().join("a.checkpoint");
    std::fs::write(&kept, &out.stdout).unwrap();
    let kept = kept.to_str().unwrap();

    let out = trusting.ctl(ROOT, &["audit", "verify", "--checkpoint", kept]);
    out.assert_success();
    assert_eq!(
        out.stdout_lines().last().copied(),
        Some("The audit log is whole.")
    );
    let out = alone.ctl(ROOT, &["audit", "verify", "--checkpoint", kept]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr.starts_with(
            "compartmentctl: the checkpoint cannot be trusted: it carries no signature of this daemon's key ("
        ) && out.stderr.contains(") nor of a peer's (--audit-peer-key)"),
        "{out:#?}"
    );

    let refused = Daemon::refused_start(
        DaemonOptions::new()
            .postgres(&database)
            .args(&["--audit-peer-key", "nonsense"]),
    );
    assert!(
        refused
            .stderr
            .contains("is not a verifier key (ORIGIN+ID+KEY"),
        "{refused:#?}"
    );
}
