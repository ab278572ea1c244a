//! Property tests of the rules: random sequences of invitations, activations, grants,
//! removals, expiry and passing time, from random callers, run through the real rule
//! functions on a temporary store, with the invariants of DESIGN §3 and §4 checked after
//! every step.
//!
//! Each step runs in its own write transaction, committed only when the rule returns
//! `Ok`, as the writer does. The model is deliberately small: the tokens issued during the
//! sequence (text, expiry, whether an activation with it ever succeeded). Everything else
//! is read back from the store, before and after the step. After every step:
//!
//! - an organization that had an active admin still has one (the last-admin rule);
//! - a successful invite, grant or removal was made by a caller whose role (admin for a
//!   superuser) covers the action, the role given and the target's role (the caps);
//! - no token activates twice, at or after its expiry, once replaced, or for a superuser;
//! - the indexes agree with the tables (`check_indexes`, `next_due`, the expiry index
//!   both ways, `account_orgs`, uid bindings both ways), and every pending token belongs
//!   to the invited membership that holds it;
//! - a refused step changed nothing, and no rule failed inside (`internal`);
//! - `authz.check`, asked before an invite, grant, removal or list, of the permission it
//!   needs, said yes exactly when the rule then let the caller past its gate (who they are,
//!   which organization, whether their role holds the permission).
//!
//! The same sequences also run with group commit: each step's change goes through the
//! writer's batch in one transaction with companion changes before and after it, some
//! refused before writing, some refused after writing (which sends the batch back to one
//! transaction per change), some accepted; every invariant above must still hold, and the
//! companions must leave exactly their own trace.
//!
//! Both run on the embedded store and, fewer of them (each on a database of its own), on
//! PostgreSQL.
//!
//! `PROPTEST_CASES=5000 cargo test -p compartmentd properties` runs a deeper search than
//! the 128 sequences CI runs on each store (32 on PostgreSQL).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use compartmentctl::wire::{
    methods, token_from_url_or_token, AccountStatus, Decision, ErrorKind, Gated, MemberStatus,
    OrgCreateParams, Role, RoleGrantParams, UserInviteParams, UserRemoveParams,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::authz::{self, Subject};
use super::{identity, invitations, members, orgs, Caller, Policy, RuleError};
use crate::store::{
    self, check_indexes, AccountRecord, Backend as _, Changes, Committing, MembershipRecord,
    Millis, Reader, Store, TokenRecord, TokenState, Tracked,
};
use crate::token::{key_of, Token};
use crate::writer;

const T0: Millis = 1_777_636_800_000; // 2026-05-01T12:00:00Z
const SECOND: Millis = 1000;
const MINUTE: Millis = 60 * SECOND;
const HOUR: Millis = 60 * MINUTE;
const DAY: Millis = 24 * HOUR;
const DEFAULT_TTL: Millis = 7 * DAY;

/// Organizations the operations name: two created before the first step, and one that
/// exists only once a `Create` step makes it.
const ORGS: [&str; 3] = ["acme", "beta", "gamma"];
/// The accounts the operations name, normalized.
const ACCOUNTS: [&str; 6] = [
    "a@example.com",
    "b@example.com",
    "c@example.com",
    "d@example.com",
    "e@example.com",
    "f@example.com",
];
/// The same account as `c@example.com`, as a person might type it.
const C_AS_TYPED: &str = "  C@Example.COM ";
const NOT_AN_EMAIL: &str = "not-an-email";
/// The non-superuser callers; uid 0 is the superuser.
const UIDS: [u32; 6] = [1001, 1002, 1003, 1004, 1005, 1006];
const PUBLIC_URL: &str = "https://your-compartment-host";

// ---------------------------------------------------------------------------------------
// Operations

/// Who calls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    /// uid 0, a superuser.
    Root,
    /// One of [`UIDS`], whoever it is bound to.
    Uid(u32),
    /// The person who owns an account of [`ACCOUNTS`]: the uid bound to it, else their
    /// own uid (the one at the same index of [`UIDS`]).
    Of(&'static str),
    /// For an activation: the person the token was issued to, as [`Who::Of`].
    Invitee,
}

impl Who {
    /// The caller this is, in the store as it is before the step; `invitee` is the
    /// account an activation's token was issued to.
    fn caller(self, reader: &impl Reader, invitee: Option<&str>) -> Caller {
        let uid = match self {
            Who::Root => 0,
            Who::Uid(uid) => uid,
            Who::Of(email) => owner_uid(reader, email),
            Who::Invitee => invitee.map_or(UIDS[0], |email| owner_uid(reader, email)),
        };
        Caller {
            uid,
            gid: uid,
            pid: Some(2),
            superuser: uid == 0,
            user: Some(super::tests::user_name(uid).into()),
            groups: Default::default(),
        }
    }
}

fn owner_uid(reader: &impl Reader, email: &str) -> u32 {
    let own = ACCOUNTS
        .iter()
        .position(|a| *a == email)
        .map_or(UIDS[0], |i| UIDS[i]);
    reader
        .account(email)
        .unwrap()
        .and_then(|a| a.uid)
        .unwrap_or(own)
}

impl fmt::Debug for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Root => f.write_str("root"),
            Who::Uid(uid) => write!(f, "uid{uid}"),
            Who::Of(email) => write!(f, "owner of {email}"),
            Who::Invitee => f.write_str("invitee"),
        }
    }
}

/// A span of time, shown the way people write it.
#[derive(Clone, Copy)]
struct Span(Millis);

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_duration(Duration::from_millis(self.0))
        )
    }
}

/// The token an activation presents.
#[derive(Clone, Debug)]
enum TokenPick {
    /// The n-th most recently issued token (0 is the latest), whatever became of it.
    Recent(usize),
    /// Something that was never issued.
    Garbage(String),
}

#[derive(Clone, Debug)]
enum Op {
    Invite {
        by: Who,
        org: Option<&'static str>,
        email: &'static str,
        role: Role,
        resend: bool,
        expires_in: Option<&'static str>,
    },
    Activate {
        by: Who,
        token: TokenPick,
        as_url: bool,
    },
    Grant {
        by: Who,
        org: Option<&'static str>,
        email: &'static str,
        role: Role,
    },
    Remove {
        by: Who,
        org: Option<&'static str>,
        email: &'static str,
    },
    /// The sweeper's `expire_due` at the current time.
    Expire,
    /// Time moves forward.
    Advance(Span),
    /// Time moves to the earliest pending expiry, give or take a millisecond (never back).
    ToNextExpiry(i8),
    Create {
        by: Who,
        name: &'static str,
        admin: &'static str,
    },
    Use {
        by: Who,
        name: &'static str,
    },
    /// `user.list`, `org.list` and `whoami`: reads that must never fail inside.
    Read {
        by: Who,
        org: Option<&'static str>,
    },
}

