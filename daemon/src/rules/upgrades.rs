//! Upgrades from schemas 2, 3 and 4: a database written by the last release of each
//! (tests/fixtures/make-v2-v4.sh) is opened, migrated to the current schema, read back and
//! changed under the current rules.
//!
//! The three releases made the same organizations, so one check reads all three; what
//! differs is how the release stored a token's key, which the upgrade must not change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use compartmentctl::wire::{
    AccountStatus, ErrorKind, MemberStatus, Role, UserListParams, UserRemoveParams,
};

use super::tests::{shown, user, user_name};
use super::*;
use crate::store::{
    check_indexes, Backend as _, Millis, Provenance, Reader, Store, StoreOptions, TokenHash,
    TokenState, CURRENT_SCHEMA_VERSION,
};
use crate::token::{key_of, legacy_key};

/// 2026-12-07T00:00:00Z: after the fixtures of schemas 2 to 4 were written (2026-12-06) and
/// before their pending invitations (a week) lapse.
const NOW: Millis = 1_796_601_600_000;

#[test]
fn a_schema_2_database_opens_migrated_with_its_tokens_keyed_by_their_hash() {
    // Schema 2 keyed a token by the SHA-256 of its text. A token of that release also reads
    // as one with an issue time, so its new key is a different, absent one: the upgrade
    // does not rekey, and activation must look for the old key too.
    opens_migrated_and_keeps_working(2, |deploy, snapshot| {
        assert_ne!(key_of(deploy), legacy_key(deploy));
        assert_eq!(snapshot.token(&key_of(deploy)).unwrap(), None);
        legacy_key(deploy)
    });
}

#[test]
fn a_schema_3_database_opens_migrated_and_its_json_records_still_read() {
    opens_migrated_and_keeps_working(3, |deploy, snapshot| {
        assert_eq!(snapshot.token(&legacy_key(deploy)).unwrap(), None);
        key_of(deploy)
    });
}

#[test]
fn a_schema_4_database_opens_migrated_and_its_binary_records_still_read() {
    opens_migrated_and_keeps_working(4, |deploy, snapshot| {
        assert_eq!(snapshot.token(&legacy_key(deploy)).unwrap(), None);
        key_of(deploy)
    });
}

/// A temporary state directory holding a copy of `schema-v{version}.redb`, and the text of
/// the pending deployer's token its script recorded.
pub(super) fn fixture(version: u64) -> (tempfile::TempDir, String) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures.join(format!("schema-v{version}.redb")),
        dir.path().join(crate::store::DATABASE_FILE),
    )
    .unwrap();
    let tokens =
        std::fs::read_to_string(fixtures.join(format!("schema-v{version}.tokens.txt"))).unwrap();
    let deploy_token = tokens.split_whitespace().nth(1).unwrap().to_owned();
    (dir, deploy_token)
}

