//! The rules below the socket, on a temporary database, with time and tokens chosen by
//! the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use compartmentctl::wire::{
    AccountDeleteParams, AccountDeleted, ErrorKind, MemberStatus, OrgCreateParams, Role,
    RoleGrantParams, UserInviteParams, UserRemoveParams,
};

use super::*;
use crate::store::{check_indexes, Backend as _, Millis, Reader, Store, TokenState};
use crate::token::Token;

const T0: Millis = 1_777_636_800_000; // 2026-05-01T12:00:00Z
const DAY: Millis = 24 * 60 * 60 * 1000;

struct Fixture {
    store: Store,
    _dir: tempfile::TempDir,
    policy: Policy,
    tokens: u32,
    /// The PostgreSQL server and the runtime its connections run on, when the store is one.
    _postgres: Option<(compartment_pgtest::Postgres, tokio::runtime::Runtime)>,
}

/// The superuser root, as the tests here and the store's power-loss test call.
pub(crate) fn root() -> Caller {
    Caller {
        uid: 0,
        gid: 0,
        pid: Some(1),
        superuser: true,
        user: Some("root".into()),
        groups: Default::default(),
    }
}

pub(super) fn user(uid: u32) -> Caller {
    Caller {
        uid,
        gid: uid,
        pid: Some(2),
        superuser: false,
        user: Some(user_name(uid).into()),
        groups: Default::default(),
    }
}

/// The policy of the tests: a week's invitations, the documentation page's host.
pub(crate) fn policy() -> Policy {
    Policy {
        public_url: "https://your-compartment-host".into(),
        invitation_ttl: Duration::from_secs(7 * 24 * 3600),
    }
}

/// The Unix user name every test uid has.
pub(super) fn user_name(uid: u32) -> String {
    format!("user{uid}")
}

impl Fixture {
    /// A fixture on an embedded store in a temporary directory.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        Fixture {
            store,
            _dir: dir,
            policy: policy(),
            tokens: 0,
            _postgres: None,
        }
    }

    /// A fixture on a PostgreSQL server of its own; `None` (after saying so loudly) where
    /// PostgreSQL is not installed, outside CI.
    fn on_postgres() -> Option<Fixture> {
        let server = crate::store::postgres::schema::tests::server("the rules on PostgreSQL")?;
        let runtime = crate::store::postgres::schema::tests::store_runtime();
        let store = crate::store::postgres::schema::tests::open_store(&server, &runtime);
        Some(Fixture {
            store,
            _dir: tempfile::tempdir().unwrap(),
            policy: policy(),
            tokens: 0,
            _postgres: Some((server, runtime)),
        })
    }

    /// A fixture on each backend in turn, redb's then PostgreSQL's: a rule holds on both.
    /// Each says which it is on the test's output, shown when the test fails.
    fn each() -> impl Iterator<Item = Fixture> {
        let redb = std::iter::once_with(|| {
            eprintln!("-- on redb");
            Some(Fixture::new())
        });
        let postgres = std::iter::once_with(|| {
            eprintln!("-- on PostgreSQL");
            Fixture::on_postgres()
        });
        redb.chain(postgres).flatten()
    }

    /// Runs `change` in a write transaction, committing only when it succeeds, as the
    /// writer does.
    fn write<T>(
        &self,
        change: impl FnOnce(&crate::store::Tracked<'_, '_>) -> Result<T, RuleError>,
    ) -> Result<T, RuleError> {
        crate::writer::apply(&self.store, T0, |txn, _| change(txn))
    }

    /// A token with a known, distinct text.
    fn next_token(&mut self) -> Token {
        self.tokens += 1;
        Token::from_text(&format!("{:0>43}", self.tokens))
    }

    fn create_org(&mut self, org: &str, admin: &str) -> String {
        let token = self.next_token();
        let policy = self.policy.clone();
        let params = OrgCreateParams {
            name: org.into(),
            admin: admin.into(),
            admin_unix_user: None,
            expires_in: Default::default(),
        };
        let created = self
            .write(|txn| orgs::create(txn, &root(), &params, None, &token, &policy, T0))
            .unwrap();
        created.admin.activation_url.unwrap()
    }

    fn invite_as(
        &mut self,
        caller: Caller,
        org: &str,
        email: &str,
        role: Role,
        resend: bool,
        now: Millis,
    ) -> Result<compartmentctl::wire::Invitation, RuleError> {
        self.invite_full(&caller, org, email, role, resend, None, now)
    }

    /// An invitation with every choice the inviter has: `named` is `--unix-user`.
    #[allow(clippy::too_many_arguments)]
    fn invite_full(
        &mut self,
        caller: &Caller,
        org: &str,
        email: &str,
        role: Role,
        resend: bool,
        named: Option<crate::store::UnixUser>,
        now: Millis,
    ) -> Result<compartmentctl::wire::Invitation, RuleError> {
        let token = self.next_token();
        let policy = self.policy.clone();
        let params = UserInviteParams {
            org: Some(org.into()),
            email: email.into(),
            role,
            expires_in: None,
            resend,
            unix_user: None,
            access_until: Default::default(),
        };
        self.write(|txn| invitations::invite(txn, caller, &params, named, &token, &policy, now))
    }

    fn activate(&self, caller: Caller, url: &str, now: Millis) -> Result<(), RuleError> {
        self.write(|txn| invitations::activate(txn, &caller, url, now))
            .map(|_| ())
    }

    /// An org with an active admin at uid 1001 and active members as given, each at
    /// uid 1002, 1003, …
    fn org_with(&mut self, org: &str, members: &[(&str, Role)]) {
        let url = self.create_org(org, "admin@example.com");
        self.activate(user(1001), &url, T0).unwrap();
        for (i, (email, role)) in members.iter().enumerate() {
            let invitation = self
                .invite_as(root(), org, email, *role, false, T0)
                .unwrap();
            let uid = 1002 + i as u32;
            self.activate(user(uid), &invitation.activation_url.unwrap(), T0)
                .unwrap();
        }
    }

    fn grant(&self, caller: Caller, org: &str, email: &str, role: Role) -> Result<(), RuleError> {
        let params = RoleGrantParams {
            org: Some(org.into()),
            email: email.into(),
            role,
            until: Default::default(),
        };
        self.write(|txn| members::grant(txn, &caller, &params, T0))
            .map(|_| ())
    }

    fn remove(&self, caller: Caller, org: &str, email: &str) -> Result<(), RuleError> {
        let params = UserRemoveParams {
            org: Some(org.into()),
            email: email.into(),
        };
        self.write(|txn| members::remove(txn, &caller, &params, T0))
            .map(|_| ())
    }

    fn status(&self, org: &str, email: &str, now: Millis) -> MemberStatus {
        let snapshot = self.store.read().unwrap();
        let list = members::list(&snapshot, &root(), Some(org), now).unwrap();
        list.members
            .into_iter()
            .find(|m| m.email == email)
            .unwrap()
            .status
    }

    fn assert_indexes_agree(&self) {
        let problems = check_indexes(&self.store.read().unwrap()).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }
}

fn kind<T: std::fmt::Debug>(result: Result<T, RuleError>) -> ErrorKind {
    result.unwrap_err().kind()
}

#[test]
fn an_expired_token_is_refused_before_the_sweeper_runs() {
    for mut f in Fixture::each() {
        let url = f.create_org("acme", "admin@example.com");
        let at_expiry = T0 + 7 * DAY;
        let err = f.activate(user(1001), &url, at_expiry).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TokenExpired);
        assert_eq!(
            err.to_string(),
            "this activation URL expired at 2026-05-08T12:00:00Z"
        );
        // Nothing swept it: the membership is still pending in the store, shown as expired.
        assert_eq!(
            f.status("acme", "admin@example.com", at_expiry),
            MemberStatus::Expired
        );
        assert_eq!(
            f.status("acme", "admin@example.com", at_expiry - 1),
            MemberStatus::Invited
        );
        // One millisecond earlier it would have worked.
        f.activate(user(1001), &url, at_expiry - 1).unwrap();
    }
}

#[test]
fn the_sweeper_expires_what_is_due_and_nothing_else() {
    for mut f in Fixture::each() {
        f.org_with("acme", &[]);
        let early = f
            .invite_as(root(), "acme", "early@example.com", Role::Viewer, false, T0)
            .unwrap();
        let late = f
            .invite_as(
                root(),
                "acme",
                "late@example.com",
                Role::Viewer,
                false,
                T0 + DAY,
            )
            .unwrap();
        let swept = f
            .write(|txn| invitations::expire_due(txn, T0 + 7 * DAY))
            .unwrap();
        assert_eq!(swept, 1);
        let snapshot = f.store.read().unwrap();
        let early_row = snapshot
            .membership("acme", "early@example.com")
            .unwrap()
            .unwrap();
        assert_eq!(early_row.status, MemberStatus::Expired);
        assert_eq!(early_row.token_hash, None);
        assert_eq!(snapshot.next_due().unwrap(), Some(T0 + 8 * DAY));
        drop(snapshot);
        let err = f
            .activate(user(2001), &early.activation_url.unwrap(), T0)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TokenExpired);
        f.activate(user(2002), &late.activation_url.unwrap(), T0 + 7 * DAY)
            .unwrap();
        f.assert_indexes_agree();
    }
}

#[test]
fn a_token_is_single_use() {
    for mut f in Fixture::each() {
        let url = f.create_org("acme", "admin@example.com");
        f.activate(user(1001), &url, T0).unwrap();
        assert_eq!(kind(f.activate(user(1001), &url, T0)), ErrorKind::TokenUsed);
        assert_eq!(kind(f.activate(user(1002), &url, T0)), ErrorKind::TokenUsed);
        assert_eq!(
            kind(f.activate(user(1002), "https://h/activate?token=nope", T0)),
            ErrorKind::InvalidToken
        );
    }
}

#[test]
fn resend_revokes_the_old_token_and_reinvite_after_expiry_works() {
    for mut f in Fixture::each() {
        f.org_with("acme", &[]);
        let first = f
            .invite_as(root(), "acme", "d@example.com", Role::Deployer, false, T0)
            .unwrap();
        let err = f
            .invite_as(root(), "acme", "d@example.com", Role::Deployer, false, T0)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyInvited);
        assert_eq!(
            err.hint().unwrap(),
            "pass --resend to issue a new activation URL and revoke the old one"
        );
        let second = f
            .invite_as(root(), "acme", "d@example.com", Role::Deployer, true, T0)
            .unwrap();
        let err = f
            .activate(user(2001), first.activation_url.as_ref().unwrap(), T0)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidToken);
        assert_eq!(
            err.to_string(),
            "this activation URL has been replaced or revoked"
        );

        // After expiry (swept or not), a plain invite issues a fresh URL at once.
        let later = T0 + 8 * DAY;
        let third = f
            .invite_as(
                root(),
                "acme",
                "d@example.com",
                Role::Deployer,
                false,
                later,
            )
            .unwrap();
        assert_eq!(
            kind(f.activate(user(2001), &second.activation_url.unwrap(), later)),
            ErrorKind::InvalidToken
        );
        f.activate(user(2001), &third.activation_url.unwrap(), later)
            .unwrap();
        assert_eq!(
            f.status("acme", "d@example.com", later),
            MemberStatus::Active
        );
        f.assert_indexes_agree();
    }
}

#[test]
fn an_active_account_joins_at_once_without_a_token() {
    for mut f in Fixture::each() {
        f.org_with("acme", &[("ops@example.com", Role::Deployer)]);
        let url = f.create_org("beta", "boss@example.com");
        f.activate(user(3001), &url, T0).unwrap();
        let boss = user(3001);
        let invitation = f
            .invite_as(boss, "beta", "OPS@example.com ", Role::Readonly, false, T0)
            .unwrap();
        assert_eq!(invitation.status, MemberStatus::Active);
        assert_eq!(invitation.activation_url, None);
        assert_eq!(invitation.email, "ops@example.com");
        assert_eq!(
            f.status("beta", "ops@example.com", T0),
            MemberStatus::Active
        );
        let tokens_pending = f.store.read().unwrap().next_due().unwrap();
        assert_eq!(tokens_pending, None, "no invitation is pending anywhere");
    }
}

#[test]
fn grants_are_capped_at_the_granters_role() {
    for mut f in Fixture::each() {
        f.org_with(
            "acme",
            &[
                ("dep@example.com", Role::Deployer),
                ("ro@example.com", Role::Readonly),
                ("view@example.com", Role::Viewer),
            ],
        );
        let deployer = user(1002);
        f.grant(deployer.clone(), "acme", "ro@example.com", Role::Deployer)
            .unwrap();
        let err = f
            .grant(deployer.clone(), "acme", "ro@example.com", Role::Admin)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RoleAboveOwn);
        assert_eq!(
            err.to_string(),
            "you cannot grant admin: your own role in acme, deployer, caps what you can grant"
        );
        // Target cap: a deployer cannot touch an admin, even to demote.
        let err = f
            .grant(deployer.clone(), "acme", "admin@example.com", Role::Viewer)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RoleAboveOwn);
        assert_eq!(
            err.to_string(),
            "you cannot change admin@example.com, whose role admin is above your own (deployer)"
        );
        // Invitations are capped the same way, and need admin to begin with.
        let err = f
            .invite_as(deployer, "acme", "x@example.com", Role::Viewer, false, T0)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden);
        assert_eq!(
            err.to_string(),
            "inviting users to acme needs the admin role; yours is deployer"
        );
        let viewer = user(1004);
        let err = f
            .grant(viewer, "acme", "dep@example.com", Role::Viewer)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden);
        assert_eq!(
            err.to_string(),
            "granting roles in acme needs the deployer role or above; yours is viewer"
        );
    }
}

#[test]
fn the_last_admin_stays_for_everyone_superusers_included() {
    for mut f in Fixture::each() {
        f.org_with("acme", &[("second@example.com", Role::Deployer)]);
        for caller in [root(), user(1001)] {
            let err = f
                .remove(caller.clone(), "acme", "admin@example.com")
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::LastAdmin);
            assert_eq!(err.to_string(), "cannot remove the last admin of acme");
            let err = f
                .grant(caller, "acme", "admin@example.com", Role::Deployer)
                .unwrap_err();
            assert_eq!(err.to_string(), "cannot demote the last admin of acme");
        }
        // With a second active admin, either may go, but not both.
        f.grant(user(1001), "acme", "second@example.com", Role::Admin)
            .unwrap();
        f.remove(user(1002), "acme", "admin@example.com").unwrap();
        assert_eq!(
            kind(f.remove(user(1002), "acme", "second@example.com")),
            ErrorKind::LastAdmin
        );
        f.assert_indexes_agree();
    }
}

#[test]
fn an_invited_admin_does_not_count_as_an_admin() {
    for mut f in Fixture::each() {
        f.org_with("acme", &[]);
        f.invite_as(root(), "acme", "next@example.com", Role::Admin, false, T0)
            .unwrap();
        assert_eq!(
            kind(f.remove(root(), "acme", "admin@example.com")),
            ErrorKind::LastAdmin
        );
        // An org whose only admin never activated has no active admin to protect.
        let _ = f.create_org("beta", "ghost@example.com");
        f.remove(root(), "beta", "ghost@example.com").unwrap();
    }
}

#[test]
fn removal_is_immediate_and_kills_a_pending_token() {
    for mut f in Fixture::each() {
        f.org_with("acme", &[("gone@example.com", Role::Readonly)]);
        let snapshot = f.store.read().unwrap();
        members::list(&snapshot, &user(1002), Some("acme"), T0).unwrap();
        drop(snapshot);
        f.remove(user(1001), "acme", "gone@example.com").unwrap();
        let snapshot = f.store.read().unwrap();
        let err = members::list(&snapshot, &user(1002), Some("acme"), T0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.to_string(), "organization acme not found");
        drop(snapshot);

        let pending = f
            .invite_as(root(), "acme", "late@example.com", Role::Viewer, false, T0)
            .unwrap();
        f.remove(root(), "acme", "late@example.com").unwrap();
        assert_eq!(
            kind(f.activate(user(4001), &pending.activation_url.unwrap(), T0)),
            ErrorKind::InvalidToken
        );
        f.assert_indexes_agree();
    }
}

