//! The backends against each other: the same changes written through each, every read
//! answers alike, byte for byte in its debug form. What one backend stores, indexes,
//! orders or derives for the feed differently from the other fails here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;

use compartmentctl::wire::{
    AccountStatus, AuditActor, AuditState, AuditTarget, EventKind, MemberStatus, Role,
};

use super::chain::Anchor;
use super::change::Tracked;
use super::{
    postgres, AccountRecord, AuditRecord, Backend as _, BindingRecord, Changes, Committing,
    MembershipRecord, Millis, OrgRecord, Provenance, Reader, Result, Store, TokenHash, TokenRecord,
    TokenState, UnixUser,
};

const T0: Millis = 1_777_636_800_000;
const UIDS: [u32; 4] = [0, 1000, 1001, 4_294_967_294];
const KEYS: [[u8; 32]; 3] = [[1; 32], [2; 32], [0xff; 32]];

/// An audit record of `event` in `org`, by a user.
fn record(at: Millis, event: &str, org: Option<&str>) -> AuditRecord {
    AuditRecord {
        at,
        actor: AuditActor {
            kind: "user".into(),
            email: Some("a@example.com".into()),
            uid: Some(1000),
            user: Some("alice".into()),
            pid: Some(42),
        },
        event: event.into(),
        org: org.map(str::to_owned),
        target: Some(AuditTarget {
            kind: "account".into(),
            id: "b@example.com".into(),
        }),
        before: Some(AuditState {
            role: None,
            status: "none".into(),
        }),
        after: Some(AuditState {
            role: Some(Role::Viewer),
            status: "invited".into(),
        }),
        outcome: "ok".into(),
        detail: Some("a \"quoted\" détail".into()),
    }
}

fn member(role: Role, status: MemberStatus, expires_at: Option<Millis>) -> MembershipRecord {
    MembershipRecord {
        role,
        uid: (status == MemberStatus::Active).then_some(1000),
        status,
        invited_by: "uid 0 (root)".into(),
        invited_at: T0,
        expires_at,
        token_hash: expires_at.map(|_| TokenHash(KEYS[0])),
        terms: Default::default(),
    }
}

fn account(status: AccountStatus) -> AccountRecord {
    AccountRecord {
        status,
        uid: (status == AccountStatus::Active).then_some(1000),
        created_at: T0,
        activated_at: (status == AccountStatus::Active).then_some(T0 + 5),
    }
}

fn token(state: TokenState, redeemer: Option<UnixUser>) -> TokenRecord {
    TokenRecord {
        org: "acme".into(),
        email: "b@example.com".into(),
        expires_at: T0 + 100,
        state,
        redeemer,
        issued_by_superuser: true,
    }
}

/// A transaction's changes, written through either backend.
type Step = Box<dyn Fn(&dyn Changes) -> Result<()>>;

