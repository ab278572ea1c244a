//! The public documentation page, played as one story by separate Unix users against the
//! real daemon and CLI: every command of the page, its exact output, and its refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use compartment_e2e::{
    member_table, now_unix, parse_invitation_lines, parse_invite, root_test, Daemon, DaemonOptions,
    Database, TestUser, ROOT,
};
use serde_json::{json, Value};

/// acme's first admin (the page's `alice`).
fn admin_user() -> TestUser {
    TestUser::get("cpt-admin")
}

/// acme's deployer (the page's `bob`).
fn deployer_user() -> TestUser {
    TestUser::get("cpt-deployer")
}

fn readonly_user() -> TestUser {
    TestUser::get("cpt-readonly")
}

fn viewer_user() -> TestUser {
    TestUser::get("cpt-viewer")
}

/// The first admin of a second organization, `beta`.
fn beta_admin_user() -> TestUser {
    TestUser::get("cpt-beta-admin")
}

const SEVEN_DAYS: i64 = 7 * 24 * 3600;

root_test!(the_documentation_page_as_one_story, || {
    the_story(&Daemon::start_default());
});

// The same story, byte for byte, on a daemon that keeps its membership in PostgreSQL.
root_test!(the_documentation_page_as_one_story_on_postgresql, || {
    let Some(database) = Database::start("the_documentation_page_as_one_story_on_postgresql")
    else {
        return;
    };
    the_story(&Daemon::start(DaemonOptions::new().postgres(&database)));
});