#[test]
fn callers_without_an_account_may_only_activate_and_ask_who_they_are() {
    for mut f in Fixture::each() {
        f.org_with("acme", &[]);
        let stranger = user(9999);
        let snapshot = f.store.read().unwrap();
        let err = members::list(&snapshot, &stranger, Some("acme"), T0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
        assert_eq!(err.to_string(), "uid 9999 is not bound to an account");
        assert_eq!(
            kind(orgs::list(&snapshot, &stranger, T0)),
            ErrorKind::Unauthenticated
        );
        let who = identity::whoami(&snapshot, &stranger, T0).unwrap();
        assert_eq!((who.account, who.current_org), (None, None));
        drop(snapshot);
        assert_eq!(
            kind(f.invite_as(stranger, "acme", "x@example.com", Role::Viewer, false, T0)),
            ErrorKind::Unauthenticated
        );
    }
}

#[test]
fn activation_binds_one_uid_to_one_account() {
    for mut f in Fixture::each() {
        f.org_with("acme", &[]);
        let a = f
            .invite_as(root(), "acme", "a@example.com", Role::Viewer, false, T0)
            .unwrap();
        // uid 1001 is already the admin's: it cannot take on a second account.
        let err = f
            .activate(user(1001), a.activation_url.as_ref().unwrap(), T0)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden);
        // Superusers need no account.
        assert_eq!(
            kind(f.activate(root(), a.activation_url.as_ref().unwrap(), T0)),
            ErrorKind::Forbidden
        );
        // The refusals spent nothing.
        f.activate(user(5001), &a.activation_url.unwrap(), T0)
            .unwrap();
    }
}

#[test]
fn current_org_comes_from_org_use_else_the_only_one() {
    for mut f in Fixture::each() {
        f.org_with("acme", &[]);
        let admin = user(1001);
        let snapshot = f.store.read().unwrap();
        assert_eq!(
            members::list(&snapshot, &admin, None, T0).unwrap().org,
            "acme"
        );
        drop(snapshot);
        let url = f.create_org("beta", "other@example.com");
        let _ = url;
        f.invite_as(root(), "beta", "admin@example.com", Role::Viewer, false, T0)
            .unwrap();
        // Now admin@ is in two orgs: no choice can be made.
        let snapshot = f.store.read().unwrap();
        let err = members::list(&snapshot, &admin, None, T0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OrgRequired);
        assert!(
            err.hint().unwrap().ends_with("yours: acme, beta"),
            "{:?}",
            err.hint()
        );
        drop(snapshot);
        f.write(|txn| orgs::use_org(txn, &admin, "beta", T0))
            .unwrap();
        let snapshot = f.store.read().unwrap();
        assert_eq!(
            kind(members::list(&snapshot, &admin, None, T0)),
            ErrorKind::Forbidden
        );
        drop(snapshot);
        assert_eq!(
            kind(f.write(|txn| orgs::use_org(txn, &admin, "nope", T0))),
            ErrorKind::NotFound
        );
    }
}

#[test]
fn tokens_are_stored_as_hashes_with_their_fate() {
    for mut f in Fixture::each() {
        let url = f.create_org("acme", "admin@example.com");
        let text = compartmentctl::wire::token_from_url_or_token(&url).to_owned();
        let snapshot = f.store.read().unwrap();
        let record = snapshot
            .token(&crate::token::key_of(&text))
            .unwrap()
            .unwrap();
        assert_eq!(record.state, TokenState::Pending);
        drop(snapshot);
        f.activate(user(1001), &url, T0).unwrap();
        let snapshot = f.store.read().unwrap();
        let record = snapshot
            .token(&crate::token::key_of(&text))
            .unwrap()
            .unwrap();
        assert_eq!(record.state, TokenState::Used);
        let audit: Vec<String> = snapshot
            .audit()
            .unwrap()
            .into_iter()
            .map(|a| a.event)
            .collect();
        assert_eq!(audit, ["organization.create", "account.activate"]);
    }
}

