//! The daemon as the host's access authority (DESIGN §3): `compartment auth can`,
//! `authz.check` for services, `role show` and the permissions `whoami` lists, as real Unix
//! users: a member asking about itself, a local user fishing for others' access, and a
//! service in `--service-group` asking about anyone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use compartment_e2e::{
    each_store, parse_invite, root_test, test_group, Daemon, DaemonOptions, Out, RawConn, TestUser,
    ROOT,
};
use compartmentctl::wire::{Check, Permission, Reason, Role};
use std::os::unix::process::CommandExt;

use serde_json::{json, Value};

const SERVICES: &str = "cpt-az-services";

/// acme with an admin, a deployer and a viewer, each its own Unix user; a service user
/// listed in `--service-group`; a bystander bound to nothing.
struct Host {
    daemon: Daemon,
    admin: TestUser,
    deployer: TestUser,
    viewer: TestUser,
    service: TestUser,
    bystander: TestUser,
}

/// `test` run on a [`Host`] of each store: the rows a decision reads are read differently
/// on PostgreSQL (at a glance, else from a snapshot), so every answer is asked of both.
fn on_each_store(test: &str, body: impl Fn(&Host)) {
    for options in each_store(test) {
        body(&host(options));
    }
}

fn host(options: DaemonOptions) -> Host {
    let service = TestUser::get("cpt-az-svc");
    test_group(SERVICES, &[&service]);
    let daemon = Daemon::start(options.args(&["--service-group", SERVICES]));
    let h = Host {
        admin: TestUser::get("cpt-az-admin"),
        deployer: TestUser::get("cpt-az-dep"),
        viewer: TestUser::get("cpt-az-view"),
        bystander: TestUser::get("cpt-az-by"),
        service,
        daemon,
    };
    let acme = h.daemon.create_acme();
    h.daemon.activate(h.admin.uid, &acme.url).assert_success();
    for (email, role, user) in [
        ("dep@example.com", "deployer", &h.deployer),
        ("view@example.com", "viewer", &h.viewer),
    ] {
        let out = h.daemon.ctl(
            h.admin.uid,
            &["user", "invite", email, "--role", role, "--org", "acme"],
        );
        let invitation = parse_invite(&out, email, role);
        h.daemon
            .activate(user.uid, &invitation.url)
            .assert_success();
    }
    h
}

