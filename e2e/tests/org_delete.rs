//! `org delete`, as real Unix users on each store: a typo'd organization deleted with its
//! pending invitation, one with members refused unless forced, only a superuser deleting,
//! and an organization made later under the same name starting afresh: none of the old
//! one's records, feed or URLs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use compartment_e2e::{each_store, root_test, Daemon, DaemonOptions, TestUser, ROOT};

root_test!(
    an_organization_is_deleted_only_by_a_superuser_and_only_when_told,
    || {
        for options in
            each_store("an_organization_is_deleted_only_by_a_superuser_and_only_when_told")
        {
            deleted(options);
        }
    }
);

fn deleted(options: DaemonOptions) {
    let mut d = Daemon::start(options);
    let admin = TestUser::get("cpt-od-admin");
    let acme = d.create_acme();
    d.activate(admin.uid, &acme.url).assert_success();
    d.ctl(
        admin.uid,
        &["user", "invite", "dev@example.com", "--role", "viewer"],
    )
    .assert_success();
    // A typo: an organization with only its admin's pending invitation.
    let typo_url = d.create_org("acmee", "x@example.com").url;

    // Only a superuser deletes; a missing organization is said to be missing.
    d.ctl(admin.uid, &["org", "delete", "acme"]).assert_err(
        4,
        "deleting an organization is for superusers (root or the daemon's own user)",
    );
    d.ctl(ROOT, &["org", "delete", "nowhere"])
        .assert_err(5, "organization nowhere not found");
    // Members are not removed by accident.
    d.ctl(ROOT, &["org", "delete", "acme"]).assert_err_hint(
        1,
        "acme has 1 member (admin@example.com); nothing was deleted",
        "remove them first, or pass --force to delete it with its members (compartment org delete --force acme)",
    );
    assert_eq!(d.members("acme").members.len(), 2);

    // The typo goes at once, its URL with it.
    d.ctl(ROOT, &["org", "delete", "acmee"])
        .assert_ok("Deleted organization acmee.\nRevoked its invitations: x@example.com.\n");
    let stranger = TestUser::get("cpt-od-stranger");
    d.activate(stranger.uid, &typo_url)
        .assert_err(1, "this activation URL has been replaced or revoked");

    // Forced: its members and invitations go with it, each on the host's feed; acme's own
    // feed ends.
    let watching = d.spawn_ctl(ROOT, &["events", "watch"]);
    let acme_feed = d.spawn_ctl(ROOT, &["events", "watch", "--org", "acme"]);
    for feed in [&watching, &acme_feed] {
        assert!(
            feed.wait_for_stdout("Watching", std::time::Duration::from_secs(30)),
            "events watch did not start"
        );
    }
    d.ctl(ROOT, &["org", "delete", "--force", "acme"]).assert_ok(
        "Deleted organization acme.\nRemoved its members: admin@example.com.\nRevoked its invitations: dev@example.com.\n",
    );
    assert!(
        watching.wait_for_stdout(
            "dev@example.com removed",
            std::time::Duration::from_secs(30)
        ),
        "the feed never told of the removals"
    );
    let out = d.ctl(ROOT, &["org", "list"]);
    out.assert_success();
    assert!(!out.stdout.contains("acme"), "{out:#?}");
    let ended = acme_feed.wait();
    assert_eq!(ended.code, 1, "{ended:#?}");
    assert!(
        ended.stderr.starts_with(
            "compartmentctl: the daemon ended the feed: organization acme was deleted\n"
        ),
        "{ended:#?}"
    );
    // Its admin is in no organization now.
    d.ctl(admin.uid, &["user", "list"]).assert_err_hint(
        2,
        "no organization given, and none could be chosen",
        "you are not a member of any organization yet",
    );
    let out = d.ctl(
        ROOT,
        &[
            "audit",
            "list",
            "--event",
            "organization.delete",
            "--output",
            "jsonl",
        ],
    );
    let deletions: Vec<serde_json::Value> = out
        .stdout_lines()
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let details: Vec<(&str, &str, &str)> = deletions
        .iter()
        .map(|record| {
            (
                record["org"].as_str().unwrap(),
                record["outcome"].as_str().unwrap(),
                record["detail"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        details,
        [
            (
                "acme",
                "forbidden",
                "deleting an organization is for superusers (root or the daemon's own user)"
            ),
            ("nowhere", "not_found", "organization nowhere not found"),
            (
                "acme",
                "not_empty",
                "acme has 1 member (admin@example.com); nothing was deleted"
            ),
            ("acmee", "ok", "revoked the invitations of x@example.com"),
            (
                "acme",
                "ok",
                "removed admin@example.com; revoked the invitations of dev@example.com"
            ),
        ]
    );

    // A new acme starts afresh: its admin (whose account lives on) reads only its records
    // and its feed.
    let out = d.ctl(
        ROOT,
        &["org", "create", "acme", "--admin", "admin@example.com"],
    );
    out.assert_success();
    let out = d.ctl(admin.uid, &["--org", "acme", "audit", "list"]);
    out.assert_success();
    let events: Vec<&str> = out
        .stdout_lines()
        .iter()
        .map(|line| line.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(events, ["organization.create"], "{out:#?}");
    let feed = d.spawn_ctl(
        admin.uid,
        &["--org", "acme", "events", "watch", "--after", "0"],
    );
    assert!(
        feed.wait_for_stdout("added as admin", std::time::Duration::from_secs(30)),
        "the new acme's feed is empty"
    );
    d.stop();
    let old = watching.wait();
    assert!(
        old.stdout
            .contains("acme: admin@example.com removed (was admin), by root"),
        "{old:#?}"
    );
    let new = feed.wait();
    let changes: Vec<&str> = new
        .stdout_lines()
        .into_iter()
        .filter(|line| line.starts_with('#'))
        .collect();
    assert_eq!(changes.len(), 1, "only the new acme's change: {new:#?}");
    assert!(
        changes[0].ends_with("acme: admin@example.com added as admin, active, by root"),
        "{new:#?}"
    );
}