#[test]
fn bad_input_is_a_bad_request() {
    for mut f in Fixture::each() {
        f.org_with("acme", &[]);
        let err = f
            .invite_as(root(), "acme", "nope", Role::Viewer, false, T0)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRequest);
        assert_eq!(
            err.to_string(),
            "\"nope\" is not a valid e-mail address: it must contain exactly one @"
        );
        let token = f.next_token();
        let policy = f.policy.clone();
        for (name, admin) in [
            ("Acme", "a@example.com"),
            ("-x", "a@example.com"),
            ("ok", "bad"),
        ] {
            let params = OrgCreateParams {
                name: name.into(),
                admin: admin.into(),
                admin_unix_user: None,
                expires_in: Default::default(),
            };
            let err = f
                .write(|txn| orgs::create(txn, &root(), &params, None, &token, &policy, T0))
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadRequest, "{name} {admin}");
        }
        for expires_in in ["0s", "999ms", "1ns", "31days", "soon"] {
            let params = UserInviteParams {
                org: Some("acme".into()),
                email: "x@example.com".into(),
                role: Role::Viewer,
                expires_in: Some(expires_in.into()),
                resend: false,
                unix_user: None,
                access_until: Default::default(),
            };
            let err = f
                .write(|txn| invitations::invite(txn, &root(), &params, None, &token, &policy, T0))
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadRequest, "{expires_in}");
            if expires_in == "999ms" {
                // An invitation that would be born expired is refused, not issued.
                assert_eq!(
                    err.to_string(),
                    "an invitation must expire in 1 second to 30 days, not in 999ms"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The trust model (DESIGN §2, §4, §8): no organization reaches into another.

/// `caller` invites `email` to `org`, naming the only Unix user who may redeem the URL.
fn invite_named(
    f: &mut Fixture,
    caller: &Caller,
    org: &str,
    email: &str,
    role: Role,
    named: Option<crate::store::UnixUser>,
) -> Result<compartmentctl::wire::Invitation, RuleError> {
    f.invite_full(caller, org, email, role, false, named, T0)
}

fn unix_user(uid: u32) -> crate::store::UnixUser {
    crate::store::UnixUser {
        uid,
        name: user_name(uid),
    }
}

/// The caller `uid` when NSS names its user `name` (or finds none).
fn reused(uid: u32, name: Option<&str>) -> Caller {
    Caller {
        user: name.map(Into::into),
        ..user(uid)
    }
}

const EVIL_ADMIN: u32 = 1666;
const EVIL_PUPPET: u32 = 1667;

/// `acme` (admin at 1001) and `evil` (admin at 1666), each created by root.
fn two_tenants(mut f: Fixture) -> Fixture {
    let url = f.create_org("acme", "admin@example.com");
    f.activate(user(1001), &url, T0).unwrap();
    let url = f.create_org("evil", "boss@evil.example");
    f.activate(user(EVIL_ADMIN), &url, T0).unwrap();
    f
}

#[test]
fn activating_one_organizations_url_activates_nothing_in_another() {
    for fixture in Fixture::each() {
        let mut f = two_tenants(fixture);
        let acme_url = invite_named(
            &mut f,
            &user(1001),
            "acme",
            "new-hire@acme.com",
            Role::Admin,
            None,
        )
        .unwrap()
        .activation_url
        .unwrap();
        let evil_url = invite_named(
            &mut f,
            &user(EVIL_ADMIN),
            "evil",
            "new-hire@acme.com",
            Role::Viewer,
            None,
        )
        .unwrap()
        .activation_url
        .unwrap();
        f.activate(user(EVIL_PUPPET), &evil_url, T0).unwrap();
        // The puppet is bound to the address, and is still nobody in acme.
        let snapshot = f.store.read().unwrap();
        let err = members::list(&snapshot, &user(EVIL_PUPPET), Some("acme"), T0).unwrap_err();
        assert_eq!(err.to_string(), "organization acme not found");
        drop(snapshot);
        assert_eq!(
            f.status("acme", "new-hire@acme.com", T0),
            MemberStatus::Invited
        );
        // The real hire's URL is refused with what to do, until a superuser unbinds the claim.
        let err = f.activate(user(1500), &acme_url, T0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden);
        assert_eq!(
            err.to_string(),
            "new-hire@acme.com is already bound to another Unix user; a superuser can unbind it (compartment account unbind new-hire@acme.com)"
        );
        f.write(|txn| accounts::unbind(txn, &root(), "new-hire@acme.com", T0))
            .unwrap();
        f.activate(user(1500), &acme_url, T0).unwrap();
        let snapshot = f.store.read().unwrap();
        let list = members::list(&snapshot, &user(1500), Some("acme"), T0).unwrap();
        let hire = list
            .members
            .iter()
            .find(|m| m.email == "new-hire@acme.com")
            .unwrap();
        assert_eq!(hire.unix_user.as_deref(), Some("user1500"));
        // evil's membership stays pinned to its puppet's uid: the hire inherits nothing there.
        let err = members::list(&snapshot, &user(1500), Some("evil"), T0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }
}

#[test]
fn an_account_bound_elsewhere_joins_only_with_its_holders_consent() {
    for fixture in Fixture::each() {
        let mut f = two_tenants(fixture);
        let evil_url = invite_named(
            &mut f,
            &user(EVIL_ADMIN),
            "evil",
            "cfo@acme.com",
            Role::Viewer,
            None,
        )
        .unwrap()
        .activation_url
        .unwrap();
        f.activate(user(EVIL_PUPPET), &evil_url, T0).unwrap();
        // acme's admin cannot vouch for a binding evil made: a URL for its holder alone, and
        // the inviter is told who holds it.
        let invitation = invite_named(
            &mut f,
            &user(1001),
            "acme",
            "cfo@acme.com",
            Role::Admin,
            None,
        )
        .unwrap();
        assert_eq!(invitation.status, MemberStatus::Invited);
        assert_eq!(invitation.held_by.as_deref(), Some("user1667"));
        assert_eq!(invitation.redeemable_by.as_deref(), Some("user1667"));
        let url = invitation.activation_url.unwrap();
        // The real cfo, holding the e-mailed URL, cannot redeem it; nor can anyone else.
        let err = f.activate(user(1500), &url, T0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden);
        assert_eq!(
            err.to_string(),
            "this activation URL was issued for another Unix user to redeem"
        );
        assert_eq!(f.status("acme", "cfo@acme.com", T0), MemberStatus::Invited);
        // A superuser may vouch for any binding: the account joins at once.
        let invitation = invite_named(&mut f, &root(), "acme", "cfo@acme.com", Role::Viewer, None);
        assert_eq!(kind(invitation), ErrorKind::AlreadyInvited);
    }
}

#[test]
fn a_binding_made_through_this_organization_or_a_superuser_joins_at_once() {
    for fixture in Fixture::each() {
        let mut f = two_tenants(fixture);
        let url = invite_named(
            &mut f,
            &user(1001),
            "acme",
            "ops@example.com",
            Role::Viewer,
            None,
        )
        .unwrap()
        .activation_url
        .unwrap();
        f.activate(user(1500), &url, T0).unwrap();
        f.remove(user(1001), "acme", "ops@example.com").unwrap();
        // Bound through acme: acme may vouch for it again.
        let again = invite_named(
            &mut f,
            &user(1001),
            "acme",
            "ops@example.com",
            Role::Viewer,
            None,
        )
        .unwrap();
        assert_eq!(again.status, MemberStatus::Active);
        assert_eq!(again.held_by.as_deref(), Some("user1500"));
        // Bound through acme, invited by evil's admin: consent needed.
        let evil = invite_named(
            &mut f,
            &user(EVIL_ADMIN),
            "evil",
            "ops@example.com",
            Role::Viewer,
            None,
        )
        .unwrap();
        assert_eq!(evil.status, MemberStatus::Invited);
        assert_eq!(evil.redeemable_by.as_deref(), Some("user1500"));
        // The holder consents by redeeming it.
        f.activate(user(1500), &evil.activation_url.unwrap(), T0)
            .unwrap();
        assert_eq!(
            f.status("evil", "ops@example.com", T0),
            MemberStatus::Active
        );
    }
}

#[test]
fn a_url_issued_for_a_unix_user_is_redeemed_by_that_user_only() {
    for fixture in Fixture::each() {
        let mut f = two_tenants(fixture);
        let url = invite_named(
            &mut f,
            &user(1001),
            "acme",
            "bob@example.com",
            Role::Deployer,
            Some(unix_user(1500)),
        )
        .unwrap();
        assert_eq!(url.redeemable_by.as_deref(), Some("user1500"));
        let url = url.activation_url.unwrap();
        // A thief with the URL, another uid: refused. The right uid under another name (reused
        // or renamed): refused too.
        assert_eq!(kind(f.activate(user(1501), &url, T0)), ErrorKind::Forbidden);
        assert_eq!(
            kind(f.activate(reused(1500, Some("mallory")), &url, T0)),
            ErrorKind::Forbidden
        );
        f.activate(user(1500), &url, T0).unwrap();
        // Naming a user who already holds another account is refused at once.
        let err = invite_named(
            &mut f,
            &user(1001),
            "acme",
            "other@example.com",
            Role::Viewer,
            Some(unix_user(1500)),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unix user user1500 already holds another account; each Unix user holds one"
        );
        // Naming a user other than the account's holder is refused.
        f.remove(user(1001), "acme", "bob@example.com").unwrap();
        let err = invite_named(
            &mut f,
            &user(EVIL_ADMIN),
            "evil",
            "bob@example.com",
            Role::Viewer,
            Some(unix_user(EVIL_PUPPET)),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "bob@example.com is already held by Unix user user1500; a superuser can unbind it (compartment account unbind bob@example.com)"
        );
    }
}

#[test]
fn a_reused_uid_inherits_nothing_until_a_superuser_rebinds_or_unbinds() {
    for fixture in Fixture::each() {
        let mut f = two_tenants(fixture);
        // uid 1001 was bound as user1001; the user is deleted and the uid given to "newcomer".
        let newcomer = reused(1001, Some("newcomer"));
        let snapshot = f.store.read().unwrap();
        let err = members::list(&snapshot, &newcomer, Some("acme"), T0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
        assert_eq!(
            err.to_string(),
            "uid 1001 acts without an account: its binding was made for Unix user user1001, and it now belongs to newcomer"
        );
        let who = identity::whoami(&snapshot, &newcomer, T0).unwrap();
        assert_eq!(who.account, None);
        assert!(who.memberships.is_empty(), "{who:?}");
        // A deleted user, no name at all: the same.
        let gone = reused(1001, None);
        assert_eq!(
            kind(members::list(&snapshot, &gone, Some("acme"), T0)),
            ErrorKind::Unauthenticated
        );
        drop(snapshot);
        // The newcomer's own invitation cannot bind the uid while the old binding stands.
        let url = invite_named(
            &mut f,
            &root(),
            "acme",
            "newcomer@example.com",
            Role::Viewer,
            None,
        )
        .unwrap()
        .activation_url
        .unwrap();
        assert_eq!(
            kind(f.activate(newcomer.clone(), &url, T0)),
            ErrorKind::Unauthenticated
        );
        // A superuser rebinds the old account to its user's new uid; the memberships follow.
        let params = compartmentctl::wire::AccountBindParams {
            email: "admin@example.com".into(),
            unix_user: "user1002".into(),
            carry_all: false,
        };
        f.write(|txn| accounts::bind(txn, &root(), &params, &unix_user(1002), T0))
            .unwrap();
        let snapshot = f.store.read().unwrap();
        assert_eq!(
            members::list(&snapshot, &user(1002), Some("acme"), T0)
                .unwrap()
                .org,
            "acme"
        );
        drop(snapshot);
        // The uid is free: the newcomer activates their own invitation.
        f.activate(newcomer, &url, T0).unwrap();
    }
}

#[test]
fn a_uid_without_a_user_is_never_bound() {
    for mut f in Fixture::each() {
        let url = f.create_org("acme", "admin@example.com");
        let err = f.activate(reused(4242, None), &url, T0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden);
        assert_eq!(
            err.to_string(),
            "uid 4242 has no Unix user (deleted, nobody or unmapped), so it cannot be bound to an account"
        );
    }
}

#[test]
fn only_superusers_list_show_bind_and_unbind_accounts() {
    for fixture in Fixture::each() {
        let f = two_tenants(fixture);
        let users = crate::users::FakeUsers::new(&[(1001, "user1001"), (EVIL_ADMIN, "user1666")]);
        let snapshot = f.store.read().unwrap();
        for caller in [user(1001), user(EVIL_ADMIN)] {
            assert_eq!(
                kind(accounts::list(&snapshot, &caller, users.as_ref(), T0)),
                ErrorKind::Forbidden
            );
            assert_eq!(
                kind(accounts::show(
                    &snapshot,
                    &caller,
                    users.as_ref(),
                    "admin@example.com",
                    T0
                )),
                ErrorKind::Forbidden
            );
        }
        let shown =
            accounts::show(&snapshot, &root(), users.as_ref(), "admin@example.com", T0).unwrap();
        assert_eq!(shown.unix_user.as_deref(), Some("user1001"));
        assert_eq!(shown.bound_through.as_deref(), Some("a superuser"));
        assert_eq!(
            accounts::list(&snapshot, &root(), users.as_ref(), T0)
                .unwrap()
                .accounts
                .len(),
            2
        );
        drop(snapshot);
        assert_eq!(
            kind(f.write(|txn| accounts::unbind(txn, &user(EVIL_ADMIN), "admin@example.com", T0))),
            ErrorKind::Forbidden
        );
        f.write(|txn| accounts::unbind(txn, &root(), "admin@example.com", T0))
            .unwrap();
        // Unbound: its old uid acts as nobody, and the membership stays pinned to that uid.
        let snapshot = f.store.read().unwrap();
        assert_eq!(
            kind(members::list(&snapshot, &user(1001), Some("acme"), T0)),
            ErrorKind::Unauthenticated
        );
        let shown =
            accounts::show(&snapshot, &root(), users.as_ref(), "admin@example.com", T0).unwrap();
        assert_eq!(shown.uid, None);
        assert_eq!(shown.memberships[0].usable, Some(false));
    }
}

/// An admin of evil invites an address nobody has activated and redeems it as a uid of
/// its own (a squat); a superuser repairs it by binding the address to its real owner. The
/// owner gets the membership a superuser vouched for, not evil's, and evil does not become
/// their current organization; `carry_all` is how a superuser says the old holder was the
/// owner after all.
#[test]
fn a_rebind_carries_only_what_a_superuser_vouched_for() {
    use compartmentctl::wire::BoundMembership;
    for fixture in Fixture::each() {
        let mut f = two_tenants(fixture);
        let url = f
            .invite_as(
                user(EVIL_ADMIN),
                "evil",
                "victim@example.com",
                Role::Admin,
                false,
                T0,
            )
            .unwrap()
            .activation_url
            .unwrap();
        f.activate(user(EVIL_PUPPET), &url, T0).unwrap();
        // A superuser's invitation to acme: the inviter vouches, so it is active at once for the
        // uid that holds the address (the squatter's, for now).
        let at_once = f
            .invite_as(
                root(),
                "acme",
                "victim@example.com",
                Role::Viewer,
                false,
                T0,
            )
            .unwrap();
        assert_eq!(at_once.status, MemberStatus::Active);
        let victim = 3003;
        let params = compartmentctl::wire::AccountBindParams {
            email: "victim@example.com".into(),
            unix_user: user_name(victim),
            carry_all: false,
        };
        let bound = f
            .write(|txn| accounts::bind(txn, &root(), &params, &unix_user(victim), T0))
            .unwrap();
        let membership = |org: &str, role| BoundMembership {
            org: org.into(),
            role,
        };
        assert_eq!(bound.carried, vec![membership("acme", Role::Viewer)]);
        assert_eq!(bound.dropped, vec![membership("evil", Role::Admin)]);
        let snapshot = f.store.read().unwrap();
        let who = identity::whoami(&snapshot, &user(victim), T0).unwrap();
        assert_eq!(who.current_org.as_deref(), Some("acme"));
        let orgs: Vec<_> = who.memberships.iter().map(|m| m.org.as_str()).collect();
        assert_eq!(orgs, ["acme"]);
        assert_eq!(
            kind(members::list(&snapshot, &user(victim), Some("evil"), T0)),
            ErrorKind::NotFound
        );
        // Nobody acts through evil's membership: it stays pinned to the squatter's uid, which
        // holds nothing now.
        assert_eq!(
            kind(members::list(
                &snapshot,
                &user(EVIL_PUPPET),
                Some("evil"),
                T0
            )),
            ErrorKind::Unauthenticated
        );
        drop(snapshot);
        // Told to, the superuser carries everything.
        let all = compartmentctl::wire::AccountBindParams {
            carry_all: true,
            ..params
        };
        let bound = f
            .write(|txn| accounts::bind(txn, &root(), &all, &unix_user(victim), T0))
            .unwrap();
        assert_eq!(bound.carried, vec![membership("evil", Role::Admin)]);
        assert_eq!(bound.dropped, vec![]);
        let snapshot = f.store.read().unwrap();
        assert_eq!(
            members::list(&snapshot, &user(victim), Some("evil"), T0)
                .unwrap()
                .org,
            "evil"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Upgrades: a database written by the schema-5 daemon (tests/fixtures/make-v5.sh).

#[test]
fn a_schema_5_database_opens_with_its_feed_and_spent_tokens_indexed() {
    let (dir, deploy_token) = super::upgrades::fixture(5);
    let deploy_token = deploy_token.as_str();
    let store = Store::open(dir.path()).unwrap();
    let snapshot = store.read().unwrap();
    assert!(check_indexes(&snapshot).unwrap().is_empty());
    // Each organization's feed holds its own changes; the bindings' changes written before
    // the upgrade stay in the feed of every organization only.
    let org_feed = |org: &str| shown(snapshot.org_events_after(org, 0, 1000).unwrap());
    assert_eq!(
        org_feed("acme"),
        [
            "member.added acme admin@example.com admin invited",
            "member.activated acme admin@example.com admin active uid 1",
            "member.added acme deploy@example.com deployer invited",
            "member.added acme gone@example.com viewer invited",
            "member.removed acme gone@example.com viewer",
            "member.added acme again@example.com viewer invited",
        ]
    );
    assert_eq!(
        org_feed("beta"),
        [
            "member.added beta admin@example.com admin active uid 1",
            "member.added beta b@beta.example viewer invited",
        ]
    );
    let bindings = shown(snapshot.events_after(0, 1000).unwrap())
        .into_iter()
        .filter(|e| e.starts_with("binding.changed"))
        .count();
    assert_eq!(bindings, 1);
    // The audit log of before the chain is carried into it, in today's terms, whole.
    let audit: Vec<String> = snapshot
        .audit()
        .unwrap()
        .iter()
        .map(|e| {
            let target = e.target.as_ref().map_or("-", |t| t.id.as_str());
            format!(
                "{} {} {} {} {}",
                e.seq,
                e.actor.kind,
                e.event,
                e.org.as_deref().unwrap_or("-"),
                target
            )
        })
        .collect();
    assert_eq!(
        audit,
        [
            "1 superuser organization.create acme acme",
            "2 user account.activate acme admin@example.com",
            "3 user organization.user.invite acme deploy@example.com",
            "4 user organization.user.invite acme gone@example.com",
            "5 user organization.user.remove acme gone@example.com",
            "6 user organization.user.invite acme again@example.com",
            "7 user organization.user.invite acme again@example.com",
            "8 superuser organization.create beta beta",
            "9 superuser organization.user.invite beta b@beta.example",
        ]
    );
    let verified = crate::store::chain::verify(&snapshot, &[]).unwrap();
    assert_eq!(
        (verified.first, verified.last, verified.broken),
        (Some(1), Some(9), None)
    );
    // The used and the two revoked tokens are spent; the pending ones are not.
    let spent = snapshot.spent_tokens_due(Millis::MAX, 100).unwrap();
    assert_eq!(spent.len(), 3);
    for hash in &spent {
        assert_ne!(
            snapshot.token(hash).unwrap().unwrap().state,
            TokenState::Pending
        );
    }
    drop(snapshot);
    // The pending invitation is redeemed as before, and its changes are filed under acme.
    let now = 1_796_000_000_000; // 2026-11-30, before the fixture's invitations lapse
    crate::writer::apply(&store, now, |txn, now| {
        invitations::activate(txn, &user(2001), deploy_token, now)
    })
    .unwrap();
    let snapshot = store.read().unwrap();
    let acme = shown(snapshot.org_events_after("acme", 0, 1000).unwrap());
    assert_eq!(
        acme[acme.len() - 2..],
        [
            "binding.changed - deploy@example.com uid 2001",
            "member.activated acme deploy@example.com deployer active uid 2001",
        ]
    );
    assert!(check_indexes(&snapshot).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// Upgrades: a database written by the schema-7 daemon (tests/fixtures/make-v7.sh).

#[test]
fn a_schema_7_database_opens_with_its_memberships_rewritten_and_its_feed_read() {
    use crate::store::StoreOptions;
    let (dir, deploy_token) = super::upgrades::fixture(7);
    let before = crate::store::check(dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(before.schema_version, Some(7));
    let store = Store::open(dir.path()).unwrap();
    let snapshot = store.read().unwrap();
    assert!(check_indexes(&snapshot).unwrap().is_empty());
    // Every membership reads, with no terms; the admins' index is as it was.
    let rows = |org: &str| -> Vec<String> {
        members::list(&snapshot, &root(), Some(org), NOW_V7)
            .unwrap()
            .members
            .iter()
            .map(|m| format!("{} {} {}", m.email, m.role, m.status))
            .collect()
    };
    assert_eq!(
        rows("acme"),
        [
            "admin@example.com admin active",
            "again@example.com viewer invited",
            "deploy@example.com deployer invited",
        ]
    );
    assert_eq!(
        rows("beta"),
        [
            "admin@example.com admin active",
            "b@beta.example viewer invited",
            "ops@beta.example deployer active",
        ]
    );
    for org in ["acme", "beta"] {
        for (email, membership) in snapshot.members(org).unwrap() {
            assert_eq!(membership.terms, crate::store::Terms::default(), "{email}");
        }
        assert_eq!(snapshot.active_admins(org, 10).unwrap(), 1, "{org}");
    }
    // Schema 7's events, written with their actor and without a note, still read.
    let beta = shown(snapshot.org_events_after("beta", 0, 1000).unwrap());
    assert_eq!(
        beta.last().unwrap(),
        "member.role_changed beta ops@beta.example deployer (was viewer) active uid 2"
    );
    let events = snapshot.events_after(0, 1000).unwrap();
    let (_, last) = events.last().unwrap();
    assert_eq!(last.actor.as_ref().unwrap().uid, Some(1));
    assert_eq!(last.note, None);
    let verified = crate::store::chain::verify(&snapshot, &[]).unwrap();
    assert_eq!(verified.broken, None);
    drop(snapshot);
    // The pending invitation is redeemed as before; a member of schema 7 can be blocked.
    crate::writer::apply(&store, NOW_V7, |txn, now| {
        invitations::activate(txn, &user(2001), &deploy_token, now)
    })
    .unwrap();
    let params = compartmentctl::wire::UserBlockParams {
        org: Some("beta".into()),
        email: "ops@beta.example".into(),
        reason: "rotation".into(),
        until: None,
    };
    crate::writer::apply(&store, NOW_V7, |txn, now| {
        lifecycle::block(txn, &root(), &params, now)
    })
    .unwrap();
    let snapshot = store.read().unwrap();
    assert!(check_indexes(&snapshot).unwrap().is_empty());
    let ops = snapshot
        .membership("beta", "ops@beta.example")
        .unwrap()
        .unwrap();
    assert_eq!(ops.terms.block.unwrap().reason, "rotation");
}

/// 2026-12-08T00:00:00Z: after the schema-7 fixture was written (2026-12-07) and before its
/// invitations (a week) lapse.
const NOW_V7: Millis = 1_796_688_000_000;

// ---------------------------------------------------------------------------------------
// Upgrades: a database written by the schema-1 daemon (tests/fixtures/make-v1.sh).

#[test]
fn a_schema_1_database_opens_migrated_and_keeps_working() {
    use crate::store::{Provenance, CURRENT_SCHEMA_VERSION};
    let (dir, deploy_token) = super::upgrades::fixture(1);
    let deploy_token = deploy_token.as_str();
    // The host as make-v1.sh saw it: uid 1 was Debian's `daemon`; 65534 (`nobody`) and 4242
    // hold no account.
    let options = crate::store::StoreOptions {
        user_name_of: |uid| (uid == 1).then(|| "daemon".to_owned()),
        ..Default::default()
    };
    let store = Store::open_with(dir.path(), &options).unwrap();
    assert_eq!(CURRENT_SCHEMA_VERSION, 8);
    let now = 1_796_000_000_000; // 2026-11-30, before the fixture's invitations lapse
    {
        let snapshot = store.read().unwrap();
        assert!(check_indexes(&snapshot).unwrap().is_empty());
        // uid 1 (Debian's `daemon`) was bound by activating acme's invitation.
        let admin = snapshot.binding(1).unwrap().unwrap();
        assert_eq!(admin.email, "admin@example.com");
        assert_eq!(admin.user_name.as_deref(), Some("daemon"));
        assert_eq!(admin.provenance, Provenance::Org("acme".into()));
        // `nobody` and a uid without a user keep bindings that hold for nobody.
        let viewer = snapshot.binding(65534).unwrap().unwrap();
        assert_eq!(viewer.email, "viewer@example.com");
        assert_eq!(viewer.user_name, None);
        assert_eq!(snapshot.binding(4242).unwrap().unwrap().user_name, None);
        // Active memberships are pinned to the uid that held them.
        for org in ["acme", "beta"] {
            let m = snapshot
                .membership(org, "admin@example.com")
                .unwrap()
                .unwrap();
            assert_eq!(m.uid, Some(1), "{org}");
        }
        let daemon_user = Caller {
            user: Some("daemon".into()),
            ..user(1)
        };
        let list = members::list(&snapshot, &daemon_user, Some("acme"), now).unwrap();
        let rows: Vec<(&str, &str, Option<&str>)> = list
            .members
            .iter()
            .map(|m| (m.email.as_str(), m.status.as_str(), m.unix_user.as_deref()))
            .collect();
        assert_eq!(
            rows,
            [
                ("admin@example.com", "active", Some("daemon")),
                ("deploy@example.com", "invited", None),
                ("ghost@example.com", "active", None),
                ("late@example.com", "expired", None),
                ("viewer@example.com", "active", None),
            ]
        );
        // A page reads the old JSON records as the whole list does.
        let page = members::list_page(
            &snapshot,
            &daemon_user,
            &compartmentctl::wire::UserListParams {
                org: Some("acme".into()),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        assert_eq!(page.members, list.members);
        assert_eq!(
            kind(members::list(
                &snapshot,
                &reused(65534, None),
                Some("acme"),
                now
            )),
            ErrorKind::Unauthenticated
        );
    }
    // The pending invitation written by the old daemon is redeemed by the new one.
    crate::writer::apply(&store, now, |txn, now| {
        invitations::activate(txn, &user(1500), deploy_token, now)
    })
    .unwrap();
    let snapshot = store.read().unwrap();
    let deploy = snapshot
        .membership("acme", "deploy@example.com")
        .unwrap()
        .unwrap();
    assert_eq!(deploy.uid, Some(1500));
    assert!(check_indexes(&snapshot).unwrap().is_empty());
    // The feed begins at the upgrade: empty, then the first change the new daemon makes.
    let kinds: Vec<(u64, compartmentctl::wire::EventKind)> = snapshot
        .events_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|(seq, event)| (seq, event.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            (1, compartmentctl::wire::EventKind::BindingChanged),
            (2, compartmentctl::wire::EventKind::MemberActivated),
        ]
    );
}

// ---- `user.list` pages ----

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use compartmentctl::wire::{MemberList, UserListParams};

/// `acme` with its active admin (admin@example.com, uid 1001) and `count` invitations of
/// `m0000@example.com`, `m0001@…`, in one transaction; those whose index `lapses` picks
/// expire after an hour, the others after the default week.
fn org_of(mut f: Fixture, count: usize, lapses: impl Fn(usize) -> bool) -> Fixture {
    let url = f.create_org("acme", "admin@example.com");
    f.activate(user(1001), &url, T0).unwrap();
    let tokens: Vec<Token> = (0..count).map(|_| f.next_token()).collect();
    let policy = f.policy.clone();
    f.write(|txn| {
        for (i, token) in tokens.iter().enumerate() {
            let params = UserInviteParams {
                org: Some("acme".into()),
                email: format!("m{i:04}@example.com"),
                role: Role::Viewer,
                expires_in: lapses(i).then(|| "1h".to_owned()),
                resend: false,
                unix_user: None,
                access_until: Default::default(),
            };
            invitations::invite(txn, &root(), &params, None, token, &policy, T0)?;
        }
        Ok(())
    })
    .unwrap();
    f
}

fn page_of(
    f: &Fixture,
    caller: &Caller,
    org: &str,
    limit: Option<u32>,
    after: Option<&str>,
    status: Option<MemberStatus>,
    now: Millis,
) -> Result<MemberList, RuleError> {
    let params = UserListParams {
        org: Some(org.into()),
        limit,
        after: after.map(str::to_owned),
        status,
    };
    members::list_page(&f.store.read().unwrap(), caller, &params, now)
}

/// Follows `next` to the end; returns every member and the size of each page.
fn follow(
    f: &Fixture,
    limit: Option<u32>,
    status: Option<MemberStatus>,
    now: Millis,
) -> (Vec<compartmentctl::wire::Member>, Vec<usize>) {
    let (mut all, mut sizes, mut after) = (Vec::new(), Vec::new(), None::<String>);
    loop {
        let page = page_of(f, &root(), "acme", limit, after.as_deref(), status, now).unwrap();
        assert_eq!(page.org, "acme");
        sizes.push(page.members.len());
        all.extend(page.members);
        match page.next {
            Some(next) => after = Some(next),
            None => return (all, sizes),
        }
    }
}

fn whole(f: &Fixture, now: Millis) -> Vec<compartmentctl::wire::Member> {
    members::list(&f.store.read().unwrap(), &root(), Some("acme"), now)
        .unwrap()
        .members
}

#[test]
fn pages_split_the_list_exactly_and_the_last_has_no_next() {
    // 10 members: the admin and m0000..m0008.
    for fixture in Fixture::each() {
        let f = org_of(fixture, 9, |_| false);
        let everyone = whole(&f, T0);
        assert_eq!(everyone.len(), 10);
        for (limit, sizes) in [
            (1, vec![1; 10]),
            (3, vec![3, 3, 3, 1]),
            (5, vec![5, 5]),
            (9, vec![9, 1]),
            (10, vec![10]),
            (11, vec![10]),
            (1000, vec![10]),
        ] {
            let (all, got) = follow(&f, Some(limit), None, T0);
            assert_eq!(got, sizes, "limit {limit}");
            assert_eq!(all, everyone, "limit {limit}");
        }
        // An org with only its admin: one page, no next (on redb: paging an organization of
        // one reads the same rows on both, as the pages above show).
        let lone = org_of(Fixture::new(), 0, |_| false);
        assert_eq!(follow(&lone, None, None, T0).1, vec![1]);
    }
}

#[test]
fn a_limit_out_of_range_is_a_bad_request_and_none_means_a_hundred() {
    for fixture in Fixture::each() {
        let f = org_of(fixture, 150, |_| false);
        for limit in [0, 1001, u32::MAX] {
            let err = page_of(&f, &root(), "acme", Some(limit), None, None, T0).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadRequest, "limit {limit}");
            assert_eq!(
                err.to_string(),
                format!("limit {limit} is out of range: a page holds 1 to 1000 members")
            );
        }
        // Who may not list is told so, whatever else is wrong with the request.
        for (limit, after) in [(Some(0), None), (None, Some("not a cursor"))] {
            let err = page_of(&f, &user(4242), "acme", limit, after, None, T0).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unauthenticated);
        }
        // A client that predates paging gets the first hundred and a next.
        let first = page_of(&f, &root(), "acme", None, None, None, T0).unwrap();
        assert_eq!(first.members.len(), 100);
        assert_eq!(first.members, whole(&f, T0)[..100]);
        assert_eq!(
            first.next.as_deref(),
            Some(URL_SAFE_NO_PAD.encode("m0098@example.com").as_str())
        );
        assert_eq!(follow(&f, None, None, T0).1, vec![100, 51]);
    }
}

#[test]
fn a_cursor_past_the_end_is_an_empty_last_page() {
    for fixture in Fixture::each() {
        let f = org_of(fixture, 3, |_| false);
        let past = URL_SAFE_NO_PAD.encode("zzz@example.com");
        let page = page_of(&f, &root(), "acme", Some(10), Some(&past), None, T0).unwrap();
        assert_eq!((page.members.len(), page.next), (0, None));
        // The last member's own position: nothing after it.
        let last = URL_SAFE_NO_PAD.encode("m0002@example.com");
        let page = page_of(&f, &root(), "acme", Some(10), Some(&last), None, T0).unwrap();
        assert_eq!((page.members.len(), page.next), (0, None));
        // A position between members starts at the next one.
        let between = URL_SAFE_NO_PAD.encode("m0000@example.com.");
        let page = page_of(&f, &root(), "acme", Some(10), Some(&between), None, T0).unwrap();
        let emails: Vec<&str> = page.members.iter().map(|m| m.email.as_str()).collect();
        assert_eq!(emails, ["m0001@example.com", "m0002@example.com"]);
    }
}

#[test]
fn a_cursor_the_daemon_did_not_make_is_a_bad_request() {
    for fixture in Fixture::each() {
        let f = org_of(fixture, 3, |_| false);
        let too_long = "A".repeat(513);
        let not_utf8 = URL_SAFE_NO_PAD.encode([0xff, 0xfe]);
        for cursor in ["", "not base64!", "YQ==", &too_long, &not_utf8] {
            let err = page_of(&f, &root(), "acme", None, Some(cursor), None, T0).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadRequest, "{cursor:?}");
            assert_eq!(
                err.to_string(),
                "\"after\" is not a cursor from user.list: pass the \"next\" of the previous page as it was"
            );
        }
    }
}

#[test]
fn the_status_filter_is_judged_at_now_across_pages() {
    // Every third invitation lapses after an hour; two hours later they read expired.
    for fixture in Fixture::each() {
        let f = org_of(fixture, 40, |i| i % 3 == 0);
        let later = T0 + 2 * 60 * 60 * 1000;
        let everyone = whole(&f, later);
        for status in [
            MemberStatus::Active,
            MemberStatus::Invited,
            MemberStatus::Expired,
        ] {
            let expected: Vec<_> = everyone
                .iter()
                .filter(|m| m.status == status)
                .cloned()
                .collect();
            for limit in [1, 2, 7, 1000] {
                let (all, _) = follow(&f, Some(limit), Some(status), later);
                assert_eq!(all, expected, "{status} by {limit}");
            }
        }
        // At T0 nothing has lapsed yet.
        assert!(follow(&f, Some(5), Some(MemberStatus::Expired), T0)
            .0
            .is_empty());
        assert_eq!(
            follow(&f, Some(5), Some(MemberStatus::Invited), T0).0.len(),
            40
        );
    }
}

#[test]
fn a_filtered_page_reads_at_most_ten_rows_per_member_it_may_return() {
    // The admin sorts first and is the only active member; 95 invitations follow.
    for fixture in Fixture::each() {
        let f = org_of(fixture, 95, |_| false);
        let first = page_of(
            &f,
            &root(),
            "acme",
            Some(2),
            None,
            Some(MemberStatus::Active),
            T0,
        )
        .unwrap();
        let emails: Vec<&str> = first.members.iter().map(|m| m.email.as_str()).collect();
        assert_eq!(emails, ["admin@example.com"]);
        // 20 rows read (the admin and m0000..m0018), none more: a short page with a next.
        assert_eq!(
            first.next.as_deref(),
            Some(URL_SAFE_NO_PAD.encode("m0018@example.com").as_str())
        );
        let (all, sizes) = follow(&f, Some(2), Some(MemberStatus::Active), T0);
        assert_eq!(all.len(), 1);
        // 96 rows, 20 a page: five pages, the last without a next.
        assert_eq!(sizes, vec![1, 0, 0, 0, 0]);
    }
}

#[test]
fn an_org_of_2500_fetched_page_by_page_is_the_unpaged_list() {
    for fixture in Fixture::each() {
        let f = org_of(fixture, 2_499, |i| i % 7 == 0);
        let later = T0 + 2 * 60 * 60 * 1000;
        let everyone = whole(&f, later);
        assert_eq!(everyone.len(), 2_500);
        for limit in [None, Some(1000), Some(999), Some(1)] {
            let (all, sizes) = follow(&f, limit, None, later);
            assert_eq!(all, everyone, "limit {limit:?}");
            let per_page = limit.unwrap_or(100) as usize;
            assert_eq!(
                sizes.len(),
                2_500_usize.div_ceil(per_page),
                "limit {limit:?}"
            );
        }
    }
}

#[test]
fn a_cursor_names_a_position_and_never_another_organization() {
    for fixture in Fixture::each() {
        let mut f = two_tenants(fixture);
        for i in 0..3 {
            f.invite_as(
                user(1001),
                "acme",
                &format!("a{i}@acme.example"),
                Role::Viewer,
                false,
                T0,
            )
            .unwrap();
        }
        f.invite_as(
            user(EVIL_ADMIN),
            "evil",
            "z@evil.example",
            Role::Viewer,
            false,
            T0,
        )
        .unwrap();
        let acme = page_of(&f, &user(1001), "acme", Some(1), None, None, T0).unwrap();
        let cursor = acme.next.unwrap();
        // acme's cursor in evil: a position in evil's list, evil's members only.
        let evil = page_of(
            &f,
            &user(EVIL_ADMIN),
            "evil",
            Some(10),
            Some(&cursor),
            None,
            T0,
        )
        .unwrap();
        let emails: Vec<&str> = evil.members.iter().map(|m| m.email.as_str()).collect();
        assert_eq!(emails, ["boss@evil.example", "z@evil.example"]);
        // evil's admin with acme's cursor in acme: refused as on the first page.
        let err = page_of(
            &f,
            &user(EVIL_ADMIN),
            "acme",
            Some(10),
            Some(&cursor),
            None,
            T0,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "organization acme not found");
    }
}

/// Group commit keeps the last-admin rule: in one batch, a change sees the writes of the
/// changes before it, so two admins removing each other (or anyone removing the admin the
/// batch has just left alone) cannot both succeed.
#[test]
fn the_last_admin_stays_when_both_removals_share_a_batch() {
    let removal = |caller: Caller, email: &'static str| {
        crate::writer::job(move |txn: &crate::store::Tracked<'_, '_>, now| {
            let params = UserRemoveParams {
                org: Some("acme".into()),
                email: email.into(),
            };
            members::remove(txn, &caller, &params, now).map(|_| ())
        })
    };
    let batches = [
        // Each removes the other: the second is no longer a member when its turn comes.
        (
            removal(user(1001), "second@example.com"),
            removal(user(1002), "admin@example.com"),
            None,
        ),
        // A superuser removes the admin the first change left alone.
        (
            removal(user(1002), "admin@example.com"),
            removal(root(), "second@example.com"),
            Some(ErrorKind::LastAdmin),
        ),
    ];
    for ((first, first_reply), (second, second_reply), refusal) in batches {
        let mut f = Fixture::new();
        f.org_with("acme", &[("second@example.com", Role::Admin)]);
        let clock = crate::clock::FakeClock::new(T0);
        crate::writer::apply_batch(
            &f.store,
            &clock,
            vec![first, second],
            &crate::writer::commit,
        );
        let (mut first_reply, mut second_reply) = (first_reply, second_reply);
        first_reply.try_recv().unwrap().unwrap();
        let err = second_reply.try_recv().unwrap().unwrap_err();
        if let Some(refusal) = refusal {
            assert_eq!(err.kind(), refusal);
        }
        let snapshot = f.store.read().unwrap();
        let admins = snapshot
            .members("acme")
            .unwrap()
            .into_iter()
            .filter(|(_, m)| m.is_active_admin())
            .count();
        assert_eq!(admins, 1);
        f.assert_indexes_agree();
    }
}

/// A sweep in chunks expires the earliest due first, at most a chunk per transaction, and
/// leaves the rest pending for the next chunk.
#[test]
fn a_sweep_in_chunks_takes_the_earliest_due_first() {
    for mut f in Fixture::each() {
        f.org_with("acme", &[]);
        let emails: Vec<String> = (0..5).map(|i| format!("u{i}@example.com")).collect();
        for (i, email) in emails.iter().enumerate() {
            // Invited a minute apart, u0 first: it expires first.
            f.invite_as(
                root(),
                "acme",
                email,
                Role::Viewer,
                false,
                T0 + i as Millis * 60_000,
            )
            .unwrap();
        }
        let later = T0 + 8 * DAY;
        let chunk = |f: &Fixture| {
            f.write(|txn| invitations::expire_due_up_to(txn, later, 2))
                .unwrap()
        };
        assert_eq!(chunk(&f), 2);
        let expired = |f: &Fixture| -> Vec<bool> {
            let snapshot = f.store.read().unwrap();
            emails
                .iter()
                .map(|e| {
                    snapshot.membership("acme", e).unwrap().unwrap().status == MemberStatus::Expired
                })
                .collect()
        };
        assert_eq!(expired(&f), [true, true, false, false, false]);
        assert_eq!(chunk(&f), 2);
        assert_eq!(chunk(&f), 1);
        assert_eq!(chunk(&f), 0);
        assert_eq!(expired(&f), [true; 5]);
        f.assert_indexes_agree();
    }
}

#[test]
fn root_is_never_named_as_an_accounts_user() {
    for fixture in Fixture::each() {
        let mut f = two_tenants(fixture);
        let root_user = crate::store::UnixUser {
            uid: 0,
            name: "root".into(),
        };
        let err = invite_named(
            &mut f,
            &user(1001),
            "acme",
            "x@example.com",
            Role::Viewer,
            Some(root_user.clone()),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "root is a superuser and needs no account");
        let params = compartmentctl::wire::AccountBindParams {
            email: "admin@example.com".into(),
            unix_user: "root".into(),
            carry_all: false,
        };
        let err = f
            .write(|txn| accounts::bind(txn, &root(), &params, &root_user, T0))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRequest);
        assert_eq!(err.to_string(), "root is a superuser and needs no account");
    }
}

/// `authz.check` as the rules decide it, for `caller` in `org` at `now`.
fn decide(
    f: &Fixture,
    caller: Caller,
    permission: compartmentctl::wire::Permission,
    org: Option<&str>,
    now: Millis,
) -> compartmentctl::wire::Decision {
    let snapshot = f.store.read().unwrap();
    let subject = authz::Subject::Uid {
        caller,
        email: None,
    };
    authz::decide(&snapshot, &subject, permission, org, now).unwrap()
}

#[test]
fn authz_answers_what_the_rules_decide_and_why() {
    use compartmentctl::wire::{Permission::*, Reason};
    for mut f in Fixture::each() {
        // acme: admin at 1001, dep@ a deployer at 1002, view@ a viewer at 1003.
        f.org_with(
            "acme",
            &[
                ("dep@example.com", Role::Deployer),
                ("view@example.com", Role::Viewer),
            ],
        );
        // pen@ (uid 1004) joined acme through its admin's invitation; beta's admin invites
        // pen@ too, which waits for its holder's consent.
        let invitation = f
            .invite_as(
                user(1001),
                "acme",
                "pen@example.com",
                Role::Viewer,
                false,
                T0,
            )
            .unwrap();
        f.activate(user(1004), &invitation.activation_url.unwrap(), T0)
            .unwrap();
        let url = f.create_org("beta", "boss@beta.example");
        f.activate(user(2001), &url, T0).unwrap();
        f.invite_as(
            user(2001),
            "beta",
            "pen@example.com",
            Role::Admin,
            false,
            T0,
        )
        .unwrap();
        let answer = |caller: Caller, permission, org: Option<&str>, now| {
            let d = decide(&f, caller, permission, org, now);
            (d.allowed, d.reason, d.message)
        };

        assert_eq!(
            answer(user(1002), DeploymentCreate, Some("acme"), T0),
            (true, Reason::Role, "dep@example.com is deployer in acme (invited by root), and deployment.create needs the deployer role or above".into())
        );
        assert_eq!(
            answer(user(1003), VariableValueRead, Some("acme"), T0),
            (false, Reason::RoleTooLow, "view@example.com is viewer in acme (invited by root), and variable.value.read needs the deployer role or above".into())
        );
        assert_eq!(
            answer(user(1001), OrganizationUserInvite, Some("acme"), T0),
            (true, Reason::Role, "admin@example.com is admin in acme (invited by root), and organization.user.invite needs the admin role".into())
        );
        assert_eq!(
            answer(root(), OrganizationAuditRead, Some("beta"), T0),
            (true, Reason::Superuser, "uid 0 (root) is a superuser, with admin power in every organization, and organization.audit.read needs the admin role".into())
        );
        // No membership, and no such organization: the same answer, as every rule gives it.
        for org in ["beta", "nowhere"] {
            assert_eq!(
                answer(user(1003), OrganizationRead, Some(org), T0),
                (
                    false,
                    Reason::NotMember,
                    format!("view@example.com is not a member of {org}")
                )
            );
        }
        assert_eq!(
            answer(user(1004), OrganizationRead, Some("beta"), T0),
            (
                false,
                Reason::InvitationPending,
                "pen@example.com is invited to beta and has not activated the invitation".into()
            )
        );
        assert_eq!(
            answer(user(1004), OrganizationRead, Some("beta"), T0 + 7 * DAY),
            (
                false,
                Reason::InvitationExpired,
                "pen@example.com's invitation to beta expired".into()
            )
        );
        assert_eq!(
            answer(user(4000), OrganizationRead, Some("acme"), T0),
            (
                false,
                Reason::Unbound,
                "uid 4000 (user4000): it is not bound to an account".into()
            )
        );
        assert_eq!(
            answer(reused(1002, Some("mallory")), DeploymentRead, Some("acme"), T0),
            (false, Reason::BindingStale, "uid 1002 (mallory): its binding was made for Unix user user1002, and it now belongs to mallory".into())
        );
        // Without --org: the subject's current organization, as for their own commands.
        let d = decide(&f, user(1003), OrganizationRead, None, T0);
        assert_eq!((d.allowed, d.org.as_deref()), (true, Some("acme")));
        let snapshot = f.store.read().unwrap();
        let none = authz::decide(
            &snapshot,
            &authz::Subject::Uid {
                caller: root(),
                email: None,
            },
            OrganizationRead,
            None,
            T0,
        );
        assert_eq!(kind(none), ErrorKind::OrgRequired);
        // An address that is not the uid's own account, and subjects that do not resolve.
        let subject = authz::Subject::Uid {
            caller: user(1002),
            email: Some("view@example.com".into()),
        };
        let d = authz::decide(&snapshot, &subject, OrganizationRead, Some("acme"), T0).unwrap();
        assert_eq!(
            (d.allowed, d.reason, d.message.as_str()),
            (
                false,
                Reason::Unbound,
                "view@example.com is not bound to uid 1002 (user1002)"
            )
        );
        for (subject, reason, message) in [
            (
                authz::Subject::NoSuchUser("ghost".into()),
                Reason::NoSuchUser,
                "there is no Unix user \"ghost\"",
            ),
            (
                authz::Subject::NoUserForUid(4321),
                Reason::NoSuchUser,
                "uid 4321 has no Unix user",
            ),
            (
                authz::Subject::NoAccount("nobody@example.com".into()),
                Reason::NoAccount,
                "nobody@example.com has no activated account",
            ),
        ] {
            let d = authz::decide(&snapshot, &subject, OrganizationRead, Some("acme"), T0).unwrap();
            assert_eq!(
                (d.allowed, d.reason, d.message.as_str()),
                (false, reason, message)
            );
        }
    }
}

#[test]
fn a_refusal_names_the_act_and_the_role_its_permission_needs() {
    for mut f in Fixture::each() {
        f.org_with("acme", &[("view@example.com", Role::Viewer)]);
        let err = f
            .invite_as(user(1002), "acme", "x@example.com", Role::Viewer, false, T0)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "inviting users to acme needs the admin role; yours is viewer"
        );
        let err = f
            .grant(user(1002), "acme", "view@example.com", Role::Viewer)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "granting roles in acme needs the deployer role or above; yours is viewer"
        );
        let err = f
            .remove(user(1002), "acme", "view@example.com")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "removing users from acme needs the admin role; yours is viewer"
        );
        let snapshot = f.store.read().unwrap();
        let err = members::list(&snapshot, &user(1002), Some("acme"), T0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "listing the members of acme needs the readonly role or above; yours is viewer"
        );
    }
}

/// The feed, as `(kind, org, email)` lines, after `after`.
fn feed_after(f: &Fixture, after: u64) -> Vec<String> {
    let snapshot = f.store.read().unwrap();
    shown(snapshot.events_after(after, 1000).unwrap())
}

/// `org`'s feed from `after`, as [`feed_after`] shows it.
fn org_feed_after(f: &Fixture, org: &str, after: u64) -> Vec<String> {
    let snapshot = f.store.read().unwrap();
    shown(snapshot.org_events_after(org, after, 1000).unwrap())
}

pub(super) fn shown(events: Vec<(u64, crate::store::EventRecord)>) -> Vec<String> {
    events
        .into_iter()
        .map(|(_, e)| {
            let role = e.role.map(|r| format!(" {r}")).unwrap_or_default();
            let was = e
                .previous_role
                .map(|r| format!(" (was {r})"))
                .unwrap_or_default();
            let status = e.status.map(|s| format!(" {s}")).unwrap_or_default();
            let uid = e.uid.map(|u| format!(" uid {u}")).unwrap_or_default();
            format!(
                "{} {} {}{role}{was}{status}{uid}",
                e.kind,
                e.org.as_deref().unwrap_or("-"),
                e.email
            )
        })
        .collect()
}

#[test]
fn every_change_to_a_membership_or_binding_is_in_the_feed_once() {
    for mut f in Fixture::each() {
        let url = f.create_org("acme", "admin@example.com");
        f.activate(user(1001), &url, T0).unwrap();
        let dep = f
            .invite_as(
                user(1001),
                "acme",
                "dep@example.com",
                Role::Deployer,
                false,
                T0,
            )
            .unwrap();
        // A new URL for a pending invitation changes nothing the feed tells of.
        f.invite_as(
            user(1001),
            "acme",
            "dep@example.com",
            Role::Deployer,
            true,
            T0,
        )
        .unwrap_or_else(|err| panic!("{err}"));
        assert!(dep.activation_url.is_some());
        f.invite_as(
            user(1001),
            "acme",
            "late@example.com",
            Role::Viewer,
            false,
            T0,
        )
        .unwrap();
        f.write(|txn| invitations::expire_due(txn, T0 + 7 * DAY))
            .unwrap();
        f.invite_as(
            user(1001),
            "acme",
            "late@example.com",
            Role::Viewer,
            false,
            T0 + 7 * DAY,
        )
        .unwrap();
        f.grant(user(1001), "acme", "late@example.com", Role::Readonly)
            .unwrap();
        f.remove(user(1001), "acme", "late@example.com").unwrap();
        f.write(|txn| accounts::unbind(txn, &root(), "admin@example.com", T0))
            .unwrap();
        assert_eq!(
            feed_after(&f, 0),
            [
                "member.added acme admin@example.com admin invited",
                "binding.changed - admin@example.com uid 1001",
                "member.activated acme admin@example.com admin active uid 1001",
                "member.added acme dep@example.com deployer invited",
                "member.added acme late@example.com viewer invited",
                "member.expired acme dep@example.com deployer expired",
                "member.expired acme late@example.com viewer expired",
                "member.reinvited acme late@example.com viewer invited",
                "member.role_changed acme late@example.com readonly (was viewer) invited",
                "member.removed acme late@example.com readonly",
                "binding.changed - admin@example.com",
            ]
        );
        // Sequence numbers run on from where the file left them, one per event.
        let snapshot = f.store.read().unwrap();
        assert_eq!(snapshot.last_event_seq().unwrap(), 11);
        let seqs: Vec<u64> = snapshot
            .events_after(4, 3)
            .unwrap()
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(seqs, [5, 6, 7]);
        // A refused change leaves no event.
        drop(snapshot);
        f.remove(user(1001), "acme", "nobody@example.com")
            .unwrap_err();
        assert_eq!(feed_after(&f, 11), Vec::<String>::new());
    }
}

#[test]
fn an_organizations_feed_holds_its_own_changes_and_its_members_bindings_only() {
    for mut f in Fixture::each() {
        let acme = f.create_org("acme", "admin@example.com");
        f.activate(user(1001), &acme, T0).unwrap();
        let beta = f.create_org("beta", "boss@example.com");
        f.activate(user(2001), &beta, T0).unwrap();
        f.invite_as(user(2001), "beta", "x@example.com", Role::Viewer, false, T0)
            .unwrap();
        // A member of acme rebound by a superuser: acme's admins are told.
        f.write(|txn| accounts::unbind(txn, &root(), "admin@example.com", T0))
            .unwrap();
        assert_eq!(
            org_feed_after(&f, "acme", 0),
            [
                "member.added acme admin@example.com admin invited",
                "binding.changed - admin@example.com uid 1001",
                "member.activated acme admin@example.com admin active uid 1001",
                "binding.changed - admin@example.com",
            ]
        );
        assert_eq!(
            org_feed_after(&f, "beta", 0),
            [
                "member.added beta boss@example.com admin invited",
                "binding.changed - boss@example.com uid 2001",
                "member.activated beta boss@example.com admin active uid 2001",
                "member.added beta x@example.com viewer invited",
            ]
        );
        // Resuming reads from the sequence number on, whatever others wrote in between.
        let snapshot = f.store.read().unwrap();
        let acme_seqs: Vec<u64> = snapshot
            .org_events_after("acme", 0, 10)
            .unwrap()
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(acme_seqs, [1, 2, 3, 8]);
        let after_3: Vec<u64> = snapshot
            .org_events_after("acme", 3, 10)
            .unwrap()
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(after_3, [8]);
        assert!(snapshot
            .org_events_after("gamma", 0, 10)
            .unwrap()
            .is_empty());
        assert!(snapshot
            .org_events_after("acme", u64::MAX, 10)
            .unwrap()
            .is_empty());
    }
}

/// An organization's feed is read through its index: with a thousand events of another
/// organization stored before its own, a batch of it costs its own rows, and a feed that
/// has caught up skips the rest at once.
#[test]
fn an_organizations_feed_never_reads_the_others_rows() {
    for mut f in Fixture::each() {
        let beta = f.create_org("beta", "boss@example.com");
        f.activate(user(2001), &beta, T0).unwrap();
        f.write(|txn| {
            for i in 0..1000 {
                let params = UserInviteParams {
                    org: Some("beta".into()),
                    email: format!("m{i}@example.com"),
                    role: Role::Viewer,
                    expires_in: None,
                    resend: false,
                    unix_user: None,
                    access_until: Default::default(),
                };
                let token = Token::from_text(&format!("{:0>43}", 5000 + i));
                invitations::invite(txn, &root(), &params, None, &token, &policy(), T0)?;
            }
            Ok(())
        })
        .unwrap();
        let acme = f.create_org("acme", "admin@example.com");
        f.activate(user(1001), &acme, T0).unwrap();
        let snapshot = f.store.read().unwrap();
        let head = snapshot.last_event_seq().unwrap();
        assert_eq!(head, 1006);
        let batch = crate::events::batch_of(
            &snapshot,
            crate::events::FeedOrg::named(&snapshot, "acme")
                .unwrap()
                .as_ref(),
            0,
        )
        .unwrap();
        let seqs: Vec<u64> = batch.events.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [1004, 1005, 1006]);
        assert!(batch.caught_up);
        assert_eq!(batch.seen, head);
    }
}

#[test]
fn spent_tokens_are_forgotten_a_month_after_they_expire_and_pending_ones_never() {
    for mut f in Fixture::each() {
        let url = f.create_org("acme", "admin@example.com");
        f.activate(user(1001), &url, T0).unwrap();
        let pending = f
            .invite_as(user(1001), "acme", "p@example.com", Role::Viewer, false, T0)
            .unwrap();
        let first = f
            .invite_as(user(1001), "acme", "r@example.com", Role::Viewer, false, T0)
            .unwrap();
        // --resend revokes the first URL.
        f.invite_as(user(1001), "acme", "r@example.com", Role::Viewer, true, T0)
            .unwrap();
        let key =
            |url: &str| crate::token::key_of(compartmentctl::wire::token_from_url_or_token(url));
        let expires = T0 + 7 * DAY;
        let forget_at = expires + crate::store::SPENT_TOKEN_MEMORY;
        let snapshot = f.store.read().unwrap();
        assert_eq!(snapshot.next_spent_token_due().unwrap(), Some(forget_at));
        assert!(snapshot
            .spent_tokens_due(forget_at - 1, 10)
            .unwrap()
            .is_empty());
        let mut due = snapshot.spent_tokens_due(forget_at, 10).unwrap();
        let mut spent = vec![key(&url), key(first.activation_url.as_deref().unwrap())];
        due.sort_by_key(|h| h.0);
        spent.sort_by_key(|h| h.0);
        assert_eq!(due, spent);
        drop(snapshot);
        // Until then, each is still answered for what it is.
        assert_eq!(
            kind(f.activate(user(1002), &url, expires - 1)),
            ErrorKind::TokenUsed
        );
        let forgotten = f
            .write(|txn| invitations::forget_spent_tokens(txn, forget_at, 10))
            .unwrap();
        assert_eq!(forgotten, 2);
        let snapshot = f.store.read().unwrap();
        assert_eq!(snapshot.token(&key(&url)).unwrap(), None);
        assert!(snapshot.spent_tokens_due(u64::MAX, 10).unwrap().is_empty());
        // The pending invitation's token stays, whatever the time.
        let pending_key = key(pending.activation_url.as_deref().unwrap());
        assert_eq!(
            snapshot.token(&pending_key).unwrap().unwrap().state,
            TokenState::Pending
        );
        drop(snapshot);
        // Once expired by the sweeper, it too is forgotten a month later.
        f.write(|txn| invitations::expire_due(txn, expires))
            .unwrap();
        let snapshot = f.store.read().unwrap();
        assert_eq!(snapshot.next_spent_token_due().unwrap(), Some(forget_at));
        drop(snapshot);
        f.write(|txn| invitations::forget_spent_tokens(txn, forget_at, 10))
            .unwrap();
        assert_eq!(f.store.read().unwrap().token(&pending_key).unwrap(), None);
        f.assert_indexes_agree();
    }
}

/// A reader that counts what it is asked, to show two questions cost the same reads.
struct Counting<'r, R> {
    inner: &'r R,
    reads: std::cell::Cell<usize>,
}

impl<'r, R: Reader> Counting<'r, R> {
    fn new(inner: &'r R) -> Counting<'r, R> {
        Counting {
            inner,
            reads: std::cell::Cell::new(0),
        }
    }

    fn count<T>(&self, read: T) -> T {
        self.reads.set(self.reads.get() + 1);
        read
    }
}

impl<R: Reader> Reader for Counting<'_, R> {
    fn org(&self, name: &str) -> crate::store::Result<Option<crate::store::OrgRecord>> {
        self.count(self.inner.org(name))
    }
    fn org_names(&self) -> crate::store::Result<Vec<String>> {
        self.count(self.inner.org_names())
    }
    fn account(&self, email: &str) -> crate::store::Result<Option<crate::store::AccountRecord>> {
        self.count(self.inner.account(email))
    }
    fn binding(&self, uid: u32) -> crate::store::Result<Option<crate::store::BindingRecord>> {
        self.count(self.inner.binding(uid))
    }
    fn accounts(&self) -> crate::store::Result<Vec<(String, crate::store::AccountRecord)>> {
        self.count(self.inner.accounts())
    }
    fn membership(
        &self,
        org: &str,
        email: &str,
    ) -> crate::store::Result<Option<crate::store::MembershipRecord>> {
        self.count(self.inner.membership(org, email))
    }
    fn members(
        &self,
        org: &str,
    ) -> crate::store::Result<Vec<(String, crate::store::MembershipRecord)>> {
        self.count(self.inner.members(org))
    }
    fn members_after(
        &self,
        org: &str,
        after: Option<&str>,
        limit: usize,
    ) -> crate::store::Result<Vec<(String, crate::store::MemberRow)>> {
        self.count(self.inner.members_after(org, after, limit))
    }
    fn active_admins(&self, org: &str, at_most: usize) -> crate::store::Result<usize> {
        self.count(self.inner.active_admins(org, at_most))
    }
    fn orgs_of(&self, email: &str) -> crate::store::Result<Vec<String>> {
        self.count(self.inner.orgs_of(email))
    }
    fn token(
        &self,
        hash: &crate::store::TokenHash,
    ) -> crate::store::Result<Option<crate::store::TokenRecord>> {
        self.count(self.inner.token(hash))
    }
    fn current_org(&self, uid: u32) -> crate::store::Result<Option<String>> {
        self.count(self.inner.current_org(uid))
    }
    fn orgs_of_groups(&self, gids: &[u32]) -> crate::store::Result<Vec<String>> {
        self.count(self.inner.orgs_of_groups(gids))
    }
    fn next_due(&self) -> crate::store::Result<Option<Millis>> {
        self.count(self.inner.next_due())
    }
    fn due_memberships_up_to(
        &self,
        now: Millis,
        limit: usize,
    ) -> crate::store::Result<Vec<(String, String)>> {
        self.count(self.inner.due_memberships_up_to(now, limit))
    }
    fn audit_after(
        &self,
        after: u64,
        limit: usize,
    ) -> crate::store::Result<Vec<crate::store::Sealed>> {
        self.count(self.inner.audit_after(after, limit))
    }
    fn org_audit_after(
        &self,
        org: &str,
        after: u64,
        limit: usize,
    ) -> crate::store::Result<Vec<crate::store::Sealed>> {
        self.count(self.inner.org_audit_after(org, after, limit))
    }
    fn audit_head(&self) -> crate::store::Result<Option<(u64, crate::store::ChainHash)>> {
        self.count(self.inner.audit_head())
    }
    fn latest_checkpoint(&self) -> crate::store::Result<Option<(u64, String)>> {
        self.count(self.inner.latest_checkpoint())
    }
    fn checkpoint_at(&self, seq: u64) -> crate::store::Result<Option<String>> {
        self.count(self.inner.checkpoint_at(seq))
    }
    fn events_after(
        &self,
        after: u64,
        limit: usize,
    ) -> crate::store::Result<Vec<(u64, crate::store::EventRecord)>> {
        self.count(self.inner.events_after(after, limit))
    }
    fn last_event_seq(&self) -> crate::store::Result<u64> {
        self.count(self.inner.last_event_seq())
    }
    fn org_events_after(
        &self,
        org: &str,
        after: u64,
        limit: usize,
    ) -> crate::store::Result<Vec<(u64, crate::store::EventRecord)>> {
        self.count(self.inner.org_events_after(org, after, limit))
    }
    fn spent_tokens_due(
        &self,
        now: Millis,
        limit: usize,
    ) -> crate::store::Result<Vec<crate::store::TokenHash>> {
        self.count(self.inner.spent_tokens_due(now, limit))
    }
    fn next_spent_token_due(&self) -> crate::store::Result<Option<Millis>> {
        self.count(self.inner.next_spent_token_due())
    }
}

/// A member of no organization but its own, asking about one that exists and one that
/// does not: the same answer, from the same reads, so timing tells nothing about which
/// organizations exist.
#[test]
fn a_self_check_costs_the_same_whether_or_not_the_org_exists() {
    use compartmentctl::wire::{Permission::ProjectRead, Reason};
    for mut f in Fixture::each() {
        f.org_with("acme", &[]);
        let url = f.create_org("beta", "boss@beta.example");
        f.activate(user(2001), &url, T0).unwrap();
        let snapshot = f.store.read().unwrap();
        let ask = |org: &str| {
            let counting = Counting::new(&snapshot);
            let subject = authz::Subject::Uid {
                caller: user(2001),
                email: None,
            };
            let decision = authz::decide(&counting, &subject, ProjectRead, Some(org), T0).unwrap();
            (decision, counting.reads.get())
        };
        let (existing, existing_reads) = ask("acme");
        let (missing, missing_reads) = ask("acme-not");
        assert_eq!(
            (existing.reason, existing.message.as_str()),
            (
                Reason::NotMember,
                "boss@beta.example is not a member of acme"
            )
        );
        assert_eq!(
            (missing.reason, missing.message.as_str()),
            (
                Reason::NotMember,
                "boss@beta.example is not a member of acme-not"
            )
        );
        assert_eq!(existing_reads, missing_reads, "reads differ");
        // The organization and the membership, each read once, besides the binding.
        assert_eq!(existing_reads, 3);
        // A member is told its role as before.
        let (own, _) = ask("beta");
        assert_eq!(own.reason, Reason::Role);
    }
}

/// `account delete`: superusers only; refused while the account is a member somewhere
/// unless forced, and never for an organization's last active admin, forced or not; forced,
/// it removes the memberships (revoking a pending invitation's URL), unbinds the uid and
/// says so, and the feed tells each removal and the unbinding.
#[test]
fn only_a_superuser_deletes_an_account_and_never_an_organizations_last_admin() {
    for mut f in Fixture::each() {
        f.org_with("acme", &[("dev@example.com", Role::Deployer)]);
        let pending = f
            .invite_as(root(), "acme", "new@example.com", Role::Viewer, false, T0)
            .unwrap()
            .activation_url
            .unwrap();
        let delete = |f: &Fixture, caller: Caller, email: &str, force: bool| {
            let params = AccountDeleteParams {
                email: email.into(),
                force,
            };
            f.write(|txn| accounts::delete(txn, &caller, &params, T0))
        };

        // An organization's admin is not a superuser.
        assert_eq!(
            kind(delete(&f, user(1001), "dev@example.com", true)),
            ErrorKind::Forbidden
        );
        assert_eq!(
            kind(delete(&f, root(), "nobody@example.com", true)),
            ErrorKind::NotFound
        );
        let in_use = delete(&f, root(), "dev@example.com", false).unwrap_err();
        assert_eq!(in_use.kind(), ErrorKind::NotEmpty);
        assert_eq!(
            in_use.to_string(),
            "dev@example.com is a member of acme; nothing was deleted"
        );
        assert_eq!(
            in_use.hint().as_deref(),
            Some("remove it from them first, or pass --force to delete it with its memberships (compartment account delete --force dev@example.com)")
        );
        // The last admin stays, forced or not, and nothing of the account changes.
        let last = delete(&f, root(), "admin@example.com", true).unwrap_err();
        assert_eq!(last.kind(), ErrorKind::LastAdmin);
        assert_eq!(last.to_string(), "cannot remove the last admin of acme");
        let snapshot = f.store.read().unwrap();
        assert!(snapshot.account("admin@example.com").unwrap().is_some());
        assert!(snapshot
            .membership("acme", "admin@example.com")
            .unwrap()
            .is_some());
        let head = snapshot.last_event_seq().unwrap();
        drop(snapshot);

        let deleted = delete(&f, root(), "dev@example.com", true).unwrap();
        assert_eq!(
            deleted,
            AccountDeleted {
                email: "dev@example.com".into(),
                removed_from: vec!["acme".into()],
                uid: Some(1002),
                unix_user: Some("user1002".into()),
            }
        );
        let snapshot = f.store.read().unwrap();
        let audit = snapshot.audit().unwrap();
        let last = audit.last().unwrap();
        assert_eq!(
            (
                last.event.as_str(),
                last.actor.uid,
                last.target.as_ref().map(|t| t.id.as_str()),
                last.detail.as_deref()
            ),
            (
                "account.delete",
                Some(0),
                Some("dev@example.com"),
                Some("removed from acme; unbound uid 1002 (user1002)")
            )
        );
        assert_eq!(snapshot.account("dev@example.com").unwrap(), None);
        assert_eq!(
            snapshot.membership("acme", "dev@example.com").unwrap(),
            None
        );
        assert_eq!(snapshot.binding(1002).unwrap(), None);
        let told: Vec<_> = snapshot
            .events_after(head, 10)
            .unwrap()
            .into_iter()
            .map(|(_, event)| (event.kind, event.email, event.uid))
            .collect();
        assert_eq!(
            told,
            [
                (
                    compartmentctl::wire::EventKind::MemberRemoved,
                    "dev@example.com".to_owned(),
                    Some(1002)
                ),
                (
                    compartmentctl::wire::EventKind::BindingChanged,
                    "dev@example.com".to_owned(),
                    None
                ),
            ]
        );
        drop(snapshot);
        // Its uid acts as nobody now.
        assert_eq!(
            kind(members::list(
                &f.store.read().unwrap(),
                &user(1002),
                Some("acme"),
                T0
            )),
            ErrorKind::Unauthenticated
        );

        // A pending invitation goes with its account, and its URL redeems nothing.
        let deleted = delete(&f, root(), "new@example.com", true).unwrap();
        assert_eq!(deleted.removed_from, ["acme"]);
        assert_eq!(deleted.uid, None);
        assert_eq!(
            kind(f.activate(user(1500), &pending, T0)),
            ErrorKind::InvalidToken
        );

        // An account that is a member nowhere needs no force.
        f.invite_as(root(), "acme", "gone@example.com", Role::Viewer, false, T0)
            .unwrap();
        f.remove(root(), "acme", "gone@example.com").unwrap();
        let deleted = delete(&f, root(), "gone@example.com", false).unwrap();
        assert!(deleted.removed_from.is_empty());
        assert_eq!(
            f.store.read().unwrap().account("gone@example.com").unwrap(),
            None
        );
        // Deleted, the address can be invited afresh.
        f.invite_as(root(), "acme", "dev@example.com", Role::Viewer, false, T0)
            .unwrap();
        f.assert_indexes_agree();
    }
}

// ---------------------------------------------------------------------------------------
// Blocks, and access that ends by itself (DESIGN §4; `lifecycle`).

const HOUR: Millis = 60 * 60 * 1000;

impl Fixture {
    /// Runs `change` at `now`, as the writer would then.
    fn write_at<T>(
        &self,
        now: Millis,
        change: impl FnOnce(&crate::store::Tracked<'_, '_>, Millis) -> Result<T, RuleError>,
    ) -> Result<T, RuleError> {
        crate::writer::apply(&self.store, now, change)
    }

    fn block(
        &self,
        caller: &Caller,
        email: &str,
        reason: &str,
        until: Option<&str>,
        now: Millis,
    ) -> Result<compartmentctl::wire::UserBlocked, RuleError> {
        let params = compartmentctl::wire::UserBlockParams {
            org: Some("acme".into()),
            email: email.into(),
            reason: reason.into(),
            until: until.map(str::to_owned),
        };
        self.write_at(now, |txn, now| lifecycle::block(txn, caller, &params, now))
    }

    fn unblock(
        &self,
        caller: &Caller,
        email: &str,
        now: Millis,
    ) -> Result<compartmentctl::wire::UserUnblocked, RuleError> {
        let params = compartmentctl::wire::UserUnblockParams {
            org: Some("acme".into()),
            email: email.into(),
        };
        self.write_at(now, |txn, now| {
            lifecycle::unblock(txn, caller, &params, now)
        })
    }

    fn grant_until(
        &self,
        caller: &Caller,
        email: &str,
        role: Role,
        until: &str,
        now: Millis,
    ) -> Result<compartmentctl::wire::Granted, RuleError> {
        let params = RoleGrantParams {
            org: Some("acme".into()),
            email: email.into(),
            role,
            until: Some(until.into()),
        };
        self.write_at(now, |txn, now| members::grant(txn, caller, &params, now))
    }

    /// The sweeper's pass at `now`: how many memberships it changed.
    fn sweep(&self, now: Millis) -> usize {
        self.write_at(now, |txn, now| invitations::expire_due(txn, now))
            .unwrap()
    }

    /// The feed of acme after `after`, as [`shown`] writes it, with each event's note.
    fn acme_feed(&self, after: u64) -> Vec<String> {
        let snapshot = self.store.read().unwrap();
        let events = snapshot.org_events_after("acme", after, 1000).unwrap();
        let notes: Vec<String> = events
            .iter()
            .map(|(_, e)| {
                let actor = e.actor.as_ref().map_or("-", |a| a.kind.as_str()).to_owned();
                match &e.note {
                    Some(note) => format!(
                        " by {actor}; until {}; reason {}",
                        note.until.map_or("-".into(), crate::clock::rfc3339),
                        note.reason.as_deref().unwrap_or("-")
                    ),
                    None => format!(" by {actor}"),
                }
            })
            .collect();
        shown(events)
            .into_iter()
            .zip(notes)
            .map(|(event, note)| event + &note)
            .collect()
    }

    fn last_seq(&self) -> u64 {
        self.store.read().unwrap().last_event_seq().unwrap()
    }

    /// The audit log's records from `after` on, as "event actor detail".
    fn audit_since(&self, after: usize) -> Vec<String> {
        let snapshot = self.store.read().unwrap();
        snapshot.audit().unwrap()[after..]
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}",
                    e.event,
                    e.actor.kind,
                    e.detail.as_deref().unwrap_or("-")
                )
            })
            .collect()
    }

    fn audit_len(&self) -> usize {
        self.store.read().unwrap().audit().unwrap().len()
    }
}