/// A member seated before the first step: invited by root, and activated by its owner
/// when `active`.
#[derive(Clone, Debug)]
struct Seat {
    org: &'static str,
    email: &'static str,
    role: Role,
    active: bool,
}

fn seat() -> impl Strategy<Value = Seat> {
    (
        proptest::sample::select(ORGS[..2].to_vec()),
        proptest::sample::select(ACCOUNTS.to_vec()),
        role(),
        proptest::bool::weighted(0.75),
    )
        .prop_map(|(org, email, role, active)| Seat {
            org,
            email,
            role,
            active,
        })
}

impl Op {
    /// Who calls, for the step log (activations name their resolved caller themselves).
    fn by(&self) -> Option<Who> {
        match self {
            Op::Invite { by, .. }
            | Op::Grant { by, .. }
            | Op::Remove { by, .. }
            | Op::Create { by, .. }
            | Op::Use { by, .. }
            | Op::Read { by, .. } => Some(*by),
            Op::Activate { .. } | Op::Expire | Op::Advance(_) | Op::ToNextExpiry(_) => None,
        }
    }
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        2 => Just(Who::Root),
        5 => proptest::sample::select(ACCOUNTS.to_vec()).prop_map(Who::Of),
        1 => proptest::sample::select(UIDS.to_vec()).prop_map(Who::Uid),
    ]
}

fn org() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        4 => Just(Some(ORGS[0])),
        4 => Just(Some(ORGS[1])),
        1 => Just(Some(ORGS[2])),
        1 => Just(None),
    ]
}

fn email() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        12 => proptest::sample::select(ACCOUNTS.to_vec()),
        1 => Just(C_AS_TYPED),
        1 => Just(NOT_AN_EMAIL),
    ]
}

fn role() -> impl Strategy<Value = Role> {
    proptest::sample::select(Role::ALL.to_vec())
}

fn expires_in() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        4 => Just(None),
        3 => proptest::sample::select(vec!["1s", "90s", "1h", "2days", "30days"]).prop_map(Some),
        1 => proptest::sample::select(vec!["0s", "31days", "soon"]).prop_map(Some),
    ]
}

fn token_pick() -> impl Strategy<Value = TokenPick> {
    prop_oneof![
        8 => (0usize..6).prop_map(TokenPick::Recent),
        // Token-shaped, but never all digits as the issued ones are.
        1 => "[A-Za-z_-][A-Za-z0-9_-]{42}".prop_map(TokenPick::Garbage),
        1 => "[ -~]{0,60}".prop_map(TokenPick::Garbage),
    ]
}

fn span() -> impl Strategy<Value = Span> {
    prop_oneof![
        proptest::sample::select(vec![
            1,
            SECOND,
            MINUTE,
            HOUR,
            DAY,
            3 * DAY,
            7 * DAY,
            8 * DAY
        ]),
        0..10 * DAY,
    ]
    .prop_map(Span)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (who(), org(), email(), role(), any::<bool>(), expires_in()).prop_map(
            |(by, org, email, role, resend, expires_in)| Op::Invite {
                by,
                org,
                email,
                role,
                resend,
                expires_in,
            }
        ),
        6 => (
            prop_oneof![
                6 => Just(Who::Invitee),
                2 => proptest::sample::select(UIDS.to_vec()).prop_map(Who::Uid),
                1 => Just(Who::Root),
            ],
            token_pick(),
            any::<bool>()
        )
            .prop_map(|(by, token, as_url)| Op::Activate { by, token, as_url }),
        5 => (who(), org(), email(), role())
            .prop_map(|(by, org, email, role)| Op::Grant { by, org, email, role }),
        3 => (who(), org(), email()).prop_map(|(by, org, email)| Op::Remove { by, org, email }),
        2 => Just(Op::Expire),
        3 => span().prop_map(Op::Advance),
        2 => (-1i8..=1).prop_map(Op::ToNextExpiry),
        1 => (who(), proptest::sample::select(ORGS.to_vec()), email())
            .prop_map(|(by, name, admin)| Op::Create { by, name, admin }),
        1 => (who(), proptest::sample::select(ORGS.to_vec()))
            .prop_map(|(by, name)| Op::Use { by, name }),
        1 => (who(), org()).prop_map(|(by, org)| Op::Read { by, org }),
    ]
}

// ---------------------------------------------------------------------------------------
// The world: a store, the time, and the tokens issued so far

/// A token issued during the sequence.
#[derive(Debug)]
struct Issued {
    text: String,
    org: String,
    email: String,
    expires_at: Millis,
    /// When an activation with it succeeded.
    used_at: Option<Millis>,
}

/// A companion change in a step's batch. Each writes, if at all, only the current
/// organization of a uid of its own above [`NOISE_UID`], which no snapshot looks at.
#[derive(Debug, Clone, Copy)]
enum Noise {
    /// Reads, then refuses without writing.
    Refuses,
    /// Writes, then refuses: its write must vanish, and the batch runs one by one.
    WritesThenRefuses,
    /// Writes and succeeds.
    Accepted,
}

const NOISE_UID: u32 = 100_000;

fn noise() -> impl Strategy<Value = Noise> {
    prop_oneof![
        3 => Just(Noise::Refuses),
        1 => Just(Noise::WritesThenRefuses),
        3 => Just(Noise::Accepted),
    ]
}

struct World {
    store: Store,
    /// With group commit: the batch shapes, used in turn by each write; empty for one
    /// transaction per change.
    shapes: Vec<Vec<Noise>>,
    /// Writes so far, which picks the next shape and the companions' uids.
    writes: std::cell::Cell<usize>,
    _dir: tempfile::TempDir,
    policy: Policy,
    now: Millis,
    issued: Vec<Issued>,
    tokens_made: u32,
    /// One line per step and its outcome, shown when an invariant breaks.
    log: Vec<String>,
}

/// Everything a refused step must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    members: Vec<(String, Vec<(String, MembershipRecord)>)>,
    accounts: Vec<Option<AccountRecord>>,
    bindings: Vec<Option<String>>,
    current_orgs: Vec<Option<String>>,
    tokens: Vec<Option<TokenRecord>>,
    next_due: Option<Millis>,
    audit_len: usize,
}

