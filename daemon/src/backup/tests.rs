//! A store backed up and restored, on each backend into each: the same rows, the same
//! feed; and what a restore refuses leaves the store as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::Path;

use compartmentctl::wire::{
    AccountStatus, BackupCounts, BackupEnd, BackupHeader, MemberStatus, Role, BACKUP_FORMAT,
    BACKUP_VERSION,
};

use super::send::{all_lines, BACKUP_PAGE};
use super::{restore, Line};
use crate::rules::RuleError;
use crate::store::{
    AccountRecord, Backend, BindingRecord, Changes, Export, MembershipRecord, OrgRecord,
    Provenance, Reader, Store, TokenHash, TokenRecord, TokenState, CURRENT_SCHEMA_VERSION,
};

const T0: u64 = 1_777_636_800_000;

/// A store on one backend, with what keeps it alive.
struct Held {
    store: Store,
    _dir: tempfile::TempDir,
    _postgres: Option<(compartment_pgtest::Postgres, tokio::runtime::Runtime)>,
}

fn on_redb() -> Option<Held> {
    let dir = tempfile::tempdir().unwrap();
    Some(Held {
        store: Store::open(dir.path()).unwrap(),
        _dir: dir,
        _postgres: None,
    })
}

fn on_postgres() -> Option<Held> {
    let server = crate::store::postgres::schema::tests::server("backups on PostgreSQL")?;
    let runtime = crate::store::postgres::schema::tests::store_runtime();
    let store = crate::store::postgres::schema::tests::open_store(&server, &runtime);
    Some(Held {
        store,
        _dir: tempfile::tempdir().unwrap(),
        _postgres: Some((server, runtime)),
    })
}

/// Each backend in turn, redb's then PostgreSQL's, saying which on the test's output.
fn each() -> impl Iterator<Item = (&'static str, fn() -> Option<Held>)> {
    [
        ("redb", on_redb as fn() -> Option<Held>),
        ("PostgreSQL", on_postgres),
    ]
    .into_iter()
}

fn write(store: &Store, change: impl FnOnce(&crate::store::Tracked<'_, '_>)) {
    crate::writer::apply(store, T0, |txn, _| {
        change(txn);
        Ok::<_, RuleError>(())
    })
    .unwrap();
}

/// Every kind of row, more memberships than a page holds, a removal and a role change in
/// the feed, a binding filed under two organizations' feeds.
fn fill(store: &Store) {
    write(store, |txn| {
        for org in ["acme", "beta"] {
            txn.put_org(
                org,
                &OrgRecord {
                    created_at: T0,
                    created_by_uid: 0,
                    groups: Default::default(),
                },
            )
            .unwrap();
        }
        for n in 0..BACKUP_PAGE + 5 {
            let email = format!("m{n:05}@example.com");
            txn.put_account(
                &email,
                &AccountRecord {
                    status: AccountStatus::Pending,
                    uid: None,
                    created_at: T0 + n as u64,
                    activated_at: None,
                },
            )
            .unwrap();
            let key = TokenHash([(n % 251) as u8; 32].map(|b| b ^ (n / 251) as u8));
            txn.put_membership(
                "acme",
                &email,
                &MembershipRecord {
                    role: Role::Viewer,
                    uid: None,
                    status: MemberStatus::Invited,
                    invited_by: "uid 0".into(),
                    invited_at: T0,
                    expires_at: Some(T0 + 1000 + n as u64),
                    token_hash: Some(key),
                    terms: Default::default(),
                },
                None,
            )
            .unwrap();
            txn.put_token(
                &key,
                &TokenRecord {
                    org: "acme".into(),
                    email: email.clone(),
                    expires_at: T0 + 1000 + n as u64,
                    state: TokenState::Pending,
                    redeemer: None,
                    issued_by_superuser: true,
                },
            )
            .unwrap();
        }
        let admin = MembershipRecord {
            role: Role::Admin,
            uid: Some(1001),
            status: MemberStatus::Active,
            invited_by: "uid 0".into(),
            invited_at: T0,
            expires_at: None,
            token_hash: None,
            terms: Default::default(),
        };
        txn.put_account(
            "admin@example.com",
            &AccountRecord {
                status: AccountStatus::Active,
                uid: Some(1001),
                created_at: T0,
                activated_at: Some(T0),
            },
        )
        .unwrap();
        for org in ["acme", "beta"] {
            txn.put_membership(org, "admin@example.com", &admin, None)
                .unwrap();
        }
        txn.put_binding(
            1001,
            &BindingRecord {
                email: "admin@example.com".into(),
                user_name: Some("alice".into()),
                bound_at: T0,
                provenance: Provenance::Org("acme".into()),
            },
        )
        .unwrap();
        txn.set_current_org(1001, "beta").unwrap();
        crate::rules::audit::Entry::new(crate::rules::audit::daemon(), "organization.create", T0)
            .organization("acme")
            .detail("a \"quoted\" détail\n")
            .append(txn)
            .unwrap();
    });
    write(store, |txn| {
        let old = txn
            .membership("acme", "m00000@example.com")
            .unwrap()
            .unwrap();
        txn.delete_membership("acme", "m00000@example.com", &old)
            .unwrap();
        let old = txn
            .membership("acme", "m00001@example.com")
            .unwrap()
            .unwrap();
        let new = MembershipRecord {
            role: Role::Deployer,
            ..old.clone()
        };
        txn.put_membership("acme", "m00001@example.com", &new, Some(&old))
            .unwrap();
    });
}