/// The script: each step a transaction of changes, as the rules make them.
fn steps() -> Vec<Step> {
    let org = |at| OrgRecord {
        created_at: at,
        created_by_uid: 0,
        groups: Default::default(),
    };
    vec![
        Box::new(move |txn| {
            txn.put_org("acme", &org(T0))?;
            txn.put_org("beta-2", &org(T0 + 1))?;
            txn.put_account("a@example.com", &account(AccountStatus::Active))?;
            txn.put_account("b@example.com", &account(AccountStatus::Pending))?;
            txn.put_account("Z@example.com", &account(AccountStatus::Pending))?;
            txn.put_membership(
                "acme",
                "a@example.com",
                &member(Role::Admin, MemberStatus::Active, None),
                None,
            )?;
            txn.put_membership(
                "acme",
                "b@example.com",
                &member(Role::Deployer, MemberStatus::Invited, Some(T0 + 100)),
                None,
            )?;
            txn.put_membership(
                "acme",
                "Z@example.com",
                &member(Role::Viewer, MemberStatus::Invited, Some(T0 + 50)),
                None,
            )?;
            txn.put_membership(
                "beta-2",
                "b@example.com",
                &member(Role::Admin, MemberStatus::Invited, Some(T0 + 100)),
                None,
            )?;
            txn.put_token(&TokenHash(KEYS[0]), &token(TokenState::Pending, None))?;
            txn.append_audit(&record(T0, "organization.create", Some("acme")))?;
            txn.append_audit(&record(T0, "organization.user.invite", Some("beta-2")))
        }),
        // A binding, and one made again through another organization.
        Box::new(|txn| {
            let binding = |provenance| BindingRecord {
                email: "a@example.com".into(),
                user_name: Some("alice".into()),
                bound_at: T0 + 5,
                provenance,
            };
            txn.put_binding(1000, &binding(Provenance::Superuser))?;
            txn.put_binding(1000, &binding(Provenance::Org("acme".into())))?;
            txn.set_current_org(1000, "acme")
        }),
        // An activation: the token used, the membership active, a role granted.
        Box::new(|txn| {
            let invited = txn.membership("acme", "b@example.com")?.unwrap();
            let active = MembershipRecord {
                status: MemberStatus::Active,
                uid: Some(1001),
                expires_at: None,
                token_hash: None,
                ..invited.clone()
            };
            txn.put_membership("acme", "b@example.com", &active, Some(&invited))?;
            let redeemer = UnixUser {
                uid: 1001,
                name: "bob".into(),
            };
            txn.put_token(
                &TokenHash(KEYS[0]),
                &token(TokenState::Used, Some(redeemer)),
            )?;
            let admin = MembershipRecord {
                role: Role::Admin,
                ..active.clone()
            };
            txn.put_membership("acme", "b@example.com", &admin, Some(&active))?;
            txn.put_binding(
                1001,
                &BindingRecord {
                    email: "b@example.com".into(),
                    user_name: None,
                    bound_at: T0 + 6,
                    provenance: Provenance::Unknown,
                },
            )
        }),
        // An expiry, a removal, spent tokens, an unbinding.
        Box::new(|txn| {
            let invited = txn.membership("acme", "Z@example.com")?.unwrap();
            let expired = MembershipRecord {
                status: MemberStatus::Expired,
                ..invited.clone()
            };
            txn.put_membership("acme", "Z@example.com", &expired, Some(&invited))?;
            let old = txn.membership("acme", "a@example.com")?.unwrap();
            txn.delete_membership("acme", "a@example.com", &old)?;
            txn.put_token(&TokenHash(KEYS[1]), &token(TokenState::Revoked, None))?;
            txn.put_token(&TokenHash(KEYS[2]), &token(TokenState::Pending, None))?;
            txn.delete_token(&TokenHash(KEYS[2]))?;
            txn.delete_binding(1001)?;
            txn.clear_current_org(1000)?;
            txn.append_audit(&record(T0 + 7, "account.unbind", None))?;
            txn.put_checkpoint(3, "a note")
        }),
    ]
}