fn the_story(d: &Daemon) {
    // Bootstrap: root creates the organization and gets its first admin's activation URL.
    let before = now_unix();
    let admin_invite = d.create_acme();
    let expiry = admin_invite.expires_at_unix;
    assert!(
        (before + SEVEN_DAYS - 2..=now_unix() + SEVEN_DAYS + 2).contains(&expiry),
        "the default invitation lifetime is 7 days: {admin_invite:#?}"
    );

    // Before activation the admin is listed as invited, with the expiry.
    d.ctl(ROOT, &["--org", "acme", "user", "list"])
        .assert_ok(&member_table(&[[
            "admin@example.com",
            "admin",
            "invited",
            "-",
            &admin_invite.expires_at,
        ]]));

    // An unbound uid may not act yet.
    d.ctl(admin_user().uid, &["user", "list"]).assert_err_hint(
        4,
        &format!("uid {} is not bound to an account", admin_user().uid),
        "activate your invitation first: run compartment activate and paste its URL",
    );

    d.activate(admin_user().uid, &admin_invite.url)
        .assert_ok("Activated admin@example.com: you are now admin in acme.\n");

    // whoami knows the caller from the socket's peer credentials.
    let out = d.ctl(admin_user().uid, &["--output", "json", "whoami"]);
    out.assert_success();
    let whoami: Value = serde_json::from_str(&out.stdout).expect("whoami JSON");
    assert_eq!(whoami["uid"], json!(admin_user().uid), "{whoami}");
    assert_eq!(whoami["gid"], json!(admin_user().gid), "{whoami}");
    assert_eq!(whoami["superuser"], json!(false), "{whoami}");
    assert_eq!(
        whoami["account"],
        json!({"email": "admin@example.com", "status": "active"}),
        "{whoami}"
    );
    assert_eq!(whoami["current_org"], json!("acme"), "{whoami}");
    assert_eq!(
        whoami["memberships"],
        json!([{"org": "acme", "role": "admin", "status": "active"}]),
        "{whoami}"
    );

    // The admin invites one user per role; each gets the page's three lines.
    let deploy = parse_invite(
        &d.ctl(
            admin_user().uid,
            &["user", "invite", "deploy@example.com", "--role", "deployer"],
        ),
        "deploy@example.com",
        "deployer",
    );
    let readonly = parse_invite(
        &d.ctl(
            admin_user().uid,
            &[
                "user",
                "invite",
                "readonly@example.com",
                "--role",
                "readonly",
            ],
        ),
        "readonly@example.com",
        "readonly",
    );
    let viewer = parse_invite(
        &d.ctl(
            admin_user().uid,
            &["user", "invite", "viewer@example.com", "--role", "viewer"],
        ),
        "viewer@example.com",
        "viewer",
    );
    let mut tokens = vec![
        &admin_invite.token,
        &deploy.token,
        &readonly.token,
        &viewer.token,
    ];
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 4, "every invitation gets its own token");

    d.ctl(admin_user().uid, &["user", "list"])
        .assert_ok(&member_table(&[
            ["admin@example.com", "admin", "active", "cpt-admin", "-"],
            [
                "deploy@example.com",
                "deployer",
                "invited",
                "-",
                &deploy.expires_at,
            ],
            [
                "readonly@example.com",
                "readonly",
                "invited",
                "-",
                &readonly.expires_at,
            ],
            [
                "viewer@example.com",
                "viewer",
                "invited",
                "-",
                &viewer.expires_at,
            ],
        ]));

    // Each activates as their own Unix user.
    d.activate(deployer_user().uid, &deploy.url)
        .assert_ok("Activated deploy@example.com: you are now deployer in acme.\n");
    d.activate(readonly_user().uid, &readonly.url)
        .assert_ok("Activated readonly@example.com: you are now readonly in acme.\n");
    d.activate(viewer_user().uid, &viewer.url)
        .assert_ok("Activated viewer@example.com: you are now viewer in acme.\n");

    let all_active = "\
EMAIL                 ROLE      STATUS  UNIX USER     EXPIRES
admin@example.com     admin     active  cpt-admin     -
deploy@example.com    deployer  active  cpt-deployer  -
readonly@example.com  readonly  active  cpt-readonly  -
viewer@example.com    viewer    active  cpt-viewer    -
";
    d.ctl(admin_user().uid, &["user", "list"])
        .assert_ok(all_active);
    d.ctl(readonly_user().uid, &["user", "list"])
        .assert_ok(all_active);

    let out = d.ctl(admin_user().uid, &["--output", "json", "user", "list"]);
    out.assert_success();
    assert_eq!(
        out.stdout_lines().len(),
        1,
        "JSON output is one line: {out:#?}"
    );
    let list: Value = serde_json::from_str(&out.stdout).expect("user list JSON");
    assert_eq!(
        list,
        json!({"org": "acme", "members": [
            {"email": "admin@example.com", "role": "admin", "status": "active", "unix_user": "cpt-admin", "expires_at": null},
            {"email": "deploy@example.com", "role": "deployer", "status": "active", "unix_user": "cpt-deployer", "expires_at": null},
            {"email": "readonly@example.com", "role": "readonly", "status": "active", "unix_user": "cpt-readonly", "expires_at": null},
            {"email": "viewer@example.com", "role": "viewer", "status": "active", "unix_user": "cpt-viewer", "expires_at": null},
        ]})
    );

    // What each role may not do.
    d.ctl(viewer_user().uid, &["user", "list"]).assert_err(
        4,
        "listing the members of acme needs the readonly role or above; yours is viewer",
    );
    d.ctl(
        readonly_user().uid,
        &["role", "grant", "viewer@example.com", "readonly"],
    )
    .assert_err(
        4,
        "granting roles in acme needs the deployer role or above; yours is readonly",
    );
    d.ctl(
        deployer_user().uid,
        &["user", "invite", "new@example.com", "--role", "viewer"],
    )
    .assert_err(
        4,
        "inviting users to acme needs the admin role; yours is deployer",
    );
    d.ctl(
        deployer_user().uid,
        &["user", "remove", "viewer@example.com"],
    )
    .assert_err(
        4,
        "removing users from acme needs the admin role; yours is deployer",
    );
    d.ctl(
        deployer_user().uid,
        &["role", "grant", "viewer@example.com", "admin"],
    )
    .assert_err(
        4,
        "you cannot grant admin: your own role in acme, deployer, caps what you can grant",
    );
    d.ctl(
        deployer_user().uid,
        &["role", "grant", "admin@example.com", "readonly"],
    )
    .assert_err(
        4,
        "you cannot change admin@example.com, whose role admin is above your own (deployer)",
    );

    // A deployer can grant roles up to deployer: the page's promotion.
    d.ctl(
        deployer_user().uid,
        &["role", "grant", "readonly@example.com", "deployer"],
    )
    .assert_ok("Granted deployer to readonly@example.com in acme (was readonly).\n");

    // The last admin can be neither removed nor demoted, not even by root.
    let last_admin_hint = "grant admin to another member first";
    d.ctl(admin_user().uid, &["user", "remove", "admin@example.com"])
        .assert_err_hint(1, "cannot remove the last admin of acme", last_admin_hint);
    d.ctl(
        admin_user().uid,
        &["role", "grant", "admin@example.com", "deployer"],
    )
    .assert_err_hint(1, "cannot demote the last admin of acme", last_admin_hint);
    d.ctl(
        ROOT,
        &["--org", "acme", "user", "remove", "admin@example.com"],
    )
    .assert_err_hint(1, "cannot remove the last admin of acme", last_admin_hint);

    // Removal is immediate: the member's very next request is judged without the membership.
    d.ctl(readonly_user().uid, &["--org", "acme", "user", "list"])
        .assert_success();
    d.ctl(
        admin_user().uid,
        &["user", "remove", "readonly@example.com"],
    )
    .assert_ok("Removed readonly@example.com from acme.\n");
    // Their very next command no longer finds acme as their organization: they have none.
    d.ctl(readonly_user().uid, &["user", "list"])
        .assert_err_hint(
            2,
            "no organization given, and none could be chosen",
            "you are not a member of any organization yet",
        );
    // Named explicitly, acme is not found: the same answer as for an organization that
    // does not exist, so that existence does not leak.
    d.ctl(readonly_user().uid, &["--org", "acme", "user", "list"])
        .assert_err(5, "organization acme not found");
    d.ctl(
        readonly_user().uid,
        &["--org", "no-such-org", "user", "list"],
    )
    .assert_err(5, "organization no-such-org not found");
    d.ctl(
        readonly_user().uid,
        &[
            "--org",
            "acme",
            "role",
            "grant",
            "viewer@example.com",
            "readonly",
        ],
    )
    .assert_err(5, "organization acme not found");

    d.ctl(admin_user().uid, &["user", "list"]).assert_ok(
        "\
EMAIL               ROLE      STATUS  UNIX USER     EXPIRES
admin@example.com   admin     active  cpt-admin     -
deploy@example.com  deployer  active  cpt-deployer  -
viewer@example.com  viewer    active  cpt-viewer    -
",
    );

    // Removing someone who is not a member is not found, not a silent success.
    d.ctl(
        admin_user().uid,
        &["user", "remove", "readonly@example.com"],
    )
    .assert_err(5, "readonly@example.com is not a member of acme");

    // The audit log holds the story: each change, and each refusal of someone with an
    // account, with who, what, in which organization, about whom, before and after.
    let out = d.ctl(ROOT, &["audit", "list"]);
    out.assert_success();
    let records: Vec<String> = out
        .stdout_lines()
        .iter()
        .map(|line| {
            // `#SEQ TIME rest`, without its time.
            let (seq, rest) = line.split_once(' ').unwrap();
            let (_, rest) = rest.split_once(' ').unwrap();
            format!("{seq} {rest}")
        })
        .collect();
    let (admin, deployer, readonly, viewer) = (
        admin_user(),
        deployer_user(),
        readonly_user(),
        viewer_user(),
    );
    let by = |user: &TestUser, email: &str| format!("by {email} ({})", user.name);
    let (by_admin, by_deployer, by_readonly, by_viewer) = (
        by(&admin, "admin@example.com"),
        by(&deployer, "deploy@example.com"),
        by(&readonly, "readonly@example.com"),
        by(&viewer, "viewer@example.com"),
    );
    let activated = |n: u32, user: &TestUser, email: &str, role: &str| {
        format!(
            "#{n} account.activate {} in acme on account {email}: {role} invited -> {role} active [ok] (Unix user {} (uid {}))",
            by(user, email),
            user.name,
            user.uid
        )
    };
    let expected = [
        "#1 organization.create by root in acme [ok]".to_owned(),
        activated(2, &admin, "admin@example.com", "admin"),
        format!("#3 organization.user.invite {by_admin} in acme on account deploy@example.com: none -> deployer invited [ok] (role deployer)"),
        format!("#4 organization.user.invite {by_admin} in acme on account readonly@example.com: none -> readonly invited [ok] (role readonly)"),
        format!("#5 organization.user.invite {by_admin} in acme on account viewer@example.com: none -> viewer invited [ok] (role viewer)"),
        activated(6, &deployer, "deploy@example.com", "deployer"),
        activated(7, &readonly, "readonly@example.com", "readonly"),
        activated(8, &viewer, "viewer@example.com", "viewer"),
        format!("#9 organization.member.list {by_viewer} in acme [forbidden] (listing the members of acme needs the readonly role or above; yours is viewer)"),
        format!("#10 organization.role.grant {by_readonly} in acme on account viewer@example.com [forbidden] (granting roles in acme needs the deployer role or above; yours is readonly)"),
        format!("#11 organization.user.invite {by_deployer} in acme on account new@example.com [forbidden] (inviting users to acme needs the admin role; yours is deployer)"),
        format!("#12 organization.user.remove {by_deployer} in acme on account viewer@example.com [forbidden] (removing users from acme needs the admin role; yours is deployer)"),
        format!("#13 organization.role.grant {by_deployer} in acme on account viewer@example.com [role_above_own] (you cannot grant admin: your own role in acme, deployer, caps what you can grant)"),
        format!("#14 organization.role.grant {by_deployer} in acme on account admin@example.com [role_above_own] (you cannot change admin@example.com, whose role admin is above your own (deployer))"),
        format!("#15 organization.role.grant {by_deployer} in acme on account readonly@example.com: readonly active -> deployer active [ok] (readonly -> deployer)"),
        format!("#16 organization.user.remove {by_admin} in acme on account admin@example.com [last_admin] (cannot remove the last admin of acme)"),
        format!("#17 organization.role.grant {by_admin} in acme on account admin@example.com [last_admin] (cannot demote the last admin of acme)"),
        "#18 organization.user.remove by root in acme on account admin@example.com [last_admin] (cannot remove the last admin of acme)".to_owned(),
        format!("#19 organization.user.remove {by_admin} in acme on account readonly@example.com: deployer active -> none [ok]"),
        format!("#20 organization.member.list {by_readonly} [org_required] (no organization given, and none could be chosen)"),
        format!("#21 organization.member.list {by_readonly} in acme [not_found] (organization acme not found)"),
        format!("#22 organization.member.list {by_readonly} in no-such-org [not_found] (organization no-such-org not found)"),
        format!("#23 organization.role.grant {by_readonly} in acme on account viewer@example.com [not_found] (organization acme not found)"),
        format!("#24 organization.user.remove {by_admin} in acme on account readonly@example.com [not_found] (readonly@example.com is not a member of acme)"),
    ];
    assert_eq!(records, expected);
    let out = d.ctl(ROOT, &["audit", "verify"]);
    out.assert_success();
    assert_eq!(
        out.stdout_lines(),
        [
            "Checked records 1 to 24, against:",
            "  what this daemon last saw the log hold (record 24)",
            "The audit log is whole."
        ]
    );
}