/// Copies `schema-v{version}.redb` into a temporary state directory, checks that the
/// release wrote that version, opens it, and checks what the script made; `deploy_key`
/// gives the pending deployer's token key as that release stored it.
fn opens_migrated_and_keeps_working(
    version: u64,
    deploy_key: impl FnOnce(&str, &crate::store::Snapshot) -> TokenHash,
) {
    let (dir, deploy_token) = fixture(version);
    let deploy_token = deploy_token.as_str();
    let before = crate::store::check(dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(before.schema_version, Some(version));

    drop(Store::open(dir.path()).unwrap());
    let after = crate::store::check(dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(CURRENT_SCHEMA_VERSION, 8);
    assert_eq!(after.schema_version, Some(CURRENT_SCHEMA_VERSION));
    assert!(after.pages_clean);
    assert_eq!(after.index_problems, Vec::<String>::new());
    assert_eq!(
        (after.organizations, after.memberships, after.accounts),
        (2, 7, 7)
    );

    let store = Store::open(dir.path()).unwrap();
    let daemon_user = Caller {
        user: Some("daemon".into()),
        ..user(1)
    };
    let deploy_hash = {
        let snapshot = store.read().unwrap();
        assert!(check_indexes(&snapshot).unwrap().is_empty());

        // Both bindings were made by activating acme's invitations and keep the names
        // their uids had (Debian's `daemon` and `bin`); the admin's was issued by root.
        let admin = snapshot.binding(1).unwrap().unwrap();
        assert_eq!(admin.email, "admin@example.com");
        assert_eq!(admin.user_name.as_deref(), Some("daemon"));
        assert_eq!(admin.provenance, Provenance::Superuser);
        let viewer = snapshot.binding(2).unwrap().unwrap();
        assert_eq!(viewer.email, "viewer@example.com");
        assert_eq!(viewer.user_name.as_deref(), Some("bin"));
        assert_eq!(viewer.provenance, Provenance::Org("acme".into()));
        let accounts: Vec<(String, AccountStatus, Option<u32>)> = snapshot
            .accounts()
            .unwrap()
            .into_iter()
            .map(|(email, a)| (email, a.status, a.uid))
            .collect();
        assert_eq!(
            accounts,
            [
                ("admin@example.com".into(), AccountStatus::Active, Some(1)),
                ("again@example.com".into(), AccountStatus::Pending, None),
                ("b@beta.example".into(), AccountStatus::Pending, None),
                ("deploy@example.com".into(), AccountStatus::Pending, None),
                ("gone@example.com".into(), AccountStatus::Pending, None),
                ("late@example.com".into(), AccountStatus::Pending, None),
                ("viewer@example.com".into(), AccountStatus::Active, Some(2)),
            ]
        );

        // The memberships as their admin lists them: the removed invitation is gone, the
        // lapsed one was swept, the viewer's role was raised, and the admin joined beta at
        // once as an active account.
        let rows = |org: &str| -> Vec<String> {
            let list = members::list(&snapshot, &daemon_user, Some(org), NOW).unwrap();
            let page = members::list_page(
                &snapshot,
                &daemon_user,
                &UserListParams {
                    org: Some(org.into()),
                    ..Default::default()
                },
                NOW,
            )
            .unwrap();
            assert_eq!(page.members, list.members, "a page reads as the list does");
            list.members
                .iter()
                .map(|m| {
                    let unix_user = m.unix_user.as_deref().unwrap_or("-");
                    format!("{} {} {} {unix_user}", m.email, m.role, m.status)
                })
                .collect()
        };
        assert_eq!(
            rows("acme"),
            [
                "admin@example.com admin active daemon",
                "again@example.com viewer invited -",
                "deploy@example.com deployer invited -",
                "late@example.com viewer expired -",
                "viewer@example.com deployer active bin",
            ]
        );
        assert_eq!(
            rows("beta"),
            [
                "admin@example.com admin active daemon",
                "b@beta.example viewer invited -",
            ]
        );
        for org in ["acme", "beta"] {
            let admin = snapshot
                .membership(org, "admin@example.com")
                .unwrap()
                .unwrap();
            assert_eq!(admin.uid, Some(1), "{org}");
            assert_eq!(snapshot.active_admins(org, 10).unwrap(), 1, "{org}");
        }
        let late = snapshot
            .membership("acme", "late@example.com")
            .unwrap()
            .unwrap();
        assert_eq!(late.status, MemberStatus::Expired, "swept, not only lapsed");

        // The pending token is stored under the key its release gave it.
        let deploy = snapshot
            .membership("acme", "deploy@example.com")
            .unwrap()
            .unwrap();
        let hash = deploy_key(deploy_token, &snapshot);
        assert_eq!(deploy.token_hash, Some(hash));
        let token = snapshot.token(&hash).unwrap().unwrap();
        assert_eq!(
            (token.org.as_str(), token.email.as_str(), token.state),
            ("acme", "deploy@example.com", TokenState::Pending)
        );

        // Every spent token is in the spent index (the used, revoked and expired ones);
        // the pending ones are not.
        let mut spent: Vec<(String, TokenState)> = snapshot
            .spent_tokens_due(Millis::MAX, 100)
            .unwrap()
            .iter()
            .map(|hash| {
                let token = snapshot.token(hash).unwrap().unwrap();
                (token.email, token.state)
            })
            .collect();
        spent.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            spent,
            [
                ("admin@example.com".into(), TokenState::Used),
                ("again@example.com".into(), TokenState::Revoked),
                ("gone@example.com".into(), TokenState::Revoked),
                ("late@example.com".into(), TokenState::Expired),
                ("viewer@example.com".into(), TokenState::Used),
            ]
        );

        // The feed began at the upgrade to schema 5: nothing before it, in no feed.
        assert_eq!(snapshot.last_event_seq().unwrap(), 0);
        for org in ["acme", "beta"] {
            assert!(snapshot.org_events_after(org, 0, 10).unwrap().is_empty());
        }
        hash
    };

    // The last-admin rule reads the admins' index: beta's only admin stays.
    let refused = crate::writer::apply(&store, NOW, |txn, now| {
        let params = UserRemoveParams {
            org: Some("beta".into()),
            email: "admin@example.com".into(),
        };
        members::remove(txn, &daemon_user, &params, now)
    });
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::LastAdmin);

    // The pending invitation written by the old daemon is redeemed by this one.
    crate::writer::apply(&store, NOW, |txn, now| {
        invitations::activate(txn, &user(2001), deploy_token, now)
    })
    .unwrap();
    let snapshot = store.read().unwrap();
    let deploy = snapshot
        .membership("acme", "deploy@example.com")
        .unwrap()
        .unwrap();
    assert_eq!(
        (deploy.status, deploy.role, deploy.uid),
        (MemberStatus::Active, Role::Deployer, Some(2001))
    );
    let binding = snapshot.binding(2001).unwrap().unwrap();
    assert_eq!(binding.email, "deploy@example.com");
    assert_eq!(binding.user_name, Some(user_name(2001)));
    assert_eq!(binding.provenance, Provenance::Org("acme".into()));
    assert_eq!(
        snapshot.token(&deploy_hash).unwrap().unwrap().state,
        TokenState::Used
    );
    assert!(snapshot
        .spent_tokens_due(Millis::MAX, 100)
        .unwrap()
        .contains(&deploy_hash));
    assert_eq!(
        shown(snapshot.org_events_after("acme", 0, 10).unwrap()),
        [
            "binding.changed - deploy@example.com uid 2001",
            "member.activated acme deploy@example.com deployer active uid 2001",
        ]
    );
    assert!(snapshot.org_events_after("beta", 0, 10).unwrap().is_empty());
    assert!(check_indexes(&snapshot).unwrap().is_empty());
}
