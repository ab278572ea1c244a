//! What survives and what is refused across daemon lifetimes: acknowledged writes after
//! `kill -9`, a clean stop, a second daemon on the same database or socket, a stale socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::net::UnixStream;

use compartment_e2e::{parse_invitation_lines, root_for_part, Daemon, TestUser, ROOT, URL_PREFIX};
use compartmentctl::wire::{
    Invitation, MemberStatus, OrgCreateParams, OrgCreated, Request, Role, UserInviteParams,
};
use serde_json::Value;

const INVITES: usize = 50;

/// Root creates `acme` and invites `INVITES` users over one library connection, each
/// acknowledged before the next is sent; returns the acknowledged invitations.
fn acme_with_invitations(d: &Daemon) -> Vec<Invitation> {
    let mut client = d.client();
    let _: OrgCreated = client
        .call(&Request::OrgCreate(OrgCreateParams {
            name: "acme".into(),
            admin: "admin@example.com".into(),
            admin_unix_user: None,
            expires_in: Default::default(),
        }))
        .expect("org.create");
    (0..INVITES)
        .map(|i| {
            let invitation: Invitation = client
                .call(&Request::UserInvite(UserInviteParams {
                    org: Some("acme".into()),
                    email: format!("user{i:02}@example.com"),
                    role: Role::Readonly,
                    expires_in: None,
                    resend: false,
                    unix_user: None,
                    access_until: None,
                }))
                .unwrap_or_else(|err| panic!("invitation {i}: {err}"));
            assert_eq!(invitation.status, MemberStatus::Invited, "{invitation:?}");
            invitation
        })
        .collect()
}

/// Every acknowledged invitation is listed by the CLI, as invited, with its expiry.
#[track_caller]
fn assert_all_listed(d: &Daemon, invitations: &[Invitation]) {
    let out = d.ctl(ROOT, &["--org", "acme", "--output", "json", "user", "list"]);
    out.assert_success();
    let list: Value = serde_json::from_str(&out.stdout).expect("user list JSON");
    let members = list["members"].as_array().expect("members");
    assert_eq!(
        members.len(),
        INVITES + 1,
        "the admin and {INVITES} invitees: {list}"
    );
    for invitation in invitations {
        let member = members
            .iter()
            .find(|member| member["email"] == invitation.email.as_str())
            .unwrap_or_else(|| panic!("{} was acknowledged but is lost", invitation.email));
        assert_eq!(member["role"], "readonly", "{member}");
        assert_eq!(member["status"], "invited", "{member}");
        assert_eq!(
            member["expires_at"].as_str(),
            invitation.expires_at.as_deref(),
            "{member}"
        );
    }
}

#[test]
fn acknowledged_invitations_survive_kill_9() {
    let mut d = Daemon::start_default();
    let invitations = acme_with_invitations(&d);

    d.kill9();
    d.restart();
    assert_all_listed(&d, &invitations);

    // The tokens survived too: one still activates after the crash.
    if root_for_part("activating after kill -9") {
        let url = invitations[7].activation_url.as_deref().expect("a URL");
        assert!(url.starts_with(URL_PREFIX), "{url}");
        d.activate(TestUser::get("cpt-readonly").uid, url)
            .assert_ok("Activated user07@example.com: you are now readonly in acme.\n");
    }
}

#[test]
fn a_clean_stop_exits_zero_and_keeps_everything() {
    let mut d = Daemon::start_default();
    let invitations = acme_with_invitations(&d);
    d.stop();
    d.restart();
    assert_all_listed(&d, &invitations);
}

#[test]
fn a_stale_socket_left_by_a_killed_daemon_is_replaced() {
    let mut d = Daemon::start_default();
    let out = d.ctl(
        ROOT,
        &["org", "create", "acme", "--admin", "admin@example.com"],
    );
    out.assert_success();
    parse_invitation_lines(&out.stdout_lines()[1..], "admin@example.com", "admin");

    d.kill9();
    assert!(d.socket().exists(), "kill -9 leaves the socket file behind");
    assert!(
        UnixStream::connect(d.socket()).is_err(),
        "nobody listens on the stale socket"
    );
    d.restart();
    assert!(d.answers_ping());
    let members = d.members("acme").members;
    assert_eq!(members.len(), 1, "{members:#?}");
}

#[test]
fn a_second_daemon_on_the_same_state_dir_refuses_to_start() {
    let d = Daemon::start_default();
    let invitations = acme_with_invitations(&d);

    let other_socket = d.dir().join("other.sock");
    let out = d
        .run_second_daemon(&other_socket, &d.state_dir())
        .expect("a second daemon on a database in use exits instead of running");
    assert_ne!(out.code, 0, "{out:#?}");
    let db = d.db_path().display().to_string();
    assert!(
        out.stderr.contains(&db) && out.stderr.contains("in use"),
        "the second daemon says the database {db} is in use: {out:#?}"
    );
    assert!(
        UnixStream::connect(&other_socket).is_err(),
        "the refused daemon does not listen on its socket"
    );

    // The first daemon is untouched.
    assert!(d.answers_ping());
    assert_all_listed(&d, &invitations);
}

#[test]
fn a_second_daemon_on_the_same_socket_refuses_to_start() {
    let d = Daemon::start_default();
    let out = d.ctl(
        ROOT,
        &["org", "create", "acme", "--admin", "admin@example.com"],
    );
    out.assert_success();

    let other_state = d.dir().join("other-state");
    let out = d
        .run_second_daemon(&d.socket(), &other_state)
        .expect("a second daemon on a socket in use exits instead of running");
    assert_ne!(out.code, 0, "{out:#?}");
    let socket = d.socket().display().to_string();
    assert!(
        out.stderr.contains(&socket) && out.stderr.contains("already listening"),
        "the second daemon says another daemon is already listening on {socket}: {out:#?}"
    );

    // The first daemon still owns its socket: the second one did not unlink it.
    assert!(
        d.answers_ping(),
        "the first daemon still answers on {}",
        d.socket().display()
    );
    assert_eq!(d.members("acme").members.len(), 1);
}
