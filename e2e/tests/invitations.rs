//! Invitations end to end: expiry and the sweeper, single use, `--resend`, revocation by
//! removal, and that no token ever reaches the database file or the daemon's log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use compartment_e2e::{
    assert_token_shape, files_under, member_table, now_unix, parse_invitation_lines, parse_invite,
    parse_rfc3339, poll, root_test, token_bytes, Daemon, DaemonOptions, InvitationLines, TestUser,
    ROOT, URL_PREFIX,
};
use compartmentctl::wire::MemberStatus;
use serde_json::{json, Value};

/// acme's first admin.
fn admin_user() -> TestUser {
    TestUser::get("cpt-admin")
}

/// A user who is sent activation URLs.
fn other_user() -> TestUser {
    TestUser::get("cpt-invitee")
}

/// A second user, who tries URLs the first one used.
fn third_user() -> TestUser {
    TestUser::get("cpt-invitee-2")
}

/// `create_acme`, then the admin activates as [`admin_user`].
fn acme_with_active_admin(d: &Daemon) {
    let admin = d.create_acme();
    d.activate(admin_user().uid, &admin.url)
        .assert_ok("Activated admin@example.com: you are now admin in acme.\n");
}

root_test!(
    a_lapsed_invitation_is_marked_expired_refused_and_can_be_issued_again,
    || {
        let d = Daemon::start(DaemonOptions::new().args(&[
            "--invitation-ttl",
            "2s",
            "--sweep-interval",
            "1s",
        ]));

        let before = now_unix();
        let admin = d.create_acme();
        let after = now_unix();
        assert!(
        (before + 1..=after + 3).contains(&admin.expires_at_unix),
        "--invitation-ttl 2s gives a two-second invitation: {admin:#?} (created between {before} and {after})"
    );

        // The sweeper marks it expired soon after its expiry; the row stays.
        let seen_expired = poll(Duration::from_secs(10), || {
            let member = d.members("acme").members.into_iter().next()?;
            (member.status == MemberStatus::Expired).then_some(now_unix())
        })
        .expect("the invitation is shown as expired within 10 s");
        assert!(
        seen_expired <= admin.expires_at_unix + 5,
        "the sweeper marked the invitation expired only at {seen_expired}, {}s after its expiry",
        seen_expired - admin.expires_at_unix
    );
        d.ctl(ROOT, &["--org", "acme", "user", "list"])
            .assert_ok(&member_table(&[[
                "admin@example.com",
                "admin",
                "expired",
                "-",
                &admin.expires_at,
            ]]));

        d.activate(admin_user().uid, &admin.url).assert_err_hint(
            1,
            &format!("this activation URL expired at {}", admin.expires_at),
            "ask an admin to invite you again",
        );
        // The refused activation bound nothing.
        d.ctl(admin_user().uid, &["user", "list"]).assert_err(
            4,
            &format!("uid {} is not bound to an account", admin_user().uid),
        );

        // Inviting an expired row again issues a new invitation at once.
        let again = parse_invite(
            &d.ctl(
                ROOT,
                &[
                    "--org",
                    "acme",
                    "user",
                    "invite",
                    "admin@example.com",
                    "--role",
                    "admin",
                ],
            ),
            "admin@example.com",
            "admin",
        );
        assert_ne!(again.token, admin.token, "a new invitation has a new token");
        d.activate(admin_user().uid, &again.url)
            .assert_ok("Activated admin@example.com: you are now admin in acme.\n");
        d.ctl(admin_user().uid, &["user", "list"])
            .assert_ok(&member_table(&[[
                "admin@example.com",
                "admin",
                "active",
                &admin_user().name,
                "-",
            ]]));
    }
);

root_test!(a_used_activation_url_is_refused, || {
    let d = Daemon::start_default();
    let admin = d.create_acme();
    d.activate(admin_user().uid, &admin.url)
        .assert_ok("Activated admin@example.com: you are now admin in acme.\n");

    d.activate(other_user().uid, &admin.url)
        .assert_err(1, "this activation URL has already been used");
    // The refused caller stays unbound; the first one keeps the account.
    d.ctl(other_user().uid, &["user", "list"]).assert_err_hint(
        4,
        &format!("uid {} is not bound to an account", other_user().uid),
        "activate your invitation first: run compartment activate and paste its URL",
    );
    d.ctl(admin_user().uid, &["user", "list"])
        .assert_ok(&member_table(&[[
            "admin@example.com",
            "admin",
            "active",
            &admin_user().name,
            "-",
        ]]));
});

