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
        super::check_indexes(&ReaderRef(reader)).unwrap()
    )
    .unwrap();
    out
}

/// `&dyn Reader` as a sized reader, for what takes `&impl Reader`.
struct ReaderRef<'a>(&'a dyn Reader);

impl Reader for ReaderRef<'_> {
    fn org(&self, name: &str) -> Result<Option<OrgRecord>> {
        self.0.org(name)
    }
    fn org_names(&self) -> Result<Vec<String>> {
        self.0.org_names()
    }
    fn account(&self, email: &str) -> Result<Option<AccountRecord>> {
        self.0.account(email)
    }
    fn binding(&self, uid: u32) -> Result<Option<BindingRecord>> {
        self.0.binding(uid)
    }
    fn accounts(&self) -> Result<Vec<(String, AccountRecord)>> {
        self.0.accounts()
    }
    fn membership(&self, org: &str, email: &str) -> Result<Option<MembershipRecord>> {
        self.0.membership(org, email)
    }
    fn members(&self, org: &str) -> Result<Vec<(String, MembershipRecord)>> {
        self.0.members(org)
    }
    fn members_after(
        &self,
        org: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, super::MemberRow)>> {
        self.0.members_after(org, after, limit)
    }
    fn active_admins(&self, org: &str, at_most: usize) -> Result<usize> {
        self.0.active_admins(org, at_most)
    }
    fn orgs_of(&self, email: &str) -> Result<Vec<String>> {
        self.0.orgs_of(email)
    }
    fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>> {
        self.0.token(hash)
    }
    fn current_org(&self, uid: u32) -> Result<Option<String>> {
        self.0.current_org(uid)
    }
    fn next_expiry(&self) -> Result<Option<Millis>> {
        self.0.next_expiry()
    }
    fn due_invitations_up_to(&self, now: Millis, limit: usize) -> Result<Vec<(String, String)>> {
        self.0.due_invitations_up_to(now, limit)
    }
    fn audit(&self) -> Result<Vec<AuditRecord>> {
        self.0.audit()
    }
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, super::EventRecord)>> {
        self.0.events_after(after, limit)
    }
    fn org_events_after(
        &self,
        org: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, super::EventRecord)>> {
        self.0.org_events_after(org, after, limit)
    }
    fn spent_tokens_due(&self, now: Millis, limit: usize) -> Result<Vec<TokenHash>> {
        self.0.spent_tokens_due(now, limit)
    }
    fn next_spent_token_due(&self) -> Result<Option<Millis>> {
        self.0.next_spent_token_due()
    }
    fn last_event_seq(&self) -> Result<u64> {
        self.0.last_event_seq()
    }
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
            &server.url("postgres"),
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
