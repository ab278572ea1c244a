//! The public documentation page, played as one story by separate Unix users against the
//! real daemon and CLI: every command of the page, its exact output, and its refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use compartment_e2e::{
    member_table, now_unix, parse_invitation_lines, parse_invite, skip_unless_root, Daemon, ROOT,
};
use serde_json::{json, Value};

const ADMIN: u32 = 61001;
const DEPLOYER: u32 = 61002;
const READONLY: u32 = 61003;
const VIEWER: u32 = 61004;
const BETA_ADMIN: u32 = 61005;

const SEVEN_DAYS: i64 = 7 * 24 * 3600;

#[test]
fn the_documentation_page_as_one_story() {
    if skip_unless_root("the_documentation_page_as_one_story") {
        return;
    }
    let d = Daemon::start_default();

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
            &admin_invite.expires_at,
        ]]));

    // An unbound uid may not act yet.
    d.ctl(ADMIN, &["user", "list"]).assert_err_hint(
        4,
        "uid 61001 is not bound to an account",
        "activate your invitation first: compartment activate <activation URL>",
    );

    d.activate(ADMIN, &admin_invite.url)
        .assert_ok("Activated admin@example.com: you are now admin in acme.\n");

    // whoami knows the caller from the socket's peer credentials.
    let out = d.ctl(ADMIN, &["--output", "json", "whoami"]);
    out.assert_success();
    let whoami: Value = serde_json::from_str(&out.stdout).expect("whoami JSON");
    assert_eq!(whoami["uid"], json!(ADMIN), "{whoami}");
    assert_eq!(whoami["gid"], json!(ADMIN), "{whoami}");
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
            ADMIN,
            &["user", "invite", "deploy@example.com", "--role", "deployer"],
        ),
        "deploy@example.com",
        "deployer",
    );
    let readonly = parse_invite(
        &d.ctl(
            ADMIN,
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
            ADMIN,
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

    d.ctl(ADMIN, &["user", "list"]).assert_ok(&member_table(&[
        ["admin@example.com", "admin", "active", "-"],
        [
            "deploy@example.com",
            "deployer",
            "invited",
            &deploy.expires_at,
        ],
        [
            "readonly@example.com",
            "readonly",
            "invited",
            &readonly.expires_at,
        ],
        [
            "viewer@example.com",
            "viewer",
            "invited",
            &viewer.expires_at,
        ],
    ]));

    // Each activates as their own Unix user.
    d.activate(DEPLOYER, &deploy.url)
        .assert_ok("Activated deploy@example.com: you are now deployer in acme.\n");
    d.activate(READONLY, &readonly.url)
        .assert_ok("Activated readonly@example.com: you are now readonly in acme.\n");
    d.activate(VIEWER, &viewer.url)
        .assert_ok("Activated viewer@example.com: you are now viewer in acme.\n");

    let all_active = "\
EMAIL                 ROLE      STATUS  EXPIRES
admin@example.com     admin     active  -
deploy@example.com    deployer  active  -
readonly@example.com  readonly  active  -
viewer@example.com    viewer    active  -
";
    d.ctl(ADMIN, &["user", "list"]).assert_ok(all_active);
    d.ctl(READONLY, &["user", "list"]).assert_ok(all_active);

    let out = d.ctl(ADMIN, &["--output", "json", "user", "list"]);
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
            {"email": "admin@example.com", "role": "admin", "status": "active", "expires_at": null},
            {"email": "deploy@example.com", "role": "deployer", "status": "active", "expires_at": null},
            {"email": "readonly@example.com", "role": "readonly", "status": "active", "expires_at": null},
            {"email": "viewer@example.com", "role": "viewer", "status": "active", "expires_at": null},
        ]})
    );

    // What each role may not do.
    d.ctl(VIEWER, &["user", "list"]).assert_err(
        4,
        "listing the members of acme needs the readonly role or above; yours is viewer",
    );
    d.ctl(
        READONLY,
        &["role", "grant", "viewer@example.com", "readonly"],
    )
    .assert_err(
        4,
        "granting roles in acme needs the deployer role or above; yours is readonly",
    );
    d.ctl(
        DEPLOYER,
        &["user", "invite", "new@example.com", "--role", "viewer"],
    )
    .assert_err(
        4,
        "inviting users to acme needs the admin role; yours is deployer",
    );
    d.ctl(DEPLOYER, &["user", "remove", "viewer@example.com"])
        .assert_err(
            4,
            "removing users from acme needs the admin role; yours is deployer",
        );
    d.ctl(DEPLOYER, &["role", "grant", "viewer@example.com", "admin"])
        .assert_err(
            4,
            "you cannot grant admin: your own role in acme, deployer, caps what you can grant",
        );
    d.ctl(
        DEPLOYER,
        &["role", "grant", "admin@example.com", "readonly"],
    )
    .assert_err(
        4,
        "you cannot change admin@example.com, whose role admin is above your own (deployer)",
    );

    // A deployer can grant roles up to deployer: the page's promotion.
    d.ctl(
        DEPLOYER,
        &["role", "grant", "readonly@example.com", "deployer"],
    )
    .assert_ok("Granted deployer to readonly@example.com in acme (was readonly).\n");

    // The last admin can be neither removed nor demoted, not even by root.
    let last_admin_hint = "grant admin to another member first";
    d.ctl(ADMIN, &["user", "remove", "admin@example.com"])
        .assert_err_hint(1, "cannot remove the last admin of acme", last_admin_hint);
    d.ctl(ADMIN, &["role", "grant", "admin@example.com", "deployer"])
        .assert_err_hint(1, "cannot demote the last admin of acme", last_admin_hint);
    d.ctl(
        ROOT,
        &["--org", "acme", "user", "remove", "admin@example.com"],
    )
    .assert_err_hint(1, "cannot remove the last admin of acme", last_admin_hint);

    // Removal is immediate: the member's very next request is judged without the membership.
    d.ctl(READONLY, &["--org", "acme", "user", "list"])
        .assert_success();
    d.ctl(ADMIN, &["user", "remove", "readonly@example.com"])
        .assert_ok("Removed readonly@example.com from acme.\n");
    // Their very next command no longer finds acme as their organization: they have none.
    d.ctl(READONLY, &["user", "list"]).assert_err_hint(
        2,
        "no organization given, and none could be chosen",
        "you are not a member of any organization yet",
    );
    // Named explicitly, acme is not found: the same answer as for an organization that
    // does not exist, so that existence does not leak.
    d.ctl(READONLY, &["--org", "acme", "user", "list"])
        .assert_err(5, "organization acme not found");
    d.ctl(READONLY, &["--org", "no-such-org", "user", "list"])
        .assert_err(5, "organization no-such-org not found");
    d.ctl(
        READONLY,
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

    d.ctl(ADMIN, &["user", "list"]).assert_ok(
        "\
EMAIL               ROLE      STATUS  EXPIRES
admin@example.com   admin     active  -
deploy@example.com  deployer  active  -
viewer@example.com  viewer    active  -
",
    );

    // Removing someone who is not a member is not found, not a silent success.
    d.ctl(ADMIN, &["user", "remove", "readonly@example.com"])
        .assert_err(5, "readonly@example.com is not a member of acme");
}

