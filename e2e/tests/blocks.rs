//! Blocks and access that ends by itself, as real Unix users on each store: an admin blocks a
//! deployer with a reason, which the deployer's next command, `auth can` and a service's
//! question all show, and the feed carries; the last admin nothing bounds cannot be blocked;
//! access given `--access-until` and a role granted `--until` end on the second, and the
//! sweeper records each end on the feed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use compartment_e2e::{
    each_store, parse_invite, root_test, Daemon, DaemonOptions, Out, TestUser, ROOT,
};

root_test!(a_block_stops_a_member_at_once_with_its_reason, || {
    for options in each_store("a_block_stops_a_member_at_once_with_its_reason") {
        blocked(options);
    }
});

root_test!(access_and_an_elevation_end_on_the_second, || {
    for options in each_store("access_and_an_elevation_end_on_the_second") {
        ended(options);
    }
});

/// acme with its admin active as `admin` and `email` active as `member` with `role`.
fn acme(d: &Daemon, admin: &TestUser, member: &TestUser, email: &str, role: &str) {
    let acme = d.create_acme();
    d.activate(admin.uid, &acme.url).assert_success();
    let out = d.ctl(admin.uid, &["user", "invite", email, "--role", role]);
    let invitation = parse_invite(&out, email, role);
    d.activate(member.uid, &invitation.url).assert_success();
}

#[track_caller]
fn assert_answer(out: &Out, yes: bool, message: &str) {
    let (verdict, code) = if yes { ("yes", 0) } else { ("no", 4) };
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (code, format!("{verdict}\n{message}\n").as_str(), ""),
        "{out:#?}"
    );
}