root_test!(an_unknown_activation_url_is_not_valid, || {
    let d = Daemon::start_default();
    d.create_acme();
    let forged = format!("{URL_PREFIX}{}", "A".repeat(43));
    d.activate(other_user().uid, &forged)
        .assert_err(1, "this activation URL is not valid");
    d.activate(other_user().uid, "not-a-token")
        .assert_err(1, "this activation URL is not valid");
});

root_test!(
    resend_replaces_the_activation_url_and_revokes_the_old_one,
    || {
        let d = Daemon::start_default();
        acme_with_active_admin(&d);

        let first = parse_invite(
            &d.ctl(
                admin_user().uid,
                &["user", "invite", "deploy@example.com", "--role", "deployer"],
            ),
            "deploy@example.com",
            "deployer",
        );
        d.ctl(
            admin_user().uid,
            &["user", "invite", "deploy@example.com", "--role", "deployer"],
        )
        .assert_err_hint(
            1,
            "deploy@example.com is already invited to acme",
            "pass --resend to issue a new activation URL and revoke the old one",
        );

        let second = parse_invite(
            &d.ctl(
                admin_user().uid,
                &[
                    "user",
                    "invite",
                    "deploy@example.com",
                    "--role",
                    "deployer",
                    "--resend",
                ],
            ),
            "deploy@example.com",
            "deployer",
        );
        assert_ne!(second.token, first.token, "--resend issues a new token");
        assert!(
            second.expires_at_unix >= first.expires_at_unix,
            "{first:#?} {second:#?}"
        );

        d.activate(other_user().uid, &first.url)
            .assert_err(1, "this activation URL has been replaced or revoked");
        d.activate(other_user().uid, &second.url)
            .assert_ok("Activated deploy@example.com: you are now deployer in acme.\n");

        // Once active, the account is a member: neither a plain invite nor --resend applies.
        d.ctl(
            admin_user().uid,
            &["user", "invite", "deploy@example.com", "--role", "deployer"],
        )
        .assert_err_hint(
            1,
            "deploy@example.com is already a member of acme",
            "to change their role: compartment role grant deploy@example.com ROLE",
        );
        d.ctl(
            admin_user().uid,
            &[
                "user",
                "invite",
                "deploy@example.com",
                "--role",
                "deployer",
                "--resend",
            ],
        )
        .assert_err(1, "deploy@example.com is already a member of acme");
    }
);

root_test!(
    removing_an_invited_user_revokes_the_url_and_a_new_invitation_works,
    || {
        let d = Daemon::start_default();
        acme_with_active_admin(&d);

        let first = parse_invite(
            &d.ctl(
                admin_user().uid,
                &["user", "invite", "former@example.com", "--role", "readonly"],
            ),
            "former@example.com",
            "readonly",
        );
        d.ctl(admin_user().uid, &["user", "remove", "former@example.com"])
            .assert_ok("Removed former@example.com from acme.\n");
        d.activate(other_user().uid, &first.url)
            .assert_err(1, "this activation URL has been replaced or revoked");

        // The page's way out: remove and invite again. A bare token activates too.
        let again = parse_invite(
            &d.ctl(
                admin_user().uid,
                &["user", "invite", "former@example.com", "--role", "viewer"],
            ),
            "former@example.com",
            "viewer",
        );
        d.activate(other_user().uid, &again.token)
            .assert_ok("Activated former@example.com: you are now viewer in acme.\n");
    }
);