/// `store` as a backup file in `dir`.
fn back_up(store: &Store, dir: &Path) -> std::path::PathBuf {
    let snapshot = store.read().unwrap();
    let lines = all_lines(&snapshot).unwrap();
    let header = BackupHeader {
        format: BACKUP_FORMAT.into(),
        version: BACKUP_VERSION,
        schema: CURRENT_SCHEMA_VERSION,
        taken_at: "2026-05-01T12:00:00Z".into(),
        store: snapshot.engine().into(),
        last_event: snapshot.last_event_seq().unwrap(),
        counts: snapshot.counts().unwrap(),
    };
    let mut counted = BackupCounts::default();
    lines.iter().for_each(|line| line.count(&mut counted));
    assert_eq!(counted, header.counts);
    let path = dir.join(format!("{}.jsonl", snapshot.engine()));
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "{}", serde_json::to_string(&header).unwrap()).unwrap();
    for line in &lines {
        writeln!(file, "{}", serde_json::to_string(line).unwrap()).unwrap();
    }
    writeln!(
        file,
        "{}",
        serde_json::to_string(&BackupEnd::of(counted)).unwrap()
    )
    .unwrap();
    path
}

fn lines_of(store: &Store) -> Vec<Line> {
    all_lines(&store.read().unwrap()).unwrap()
}

#[test]
fn a_backup_restored_into_either_backend_is_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    for (from_name, from) in each() {
        let Some(source) = from() else { continue };
        fill(&source.store);
        let file = back_up(&source.store, dir.path());
        let expected = lines_of(&source.store);
        assert!(expected.len() > 3 * BACKUP_PAGE, "{}", expected.len());
        for (into_name, into) in each() {
            eprintln!("-- from {from_name} into {into_name}");
            let Some(target) = into() else { continue };
            let restored = restore(&target.store, &file, false).unwrap();
            assert_eq!(
                restored.counts,
                source.store.read().unwrap().counts().unwrap()
            );
            assert_eq!(lines_of(&target.store), expected);
            let snapshot = target.store.read().unwrap();
            assert_eq!(
                snapshot.last_event_seq().unwrap(),
                source.store.read().unwrap().last_event_seq().unwrap()
            );
            // The indexes were rebuilt: the pending ones by expiry, the admins.
            assert_eq!(snapshot.active_admins("beta", 5).unwrap(), 1);
            assert_eq!(
                snapshot.due_memberships(T0 + 1002).unwrap(),
                [
                    ("acme".to_owned(), "m00001@example.com".to_owned()),
                    ("acme".to_owned(), "m00002@example.com".to_owned())
                ]
            );
            // The feed goes on after the restored events, with the next number.
            write(&target.store, |txn| {
                let old = txn
                    .membership("acme", "m00002@example.com")
                    .unwrap()
                    .unwrap();
                txn.delete_membership("acme", "m00002@example.com", &old)
                    .unwrap();
            });
            let last = target.store.read().unwrap().last_event_seq().unwrap();
            assert_eq!(last, snapshot.last_event_seq().unwrap() + 1);
            drop(snapshot);
            // Not again into a store that holds something; --replace makes it the backup.
            let err = restore(&target.store, &file, false)
                .unwrap_err()
                .to_string();
            assert!(err.contains("is not empty: it holds"), "{err}");
            restore(&target.store, &file, true).unwrap();
            assert_eq!(lines_of(&target.store), expected);
        }
    }
}

#[test]
fn a_bad_or_cut_backup_leaves_the_store_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    for (name, on) in each() {
        eprintln!("-- on {name}");
        let Some(held) = on() else { continue };
        fill(&held.store);
        let file = back_up(&held.store, dir.path());
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let before = lines_of(&held.store);
        let cut = dir.path().join("cut.jsonl");
        std::fs::write(&cut, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
        let err = restore(&held.store, &cut, true).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{} ends after line {} without its end line: the backup was cut short; nothing was restored",
                cut.display(),
                lines.len() - 1
            )
        );
        let mut bad: Vec<String> = lines.iter().map(|line| (*line).to_owned()).collect();
        bad[7] = bad[7].replacen("\"email\"", "\"e-mail\"", 1);
        let bad_file = dir.path().join("bad.jsonl");
        std::fs::write(&bad_file, bad.join("\n") + "\n").unwrap();
        let err = restore(&held.store, &bad_file, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("{} line 8: ", bad_file.display())),
            "{err}"
        );
        // A membership twice, the counts made to agree: refused when its batch is written.
        let mut twice: Vec<serde_json::Value> = lines
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let membership = twice
            .iter()
            .position(|line| line["kind"] == "membership")
            .unwrap();
        twice.insert(membership + 1, twice[membership].clone());
        let last = twice.len() - 1;
        for (index, counts) in [(0, "counts"), (last, "counts")] {
            let count = twice[index][counts]["membership"].as_u64().unwrap();
            twice[index][counts]["membership"] = (count + 1).into();
        }
        let twice_file = dir.path().join("twice.jsonl");
        let text: Vec<String> = twice.iter().map(|line| line.to_string()).collect();
        std::fs::write(&twice_file, text.join("\n") + "\n").unwrap();
        let err = restore(&held.store, &twice_file, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("{} lines ", twice_file.display()))
                && err.ends_with("; nothing was restored"),
            "{err}"
        );
        assert_eq!(lines_of(&held.store), before);
    }
}
