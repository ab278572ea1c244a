//! The rules below the socket, on a temporary database, with time and tokens chosen by
//! the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use compartmentctl::wire::{
    ErrorKind, MemberStatus, OrgCreateParams, Role, RoleGrantParams, UserInviteParams,
    UserRemoveParams,
};

use super::*;
use crate::store::{check_indexes, Millis, Reader, Store, TokenState};
use crate::token::Token;

const T0: Millis = 1_777_636_800_000; // 2026-05-01T12:00:00Z
const DAY: Millis = 24 * 60 * 60 * 1000;

struct Fixture {
    store: Store,
    _dir: tempfile::TempDir,
    policy: Policy,
    tokens: u32,
}

fn root() -> Caller {
    Caller {
        uid: 0,
        gid: 0,
        pid: Some(1),
        superuser: true,
    }
}

fn user(uid: u32) -> Caller {
    Caller {
        uid,
        gid: uid,
        pid: Some(2),
        superuser: false,
    }
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        Fixture {
            store,
            _dir: dir,
            policy: Policy {
                public_url: "https://your-compartment-host".into(),
                invitation_ttl: Duration::from_secs(7 * 24 * 3600),
            },
            tokens: 0,
        }
    }

    /// Runs `change` in a write transaction, committing only when it succeeds, as the
    /// writer does.
    fn write<T>(
        &self,
        change: impl FnOnce(&redb::WriteTransaction) -> Result<T, RuleError>,
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
        };
        let created = self
            .write(|txn| orgs::create(txn, root(), &params, &token, &policy, T0))
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
        let token = self.next_token();
        let policy = self.policy.clone();
        let params = UserInviteParams {
            org: Some(org.into()),
            email: email.into(),
            role,
            expires_in: None,
            resend,
        };
        self.write(|txn| invitations::invite(txn, caller, &params, &token, &policy, now))
    }

    fn activate(&self, caller: Caller, url: &str, now: Millis) -> Result<(), RuleError> {
        self.write(|txn| invitations::activate(txn, caller, url, now))
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
        };
        self.write(|txn| members::grant(txn, caller, &params, T0))
            .map(|_| ())
    }

    fn remove(&self, caller: Caller, org: &str, email: &str) -> Result<(), RuleError> {
        let params = UserRemoveParams {
            org: Some(org.into()),
            email: email.into(),
        };
        self.write(|txn| members::remove(txn, caller, &params, T0))
            .map(|_| ())
    }

    fn status(&self, org: &str, email: &str, now: Millis) -> MemberStatus {
        let snapshot = self.store.read().unwrap();
        let list = members::list(&snapshot, root(), Some(org), now).unwrap();
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
    let mut f = Fixture::new();
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

#[test]
fn the_sweeper_expires_what_is_due_and_nothing_else() {
    let mut f = Fixture::new();
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
    assert_eq!(snapshot.next_expiry().unwrap(), Some(T0 + 8 * DAY));
    drop(snapshot);
    let err = f
        .activate(user(2001), &early.activation_url.unwrap(), T0)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenExpired);
    f.activate(user(2002), &late.activation_url.unwrap(), T0 + 7 * DAY)
        .unwrap();
    f.assert_indexes_agree();
}

#[test]
fn a_token_is_single_use() {
    let mut f = Fixture::new();
    let url = f.create_org("acme", "admin@example.com");
    f.activate(user(1001), &url, T0).unwrap();
    assert_eq!(kind(f.activate(user(1001), &url, T0)), ErrorKind::TokenUsed);
    assert_eq!(kind(f.activate(user(1002), &url, T0)), ErrorKind::TokenUsed);
    assert_eq!(
        kind(f.activate(user(1002), "https://h/activate?token=nope", T0)),
        ErrorKind::InvalidToken
    );
}

