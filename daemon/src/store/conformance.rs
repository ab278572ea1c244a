//! The backends against each other: the same changes written through each, every read
//! answers alike, byte for byte in its debug form. What one backend stores, indexes,
//! orders or derives for the feed differently from the other fails here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;

use compartmentctl::wire::{AccountStatus, EventKind, MemberStatus, Role};

use super::change::Tracked;
use super::{
    postgres, AccountRecord, AuditRecord, Backend as _, BindingRecord, Changes, Committing,
    MembershipRecord, Millis, OrgRecord, Provenance, Reader, Result, Store, TokenHash, TokenRecord,
    TokenState, UnixUser,
};

const T0: Millis = 1_777_636_800_000;
const UIDS: [u32; 4] = [0, 1000, 1001, 4_294_967_294];
const KEYS: [[u8; 32]; 3] = [[1; 32], [2; 32], [0xff; 32]];

fn member(role: Role, status: MemberStatus, expires_at: Option<Millis>) -> MembershipRecord {
    MembershipRecord {
        role,
        uid: (status == MemberStatus::Active).then_some(1000),
        status,
        invited_by: "uid 0 (root)".into(),
        invited_at: T0,
        expires_at,
        token_hash: expires_at.map(|_| TokenHash(KEYS[0])),
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
            txn.append_audit(&AuditRecord {
                at: T0,
                uid: Some(0),
                pid: Some(42),
                action: "org.create".into(),
                org: Some("acme".into()),
                target: Some("a@example.com".into()),
                detail: None,
            })
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
            txn.append_audit(&AuditRecord {
                at: T0 + 7,
                uid: None,
                pid: None,
                action: "sweep".into(),
                org: None,
                target: None,
                detail: Some("1 expired".into()),
            })
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
    writeln!(out, "next expiry {:?}", reader.next_expiry().unwrap()).unwrap();
    for now in [T0, T0 + 50, T0 + 100, Millis::MAX] {
        writeln!(
            out,
            "due at {now}: {:?}",
            reader.due_invitations(now).unwrap()
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
        reader.due_invitations_up_to(Millis::MAX, 1).unwrap()
    )
    .unwrap();
    writeln!(
        out,
        "next spent {:?}",
        reader.next_spent_token_due().unwrap()
    )
    .unwrap();
    writeln!(out, "audit {:?}", reader.audit().unwrap()).unwrap();
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