root_test!(expires_in_sets_an_invitations_lifetime, || {
    let d = Daemon::start_default();
    acme_with_active_admin(&d);
    let before = now_unix();
    let invite = parse_invite(
        &d.ctl(
            admin_user().uid,
            &[
                "user",
                "invite",
                "short@example.com",
                "--role",
                "viewer",
                "--expires-in",
                "1h",
            ],
        ),
        "short@example.com",
        "viewer",
    );
    assert!(
        (before + 3600 - 1..=now_unix() + 3600 + 1).contains(&invite.expires_at_unix),
        "--expires-in 1h: {invite:#?}"
    );

    // So does an organization's first admin's.
    let before = now_unix();
    let out = d.ctl(
        ROOT,
        &[
            "org",
            "create",
            "brief",
            "--admin",
            "b@example.com",
            "--expires-in",
            "3h",
        ],
    );
    out.assert_success();
    let lines = out.stdout_lines();
    let created = parse_invitation_lines(&lines[1..], "b@example.com", "admin");
    assert!(
        (before + 3 * 3600 - 1..=now_unix() + 3 * 3600 + 1).contains(&created.expires_at_unix),
        "org create --expires-in 3h: {out:#?}"
    );

    // The same in JSON: one line, the wire's Invitation, with the URL and the expiry.
    let before = now_unix();
    let out = d.ctl(
        admin_user().uid,
        &[
            "--output",
            "json",
            "user",
            "invite",
            "json@example.com",
            "--role",
            "readonly",
            "--expires-in",
            "2h",
        ],
    );
    out.assert_success();
    assert_eq!(
        out.stdout_lines().len(),
        1,
        "JSON output is one line: {out:#?}"
    );
    let invitation: Value = serde_json::from_str(&out.stdout).expect("invite JSON");
    let url = invitation["activation_url"]
        .as_str()
        .expect("activation_url");
    let token = url.strip_prefix(URL_PREFIX).expect("the URL prefix");
    assert_token_shape(token);
    let expires_at = invitation["expires_at"].as_str().expect("expires_at");
    let expires_at_unix = parse_rfc3339(expires_at).expect("RFC 3339 expiry");
    assert!(
        (before + 7200 - 1..=now_unix() + 7200 + 1).contains(&expires_at_unix),
        "--expires-in 2h: {invitation}"
    );
    assert_eq!(
        invitation,
        json!({
            "org": "acme",
            "email": "json@example.com",
            "role": "readonly",
            "status": "invited",
            "activation_url": url,
            "expires_at": expires_at,
        })
    );
    d.activate(other_user().uid, url)
        .assert_ok("Activated json@example.com: you are now readonly in acme.\n");
});

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// No token, in any form, in any file of the state dir; the e-mails are there (so the
/// file holds the data in the clear and the search would have found a token).
#[track_caller]
fn assert_no_token_stored(d: &Daemon, invitations: &[InvitationLines]) {
    let files = files_under(&d.state_dir());
    assert!(
        files.iter().any(|(path, _)| path == &d.db_path()),
        "the database is {}; the state dir holds {:?}",
        d.db_path().display(),
        files.iter().map(|(path, _)| path).collect::<Vec<_>>()
    );
    let all: Vec<u8> = files
        .iter()
        .flat_map(|(_, bytes)| bytes.iter().copied())
        .collect();
    for invitation in invitations {
        assert!(
            contains(&all, invitation.email.as_bytes()),
            "{} is not in the state files in the clear, so a search for tokens proves nothing",
            invitation.email
        );
        for (what, needle) in [
            ("the activation URL", invitation.url.as_bytes().to_vec()),
            ("the token's text", invitation.token.as_bytes().to_vec()),
            ("the token's raw bytes", token_bytes(&invitation.token)),
        ] {
            for (path, bytes) in &files {
                assert!(
                    !contains(bytes, &needle),
                    "{} holds {what} of {}'s invitation",
                    path.display(),
                    invitation.email
                );
            }
        }
    }
}

root_test!(tokens_never_reach_the_database_file_or_the_log, || {
    // The most talkative logging the daemon may be asked for.
    let mut d = Daemon::start(DaemonOptions::new().env("RUST_LOG", "trace"));
    let admin = d.create_acme();
    d.activate(admin_user().uid, &admin.url).assert_success();

    let mut invitations = vec![admin];
    for (email, role) in [
        ("deploy@example.com", "deployer"),
        ("readonly@example.com", "readonly"),
        ("viewer@example.com", "viewer"),
    ] {
        invitations.push(parse_invite(
            &d.ctl(admin_user().uid, &["user", "invite", email, "--role", role]),
            email,
            role,
        ));
    }
    invitations.push(parse_invite(
        &d.ctl(
            admin_user().uid,
            &[
                "user",
                "invite",
                "viewer@example.com",
                "--role",
                "viewer",
                "--resend",
            ],
        ),
        "viewer@example.com",
        "viewer",
    ));
    // One used, one refused as used, one refused as replaced: every token path is logged.
    d.activate(other_user().uid, &invitations[1].url)
        .assert_success();
    d.activate(third_user().uid, &invitations[1].url)
        .assert_err(1, "this activation URL has already been used");
    d.activate(third_user().uid, &invitations[3].url)
        .assert_err(1, "this activation URL has been replaced or revoked");

    assert_no_token_stored(&d, &invitations);
    d.stop();
    assert_no_token_stored(&d, &invitations);

    let log = d.log();
    for invitation in &invitations {
        assert!(
            !log.contains(&invitation.token),
            "the daemon log holds {}'s token:\n{log}",
            invitation.email
        );
    }
});
