//! Backup and restore end to end: `compartment admin backup` from a serving daemon, restored
//! with `compartmentd restore` into the other backend, and a daemon there that serves the
//! same membership, feed and audit log byte for byte; the file's mode and its atomic
//! appearance; and every refusal, with its words and exit code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use compartment_e2e::{
    add_history, parse_invite, poll, root_test, run_compartmentd, Daemon, DaemonOptions, Database,
    TestUser, ROOT,
};
use compartmentctl::wire::EventsSubscribeParams;
use compartmentctl::FeedItem;

fn admin_user() -> TestUser {
    TestUser::get("cpt-bk-admin")
}

fn deployer_user() -> TestUser {
    TestUser::get("cpt-bk-dep")
}

/// Builds on `d` a membership with some history: two organizations, members active and
/// invited in several roles, a removal, a role change, an expired invitation and a revoked
/// token, a current organization, the feed and the audit log of all that.
fn build_history(d: &Daemon) {
    let admin_invite = d.create_acme();
    d.activate(admin_user().uid, &admin_invite.url)
        .assert_success();
    let deploy = parse_invite(
        &d.ctl(
            admin_user().uid,
            &["user", "invite", "dep@example.com", "--role", "deployer"],
        ),
        "dep@example.com",
        "deployer",
    );
    d.activate(deployer_user().uid, &deploy.url)
        .assert_success();
    for (email, role) in [
        ("ro@example.com", "readonly"),
        ("gone@example.com", "viewer"),
    ] {
        d.ctl(admin_user().uid, &["user", "invite", email, "--role", role])
            .assert_success();
    }
    d.ctl(admin_user().uid, &["user", "remove", "gone@example.com"])
        .assert_success();
    d.ctl(
        admin_user().uid,
        &["role", "grant", "dep@example.com", "readonly"],
    )
    .assert_success();
    // A new URL for a pending invitation revokes the old token.
    d.ctl(
        admin_user().uid,
        &[
            "user",
            "invite",
            "ro@example.com",
            "--role",
            "readonly",
            "--resend",
        ],
    )
    .assert_success();
    d.ctl(
        ROOT,
        &[
            "--org",
            "acme",
            "user",
            "invite",
            "late@example.com",
            "--role",
            "viewer",
            "--expires-in",
            "1s",
        ],
    )
    .assert_success();
    // The sweeper marks it expired, in the store and in the feed.
    let expired = poll(Duration::from_secs(10), || {
        let out = d.ctl(
            ROOT,
            &["--org", "acme", "user", "list", "--status", "expired"],
        );
        out.stdout.contains("late@example.com").then_some(())
    });
    assert!(expired.is_some(), "the invitation of late@ never expired");
    d.ctl(
        ROOT,
        &["org", "create", "beta", "--admin", "dep@example.com"],
    )
    .assert_success();
    d.ctl(admin_user().uid, &["org", "use", "acme"])
        .assert_success();
}

/// What a daemon serves, as JSON text compared byte for byte: each organization's members,
/// the accounts, the whole feed replayed from the start, and the records of a backup (the
/// audit log, the tokens, every table), its header aside.
fn served(d: &Daemon, backup: &Path) -> Vec<String> {
    let mut seen = Vec::new();
    for org in ["acme", "beta"] {
        let out = d.ctl(ROOT, &["--org", org, "--output", "json", "user", "list"]);
        out.assert_success();
        seen.push(out.stdout.clone());
    }
    let out = d.ctl(ROOT, &["--output", "json", "account", "list"]);
    out.assert_success();
    seen.push(out.stdout.clone());
    let mut feed = d
        .client()
        .subscribe(EventsSubscribeParams {
            org: None,
            after: Some(0),
        })
        .unwrap();
    let head = feed.subscribed.head;
    assert!(head > 10, "a history of {head} changes");
    loop {
        match feed.next_item().unwrap() {
            FeedItem::Event(event) => {
                seen.push(serde_json::to_string(&event).unwrap());
                if event.seq == head {
                    break;
                }
            }
            FeedItem::Closed(closed) => panic!("the feed closed: {closed:?}"),
        }
    }
    let path = backup.to_str().unwrap();
    d.ctl(ROOT, &["admin", "backup", path]).assert_success();
    let text = fs::read_to_string(backup).unwrap();
    seen.extend(text.lines().skip(1).map(str::to_owned));
    seen
}

