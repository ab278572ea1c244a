//! The trust model end to end (DESIGN §2, §4, §8), as real Unix users: no organization's
//! admin reaches into another organization, a URL issued for one Unix user is useless to
//! anyone else, and a reused uid inherits nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use compartment_e2e::{
    parse_invitation_lines, parse_invite, poll, root_test, Daemon, InvitationLines, TestUser,
    NOBODY, ROOT,
};

/// The three lines of the documentation page, then whatever the invitation adds.
#[track_caller]
fn invitation_with_note(
    out: &compartment_e2e::Out,
    email: &str,
    role: &str,
) -> (InvitationLines, String) {
    out.assert_success();
    let lines = out.stdout_lines();
    assert_eq!(lines.len(), 4, "{out:#?}");
    (
        parse_invitation_lines(&lines[..3], email, role),
        lines[3].to_owned(),
    )
}

/// acme with its admin, and evil with its admin and a puppet uid evil's admin controls.
struct Tenants {
    daemon: Daemon,
    acme_admin: TestUser,
    evil_admin: TestUser,
    puppet: TestUser,
    hire: TestUser,
}

fn tenants() -> Tenants {
    let daemon = Daemon::start_default();
    let t = Tenants {
        acme_admin: TestUser::get("cpt-t-acme"),
        evil_admin: TestUser::get("cpt-t-evil"),
        puppet: TestUser::get("cpt-t-puppet"),
        hire: TestUser::get("cpt-t-hire"),
        daemon,
    };
    let acme = t.daemon.create_acme();
    t.daemon
        .activate(t.acme_admin.uid, &acme.url)
        .assert_ok("Activated admin@example.com: you are now admin in acme.\n");
    let out = t.daemon.ctl(
        ROOT,
        &["org", "create", "evil", "--admin", "boss@evil.example"],
    );
    out.assert_success();
    let evil = parse_invitation_lines(&out.stdout_lines()[1..], "boss@evil.example", "admin");
    t.daemon
        .activate(t.evil_admin.uid, &evil.url)
        .assert_ok("Activated boss@evil.example: you are now admin in evil.\n");
    t
}