/// A deployer's `user list` in acme at `now`: how a member's own request fares.
fn own_request(f: &Fixture, uid: u32, now: Millis) -> Result<MemberListResult, RuleError> {
    let snapshot = f.store.read().unwrap();
    members::list(&snapshot, &user(uid), Some("acme"), now).map(|_| MemberListResult)
}

#[derive(Debug)]
struct MemberListResult;

#[test]
fn a_blocked_member_is_refused_at_once_with_the_reason_and_services_are_told() {
    use compartmentctl::wire::{Permission, Reason};
    for mut f in Fixture::each() {
        f.org_with("acme", &[("dev@example.com", Role::Deployer)]);
        let admin = user(1001);
        let seq = f.last_seq();
        let blocked = f
            .block(
                &admin,
                "dev@example.com",
                "  laptop lost  ",
                None,
                T0 + HOUR,
            )
            .unwrap();
        assert_eq!(blocked.block.reason, "laptop lost");
        assert_eq!(blocked.block.by, "admin@example.com");
        assert_eq!(blocked.block.until, None);

        // The member's very next request, and every decision about them.
        let err = own_request(&f, 1002, T0 + HOUR).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Blocked);
        assert_eq!(err.to_string(), "you are blocked in acme: laptop lost");
        assert_eq!(
            err.hint().unwrap(),
            "ask an admin of acme to unblock you (compartment user unblock)"
        );
        let decision = decide(
            &f,
            user(1002),
            Permission::DeploymentCreate,
            Some("acme"),
            T0 + HOUR,
        );
        assert!(!decision.allowed);
        assert_eq!(decision.reason, Reason::Blocked);
        assert_eq!(
            decision.message,
            "dev@example.com is blocked in acme: laptop lost"
        );
        // The organization chosen by default stays acme, so the block answers.
        let snapshot = f.store.read().unwrap();
        let err = members::list(&snapshot, &user(1002), None, T0 + HOUR).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Blocked);
        drop(snapshot);

        // The list shows it; the feed carries it, with the reason.
        let snapshot = f.store.read().unwrap();
        let list = members::list(&snapshot, &admin, Some("acme"), T0 + HOUR).unwrap();
        let dev = list
            .members
            .iter()
            .find(|m| m.email == "dev@example.com")
            .unwrap();
        assert_eq!(dev.blocked.as_ref().unwrap().reason, "laptop lost");
        drop(snapshot);
        assert_eq!(
            f.acme_feed(seq),
            ["member.blocked acme dev@example.com deployer active uid 1002 by user; until -; reason laptop lost"]
        );

        // Unblocked, the member acts again; the feed says so.
        let audit = f.audit_len();
        let seq = f.last_seq();
        let unblocked = f.unblock(&admin, "dev@example.com", T0 + 2 * HOUR).unwrap();
        assert_eq!(unblocked.block.reason, "laptop lost");
        own_request(&f, 1002, T0 + 2 * HOUR).unwrap();
        assert_eq!(
            f.acme_feed(seq),
            ["member.unblocked acme dev@example.com deployer active uid 1002 by user"]
        );
        assert_eq!(
            f.audit_since(audit),
            ["organization.user.unblock user was blocked by admin@example.com: laptop lost"]
        );
        let err = f
            .unblock(&admin, "dev@example.com", T0 + 2 * HOUR)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRequest);
        assert_eq!(err.to_string(), "dev@example.com is not blocked in acme");
        f.assert_indexes_agree();
    }
}

