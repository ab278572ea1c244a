//! `org rename` and `account rename`, as real Unix users on each store: only a superuser
//! renames; the members act on under the new name (their `org use` with them), the user of
//! a renamed account acts as its new address, a pending invitation's URL still works, the
//! feed tells of each once, and the audit log follows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use compartment_e2e::{each_store, parse_invite, root_test, Daemon, DaemonOptions, TestUser, ROOT};

root_test!(an_account_is_renamed_and_its_user_acts_on_as_it, || {
    for options in each_store("an_account_is_renamed_and_its_user_acts_on_as_it") {
        account_renamed(options);
    }
});

root_test!(
    an_organization_is_renamed_with_all_that_is_filed_under_it,
    || {
        for options in each_store("an_organization_is_renamed_with_all_that_is_filed_under_it") {
            renamed(options);
        }
    }
);

fn renamed(options: DaemonOptions) {
    let d = Daemon::start(options);
    let admin = TestUser::get("cpt-rn-admin");
    let late = TestUser::get("cpt-rn-late");
    let acme = d.create_acme();
    d.activate(admin.uid, &acme.url).assert_success();
    d.ctl(admin.uid, &["org", "use", "acme"]).assert_success();
    let out = d.ctl(
        admin.uid,
        &["user", "invite", "late@example.com", "--role", "viewer"],
    );
    let pending = parse_invite(&out, "late@example.com", "viewer");
    let watching = d.spawn_ctl(ROOT, &["events", "watch"]);
    // Feeds of the organization alone, asked by its old name: the admin's own and a
    // superuser's. Each follows it to its new name.
    let admin_watching = d.spawn_ctl(admin.uid, &["events", "watch"]);
    let root_watching = d.spawn_ctl(ROOT, &["events", "watch", "--org", "acme"]);
    for feed in [&watching, &admin_watching, &root_watching] {
        assert!(
            feed.wait_for_stdout("Watching", Duration::from_secs(30)),
            "events watch did not start"
        );
    }

    d.ctl(admin.uid, &["org", "rename", "acme", "acme-corp"])
        .assert_err(
            4,
            "renaming an organization is for superusers (root or the daemon's own user)",
        );
    d.ctl(ROOT, &["org", "rename", "acme", "Acme Corp"]).assert_err(
        2,
        "\"Acme Corp\" is not a valid organization name: use 1 to 63 lowercase letters, digits and dashes, starting with a letter",
    );
    d.ctl(ROOT, &["org", "rename", "nowhere", "elsewhere"])
        .assert_err(5, "organization nowhere not found");
    d.ctl(ROOT, &["org", "rename", "acme", "acme-corp"])
        .assert_ok("Renamed organization acme to acme-corp (2 memberships moved with it).\n");
    assert!(
        watching.wait_for_stdout("acme renamed to acme-corp, by ", Duration::from_secs(30)),
        "the feed never told of the renaming"
    );

    // The admin acts on, in the organization chosen before, now under its new name.
    let list = d.ctl(admin.uid, &["user", "list"]);
    list.assert_success();
    assert!(list.stdout.contains("admin@example.com"), "{list:#?}");
    d.ctl(admin.uid, &["--org", "acme", "user", "list"])
        .assert_err(5, "organization acme not found");
    // The URL sent before still works, into the new name.
    d.activate(late.uid, &pending.url).assert_success();
    assert_eq!(d.members("acme-corp").members.len(), 2);
    d.ctl(
        admin.uid,
        &["user", "invite", "next@example.com", "--role", "viewer"],
    )
    .assert_success();
    // The feeds asked by the old name told of the renaming and go on under the new one.
    for feed in [admin_watching, root_watching] {
        assert!(
            feed.wait_for_stdout("next@example.com", Duration::from_secs(30)),
            "a feed of the old name did not follow it"
        );
        feed.signal(nix::sys::signal::Signal::SIGINT);
        let out = feed.wait();
        let told: Vec<String> = out
            .stdout_lines()
            .into_iter()
            .skip(1)
            .map(|line| {
                let told = line.splitn(3, "  ").nth(2).unwrap_or(line);
                told.replace(&format!("uid {}", late.uid), "uid LATE")
            })
            .collect();
        assert_eq!(
            told,
            [
                "acme renamed to acme-corp, by root",
                "late@example.com bound to uid LATE, by late@example.com (cpt-rn-late)",
                "acme-corp: late@example.com activated, viewer, by late@example.com (cpt-rn-late)",
                "acme-corp: next@example.com added as viewer, invited, by admin@example.com (cpt-rn-admin)",
            ],
            "{out:#?}"
        );
    }
    // The audit log follows: the admins read what was written under the old name.
    let audit = d.ctl(admin.uid, &["audit", "list", "--output", "jsonl"]);
    audit.assert_success();
    let events: Vec<String> = audit
        .stdout_lines()
        .iter()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            format!("{} {}", record["event"], record["outcome"])
        })
        .collect();
    // The refusals are records too, and follow with the rest.
    assert_eq!(
        events,
        [
            r#""organization.create" "ok""#,
            r#""account.activate" "ok""#,
            r#""organization.user.invite" "ok""#,
            r#""organization.rename" "forbidden""#,
            r#""organization.rename" "bad_request""#,
            r#""organization.rename" "ok""#,
            r#""account.activate" "ok""#,
            r#""organization.user.invite" "ok""#,
        ],
        "{audit:#?}"
    );
    d.ctl(ROOT, &["audit", "verify"]).assert_success();
}

