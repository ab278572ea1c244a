//! Two daemons on one database, as two handles on it: what one commits, the other's next
//! read sees; the feed's numbers stay dense and in commit order when both append at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use compartmentctl::wire::{AccountStatus, AuditActor, EventKind, MemberStatus, Role};

use super::schema::tests::{connect, server, store_runtime as runtime};
use super::{Session, Store};
use crate::store::change::Tracked;
use crate::store::{
    AccountRecord, Batch, BindingRecord, Block, Changes, Deadline, Elevation, EventNote,
    EventRecord, Export, GroupMap, Import, MemberRow, MembershipRecord, Millis, OrgRecord,
    Provenance, Reader, Rows, StoreError, Terms,
};

const T0: Millis = 1_777_636_800_000;

/// Asks `check` until it holds; false if it never does within a minute, which only a test
/// that hangs takes.
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < until {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}

/// Two handles on the database of `server`, as two daemons would open it.
fn two_daemons(
    runtime: &tokio::runtime::Runtime,
    server: &compartment_pgtest::Postgres,
) -> (Store, Store) {
    let open = || {
        runtime
            .block_on(Store::open(
                &crate::store::postgres::Target::parse(&server.url("postgres")).unwrap(),
                runtime.handle().clone(),
            ))
            .unwrap()
    };
    (open(), open())
}

/// Adds `email` to `org` (made if missing) as an active member of `role`, in `session`.
fn add_member(session: &Session, org: &str, email: &str, role: Role) {
    let txn = Tracked::new(session, T0);
    if txn.org(org).unwrap().is_none() {
        let record = OrgRecord {
            created_at: T0,
            created_by_uid: 0,
            groups: Default::default(),
        };
        txn.put_org(org, &record).unwrap();
    }
    let account = AccountRecord {
        status: AccountStatus::Active,
        uid: Some(1000),
        created_at: T0,
        activated_at: Some(T0),
    };
    txn.put_account(email, &account).unwrap();
    let member = MembershipRecord {
        role,
        uid: Some(1000),
        status: MemberStatus::Active,
        invited_by: "uid 0".into(),
        invited_at: T0,
        expires_at: None,
        token_hash: None,
        terms: Default::default(),
    };
    txn.put_membership(org, email, &member, None).unwrap();
}

/// A member added through one daemon is there at the other's next read; removed through
/// it, gone at the other's next read: removal holds across daemons at once.
#[test]
fn what_one_daemon_commits_the_others_next_read_sees() {
    let Some(server) = server("what_one_daemon_commits_the_others_next_read_sees") else {
        return;
    };
    let runtime = runtime();
    let (a, b) = two_daemons(&runtime, &server);
    let write = a.begin_write().unwrap();
    add_member(&write, "acme", "admin@example.com", Role::Admin);
    add_member(&write, "acme", "dev@example.com", Role::Deployer);
    // Not yet committed: the other daemon sees nothing of it.
    assert!(b.read().unwrap().org("acme").unwrap().is_none());
    write.commit().unwrap();
    let member = b
        .read()
        .unwrap()
        .membership("acme", "dev@example.com")
        .unwrap();
    assert_eq!(member.map(|m| m.role), Some(Role::Deployer));

    let write = a.begin_write().unwrap();
    let old = write
        .membership("acme", "dev@example.com")
        .unwrap()
        .unwrap();
    Tracked::new(&write, T0)
        .delete_membership("acme", "dev@example.com", &old)
        .unwrap();
    write.commit().unwrap();
    let snapshot = b.read().unwrap();
    assert_eq!(
        snapshot.membership("acme", "dev@example.com").unwrap(),
        None
    );
    // The feed on the other daemon tells both changes, in order.
    let kinds: Vec<_> = snapshot
        .org_events_after("acme", 0, 10)
        .unwrap()
        .into_iter()
        .map(|(seq, event)| (seq, event.email, event.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "admin@example.com".to_owned(), "member.added"),
            (2, "dev@example.com".to_owned(), "member.added"),
            (3, "dev@example.com".to_owned(), "member.removed"),
        ]
    );
}

/// Both daemons write at once: the second's transaction waits for the first's (seen
/// waiting on a lock in `pg_stat_activity`) before it reads anything, so once the first
/// commits it sees it, is not refused for it, and numbers its events after it. The numbers
/// stay dense and in commit order.
#[test]
fn writes_through_two_daemons_at_once_take_turns_and_number_in_commit_order() {
    let Some(server) =
        server("writes_through_two_daemons_at_once_take_turns_and_number_in_commit_order")
    else {
        return;
    };
    let runtime = runtime();
    let (a, b) = two_daemons(&runtime, &server);
    let setup = a.begin_write().unwrap();
    add_member(&setup, "acme", "admin@example.com", Role::Admin);
    setup.commit().unwrap();

    let first = a.begin_write().unwrap();
    add_member(&first, "acme", "first@example.com", Role::Viewer);
    std::thread::scope(|scope| {
        let second = scope.spawn(|| {
            // Waits here for the first to commit.
            let session = b.begin_write().unwrap();
            // And sees what it committed.
            let seen = session.membership("acme", "first@example.com").unwrap();
            add_member(&session, "acme", "second@example.com", Role::Viewer);
            session.commit().map(|()| seen)
        });
        let waiting = eventually(|| {
            let session = a.read().unwrap();
            let row = session
                .query_opt(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                    &[],
                )
                .unwrap()
                .unwrap();
            row.get::<_, i64>(0) == 1
        });
        assert!(
            waiting,
            "the second daemon's write never waited for the first's"
        );
        first.commit().unwrap();
        let seen = second.join().unwrap().unwrap();
        assert_eq!(seen.map(|member| member.role), Some(Role::Viewer));
    });

    let feed: Vec<_> = a
        .read()
        .unwrap()
        .events_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|(seq, event)| (seq, event.email))
        .collect();
    assert_eq!(
        feed,
        [
            (1, "admin@example.com".to_owned()),
            (2, "first@example.com".to_owned()),
            (3, "second@example.com".to_owned()),
        ]
    );
    assert_eq!(b.read().unwrap().last_event_seq().unwrap(), 3);
}

/// A serialization failure and a deadlock are worth retrying; a constraint is not.
#[test]
fn only_conflicts_are_retried() {
    let Some(server) = server("only_conflicts_are_retried") else {
        return;
    };
    let runtime = runtime();
    let (a, _) = two_daemons(&runtime, &server);
    let session = a.begin_write().unwrap();
    let written = Tracked::new(&session, T0).put_membership(
        "nonesuch",
        "x@example.com",
        &MembershipRecord {
            role: Role::Viewer,
            uid: None,
            status: MemberStatus::Invited,
            invited_by: "uid 0".into(),
            invited_at: T0,
            expires_at: Some(T0),
            token_hash: None,
            terms: Default::default(),
        },
        None,
    );
    // Foreign keys are checked at commit.
    written.unwrap();
    let err = session.commit().unwrap_err();
    assert!(matches!(err, StoreError::Postgres(_)), "{err}");
    assert!(!err.is_retryable(), "{err}");
}