#[test]
fn a_block_until_a_time_lifts_on_the_second_and_the_sweeper_records_it() {
    for mut f in Fixture::each() {
        f.org_with("acme", &[("dev@example.com", Role::Deployer)]);
        let until = "2026-05-02T12:00:00Z"; // T0 + 1 day
        f.block(&root(), "dev@example.com", "audit", Some(until), T0)
            .unwrap();
        let err = own_request(&f, 1002, T0 + DAY - 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "you are blocked in acme until 2026-05-02T12:00:00Z: audit"
        );
        // Lifted at its end, whether or not the sweeper has run.
        own_request(&f, 1002, T0 + DAY).unwrap();
        let seq = f.last_seq();
        let audit = f.audit_len();
        assert_eq!(f.sweep(T0 + DAY - 1), 0);
        assert_eq!(f.sweep(T0 + DAY), 1);
        assert_eq!(
            f.acme_feed(seq),
            ["member.unblocked acme dev@example.com deployer active uid 1002 by daemon"]
        );
        assert_eq!(
            f.audit_since(audit),
            ["organization.user.unblock daemon the block by uid 0 ended: audit"]
        );
        assert_eq!(f.sweep(T0 + 2 * DAY), 0, "nothing left due");
        f.assert_indexes_agree();
    }
}