fn auth_can(h: &Host, uid: u32, args: &[&str]) -> Out {
    let mut all = vec!["auth", "can"];
    all.extend_from_slice(args);
    h.daemon.ctl(uid, &all)
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

root_test!(a_member_asks_about_itself, || {
    on_each_store("a_member_asks_about_itself", |h| {
        assert_answer(
        &auth_can(h, h.deployer.uid, &["deployment.create", "--org", "acme"]),
        true,
        "dep@example.com is deployer in acme (invited by admin@example.com), and deployment.create needs the deployer role or above",
    );
        assert_answer(
        &auth_can(h, h.deployer.uid, &["organization.user.invite", "--org", "acme"]),
        false,
        "dep@example.com is deployer in acme (invited by admin@example.com), and organization.user.invite needs the admin role",
    );
        // The only organization is the current one; naming oneself is asking about oneself.
        assert_answer(
        &auth_can(h, h.viewer.uid, &["variable.value.read", "--user", "cpt-az-view"]),
        false,
        "view@example.com is viewer in acme (invited by admin@example.com), and variable.value.read needs the deployer role or above",
    );
        assert_answer(
        &auth_can(h, h.viewer.uid, &["project.read", "--email", "VIEW@example.com"]),
        true,
        "view@example.com is viewer in acme (invited by admin@example.com), and project.read needs the viewer role or above",
    );
        assert_answer(
            &auth_can(h, h.bystander.uid, &["project.read", "--org", "acme"]),
            false,
            &format!(
                "uid {} (cpt-az-by): it is not bound to an account",
                h.bystander.uid
            ),
        );
        assert_answer(
        &auth_can(h, ROOT, &["organization.audit.read", "--org", "acme"]),
        true,
        "uid 0 (root) is a superuser, with admin power in every organization, and organization.audit.read needs the admin role",
    );
        // JSON for scripts: the decision object, and the same exit code.
        let out = auth_can(h, h.viewer.uid, &["deployment.create", "--output", "json"]);
        assert_eq!(out.code, 4, "{out:#?}");
        let decision: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(
            decision,
            json!({
                "allowed": false, "permission": "deployment.create", "org": "acme",
                "uid": h.viewer.uid, "user": "cpt-az-view", "email": "view@example.com",
                "role": "viewer", "reason": "role_too_low",
                "message": "view@example.com is viewer in acme (invited by admin@example.com), and deployment.create needs the deployer role or above",
            })
        );
        // Removal is immediate: the next answer is no.
        h.daemon
            .ctl(h.admin.uid, &["user", "remove", "dep@example.com"])
            .assert_success();
        assert_answer(
            &auth_can(h, h.deployer.uid, &["deployment.create", "--org", "acme"]),
            false,
            "dep@example.com is not a member of acme",
        );
    });
});

root_test!(
    nobody_but_services_and_superusers_learns_what_others_may_do,
    || {
        on_each_store(
            "nobody_but_services_and_superusers_learns_what_others_may_do",
            |h| {
                let refused =
            "asking what another user may do is for superusers and the daemon's service group";
                let hint = "ask about yourself (without --user or --email), or have a superuser add your user to the daemon's --service-group";
                // An admin of acme, about a member of acme; anyone about anyone, existing or not: the
                // same refusal, which says nothing about whether the user or the address exists.
                for (uid, args) in [
                    (
                        h.admin.uid,
                        vec!["deployment.create", "--user", "cpt-az-dep"],
                    ),
                    (
                        h.viewer.uid,
                        vec!["project.read", "--email", "dep@example.com"],
                    ),
                    (
                        h.viewer.uid,
                        vec!["project.read", "--email", "ghost@example.com"],
                    ),
                    (
                        h.bystander.uid,
                        vec!["project.read", "--user", "cpt-no-such-user"],
                    ),
                    (h.bystander.uid, vec!["project.read", "--user", "root"]),
                ] {
                    auth_can(h, uid, &args).assert_err_hint(4, refused, hint);
                }
                // On the wire, by uid too.
                let mut conn =
                    compartment_e2e::RawConn::connect_as(&h.daemon.socket(), h.viewer.uid);
                conn.send_line(&format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"authz.check","params":{{"permission":"project.read","uid":{}}}}}"#,
        h.deployer.uid
    ));
                let reply: Value = serde_json::from_str(&conn.read_line()).unwrap();
                assert_eq!(reply["error"]["data"]["kind"], "forbidden", "{reply}");
            },
        );
    }
);