/// PostgreSQL stopped: a read is refused as unreachable, which the client is told as
/// `unavailable` with a hint, not as an internal error; started again, the next read
/// succeeds on a new connection, with nothing lost.
#[test]
fn a_restarted_server_is_unreachable_meanwhile_and_reconnected_after() {
    use compartmentctl::wire::ErrorKind;

    use crate::rules::RuleError;

    let Some(server) = server("a_restarted_server_is_unreachable_meanwhile_and_reconnected_after")
    else {
        return;
    };
    let runtime = runtime();
    let (a, _) = two_daemons(&runtime, &server);
    let write = a.begin_write().unwrap();
    add_member(&write, "acme", "admin@example.com", Role::Admin);
    write.commit().unwrap();
    // A connection in the pool, idle, when the server goes; and the glances' own.
    drop(a.read().unwrap());
    runtime.block_on(a.glance(0, Some("acme"))).unwrap();
    server.stop_server().unwrap();
    let glance = runtime.block_on(a.glance(0, Some("acme")));
    assert!(
        glance.as_ref().is_err_and(StoreError::is_unreachable),
        "{glance:?}"
    );
    let err = match a.read().and_then(|snapshot| snapshot.org("acme")) {
        Ok(found) => panic!("read with the server stopped: {found:?}"),
        Err(err) => err,
    };
    assert!(err.is_unreachable(), "{err}");
    let refusal = RuleError::Store(err);
    assert_eq!(refusal.kind(), ErrorKind::Unavailable);
    assert_eq!(
        refusal.user_message(),
        "the database cannot be reached; try again in a moment"
    );
    assert!(refusal
        .hint()
        .is_some_and(|hint| hint.contains("reconnects by itself")));
    server.start_server().unwrap();
    let read = eventually(|| {
        a.read()
            .and_then(|snapshot| snapshot.org("acme"))
            .is_ok_and(|org| org.is_some())
    });
    assert!(read, "the store did not reconnect once PostgreSQL was back");

    // Connections of the pool ended under it (as a failover or a restart ends them): the
    // next reads do not fail for them, each gets a live one.
    for round in 0..20 {
        let held: Vec<_> = (0..4).map(|_| a.read().unwrap()).collect();
        drop(held);
        let ended: i64 = a
            .read()
            .unwrap()
            .query_opt(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = 'compartmentd' AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap()
            .unwrap()
            .get(0);
        assert!(ended >= 3, "round {round}: ended {ended}");
        let org = a.read().and_then(|snapshot| snapshot.org("acme"));
        assert!(
            org.as_ref().is_ok_and(Option::is_some),
            "round {round}: {org:?}"
        );
        let glance = runtime
            .block_on(a.glance(0, Some("acme")))
            .and_then(|glance| glance.org("acme"));
        assert!(
            glance.as_ref().is_ok_and(Option::is_some),
            "round {round}: {glance:?}"
        );
    }
}

/// Ends every daemon's follower connection, as a network cut or a failover would; returns
/// how many it ended.
fn cut_followers(server: &compartment_pgtest::Postgres, runtime: &tokio::runtime::Runtime) -> i64 {
    runtime.block_on(async {
        connect(server)
            .await
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                &[&super::follow::APPLICATION_NAME],
            )
            .await
            .unwrap()
            .get(0)
    })
}

/// A commit through one daemon wakes the other's subscribers of the whole feed and of the
/// organization it touched, and no other organization's. When the notification is lost
/// with the other's connection, its follower catches up once it is back, from the table.
#[test]
fn another_daemons_commit_wakes_this_daemons_feeds_even_when_its_notification_is_lost() {
    let Some(server) = server(
        "another_daemons_commit_wakes_this_daemons_feeds_even_when_its_notification_is_lost",
    ) else {
        return;
    };
    let runtime = runtime();
    let (a, b) = two_daemons(&runtime, &server);
    let mut all = b.event_head();
    let mut acme = b.org_event_head("acme");
    let other = b.org_event_head("other");
    let write = a.begin_write().unwrap();
    add_member(&write, "acme", "admin@example.com", Role::Admin);
    write.commit().unwrap();
    assert!(eventually(|| *all.borrow_and_update() == 1));
    assert!(eventually(|| acme.has_changed().unwrap()));
    acme.mark_unchanged();
    assert!(!other.has_changed().unwrap());

    // The notification of the next commit sent while the follower is cut off: the commit
    // lands before it reconnects (its first retry waits 100 ms), so it hears nothing of it.
    let mut missed = false;
    for attempt in 2..=6 {
        let write = a.begin_write().unwrap();
        add_member(
            &write,
            "acme",
            &format!("dev{attempt}@example.com"),
            Role::Deployer,
        );
        let cut = cut_followers(&server, &runtime);
        write.commit().unwrap();
        missed |= cut == 2 && cut_followers(&server, &runtime) == 0;
        assert!(
            eventually(|| *all.borrow_and_update() == attempt),
            "b's feed did not reach {attempt}"
        );
        assert!(eventually(|| acme.has_changed().unwrap()));
        acme.mark_unchanged();
        if missed {
            break;
        }
    }
    assert!(
        missed,
        "no commit ever landed while the followers were cut off"
    );
    assert!(!other.has_changed().unwrap());
}

/// A daemon whose PostgreSQL is not up yet starts anyway: its reads are unreachable (the
/// client is told `unavailable`) until the server is up, then its follower migrates the
/// empty database and reads succeed, without a restart.
#[test]
fn a_daemon_started_before_its_database_waits_for_it() {
    let Some(server) = server("a_daemon_started_before_its_database_waits_for_it") else {
        return;
    };
    server.stop_server().unwrap();
    let runtime = runtime();
    let target = super::Target::parse(&server.url("postgres")).unwrap();
    let store = runtime
        .block_on(Store::open(&target, runtime.handle().clone()))
        .unwrap();
    let err = store.read().map(|_| ()).unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    assert!(!store.is_reachable());
    server.start_server().unwrap();
    assert!(eventually(|| store
        .read()
        .and_then(|snapshot| snapshot.org_names())
        .is_ok_and(|names| names.is_empty())));
    assert!(store.is_reachable());
    let write = store.begin_write().unwrap();
    add_member(&write, "acme", "admin@example.com", Role::Admin);
    write.commit().unwrap();
}