#[test]
fn blocks_keep_within_the_caps_and_never_leave_an_organization_without_an_admin() {
    for mut f in Fixture::each() {
        f.org_with(
            "acme",
            &[
                ("dev@example.com", Role::Deployer),
                ("second@example.com", Role::Admin),
            ],
        );
        let (admin, dev, second) = (user(1001), user(1002), user(1003));
        // A deployer may not block; nobody blocks themselves; outsiders learn nothing.
        assert_eq!(
            kind(f.block(&dev, "second@example.com", "x", None, T0)),
            ErrorKind::Forbidden
        );
        let err = f
            .block(&admin, "admin@example.com", "x", None, T0)
            .unwrap_err();
        assert_eq!(err.to_string(), "you cannot block yourself in acme");
        assert_eq!(
            kind(f.block(&user(4242), "dev@example.com", "x", None, T0)),
            ErrorKind::Unauthenticated
        );
        // A reason is required, short, and free of control characters.
        for (reason, said) in [
            ("   ", "a block needs a reason"),
            ("a\u{1b}[31m", "control characters"),
            (&"x".repeat(501), "at most 500 characters"),
        ] {
            let err = f
                .block(&admin, "dev@example.com", reason, None, T0)
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadRequest);
            assert!(err.to_string().contains(said), "{err}");
        }
        // Two admins: one may block the other; then the one left is the last admin nothing
        // bounds, whom nobody may remove, demote or block.
        f.block(&admin, "second@example.com", "left the team", None, T0)
            .unwrap();
        assert_eq!(
            kind(own_request(&f, 1003, T0)),
            ErrorKind::Blocked,
            "{second:?}"
        );
        let err = f.remove(root(), "acme", "admin@example.com").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LastAdmin);
        assert_eq!(err.hint().unwrap(), "grant admin to another member first");
        let err = f
            .block(&root(), "admin@example.com", "x", None, T0)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LastAdmin);
        assert_eq!(
            err.to_string(),
            "cannot block the last admin of acme: no admin could act there"
        );
        assert_eq!(
            kind(f.grant(root(), "acme", "admin@example.com", Role::Deployer)),
            ErrorKind::LastAdmin
        );
        // The blocked admin may be removed: it was not counted.
        f.remove(root(), "acme", "second@example.com").unwrap();
        f.assert_indexes_agree();
    }
}