#[test]
fn an_account_active_elsewhere_is_granted_access_at_once_without_a_url() {
    if skip_unless_root("an_account_active_elsewhere_is_granted_access_at_once_without_a_url") {
        return;
    }
    const OPS: u32 = DEPLOYER;
    let d = Daemon::start_default();

    let out = d.ctl(
        ROOT,
        &["org", "create", "acme", "--admin", "admin@example.com"],
    );
    out.assert_success();
    let admin = parse_invitation_lines(&out.stdout_lines()[1..], "admin@example.com", "admin");
    d.activate(ADMIN, &admin.url).assert_success();
    let ops = parse_invite(
        &d.ctl(
            ADMIN,
            &["user", "invite", "ops@example.com", "--role", "deployer"],
        ),
        "ops@example.com",
        "deployer",
    );
    d.activate(OPS, &ops.url)
        .assert_ok("Activated ops@example.com: you are now deployer in acme.\n");

    // A second organization with its own admin, who invites the acme member.
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
    d.activate(BETA_ADMIN, &beta_admin.url)
        .assert_ok("Activated beta-admin@example.com: you are now admin in beta.\n");

    d.ctl(BETA_ADMIN, &["user", "invite", "ops@example.com", "--role", "deployer"]).assert_ok(
        "Invited ops@example.com as deployer.\n\
         ops@example.com already has an account: access is granted now, no activation URL needed.\n",
    );

    // The access is there at once, no activation.
    let beta_members = "\
EMAIL                   ROLE      STATUS  EXPIRES
beta-admin@example.com  admin     active  -
ops@example.com         deployer  active  -
";
    d.ctl(BETA_ADMIN, &["user", "list"]).assert_ok(beta_members);
    d.ctl(OPS, &["--org", "beta", "user", "list"])
        .assert_ok(beta_members);

    // Two organizations: without --org there is no single current one, and the error
    // names them.
    let out = d.ctl(OPS, &["user", "list"]);
    assert_eq!(out.code, 2, "org_required is a usage error: {out:#?}");
    assert!(
        out.stderr.starts_with("compartmentctl: ")
            && out.stderr.contains("acme")
            && out.stderr.contains("beta"),
        "the error lists the caller's organizations: {out:#?}"
    );

    // In JSON the same kind of invitation has no URL and no expiry.
    let out = d.ctl(
        BETA_ADMIN,
        &[
            "--output",
            "json",
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
            "activation_url": null,
            "expires_at": null,
        })
    );

    d.ctl(
        BETA_ADMIN,
        &["user", "invite", "ops@example.com", "--role", "viewer"],
    )
    .assert_err(1, "ops@example.com is already a member of beta");
}
