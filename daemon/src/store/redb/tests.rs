//! The redb backend's own behaviour: its indexes kept and checked, the records' two
//! formats, snapshots shared between commits, reopening.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::tables::Tables;
use super::{Committing, Store};
use crate::store::change::Tracked;
use crate::store::heads::Announcement;
use crate::store::{
    check_indexes, encode, Backend as _, Changes, MemberRow, MembershipRecord, OrgRecord, Reader,
    Result, StoreError, TokenHash, TokenRecord, TokenState, BINARY_RECORD,
};

/// The admins' index follows every membership change, and the index check notices an
/// index that no longer does.
#[test]
fn the_admins_index_follows_memberships_and_is_checked() {
    use compartmentctl::wire::{MemberStatus, Role};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let member = |role, status| MembershipRecord {
        role,
        uid: Some(1000),
        status,
        invited_by: "uid 0".into(),
        invited_at: 1,
        expires_at: None,
        token_hash: None,
        terms: Default::default(),
    };
    let admin = member(Role::Admin, MemberStatus::Active);
    let invited_admin = member(Role::Admin, MemberStatus::Invited);
    let deployer = member(Role::Deployer, MemberStatus::Active);
    let write = |change: &dyn Fn(&Tables<'_>) -> Result<()>| {
        let txn = store.begin_write().unwrap();
        change(&txn.tables()).unwrap();
        txn.commit(&Committing::durably, Announcement::default())
            .unwrap();
    };
    let admins = |org| {
        store
            .read()
            .unwrap()
            .active_admins(org, usize::MAX)
            .unwrap()
    };
    write(&|t| {
        t.put_org(
            "acme",
            &OrgRecord {
                created_at: 1,
                created_by_uid: 0,
                groups: Default::default(),
            },
        )?;
        t.put_org(
            "beta",
            &OrgRecord {
                created_at: 1,
                created_by_uid: 0,
                groups: Default::default(),
            },
        )?;
        t.put_membership("acme", "a@x", &invited_admin, None)?;
        t.put_membership("acme", "b@x", &admin, None)?;
        t.put_membership("beta", "c@x", &admin, None)
    });
    assert_eq!((admins("acme"), admins("beta")), (1, 1));
    write(&|t| t.put_membership("acme", "a@x", &admin, Some(&invited_admin)));
    assert_eq!(admins("acme"), 2);
    assert_eq!(store.read().unwrap().active_admins("acme", 1).unwrap(), 1);
    write(&|t| t.put_membership("acme", "b@x", &deployer, Some(&admin)));
    write(&|t| t.delete_membership("beta", "c@x", &admin));
    assert_eq!((admins("acme"), admins("beta")), (1, 0));
    assert!(check_indexes(&store.read().unwrap()).unwrap().is_empty());
    write(&|t| {
        t.admins_table()?.remove(("acme", "a@x"))?;
        Ok(())
    });
    assert_eq!(
        check_indexes(&store.read().unwrap()).unwrap(),
        ["org_admins holds 0 active admins of acme, memberships 1"]
    );
}

/// The feed's index by organization and the spent tokens' index are checked: an entry
/// missing from the one, or naming a token still pending in the other, is reported.
#[test]
fn the_feed_and_spent_token_indexes_are_checked() {
    use compartmentctl::wire::{MemberStatus, Role};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let write = |change: &dyn Fn(&Tracked<'_, Tables<'_>>) -> Result<()>| {
        let txn = store.begin_write().unwrap();
        let tables = txn.tables();
        change(&Tracked::new(&tables, 1)).unwrap();
        let announced = tables.last_event();
        drop(tables);
        txn.commit(&Committing::durably, announced).unwrap();
    };
    let member = MembershipRecord {
        role: Role::Viewer,
        uid: None,
        status: MemberStatus::Invited,
        invited_by: "uid 0".into(),
        invited_at: 1,
        expires_at: Some(10),
        token_hash: None,
        terms: Default::default(),
    };
    let token = TokenRecord {
        org: "acme".into(),
        email: "a@x".into(),
        expires_at: 10,
        state: TokenState::Used,
        redeemer: None,
        issued_by_superuser: true,
    };
    write(&|t| {
        t.put_org(
            "acme",
            &OrgRecord {
                created_at: 1,
                created_by_uid: 0,
                groups: Default::default(),
            },
        )?;
        t.put_membership("acme", "a@x", &member, None)?;
        t.put_token(&TokenHash([7; 32]), &token)
    });
    assert!(check_indexes(&store.read().unwrap()).unwrap().is_empty());
    write(&|t| {
        t.rows().org_events_table()?.remove(("acme", 1))?;
        t.rows().tokens_table()?.insert(
            &[7; 32],
            encode(
                "tokens",
                &TokenRecord {
                    state: TokenState::Pending,
                    ..token.clone()
                },
            )?
            .as_slice(),
        )?;
        Ok(())
    });
    assert_eq!(
        check_indexes(&store.read().unwrap()).unwrap(),
        [
            "org_events lacks (acme, 1)",
            "spent_tokens names a token that is not spent (07070707…)"
        ]
    );
}