/// What waiting does not mend fails the open at once: a schema newer than this daemon's, a
/// database that does not exist.
#[test]
fn a_newer_schema_or_a_missing_database_fails_the_open() {
    let Some(server) = server("a_newer_schema_or_a_missing_database_fails_the_open") else {
        return;
    };
    let runtime = runtime();
    let missing = super::Target::parse(&server.url("nowhere")).unwrap();
    let err = match runtime.block_on(Store::open(&missing, runtime.handle().clone())) {
        Ok(_) => panic!("opened a database that does not exist"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("database \"nowhere\" does not exist"), "{err}");
    let (a, _) = two_daemons(&runtime, &server);
    drop(a);
    runtime.block_on(async {
        connect(&server)
            .await
            .execute("UPDATE compartment_schema SET version = 99", &[])
            .await
            .unwrap();
    });
    let target = super::Target::parse(&server.url("postgres")).unwrap();
    let err = match runtime.block_on(Store::open(&target, runtime.handle().clone())) {
        Ok(_) => panic!("opened a newer schema"),
        Err(err) => err,
    };
    assert!(
        matches!(err, super::schema::SchemaError::TooNew { found: 99 }),
        "{err}"
    );
}

/// A daemon opened on a database with a feed starts at the feed's head: its subscribers
/// wait for what comes next, not for what is already there.
#[test]
fn a_daemon_opened_on_a_feed_starts_at_its_head() {
    let Some(server) = server("a_daemon_opened_on_a_feed_starts_at_its_head") else {
        return;
    };
    let runtime = runtime();
    let (a, _) = two_daemons(&runtime, &server);
    let write = a.begin_write().unwrap();
    add_member(&write, "acme", "admin@example.com", Role::Admin);
    add_member(&write, "acme", "dev@example.com", Role::Viewer);
    write.commit().unwrap();
    let (later, _) = two_daemons(&runtime, &server);
    assert_eq!(*later.event_head().borrow(), 2);
}

/// A write transaction answers what it read ahead, and what it wrote since, as the
/// database does: the accounts read ahead with every membership they have and none they
/// have not, an account that does not exist as none, the callers' bindings, current
/// organizations and memberships, the organizations named (one that does not exist as
/// none), the feed's head;
/// and its pending writes are in the database before a read that ranges over rows, and
/// after the commit.
#[test]
fn a_write_transaction_answers_what_it_read_ahead_and_wrote_as_the_database_does() {
    let Some(server) =
        server("a_write_transaction_answers_what_it_read_ahead_and_wrote_as_the_database_does")
    else {
        return;
    };
    let runtime = runtime();
    let (store, _) = two_daemons(&runtime, &server);
    let write = store.begin_write().unwrap();
    add_member(&write, "acme", "dev@example.com", Role::Deployer);
    add_member(&write, "beta", "dev@example.com", Role::Viewer);
    add_member(&write, "acme", "ops@example.com", Role::Admin);
    let txn = Tracked::new(&write, T0);
    let binding = BindingRecord {
        email: "ops@example.com".into(),
        user_name: Some("ops".into()),
        bound_at: T0,
        provenance: Provenance::Superuser,
    };
    txn.put_binding(1001, &binding).unwrap();
    txn.set_current_org(1001, "beta").unwrap();
    write.commit().unwrap();

    let write = store.begin_write().unwrap();
    write
        .read_ahead(
            &[1000, 1001],
            &["dev@example.com", "new@example.com"],
            &["acme", "nowhere"],
        )
        .unwrap();
    let snapshot = store.read().unwrap();
    for uid in [1000, 1001] {
        assert_eq!(write.binding(uid).unwrap(), snapshot.binding(uid).unwrap());
        assert_eq!(
            write.current_org(uid).unwrap(),
            snapshot.current_org(uid).unwrap()
        );
    }
    for org in ["acme", "beta", "nowhere"] {
        assert_eq!(write.org(org).unwrap(), snapshot.org(org).unwrap(), "{org}");
    }
    for (org, email) in [
        ("acme", "dev@example.com"),
        ("beta", "dev@example.com"),
        ("gamma", "dev@example.com"),
        ("acme", "new@example.com"),
        ("acme", "ops@example.com"),
        ("beta", "ops@example.com"),
    ] {
        assert_eq!(
            write.membership(org, email).unwrap(),
            snapshot.membership(org, email).unwrap(),
            "{org} {email}"
        );
    }
    for email in ["dev@example.com", "new@example.com", "ops@example.com"] {
        assert_eq!(
            write.account(email).unwrap(),
            snapshot.account(email).unwrap(),
            "{email}"
        );
    }
    assert_eq!(
        write.binding(1000).unwrap(),
        snapshot.binding(1000).unwrap()
    );
    // Three memberships and a binding.
    assert_eq!(write.last_event_seq().unwrap(), 4);

    // Written here, answered here, and in the database for a read over rows.
    add_member(&write, "gamma", "new@example.com", Role::Viewer);
    let old = write
        .membership("beta", "dev@example.com")
        .unwrap()
        .unwrap();
    Tracked::new(&write, T0)
        .delete_membership("beta", "dev@example.com", &old)
        .unwrap();
    assert_eq!(write.membership("beta", "dev@example.com").unwrap(), None);
    assert_eq!(
        write
            .membership("gamma", "new@example.com")
            .unwrap()
            .map(|m| m.role),
        Some(Role::Viewer)
    );
    assert_eq!(write.orgs_of("dev@example.com").unwrap(), ["acme"]);
    assert_eq!(write.orgs_of("new@example.com").unwrap(), ["gamma"]);
    assert_eq!(write.last_event_seq().unwrap(), 6);
    // Nothing of it outside the transaction until it commits; all of it after.
    assert!(store.read().unwrap().org("gamma").unwrap().is_none());
    write.commit().unwrap();
    let after = store.read().unwrap();
    assert_eq!(after.orgs_of("dev@example.com").unwrap(), ["acme"]);
    assert_eq!(after.orgs_of("new@example.com").unwrap(), ["gamma"]);
    assert_eq!(after.last_event_seq().unwrap(), 6);
    let feed: Vec<_> = after
        .events_after(4, 10)
        .unwrap()
        .into_iter()
        .map(|(seq, event)| (seq, event.kind.as_str(), event.org))
        .collect();
    assert_eq!(
        feed,
        [
            (5, "member.added", Some("gamma".to_owned())),
            (6, "member.removed", Some("beta".to_owned())),
        ]
    );
}

/// A glance answers the rows a decision reads as a snapshot taken after it was asked does,
/// each question its own answer however many are asked at once; reads beyond its rows are
/// refused, never guessed; a snapshot that begins with a glance answers as any other; and a
/// removal committed through another daemon is in the next glance.
#[test]
fn glances_asked_at_once_each_answer_as_a_snapshot_does() {
    let Some(server) = server("glances_asked_at_once_each_answer_as_a_snapshot_does") else {
        return;
    };
    let runtime = runtime();
    let (store, other) = two_daemons(&runtime, &server);
    let write = store.begin_write().unwrap();
    add_member(&write, "acme", "dev@example.com", Role::Deployer);
    add_member(&write, "beta", "dev@example.com", Role::Viewer);
    add_member(&write, "acme", "ops@example.com", Role::Admin);
    let txn = Tracked::new(&write, T0);
    for (uid, email, provenance) in [
        (1000, "dev@example.com", Provenance::Org("acme".into())),
        (1001, "ops@example.com", Provenance::Superuser),
    ] {
        let binding = BindingRecord {
            email: email.into(),
            user_name: Some(format!("user{uid}")),
            bound_at: T0,
            provenance,
        };
        txn.put_binding(uid, &binding).unwrap();
    }
    txn.set_current_org(1000, "beta").unwrap();
    write.commit().unwrap();

    let questions: Vec<(u32, Option<&'static str>)> = [1000, 1001, 1002]
        .into_iter()
        .flat_map(|uid| {
            [Some("acme"), Some("beta"), Some("gamma"), None]
                .into_iter()
                .map(move |org| (uid, org))
        })
        .collect();
    let store = std::sync::Arc::new(store);
    // Every question five times over, all at once: most wait for a statement running,
    // and are answered together by the next.
    let glances: Vec<_> = runtime.block_on(async {
        let asked: Vec<_> = questions
            .iter()
            .cycle()
            .take(questions.len() * 5)
            .map(|&(uid, org)| {
                let store = store.clone();
                tokio::spawn(async move { (uid, org, store.glance(uid, org).await.unwrap()) })
            })
            .collect();
        let mut glances = Vec::new();
        for asked in asked {
            glances.push(asked.await.unwrap());
        }
        glances
    });
    let snapshot = store.read().unwrap();
    for (uid, org, glance) in &glances {
        let binding = snapshot.binding(*uid).unwrap();
        assert_eq!(glance.binding(*uid).unwrap(), binding, "{uid} {org:?}");
        let current = snapshot.current_org(*uid).unwrap();
        assert_eq!(glance.current_org(*uid).unwrap(), current, "{uid} {org:?}");
        let here = org.map(str::to_owned).or(current);
        let Some(here) = here else {
            // No organization to read: any is beyond the glance.
            assert!(matches!(glance.org("acme"), Err(StoreError::BeyondGlance)));
            continue;
        };
        assert_eq!(glance.org(&here).unwrap(), snapshot.org(&here).unwrap());
        match &binding {
            Some(binding) => assert_eq!(
                glance.membership(&here, &binding.email).unwrap(),
                snapshot.membership(&here, &binding.email).unwrap(),
                "{uid} {here}"
            ),
            None => assert!(matches!(
                glance.membership(&here, "dev@example.com"),
                Err(StoreError::BeyondGlance)
            )),
        }
        // Beyond its rows: another uid, organization or account, any range.
        for beyond in [
            glance.binding(uid + 1).map(drop),
            glance.current_org(uid + 1).map(drop),
            glance.org("delta").map(drop),
            glance.membership(&here, "else@example.com").map(drop),
            glance.account("dev@example.com").map(drop),
            glance.orgs_of("dev@example.com").map(drop),
        ] {
            assert!(
                matches!(beyond, Err(StoreError::BeyondGlance)),
                "{beyond:?}"
            );
        }
    }
    // A snapshot that begins with a glance answers every read as one without, the rows it
    // glanced at included.
    for &(uid, org) in &questions {
        let about = store.read_about(uid, org).unwrap();
        let here = org.unwrap_or("beta");
        assert_eq!(about.binding(uid).unwrap(), snapshot.binding(uid).unwrap());
        assert_eq!(
            about.current_org(uid).unwrap(),
            snapshot.current_org(uid).unwrap()
        );
        for name in [here, "acme", "gamma"] {
            assert_eq!(about.org(name).unwrap(), snapshot.org(name).unwrap());
            for email in ["dev@example.com", "ops@example.com", "none@example.com"] {
                assert_eq!(
                    about.membership(name, email).unwrap(),
                    snapshot.membership(name, email).unwrap(),
                    "{uid} {org:?}: {name} {email}"
                );
            }
        }
        assert_eq!(
            about.orgs_of("dev@example.com").unwrap(),
            snapshot.orgs_of("dev@example.com").unwrap()
        );
    }

    // Answers that depend on the question: the deployer of acme, the viewer of beta (its
    // current organization), and nobody in gamma.
    let role_in = |org| {
        runtime
            .block_on(store.glance(1000, org))
            .unwrap()
            .membership(org.unwrap_or("beta"), "dev@example.com")
            .unwrap()
            .map(|m| m.role)
    };
    assert_eq!(role_in(Some("acme")), Some(Role::Deployer));
    assert_eq!(role_in(None), Some(Role::Viewer));
    assert_eq!(role_in(Some("gamma")), None);

    // Removed through the other daemon: gone from this one's next glance.
    let write = other.begin_write().unwrap();
    let old = write
        .membership("acme", "dev@example.com")
        .unwrap()
        .unwrap();
    Tracked::new(&write, T0)
        .delete_membership("acme", "dev@example.com", &old)
        .unwrap();
    write.commit().unwrap();
    assert_eq!(role_in(Some("acme")), None);
}

/// An asker dropped while it sends the statement for others, or while it waits, strands
/// nobody: the others are answered, and later questions still are.
#[test]
fn a_glance_dropped_midway_leaves_the_others_answered() {
    let Some(server) = server("a_glance_dropped_midway_leaves_the_others_answered") else {
        return;
    };
    let runtime = runtime();
    let (store, _) = two_daemons(&runtime, &server);
    let store = std::sync::Arc::new(store);
    runtime.block_on(async {
        for round in 0..20 {
            let asked: Vec<_> = (0..16u32)
                .map(|uid| {
                    let store = store.clone();
                    tokio::spawn(async move { store.glance(uid, Some("acme")).await })
                })
                .collect();
            // Every other asker dropped, at a different moment each round.
            tokio::time::sleep(std::time::Duration::from_micros(50 * round)).await;
            let mut kept = Vec::new();
            for (n, asked) in asked.into_iter().enumerate() {
                match n % 2 {
                    0 => asked.abort(),
                    _ => kept.push(asked),
                }
            }
            for asked in kept {
                let answered = tokio::time::timeout(std::time::Duration::from_secs(30), asked)
                    .await
                    .expect("a glance stranded by a dropped one");
                answered.unwrap().unwrap();
            }
        }
        tokio::time::timeout(std::time::Duration::from_secs(30), store.glance(1, None))
            .await
            .expect("a glance after the drops")
            .unwrap();
    });
}

/// A glance asked again while the database is as it was is answered from the rows read
/// before, and only then: a commit anywhere, even of rows it never read, makes the next one
/// read its rows again; a transaction that was running when they were read is seen once it
/// commits, however often the rows were answered from memory meanwhile.
#[test]
fn a_glance_remembered_holds_only_while_the_database_is_as_it_was() {
    let Some(server) = server("a_glance_remembered_holds_only_while_the_database_is_as_it_was")
    else {
        return;
    };
    let runtime = runtime();
    let (store, other) = two_daemons(&runtime, &server);
    let write = store.begin_write().unwrap();
    add_member(&write, "acme", "dev@example.com", Role::Deployer);
    let binding = BindingRecord {
        email: "dev@example.com".into(),
        user_name: Some("dev".into()),
        bound_at: T0,
        provenance: Provenance::Org("acme".into()),
    };
    Tracked::new(&write, T0)
        .put_binding(1000, &binding)
        .unwrap();
    write.commit().unwrap();
    let role = || {
        runtime
            .block_on(store.glance(1000, Some("acme")))
            .unwrap()
            .membership("acme", "dev@example.com")
            .unwrap()
            .map(|member| member.role)
    };
    // Answered from memory once two statements in a row saw one moment.
    let steady = |expected: Option<Role>| {
        eventually(|| {
            let remembered = store.glances_remembered().0;
            assert_eq!(role(), expected);
            store.glances_remembered().0 == remembered + 1
        })
    };
    assert!(steady(Some(Role::Deployer)), "never answered from memory");

    // A commit of rows this glance never read: the rows are read again.
    let write = other.begin_write().unwrap();
    add_member(&write, "beta", "ops@example.com", Role::Viewer);
    write.commit().unwrap();
    let remembered = store.glances_remembered().0;
    assert_eq!(role(), Some(Role::Deployer));
    assert_eq!(
        store.glances_remembered().0,
        remembered,
        "answered from memory"
    );

    // A transaction running, its removal written but not committed, while the rows are
    // read and then answered from memory: once it commits, the next glance sees it.
    let running = runtime.block_on(connect(&server));
    runtime
        .block_on(running.batch_execute(
            "BEGIN; DELETE FROM memberships WHERE org = 'acme' AND email = 'dev@example.com'",
        ))
        .unwrap();
    assert!(steady(Some(Role::Deployer)), "never answered from memory");
    runtime.block_on(running.batch_execute("COMMIT")).unwrap();
    assert_eq!(role(), None);
    assert_eq!(
        store
            .read()
            .unwrap()
            .membership("acme", "dev@example.com")
            .unwrap(),
        None
    );
}

/// However many questions any uid asks, about however many organization names, the
/// glances remember at most `KNOWN` answers, and every one is answered as the database has
/// it.
#[test]
fn the_glances_remember_a_bounded_number_of_answers() {
    let Some(server) = server("the_glances_remember_a_bounded_number_of_answers") else {
        return;
    };
    let runtime = runtime();
    let (store, _) = two_daemons(&runtime, &server);
    let write = store.begin_write().unwrap();
    add_member(&write, "acme", "dev@example.com", Role::Deployer);
    write.commit().unwrap();
    let store = std::sync::Arc::new(store);
    let asked = super::glance::KNOWN + 100;
    for round in 0..2 {
        let answers = runtime.block_on(async {
            let asked: Vec<_> = (0..asked)
                .map(|n| {
                    let store = store.clone();
                    let org = format!("org-{n}");
                    tokio::spawn(async move { store.glance(1000, Some(&org)).await.unwrap() })
                })
                .collect();
            let mut answers = Vec::new();
            for answer in asked {
                answers.push(answer.await.unwrap());
            }
            answers
        });
        for (n, answer) in answers.iter().enumerate() {
            assert_eq!(
                answer.org(&format!("org-{n}")).unwrap(),
                None,
                "round {round}"
            );
        }
        let (_, known) = store.glances_remembered();
        assert!(
            known <= super::glance::KNOWN,
            "round {round}: {known} answers remembered"
        );
    }
}

const DAY: Millis = 24 * 3_600_000;

/// A membership of `role` every term bounds: blocked until a day on, its access ending in
/// thirty days (warned of once), `role` held ten days and then `fallback`.
fn bounded(role: Role, fallback: Role) -> MembershipRecord {
    MembershipRecord {
        role,
        uid: Some(1000),
        status: MemberStatus::Active,
        invited_by: "admin@example.com".into(),
        invited_at: T0,
        expires_at: None,
        token_hash: None,
        terms: Terms {
            block: Some(Block {
                reason: "laptop lost; « call IT »".into(),
                by: "uid 0 (root)".into(),
                at: T0 + 5,
                until: Some(T0 + DAY),
            }),
            access_until: Some(Deadline {
                at: T0 + 30 * DAY,
                warned: 1,
            }),
            elevation: Some(Elevation {
                until: Deadline {
                    at: T0 + 10 * DAY,
                    warned: 0,
                },
                fallback,
            }),
        },
    }
}

/// Writes `record` as `email`'s membership of `org` (made, with the account, if missing),
/// through the store's changes alone: no rule is asked.
fn put_member(session: &Session, org: &str, email: &str, record: &MembershipRecord) {
    let txn = Tracked::new(session, T0);
    if txn.org(org).unwrap().is_none() {
        let created = OrgRecord {
            created_at: T0,
            created_by_uid: 0,
            groups: Default::default(),
        };
        txn.put_org(org, &created).unwrap();
    }
    if txn.account(email).unwrap().is_none() {
        let account = AccountRecord {
            status: AccountStatus::Active,
            uid: record.uid,
            created_at: T0,
            activated_at: Some(T0),
        };
        txn.put_account(email, &account).unwrap();
    }
    let old = txn.membership(org, email).unwrap();
    txn.put_membership(org, email, record, old.as_ref())
        .unwrap();
}

/// Everything a backup of `store` holds, as one batch, and its last event.
fn everything(store: &Store) -> (Batch, u64) {
    let snapshot = store.read().unwrap();
    let all = usize::MAX;
    let batch = Batch {
        orgs: snapshot.orgs_after(None, all).unwrap(),
        accounts: snapshot.accounts_after(None, all).unwrap(),
        bindings: snapshot.bindings_after(None, all).unwrap(),
        memberships: snapshot.memberships_after(None, all).unwrap(),
        tokens: snapshot.tokens_after(None, all).unwrap(),
        current_orgs: snapshot.current_orgs_after(None, all).unwrap(),
        audit: snapshot.audit_after(0, all).unwrap(),
        events: snapshot.events_after(0, all).unwrap(),
        feed_entries: snapshot.feed_entries_after(None, all).unwrap(),
    };
    (batch, snapshot.last_event_seq().unwrap())
}

/// A membership's terms, every one of them set, read back exactly as written: by a read of
/// the membership, of the organization's members, of a page of a member list, by a write
/// transaction's read-ahead, by a glance; and after a backup is restored from its rows.
/// The feed's events tell what ends when, and a block's reason.
#[test]
fn a_memberships_terms_and_an_events_note_round_trip() {
    let Some(server) = server("a_memberships_terms_and_an_events_note_round_trip") else {
        return;
    };
    let runtime = runtime();
    let (store, _) = two_daemons(&runtime, &server);
    let admin = MembershipRecord {
        terms: Terms::default(),
        ..bounded(Role::Admin, Role::Viewer)
    };
    let record = bounded(Role::Admin, Role::Deployer);
    let unblocked = MembershipRecord {
        terms: Terms {
            block: None,
            ..record.terms.clone()
        },
        ..record.clone()
    };
    let write = store.begin_write().unwrap();
    put_member(&write, "acme", "admin@example.com", &admin);
    put_member(&write, "acme", "dev@example.com", &unblocked);
    let binding = BindingRecord {
        email: "dev@example.com".into(),
        user_name: Some("dev".into()),
        bound_at: T0,
        provenance: Provenance::Org("acme".into()),
    };
    Tracked::new(&write, T0)
        .put_binding(1000, &binding)
        .unwrap();
    write.commit().unwrap();
    // Blocked since: the event tells why and until when.
    let write = store.begin_write().unwrap();
    put_member(&write, "acme", "dev@example.com", &record);
    // An event as a rule would append it, every field set.
    let noted = EventRecord {
        at: T0 + 7,
        kind: EventKind::AccessExpiring,
        org: Some("acme".into()),
        email: "dev@example.com".into(),
        role: Some(Role::Admin),
        previous_role: Some(Role::Deployer),
        status: Some(MemberStatus::Active),
        uid: Some(1000),
        actor: Some(AuditActor {
            kind: "daemon".into(),
            email: None,
            uid: None,
            user: None,
            pid: Some(42),
        }),
        note: Some(EventNote {
            until: Some(T0 + 10 * DAY),
            reason: Some("a reason, \"quoted\"".into()),
            previous_name: Default::default(),
        }),
    };
    let seq = Rows::append_event(&write, &noted).unwrap();
    write.commit().unwrap();

    let check = |store: &Store| {
        let snapshot = store.read().unwrap();
        assert_eq!(
            snapshot.membership("acme", "dev@example.com").unwrap(),
            Some(record.clone())
        );
        assert_eq!(
            snapshot.members("acme").unwrap(),
            [
                ("admin@example.com".to_owned(), admin.clone()),
                ("dev@example.com".to_owned(), record.clone()),
            ]
        );
        assert_eq!(
            snapshot.members_after("acme", None, 10).unwrap(),
            [
                ("admin@example.com".to_owned(), MemberRow::from(&admin)),
                ("dev@example.com".to_owned(), MemberRow::from(&record)),
            ]
        );
        assert_eq!(
            snapshot
                .members_after("acme", Some("admin@example.com"), 10)
                .unwrap(),
            [("dev@example.com".to_owned(), MemberRow::from(&record))]
        );
        let write = store.begin_write().unwrap();
        write
            .read_ahead(&[1000], &["dev@example.com"], &[])
            .unwrap();
        assert_eq!(
            write.membership("acme", "dev@example.com").unwrap(),
            Some(record.clone())
        );
        drop(write);
        let glance = runtime.block_on(store.glance(1000, Some("acme"))).unwrap();
        assert_eq!(
            glance.membership("acme", "dev@example.com").unwrap(),
            Some(record.clone())
        );
        let events = snapshot.events_after(0, 10).unwrap();
        let notes: Vec<_> = events
            .iter()
            .map(|(seq, event)| (*seq, event.email.as_str(), event.kind, event.note.clone()))
            .collect();
        assert_eq!(
            notes,
            [
                (1, "admin@example.com", EventKind::MemberAdded, None),
                (
                    2,
                    "dev@example.com",
                    EventKind::MemberAdded,
                    Some(EventNote {
                        until: Some(T0 + 10 * DAY),
                        reason: None,
                        previous_name: Default::default(),
                    })
                ),
                (3, "dev@example.com", EventKind::BindingChanged, None),
                (4, "dev@example.com", EventKind::MemberBlocked, {
                    let block = record.terms.block.clone().unwrap();
                    Some(EventNote {
                        until: block.until,
                        reason: Some(block.reason),
                        previous_name: Default::default(),
                    })
                }),
                (
                    5,
                    "dev@example.com",
                    EventKind::AccessExpiring,
                    noted.note.clone()
                ),
            ]
        );
        assert_eq!(events[4], (seq, noted.clone()));
        assert_eq!(
            snapshot.org_events_after("acme", 4, 10).unwrap(),
            [(seq, noted.clone())]
        );
    };
    check(&store);

    // Restored from its own rows, as a restore writes a backup's: the same again.
    let (batch, last_event) = everything(&store);
    assert_eq!(batch.memberships.len(), 2);
    let write = store.begin_write().unwrap();
    write.clear().unwrap();
    write.import(&batch).unwrap();
    write.finish_import(last_event).unwrap();
    write.commit().unwrap();
    check(&store);
    let (restored, _) = everything(&store);
    assert_eq!(restored.memberships, batch.memberships);
    assert_eq!(restored.events, batch.events);
    // The restore wrote the due index as the writes do.
    assert_eq!(store.read().unwrap().next_due().unwrap(), Some(T0 + DAY));
}

/// A membership is due to the sweeper when its terms make it due, not only when it is a
/// pending invitation: at a block's end, at the next warning of an end, at the end.
#[test]
fn a_membership_is_due_by_its_terms() {
    let Some(server) = server("a_membership_is_due_by_its_terms") else {
        return;
    };
    let runtime = runtime();
    let (store, _) = two_daemons(&runtime, &server);
    let invited = MembershipRecord {
        uid: None,
        status: MemberStatus::Invited,
        expires_at: Some(T0 + 3 * DAY),
        ..bounded(Role::Viewer, Role::Viewer)
    };
    let invited = MembershipRecord {
        terms: Terms::default(),
        ..invited
    };
    // Blocked until T0 + 2 days, and nothing else.
    let blocked = MembershipRecord {
        terms: Terms {
            block: Some(Block {
                reason: "r".into(),
                by: "uid 0".into(),
                at: T0,
                until: Some(T0 + 2 * DAY),
            }),
            access_until: None,
            elevation: None,
        },
        ..bounded(Role::Viewer, Role::Viewer)
    };
    // Access ends at T0 + 8 days: warned a week before, at T0 + 1 day.
    let ending = MembershipRecord {
        terms: Terms {
            block: None,
            access_until: Some(Deadline {
                at: T0 + 8 * DAY,
                warned: 0,
            }),
            elevation: None,
        },
        ..bounded(Role::Viewer, Role::Viewer)
    };
    // An elevation warned of twice: due at its end, T0 + 4 days.
    let elevated = MembershipRecord {
        terms: Terms {
            block: None,
            access_until: None,
            elevation: Some(Elevation {
                until: Deadline {
                    at: T0 + 4 * DAY,
                    warned: 2,
                },
                fallback: Role::Viewer,
            }),
        },
        ..bounded(Role::Deployer, Role::Viewer)
    };
    // Blocked with no end, active: never due.
    let forever = MembershipRecord {
        terms: Terms {
            block: Some(Block {
                until: None,
                ..blocked.terms.block.clone().unwrap()
            }),
            access_until: None,
            elevation: None,
        },
        ..blocked.clone()
    };
    let members = [
        ("invited@example.com", &invited, Some(T0 + 3 * DAY)),
        ("blocked@example.com", &blocked, Some(T0 + 2 * DAY)),
        ("ending@example.com", &ending, Some(T0 + DAY)),
        ("elevated@example.com", &elevated, Some(T0 + 4 * DAY)),
        ("forever@example.com", &forever, None),
    ];
    let write = store.begin_write().unwrap();
    put_member(&write, "acme", "admin@example.com", &{
        MembershipRecord {
            terms: Terms::default(),
            ..bounded(Role::Admin, Role::Admin)
        }
    });
    for (email, record, due) in members {
        assert_eq!(crate::store::change::due_key(record), due, "{email}");
        put_member(&write, "acme", email, record);
    }
    // A write transaction's own writes are due to its reads.
    assert_eq!(write.next_due().unwrap(), Some(T0 + DAY));
    write.commit().unwrap();

    let snapshot = store.read().unwrap();
    assert_eq!(snapshot.next_due().unwrap(), Some(T0 + DAY));
    let due = |now, limit| snapshot.due_memberships_up_to(now, limit).unwrap();
    let named = |emails: &[&str]| -> Vec<(String, String)> {
        emails
            .iter()
            .map(|email| ("acme".to_owned(), (*email).to_owned()))
            .collect()
    };
    assert_eq!(due(T0 + DAY - 1, 10), named(&[]));
    assert_eq!(due(T0 + DAY, 10), named(&["ending@example.com"]));
    assert_eq!(
        due(T0 + 10 * DAY, 10),
        named(&[
            "ending@example.com",
            "blocked@example.com",
            "invited@example.com",
            "elevated@example.com",
        ])
    );
    assert_eq!(
        due(T0 + 10 * DAY, 2),
        named(&["ending@example.com", "blocked@example.com"])
    );
    assert_eq!(
        snapshot.due_memberships(u64::MAX).unwrap().len(),
        4,
        "the block with no end is never due"
    );
    drop(snapshot);

    // Warned, then unblocked: due at the next warning, and no longer at all.
    let write = store.begin_write().unwrap();
    let warned = MembershipRecord {
        terms: Terms {
            access_until: Some(Deadline {
                at: T0 + 8 * DAY,
                warned: 1,
            }),
            ..ending.terms.clone()
        },
        ..ending.clone()
    };
    put_member(&write, "acme", "ending@example.com", &warned);
    let free = MembershipRecord {
        terms: Terms::default(),
        ..blocked.clone()
    };
    put_member(&write, "acme", "blocked@example.com", &free);
    write.commit().unwrap();
    let snapshot = store.read().unwrap();
    assert_eq!(snapshot.next_due().unwrap(), Some(T0 + 3 * DAY));
    assert_eq!(
        snapshot.due_memberships(T0 + 7 * DAY).unwrap(),
        named(&[
            "invited@example.com",
            "elevated@example.com",
            "ending@example.com",
        ])
    );
}

/// An admin who is blocked (or whose access or role ends by itself) is no admin the
/// last-admin rule can rely on: `active_admins` does not count them, and the database
/// refuses, at the commit, to take away the only admin nothing bounds, even past the rules.
#[test]
fn a_blocked_admin_is_not_one_the_last_admin_rule_counts() {
    let Some(server) = server("a_blocked_admin_is_not_one_the_last_admin_rule_counts") else {
        return;
    };
    let runtime = runtime();
    let (store, _) = two_daemons(&runtime, &server);
    let durable = MembershipRecord {
        terms: Terms::default(),
        ..bounded(Role::Admin, Role::Viewer)
    };
    let blocked = MembershipRecord {
        terms: Terms {
            access_until: None,
            elevation: None,
            ..bounded(Role::Admin, Role::Viewer).terms
        },
        ..durable.clone()
    };
    assert!(durable.is_active_admin() && !blocked.is_active_admin());
    let write = store.begin_write().unwrap();
    put_member(&write, "acme", "a@example.com", &durable);
    put_member(&write, "acme", "b@example.com", &blocked);
    // Another organization's admins are its own.
    put_member(&write, "beta", "a@example.com", &durable);
    put_member(&write, "beta", "b@example.com", &durable);
    assert_eq!(write.active_admins("acme", 10).unwrap(), 1);
    write.commit().unwrap();
    assert_eq!(store.read().unwrap().active_admins("acme", 10).unwrap(), 1);
    assert_eq!(store.read().unwrap().active_admins("beta", 10).unwrap(), 2);
    assert_eq!(store.read().unwrap().active_admins("beta", 1).unwrap(), 1);

    let refused = |change: &dyn Fn(&Tracked<'_, Session>)| {
        let write = store.begin_write().unwrap();
        change(&Tracked::new(&write, T0));
        // Written, and refused only at the commit.
        let err = write.commit().unwrap_err();
        let StoreError::Postgres(postgres) = &err else {
            panic!("{err}");
        };
        assert_eq!(
            postgres.code(),
            Some(&tokio_postgres::error::SqlState::INTEGRITY_CONSTRAINT_VIOLATION),
            "{err}"
        );
        assert!(err.to_string().contains("the last admin of acme"), "{err}");
        assert!(!err.is_retryable(), "{err}");
    };
    // Removed, blocked, its access or its role made to end: each leaves acme no admin.
    refused(&|txn| {
        txn.delete_membership("acme", "a@example.com", &durable)
            .unwrap()
    });
    for bounded in [
        blocked.clone(),
        MembershipRecord {
            terms: Terms {
                block: None,
                elevation: None,
                ..bounded(Role::Admin, Role::Viewer).terms
            },
            ..durable.clone()
        },
        bounded(Role::Admin, Role::Viewer),
    ] {
        refused(&|txn| {
            txn.put_membership("acme", "a@example.com", &bounded, Some(&durable))
                .unwrap()
        });
    }
    let snapshot = store.read().unwrap();
    assert_eq!(
        snapshot.membership("acme", "a@example.com").unwrap(),
        Some(durable.clone())
    );
    assert_eq!(snapshot.active_admins("acme", 10).unwrap(), 1);
    drop(snapshot);

    // Changed as it still is one, it stays; once the other is unblocked, it may go.
    let write = store.begin_write().unwrap();
    let txn = Tracked::new(&write, T0);
    let moved = MembershipRecord {
        invited_by: "someone else".into(),
        ..durable.clone()
    };
    txn.put_membership("acme", "a@example.com", &moved, Some(&durable))
        .unwrap();
    write.commit().unwrap();
    let write = store.begin_write().unwrap();
    let txn = Tracked::new(&write, T0);
    txn.put_membership("acme", "b@example.com", &durable, Some(&blocked))
        .unwrap();
    assert_eq!(write.active_admins("acme", 10).unwrap(), 2);
    txn.delete_membership("acme", "a@example.com", &moved)
        .unwrap();
    write.commit().unwrap();
    assert_eq!(store.read().unwrap().active_admins("acme", 10).unwrap(), 1);
}

/// An organization that maps `gids`, each to a role: as `org map-group` leaves it.
fn mapping(gids: &[(u32, &str, Role)]) -> OrgRecord {
    OrgRecord {
        created_at: T0,
        created_by_uid: 0,
        groups: gids
            .iter()
            .zip(1..)
            .map(|(&(gid, name, role), n)| GroupMap {
                gid,
                name: name.to_owned(),
                role,
                by: "admin@example.com".into(),
                at: T0 + n,
            })
            .collect(),
    }
}

/// An organization's groups read back exactly as written: by a write transaction that
/// wrote them, by one that read them ahead, by a snapshot, by a glance and a snapshot
/// begun with one; after a backup is restored from its rows. The organizations of groups
/// are found by any of their gids and by no other, in a write transaction before it commits
/// and after; they follow a change of the groups, a rename and a deletion, in the
/// transaction that makes it too.
#[test]
fn an_organizations_groups_round_trip_and_find_it() {
    let Some(server) = server("an_organizations_groups_round_trip_and_find_it") else {
        return;
    };
    let runtime = runtime();
    let (store, other) = two_daemons(&runtime, &server);
    // A gid beyond i32's range, and names and authors JSON must escape.
    const BIG: u32 = 4_000_000_000;
    let acme = OrgRecord {
        groups: vec![
            GroupMap {
                gid: 100,
                name: "devs".into(),
                role: Role::Deployer,
                by: "admin@example.com".into(),
                at: T0 + 1,
            },
            GroupMap {
                gid: BIG,
                name: "ops \"« night »\"".into(),
                role: Role::Admin,
                by: "uid 0 (root)".into(),
                at: T0 + 2,
            },
        ],
        ..mapping(&[])
    };
    let beta = mapping(&[(200, "qa", Role::Viewer)]);
    let gamma = mapping(&[]);

    let write = store.begin_write().unwrap();
    let txn = Tracked::new(&write, T0);
    txn.put_org("acme", &acme).unwrap();
    txn.put_org("beta", &beta).unwrap();
    txn.put_org("gamma", &gamma).unwrap();
    assert_eq!(write.org("acme").unwrap(), Some(acme.clone()));
    assert_eq!(write.orgs_of_groups(&[100]).unwrap(), ["acme"]);
    assert_eq!(write.orgs_of_groups(&[BIG, 200]).unwrap(), ["acme", "beta"]);
    // Nothing of it outside the transaction until it commits.
    assert_eq!(
        store.read().unwrap().orgs_of_groups(&[100]).unwrap(),
        Vec::<String>::new()
    );
    write.commit().unwrap();

    let found = |reader: &dyn Reader| {
        let none = Vec::<String>::new();
        for (gids, orgs) in [
            (&[100][..], &["acme"][..]),
            (&[BIG], &["acme"]),
            (&[100, BIG], &["acme"]),
            (&[200, 100], &["acme", "beta"]),
            (&[300, 200, 0], &["beta"]),
        ] {
            assert_eq!(reader.orgs_of_groups(gids).unwrap(), orgs, "{gids:?}");
        }
        for gids in [&[][..], &[0], &[300, 101, 99], &[u32::MAX]] {
            assert_eq!(reader.orgs_of_groups(gids).unwrap(), none, "{gids:?}");
        }
    };
    let check = |store: &Store| {
        let expected = [("acme", &acme), ("beta", &beta), ("gamma", &gamma)];
        let snapshot = store.read().unwrap();
        for (name, record) in expected {
            assert_eq!(snapshot.org(name).unwrap().as_ref(), Some(record), "{name}");
        }
        found(&*snapshot);
        let write = store.begin_write().unwrap();
        write
            .read_ahead(&[1000], &[], &["acme", "beta", "gamma"])
            .unwrap();
        for (name, record) in expected {
            assert_eq!(write.org(name).unwrap().as_ref(), Some(record), "{name}");
        }
        found(&write);
        drop(write);
        let glance = runtime.block_on(store.glance(1000, Some("acme"))).unwrap();
        assert_eq!(glance.org("acme").unwrap(), Some(acme.clone()));
        assert!(matches!(
            glance.orgs_of_groups(&[100]),
            Err(StoreError::BeyondGlance)
        ));
        let about = store.read_about(1000, Some("acme")).unwrap();
        assert_eq!(about.org("acme").unwrap(), Some(acme.clone()));
        found(&*about);
    };
    check(&store);
    check(&other);

    // Restored from its own rows, as a restore writes a backup's: the same again.
    let (batch, last_event) = everything(&store);
    assert_eq!(
        batch.orgs,
        [
            ("acme".to_owned(), acme.clone()),
            ("beta".to_owned(), beta.clone()),
            ("gamma".to_owned(), gamma.clone()),
        ]
    );
    let write = store.begin_write().unwrap();
    write.clear().unwrap();
    assert_eq!(
        write.orgs_of_groups(&[100, 200]).unwrap(),
        Vec::<String>::new()
    );
    write.import(&batch).unwrap();
    write.finish_import(last_event).unwrap();
    write.commit().unwrap();
    check(&store);
    assert_eq!(everything(&store).0.orgs, batch.orgs);

    // A group unmapped: no longer found by its gid; mapped, found.
    let write = store.begin_write().unwrap();
    let txn = Tracked::new(&write, T0);
    let unmapped = OrgRecord {
        groups: acme.groups[1..].to_vec(),
        ..acme.clone()
    };
    txn.put_org("acme", &unmapped).unwrap();
    txn.put_org("gamma", &mapping(&[(100, "devs", Role::Readonly)]))
        .unwrap();
    assert_eq!(write.orgs_of_groups(&[100]).unwrap(), ["gamma"]);
    write.commit().unwrap();
    let snapshot = store.read().unwrap();
    assert_eq!(snapshot.org("acme").unwrap(), Some(unmapped.clone()));
    assert_eq!(snapshot.orgs_of_groups(&[100]).unwrap(), ["gamma"]);
    assert_eq!(snapshot.orgs_of_groups(&[BIG]).unwrap(), ["acme"]);
    drop(snapshot);

    // Renamed, with its groups, under its new name in the transaction that renames it
    // (which read it under the old one first, as the rule does) and after.
    let write = store.begin_write().unwrap();
    let txn = Tracked::new(&write, T0);
    assert_eq!(txn.org("acme").unwrap(), Some(unmapped.clone()));
    assert_eq!(txn.org("delta").unwrap(), None);
    txn.rename_org("acme", "delta").unwrap();
    assert_eq!(txn.org("acme").unwrap(), None);
    assert_eq!(txn.org("delta").unwrap(), Some(unmapped.clone()));
    assert_eq!(
        write.orgs_of_groups(&[BIG, 200]).unwrap(),
        ["beta", "delta"]
    );
    // Changed again under its new name in the same transaction, as a later change of its
    // batch would: the row renamed, no other.
    txn.put_org("delta", &acme).unwrap();
    assert_eq!(write.orgs_of_groups(&[100]).unwrap(), ["delta", "gamma"]);
    write.commit().unwrap();
    let snapshot = store.read().unwrap();
    assert_eq!(snapshot.org("acme").unwrap(), None);
    assert_eq!(snapshot.org("delta").unwrap(), Some(acme.clone()));
    assert_eq!(snapshot.org_names().unwrap(), ["beta", "delta", "gamma"]);
    assert_eq!(
        snapshot.orgs_of_groups(&[BIG, 200]).unwrap(),
        ["beta", "delta"]
    );
    drop(snapshot);

    // Deleted: found by none, in the transaction and after.
    let write = store.begin_write().unwrap();
    let txn = Tracked::new(&write, T0);
    assert_eq!(txn.org("delta").unwrap(), Some(acme.clone()));
    txn.delete_org("delta").unwrap();
    assert_eq!(txn.org("delta").unwrap(), None);
    assert_eq!(write.orgs_of_groups(&[100, BIG]).unwrap(), ["gamma"]);
    write.commit().unwrap();
    let snapshot = other.read().unwrap();
    assert_eq!(snapshot.org("delta").unwrap(), None);
    assert_eq!(snapshot.orgs_of_groups(&[100, BIG]).unwrap(), ["gamma"]);
    assert_eq!(
        snapshot.orgs_of_groups(&[BIG]).unwrap(),
        Vec::<String>::new()
    );
}