/// Everything a reader can be asked, in one text.
fn everything(reader: &dyn Reader) -> String {
    let mut out = String::new();
    let orgs = reader.org_names().unwrap();
    writeln!(out, "orgs {orgs:?}").unwrap();
    for org in orgs.iter().map(String::as_str).chain(["nonesuch"]) {
        writeln!(out, "org {org}: {:?}", reader.org(org).unwrap()).unwrap();
        writeln!(out, "  members {:?}", reader.members(org).unwrap()).unwrap();
        let mut after = None;
        loop {
            let page = reader.members_after(org, after.as_deref(), 2).unwrap();
            writeln!(out, "  page after {after:?}: {page:?}").unwrap();
            match page.last() {
                Some((email, _)) if page.len() == 2 => after = Some(email.clone()),
                _ => break,
            }
        }
        for at_most in [0, 1, 5] {
            writeln!(
                out,
                "  active admins up to {at_most}: {}",
                reader.active_admins(org, at_most).unwrap()
            )
            .unwrap();
        }
        writeln!(
            out,
            "  feed {:?}",
            reader.org_events_after(org, 0, usize::MAX).unwrap()
        )
        .unwrap();
        writeln!(
            out,
            "  feed after 2, 1: {:?}",
            reader.org_events_after(org, 2, 1).unwrap()
        )
        .unwrap();
    }
    let accounts = reader.accounts().unwrap();
    writeln!(out, "accounts {accounts:?}").unwrap();
    for (email, _) in &accounts {
        writeln!(out, "account {email}: {:?}", reader.account(email).unwrap()).unwrap();
        writeln!(out, "  orgs {:?}", reader.orgs_of(email).unwrap()).unwrap();
        for org in &orgs {
            writeln!(
                out,
                "  in {org}: {:?}",
                reader.membership(org, email).unwrap()
            )
            .unwrap();
        }
    }
    for uid in UIDS {
        writeln!(
            out,
            "uid {uid}: {:?} {:?} {:?}",
            reader.binding(uid).unwrap(),
            reader.bound_email(uid).unwrap(),
            reader.current_org(uid).unwrap()
        )
        .unwrap();
    }
    for key in KEYS {
        writeln!(out, "token {:?}", reader.token(&TokenHash(key)).unwrap()).unwrap();
    }
    writeln!(out, "next expiry {:?}", reader.next_due().unwrap()).unwrap();
    for now in [T0, T0 + 50, T0 + 100, Millis::MAX] {
        writeln!(
            out,
            "due at {now}: {:?}",
            reader.due_memberships(now).unwrap()
        )
        .unwrap();
        writeln!(
            out,
            "spent due at {now}: {:?}",
            reader.spent_tokens_due(now, usize::MAX).unwrap()
        )
        .unwrap();
    }
    writeln!(
        out,
        "first due {:?}",
        reader.due_memberships_up_to(Millis::MAX, 1).unwrap()
    )
    .unwrap();
    writeln!(
        out,
        "next spent {:?}",
        reader.next_spent_token_due().unwrap()
    )
    .unwrap();
    // Sealed alike: the same text, so the same hash, whichever backend keeps it.
    writeln!(
        out,
        "audit {:?}",
        reader.audit_after(0, usize::MAX).unwrap()
    )
    .unwrap();
    writeln!(
        out,
        "audit after 1, 1: {:?}",
        reader.audit_after(1, 1).unwrap()
    )
    .unwrap();
    writeln!(
        out,
        "acme's audit {:?}",
        reader.org_audit_after("acme", 0, usize::MAX).unwrap()
    )
    .unwrap();
    writeln!(out, "audit head {:?}", reader.audit_head().unwrap()).unwrap();
    writeln!(out, "checkpoint {:?}", reader.latest_checkpoint().unwrap()).unwrap();
    writeln!(
        out,
        "feed {:?}",
        reader.events_after(0, usize::MAX).unwrap()
    )
    .unwrap();
    writeln!(
        out,
        "feed after 3, 2: {:?}",
        reader.events_after(3, 2).unwrap()
    )
    .unwrap();
    writeln!(out, "last event {}", reader.last_event_seq().unwrap()).unwrap();
    writeln!(
        out,
        "index problems {:?}",
        super::check_indexes(reader).unwrap()
    )
    .unwrap();
    out
}

