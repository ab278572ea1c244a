//! Unix groups mapped to a role (`org map-group`), with real users and groups on each
//! store: only a superuser maps; a user of the group acts with its role without an
//! invitation, and `auth can` says where the role comes from; `user list` shows the group
//! and its users; leaving the group ends it within the lookup cache's bound; unmapping
//! ends it at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use compartment_e2e::{each_store, root_test, test_group, Daemon, DaemonOptions, TestUser, ROOT};

const GROUP: &str = "cpt-gr-ops";

root_test!(
    a_mapped_groups_users_act_with_its_role_until_they_leave_it,
    || {
        for options in each_store("a_mapped_groups_users_act_with_its_role_until_they_leave_it") {
            mapped(options);
        }
    }
);

fn mapped(options: DaemonOptions) {
    let admin = TestUser::get("cpt-gr-admin");
    let ops = TestUser::get("cpt-gr-op");
    let gid = test_group(GROUP, &[&ops]);
    let d = Daemon::start(options);
    let acme = d.create_acme();
    d.activate(admin.uid, &acme.url).assert_success();

    d.ctl(admin.uid, &["org", "map-group", "acme", GROUP, "deployer"])
        .assert_err(
            4,
            "mapping Unix groups is for superusers (root or the daemon's own user)",
        );
    d.ctl(
        ROOT,
        &["org", "map-group", "acme", "cpt-gr-nope", "deployer"],
    )
    .assert_err_hint(
        5,
        "there is no Unix group \"cpt-gr-nope\"",
        "name an existing group (getent group NAME shows it)",
    );
    d.ctl(ROOT, &["org", "map-group", "acme", GROUP, "deployer"])
        .assert_ok(&format!(
            "Mapped Unix group {GROUP} (gid {gid}) to deployer in acme.\n"
        ));

    // Its user, bound to no account, acts as a deployer, and is told why.
    let yes = d.ctl(
        ops.uid,
        &["auth", "can", "deployment.create", "--org", "acme"],
    );
    assert_eq!(
        (yes.code, yes.stdout.as_str()),
        (
            0,
            format!(
                "yes\nuid {} (cpt-gr-op) is deployer in acme through Unix group {GROUP} (gid {gid}), and deployment.create needs the deployer role or above\n",
                ops.uid
            )
            .as_str()
        ),
        "{yes:#?}"
    );
    let no = d.ctl(ops.uid, &["auth", "can", "organization.user.invite"]);
    assert_eq!(
        (no.code, no.stdout.as_str()),
        (
            4,
            format!(
                "no\nuid {} (cpt-gr-op) is deployer in acme through Unix group {GROUP} (gid {gid}), and organization.user.invite needs the admin role\n",
                ops.uid
            )
            .as_str()
        ),
        "{no:#?}"
    );
    // `whoami` says where the role comes from.
    let me = d.ctl(ops.uid, &["whoami"]);
    me.assert_success();
    let lines: Vec<String> = me
        .stdout_lines()
        .iter()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines[..4],
        [
            format!(
                "uid {} (cpt-gr-op): no account, acting through Unix groups",
                ops.uid
            ),
            "current organization: acme".to_owned(),
            "ORGANIZATION ROLE STATUS".to_owned(),
            format!("acme deployer active (group {GROUP})"),
        ],
        "{me:#?}"
    );
    // `user list` shows the group and its users after the members.
    let list = d.ctl(ops.uid, &["user", "list"]);
    list.assert_success();
    assert!(
        list.stdout
            .contains("\nBy Unix group (org map-group):\nGROUP"),
        "{list:#?}"
    );
    let row = list
        .stdout_lines()
        .into_iter()
        .find(|line| line.starts_with(GROUP))
        .unwrap_or_else(|| panic!("no row for the group: {list:#?}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(row, format!("{GROUP} {gid} deployer cpt-gr-op"));
    // The admin of acme cannot unmap it either.
    d.ctl(admin.uid, &["org", "unmap-group", "acme", GROUP])
        .assert_err(
            4,
            "unmapping Unix groups is for superusers (root or the daemon's own user)",
        );

    // Out of the group, the user loses what it gave within the lookup cache's 5 seconds.
    let out = Command::new("gpasswd")
        .args(["--delete", &ops.name, GROUP])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_secs(6));
    let no = d.ctl(
        ops.uid,
        &["auth", "can", "deployment.create", "--org", "acme"],
    );
    assert_eq!(no.code, 4, "{no:#?}");
    assert_eq!(
        no.stdout,
        format!(
            "no\nuid {} (cpt-gr-op): it is not bound to an account\n",
            ops.uid
        )
    );
    // Back in it, then unmapped: it ends at once.
    test_group(GROUP, &[&ops]);
    std::thread::sleep(Duration::from_secs(6));
    d.ctl(
        ops.uid,
        &["auth", "can", "deployment.create", "--org", "acme"],
    )
    .assert_success();
    d.ctl(ROOT, &["org", "unmap-group", "acme", GROUP])
        .assert_ok(&format!(
            "Unmapped Unix group {GROUP} (gid {gid}) from acme (was deployer).\n"
        ));
    let no = d.ctl(
        ops.uid,
        &["auth", "can", "deployment.create", "--org", "acme"],
    );
    assert_eq!(no.code, 4, "{no:#?}");
    // Both are in the audit log.
    let audit = d.ctl(ROOT, &["audit", "list", "--event", "organization.group."]);
    audit.assert_success();
    assert_eq!(
        audit
            .stdout_lines()
            .iter()
            .filter(|line| line.contains("organization.group."))
            .count(),
        2,
        "{audit:#?}"
    );
}