/// A membership schema 3 stored as JSON reads, through both the record and the list's
/// row, and takes the binary form when it is next written.
#[test]
fn a_json_record_reads_and_is_rewritten_binary() {
    use compartmentctl::wire::{MemberStatus, Role};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let json = br#"{"role":"deployer","uid":7,"status":"active","invited_by":"uid 0","invited_at":1,"expires_at":null,"token_hash":null}"#;
    let txn = store.begin_write().unwrap();
    txn.tables()
        .memberships_table()
        .unwrap()
        .insert(("acme", "a@x"), json.as_slice())
        .unwrap();
    txn.commit(&Committing::durably, Announcement::default())
        .unwrap();
    let raw = || {
        let txn = store.read().unwrap();
        let table = txn.memberships_table().unwrap();
        let value = table.get(("acme", "a@x")).unwrap().unwrap();
        value.value().to_vec()
    };
    let old = store
        .read()
        .unwrap()
        .membership("acme", "a@x")
        .unwrap()
        .unwrap();
    assert_eq!(
        (old.role, old.uid, old.status),
        (Role::Deployer, Some(7), MemberStatus::Active)
    );
    let rows = store
        .read()
        .unwrap()
        .members_after("acme", None, 10)
        .unwrap();
    assert_eq!(rows, [("a@x".to_owned(), MemberRow::from(&old))]);
    assert_eq!(raw()[0], b'{');
    let mut admin = old.clone();
    admin.role = Role::Admin;
    let txn = store.begin_write().unwrap();
    txn.tables()
        .put_membership("acme", "a@x", &admin, Some(&old))
        .unwrap();
    txn.commit(&Committing::durably, Announcement::default())
        .unwrap();
    assert_eq!(raw()[0], BINARY_RECORD);
    assert_eq!(
        store.read().unwrap().membership("acme", "a@x").unwrap(),
        Some(admin)
    );
}

fn add_org(store: &Store, name: &str) {
    let txn = store.begin_write().unwrap();
    let tables = txn.tables();
    let org = OrgRecord {
        created_at: 1,
        created_by_uid: 0,
        groups: Default::default(),
    };
    Tracked::new(&tables, 1).put_org(name, &org).unwrap();
    let announced = tables.last_event();
    drop(tables);
    txn.commit(&Committing::durably, announced).unwrap();
}

/// Reads share one snapshot until a commit; the first read after it sees the commit
/// in a snapshot of its own, while one taken before keeps its view.
#[test]
fn reads_share_a_snapshot_until_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let before = store.read().unwrap();
    assert!(store.read().unwrap().shares(&before));
    add_org(&store, "acme");
    let after = store.read().unwrap();
    assert!(!after.shares(&before));
    assert!(after.org("acme").unwrap().is_some());
    assert!(before.org("acme").unwrap().is_none());
    assert!(store.read().unwrap().shares(&after));
    // A write transaction begun, the store lets go of the snapshot it shared (so that it
    // holds back none of the pages the commit frees); while it is open, each read has a
    // snapshot of its own; once it ends, committed or not, reads share one again.
    assert_eq!(after.holders(), 2);
    let write = store.begin_write().unwrap();
    assert_eq!(after.holders(), 1);
    let during = store.read().unwrap();
    assert!(!during.shares(&after));
    assert!(!store.read().unwrap().shares(&during));
    write.abort().unwrap();
    let again = store.read().unwrap();
    assert!(store.read().unwrap().shares(&again));
    assert!(again.org("acme").unwrap().is_some());
}

/// Under concurrent reads, every read begun after a commit returned sees it: a read
/// that began its transaction before the commit never has its snapshot shared after.
#[test]
fn a_read_begun_after_a_commit_sees_it() {
    use std::sync::atomic::AtomicUsize;
    const COMMITS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let committed = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| loop {
                let n = committed.load(Ordering::Acquire);
                let snapshot = store.read().unwrap();
                if n > 0 {
                    let name = format!("org-{n}");
                    assert!(
                        snapshot.org(&name).unwrap().is_some(),
                        "a read begun after {name} was committed does not see it"
                    );
                }
                if n == COMMITS {
                    break;
                }
            });
        }
        for n in 1..=COMMITS {
            add_org(&store, &format!("org-{n}"));
            committed.store(n, Ordering::Release);
        }
    });
}

/// While the writer reopens a broken handle and waits for the old one's last reader,
/// other readers are answered at once (`Reopening`), not held on the handle's lock: a read
/// is answered while the writer still waits, and the writer, once the old handle's reader
/// lets go, reopens the file. (Were reads held, the first would be answered only when the
/// writer gave up waiting, and the writer would fail.)
#[test]
fn reopening_does_not_block_readers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    // A reader still holding the old handle keeps its file lock until it finishes; the
    // snapshot reads share is let go of by the reopening.
    let lingering = store.handle().unwrap();
    drop(store.read().unwrap());
    store.note_failure(&StoreError::Redb(redb::Error::PreviousIo));
    let writer_store = store.clone();
    let writer = std::thread::spawn(move || writer_store.begin_write().map(drop));
    // Until the writer has taken the handle out, reads still use it.
    let read = loop {
        match store.read() {
            Ok(_) => std::thread::yield_now(),
            other => break other,
        }
    };
    assert!(
        matches!(read, Err(StoreError::Reopening)),
        "{:?}",
        read.err()
    );
    assert!(!writer.is_finished(), "the writer gave up waiting");
    drop(lingering);
    writer.join().unwrap().unwrap();
    store.read().unwrap().org("acme").unwrap();
}