fn account_renamed(options: DaemonOptions) {
    let d = Daemon::start(options);
    let admin = TestUser::get("cpt-rn-admin2");
    let dev = TestUser::get("cpt-rn-dev");
    let acme = d.create_acme();
    d.activate(admin.uid, &acme.url).assert_success();
    let out = d.ctl(
        admin.uid,
        &["user", "invite", "dev@example.com", "--role", "deployer"],
    );
    let invitation = parse_invite(&out, "dev@example.com", "deployer");
    d.activate(dev.uid, &invitation.url).assert_success();
    let watching = d.spawn_ctl(ROOT, &["events", "watch"]);
    assert!(
        watching.wait_for_stdout("Watching", Duration::from_secs(30)),
        "events watch did not start"
    );

    d.ctl(
        admin.uid,
        &["account", "rename", "dev@example.com", "dev@corp.example"],
    )
    .assert_err(
        4,
        "renaming accounts is for superusers (root or the daemon's own user)",
    );
    d.ctl(
        ROOT,
        &["account", "rename", "dev@example.com", "admin@example.com"],
    )
    .assert_err(1, "an account admin@example.com already exists");
    d.ctl(
        ROOT,
        &["account", "rename", "dev@example.com", "dev@corp.example"],
    )
    .assert_ok(
        "Renamed account dev@example.com to dev@corp.example (1 membership moved with it).\n",
    );
    assert!(
        watching.wait_for_stdout(
            "dev@example.com renamed to dev@corp.example, by ",
            Duration::from_secs(30)
        ),
        "the feed never told of the renaming"
    );
    // Its user acts as the new address, with the role it had.
    let me = d.ctl(dev.uid, &["whoami", "--output", "json"]);
    me.assert_success();
    let me: serde_json::Value = serde_json::from_str(&me.stdout).unwrap();
    assert_eq!(me["account"]["email"], "dev@corp.example", "{me}");
    d.ctl(dev.uid, &["auth", "can", "deployment.create"])
        .assert_success();
    let members = d.members("acme");
    let emails: Vec<&str> = members.members.iter().map(|m| m.email.as_str()).collect();
    assert_eq!(emails, ["admin@example.com", "dev@corp.example"]);
    d.ctl(ROOT, &["account", "show", "dev@example.com"])
        .assert_err(5, "no account dev@example.com");
    // Its Unix user's name finds it too.
    let shown = d.ctl(ROOT, &["account", "show", "cpt-rn-dev"]);
    shown.assert_success();
    assert!(
        shown.stdout.starts_with("account: dev@corp.example\n"),
        "{shown:#?}"
    );
    d.ctl(ROOT, &["account", "show", "cpt-rn-nobody"])
        .assert_err_hint(
            5,
            "\"cpt-rn-nobody\" is neither an e-mail address nor a Unix user bound to an account",
            "compartment account list shows every account and its Unix user",
        );
}