/// Fails the test case with a message when `cond` is false.
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($fmt)+)));
        }
    };
}

fn all_uids() -> impl Iterator<Item = u32> {
    std::iter::once(0).chain(UIDS)
}

/// The caller's role in `org` as the rules should see it: admin for a superuser, else the
/// role of the bound account's active membership.
fn effective_role(reader: &impl Reader, caller: Caller, org: &str) -> Option<Role> {
    reader.org(org).unwrap()?;
    if caller.superuser {
        return Some(Role::Admin);
    }
    let email = reader.bound_email(caller.uid).unwrap()?;
    reader
        .membership(org, &email)
        .unwrap()
        .filter(|m| m.status == MemberStatus::Active)
        .map(|m| m.role)
}

fn orgs_with_active_admin(reader: &impl Reader) -> BTreeSet<String> {
    reader
        .org_names()
        .unwrap()
        .into_iter()
        .filter(|org| {
            reader
                .members(org)
                .unwrap()
                .iter()
                .any(|(_, m)| m.is_active_admin())
        })
        .collect()
}

fn ttl_millis(expires_in: Option<&str>) -> Millis {
    expires_in.map_or(DEFAULT_TTL, |text| {
        u64::try_from(humantime::parse_duration(text).unwrap().as_millis()).unwrap()
    })
}

/// What a step did, for the log.
type Outcome = Result<String, RuleError>;

fn show(outcome: &Outcome) -> String {
    match outcome {
        Ok(text) => format!("ok {text}"),
        Err(err) => format!("refused {}: {err}", err.kind()),
    }
}

/// Where a world keeps its store.
#[derive(Clone, Copy)]
enum Engine<'w> {
    /// A redb file of its own.
    Redb,
    /// A database of its own on a property test's PostgreSQL server.
    Postgres(&'w Worlds),
}

/// A PostgreSQL server a property test's worlds share, each in a database of its own,
/// stopped (and its directory removed) when the test ends.
struct Worlds {
    server: compartment_pgtest::Postgres,
    runtime: tokio::runtime::Runtime,
    made: std::sync::atomic::AtomicUsize,
}

impl Worlds {
    /// A server for `test`; `None` (said loudly) when it cannot start outside CI.
    fn start(test: &str) -> Option<Worlds> {
        let server = crate::store::postgres::schema::tests::server(test)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Some(Worlds {
            server,
            runtime,
            made: std::sync::atomic::AtomicUsize::new(0),
        })
    }
}