fn restore(dir: &Path, store: &[&str], file: &Path) -> compartment_e2e::Out {
    let mut args = store.to_vec();
    args.extend(["restore", file.to_str().unwrap()]);
    run_compartmentd(dir, &args)
}

root_test!(a_backup_moves_between_redb_and_postgresql_unchanged, || {
    let Some(database) = Database::start("a_backup_moves_between_redb_and_postgresql_unchanged")
    else {
        return;
    };
    let original = Daemon::start_default();
    build_history(&original);
    let file = original.dir().join("membership.jsonl");
    let out = original.ctl(ROOT, &["admin", "backup", file.to_str().unwrap()]);
    out.assert_success();
    assert!(
        out.stdout.starts_with("Backed up ")
            && out
                .stdout
                .ends_with(&format!(" from redb to {}.\n", file.display())),
        "{out:#?}"
    );
    let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup's mode");
    let expected = served(&original, &original.dir().join("again.jsonl"));

    // Into PostgreSQL, and a daemon there.
    let conninfo = database.conninfo();
    let out = restore(original.dir(), &["--store", &conninfo], &file);
    out.assert_success();
    assert!(
        out.stdout
            .starts_with("restored 2 organizations, 5 accounts, 2 bindings, ")
            && out.stdout.ends_with(&format!(
                " from {} into postgresql {}\n",
                file.display(),
                out.stdout
                    .rsplit_once("into postgresql ")
                    .unwrap()
                    .1
                    .trim_end()
            )),
        "{out:#?}"
    );
    let on_postgres = Daemon::start(DaemonOptions::new().postgres(&database));
    let from_postgres = on_postgres.dir().join("membership.jsonl");
    assert_eq!(served(&on_postgres, &from_postgres), expected);

    // And back into a fresh embedded database.
    let mut on_redb = Daemon::start_default();
    on_redb.stop();
    let state_dir = on_redb.state_dir();
    let out = restore(
        on_redb.dir(),
        &["--state-dir", state_dir.to_str().unwrap()],
        &from_postgres,
    );
    out.assert_success();
    on_redb.restart();
    assert_eq!(
        served(&on_redb, &on_redb.dir().join("back.jsonl")),
        expected
    );
});

