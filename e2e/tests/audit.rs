//! The audit log end to end, as real Unix users: who reads which records, and a checkpoint
//! kept elsewhere that `audit verify` holds the log to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use compartment_e2e::{root_test, Daemon, TestUser, ROOT};

root_test!(
    an_organizations_admins_read_its_records_and_only_a_superuser_verifies,
    || {
        let d = Daemon::start_default();
        let admin = TestUser::get("cpt-a-admin");
        let other = TestUser::get("cpt-a-other");
        let acme = d.create_acme();
        d.activate(admin.uid, &acme.url).assert_success();
        let out = d.ctl(
            ROOT,
            &["org", "create", "beta", "--admin", "b@beta.example"],
        );
        out.assert_success();
        let beta_url = out.stdout_lines()[2]
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned();
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
        let out = d.ctl(admin.uid, &["--org", "beta", "audit", "list"]);
        assert_eq!(out.code, 5, "{out:#?}");
        // beta's admin is not acme's: refused, and shown nothing.
        let out = d.ctl(other.uid, &["--org", "acme", "audit", "list"]);
        assert_eq!(out.code, 5, "{out:#?}");
        assert_eq!(out.stdout, "");

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
        let out = d.ctl(ROOT, &["audit", "list", "--output", "jsonl"]);
        let records: Vec<serde_json::Value> = out
            .stdout_lines()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(records.len(), 6);
        assert_eq!(records[0]["seq"], 1);
        assert_eq!(records[0]["event"], "organization.create");
        assert_eq!(records[0]["hash"].as_str().unwrap().len(), 64);

        // Only a superuser verifies or signs.
        d.ctl(admin.uid, &["audit", "verify"]).assert_err(
            4,
            "verifying the audit log is for superusers (root or the daemon's own user)",
        );
        d.ctl(admin.uid, &["audit", "checkpoint"]).assert_err(
            4,
            "signing a checkpoint of the audit log is for superusers (root or the daemon's own user)",
        );

        // A checkpoint kept elsewhere: the log agrees with it, and grows past it.
        let out = d.ctl(ROOT, &["audit", "checkpoint"]);
        out.assert_success();
        let note = out.stdout.clone();
        assert!(
            note.starts_with("your-compartment-host/compartment-audit\n6\n"),
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
        assert_eq!(out.stdout_lines()[0], "Checked records 1 to 7, against:");
        assert_eq!(
            out.stdout_lines().last().copied(),
            Some("The audit log is whole.")
        );

        // A checkpoint changed by hand is not trusted.
        let forged = d.dir().join("forged.checkpoint");
        std::fs::write(&forged, note.replacen("\n6\n", "\n9\n", 1)).unwrap();
        d.ctl(
            ROOT,
            &["audit", "verify", "--checkpoint", forged.to_str().unwrap()],
        )
        .assert_err(
            2,
            "the checkpoint cannot be trusted: its signature does not verify: the note was changed",
        );
    }
);