#[test]
fn access_until_ends_on_the_second_with_warnings_ahead_and_the_sweeper_removes_it() {
    use compartmentctl::wire::{Permission, Reason};
    for mut f in Fixture::each() {
        f.org_with("acme", &[]);
        let token = f.next_token();
        let policy = f.policy.clone();
        let params = UserInviteParams {
            org: Some("acme".into()),
            email: "temp@example.com".into(),
            role: Role::Viewer,
            expires_in: None,
            resend: false,
            unix_user: None,
            access_until: Some("10days".into()),
        };
        let invitation = f
            .write(|txn| invitations::invite(txn, &root(), &params, None, &token, &policy, T0))
            .unwrap();
        let end = T0 + 10 * DAY;
        assert_eq!(
            invitation.access_until.as_deref(),
            Some("2026-05-11T12:00:00Z")
        );
        f.activate(
            user(1005),
            invitation.activation_url.as_deref().unwrap(),
            T0,
        )
        .unwrap();
        let seq = f.last_seq();
        // The week's warning, then the day's, each once.
        assert_eq!(f.sweep(end - 7 * DAY - 1), 0);
        assert_eq!(f.sweep(end - 7 * DAY), 1);
        assert_eq!(f.sweep(end - 2 * DAY), 0);
        assert_eq!(f.sweep(end - DAY), 1);
        let allowed = decide(
            &f,
            user(1005),
            Permission::OrganizationRead,
            Some("acme"),
            end - 1,
        );
        assert!(allowed.allowed);
        // Ended on the second, before the sweeper has run.
        let decision = decide(
            &f,
            user(1005),
            Permission::OrganizationRead,
            Some("acme"),
            end,
        );
        assert!(!decision.allowed);
        assert_eq!(decision.reason, Reason::AccessEnded);
        assert_eq!(
            decision.message,
            "temp@example.com's access to acme ended at 2026-05-11T12:00:00Z"
        );
        let snapshot = f.store.read().unwrap();
        let err = orgs::list(&snapshot, &user(1005), end).map(|list| list.orgs.len());
        assert_eq!(
            err.unwrap(),
            0,
            "acme is no longer among the member's organizations"
        );
        let err = members::list(&snapshot, &user(1005), Some("acme"), end).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden);
        assert_eq!(
            err.to_string(),
            "your access to acme ended at 2026-05-11T12:00:00Z"
        );
        drop(snapshot);
        let audit = f.audit_len();
        assert_eq!(f.sweep(end), 1);
        assert_eq!(
            f.acme_feed(seq),
            [
                "member.access_expiring acme temp@example.com viewer active uid 1005 by daemon; until 2026-05-11T12:00:00Z; reason -",
                "member.access_expiring acme temp@example.com viewer active uid 1005 by daemon; until 2026-05-11T12:00:00Z; reason -",
                "member.removed acme temp@example.com viewer uid 1005 by daemon",
            ]
        );
        assert_eq!(
            f.audit_since(audit),
            ["organization.access.expire daemon access ended at 2026-05-11T12:00:00Z"]
        );
        let snapshot = f.store.read().unwrap();
        assert_eq!(
            snapshot.membership("acme", "temp@example.com").unwrap(),
            None
        );
        drop(snapshot);
        f.assert_indexes_agree();
    }
}

#[test]
fn an_elevation_falls_back_on_the_second_and_never_counts_as_an_admin() {
    use compartmentctl::wire::Permission;
    for mut f in Fixture::each() {
        f.org_with("acme", &[("ops@example.com", Role::Readonly)]);
        let admin = user(1001);
        // Only above the role held.
        let err = f
            .grant_until(&admin, "ops@example.com", Role::Viewer, "1day", T0)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRequest);
        assert_eq!(
            err.to_string(),
            "--until grants a role above the one held for a time; ops@example.com holds readonly: grant viewer without --until"
        );
        for (until, said) in [
            ("yesterday", "neither a time nor a duration"),
            ("2020-01-01T00:00:00Z", "is not in the future"),
            ("11years", "more than ten years ahead"),
        ] {
            let err = f
                .grant_until(&admin, "ops@example.com", Role::Admin, until, T0)
                .unwrap_err();
            assert!(err.to_string().contains(said), "{until}: {err}");
        }
        // A date alone is its midnight, UTC; what the CLI lets through, the daemon takes.
        let by_date = f
            .grant_until(&admin, "ops@example.com", Role::Admin, "2026-05-03", T0)
            .unwrap();
        assert_eq!(by_date.until.as_deref(), Some("2026-05-03T00:00:00Z"));
        f.grant(root(), "acme", "ops@example.com", Role::Readonly)
            .unwrap();
        let seq = f.last_seq();
        let granted = f
            .grant_until(&admin, "ops@example.com", Role::Admin, "2days", T0)
            .unwrap();
        assert_eq!(
            (
                granted.role,
                granted.previous_role,
                granted.until.as_deref()
            ),
            (Role::Admin, Role::Readonly, Some("2026-05-03T12:00:00Z"))
        );
        let end = T0 + 2 * DAY;
        let may_invite = |now| {
            decide(
                &f,
                user(1002),
                Permission::OrganizationUserInvite,
                Some("acme"),
                now,
            )
            .allowed
        };
        assert!(may_invite(end - 1));
        assert!(!may_invite(end), "fallen back on the second, unswept");
        let raised = decide(
            &f,
            user(1002),
            Permission::DeploymentCreate,
            Some("acme"),
            T0,
        );
        assert_eq!(
            raised.message,
            "ops@example.com is admin in acme until 2026-05-03T12:00:00Z, then readonly (invited by root), and deployment.create needs the deployer role or above"
        );
        // A temporary admin is not one the last-admin rule can rely on.
        let err = f.remove(root(), "acme", "admin@example.com").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LastAdmin);
        // The week's warning was past when it was granted; the day's is given.
        assert_eq!(f.sweep(end - DAY), 1);
        assert_eq!(f.sweep(end), 1);
        assert_eq!(
            f.acme_feed(seq),
            [
                "member.role_changed acme ops@example.com admin (was readonly) active uid 1002 by user; until 2026-05-03T12:00:00Z; reason -",
                "member.access_expiring acme ops@example.com admin (was readonly) active uid 1002 by daemon; until 2026-05-03T12:00:00Z; reason -",
                "member.role_changed acme ops@example.com readonly (was admin) active uid 1002 by daemon",
            ]
        );
        let snapshot = f.store.read().unwrap();
        let ops = snapshot
            .membership("acme", "ops@example.com")
            .unwrap()
            .unwrap();
        assert_eq!((ops.role, ops.terms.elevation), (Role::Readonly, None));
        // The audit log records the end from the role held until then.
        let audit = snapshot.audit().unwrap();
        let ended = audit.last().unwrap();
        assert_eq!(ended.event, "organization.role.expire");
        assert_eq!(
            (
                ended.before.as_ref().unwrap().role,
                ended.after.as_ref().unwrap().role
            ),
            (Some(Role::Admin), Some(Role::Readonly))
        );
        drop(snapshot);
        f.assert_indexes_agree();
    }
}