#[test]
fn resend_revokes_the_old_token_and_reinvite_after_expiry_works() {
    let mut f = Fixture::new();
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

#[test]
fn an_active_account_joins_at_once_without_a_token() {
    let mut f = Fixture::new();
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
    let tokens_pending = f.store.read().unwrap().next_expiry().unwrap();
    assert_eq!(tokens_pending, None, "no invitation is pending anywhere");
}

#[test]
fn grants_are_capped_at_the_granters_role() {
    let mut f = Fixture::new();
    f.org_with(
        "acme",
        &[
            ("dep@example.com", Role::Deployer),
            ("ro@example.com", Role::Readonly),
            ("view@example.com", Role::Viewer),
        ],
    );
    let deployer = user(1002);
    f.grant(deployer, "acme", "ro@example.com", Role::Deployer)
        .unwrap();
    let err = f
        .grant(deployer, "acme", "ro@example.com", Role::Admin)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RoleAboveOwn);
    assert_eq!(
        err.to_string(),
        "you cannot grant admin: your own role in acme, deployer, caps what you can grant"
    );
    // Target cap: a deployer cannot touch an admin, even to demote.
    let err = f
        .grant(deployer, "acme", "admin@example.com", Role::Viewer)
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

#[test]
fn the_last_admin_stays_for_everyone_superusers_included() {
    let mut f = Fixture::new();
    f.org_with("acme", &[("second@example.com", Role::Deployer)]);
    for caller in [root(), user(1001)] {
        let err = f.remove(caller, "acme", "admin@example.com").unwrap_err();
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

#[test]
fn an_invited_admin_does_not_count_as_an_admin() {
    let mut f = Fixture::new();
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

#[test]
fn removal_is_immediate_and_kills_a_pending_token() {
    let mut f = Fixture::new();
    f.org_with("acme", &[("gone@example.com", Role::Readonly)]);
    let snapshot = f.store.read().unwrap();
    members::list(&snapshot, user(1002), Some("acme"), T0).unwrap();
    drop(snapshot);
    f.remove(user(1001), "acme", "gone@example.com").unwrap();
    let snapshot = f.store.read().unwrap();
    let err = members::list(&snapshot, user(1002), Some("acme"), T0).unwrap_err();
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

#[test]
fn callers_without_an_account_may_only_activate_and_ask_who_they_are() {
    let mut f = Fixture::new();
    f.org_with("acme", &[]);
    let stranger = user(9999);
    let snapshot = f.store.read().unwrap();
    let err = members::list(&snapshot, stranger, Some("acme"), T0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    assert_eq!(err.to_string(), "uid 9999 is not bound to an account");
    assert_eq!(
        kind(orgs::list(&snapshot, stranger)),
        ErrorKind::Unauthenticated
    );
    let who = identity::whoami(&snapshot, stranger, T0).unwrap();
    assert_eq!((who.account, who.current_org), (None, None));
    drop(snapshot);
    assert_eq!(
        kind(f.invite_as(stranger, "acme", "x@example.com", Role::Viewer, false, T0)),
        ErrorKind::Unauthenticated
    );
}

#[test]
fn activation_binds_one_uid_to_one_account() {
    let mut f = Fixture::new();
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

#[test]
fn current_org_comes_from_org_use_else_the_only_one() {
    let mut f = Fixture::new();
    f.org_with("acme", &[]);
    let admin = user(1001);
    let snapshot = f.store.read().unwrap();
    assert_eq!(
        members::list(&snapshot, admin, None, T0).unwrap().org,
        "acme"
    );
    drop(snapshot);
    let url = f.create_org("beta", "other@example.com");
    let _ = url;
    f.invite_as(root(), "beta", "admin@example.com", Role::Viewer, false, T0)
        .unwrap();
    // Now admin@ is in two orgs: no choice can be made.
    let snapshot = f.store.read().unwrap();
    let err = members::list(&snapshot, admin, None, T0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OrgRequired);
    assert!(
        err.hint().unwrap().ends_with("yours: acme, beta"),
        "{:?}",
        err.hint()
    );
    drop(snapshot);
    f.write(|txn| orgs::use_org(txn, admin, "beta")).unwrap();
    let snapshot = f.store.read().unwrap();
    assert_eq!(
        kind(members::list(&snapshot, admin, None, T0)),
        ErrorKind::Forbidden
    );
    drop(snapshot);
    assert_eq!(
        kind(f.write(|txn| orgs::use_org(txn, admin, "nope"))),
        ErrorKind::NotFound
    );
}

#[test]
fn tokens_are_stored_as_hashes_with_their_fate() {
    let mut f = Fixture::new();
    let url = f.create_org("acme", "admin@example.com");
    let text = compartmentctl::wire::token_from_url_or_token(&url).to_owned();
    let snapshot = f.store.read().unwrap();
    let record = snapshot
        .token(&crate::token::hash_text(&text))
        .unwrap()
        .unwrap();
    assert_eq!(record.state, TokenState::Pending);
    drop(snapshot);
    f.activate(user(1001), &url, T0).unwrap();
    let snapshot = f.store.read().unwrap();
    let record = snapshot
        .token(&crate::token::hash_text(&text))
        .unwrap()
        .unwrap();
    assert_eq!(record.state, TokenState::Used);
    let audit: Vec<String> = snapshot
        .audit()
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(audit, ["org.create", "account.activate"]);
}

#[test]
fn bad_input_is_a_bad_request() {
    let mut f = Fixture::new();
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
        };
        let err = f
            .write(|txn| orgs::create(txn, root(), &params, &token, &policy, T0))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRequest, "{name} {admin}");
    }
    for expires_in in ["0s", "31days", "soon"] {
        let params = UserInviteParams {
            org: Some("acme".into()),
            email: "x@example.com".into(),
            role: Role::Viewer,
            expires_in: Some(expires_in.into()),
            resend: false,
        };
        let err = f
            .write(|txn| invitations::invite(txn, root(), &params, &token, &policy, T0))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRequest, "{expires_in}");
    }
}