root_test!(a_service_asks_about_anyone, || {
    on_each_store("a_service_asks_about_anyone", |h| {
        assert_answer(
        &auth_can(h, h.service.uid, &["deployment.create", "--user", "cpt-az-dep", "--org", "acme"]),
        true,
        "dep@example.com is deployer in acme (invited by admin@example.com), and deployment.create needs the deployer role or above",
    );
        assert_answer(
        &auth_can(h, h.service.uid, &["variable.value.read", "--email", "view@example.com"]),
        false,
        "view@example.com is viewer in acme (invited by admin@example.com), and variable.value.read needs the deployer role or above",
    );
        assert_answer(
            &auth_can(
                h,
                h.service.uid,
                &["project.read", "--user", "cpt-az-by", "--org", "acme"],
            ),
            false,
            &format!(
                "uid {} (cpt-az-by): it is not bound to an account",
                h.bystander.uid
            ),
        );
        assert_answer(
            &auth_can(
                h,
                h.service.uid,
                &[
                    "project.read",
                    "--user",
                    "cpt-no-such-user",
                    "--org",
                    "acme",
                ],
            ),
            false,
            "there is no Unix user \"cpt-no-such-user\"",
        );
        assert_answer(
            &auth_can(
                h,
                h.service.uid,
                &[
                    "project.read",
                    "--email",
                    "ghost@example.com",
                    "--org",
                    "acme",
                ],
            ),
            false,
            "ghost@example.com has no activated account",
        );
        // The batch form, as a service sends it: one answer per check, in order.
        let mut conn = compartment_e2e::RawConn::connect_as(&h.daemon.socket(), h.service.uid);
        conn.send_line(
        &json!({"jsonrpc": "2.0", "id": 7, "method": "authz.check", "params": {"checks": [
            {"permission": "deployment.create", "org": "acme", "uid": h.deployer.uid},
            {"permission": "deployment.create", "org": "acme", "uid": h.viewer.uid},
            {"permission": "organization.user.remove", "org": "acme", "email": "admin@example.com"},
            {"permission": "project.read", "org": "beta", "uid": h.admin.uid},
        ]}})
        .to_string(),
    );
        let reply: Value = serde_json::from_str(&conn.read_line()).unwrap();
        let answers: Vec<(bool, &str)> = reply["result"]["decisions"]
            .as_array()
            .unwrap_or_else(|| panic!("{reply}"))
            .iter()
            .map(|d| {
                (
                    d["allowed"].as_bool().unwrap(),
                    d["reason"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            answers,
            [
                (true, "role"),
                (false, "role_too_low"),
                (true, "role"),
                (false, "not_member")
            ]
        );
        // The library's calls, as root (a superuser may ask about anyone).
        let check = |permission, uid| Check {
            permission,
            org: Some("acme".into()),
            uid: Some(uid),
            user: None,
            email: None,
        };
        let mut client = h.daemon.client();
        let decision = client
            .check(check(Permission::VariableValueRead, h.deployer.uid))
            .unwrap();
        assert_eq!(
            (decision.allowed, decision.role),
            (true, Some(Role::Deployer))
        );
        let decisions = client
            .check_many(vec![
                check(Permission::OrganizationUserRemove, h.admin.uid),
                check(Permission::OrganizationMemberList, h.viewer.uid),
            ])
            .unwrap();
        let reasons: Vec<Reason> = decisions.iter().map(|d| d.reason).collect();
        assert_eq!(reasons, [Reason::Role, Reason::RoleTooLow]);
        // A member of the group is not a superuser for anything else.
        h.daemon
            .ctl(h.service.uid, &["user", "list", "--org", "acme"])
            .assert_err(
                4,
                &format!("uid {} is not bound to an account", h.service.uid),
            );
    });
});

root_test!(roles_and_whoami_show_their_permissions, || {
    on_each_store("roles_and_whoami_show_their_permissions", |h| {
        h.daemon.ctl(h.viewer.uid, &["role", "show", "deployer"]).assert_ok(
        "deployer: Deploy and manage projects and services; cannot manage users, SSO, or organization settings\n\
         \n\
         PERMISSION                  ALLOWS\n\
         organization.read           see the organization\n\
         project.read                see its projects\n\
         deployment.read             see its deployments\n\
         organization.member.list    list the members (user list)\n\
         organization.settings.read  read the organization's settings\n\
         variable.metadata.read      read variables, sensitive values masked\n\
         variable.value.read         read sensitive variable values\n\
         deployment.create           deploy\n\
         project.manage              create, change and delete projects\n\
         service.manage              create, change and delete services\n\
         variable.write              set and delete variables\n\
         organization.role.grant     grant roles up to one's own (role grant)\n",
    );
        let out = h.daemon.ctl(h.viewer.uid, &["whoami"]);
        out.assert_success();
        assert_eq!(
            out.stdout_lines().last().copied(),
            Some("permissions in acme: organization.read, project.read, deployment.read"),
            "{out:#?}"
        );
        let out = h
            .daemon
            .ctl(h.viewer.uid, &["role", "list", "--output", "json"]);
        let list: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(
            list["roles"][3],
            json!({"name": "viewer", "description": "Read-only access with a narrower scope than readonly",
               "permissions": ["organization.read", "project.read", "deployment.read"]})
        );
    });
});

#[test]
fn a_permission_that_does_not_exist_is_a_usage_error() {
    let daemon = Daemon::in_process_default();
    let out = daemon.ctl(ROOT, &["auth", "can", "deployment.destroy"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr.contains(
            "\"deployment.destroy\" is not a permission: compartment role show admin lists them all"
        ),
        "{out:#?}"
    );
}

#[test]
fn a_service_group_that_does_not_exist_stops_the_daemon_at_start() {
    let daemon = Daemon::start_default();
    let out = daemon
        .run_second_daemon_with(&["--service-group", "cpt-no-such-group"])
        .expect("the daemon exits");
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains(
            "--service-group cpt-no-such-group: there is no such group (getent group cpt-no-such-group)"
        ),
        "{out:#?}"
    );
}

/// The authority guide's (docs/authority.md) block of `lang` (```lang … ```) that mentions `needle`.
fn readme_block(lang: &str, needle: &str) -> String {
    let readme = include_str!("../../docs/authority.md");
    let fence = format!("```{lang}\n");
    readme
        .split(fence.as_str())
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default())
        .find(|block| block.contains(needle))
        .unwrap_or_else(|| panic!("no {lang} block with {needle} in docs/authority.md"))
        .to_owned()
}

root_test!(the_authority_guides_socat_and_python_examples_work, || {
    let h = host(DaemonOptions::new());
    let socket = h.daemon.socket();
    let socket = socket.to_str().unwrap();
    // Python's standard library, as docs/authority.md shows it, run as the service.
    let python = format!(
        "{}\nprint(can('deployment.create', 'acme', {}, path='{socket}'))\n\
         print(can('organization.user.invite', 'acme', {}, path='{socket}'))\n",
        readme_block("python", "authz.check"),
        h.deployer.uid,
        h.deployer.uid,
    );
    let script = h.daemon.dir().join("can.py");
    std::fs::write(&script, python).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = std::process::Command::new("python3")
        .arg(&script)
        .uid(h.service.uid)
        .gid(h.service.gid)
        .output()
        .expect("run python3");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "(True, 'dep@example.com is deployer in acme (invited by admin@example.com), and deployment.create needs the deployer role or above')\n\
         (False, 'dep@example.com is deployer in acme (invited by admin@example.com), and organization.user.invite needs the admin role')\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The socat line, with this daemon's socket and uid, run as the service.
    let line = readme_block("sh", "authz.check")
        .replace("\\\n", "")
        .replace("/run/compartment/compartmentd.sock", socket)
        .replace("1001", &h.deployer.uid.to_string());
    let out = std::process::Command::new("sh")
        .args(["-c", &line])
        .uid(h.service.uid)
        .gid(h.service.gid)
        .output()
        .expect("run sh");
    let reply: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(reply["result"]["allowed"], true, "{reply}");
});

root_test!(the_process_gid_makes_nobody_a_service, || {
    let h = host(DaemonOptions::new());
    let gid = compartment_e2e::test_group(SERVICES, &[]);
    let ask = json!({"jsonrpc": "2.0", "id": 1, "method": "authz.check",
        "params": {"permission": "project.read", "uid": h.deployer.uid, "org": "acme"}});
    // A bystander running with the service group's gid (setgid, sg): refused.
    let mut conn = RawConn::connect_as_group(&h.daemon.socket(), h.bystander.uid, gid);
    let reply = conn.call(&ask.to_string());
    assert_eq!(reply["error"]["data"]["kind"], "forbidden", "{reply}");
    assert_eq!(
        reply["error"]["message"],
        "asking what another user may do is for superusers and the daemon's service group"
    );
    // A user whose passwd entry's primary group is the service group: a service.
    let moved = TestUser::deletable("cpt-az-primary");
    moved.set_primary_group(SERVICES);
    let mut conn = RawConn::connect_as(&h.daemon.socket(), moved.uid);
    let reply = conn.call(&ask.to_string());
    assert_eq!(reply["result"]["allowed"], true, "{reply}");
    // Moved out (usermod -g), the open connection loses the rights once the daemon's answer
    // about its user is older than the users cache's 5 s (that bound is the cache's own
    // test's, in daemon/src/users.rs); a minute only fails a test that hangs.
    moved.set_primary_group(&moved.name);
    compartment_e2e::poll(std::time::Duration::from_secs(60), || {
        let reply = conn.call(&ask.to_string());
        (reply["error"]["data"]["kind"] == "forbidden").then_some(reply)
    })
    .expect("the open connection kept service rights a minute after usermod -g");
    moved.delete();
});