/// The same transactions through redb and PostgreSQL: after each, every read answers the
/// same on both; the feed told of every kind of change.
#[test]
fn both_backends_store_index_and_feed_alike() {
    let Some(server) = postgres::schema::tests::server("both_backends_store_index_and_feed_alike")
    else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pg = runtime
        .block_on(postgres::Store::open(
            &crate::store::postgres::Target::parse(&server.url("postgres")).unwrap(),
            runtime.handle().clone(),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let redb = Store::open(dir.path()).unwrap();
    for (step, change) in steps().iter().enumerate() {
        let now = T0 + 10 * step as Millis;
        let txn = redb.begin_write().unwrap();
        let tables = txn.tables();
        change(&Tracked::new(&tables, now)).unwrap();
        let announced = tables.last_event();
        drop(tables);
        txn.commit(&Committing::durably, announced).unwrap();

        let session = pg.begin_write().unwrap();
        change(&Tracked::new(&session, now)).unwrap();
        session.commit().unwrap();

        let (embedded, shared) = (
            everything(&redb.read().unwrap()),
            everything(&*pg.read().unwrap()),
        );
        assert_eq!(embedded, shared, "after step {step}");
        assert!(embedded.contains("index problems []"), "{embedded}");
    }
    let feed = redb.read().unwrap().events_after(0, usize::MAX).unwrap();
    for kind in [
        EventKind::MemberAdded,
        EventKind::MemberActivated,
        EventKind::RoleChanged,
        EventKind::MemberExpired,
        EventKind::MemberRemoved,
        EventKind::BindingChanged,
    ] {
        assert!(
            feed.iter().any(|(_, event)| event.kind == kind),
            "no {kind} in {feed:?}"
        );
    }
}

/// Where a backend's audit log is changed behind the daemon's back, as an attacker with
/// the database in hand would.
trait Tamper {
    fn store(&self) -> &Store;
    /// Writes record `seq` as `text` with `hash`, whatever was there.
    fn set(&self, seq: u64, text: &str, hash: &[u8; 32]);
    fn remove(&self, seq: u64);
    /// Removes the signed checkpoint of record `seq`.
    fn remove_checkpoint(&self, seq: u64);
}

/// A redb store, and the directory it lives in (kept for as long as the store).
struct RedbTamper(Store, #[allow(dead_code)] tempfile::TempDir);

impl Tamper for RedbTamper {
    fn store(&self) -> &Store {
        &self.0
    }

    fn set(&self, seq: u64, text: &str, hash: &[u8; 32]) {
        self.raw(|tables| tables.raw_audit_set(seq, text, hash));
    }

    fn remove(&self, seq: u64) {
        self.raw(|tables| tables.raw_audit_remove(seq));
    }

    fn remove_checkpoint(&self, seq: u64) {
        self.raw(|tables| tables.raw_checkpoint_remove(seq));
    }
}

impl RedbTamper {
    /// Changes the file's tables as they are, in a transaction of its own.
    fn raw(&self, change: impl FnOnce(&super::redb::Tables<'_>)) {
        let txn = self.0.begin_write().unwrap();
        let tables = txn.tables();
        let super::engine::Tables::Redb(raw) = &tables else {
            unreachable!("a redb store");
        };
        change(raw);
        let announced = tables.last_event();
        drop(tables);
        txn.commit(&Committing::durably, announced).unwrap();
    }
}

struct PgTamper {
    store: Store,
    client: tokio_postgres::Client,
    runtime: tokio::runtime::Runtime,
    _server: compartment_pgtest::Postgres,
}

impl Tamper for PgTamper {
    fn store(&self) -> &Store {
        &self.store
    }

    fn set(&self, seq: u64, text: &str, hash: &[u8; 32]) {
        self.runtime
            .block_on(self.client.execute(
                "UPDATE audit_log SET record = $2, hash = $3 WHERE seq = $1",
                &[&(seq as i64), &text, &&hash[..]],
            ))
            .unwrap();
    }

    fn remove(&self, seq: u64) {
        self.runtime
            .block_on(
                self.client
                    .execute("DELETE FROM audit_log WHERE seq = $1", &[&(seq as i64)]),
            )
            .unwrap();
    }

    fn remove_checkpoint(&self, seq: u64) {
        self.runtime
            .block_on(self.client.execute(
                "DELETE FROM audit_checkpoints WHERE seq = $1",
                &[&(seq as i64)],
            ))
            .unwrap();
    }
}

/// Each backend with five records in its log, fresh for each kind of tampering.
fn tamperable(test: &str) -> Vec<Box<dyn Tamper>> {
    let dir = tempfile::tempdir().unwrap();
    let mut backends: Vec<Box<dyn Tamper>> =
        vec![Box::new(RedbTamper(Store::open(dir.path()).unwrap(), dir))];
    if let Some(server) = postgres::schema::tests::server(test) {
        let runtime = postgres::schema::tests::store_runtime();
        let store = postgres::schema::tests::open_store(&server, &runtime);
        let client = runtime.block_on(postgres::schema::tests::connect(&server));
        backends.push(Box::new(PgTamper {
            store,
            client,
            runtime,
            _server: server,
        }));
    }
    for backend in &backends {
        for n in 0..5 {
            let txn = backend.store().begin_write().unwrap();
            let tables = txn.tables();
            Tracked::new(&tables, T0)
                .append_audit(&record(T0 + n, "organization.user.invite", Some("acme")))
                .unwrap();
            let announced = tables.last_event();
            drop(tables);
            txn.commit(&Committing::durably, announced).unwrap();
        }
    }
    backends
}

/// The log's records 1 to 5 as stored.
fn sealed(store: &Store) -> Vec<super::Sealed> {
    store.read().unwrap().audit_after(0, usize::MAX).unwrap()
}

/// What verifying says: the record where it breaks, and why.
fn verdict(store: &Store, anchors: &[Anchor]) -> Option<(u64, String)> {
    let verified = super::chain::verify(&store.read().unwrap(), anchors).unwrap();
    verified.broken.map(|broken| (broken.seq, broken.problem))
}

/// Every kind of tampering with the stored log is found, at the record where it is, on
/// both backends: an edited field, a removed record, two swapped, the tail cut off, and
/// a rewrite that sealed the chain anew, which only a checkpoint kept elsewhere can find.
#[test]
fn every_kind_of_tampering_is_found_where_it_is() {
    let test = "every_kind_of_tampering_is_found_where_it_is";
    let checkpoint = |records: &[super::Sealed]| Anchor {
        seq: 5,
        hash: records[4].hash,
        source: "the checkpoint given".into(),
    };
    for backend in tamperable(test) {
        let records = sealed(backend.store());
        assert_eq!(records.len(), 5);
        assert_eq!(verdict(backend.store(), &[checkpoint(&records)]), None);
    }

    // A field edited, the hash left as it was.
    for backend in tamperable(test) {
        let third = &sealed(backend.store())[2];
        let edited = third.text.replace("\"viewer\"", "\"admin\"");
        assert_ne!(edited, third.text);
        backend.set(3, &edited, &third.hash);
        let (seq, problem) = verdict(backend.store(), &[]).unwrap();
        assert_eq!(seq, 3);
        assert!(
            problem.contains("does not hash to its stored hash"),
            "{problem}"
        );
    }

    // A record removed.
    for backend in tamperable(test) {
        backend.remove(3);
        assert_eq!(
            verdict(backend.store(), &[]),
            Some((3, "record 3 is missing: it was removed".into()))
        );
    }

    // Two records swapped.
    for backend in tamperable(test) {
        let records = sealed(backend.store());
        backend.set(2, &records[2].text, &records[2].hash);
        backend.set(3, &records[1].text, &records[1].hash);
        assert_eq!(
            verdict(backend.store(), &[]),
            Some((
                2,
                "record 2 holds the text of record 3: records were moved or swapped".into()
            ))
        );
    }

    // The tail cut off after the checkpoint was copied away: what remains is a whole
    // chain, and only the checkpoint (or the daemon's memory) says more was there.
    for backend in tamperable(test) {
        let records = sealed(backend.store());
        backend.remove(5);
        backend.remove(4);
        assert_eq!(verdict(backend.store(), &[]), None);
        assert_eq!(
            verdict(backend.store(), &[checkpoint(&records)]),
            Some((
                4,
                "the log ends at record 3, but the checkpoint given covers records up to 5: records 4 to 5 were cut off".into()
            ))
        );
    }

    // Record 3 rewritten and every hash from it sealed anew: the chain holds, the
    // checkpoint does not.
    for backend in tamperable(test) {
        let records = sealed(backend.store());
        let mut previous = records[1].hash;
        for original in &records[2..] {
            let text = if original.seq == 3 {
                original.text.replace("\"viewer\"", "\"admin\"")
            } else {
                original.text.clone()
            };
            let hash = super::chain::link(&previous, &text);
            backend.set(original.seq, &text, &hash);
            previous = hash;
        }
        assert_eq!(verdict(backend.store(), &[]), None);
        assert_eq!(
            verdict(backend.store(), &[checkpoint(&records)]),
            Some((
                5,
                "record 5 differs from the checkpoint given: the log up to it was rewritten".into()
            ))
        );
    }
}

/// Runs `change` in a transaction of its own on `store`, at `now`, and commits it.
fn write<T>(store: &Store, now: Millis, change: impl FnOnce(&super::Tracked<'_, '_>) -> T) -> T {
    let txn = store.begin_write().unwrap();
    let tables = txn.tables();
    let done = change(&Tracked::new(&tables, now));
    let announced = tables.last_event();
    drop(tables);
    txn.commit(&Committing::durably, announced).unwrap();
    done
}

/// Retention on both backends: what is older than the cutoff is pruned, a batch at a time,
/// behind a checkpoint of the last record pruned, never the last record or event; the
/// rest verifies from that checkpoint, the feed says what it no longer has, and removing
/// the checkpoint is found.
#[test]
fn retention_prunes_behind_a_checkpoint_and_the_rest_still_verifies() {
    const DAY: Millis = 24 * 3600 * 1000;
    let test = "retention_prunes_behind_a_checkpoint_and_the_rest_still_verifies";
    let signer = crate::checkpoint::Signer::from_secret(&[7; 32], "test/compartment-audit".into());
    let root = crate::rules::Caller {
        uid: 0,
        gid: 0,
        pid: None,
        superuser: true,
        user: Some("root".into()),
        groups: Default::default(),
    };
    let verify = |store: &Store| {
        crate::rules::audit::verify(
            &store.read().unwrap(),
            &root,
            &Default::default(),
            &signer,
            None,
        )
        .unwrap()
    };
    for backend in tamperable(test) {
        let store = backend.store();
        // Records 1 to 5 are at T0 (see `tamperable`); six days of changes follow, each
        // a membership's event and a record: records 6 to 11, events 1 to 6.
        for day in 1..=6 {
            let now = T0 + day * DAY;
            write(store, now, |txn| {
                let (org, email) = (format!("o{day}"), format!("u{day}@example.com"));
                txn.put_org(
                    &org,
                    &OrgRecord {
                        created_at: now,
                        created_by_uid: 0,
                        groups: Default::default(),
                    },
                )?;
                txn.put_account(&email, &account(AccountStatus::Pending))?;
                txn.put_membership(
                    &org,
                    &email,
                    &member(Role::Viewer, MemberStatus::Invited, Some(now + DAY)),
                    None,
                )?;
                txn.append_audit(&record(now, "organization.user.invite", Some(&org)))
            })
            .unwrap();
        }
        let now = T0 + 10 * DAY;
        // Older than three and a half days: records 1 to 8, events 1 to 3.
        let cutoff = T0 + 3 * DAY + DAY / 2;
        let pruned = write(store, now, |txn| {
            crate::rules::audit::prune(txn, &signer, cutoff, now)
        })
        .unwrap();
        assert_eq!(
            (pruned.records, pruned.events),
            (Some((1, 8)), Some((1, 3)))
        );
        let snapshot = store.read().unwrap();
        assert_eq!(snapshot.audit_after(0, 1).unwrap()[0].seq, 9);
        assert_eq!(snapshot.events_after(0, 1).unwrap()[0].0, 4);
        assert!(snapshot.checkpoint_at(8).unwrap().is_some());
        let noted = snapshot.audit_after(11, 1).unwrap()[0]
            .view()
            .unwrap()
            .entry;
        assert_eq!(
            (
                noted.event.as_str(),
                noted.actor.kind.as_str(),
                noted.detail.as_deref()
            ),
            (
                "audit.prune",
                "daemon",
                Some(
                    "records 1 to 8 and the feed's changes 1 to 3, from before \
                     2026-05-05T00:00:00.000Z, pruned; the log is verified from the \
                     checkpoint of record 8"
                )
            )
        );
        assert_eq!(pruned.head.map(|(seq, _)| seq), Some(12));
        // The rest verifies from the checkpoint of record 8.
        let verified = verify(store);
        assert_eq!(
            (verified.first, verified.last, verified.broken.clone()),
            (Some(9), Some(12), None)
        );
        assert!(
            verified.checked_against[0]
                .starts_with("the checkpoint records 1 to 8 were pruned behind"),
            "{verified:?}"
        );
        // A feed behind the pruned changes is told so; one past them, or of an
        // organization whose changes are kept, is not.
        assert_eq!(crate::events::pruned_after(&snapshot, 0).unwrap(), Some(4));
        assert_eq!(crate::events::pruned_after(&snapshot, 2).unwrap(), Some(4));
        assert_eq!(crate::events::pruned_after(&snapshot, 3).unwrap(), None);
        let batch = crate::events::batch_of(&snapshot, None, 1).unwrap();
        assert_eq!(batch.pruned, Some(4));
        let batch = crate::events::batch_of(
            &snapshot,
            crate::events::FeedOrg::named(&snapshot, "o5")
                .unwrap()
                .as_ref(),
            3,
        )
        .unwrap();
        assert_eq!((batch.pruned, batch.events.len()), (None, 1));
        drop(snapshot);

        // Nothing is younger than this cutoff, yet the last record and event stay.
        let later = now + DAY;
        let pruned = write(store, later, |txn| {
            crate::rules::audit::prune(txn, &signer, later, later)
        })
        .unwrap();
        assert_eq!(
            (pruned.records, pruned.events),
            (Some((9, 11)), Some((4, 5)))
        );
        let snapshot = store.read().unwrap();
        assert_eq!(snapshot.audit_after(0, 10).unwrap().len(), 2);
        assert_eq!(snapshot.last_event_seq().unwrap(), 6);
        assert_eq!(snapshot.events_after(0, 10).unwrap().len(), 1);
        drop(snapshot);
        let verified = verify(store);
        assert_eq!(
            (verified.first, verified.last, verified.broken.clone()),
            (Some(12), Some(13), None)
        );
        // The next record and event go on from the last.
        write(store, later, |txn| {
            txn.put_org(
                "o7",
                &OrgRecord {
                    created_at: later,
                    created_by_uid: 0,
                    groups: Default::default(),
                },
            )?;
            txn.put_account("u7@example.com", &account(AccountStatus::Pending))?;
            txn.put_membership(
                "o7",
                "u7@example.com",
                &member(Role::Viewer, MemberStatus::Invited, Some(later + DAY)),
                None,
            )?;
            txn.append_audit(&record(later, "organization.user.invite", Some("o7")))
        })
        .unwrap();
        assert_eq!(store.read().unwrap().last_event_seq().unwrap(), 7);
        assert_eq!(verify(store).last, Some(14));

        // Records removed from the front look pruned, but nothing vouches for it.
        backend.remove_checkpoint(11);
        let broken = verify(store).broken.unwrap();
        assert_eq!(
            (broken.seq, broken.problem.as_str()),
            (
                1,
                "records 1 to 11 are missing, and no checkpoint this daemon signed vouches \
                 that they were pruned: they were removed"
            )
        );
    }
}