fn blocked(options: DaemonOptions) {
    let d = Daemon::start(options);
    let admin = TestUser::get("cpt-bl-admin");
    let dev = TestUser::get("cpt-bl-dev");
    acme(&d, &admin, &dev, "dev@example.com", "deployer");
    let watching = d.spawn_ctl(ROOT, &["events", "watch"]);
    assert!(
        watching.wait_for_stdout("Watching", Duration::from_secs(30)),
        "events watch did not start"
    );

    // Only admins block, never themselves, never the last admin nothing bounds.
    d.ctl(
        dev.uid,
        &["user", "block", "admin@example.com", "--reason", "x"],
    )
    .assert_err(
        4,
        "blocking users in acme needs the admin role; yours is deployer",
    );
    d.ctl(
        admin.uid,
        &["user", "block", "admin@example.com", "--reason", "x"],
    )
    .assert_err(2, "you cannot block yourself in acme");
    d.ctl(
        ROOT,
        &[
            "--org",
            "acme",
            "user",
            "block",
            "admin@example.com",
            "--reason",
            "x",
        ],
    )
    .assert_err(
        1,
        "cannot block the last admin of acme: no admin could act there",
    );

    d.ctl(
        admin.uid,
        &[
            "user",
            "block",
            "dev@example.com",
            "--reason",
            "laptop lost",
        ],
    )
    .assert_ok("Blocked dev@example.com in acme until unblocked: laptop lost\n");
    // The member's very next command, and every decision about them.
    d.ctl(dev.uid, &["user", "list"]).assert_err_hint(
        4,
        "you are blocked in acme: laptop lost",
        "ask an admin of acme to unblock you (compartment user unblock)",
    );
    assert_answer(
        &d.ctl(dev.uid, &["auth", "can", "deployment.create"]),
        false,
        "dev@example.com is blocked in acme: laptop lost",
    );
    let me = d.ctl(dev.uid, &["whoami"]);
    me.assert_success();
    assert!(
        me.stdout_lines()
            .iter()
            .any(|line| line.split_whitespace().collect::<Vec<_>>()
                == ["acme", "deployer", "blocked"]),
        "{me:#?}"
    );
    assert_answer(
        &d.ctl(
            ROOT,
            &[
                "auth",
                "can",
                "deployment.create",
                "--org",
                "acme",
                "--user",
                "cpt-bl-dev",
            ],
        ),
        false,
        "dev@example.com is blocked in acme: laptop lost",
    );
    let out = d.ctl(
        ROOT,
        &[
            "auth",
            "can",
            "deployment.create",
            "--org",
            "acme",
            "--user",
            "cpt-bl-dev",
            "--output",
            "json",
        ],
    );
    let decision: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(decision["reason"], "blocked", "{out:#?}");
    // The list shows it; the feed tells services to end the member's sessions.
    let list = d.ctl(admin.uid, &["user", "list"]);
    list.assert_success();
    let row = list
        .stdout_lines()
        .into_iter()
        .find(|line| line.starts_with("dev@example.com"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(row, "dev@example.com deployer blocked cpt-bl-dev -");
    assert!(
        watching.wait_for_stdout(
            "acme: dev@example.com is blocked until unblocked: laptop lost",
            Duration::from_secs(30)
        ),
        "the feed never told of the block"
    );

    d.ctl(admin.uid, &["user", "unblock", "dev@example.com"])
        .assert_ok("Unblocked dev@example.com in acme.\n");
    d.ctl(dev.uid, &["user", "list"]).assert_success();
    d.ctl(admin.uid, &["user", "unblock", "dev@example.com"])
        .assert_err(2, "dev@example.com is not blocked in acme");
    assert!(
        watching.wait_for_stdout(
            "acme: dev@example.com is unblocked",
            Duration::from_secs(30)
        ),
        "the feed never told of the unblock"
    );
    // A blocked admin's own feed of acme ends with the block's reason.
    let second = TestUser::get("cpt-bl-second");
    let out = d.ctl(
        admin.uid,
        &["user", "invite", "second@example.com", "--role", "admin"],
    );
    let invitation = parse_invite(&out, "second@example.com", "admin");
    d.activate(second.uid, &invitation.url).assert_success();
    let second_feed = d.spawn_ctl(second.uid, &["events", "watch"]);
    assert!(
        second_feed.wait_for_stdout("Watching", Duration::from_secs(30)),
        "events watch did not start"
    );
    d.ctl(
        admin.uid,
        &[
            "user",
            "block",
            "second@example.com",
            "--reason",
            "rotation",
        ],
    )
    .assert_success();
    let ended = second_feed.wait();
    assert_eq!(ended.code, 1, "{ended:#?}");
    assert!(
        ended.stderr.starts_with(
            "compartmentctl: the daemon ended the feed: you are blocked in acme: rotation\n"
        ),
        "{ended:#?}"
    );
    // Both are in the audit log, by the admin.
    let audit = d.ctl(
        ROOT,
        &["audit", "list", "--event", "organization.user.block"],
    );
    audit.assert_success();
    assert!(audit.stdout.contains("reason: laptop lost"), "{audit:#?}");
}

fn ended(options: DaemonOptions) {
    let d = Daemon::start(options);
    let admin = TestUser::get("cpt-bl-admin2");
    let ops = TestUser::get("cpt-bl-ops");
    let temp = TestUser::get("cpt-bl-temp");
    acme(&d, &admin, &ops, "ops@example.com", "readonly");
    let watching = d.spawn_ctl(ROOT, &["events", "watch"]);
    assert!(
        watching.wait_for_stdout("Watching", Duration::from_secs(30)),
        "events watch did not start"
    );

    // Access for a few seconds, and an elevation as long.
    let out = d.ctl(
        admin.uid,
        &[
            "user",
            "invite",
            "temp@example.com",
            "--role",
            "viewer",
            "--access-until",
            "6s",
        ],
    );
    out.assert_success();
    let url = out
        .stdout_lines()
        .into_iter()
        .find_map(|line| line.strip_prefix("Activation URL: "))
        .unwrap_or_else(|| panic!("no URL: {out:#?}"))
        .to_owned();
    assert!(out.stdout.contains("Access ends at: "), "{out:#?}");
    d.activate(temp.uid, &url).assert_success();
    let granted = d.ctl(
        admin.uid,
        &["role", "grant", "ops@example.com", "admin", "--until", "6s"],
    );
    granted.assert_success();
    let started = Instant::now();
    assert!(
        granted
            .stdout
            .contains("(was readonly; readonly again after)"),
        "{granted:#?}"
    );
    d.ctl(temp.uid, &["auth", "can", "project.read"])
        .assert_success();
    d.ctl(ops.uid, &["auth", "can", "organization.user.invite"])
        .assert_success();
    // An elevated admin does not count for the last-admin rule.
    d.ctl(
        ROOT,
        &["--org", "acme", "user", "remove", "admin@example.com"],
    )
    .assert_err(1, "cannot remove the last admin of acme");

    std::thread::sleep(Duration::from_secs(7).saturating_sub(started.elapsed()));
    // Refused: ended, or already swept away (the second is exact in the rules' own tests,
    // on a clock they set).
    let out = d.ctl(temp.uid, &["auth", "can", "project.read", "--org", "acme"]);
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stdout
            .contains("temp@example.com's access to acme ended at ")
            || out
                .stdout
                .contains("temp@example.com is not a member of acme"),
        "{out:#?}"
    );
    assert_answer(
        &d.ctl(ops.uid, &["auth", "can", "organization.user.invite"]),
        false,
        "ops@example.com is readonly in acme (invited by admin@example.com), and organization.user.invite needs the admin role",
    );
    // The sweeper records both ends on the feed.
    for line in [
        "temp@example.com removed",
        "acme: ops@example.com is now readonly (was admin)",
    ] {
        assert!(
            watching.wait_for_stdout(line, Duration::from_secs(30)),
            "the feed never said {line:?}"
        );
    }
    let list = d.ctl(admin.uid, &["user", "list"]);
    list.assert_success();
    assert!(!list.stdout.contains("temp@example.com"), "{list:#?}");
}
