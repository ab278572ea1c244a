//! The audit log end to end, as real Unix users, on each store: who reads which records,
//! refusals recorded or counted, the feed naming who changed what, and a checkpoint kept
//! elsewhere that `audit verify` holds the log to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use compartment_e2e::{each_store, root_test, Daemon, DaemonOptions, Endpoint, TestUser, ROOT};

/// The records `audit list ARGS` shows root, as JSON.
fn records(d: &Endpoint, args: &[&str]) -> Vec<serde_json::Value> {
    let mut argv = vec!["audit", "list", "--output", "jsonl"];
    argv.extend_from_slice(args);
    let out = d.ctl(ROOT, &argv);
    out.assert_success();
    out.stdout_lines()
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

root_test!(
    an_organizations_admins_read_its_records_and_only_a_superuser_verifies,
    || {
        for options in
            each_store("an_organizations_admins_read_its_records_and_only_a_superuser_verifies")
        {
            admins_read_their_records(options);
        }
    }
);

fn admins_read_their_records(options: DaemonOptions) {
    let d = Daemon::start(options);
    let admin = TestUser::get("cpt-a-admin");
    let other = TestUser::get("cpt-a-other");
    let acme = d.create_acme();
    d.activate(admin.uid, &acme.url).assert_success();
    let beta_url = d.create_org("beta", "b@beta.example").url;
    d.activate(other.uid, &beta_url).assert_success();
    d.ctl(admin.uid, &["role", "grant", "admin@example.com", "admin"])
        .assert_success();
    d.ctl(
        admin.uid,
        &["user", "invite", "dev@example.com", "--role", "viewer"],
    )
    .assert_success();

    // acme's admin reads acme's records, and no one else's.
    let out = d.ctl(admin.uid, &["audit", "list"]);
    out.assert_success();
    let lines = out.stdout_lines();
    assert_eq!(lines.len(), 4, "{out:#?}");
    assert!(
        lines.iter().all(|line| line.contains(" in acme")),
        "{out:#?}"
    );
    assert!(
        lines[3].contains(&format!(
            "organization.user.invite by admin@example.com ({}) in acme on account dev@example.com: none -> viewer invited [ok]",
            admin.name
        )),
        "{out:#?}"
    );
    // Asking for another organization's records is refused, and the refusal recorded
    // (#7, #8): beta's admin is not acme's, and is shown nothing.
    let out = d.ctl(admin.uid, &["--org", "beta", "audit", "list"]);
    assert_eq!(out.code, 5, "{out:#?}");
    let out = d.ctl(other.uid, &["--org", "acme", "audit", "list"]);
    assert_eq!(out.code, 5, "{out:#?}");
    assert_eq!(out.stdout, "");
    // acme's admin sees that someone tried to read acme's records.
    let out = d.ctl(admin.uid, &["audit", "list", "--outcome", "refused"]);
    out.assert_success();
    let refused = out.stdout_lines();
    assert_eq!(refused.len(), 1, "{out:#?}");
    assert!(
        refused[0].starts_with("#8 ")
            && refused[0].ends_with(&format!(
                "organization.audit.read by b@beta.example ({}) in acme [not_found] \
                 (organization acme not found)",
                other.name
            )),
        "{out:#?}"
    );

    // A superuser reads the whole host, filtered.
    let out = d.ctl(
        ROOT,
        &[
            "audit",
            "list",
            "--event",
            "organization.",
            "--actor",
            "root",
        ],
    );
    out.assert_success();
    assert_eq!(out.stdout_lines().len(), 2, "{out:#?}");
    let all = records(&d, &[]);
    assert_eq!(all.len(), 8);
    assert_eq!(all[0]["seq"], 1);
    assert_eq!(all[0]["event"], "organization.create");
    assert_eq!(all[0]["hash"].as_str().unwrap().len(), 64);
    let refusal = &all[6];
    assert_eq!(refusal["event"], "organization.audit.read");
    assert_eq!(refusal["org"], "beta");
    assert_eq!(refusal["outcome"], "not_found");
    assert_eq!(refusal["actor"]["email"], "admin@example.com");
    assert_eq!(refusal["actor"]["uid"], admin.uid);
    assert_eq!(refusal["actor"]["user"], admin.name.as_str());
    assert!(refusal["actor"]["pid"].as_i64().unwrap() > 0, "{refusal}");

    // Only a superuser verifies or signs; each refusal is a record (#9, #10).
    d.ctl(admin.uid, &["audit", "verify"]).assert_err(
        4,
        "verifying the audit log is for superusers (root or the daemon's own user)",
    );
    d.ctl(admin.uid, &["audit", "checkpoint"]).assert_err(
        4,
        "signing a checkpoint of the audit log is for superusers (root or the daemon's own user)",
    );
    let refused: Vec<(String, String)> = records(&d, &["--outcome", "forbidden"])
        .iter()
        .map(|record| {
            (
                record["event"].as_str().unwrap().to_owned(),
                record["actor"]["email"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            ("audit.verify".to_owned(), "admin@example.com".to_owned()),
            (
                "audit.checkpoint".to_owned(),
                "admin@example.com".to_owned()
            ),
        ]
    );

    // The feed names who made each change, as the audit log does.
    let feed = d.spawn_ctl(ROOT, &["events", "watch", "--after", "0"]);
    assert!(
        feed.wait_for_stdout("#", std::time::Duration::from_secs(30)),
        "events watch printed nothing"
    );
    // acme's admin follows acme's invitations and removals as they come.
    let follow = d.spawn_ctl(
        admin.uid,
        &[
            "audit",
            "list",
            "--follow",
            "--output",
            "jsonl",
            "--event",
            "organization.user.",
        ],
    );
    assert!(
        follow.wait_for_stdout(
            "organization.user.invite",
            std::time::Duration::from_secs(30)
        ),
        "audit list --follow printed nothing"
    );
    // A checkpoint kept elsewhere: the log agrees with it, and grows past it.
    let out = d.ctl(ROOT, &["audit", "checkpoint"]);
    out.assert_success();
    let note = out.stdout.clone();
    assert!(
        note.starts_with("your-compartment-host/compartment-audit\n10\n"),
        "{note}"
    );
    let kept = d.dir().join("kept.checkpoint");
    std::fs::write(&kept, &note).unwrap();
    d.ctl(admin.uid, &["user", "remove", "dev@example.com"])
        .assert_success();
    let out = d.ctl(
        ROOT,
        &["audit", "verify", "--checkpoint", kept.to_str().unwrap()],
    );
    out.assert_success();
    assert_eq!(out.stdout_lines()[0], "Checked records 1 to 11, against:");
    assert_eq!(
        out.stdout_lines().last().copied(),
        Some("The audit log is whole.")
    );
    assert!(
        feed.wait_for_stdout("removed", std::time::Duration::from_secs(30)),
        "events watch never printed the removal"
    );
    assert!(
        follow.wait_for_stdout(
            "organization.user.remove",
            std::time::Duration::from_secs(30)
        ),
        "audit list --follow never printed the removal"
    );
    follow.signal(nix::sys::signal::Signal::SIGTERM);
    let followed: Vec<(u64, String)> = follow
        .wait()
        .stdout_lines()
        .iter()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                record["seq"].as_u64().unwrap(),
                record["event"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        followed,
        [
            (6, "organization.user.invite".to_owned()),
            (11, "organization.user.remove".to_owned()),
        ]
    );

    // The export for a SIEM: the records as listed, or as CSV rows.
    let listed = d.ctl(ROOT, &["audit", "list", "--output", "jsonl"]);
    let exported = d.ctl(ROOT, &["audit", "export"]);
    exported.assert_success();
    assert_eq!(exported.stdout, listed.stdout);
    let csv = d.ctl(
        ROOT,
        &["audit", "export", "--format", "csv", "--org", "acme"],
    );
    csv.assert_success();
    let rows = csv.stdout_lines();
    assert_eq!(
        rows[0],
        "seq,at,actor_kind,actor_email,actor_uid,actor_user,actor_pid,event,org,target_type,\
         target_id,before_role,before_status,after_role,after_status,outcome,detail,hash"
    );
    assert_eq!(rows.len(), 1 + 6, "{csv:#?}");
    assert!(rows[1].starts_with("1,"), "{csv:#?}");
    assert!(
        rows[6].contains(&format!(
            ",user,admin@example.com,{},{},",
            admin.uid, admin.name
        )) && rows[6].contains(
            ",organization.user.remove,acme,account,dev@example.com,viewer,invited,,none,ok,"
        ),
        "{csv:#?}"
    );
    let mut d = d;
    d.stop();
    let out = feed.wait();
    let changes: Vec<&str> = out
        .stdout_lines()
        .into_iter()
        .filter_map(|line| line.splitn(3, "  ").nth(2))
        .collect();
    assert_eq!(
        changes,
        [
            "acme: admin@example.com added as admin, invited, by root".to_owned(),
            format!(
                "admin@example.com bound to uid {}, by admin@example.com ({})",
                admin.uid, admin.name
            ),
            format!(
                "acme: admin@example.com activated, admin, by admin@example.com ({})",
                admin.name
            ),
            "beta: b@beta.example added as admin, invited, by root".to_owned(),
            format!(
                "b@beta.example bound to uid {}, by b@beta.example ({})",
                other.uid, other.name
            ),
            format!(
                "beta: b@beta.example activated, admin, by b@beta.example ({})",
                other.name
            ),
            format!(
                "acme: dev@example.com added as viewer, invited, by admin@example.com ({})",
                admin.name
            ),
            format!(
                "acme: dev@example.com removed (was viewer), by admin@example.com ({})",
                admin.name
            ),
        ],
        "{out:#?}"
    );
    d.restart();

    // A checkpoint changed by hand is not trusted.
    let forged = d.dir().join("forged.checkpoint");
    std::fs::write(&forged, note.replacen("\n10\n", "\n19\n", 1)).unwrap();
    d.ctl(
        ROOT,
        &["audit", "verify", "--checkpoint", forged.to_str().unwrap()],
    )
    .assert_err(
        2,
        "the checkpoint cannot be trusted: its signature does not verify: the note was changed",
    );
}

root_test!(
    refusals_of_callers_without_an_account_or_beyond_their_rate_are_counted,
    || {
        for options in
            each_store("refusals_of_callers_without_an_account_or_beyond_their_rate_are_counted")
        {
            refusals_are_counted(options.args(&[
                "--max-changes-per-sec",
                "1",
                "--changes-burst",
                "2",
            ]));
        }
    }
);

fn refusals_are_counted(options: DaemonOptions) {
    let mut d = Daemon::start(options);
    let admin = TestUser::get("cpt-a-admin");
    let stranger = TestUser::get("cpt-a-stranger");
    let acme = d.create_acme();
    d.activate(admin.uid, &acme.url).assert_success();
    let before = records(&d, &[]).len();

    // A uid without an account asks, again and again: refused each time, recorded never.
    // (Its two changes are within the change rate's burst, so the rules refuse them.)
    for (args, times) in [
        (&["--org", "acme", "user", "list"][..], 3),
        (&["--org", "acme", "audit", "list"], 3),
        (
            &[
                "user",
                "invite",
                "x@example.com",
                "--role",
                "admin",
                "--org",
                "acme",
            ],
            2,
        ),
    ] {
        for _ in 0..times {
            let out = d.ctl(stranger.uid, args);
            assert_eq!(out.code, 4, "{out:#?}");
        }
    }
    // An admin asking for another organization's members, faster than its rate: the
    // first ones are recorded one by one, the rest counted.
    for _ in 0..6 {
        let out = d.ctl(admin.uid, &["--org", "nowhere", "user", "list"]);
        assert_eq!(out.code, 5, "{out:#?}");
    }
    let one_by_one = records(&d, &["--event", "organization.member.list"]);
    assert!(
        (2..6).contains(&one_by_one.len()),
        "the burst of 2 is recorded, not all 6: {one_by_one:#?}"
    );
    assert_eq!(records(&d, &[]).len(), before + one_by_one.len());

    // The counts are written every minute, and when the daemon stops.
    d.restart();
    let counted = records(&d, &["--event", "access.refused"]);
    assert_eq!(counted.len(), 2, "{counted:#?}");
    let of = |uid: u32| {
        counted
            .iter()
            .find(|record| record["actor"]["uid"] == uid)
            .unwrap_or_else(|| panic!("no count for uid {uid}: {counted:#?}"))
    };
    let strangers = of(stranger.uid);
    assert_eq!(strangers["actor"]["user"], stranger.name.as_str());
    assert_eq!(strangers["outcome"], "refused");
    let detail = strangers["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("8 (unauthenticated 8) requests refused since ")
            && detail.ends_with(", counted rather than recorded one by one"),
        "{detail}"
    );
    let admins = of(admin.uid)["detail"].as_str().unwrap().to_owned();
    let rest = 6 - one_by_one.len();
    assert!(
        admins.starts_with(&format!(
            "{rest} (not_found {rest}) requests refused since "
        )),
        "{admins}"
    );
    // Nothing else was written, and the chain holds.
    assert_eq!(records(&d, &[]).len(), before + one_by_one.len() + 2);
    let out = d.ctl(ROOT, &["audit", "verify"]);
    out.assert_success();
}

/// Retention, as an operator meets it: records and changes older than `--audit-retention`
/// go at a checkpoint, the log says so, verifies from the checkpoint it was pruned behind,
/// and a feed asked to replay what is gone is told so. The daemon runs in the test
/// process, on a clock the test moves, as its own uid (a superuser): no root needed.
#[test]
fn what_is_older_than_the_retention_is_pruned_and_the_rest_still_verifies() {
    use compartmentd::clock::{Clock as _, FakeClock, SystemClock};
    use std::sync::Arc;
    use std::time::Duration;
    const DAY: Duration = Duration::from_secs(24 * 3600);
    for options in
        each_store("what_is_older_than_the_retention_is_pruned_and_the_rest_still_verifies")
    {
        let clock = Arc::new(FakeClock::new(SystemClock.now()));
        let d = Daemon::in_process_with_clock(
            options.args(&[
                "--audit-retention",
                "1day",
                "--audit-checkpoint-interval",
                "1s",
            ]),
            clock.clone(),
        );
        d.ctl(
            ROOT,
            &["org", "create", "acme", "--admin", "admin@example.com"],
        )
        .assert_success();
        d.ctl(
            ROOT,
            &[
                "--org",
                "acme",
                "user",
                "invite",
                "dev@example.com",
                "--role",
                "viewer",
            ],
        )
        .assert_success();
        clock.advance(2 * DAY);
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
        // The next checkpoint prunes records 1 and 2, and changes 1 and 2, behind a
        // checkpoint of record 2; record 3 and change 3 are younger than a day.
        let pruned = compartment_e2e::poll(Duration::from_secs(30), || {
            Some(records(&d, &["--event", "audit.prune"])).filter(|pruned| !pruned.is_empty())
        })
        .unwrap_or_default();
        assert_eq!(pruned.len(), 1, "nothing was pruned in 30 s");
        let detail = pruned[0]["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("records 1 to 2 and the feed's changes 1 to 2, from before ")
                && detail
                    .ends_with(", pruned; the log is verified from the checkpoint of record 2"),
            "{detail}"
        );
        let kept: Vec<u64> = records(&d, &[])
            .iter()
            .map(|record| record["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(kept, [3, 4]);
        let out = d.ctl(ROOT, &["audit", "verify"]);
        out.assert_success();
        let lines = out.stdout_lines();
        assert_eq!(lines[0], "Checked records 3 to 4, against:");
        assert!(
            lines[1].starts_with("  the checkpoint records 1 to 2 were pruned behind (")
                && lines[1].ends_with(" (record 2)"),
            "{out:#?}"
        );
        assert_eq!(lines.last().copied(), Some("The audit log is whole."));

        // A feed cannot replay what is gone; from where the kept changes begin, it can.
        d.ctl(ROOT, &["events", "watch", "--after", "0"]).assert_err_hint(
            2,
            "the changes after 0 up to 2 are no longer kept (the daemon's --audit-retention)",
            "read the state afresh (user list), then watch without --after, or with --after 2 or later",
        );
        let watching = d.spawn_ctl(ROOT, &["events", "watch", "--after", "2"]);
        assert!(
            watching.wait_for_stdout("ops@example.com added as viewer", Duration::from_secs(30)),
            "events watch --after 2 did not replay change 3"
        );
        watching.signal(nix::sys::signal::Signal::SIGTERM);
        watching.wait();
    }
}

/// The newest records cut off behind the daemon's back, the checkpoints with them, while
/// it runs: `audit verify` still finds it, from the last record the daemon itself
/// committed. (PostgreSQL: the embedded store's file is locked while the daemon runs.)
#[test]
fn records_cut_off_while_the_daemon_runs_are_found_without_a_checkpoint() {
    let test = "records_cut_off_while_the_daemon_runs_are_found_without_a_checkpoint";
    let Some(database) = compartment_e2e::Database::start(test) else {
        return;
    };
    let d = Daemon::start(DaemonOptions::new().postgres(&database));
    d.ctl(
        ROOT,
        &["org", "create", "acme", "--admin", "admin@example.com"],
    )
    .assert_success();
    for email in ["a@example.com", "b@example.com"] {
        d.ctl(
            ROOT,
            &["--org", "acme", "user", "invite", email, "--role", "viewer"],
        )
        .assert_success();
    }
    // No checkpoint was signed yet, none is kept, nobody verified: the daemon knows only
    // what it committed.
    database
        .server()
        .execute(
            "postgres",
            "DELETE FROM audit_log WHERE seq = 3; DELETE FROM audit_checkpoints;",
        )
        .unwrap();
    let out = d.ctl(ROOT, &["audit", "verify"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stdout_lines(),
        [
            "Checked records 1 to 2, against:",
            "  what this daemon last saw the log hold (record 3)",
            "BROKEN at record 3: the log ends at record 2, but what this daemon last saw the \
             log hold covers records up to 3: records 3 to 3 were cut off",
        ],
        "{out:#?}"
    );
}