#[test]
fn another_organizations_admin_can_neither_block_nor_raise_nor_learn_a_member() {
    for mut f in Fixture::each() {
        f.org_with("acme", &[("dev@example.com", Role::Deployer)]);
        // beta's admin, uid 2001, holds no membership of acme.
        let url = f.create_org("beta", "boss@beta.example");
        f.activate(user(2001), &url, T0).unwrap();
        let boss = user(2001);
        let seq = f.last_seq();
        for err in [
            f.block(&boss, "dev@example.com", "mine now", None, T0)
                .map(|_| ())
                .unwrap_err(),
            f.unblock(&boss, "dev@example.com", T0)
                .map(|_| ())
                .unwrap_err(),
            f.grant_until(&boss, "dev@example.com", Role::Admin, "1h", T0)
                .map(|_| ())
                .unwrap_err(),
        ] {
            // The same answer as for an organization that does not exist.
            assert_eq!(err.kind(), ErrorKind::NotFound);
            assert_eq!(err.to_string(), "organization acme not found");
        }
        assert_eq!(f.last_seq(), seq, "nothing changed");
        own_request(&f, 1002, T0).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// `org rename`: everything filed under the name follows it.

#[test]
fn a_renamed_organization_keeps_its_members_invitations_feed_and_audit_log() {
    use compartmentctl::wire::{OrgRenameParams, UserListParams};
    for mut f in Fixture::each() {
        f.org_with("acme", &[("dev@example.com", Role::Deployer)]);
        f.write(|txn| orgs::use_org(txn, &user(1002), "acme", T0))
            .unwrap();
        let pending = f
            .invite_as(root(), "acme", "late@example.com", Role::Viewer, false, T0)
            .unwrap();
        let feed_before = {
            let snapshot = f.store.read().unwrap();
            snapshot.org_events_after("acme", 0, 1000).unwrap().len()
        };
        let audit_before = {
            let snapshot = f.store.read().unwrap();
            snapshot.org_audit_after("acme", 0, 1000).unwrap().len()
        };
        let rename = |f: &Fixture, caller: Caller, name: &str, new_name: &str| {
            let params = OrgRenameParams {
                name: name.into(),
                new_name: new_name.into(),
            };
            f.write(|txn| orgs::rename(txn, &caller, &params, T0))
        };
        // Only a superuser; to a valid, free name; of an organization that exists.
        let err = rename(&f, user(1001), "acme", "acme-corp").unwrap_err();
        assert_eq!(
            err.to_string(),
            "renaming an organization is for superusers (root or the daemon's own user)"
        );
        assert_eq!(
            kind(rename(&f, root(), "acme", "Acme Corp")),
            ErrorKind::BadRequest
        );
        assert_eq!(kind(rename(&f, root(), "nope", "x")), ErrorKind::NotFound);
        f.create_org("beta", "b@beta.example");
        assert_eq!(
            kind(rename(&f, root(), "acme", "beta")),
            ErrorKind::AlreadyExists
        );

        let renamed = rename(&f, root(), "acme", "acme-corp").unwrap();
        assert_eq!(
            (
                renamed.org.as_str(),
                renamed.previous.as_str(),
                renamed.memberships
            ),
            ("acme-corp", "acme", 3)
        );
        f.assert_indexes_agree();
        let snapshot = f.store.read().unwrap();
        assert!(snapshot.org("acme").unwrap().is_none());
        // The members act under the new name, the deployer's `org use` with them.
        let page =
            members::list_page(&snapshot, &user(1002), &UserListParams::default(), T0).unwrap();
        assert_eq!(page.org, "acme-corp");
        assert_eq!(page.members.len(), 3);
        assert_eq!(
            kind(members::list(&snapshot, &user(1001), Some("acme"), T0)),
            ErrorKind::NotFound
        );
        assert_eq!(snapshot.active_admins("acme-corp", 10).unwrap(), 1);
        // Its feed and its audit log follow: what was acme's, and the renaming.
        let feed = snapshot.org_events_after("acme-corp", 0, 1000).unwrap();
        assert_eq!(feed.len(), feed_before + 1);
        let (_, last) = feed.last().unwrap();
        assert_eq!(last.kind.as_str(), "org.renamed");
        assert_eq!(
            last.note.as_ref().unwrap().previous_name.as_deref(),
            Some("acme")
        );
        let audit = snapshot.org_audit_after("acme-corp", 0, 1000).unwrap();
        assert_eq!(audit.len(), audit_before + 1);
        assert!(audit.last().unwrap().text.contains("renamed from acme"));
        assert!(snapshot
            .org_audit_after("acme", 0, 1000)
            .unwrap()
            .is_empty());
        let verified = crate::store::chain::verify(&snapshot, &[]).unwrap();
        assert_eq!(verified.broken, None);
        drop(snapshot);
        // The pending invitation's URL still works, into the new name.
        f.activate(user(1009), pending.activation_url.as_deref().unwrap(), T0)
            .unwrap();
        let snapshot = f.store.read().unwrap();
        let late = snapshot
            .membership("acme-corp", "late@example.com")
            .unwrap()
            .unwrap();
        assert_eq!(late.status, MemberStatus::Active);
        drop(snapshot);
        // A new acme starts afresh: none of the old one's feed or records.
        f.create_org("acme", "new@example.com");
        let snapshot = f.store.read().unwrap();
        let feed = shown(snapshot.org_events_after("acme", 0, 1000).unwrap());
        assert_eq!(feed, ["member.added acme new@example.com admin invited"]);
        assert_eq!(snapshot.org_audit_after("acme", 0, 1000).unwrap().len(), 1);
        drop(snapshot);
        f.assert_indexes_agree();
    }
}

#[test]
fn a_feed_of_an_organization_follows_its_renamings_and_ends_with_its_deletion() {
    use crate::events::{batch_of, FeedOrg, Gone};
    use compartmentctl::wire::{OrgDeleteParams, OrgRenameParams};
    for mut f in Fixture::each() {
        f.create_org("acme", "admin@example.com");
        let (of, after) = {
            let snapshot = f.store.read().unwrap();
            let of = FeedOrg::named(&snapshot, "acme").unwrap().unwrap();
            (of, snapshot.last_event_seq().unwrap())
        };
        let gone = |f: &Fixture| {
            let snapshot = f.store.read().unwrap();
            batch_of(&snapshot, Some(&of), after).unwrap().gone
        };
        assert_eq!(gone(&f), None);
        let rename = |f: &Fixture, name: &str, new_name: &str, at: Millis| {
            let params = OrgRenameParams {
                name: name.into(),
                new_name: new_name.into(),
            };
            f.write(|txn| orgs::rename(txn, &root(), &params, at))
                .unwrap();
        };
        // Renamed twice, and a new organization made under its first name: the feed
        // follows the one it was of, not the newcomer.
        rename(&f, "acme", "acme-corp", T0 + 1_000);
        rename(&f, "acme-corp", "acme-inc", T0 + 2_000);
        let created = OrgCreateParams {
            name: "acme".into(),
            admin: "new@example.com".into(),
            admin_unix_user: None,
            expires_in: Default::default(),
        };
        let (token, policy) = (f.next_token(), f.policy.clone());
        f.write(|txn| orgs::create(txn, &root(), &created, None, &token, &policy, T0 + 3_000))
            .unwrap();
        assert_eq!(gone(&f), Some(Gone::Renamed("acme-inc".into())));
        // Once deleted, it ends: a feed of it cannot follow.
        let delete = OrgDeleteParams {
            name: "acme-inc".into(),
            force: true,
        };
        f.write(|txn| orgs::delete(txn, &root(), &delete, T0 + 4_000))
            .unwrap();
        assert_eq!(gone(&f), Some(Gone::Deleted));
    }
}

#[test]
fn a_renamed_account_keeps_its_user_memberships_and_invitations() {
    use compartmentctl::wire::AccountRenameParams;
    for mut f in Fixture::each() {
        f.org_with("acme", &[("dev@example.com", Role::Deployer)]);
        f.create_org("beta", "b@beta.example");
        let pending = f
            .invite_as(root(), "beta", "dev@example.com", Role::Viewer, false, T0)
            .unwrap();
        f.block(&user(1001), "dev@example.com", "audit", None, T0)
            .unwrap();
        let rename = |f: &Fixture, caller: Caller, email: &str, new_email: &str| {
            let params = AccountRenameParams {
                email: email.into(),
                new_email: new_email.into(),
            };
            f.write(|txn| accounts::rename(txn, &caller, &params, T0))
        };
        let err = rename(&f, user(1001), "dev@example.com", "d@example.com").unwrap_err();
        assert_eq!(
            err.to_string(),
            "renaming accounts is for superusers (root or the daemon's own user)"
        );
        assert_eq!(
            kind(rename(&f, root(), "nobody@example.com", "d@example.com")),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(rename(&f, root(), "dev@example.com", "not an address")),
            ErrorKind::BadRequest
        );
        let err = rename(&f, root(), "dev@example.com", "admin@example.com").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(
            err.to_string(),
            "an account admin@example.com already exists"
        );

        let seq = f.last_seq();
        let renamed = rename(&f, root(), "dev@example.com", "d@example.com").unwrap();
        assert_eq!(
            (
                renamed.email.as_str(),
                renamed.previous.as_str(),
                renamed.memberships
            ),
            ("d@example.com", "dev@example.com", 2)
        );
        f.assert_indexes_agree();
        let snapshot = f.store.read().unwrap();
        assert_eq!(snapshot.account("dev@example.com").unwrap(), None);
        assert_eq!(
            snapshot.binding(1002).unwrap().unwrap().email,
            "d@example.com"
        );
        // Its block went with it; the feed of each of its organizations tells of it.
        let dev = snapshot
            .membership("acme", "d@example.com")
            .unwrap()
            .unwrap();
        assert_eq!(dev.terms.block.unwrap().reason, "audit");
        for org in ["acme", "beta"] {
            let feed = snapshot.org_events_after(org, seq, 10).unwrap();
            assert_eq!(feed.len(), 1, "{org}");
            let (_, event) = &feed[0];
            assert_eq!(
                (event.kind.as_str(), event.email.as_str(), event.uid),
                ("account.renamed", "d@example.com", None)
            );
            assert_eq!(
                event.note.as_ref().unwrap().previous_name.as_deref(),
                Some("dev@example.com")
            );
        }
        drop(snapshot);
        // Its user acts as the new address; its pending invitation redeems into it.
        let snapshot = f.store.read().unwrap();
        let me = identity::whoami(&snapshot, &user(1002), T0).unwrap();
        assert_eq!(me.account.unwrap().email, "d@example.com");
        drop(snapshot);
        f.unblock(&user(1001), "d@example.com", T0).unwrap();
        own_request(&f, 1002, T0).unwrap();
        assert_eq!(pending.status, MemberStatus::Active, "root vouched");
        // A pending account's invitation redeems into its new address.
        let late = f
            .invite_as(root(), "beta", "late@example.com", Role::Viewer, false, T0)
            .unwrap();
        rename(&f, root(), "late@example.com", "l8@example.com").unwrap();
        f.activate(user(1010), late.activation_url.as_deref().unwrap(), T0)
            .unwrap();
        let snapshot = f.store.read().unwrap();
        let l8 = snapshot
            .membership("beta", "l8@example.com")
            .unwrap()
            .unwrap();
        assert_eq!((l8.status, l8.uid), (MemberStatus::Active, Some(1010)));
        assert_eq!(
            snapshot.binding(1010).unwrap().unwrap().email,
            "l8@example.com"
        );
        drop(snapshot);
        f.assert_indexes_agree();
    }
}

// ---------------------------------------------------------------------------------------
// Unix groups mapped to a role (`org map-group`).

/// `uid`, unbound or not, in the Unix groups `gids`.
fn in_groups(uid: u32, gids: &[u32]) -> Caller {
    Caller {
        groups: std::sync::Arc::from(gids),
        ..user(uid)
    }
}

impl Fixture {
    fn map_group(
        &self,
        caller: &Caller,
        gid: u32,
        name: &str,
        role: Role,
    ) -> Result<compartmentctl::wire::GroupMapped, RuleError> {
        let params = compartmentctl::wire::OrgMapGroupParams {
            name: "acme".into(),
            group: name.into(),
            role,
        };
        self.write(|txn| orgs::map_group(txn, caller, &params, (gid, name.to_owned()), T0))
    }

    fn unmap_group(
        &self,
        caller: &Caller,
        group: &str,
    ) -> Result<compartmentctl::wire::GroupUnmapped, RuleError> {
        let params = compartmentctl::wire::OrgUnmapGroupParams {
            name: "acme".into(),
            group: group.into(),
        };
        self.write(|txn| orgs::unmap_group(txn, caller, &params, T0))
    }
}

#[test]
fn a_mapped_groups_users_act_with_its_role_and_a_membership_combines_to_the_higher() {
    use compartmentctl::wire::{Permission, Reason, UserListParams};
    for mut f in Fixture::each() {
        f.org_with("acme", &[("view@example.com", Role::Viewer)]);
        f.create_org("beta", "b@beta.example");
        // Only a superuser maps; an organization's admin cannot (a host-level fact).
        let err = f
            .map_group(&user(1001), 5000, "ops", Role::Deployer)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "mapping Unix groups is for superusers (root or the daemon's own user)"
        );
        let stranger = in_groups(3000, &[3000, 5000]);
        let snapshot = f.store.read().unwrap();
        assert_eq!(
            kind(members::list(&snapshot, &stranger, Some("acme"), T0)),
            ErrorKind::Unauthenticated,
            "not yet mapped"
        );
        drop(snapshot);
        let mapped = f.map_group(&root(), 5000, "ops", Role::Deployer).unwrap();
        assert_eq!((mapped.gid, mapped.previous_role), (5000, None));

        // An unbound user of the group acts as a deployer, without an invitation.
        let snapshot = f.store.read().unwrap();
        let list =
            members::list_page(&snapshot, &stranger, &UserListParams::default(), T0).unwrap();
        assert_eq!(list.org, "acme", "its only organization is chosen");
        assert_eq!(list.groups.len(), 1);
        assert_eq!(
            (list.groups[0].group.as_str(), list.groups[0].role),
            ("ops", Role::Deployer)
        );
        drop(snapshot);
        let decision = decide(&f, stranger.clone(), Permission::DeploymentCreate, None, T0);
        assert!(decision.allowed);
        assert_eq!(decision.reason, Reason::Group);
        assert_eq!(
            decision.message,
            "uid 3000 (user3000) is deployer in acme through Unix group ops (gid 5000), and deployment.create needs the deployer role or above"
        );
        let decision = decide(
            &f,
            stranger.clone(),
            Permission::OrganizationUserInvite,
            Some("acme"),
            T0,
        );
        assert_eq!(decision.reason, Reason::RoleTooLow);
        // Not in another organization.
        let snapshot = f.store.read().unwrap();
        assert_eq!(
            kind(members::list(&snapshot, &stranger, Some("beta"), T0)),
            ErrorKind::NotFound
        );
        // A viewer in the group acts with the higher role; blocked, with none.
        let viewer = in_groups(1002, &[1002, 5000]);
        drop(snapshot);
        let decision = decide(
            &f,
            viewer.clone(),
            Permission::DeploymentCreate,
            Some("acme"),
            T0,
        );
        assert!(decision.allowed);
        assert_eq!(decision.reason, Reason::Group);
        f.block(&user(1001), "view@example.com", "audit", None, T0)
            .unwrap();
        let decision = decide(&f, viewer, Permission::OrganizationRead, Some("acme"), T0);
        assert_eq!(decision.reason, Reason::Blocked);

        // Mapped again, its role changes; unmapped by gid, its users lose it at once.
        let mapped = f.map_group(&root(), 5000, "ops", Role::Readonly).unwrap();
        assert_eq!(mapped.previous_role, Some(Role::Deployer));
        let unmapped = f.unmap_group(&root(), "5000").unwrap();
        assert_eq!(
            (unmapped.group.as_str(), unmapped.role),
            ("ops", Role::Readonly)
        );
        let snapshot = f.store.read().unwrap();
        assert_eq!(
            kind(members::list(&snapshot, &stranger, Some("acme"), T0)),
            ErrorKind::Unauthenticated
        );
        drop(snapshot);
        let err = f.unmap_group(&root(), "ops").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.to_string(), "no Unix group \"ops\" is mapped in acme");
        f.assert_indexes_agree();
    }
}

#[test]
fn an_admin_by_group_never_counts_for_the_last_admin_rule_and_groups_follow_the_org() {
    use compartmentctl::wire::{OrgDeleteParams, OrgRenameParams};
    for mut f in Fixture::each() {
        f.org_with("acme", &[]);
        f.map_group(&root(), 6000, "admins", Role::Admin).unwrap();
        let by_group = in_groups(3001, &[6000]);
        // The group's admin acts as one, but is no admin the rule can rely on.
        let err = f
            .remove(by_group.clone(), "acme", "admin@example.com")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LastAdmin);
        // Inviting without an account, it is named by its user, never as a superuser (whose
        // `uid N` an account's rebinding reads as vouching).
        let invited = f
            .invite_as(
                by_group.clone(),
                "acme",
                "new@example.com",
                Role::Viewer,
                false,
                T0,
            )
            .unwrap();
        assert!(invited.activation_url.is_some());
        let snapshot = f.store.read().unwrap();
        let new = snapshot
            .membership("acme", "new@example.com")
            .unwrap()
            .unwrap();
        assert_eq!(new.invited_by, "user3001 (uid 3001)");
        drop(snapshot);
        // Renamed, the organization keeps its groups; deleted, they go with it.
        let params = OrgRenameParams {
            name: "acme".into(),
            new_name: "acme-corp".into(),
        };
        f.write(|txn| orgs::rename(txn, &root(), &params, T0))
            .unwrap();
        let snapshot = f.store.read().unwrap();
        assert_eq!(snapshot.orgs_of_groups(&[6000]).unwrap(), ["acme-corp"]);
        let list = members::list(&snapshot, &by_group, Some("acme-corp"), T0).unwrap();
        assert_eq!(list.org, "acme-corp");
        drop(snapshot);
        let params = OrgDeleteParams {
            name: "acme-corp".into(),
            force: true,
        };
        f.write(|txn| orgs::delete(txn, &root(), &params, T0))
            .unwrap();
        let snapshot = f.store.read().unwrap();
        assert!(snapshot.orgs_of_groups(&[6000]).unwrap().is_empty());
        assert_eq!(
            kind(members::list(&snapshot, &by_group, None, T0)),
            ErrorKind::Unauthenticated
        );
    }
}

// ---------------------------------------------------------------------------------------
// The activation page's view of a token (`invitations::preview`).

#[test]
fn a_preview_tells_a_valid_tokens_invitation_and_only_the_kind_of_any_other() {
    use invitations::Preview;
    for mut f in Fixture::each() {
        let url = f.create_org("acme", "admin@example.com");
        let seq = f.last_seq();
        let preview = |f: &Fixture, url: &str, now| {
            invitations::preview(&f.store.read().unwrap(), url, now).unwrap()
        };
        assert_eq!(
            preview(&f, &url, T0),
            Preview::Valid {
                org: "acme".into(),
                email: "admin@example.com".into(),
                role: Role::Admin,
                expires_at: T0 + 7 * DAY,
                access_until: None,
                redeemer: None,
            }
        );
        assert_eq!(f.last_seq(), seq, "looking changed nothing");
        assert_eq!(preview(&f, &url, T0 + 7 * DAY), Preview::Expired, "unswept");
        // The token alone, or mangled, or none.
        let token = url.rsplit('=').next().unwrap();
        assert!(matches!(preview(&f, token, T0), Preview::Valid { .. }));
        assert_eq!(preview(&f, &url[..url.len() - 1], T0), Preview::Unknown);
        assert_eq!(preview(&f, "", T0), Preview::Unknown);
        assert_eq!(preview(&f, "<script>", T0), Preview::Unknown);
        f.activate(user(1001), &url, T0).unwrap();
        assert_eq!(preview(&f, &url, T0), Preview::Used);
        // Replaced by a newer URL.
        let first = f
            .invite_as(root(), "acme", "r@example.com", Role::Viewer, false, T0)
            .unwrap();
        f.invite_as(root(), "acme", "r@example.com", Role::Viewer, true, T0)
            .unwrap();
        assert_eq!(
            preview(&f, first.activation_url.as_deref().unwrap(), T0),
            Preview::Revoked
        );
    }
}