root_test!(
    an_account_active_elsewhere_is_granted_access_at_once_without_a_url,
    || {
        let ops_user = deployer_user();
        let d = Daemon::start_default();

        let out = d.ctl(
            ROOT,
            &["org", "create", "acme", "--admin", "admin@example.com"],
        );
        out.assert_success();
        let admin = parse_invitation_lines(&out.stdout_lines()[1..], "admin@example.com", "admin");
        d.activate(admin_user().uid, &admin.url).assert_success();
        let ops = parse_invite(
            &d.ctl(
                admin_user().uid,
                &["user", "invite", "ops@example.com", "--role", "deployer"],
            ),
            "ops@example.com",
            "deployer",
        );
        d.activate(ops_user.uid, &ops.url)
            .assert_ok("Activated ops@example.com: you are now deployer in acme.\n");

        // A second organization with its own admin. A superuser, who may vouch for every
        // binding, invites the acme member to it.
        let out = d.ctl(
            ROOT,
            &["org", "create", "beta", "--admin", "beta-admin@example.com"],
        );
        out.assert_success();
        let lines = out.stdout_lines();
        assert_eq!(
            lines.first(),
            Some(&"Created organization beta."),
            "{out:#?}"
        );
        let beta_admin = parse_invitation_lines(&lines[1..], "beta-admin@example.com", "admin");
        d.activate(beta_admin_user().uid, &beta_admin.url)
            .assert_ok("Activated beta-admin@example.com: you are now admin in beta.\n");

        d.ctl(
            ROOT,
            &[
                "--org",
                "beta",
                "user",
                "invite",
                "ops@example.com",
                "--role",
                "deployer",
            ],
        )
        .assert_ok(
            "Invited ops@example.com as deployer.\n\
             ops@example.com already has an account (Unix user cpt-deployer): access is granted \
             now, no activation URL needed.\n",
        );

        // The access is there at once, no activation.
        let beta_members = "\
EMAIL                   ROLE      STATUS  UNIX USER       EXPIRES
beta-admin@example.com  admin     active  cpt-beta-admin  -
ops@example.com         deployer  active  cpt-deployer    -
";
        d.ctl(beta_admin_user().uid, &["user", "list"])
            .assert_ok(beta_members);
        d.ctl(ops_user.uid, &["--org", "beta", "user", "list"])
            .assert_ok(beta_members);

        // Two organizations: without --org there is no single current one, and the error
        // names them.
        let out = d.ctl(ops_user.uid, &["user", "list"]);
        assert_eq!(out.code, 2, "org_required is a usage error: {out:#?}");
        assert!(
            out.stderr.starts_with("compartmentctl: ")
                && out.stderr.contains("acme")
                && out.stderr.contains("beta"),
            "the error lists the caller's organizations: {out:#?}"
        );

        // In JSON the same kind of invitation has no URL and no expiry.
        let out = d.ctl(
            ROOT,
            &[
                "--output",
                "json",
                "--org",
                "beta",
                "user",
                "invite",
                "admin@example.com",
                "--role",
                "readonly",
            ],
        );
        out.assert_success();
        assert_eq!(
            out.stdout_lines().len(),
            1,
            "JSON output is one line: {out:#?}"
        );
        let invitation: Value = serde_json::from_str(&out.stdout).expect("invite JSON");
        assert_eq!(
            invitation,
            json!({
                "org": "beta",
                "email": "admin@example.com",
                "role": "readonly",
                "status": "active",
                "held_by": "cpt-admin",
                "activation_url": null,
                "expires_at": null,
            })
        );

        d.ctl(
            beta_admin_user().uid,
            &["user", "invite", "ops@example.com", "--role", "viewer"],
        )
        .assert_err(1, "ops@example.com is already a member of beta");
    }
);