root_test!(only_a_superuser_may_take_a_backup, || {
    let d = Daemon::start_default();
    let invite = d.create_acme();
    d.activate(admin_user().uid, &invite.url).assert_success();
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let file = dir.path().join("membership.jsonl");
    d.ctl(
        admin_user().uid,
        &["admin", "backup", file.to_str().unwrap()],
    )
    .assert_err_hint(
        4,
        "taking a backup is for superusers (root or the daemon's own user)",
        "run it as root",
    );
    let out = d.ctl(
        admin_user().uid,
        &[
            "--output",
            "json",
            "admin",
            "backup",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 4, "{out:#?}");
    let error: serde_json::Value = serde_json::from_str(&out.stderr).unwrap();
    assert_eq!(error["data"]["kind"], "forbidden", "{error}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "no file left");
});

// A backup that fails leaves the file that was there as it was, and nothing beside it: the
// daemon killed while it sends.
root_test!(a_failed_backup_leaves_the_file_as_it_was, || {
    let mut d = Daemon::start_default();
    d.create_acme();
    d.stop();
    // Enough changes that the backup is still being sent when the daemon is killed.
    add_history(&d.state_dir(), "acme", "admin@example.com", 400_000);
    d.restart();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("membership.jsonl");
    fs::write(&file, "the last good backup\n").unwrap();
    let running = d.spawn_ctl(ROOT, &["admin", "backup", file.to_str().unwrap()]);
    let partial = poll(Duration::from_secs(30), || {
        fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .find(|entry| entry.file_name().to_string_lossy().ends_with(".partial"))
            .map(|entry| entry.path())
    })
    .expect("the CLI writes into a temporary file");
    let mode = fs::metadata(&partial).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the temporary file's mode");
    d.kill9();
    let out = running.wait();
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.starts_with(&format!(
            "compartmentctl: {} was not written: ",
            file.display()
        )),
        "{out:#?}"
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "the last good backup\n");
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(left, ["membership.jsonl"]);
});

// The CLI interrupted (Ctrl-C) while it writes: the file that was there stays as it was,
// and the temporary file is removed.
root_test!(an_interrupted_backup_leaves_the_file_as_it_was, || {
    let mut d = Daemon::start_default();
    d.create_acme();
    d.stop();
    add_history(&d.state_dir(), "acme", "admin@example.com", 400_000);
    d.restart();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("membership.jsonl");
    fs::write(&file, "the last good backup\n").unwrap();
    let running = d.spawn_ctl(ROOT, &["admin", "backup", file.to_str().unwrap()]);
    poll(Duration::from_secs(30), || {
        fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .any(|entry| entry.file_name().to_string_lossy().ends_with(".partial"))
            .then_some(())
    })
    .expect("the CLI writes into a temporary file");
    running.signal(nix::sys::signal::Signal::SIGINT);
    let out = running.wait();
    assert_eq!(out.code, 130, "{out:#?}");
    assert_eq!(
        out.stderr_lines().last().copied(),
        Some(
            format!(
                "compartmentctl: {} was not written: interrupted",
                file.display()
            )
            .as_str()
        ),
        "{out:#?}"
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "the last good backup\n");
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(left, ["membership.jsonl"]);
    // The daemon serves on.
    assert!(d.answers_ping());
});

/// Every refusal of `compartmentd restore`, each with its words and exit code 1, and the
/// store as it was after each.
#[test]
fn restore_refuses_what_it_cannot_restore_whole_and_leaves_the_store() {
    let mut d = Daemon::start_default();
    d.create_acme();
    let dir = d.dir().to_owned();
    let file = dir.join("membership.jsonl");
    let path = file.to_str().unwrap();
    d.ctl(ROOT, &["admin", "backup", path]).assert_success();
    let text = fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let members = |d: &Daemon| {
        let out = d.ctl(ROOT, &["--org", "acme", "--output", "json", "user", "list"]);
        out.assert_success();
        out.stdout
    };
    let before = members(&d);
    let state_dir = d.state_dir();
    let state = ["--state-dir", state_dir.to_str().unwrap()];

    // While the daemon runs, its database is locked.
    let out = restore(&dir, &state, &file);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stderr,
        format!(
            "compartmentd: the database {} is in use by a running compartmentd; stop it before restoring into its state directory\n",
            d.db_path().canonicalize().unwrap().display()
        )
    );
    d.stop();

    let write = |name: &str, lines: &[String]| {
        let path = dir.join(name);
        fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };
    let owned: Vec<String> = lines.iter().map(|line| (*line).to_owned()).collect();
    let cut = write("cut.jsonl", &owned[..owned.len() - 1]);
    let mut bad = owned.clone();
    bad[2] = bad[2].replace("\"pending\"", "\"weird\"");
    let bad = write("bad.jsonl", &bad);
    let mut newer = owned.clone();
    newer[0] = newer[0].replace("\"version\":1", "\"version\":2");
    let newer = write("newer.jsonl", &newer);
    let mut schema = owned.clone();
    schema[0] = schema[0].replace("\"schema\":8", "\"schema\":9");
    let schema = write("schema.jsonl", &schema);
    let db = d.db_path().canonicalize().unwrap();
    let cases = [
        (
            &file,
            format!(
                "redb {} is not empty: it holds 1 organization, 1 account, 0 bindings, 1 membership, 1 token, 0 current organizations, 1 audit record, 1 event, 1 feed entry; nothing was restored: restore into an empty store, or pass --replace to replace what it holds",
                db.display()
            ),
        ),
        (
            &cut,
            format!(
                "{} ends after line {} without its end line: the backup was cut short; nothing was restored",
                cut.display(),
                lines.len() - 1
            ),
        ),
        (
            &bad,
            format!(
                "{} line 3: unknown variant `weird`, expected `pending` or `active`; nothing was restored",
                bad.display()
            ),
        ),
        (
            &newer,
            format!(
                "{} is a backup of format version 2, newer than the 1 this compartmentd reads; nothing was restored: restore it with a newer compartmentd",
                newer.display()
            ),
        ),
        (
            &schema,
            format!(
                "{} holds records of schema version 9, newer than the 8 this compartmentd understands; nothing was restored: restore it with a newer compartmentd",
                schema.display()
            ),
        ),
    ];
    // Without --replace a store that holds anything is refused; with it, a file that is
    // not whole is refused all the same, the store emptied only in the transaction that
    // was not committed.
    for (file, message) in cases {
        let replace = !file.ends_with("membership.jsonl");
        let mut args = state.to_vec();
        args.extend(["restore", file.to_str().unwrap()]);
        if replace {
            args.push("--replace");
        }
        let out = run_compartmentd(&dir, &args);
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (1, "", format!("compartmentd: {message}\n").as_str()),
            "{args:?}"
        );
    }
    d.restart();
    assert_eq!(members(&d), before);
}