root_test!(
    another_organizations_activation_takes_over_nothing_in_acme,
    || {
        let t = tenants();
        let d = &t.daemon;
        let acme_url = parse_invite(
            &d.ctl(
                t.acme_admin.uid,
                &["user", "invite", "new-hire@acme.com", "--role", "admin"],
            ),
            "new-hire@acme.com",
            "admin",
        );
        let evil_url = parse_invite(
            &d.ctl(
                t.evil_admin.uid,
                &["user", "invite", "new-hire@acme.com", "--role", "viewer"],
            ),
            "new-hire@acme.com",
            "viewer",
        );
        d.activate(t.puppet.uid, &evil_url.url)
            .assert_ok("Activated new-hire@acme.com: you are now viewer in evil.\n");
        // evil's puppet is nobody in acme: it neither lists nor removes acme's members.
        d.ctl(t.puppet.uid, &["--org", "acme", "user", "list"])
            .assert_err(5, "organization acme not found");
        d.ctl(
            t.puppet.uid,
            &["--org", "acme", "user", "remove", "admin@example.com"],
        )
        .assert_err(5, "organization acme not found");
        // acme still waits for its hire, who is told what to do; a superuser frees the address.
        d.activate(t.hire.uid, &acme_url.url).assert_err(
        4,
        "new-hire@acme.com is already bound to another Unix user; a superuser can unbind it (compartment account unbind new-hire@acme.com)",
    );
        d.ctl(ROOT, &["account", "unbind", "new-hire@acme.com"])
            .assert_ok(&format!(
                "Unbound new-hire@acme.com from Unix user {} (uid {}).\n",
                t.puppet.name, t.puppet.uid
            ));
        d.activate(t.hire.uid, &acme_url.url)
            .assert_ok("Activated new-hire@acme.com: you are now admin in acme.\n");
        let out = d.ctl(t.acme_admin.uid, &["user", "list"]);
        out.assert_success();
        let hire_row = out
            .stdout_lines()
            .into_iter()
            .find(|l| l.starts_with("new-hire@acme.com"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>());
        assert_eq!(
            hire_row,
            Some(vec![
                "new-hire@acme.com",
                "admin",
                "active",
                t.hire.name.as_str(),
                "-"
            ]),
            "{out:#?}"
        );
        // The hire inherits nothing in evil: that membership stays with the puppet's uid.
        d.ctl(t.hire.uid, &["--org", "evil", "user", "list"])
            .assert_err(5, "organization evil not found");
    }
);

root_test!(
    an_account_claimed_first_by_another_organization_needs_its_holders_consent,
    || {
        let t = tenants();
        let d = &t.daemon;
        let evil_url = parse_invite(
            &d.ctl(
                t.evil_admin.uid,
                &["user", "invite", "cfo@acme.com", "--role", "viewer"],
            ),
            "cfo@acme.com",
            "viewer",
        );
        d.activate(t.puppet.uid, &evil_url.url).assert_success();
        // acme invites the same address: no silent join; a URL only the holder can redeem, and
        // acme's admin is told who holds the account.
        let (invitation, note) = invitation_with_note(
            &d.ctl(
                t.acme_admin.uid,
                &["user", "invite", "cfo@acme.com", "--role", "admin"],
            ),
            "cfo@acme.com",
            "admin",
        );
        assert_eq!(
        note,
        format!(
            "cfo@acme.com already has an account, held by Unix user {0}: only {0} can redeem this URL.",
            t.puppet.name
        )
    );
        d.ctl(t.puppet.uid, &["--org", "acme", "user", "list"])
            .assert_err(5, "organization acme not found");
        // The real cfo, who received the URL, cannot redeem it.
        d.activate(t.hire.uid, &invitation.url).assert_err_hint(
            4,
            "this activation URL was issued for another Unix user to redeem",
            "run compartment activate as the Unix user the invitation names",
        );
        let out = d.ctl(t.acme_admin.uid, &["--output", "json", "user", "list"]);
        out.assert_success();
        let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let cfo = list["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["email"] == "cfo@acme.com")
            .unwrap()
            .clone();
        assert_eq!(cfo["status"], "invited");
        assert_eq!(cfo["unix_user"], serde_json::Value::Null);
    }
);

root_test!(
    a_url_issued_for_a_unix_user_is_useless_to_anyone_else,
    || {
        let t = tenants();
        let d = &t.daemon;
        let bob = TestUser::get("cpt-t-bob");
        let (invitation, note) = invitation_with_note(
            &d.ctl(
                t.acme_admin.uid,
                &[
                    "user",
                    "invite",
                    "bob@example.com",
                    "--role",
                    "deployer",
                    "--unix-user",
                    &bob.name,
                ],
            ),
            "bob@example.com",
            "deployer",
        );
        assert_eq!(
            note,
            format!("Only Unix user {} can redeem this URL.", bob.name)
        );
        // The thief of the URL is refused, and the URL stays good for bob.
        d.activate(t.puppet.uid, &invitation.url).assert_err(
            4,
            "this activation URL was issued for another Unix user to redeem",
        );
        d.activate(bob.uid, &invitation.url)
            .assert_ok("Activated bob@example.com: you are now deployer in acme.\n");
        // An unknown user is refused before anything is written.
        d.ctl(
            t.acme_admin.uid,
            &[
                "user",
                "invite",
                "x@example.com",
                "--role",
                "viewer",
                "--unix-user",
                "cpt-no-such-user",
            ],
        )
        .assert_err(
            5,
            "there is no Unix user \"cpt-no-such-user\" that may hold an account",
        );
        // org create names its first admin's Unix user the same way.
        let out = d.ctl(
            ROOT,
            &[
                "org",
                "create",
                "gamma",
                "--admin",
                "g@example.com",
                "--admin-unix-user",
                &t.hire.name,
            ],
        );
        out.assert_success();
        let lines = out.stdout_lines();
        assert_eq!(
            lines.last().copied(),
            Some(format!("Only Unix user {} can redeem this URL.", t.hire.name).as_str())
        );
        let gamma = parse_invitation_lines(&lines[1..4], "g@example.com", "admin");
        d.activate(t.puppet.uid, &gamma.url).assert_err(
            4,
            "this activation URL was issued for another Unix user to redeem",
        );
        d.activate(t.hire.uid, &gamma.url)
            .assert_ok("Activated g@example.com: you are now admin in gamma.\n");
    }
);

root_test!(a_uid_without_a_user_is_never_bound, || {
    let d = Daemon::start_default();
    let acme = d.create_acme();
    for uid in [NOBODY, 3_999_999] {
        d.activate(uid, &acme.url).assert_err(
            4,
            &format!("uid {uid} has no Unix user (deleted, nobody or unmapped), so it cannot be bound to an account"),
        );
    }
});

root_test!(a_reused_uid_inherits_nothing, || {
    let d = Daemon::start_default();
    let acme = d.create_acme();
    // A user of its own for this test, deletable: no user made meanwhile by a test running
    // at the same time takes the uid it frees.
    let old = TestUser::deletable("cpt-t-reuse-old");
    d.activate(old.uid, &acme.url)
        .assert_ok("Activated admin@example.com: you are now admin in acme.\n");
    // A superuser's question about the account, answered from NSS and kept a few seconds.
    let about = [
        "auth",
        "can",
        "project.read",
        "--org",
        "acme",
        "--email",
        "admin@example.com",
    ];
    let yes = d.ctl(ROOT, &about);
    assert_eq!(yes.code, 0, "{yes:#?}");
    let new = old.reuse_uid("cpt-t-reuse-new");
    let (uid, old_name, new_name) = (old.uid, &old.name, &new.name);
    // The new user's very first connection is refused: who it is was asked at connect.
    let expected = format!(
        "uid {uid} acts without an account: its binding was made for Unix user {old_name}, and it now belongs to {new_name}"
    );
    let refused = d.ctl(old.uid, &["--org", "acme", "user", "list"]);
    refused.assert_err_hint(
        4,
        &expected,
        "ask a superuser to rebind or unbind it (compartment account bind|unbind)",
    );
    d.ctl(old.uid, &["whoami"]).assert_ok(&format!(
        "uid {uid} ({new_name}): no account: its binding was made for Unix user {old_name}, and it now belongs to {new_name}; ask a superuser to rebind or unbind it\n"
    ));
    // Asked about by someone else, the account is refused once the daemon's answer about
    // the uid is older than the users cache's 5 s (that bound is the cache's own test's, in
    // daemon/src/users.rs); a minute only fails a test that hangs.
    let no = poll(Duration::from_secs(60), || {
        let out = d.ctl(ROOT, &about);
        (out.code == 4).then_some(out)
    })
    .expect("auth can --email still said yes a minute after the uid was reused");
    assert_eq!(
        no.stdout,
        format!("no\nuid {uid} ({new_name}): its binding was made for Unix user {old_name}, and it now belongs to {new_name}\n")
    );
    assert!(
        d.log().contains(&format!(
            "uid {uid} was bound as {old_name}, now {new_name}"
        )),
        "the stale binding was not logged:\n{}",
        d.log()
    );
    // The superuser sees it and unbinds; the new user then starts from nothing.
    let out = d.ctl(ROOT, &["account", "show", "admin@example.com"]);
    out.assert_success();
    assert_eq!(
        out.stdout_lines()[2],
        format!("bound to: Unix user {old_name} (uid {uid}); uid {uid} is now {new_name}: the binding does not hold")
    );
    // `account list` shows it as such, not as active.
    let listed = d.ctl(ROOT, &["account", "list"]);
    listed.assert_success();
    let row = listed
        .stdout_lines()
        .into_iter()
        .find(|line| line.starts_with("admin@example.com"))
        .unwrap()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(row, "admin@example.com binding stale", "{listed:#?}");
    // And so does `user list`, its recorded user beside it; the JSON says it for programs.
    let members = d.ctl(ROOT, &["--org", "acme", "user", "list"]);
    members.assert_success();
    assert_eq!(
        members.stdout_lines()[1]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        format!("admin@example.com admin binding stale {old_name} -"),
        "{members:#?}"
    );
    let json = d.ctl(ROOT, &["--org", "acme", "--output", "json", "user", "list"]);
    let listed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(listed["members"][0]["binding_stale"], true, "{json:#?}");
    assert_eq!(listed["members"][0]["status"], "active", "{json:#?}");
    d.ctl(ROOT, &["account", "unbind", "admin@example.com"])
        .assert_success();
    d.ctl(old.uid, &["--org", "acme", "user", "list"])
        .assert_err(4, &format!("uid {uid} is not bound to an account"));
    new.delete();
});

root_test!(only_superusers_manage_accounts, || {
    let t = tenants();
    let d = &t.daemon;
    for (args, action) in [
        (&["account", "list"][..], "listing accounts"),
        (
            &["account", "show", "admin@example.com"][..],
            "showing accounts",
        ),
        (
            &["account", "unbind", "admin@example.com"][..],
            "unbinding accounts",
        ),
        (
            &[
                "account",
                "bind",
                "admin@example.com",
                "--unix-user",
                "cpt-t-evil",
            ][..],
            "binding accounts",
        ),
    ] {
        d.ctl(t.evil_admin.uid, args).assert_err(
            4,
            &format!("{action} is for superusers (root or the daemon's own user)"),
        );
    }
    let out = d.ctl(ROOT, &["account", "list"]);
    out.assert_success();
    let rows: Vec<Vec<&str>> = out
        .stdout_lines()
        .iter()
        .map(|l| {
            l.split("  ")
                .filter(|c| !c.is_empty())
                .map(str::trim)
                .collect()
        })
        .collect();
    let (acme_uid, evil_uid) = (t.acme_admin.uid.to_string(), t.evil_admin.uid.to_string());
    assert_eq!(
        rows,
        [
            vec!["EMAIL", "STATUS", "UNIX USER", "UID", "BOUND THROUGH"],
            vec![
                "admin@example.com",
                "active",
                &t.acme_admin.name,
                &acme_uid,
                "a superuser"
            ],
            vec![
                "boss@evil.example",
                "active",
                &t.evil_admin.name,
                &evil_uid,
                "a superuser"
            ],
        ],
        "{out:#?}"
    );
});

#[test]
fn an_org_name_typed_comes_back_escaped_in_text_and_as_it_is_in_json() {
    let d = Daemon::in_process_default();
    // The window title, then a reversal of what follows, in a value from the command line
    // (or a COMPARTMENT_ORG someone else's script set) that the daemon's error echoes.
    let hostile = "\u{1b}]0;owned\u{7}\u{202e}acme";
    let out = d.ctl(ROOT, &["--org", hostile, "user", "list"]);
    out.assert_err_hint(
        5,
        r"organization \u{1b}]0;owned\u{7}\u{202e}acme not found",
        "compartment org list shows your organizations",
    );
    assert!(
        !out.stderr.contains(['\u{1b}', '\u{7}', '\u{202e}']),
        "{out:#?}"
    );
    let out = d.ctl(
        ROOT,
        &["--output", "json", "--org", hostile, "user", "list"],
    );
    assert_eq!(out.code, 5, "{out:#?}");
    let error: serde_json::Value = serde_json::from_str(&out.stderr).unwrap();
    assert_eq!(
        error["message"],
        format!("organization {hostile} not found").as_str()
    );
}

root_test!(
    a_rebind_after_a_squat_leaves_the_squatters_org_behind,
    || {
        let d = Daemon::start_default();
        let acme = d.create_acme();
        let admin = TestUser::get("cpt-t8-admin");
        d.activate(admin.uid, &acme.url).assert_success();
        let boss = TestUser::get("cpt-t8-boss");
        let squatter = TestUser::get("cpt-t8-squat");
        let victim = TestUser::get("cpt-t8-victim");
        let out = d.ctl(
            ROOT,
            &["org", "create", "beta", "--admin", "boss@beta.example"],
        );
        out.assert_success();
        let beta = parse_invitation_lines(&out.stdout_lines()[1..], "boss@beta.example", "admin");
        d.activate(boss.uid, &beta.url).assert_success();
        // beta's admin invites an address nobody has activated, and redeems it as its own.
        let out = d.ctl(
            boss.uid,
            &["user", "invite", "victim@example.com", "--role", "admin"],
        );
        let squat = parse_invite(&out, "victim@example.com", "admin");
        d.activate(squatter.uid, &squat.url).assert_success();
        // A superuser's invitation to acme vouches for the address: active at once.
        d.ctl(
            ROOT,
            &[
                "user",
                "invite",
                "victim@example.com",
                "--role",
                "viewer",
                "--org",
                "acme",
            ],
        )
        .assert_success();
        // The repair.
        d.ctl(
            ROOT,
            &[
                "account",
                "bind",
                "victim@example.com",
                "--unix-user",
                &victim.name,
            ],
        )
        .assert_ok(&format!(
            "Bound victim@example.com to Unix user {} (uid {}).\n\
         Carried over: viewer in acme.\n\
         Not carried over: admin in beta (made through a binding no superuser vouched for).\n\
         To carry those over too, bind again with --carry-all.\n",
            victim.name, victim.uid
        ));
        // The owner is no member of beta, and acme is their current organization.
        d.ctl(victim.uid, &["--org", "beta", "user", "list"])
            .assert_err(5, "organization beta not found");
        let who = d.ctl(victim.uid, &["--output", "json", "whoami"]);
        who.assert_success();
        let who: serde_json::Value = serde_json::from_str(&who.stdout).unwrap();
        assert_eq!(who["current_org"], "acme", "{who}");
        let orgs: Vec<&str> = who["memberships"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["org"].as_str().unwrap())
            .collect();
        assert_eq!(orgs, ["acme"], "{who}");
        // The squatter's uid holds nothing now.
        d.ctl(squatter.uid, &["--org", "beta", "user", "list"])
            .assert_err(
                4,
                &format!("uid {} is not bound to an account", squatter.uid),
            );
    }
);

root_test!(
    a_superuser_deletes_an_account_and_its_user_then_acts_as_nobody,
    || {
        let t = tenants();
        let d = &t.daemon;
        let hire = parse_invite(
            &d.ctl(
                t.acme_admin.uid,
                &["user", "invite", "hire@acme.com", "--role", "deployer"],
            ),
            "hire@acme.com",
            "deployer",
        );
        d.activate(t.hire.uid, &hire.url)
            .assert_ok("Activated hire@acme.com: you are now deployer in acme.\n");
        // Neither another organization's admin nor its own may.
        for uid in [t.evil_admin.uid, t.acme_admin.uid] {
            d.ctl(uid, &["account", "delete", "hire@acme.com", "--force"])
                .assert_err(
                    4,
                    "deleting accounts is for superusers (root or the daemon's own user)",
                );
        }
        d.ctl(ROOT, &["account", "delete", "hire@acme.com"]).assert_err_hint(
        1,
        "hire@acme.com is a member of acme; nothing was deleted",
        "remove it from them first, or pass --force to delete it with its memberships (compartment account delete --force hire@acme.com)",
    );
        d.ctl(ROOT, &["account", "delete", "admin@example.com", "--force"])
            .assert_err_hint(
                1,
                "cannot remove the last admin of acme",
                "grant admin to another member first",
            );
        d.ctl(ROOT, &["account", "delete", "hire@acme.com", "--force"])
        .assert_ok(&format!(
            "Deleted account hire@acme.com.\nRemoved it from acme.\nUnbound Unix user {} (uid {}).\n",
            t.hire.name, t.hire.uid
        ));
        d.ctl(t.hire.uid, &["--org", "acme", "user", "list"])
            .assert_err(4, &format!("uid {} is not bound to an account", t.hire.uid));
        d.ctl(ROOT, &["account", "delete", "hire@acme.com", "--force"])
            .assert_err(5, "no account hire@acme.com");
        // A pending invitation goes with its account; for scripts, the same as JSON.
        parse_invite(
            &d.ctl(
                t.acme_admin.uid,
                &["user", "invite", "later@acme.com", "--role", "viewer"],
            ),
            "later@acme.com",
            "viewer",
        );
        let out = d.ctl(
            ROOT,
            &[
                "account",
                "delete",
                "later@acme.com",
                "--force",
                "--output",
                "json",
            ],
        );
        out.assert_success();
        let deleted: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        assert_eq!(
            deleted,
            serde_json::json!({
                "email": "later@acme.com",
                "removed_from": ["acme"],
                "uid": null,
                "unix_user": null,
            })
        );
        let members = d.ctl(ROOT, &["--org", "acme", "user", "list"]);
        members.assert_success();
        assert!(
            !members.stdout.contains("hire@") && !members.stdout.contains("later@"),
            "{members:#?}"
        );
        // Each change's log line names whom it was about, and the role it left them with.
        let log = d.log();
        for line in [
            r#"method="user.invite" org="acme" email="hire@acme.com" role="deployer" outcome="ok""#,
            r#"method="account.activate" org="acme" email="hire@acme.com" role="deployer" outcome="ok""#,
            r#"method="account.delete" org="-" email="hire@acme.com" role="-" outcome="ok""#,
        ] {
            assert!(log.contains(line), "no {line} in the log:\n{log}");
        }
    }
);