impl World {
    /// An empty store at `T0`.
    fn on(engine: Engine<'_>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = match engine {
            Engine::Redb => Store::open(dir.path()).unwrap(),
            Engine::Postgres(worlds) => {
                let n = worlds
                    .made
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let name = format!("world{n}");
                worlds.server.create_database(&name).unwrap();
                let target =
                    crate::store::postgres::Target::parse(&worlds.server.url(&name)).unwrap();
                worlds
                    .runtime
                    .block_on(Store::open_postgres(
                        &target,
                        worlds.runtime.handle().clone(),
                    ))
                    .unwrap()
            }
        };
        World::with(store, dir)
    }

    /// An empty embedded store at `T0`.
    fn empty() -> World {
        World::on(Engine::Redb)
    }

    fn with(store: Store, dir: tempfile::TempDir) -> World {
        World {
            store,
            shapes: Vec::new(),
            writes: std::cell::Cell::new(0),
            _dir: dir,
            policy: Policy {
                public_url: PUBLIC_URL.into(),
                invitation_ttl: Duration::from_millis(DEFAULT_TTL),
            },
            now: T0,
            issued: Vec::new(),
            tokens_made: 0,
            log: Vec::new(),
        }
    }

    /// The standard start: `acme`, whose admin a@ is active, and `beta`, whose admin b@
    /// is invited; then `population` seated by root.
    fn setup(&mut self, population: &[Seat]) -> Result<(), TestCaseError> {
        let world = self;
        for (org, admin) in [("acme", ACCOUNTS[0]), ("beta", ACCOUNTS[1])] {
            let create = Op::Create {
                by: Who::Root,
                name: org,
                admin,
            };
            world.step(&create)?;
        }
        let activate = Op::Activate {
            by: Who::Invitee,
            token: TokenPick::Recent(1),
            as_url: true,
        };
        world.step(&activate)?;
        for seat in population {
            let issued = world.issued.len();
            world.step(&Op::Invite {
                by: Who::Root,
                org: Some(seat.org),
                email: seat.email,
                role: seat.role,
                resend: false,
                expires_in: None,
            })?;
            if seat.active && world.issued.len() > issued {
                world.step(&Op::Activate {
                    by: Who::Invitee,
                    token: TokenPick::Recent(0),
                    as_url: false,
                })?;
            }
        }
        world.log.push("-- population seated --".into());
        Ok(())
    }

    /// Runs `change` in a write transaction, committing only when it succeeds, as the
    /// writer does: alone, or with group commit in a batch of the next shape. (Not
    /// durable: a crash is not what is tested here, and it is faster.)
    fn write<T: Send>(
        &self,
        mut change: impl FnMut(&Tracked<'_, '_>) -> Result<T, RuleError> + Send,
    ) -> Result<T, RuleError> {
        let not_durable = Committing::without_sync;
        let n = self.writes.get();
        self.writes.set(n + 1);
        let Some(shape) = (!self.shapes.is_empty()).then(|| &self.shapes[n % self.shapes.len()])
        else {
            let txn = self.store.begin_write().unwrap();
            let result = {
                let tables = txn.tables();
                change(&Tracked::new(&tables, self.now))
            };
            if result.is_ok() {
                txn.commit(&not_durable, crate::store::Announcement::default())
                    .unwrap();
            } else {
                txn.abort().unwrap();
            }
            return result;
        };
        let (step, mut reply) = writer::job(move |txn: &Tracked<'_, '_>, _| change(txn));
        let mut jobs = Vec::new();
        let mut companions = Vec::new();
        for (i, noise) in shape.iter().copied().enumerate() {
            let uid = NOISE_UID + u32::try_from(n * 8 + i).unwrap();
            let (job, reply) = writer::job(move |txn: &Tracked<'_, '_>, _| {
                let seen = txn.current_org(uid)?;
                assert_eq!(seen, None, "uid {uid} was never written before");
                match noise {
                    Noise::Refuses => Err(RuleError::OrgNotFound("noise".into())),
                    // An organization the standard start made: PostgreSQL's foreign key
                    // refuses a current organization that does not exist.
                    Noise::WritesThenRefuses => {
                        txn.set_current_org(uid, "acme")?;
                        Err(RuleError::OrgNotFound("noise".into()))
                    }
                    Noise::Accepted => Ok(txn.set_current_org(uid, "acme")?),
                }
            });
            jobs.push(job);
            companions.push((uid, noise, reply));
        }
        // The step's change in the middle, companions before and after it.
        jobs.insert(shape.len() / 2, step);
        let clock = crate::clock::FakeClock::new(self.now);
        writer::apply_batch(&self.store, &clock, jobs, &not_durable);
        let after = self.store.read().unwrap();
        for (uid, noise, mut reply) in companions {
            let answer = reply.try_recv().unwrap();
            let written = after.current_org(uid).unwrap();
            match noise {
                Noise::Accepted => assert!(
                    answer.is_ok() && written.is_some(),
                    "{noise:?} left {written:?}, answered {answer:?}"
                ),
                _ => assert!(
                    matches!(answer, Err(RuleError::OrgNotFound(_))) && written.is_none(),
                    "{noise:?} left {written:?}, answered {answer:?}"
                ),
            }
        }
        reply.try_recv().unwrap()
    }

    /// A token with a known text: 43 digits, distinct from every garbage pick.
    fn fresh_token(&mut self) -> Token {
        self.tokens_made += 1;
        Token::from_text(&format!("{:0>43}", self.tokens_made))
    }

    fn snapshot(&self, reader: &impl Reader) -> Snapshot {
        let members = reader
            .org_names()
            .unwrap()
            .into_iter()
            .map(|org| {
                let members = reader.members(&org).unwrap();
                (org, members)
            })
            .collect();
        Snapshot {
            members,
            accounts: ACCOUNTS
                .iter()
                .map(|e| reader.account(e).unwrap())
                .collect(),
            bindings: all_uids()
                .map(|uid| reader.bound_email(uid).unwrap())
                .collect(),
            current_orgs: all_uids()
                .map(|uid| reader.current_org(uid).unwrap())
                .collect(),
            tokens: self
                .issued
                .iter()
                .map(|t| reader.token(&key_of(&t.text)).unwrap())
                .collect(),
            next_due: reader.next_due().unwrap(),
            audit_len: reader.audit().unwrap().len(),
        }
    }

    /// Runs one step and checks every invariant after it.
    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let pre = self.store.read().unwrap();
        let before = self.snapshot(&pre);
        let uid = match op.by() {
            Some(by) => format!(" [uid {}]", by.caller(&pre, None).uid),
            None => String::new(),
        };
        // What `authz.check` says, before the step, of the permission the step's method
        // is declared to need.
        let gate = match op {
            Op::Invite { by, org, .. } => Some((by, org, methods::UserInvite::NEEDS)),
            Op::Grant { by, org, .. } => Some((by, org, methods::RoleGrant::NEEDS)),
            Op::Remove { by, org, .. } => Some((by, org, methods::UserRemove::NEEDS)),
            Op::Read { by, org } => Some((by, org, methods::UserList::NEEDS)),
            _ => None,
        };
        let decided = gate.map(|(by, org, permission)| {
            let subject = Subject::Uid {
                caller: by.caller(&pre, None),
                email: None,
            };
            authz::decide(&pre, &subject, permission, *org, self.now)
        });
        let outcome = match op {
            Op::Invite {
                by,
                org,
                email,
                role,
                resend,
                expires_in,
            } => self.invite(&pre, *by, *org, email, *role, *resend, *expires_in),
            Op::Activate { by, token, as_url } => self.activate(&pre, *by, token, *as_url),
            Op::Grant {
                by,
                org,
                email,
                role,
            } => self.grant(&pre, *by, *org, email, *role),
            Op::Remove { by, org, email } => self.remove(&pre, *by, *org, email),
            Op::Expire => self.expire(&pre),
            Op::Advance(span) => {
                self.now = self.now.saturating_add(span.0);
                Ok(Ok(format!("now T0+{:?}", Span(self.now - T0))))
            }
            Op::ToNextExpiry(offset) => {
                if let Some(next) = pre.next_due().unwrap() {
                    let target = next.saturating_add_signed(i64::from(*offset));
                    self.now = self.now.max(target);
                }
                Ok(Ok(format!("now T0+{:?}", Span(self.now - T0))))
            }
            Op::Create { by, name, admin } => self.create(&pre, *by, name, admin),
            Op::Use { by, name } => self.use_org(&pre, *by, name),
            Op::Read { by, org } => self.read(&pre, *by, *org),
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(failure) => {
                self.log.push(format!("{op:?}{uid}"));
                return Err(failure);
            }
        };
        self.log.push(format!("{op:?}{uid} => {}", show(&outcome)));
        if let Some(decided) = decided {
            check_gate(&decided, &outcome)?;
        }

        let post = self.store.read().unwrap();
        if let Err(err) = &outcome {
            check!(
                !matches!(err.kind(), ErrorKind::Internal | ErrorKind::Unavailable),
                "a rule failed inside: {err:?}"
            );
            check!(
                before == self.snapshot(&post),
                "a refused step changed the store"
            );
        }
        // The last-admin rule: an organization with an active admin keeps one.
        let admins_after = orgs_with_active_admin(&post);
        for org in orgs_with_active_admin(&pre) {
            check!(
                admins_after.contains(&org),
                "{org} had an active admin before the step and has none after it"
            );
        }
        self.check_store(&post)
    }

    /// Invariants of the store alone: indexes, expiry, tokens and bindings agree.
    fn check_store(&self, reader: &store::Snapshot) -> Result<(), TestCaseError> {
        let problems = check_indexes(reader).unwrap();
        check!(problems.is_empty(), "check_indexes: {problems:?}");

        let mut invited = BTreeMap::new();
        let mut member_orgs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for org in reader.org_names().unwrap() {
            for (email, m) in reader.members(&org).unwrap() {
                member_orgs
                    .entry(email.clone())
                    .or_default()
                    .insert(org.clone());
                match m.status {
                    MemberStatus::Invited => {
                        let (Some(expires_at), Some(hash)) = (m.expires_at, m.token_hash) else {
                            return Err(TestCaseError::fail(format!(
                                "invited ({org}, {email}) lacks an expiry or a token: {m:?}"
                            )));
                        };
                        let token = reader.token(&hash).unwrap();
                        check!(
                            token.as_ref().is_some_and(|t| t.state == TokenState::Pending
                                && t.org == org
                                && t.email == email
                                && t.expires_at == expires_at),
                            "invited ({org}, {email}) holds a token that is not its pending one: {token:?}"
                        );
                        invited.insert((org.clone(), email.clone()), expires_at);
                    }
                    MemberStatus::Active => check!(
                        m.expires_at.is_none() && m.token_hash.is_none(),
                        "active ({org}, {email}) keeps invitation fields: {m:?}"
                    ),
                    MemberStatus::Expired => check!(
                        m.expires_at.is_some() && m.token_hash.is_none(),
                        "expired ({org}, {email}) keeps a token or lost its expiry: {m:?}"
                    ),
                }
            }
        }
        // The expiry index: its first entry is the earliest invitation, and it holds the
        // invited memberships and nothing else.
        let next = reader.next_due().unwrap();
        check!(
            next == invited.values().min().copied(),
            "next_due is {next:?}, the earliest invitation expires at {:?}",
            invited.values().min()
        );
        let indexed: BTreeSet<(String, String)> = reader
            .due_memberships(Millis::MAX)
            .unwrap()
            .into_iter()
            .collect();
        let expected: BTreeSet<(String, String)> = invited.keys().cloned().collect();
        check!(
            indexed == expected,
            "pending_by_expiry holds {indexed:?}, the invited memberships are {expected:?}"
        );
        // account_orgs holds exactly the memberships.
        for email in ACCOUNTS {
            let orgs: BTreeSet<String> = reader.orgs_of(email).unwrap().into_iter().collect();
            let expected = member_orgs.remove(email).unwrap_or_default();
            check!(
                orgs == expected,
                "account_orgs says {email} is in {orgs:?}, memberships say {expected:?}"
            );
        }
        // Every pending token belongs to an invited membership that holds it.
        for issued in &self.issued {
            let hash = key_of(&issued.text);
            let record = reader.token(&hash).unwrap();
            let Some(record) = record else {
                return Err(TestCaseError::fail(format!(
                    "issued token for ({}, {}) is not stored",
                    issued.org, issued.email
                )));
            };
            if record.state == TokenState::Pending {
                let m = reader.membership(&record.org, &record.email).unwrap();
                check!(
                    m.as_ref().is_some_and(
                        |m| m.status == MemberStatus::Invited && m.token_hash == Some(hash)
                    ),
                    "pending token of ({}, {}) has membership {m:?}",
                    record.org,
                    record.email
                );
            }
            if issued.used_at.is_some() {
                check!(
                    record.state == TokenState::Used,
                    "a spent token is stored as {:?}",
                    record.state
                );
            }
        }
        // A uid is bound to at most one account and an account to at most one uid, both ways.
        for uid in all_uids() {
            if let Some(email) = reader.bound_email(uid).unwrap() {
                let account = reader.account(&email).unwrap();
                check!(
                    account
                        .as_ref()
                        .is_some_and(|a| a.uid == Some(uid) && a.status == AccountStatus::Active),
                    "uid {uid} is bound to {email}, whose account is {account:?}"
                );
            }
        }
        for email in ACCOUNTS {
            if let Some(uid) = reader.account(email).unwrap().and_then(|a| a.uid) {
                let bound = reader.bound_email(uid).unwrap();
                check!(
                    bound.as_deref() == Some(email),
                    "{email} names uid {uid}, which is bound to {bound:?}"
                );
            }
        }
        Ok(())
    }

    /// Records the token of an invitation that returned an activation URL.
    fn record_token(
        &mut self,
        invitation: &compartmentctl::wire::Invitation,
        token: &Token,
        expected_expiry: Millis,
    ) -> Result<(), TestCaseError> {
        match (&invitation.status, &invitation.activation_url) {
            (MemberStatus::Invited, Some(url)) => {
                check!(
                    token_from_url_or_token(url) == token.as_str()
                        && url.starts_with(&format!("{PUBLIC_URL}/activate?token=")),
                    "activation URL {url} does not carry the token issued"
                );
                let post = self.store.read().unwrap();
                let m = post.membership(&invitation.org, &invitation.email).unwrap();
                let expires_at = m.as_ref().and_then(|m| m.expires_at);
                check!(
                    expires_at == Some(expected_expiry),
                    "invitation expires at {expires_at:?}, not now + its lifetime ({expected_expiry})"
                );
                self.issued.push(Issued {
                    text: token.as_str().to_owned(),
                    org: invitation.org.clone(),
                    email: invitation.email.clone(),
                    expires_at: expected_expiry,
                    used_at: None,
                });
            }
            (MemberStatus::Active, None) => {}
            other => {
                return Err(TestCaseError::fail(format!(
                    "an invitation is {other:?}: invited with a URL, or active without one"
                )))
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn invite(
        &mut self,
        pre: &store::Snapshot,
        by: Who,
        org: Option<&str>,
        email: &str,
        role: Role,
        resend: bool,
        expires_in: Option<&str>,
    ) -> Result<Outcome, TestCaseError> {
        let caller = by.caller(pre, None);
        let token = self.fresh_token();
        let params = UserInviteParams {
            org: org.map(str::to_owned),
            email: email.to_owned(),
            role,
            expires_in: expires_in.map(str::to_owned),
            resend,
            unix_user: None,
            access_until: Default::default(),
        };
        let (policy, now) = (self.policy.clone(), self.now);
        let result = self
            .write(|txn| invitations::invite(txn, &caller, &params, None, &token, &policy, now));
        let invitation = match result {
            Ok(invitation) => invitation,
            Err(err) => return Ok(Err(err)),
        };
        // The grant cap, and inviting is for admins.
        let own = effective_role(pre, caller, &invitation.org);
        check!(
            own == Some(Role::Admin),
            "{by:?} invited to {} with role {own:?}",
            invitation.org
        );
        check!(
            Some(invitation.role) <= own,
            "{by:?} ({own:?}) invited someone as {}",
            invitation.role
        );
        let existing = pre.membership(&invitation.org, &invitation.email).unwrap();
        if let Some(existing) = &existing {
            check!(
                Some(existing.role) <= own,
                "{by:?} ({own:?}) re-invited a member whose role is {}",
                existing.role
            );
            let status = existing.status_at(now);
            check!(
                status != MemberStatus::Active && (status != MemberStatus::Invited || resend),
                "invited over a membership {status} without --resend ({resend})"
            );
        }
        let post = self.store.read().unwrap();
        let stored = post.membership(&invitation.org, &invitation.email).unwrap();
        check!(
            stored.as_ref().map(|m| m.role) == Some(invitation.role),
            "invitation as {} stored {stored:?}",
            invitation.role
        );
        drop(post);
        self.record_token(&invitation, &token, now + ttl_millis(expires_in))?;
        Ok(Ok(format!(
            "{} {} as {} {}",
            invitation.org, invitation.email, invitation.role, invitation.status
        )))
    }

    fn activate(
        &mut self,
        pre: &store::Snapshot,
        by: Who,
        pick: &TokenPick,
        as_url: bool,
    ) -> Result<Outcome, TestCaseError> {
        let now = self.now;
        let (index, text) = match pick {
            TokenPick::Recent(back) if *back < self.issued.len() => {
                let index = self.issued.len() - 1 - back;
                (Some(index), self.issued[index].text.clone())
            }
            TokenPick::Recent(_) => (None, "x".repeat(43)),
            TokenPick::Garbage(text) => {
                let index = self
                    .issued
                    .iter()
                    .position(|t| t.text == token_from_url_or_token(text));
                (index, text.clone())
            }
        };
        let input = if as_url {
            format!("{PUBLIC_URL}/activate?token={text}")
        } else {
            text.clone()
        };
        let invitee = index.map(|i| self.issued[i].email.clone());
        let caller = by.caller(pre, invitee.as_deref());
        let result = self.write(|txn| invitations::activate(txn, &caller, &input, now));
        let Some(index) = index else {
            // Never issued.
            if let Err(err) = &result {
                check!(
                    err.kind() == ErrorKind::InvalidToken,
                    "a token never issued was refused as {}",
                    err.kind()
                );
            }
            check!(
                result.is_err(),
                "a token never issued activated: {result:?}"
            );
            return Ok(result.map(|a| format!("{a:?}")));
        };
        let issued = &self.issued[index];
        let label = format!("token #{index} of ({}, {})", issued.org, issued.email);
        let activated = match result {
            Ok(activated) => activated,
            Err(err) => {
                if issued.used_at.is_some() {
                    check!(
                        err.kind() == ErrorKind::TokenUsed,
                        "spent {label} was refused as {}, not token_used",
                        err.kind()
                    );
                } else if now >= issued.expires_at {
                    check!(
                        matches!(
                            err.kind(),
                            ErrorKind::TokenExpired | ErrorKind::InvalidToken
                        ),
                        "expired {label} was refused as {}",
                        err.kind()
                    );
                }
                return Ok(Err(err));
            }
        };
        // Single use, unexpired, current, and never by a superuser.
        check!(
            issued.used_at.is_none(),
            "{label} activated twice: at {:?} and at {now}",
            issued.used_at
        );
        check!(
            now < issued.expires_at,
            "{label} activated at {now}, at or after its expiry {}",
            issued.expires_at
        );
        check!(!caller.superuser, "a superuser activated {label}");
        check!(
            activated.org == issued.org && activated.email == issued.email,
            "{label} activated {activated:?}"
        );
        let before = pre.membership(&issued.org, &issued.email).unwrap();
        check!(
            before
                .as_ref()
                .is_some_and(|m| m.status == MemberStatus::Invited
                    && m.token_hash == Some(key_of(&issued.text))),
            "{label} activated, but the membership it was for was {before:?}"
        );
        let post = self.store.read().unwrap();
        let after = post.membership(&issued.org, &issued.email).unwrap();
        check!(
            after
                .as_ref()
                .is_some_and(|m| m.status == MemberStatus::Active
                    && Some(m.role) == before.as_ref().map(|b| b.role)
                    && m.role == activated.role),
            "activation left the membership as {after:?}"
        );
        let bound = post.bound_email(caller.uid).unwrap();
        check!(
            bound.as_deref() == Some(issued.email.as_str()),
            "activation by uid {} left it bound to {bound:?}",
            caller.uid
        );
        drop(post);
        self.issued[index].used_at = Some(now);
        Ok(Ok(format!(
            "{label} by uid {}: {} {} as {}",
            caller.uid, activated.org, activated.email, activated.role
        )))
    }

    fn grant(
        &mut self,
        pre: &store::Snapshot,
        by: Who,
        org: Option<&str>,
        email: &str,
        role: Role,
    ) -> Result<Outcome, TestCaseError> {
        let caller = by.caller(pre, None);
        let params = RoleGrantParams {
            org: org.map(str::to_owned),
            email: email.to_owned(),
            role,
            until: Default::default(),
        };
        let now = self.now;
        let granted = match self.write(|txn| members::grant(txn, &caller, &params, now)) {
            Ok(granted) => granted,
            Err(err) => return Ok(Err(err)),
        };
        let own = effective_role(pre, caller, &granted.org);
        check!(
            own >= Some(Role::Deployer),
            "{by:?} granted a role in {} with role {own:?}",
            granted.org
        );
        check!(
            Some(granted.role) <= own,
            "{by:?} ({own:?}) granted {}",
            granted.role
        );
        check!(
            Some(granted.previous_role) <= own,
            "{by:?} ({own:?}) changed a member whose role was {}",
            granted.previous_role
        );
        let before = pre.membership(&granted.org, &granted.email).unwrap();
        check!(
            before.as_ref().map(|m| m.role) == Some(granted.previous_role),
            "previous_role {} but the membership was {before:?}",
            granted.previous_role
        );
        let post = self.store.read().unwrap();
        let after = post.membership(&granted.org, &granted.email).unwrap();
        check!(
            after.as_ref().map(|m| m.role) == Some(granted.role),
            "granted {} but the membership is {after:?}",
            granted.role
        );
        Ok(Ok(format!(
            "{} {} {} -> {}",
            granted.org, granted.email, granted.previous_role, granted.role
        )))
    }

    fn remove(
        &mut self,
        pre: &store::Snapshot,
        by: Who,
        org: Option<&str>,
        email: &str,
    ) -> Result<Outcome, TestCaseError> {
        let caller = by.caller(pre, None);
        let params = UserRemoveParams {
            org: org.map(str::to_owned),
            email: email.to_owned(),
        };
        let now = self.now;
        let removed = match self.write(|txn| members::remove(txn, &caller, &params, now)) {
            Ok(removed) => removed,
            Err(err) => return Ok(Err(err)),
        };
        let own = effective_role(pre, caller, &removed.org);
        check!(
            own == Some(Role::Admin),
            "{by:?} removed a member of {} with role {own:?}",
            removed.org
        );
        let before = pre.membership(&removed.org, &removed.email).unwrap();
        check!(
            before.as_ref().is_some_and(|m| Some(m.role) <= own),
            "{by:?} ({own:?}) removed {before:?}"
        );
        let post = self.store.read().unwrap();
        check!(
            post.membership(&removed.org, &removed.email)
                .unwrap()
                .is_none(),
            "{} is still a member of {} after removal",
            removed.email,
            removed.org
        );
        // A pending token dies with the membership.
        if let Some(hash) = before.and_then(|m| m.token_hash) {
            let state = post.token(&hash).unwrap().map(|t| t.state);
            check!(
                state == Some(TokenState::Revoked),
                "the removed invitation's token is {state:?}"
            );
        }
        Ok(Ok(format!("{} {}", removed.org, removed.email)))
    }

    fn expire(&mut self, pre: &store::Snapshot) -> Result<Outcome, TestCaseError> {
        let now = self.now;
        let due = pre.due_memberships(now).unwrap();
        let swept = match self.write(|txn| invitations::expire_due(txn, now)) {
            Ok(swept) => swept,
            Err(err) => return Ok(Err(err)),
        };
        check!(
            swept == due.len(),
            "expire_due swept {swept}, {} were due",
            due.len()
        );
        let post = self.store.read().unwrap();
        let next = post.next_due().unwrap();
        check!(
            next.is_none_or(|next| next > now),
            "after a sweep at {now} the next expiry is {next:?}"
        );
        for (org, email) in &due {
            let m = post.membership(org, email).unwrap();
            check!(
                m.as_ref()
                    .is_some_and(|m| m.status == MemberStatus::Expired),
                "({org}, {email}) was due and is now {m:?}"
            );
            let old_hash = pre
                .membership(org, email)
                .unwrap()
                .and_then(|m| m.token_hash);
            if let Some(hash) = old_hash {
                let state = post.token(&hash).unwrap().map(|t| t.state);
                check!(
                    state == Some(TokenState::Expired),
                    "the token of swept ({org}, {email}) is {state:?}"
                );
            }
        }
        Ok(Ok(format!("{swept} expired")))
    }

    fn create(
        &mut self,
        pre: &store::Snapshot,
        by: Who,
        name: &str,
        admin: &str,
    ) -> Result<Outcome, TestCaseError> {
        let caller = by.caller(pre, None);
        let token = self.fresh_token();
        let params = OrgCreateParams {
            name: name.to_owned(),
            admin: admin.to_owned(),
            admin_unix_user: None,
            expires_in: Default::default(),
        };
        let (policy, now) = (self.policy.clone(), self.now);
        let created = match self
            .write(|txn| orgs::create(txn, &caller, &params, None, &token, &policy, now))
        {
            Ok(created) => created,
            Err(err) => return Ok(Err(err)),
        };
        check!(caller.superuser, "{by:?} created an organization");
        check!(
            pre.org(name).unwrap().is_none(),
            "{name} was created a second time"
        );
        check!(
            created.admin.role == Role::Admin && created.admin.org == name,
            "the first member of {name} is {:?}",
            created.admin
        );
        self.record_token(&created.admin, &token, now + DEFAULT_TTL)?;
        Ok(Ok(format!(
            "{name} with {} {}",
            created.admin.email, created.admin.status
        )))
    }

    fn use_org(
        &mut self,
        pre: &store::Snapshot,
        by: Who,
        name: &str,
    ) -> Result<Outcome, TestCaseError> {
        let caller = by.caller(pre, None);
        let now = self.now;
        let used = match self.write(|txn| orgs::use_org(txn, &caller, name, now)) {
            Ok(used) => used,
            Err(err) => return Ok(Err(err)),
        };
        check!(
            effective_role(pre, caller.clone(), name).is_some(),
            "{by:?} chose {name}, where they cannot act"
        );
        let current = self.store.read().unwrap().current_org(caller.uid).unwrap();
        check!(
            current.as_deref() == Some(name),
            "org use {name} left {current:?}"
        );
        Ok(Ok(used.org))
    }

    fn read(
        &mut self,
        pre: &store::Snapshot,
        by: Who,
        org: Option<&str>,
    ) -> Result<Outcome, TestCaseError> {
        let caller = by.caller(pre, None);
        let snapshot = self.store.read().unwrap();
        let who = identity::whoami(&snapshot, &caller, self.now);
        let who = match who {
            Ok(who) => who,
            Err(err) => {
                return Err(TestCaseError::fail(format!(
                    "whoami failed for {by:?}: {err:?}"
                )))
            }
        };
        let bound = snapshot.bound_email(caller.uid).unwrap();
        check!(
            who.account.as_ref().map(|a| &a.email) == bound.as_ref(),
            "whoami shows {:?}, uid {} is bound to {bound:?}",
            who.account,
            caller.uid
        );
        if let Err(err) = orgs::list(&snapshot, &caller, self.now) {
            check!(
                matches!(err.kind(), ErrorKind::Unauthenticated),
                "org.list refused {by:?} as {}",
                err.kind()
            );
        }
        let listed = members::list(&snapshot, &caller, org, self.now);
        if let Ok(list) = &listed {
            let own = effective_role(&snapshot, caller, &list.org);
            check!(
                own >= Some(Role::Readonly),
                "{by:?} ({own:?}) listed the members of {}",
                list.org
            );
        }
        Ok(listed.map(|list| format!("{} members of {}", list.members.len(), list.org)))
    }
}

/// Whether a refusal is the gate `authz.check` answers for: who the caller is, which
/// organization, and whether their role there holds the permission. Other refusals (the
/// caps, the last admin, a target that is not a member) come after it.
fn is_gate_refusal(err: &RuleError) -> bool {
    matches!(
        err,
        RuleError::Unauthenticated { .. }
            | RuleError::OrgRequired { .. }
            | RuleError::OrgNotFound(_)
            | RuleError::RoleTooLow { .. }
    )
}

/// `authz.check` said what the step's rule then did: allowed when the step passed its gate,
/// refused when the gate refused it, and an organization it could not choose when neither
/// could the rule.
fn check_gate(
    decided: &Result<Decision, RuleError>,
    outcome: &Outcome,
) -> Result<(), TestCaseError> {
    match (decided, outcome) {
        (Ok(decision), Ok(_)) => check!(
            decision.allowed,
            "the step succeeded, but authz.check said no: {decision:?}"
        ),
        (Ok(decision), Err(err)) if is_gate_refusal(err) => check!(
            !decision.allowed,
            "the rule refused at its gate ({err:?}), but authz.check said yes: {decision:?}"
        ),
        (Ok(_), Err(_)) => {}
        (Err(RuleError::OrgRequired { .. }), Err(err)) => check!(
            matches!(
                err,
                RuleError::OrgRequired { .. } | RuleError::BadRequest(_)
            ),
            "authz.check needed an organization, the rule refused with {err:?}"
        ),
        (Err(err), _) => {
            return Err(TestCaseError::fail(format!(
                "authz.check failed: {err:?}, the step: {}",
                show(outcome)
            )))
        }
    }
    Ok(())
}

/// Runs a sequence from the standard start, failing with the steps taken so far.
fn run(population: &[Seat], ops: &[Op]) -> Result<World, TestCaseError> {
    run_batched(population, ops, Vec::new())
}

/// [`run`] or [`run_batched`] on `engine`.
fn run_on(
    engine: Engine<'_>,
    population: &[Seat],
    ops: &[Op],
    shapes: Vec<Vec<Noise>>,
) -> Result<(), TestCaseError> {
    run_in(World::on(engine), population, ops, shapes).map(drop)
}

/// Runs a sequence from the standard start, each write in a batch of the next of `shapes`
/// (one transaction per change when there are none).
fn run_batched(
    population: &[Seat],
    ops: &[Op],
    shapes: Vec<Vec<Noise>>,
) -> Result<World, TestCaseError> {
    run_in(World::empty(), population, ops, shapes)
}

fn run_in(
    mut world: World,
    population: &[Seat],
    ops: &[Op],
    shapes: Vec<Vec<Noise>>,
) -> Result<World, TestCaseError> {
    // Batched from the first step on: the companions name acme, which the standard start
    // makes.
    let result = world.setup(population).and_then(|()| {
        world.shapes = shapes;
        ops.iter().try_for_each(|op| world.step(op))
    });
    let Err(failure) = result else {
        return Ok(world);
    };
    let reason = match failure {
        TestCaseError::Fail(reason) | TestCaseError::Reject(reason) => reason,
    };
    Err(TestCaseError::fail(format!(
        "{}\nat T0+{:?}, after:\n  {}",
        reason.message(),
        Span(world.now - T0),
        world.log.join("\n  ")
    )))
}

fn config() -> ProptestConfig {
    let mut config = ProptestConfig {
        // A failure prints its minimal sequence; no regression files beside the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 128;
    }
    config
}

/// Fewer sequences on PostgreSQL: each world costs a database.
fn postgres_config() -> ProptestConfig {
    let mut config = config();
    config.cases = (config.cases / 4).max(1);
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn invariants_hold_after_every_step(
        population in proptest::collection::vec(seat(), 0..8),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        run(&population, &ops)?;
    }

    #[test]
    fn invariants_hold_with_group_commit(
        population in proptest::collection::vec(seat(), 0..8),
        ops in proptest::collection::vec(op(), 1..40),
        shapes in proptest::collection::vec(proptest::collection::vec(noise(), 0..5), 1..6),
    ) {
        run_batched(&population, &ops, shapes)?;
    }
}

/// The cases `test` is given from `strategy`, run as `proptest!` runs them, on the worlds of
/// a PostgreSQL server of the test's own (none outside CI: skipped, said loudly).
fn on_postgres<S>(
    test: &str,
    strategy: S,
    case: impl Fn(&Worlds, S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let Some(worlds) = Worlds::start(test) else {
        return;
    };
    let mut config = postgres_config();
    config.source_file = Some(file!());
    let mut runner = proptest::test_runner::TestRunner::new(config);
    if let Err(err) = runner.run(&strategy, |value| case(&worlds, value)) {
        panic!("{test}: {err}");
    }
}

#[test]
fn invariants_hold_after_every_step_on_postgresql() {
    on_postgres(
        "invariants_hold_after_every_step_on_postgresql",
        (
            proptest::collection::vec(seat(), 0..8),
            proptest::collection::vec(op(), 1..40),
        ),
        |worlds, (population, ops)| run_on(Engine::Postgres(worlds), &population, &ops, Vec::new()),
    );
}

#[test]
fn invariants_hold_with_group_commit_on_postgresql() {
    on_postgres(
        "invariants_hold_with_group_commit_on_postgresql",
        (
            proptest::collection::vec(seat(), 0..8),
            proptest::collection::vec(op(), 1..40),
            proptest::collection::vec(proptest::collection::vec(noise(), 0..5), 1..6),
        ),
        |worlds, (population, ops, shapes)| {
            run_on(Engine::Postgres(worlds), &population, &ops, shapes)
        },
    );
}

#[test]
fn the_world_starts_sound() {
    let mut world = World::empty();
    world.setup(&[]).map_err(|e| e.to_string()).unwrap();
    world
        .check_store(&world.store.read().unwrap())
        .map_err(|e| e.to_string())
        .unwrap();
    assert_eq!(world.issued.len(), 2);
    assert!(world.issued[0].used_at.is_some());
}

/// The boundary the random search may miss: a token works one millisecond before its
/// expiry and not at it, whether or not the sweeper ran.
#[test]
fn activation_at_the_expiry_instant_is_refused() {
    let ops = [
        Op::Invite {
            by: Who::Root,
            org: Some("acme"),
            email: ACCOUNTS[2],
            role: Role::Viewer,
            resend: false,
            expires_in: Some("1s"),
        },
        Op::ToNextExpiry(0),
        Op::Activate {
            by: Who::Uid(1003),
            token: TokenPick::Recent(0),
            as_url: false,
        },
        Op::Expire,
        Op::Activate {
            by: Who::Uid(1003),
            token: TokenPick::Recent(0),
            as_url: true,
        },
    ];
    let world = run(&[], &ops).map_err(|e| e.to_string()).unwrap();
    assert_eq!(world.issued[2].used_at, None);
    let ops = [
        Op::Invite {
            by: Who::Root,
            org: Some("acme"),
            email: ACCOUNTS[2],
            role: Role::Viewer,
            resend: false,
            expires_in: Some("1s"),
        },
        Op::ToNextExpiry(-1),
        Op::Activate {
            by: Who::Uid(1003),
            token: TokenPick::Recent(0),
            as_url: false,
        },
        Op::Activate {
            by: Who::Uid(1003),
            token: TokenPick::Recent(0),
            as_url: false,
        },
    ];
    let world = run(&[], &ops).map_err(|e| e.to_string()).unwrap();
    assert_eq!(world.issued[2].used_at, Some(T0 + SECOND - 1));
}
