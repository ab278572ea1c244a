//! The schema's version and its migrations: applied in one transaction under an advisory
//! lock, so that daemons starting at once do not race and a failure leaves the version
//! before it; a schema newer than this daemon's is refused and left untouched.

use std::fmt;

use tokio_postgres::Client;

/// The migrations, in order: the schema at version `n` is the first `n` of them applied.
/// A new one is a new file; a shipped one never changes.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_schema.sql"),
    include_str!("migrations/0002_audit_chain.sql"),
    include_str!("migrations/0003_membership_terms.sql"),
];

/// The schema this daemon writes.
pub const CURRENT_SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The advisory lock a daemon holds while it reads and migrates the schema.
const MIGRATION_LOCK: i64 = 0x636f_6d70_6172_746d;

/// Where the version is kept: one row.
const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS compartment_schema (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  integer NOT NULL
)";

/// Why the schema could not be brought to this daemon's version.
#[derive(Debug)]
pub enum SchemaError {
    /// A newer daemon wrote it: nothing was changed.
    TooNew {
        found: i32,
    },
    /// The server is older than [`OLDEST_SERVER`]: nothing was changed.
    ServerTooOld {
        version: String,
    },
    Postgres(tokio_postgres::Error),
    /// No connection could be had.
    Unreachable(String),
}

/// The oldest PostgreSQL the daemon runs on (`server_version_num`): 13, the first with
/// `pg_current_snapshot()`, which the glances read (`glance.rs`).
pub const OLDEST_SERVER: i32 = 130_000;

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaError::TooNew { found } => write!(
                f,
                "the PostgreSQL database has schema version {found}, newer than the {CURRENT_SCHEMA_VERSION} this compartmentd understands; it was left untouched: run a newer compartmentd"
            ),
            SchemaError::ServerTooOld { version } => write!(
                f,
                "the PostgreSQL server is version {version}, older than 13, the oldest this compartmentd runs on; it was left untouched: upgrade the server"
            ),
            SchemaError::Postgres(err) => write!(f, "PostgreSQL: {}", super::Explained(err)),
            SchemaError::Unreachable(why) => write!(f, "PostgreSQL cannot be reached: {why}"),
        }
    }
}

impl std::error::Error for SchemaError {}

impl From<tokio_postgres::Error> for SchemaError {
    fn from(err: tokio_postgres::Error) -> SchemaError {
        SchemaError::Postgres(err)
    }
}

/// Brings the database to [`CURRENT_SCHEMA_VERSION`]; returns the version it found (0 for
/// an empty database).
pub async fn migrate(client: &mut Client) -> Result<i32, SchemaError> {
    migrate_with(client, MIGRATIONS).await
}

async fn migrate_with(client: &mut Client, migrations: &[&str]) -> Result<i32, SchemaError> {
    let target = migrations.len() as i32;
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::integer,
                    current_setting('server_version')",
            &[],
        )
        .await?;
    supported(row.get(0), row.get(1))?;
    let txn = client.transaction().await?;
    // Released at commit or rollback: whoever comes second reads the version the first
    // left.
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    txn.batch_execute(VERSION_TABLE).await?;
    let found: i32 = txn
        .query_opt("SELECT version FROM compartment_schema", &[])
        .await?
        .map_or(0, |row| row.get(0));
    if found > target {
        // Rolled back: not even the version table is touched.
        return Err(SchemaError::TooNew { found });
    }
    if found == target {
        txn.commit().await?;
        return Ok(found);
    }
    for migration in &migrations[found.max(0) as usize..] {
        txn.batch_execute(migration).await?;
    }
    txn.execute(
        "INSERT INTO compartment_schema (version) VALUES ($1)
         ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
        &[&target],
    )
    .await?;
    txn.commit().await?;
    Ok(found)
}

/// Refuses a server older than [`OLDEST_SERVER`], by its `server_version_num` and its
/// `server_version` as people read it.
fn supported(number: i32, version: String) -> Result<(), SchemaError> {
    match number >= OLDEST_SERVER {
        true => Ok(()),
        false => Err(SchemaError::ServerTooOld { version }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use compartment_pgtest::Postgres;
    use tokio_postgres::error::SqlState;
    use tokio_postgres::{IsolationLevel, NoTls};

    use super::*;

    /// A server of the test's own; under CI one that does not start fails the test.
    pub(crate) fn server(test: &str) -> Option<Postgres> {
        match Postgres::start() {
            Ok(postgres) => Some(postgres),
            Err(err) if std::env::var_os("CI").is_none_or(|ci| ci.is_empty()) => {
                eprintln!("SKIPPED: {test} needs PostgreSQL: {err}");
                None
            }
            Err(err) => panic!("{test} needs PostgreSQL, and CI is set: {err}"),
        }
    }

    /// A runtime for a test's stores: their pools and followers run on it.
    pub(crate) fn store_runtime() -> tokio::runtime::Runtime {
        runtime()
    }

    /// A store on `postgres`'s `postgres` database, as a daemon opens it, its connections
    /// on `runtime`.
    pub(crate) fn open_store(
        postgres: &Postgres,
        runtime: &tokio::runtime::Runtime,
    ) -> crate::store::Store {
        let target = crate::store::postgres::Target::parse(&postgres.url("postgres")).unwrap();
        runtime
            .block_on(crate::store::Store::open_postgres(
                &target,
                runtime.handle().clone(),
            ))
            .unwrap()
    }

    /// A client of the test's own on `postgres`'s `postgres` database, its connection
    /// driven on the current runtime.
    pub(crate) async fn connect(postgres: &Postgres) -> Client {
        let (client, connection) = tokio_postgres::connect(&postgres.url("postgres"), NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    async fn version(client: &Client) -> i32 {
        client
            .query_one("SELECT version FROM compartment_schema", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// An empty database is brought to the current version; a second migration finds it
    /// there and changes nothing.
    #[test]
    fn an_empty_database_gets_the_current_schema_once() {
        let Some(postgres) = server("an_empty_database_gets_the_current_schema_once") else {
            return;
        };
        runtime().block_on(async {
            let mut client = connect(&postgres).await;
            assert_eq!(migrate(&mut client).await.unwrap(), 0);
            assert_eq!(version(&client).await, CURRENT_SCHEMA_VERSION);
            assert_eq!(migrate(&mut client).await.unwrap(), CURRENT_SCHEMA_VERSION);
            let tables: i64 = client
                .query_one(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            // The version's table and the schema's eleven.
            assert_eq!(tables, 12);
        });
    }

    /// Daemons that start at once on an empty database: each one's migration succeeds, and
    /// the schema is made once.
    #[test]
    fn daemons_starting_at_once_migrate_once() {
        let Some(postgres) = server("daemons_starting_at_once_migrate_once") else {
            return;
        };
        runtime().block_on(async {
            let mut clients = Vec::new();
            for _ in 0..4 {
                clients.push(connect(&postgres).await);
            }
            let migrations = clients.into_iter().map(|mut client| {
                tokio::spawn(async move { migrate(&mut client).await.map_err(|e| e.to_string()) })
            });
            let mut found = Vec::new();
            for migration in migrations {
                found.push(migration.await.unwrap().unwrap());
            }
            found.sort();
            let current = CURRENT_SCHEMA_VERSION;
            assert_eq!(found, [0, current, current, current]);
        });
    }

    /// A schema newer than this daemon's is refused, in words that say what to do, and the
    /// database is left as it was.
    #[test]
    fn a_newer_schema_is_refused_and_left_untouched() {
        let Some(postgres) = server("a_newer_schema_is_refused_and_left_untouched") else {
            return;
        };
        runtime().block_on(async {
            let mut client = connect(&postgres).await;
            migrate(&mut client).await.unwrap();
            client
                .execute("UPDATE compartment_schema SET version = 99", &[])
                .await
                .unwrap();
            let err = migrate(&mut client).await.unwrap_err();
            assert!(matches!(err, SchemaError::TooNew { found: 99 }), "{err}");
            assert_eq!(
                err.to_string(),
                format!("the PostgreSQL database has schema version 99, newer than the {CURRENT_SCHEMA_VERSION} this compartmentd understands; it was left untouched: run a newer compartmentd")
            );
            assert_eq!(version(&client).await, 99);
        });
    }

    /// A server older than 13 (no `pg_current_snapshot()`) is refused in words that say
    /// what to do; 13 and the server the tests run are not.
    #[test]
    fn a_server_older_than_13_is_refused() {
        let err = supported(120_017, "12.17".into()).unwrap_err();
        assert!(matches!(err, SchemaError::ServerTooOld { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "the PostgreSQL server is version 12.17, older than 13, the oldest this compartmentd runs on; it was left untouched: upgrade the server"
        );
        supported(130_000, "13.0".into()).unwrap();
        let Some(postgres) = server("a_server_older_than_13_is_refused") else {
            return;
        };
        runtime().block_on(async {
            let mut client = connect(&postgres).await;
            assert_eq!(migrate(&mut client).await.unwrap(), 0);
        });
    }

    /// A migration that fails leaves the version (and the schema) it found.
    #[test]
    fn a_failed_migration_leaves_the_version_before_it() {
        let Some(postgres) = server("a_failed_migration_leaves_the_version_before_it") else {
            return;
        };
        runtime().block_on(async {
            let mut client = connect(&postgres).await;
            migrate(&mut client).await.unwrap();
            let mut broken = MIGRATIONS.to_vec();
            broken.push("CREATE TABLE orgs (name text)");
            assert!(migrate_with(&mut client, &broken).await.is_err());
            assert_eq!(version(&client).await, CURRENT_SCHEMA_VERSION);
        });
    }

    /// Schema 1's audit records are carried into schema 2's chain as the embedded store
    /// carries its own (`AuditRecord::from_legacy`): the same entries, sealed in order, the
    /// chain whole.
    #[test]
    fn schema_1_audit_records_are_carried_into_the_chain() {
        let Some(postgres) = server("schema_1_audit_records_are_carried_into_the_chain") else {
            return;
        };
        let legacy = [
            (
                1_796_601_600_123_i64,
                Some(0_i64),
                Some(42),
                "org.create",
                Some("acme"),
                None,
                None,
            ),
            (
                1_796_601_600_999,
                Some(1001),
                Some(7),
                "user.reinvite",
                Some("acme"),
                Some("d@x"),
                Some("role viewer"),
            ),
            (
                1_796_601_601_000,
                None,
                None,
                "invitation.expire",
                Some("acme"),
                Some("d@x"),
                None,
            ),
            (
                1_796_601_601_001,
                Some(0),
                None,
                "account.unbind",
                None,
                Some("é\"@x"),
                Some("uid 1 (a \"b\")"),
            ),
        ];
        let runtime = runtime();
        runtime.block_on(async {
            let mut client = connect(&postgres).await;
            migrate_with(&mut client, &MIGRATIONS[..1]).await.unwrap();
            for (at, uid, pid, action, org, target, detail) in &legacy {
                client
                    .execute(
                        "INSERT INTO audit (at, uid, pid, action, org, target, detail)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        &[at, uid, pid, action, org, target, detail],
                    )
                    .await
                    .unwrap();
            }
            assert_eq!(migrate(&mut client).await.unwrap(), 1);
        });
        let store = open_store(&postgres, &runtime);
        let snapshot = crate::store::Backend::read(&store).unwrap();
        let expected: Vec<_> = legacy
            .iter()
            .zip(1..)
            .map(|((at, uid, pid, action, org, target, detail), seq)| {
                crate::store::chain::entry(
                    seq,
                    &crate::store::AuditRecord::from_legacy(crate::store::LegacyAuditRecord {
                        at: *at as u64,
                        uid: uid.map(|uid| uid as u32),
                        pid: *pid,
                        action: (*action).to_owned(),
                        org: org.map(str::to_owned),
                        target: target.map(str::to_owned),
                        detail: detail.map(str::to_owned),
                    }),
                )
            })
            .collect();
        assert_eq!(crate::store::Reader::audit(&snapshot).unwrap(), expected);
        let verified = crate::store::chain::verify(&snapshot, &[]).unwrap();
        assert_eq!((verified.last, verified.broken), (Some(4), None));
    }

    async fn fixture(postgres: &Postgres) -> Client {
        let mut client = connect(postgres).await;
        migrate(&mut client).await.unwrap();
        client
            .batch_execute(
                "INSERT INTO orgs VALUES ('acme', 1, 0);
                 INSERT INTO accounts (email, status, created_at)
                     VALUES ('a@x', 'active', 1), ('b@x', 'active', 1), ('c@x', 'active', 1);
                 INSERT INTO memberships (org, email, role, status, invited_by, invited_at)
                     VALUES ('acme', 'a@x', 'admin', 'active', 'uid 0', 1),
                            ('acme', 'b@x', 'admin', 'active', 'uid 0', 1),
                            ('acme', 'c@x', 'viewer', 'active', 'uid 0', 1);",
            )
            .await
            .unwrap();
        client
    }

    fn violated(err: &tokio_postgres::Error) -> bool {
        err.code() == Some(&SqlState::INTEGRITY_CONSTRAINT_VIOLATION)
    }

    /// The last admin stays: taking away both admins in one transaction is refused at
    /// commit, one of them is not, and the other then is.
    #[test]
    fn the_last_admin_cannot_be_removed_or_demoted() {
        let Some(postgres) = server("the_last_admin_cannot_be_removed_or_demoted") else {
            return;
        };
        runtime().block_on(async {
            let mut client = fixture(&postgres).await;
            let txn = client.transaction().await.unwrap();
            txn.execute("DELETE FROM memberships WHERE email = 'a@x'", &[])
                .await
                .unwrap();
            txn.execute(
                "UPDATE memberships SET role = 'viewer' WHERE email = 'b@x'",
                &[],
            )
            .await
            .unwrap();
            let err = txn.commit().await.unwrap_err();
            assert!(violated(&err), "{err}");
            client
                .execute("DELETE FROM memberships WHERE email = 'a@x'", &[])
                .await
                .unwrap();
            for last in [
                "DELETE FROM memberships WHERE email = 'b@x'",
                "UPDATE memberships SET role = 'deployer' WHERE email = 'b@x'",
                "UPDATE memberships SET status = 'expired' WHERE email = 'b@x'",
            ] {
                let err = client.execute(last, &[]).await.unwrap_err();
                assert!(violated(&err), "{last}: {err}");
            }
            // Another member comes and goes as it likes.
            client
                .execute("DELETE FROM memberships WHERE email = 'c@x'", &[])
                .await
                .unwrap();
        });
    }

    /// An admin who is blocked, or whose access or role ends by itself, is no admin to
    /// keep: the organization's last admin nothing bounds cannot be removed, nor blocked,
    /// nor given an end, while the other is blocked; changed as it still is one, it may be.
    #[test]
    fn a_bounded_admin_is_no_admin_to_keep() {
        let Some(postgres) = server("a_bounded_admin_is_no_admin_to_keep") else {
            return;
        };
        runtime().block_on(async {
            let client = fixture(&postgres).await;
            let block = "UPDATE memberships
                         SET block_reason = 'r', block_by = 'uid 0', block_at = 2
                         WHERE email = $1";
            client.execute(block, &[&"b@x"]).await.unwrap();
            for last in [
                "DELETE FROM memberships WHERE email = 'a@x'",
                "UPDATE memberships SET block_reason = 'r', block_by = 'uid 0', block_at = 2,
                                        block_until = 9
                 WHERE email = 'a@x'",
                "UPDATE memberships SET access_until = 9, access_warned = 0 WHERE email = 'a@x'",
                "UPDATE memberships SET elevated_until = 9, elevation_warned = 2,
                                        fallback_role = 'viewer'
                 WHERE email = 'a@x'",
                "UPDATE memberships SET role = 'deployer' WHERE email = 'a@x'",
            ] {
                let err = client.execute(last, &[]).await.unwrap_err();
                assert!(violated(&err), "{last}: {err}");
            }
            client
                .execute(
                    "UPDATE memberships SET invited_by = 'a@x' WHERE email = 'a@x'",
                    &[],
                )
                .await
                .unwrap();
            let admins: i64 = client
                .query_one(
                    "SELECT count(*) FROM memberships
                     WHERE role = 'admin' AND status = 'active' AND block_at IS NULL",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(admins, 1);
            // Unblocked, the other is one: either may now go.
            client
                .execute(
                    "UPDATE memberships SET block_reason = NULL, block_by = NULL, block_at = NULL
                     WHERE email = 'b@x'",
                    &[],
                )
                .await
                .unwrap();
            client.execute(block, &[&"a@x"]).await.unwrap();
        });
    }

    /// A membership's terms are stored whole: a block with its reason, author and time, an
    /// end with its warnings (0 to 2), an elevation with its end and a role to fall back to.
    #[test]
    fn a_memberships_terms_are_stored_whole() {
        let Some(postgres) = server("a_memberships_terms_are_stored_whole") else {
            return;
        };
        runtime().block_on(async {
            let client = fixture(&postgres).await;
            for broken in [
                "block_reason = 'r'",
                "block_reason = 'r', block_by = 'uid 0'",
                "block_by = 'uid 0', block_at = 1",
                "block_until = 9",
                "access_until = 9",
                "access_warned = 0",
                "access_until = 9, access_warned = 3",
                "access_until = 9, access_warned = -1",
                "elevated_until = 9, elevation_warned = 0",
                "elevated_until = 9, fallback_role = 'viewer'",
                "elevated_until = 9, elevation_warned = 3, fallback_role = 'viewer'",
                "elevated_until = 9, elevation_warned = 0, fallback_role = 'root'",
            ] {
                let err = client
                    .execute(
                        &format!("UPDATE memberships SET {broken} WHERE email = 'c@x'"),
                        &[],
                    )
                    .await
                    .unwrap_err();
                assert_eq!(
                    err.code(),
                    Some(&SqlState::CHECK_VIOLATION),
                    "{broken}: {err}"
                );
            }
            client
                .execute(
                    "UPDATE memberships
                     SET block_reason = '', block_by = 'uid 0', block_at = 1, block_until = 9,
                         access_until = 9, access_warned = 2, elevated_until = 8,
                         elevation_warned = 1, fallback_role = 'readonly'
                     WHERE email = 'c@x'",
                    &[],
                )
                .await
                .unwrap();
        });
    }

    /// Schema 2's pending invitations are due at their expiry once migrated, and nothing
    /// else is; its memberships have no terms, and its admins are kept as before. The feed
    /// takes the new kinds, with their ends and reasons.
    #[test]
    fn schema_2_memberships_are_due_as_before() {
        let Some(postgres) = server("schema_2_memberships_are_due_as_before") else {
            return;
        };
        let runtime = runtime();
        runtime.block_on(async {
            let mut client = connect(&postgres).await;
            migrate_with(&mut client, &MIGRATIONS[..2]).await.unwrap();
            client
                .batch_execute(
                    "INSERT INTO orgs VALUES ('acme', 1, 0);
                     INSERT INTO accounts (email, status, created_at)
                         VALUES ('a@x', 'active', 1), ('b@x', 'pending', 1),
                                ('c@x', 'pending', 1), ('d@x', 'pending', 1);
                     INSERT INTO memberships
                         (org, email, role, status, invited_by, invited_at, expires_at)
                         VALUES ('acme', 'a@x', 'admin', 'active', 'uid 0', 1, NULL),
                                ('acme', 'b@x', 'viewer', 'invited', 'a@x', 1, 20),
                                ('acme', 'c@x', 'viewer', 'invited', 'a@x', 1, 10),
                                ('acme', 'd@x', 'viewer', 'expired', 'a@x', 1, 5);",
                )
                .await
                .unwrap();
            assert_eq!(migrate(&mut client).await.unwrap(), 2);
            let due: Vec<(String, Option<i64>)> = client
                .query("SELECT email, due_at FROM memberships ORDER BY email", &[])
                .await
                .unwrap()
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect();
            assert_eq!(
                due,
                [
                    ("a@x".to_owned(), None),
                    ("b@x".to_owned(), Some(20)),
                    ("c@x".to_owned(), Some(10)),
                    ("d@x".to_owned(), None),
                ]
            );
            let err = client
                .execute("DELETE FROM memberships WHERE email = 'a@x'", &[])
                .await
                .unwrap_err();
            assert!(violated(&err), "{err}");
            client
                .execute(
                    "INSERT INTO events (seq, at, kind, email, until, reason)
                     VALUES (1, 1, 'member.blocked', 'b@x', 9, 'why'),
                            (2, 1, 'member.unblocked', 'b@x', NULL, NULL),
                            (3, 1, 'member.access_expiring', 'b@x', 9, NULL)",
                    &[],
                )
                .await
                .unwrap();
            let err = client
                .execute(
                    "INSERT INTO events (seq, at, kind, email) VALUES (4, 1, 'member.nope', 'b@x')",
                    &[],
                )
                .await
                .unwrap_err();
            assert_eq!(err.code(), Some(&SqlState::CHECK_VIOLATION), "{err}");
            client.execute("DELETE FROM events", &[]).await.unwrap();
        });
        let store = open_store(&postgres, &runtime);
        let snapshot = crate::store::Backend::read(&store).unwrap();
        use crate::store::Reader as _;
        assert_eq!(snapshot.next_due().unwrap(), Some(10));
        assert_eq!(
            snapshot.due_memberships_up_to(20, 10).unwrap(),
            [
                ("acme".to_owned(), "c@x".to_owned()),
                ("acme".to_owned(), "b@x".to_owned()),
            ]
        );
        assert_eq!(snapshot.active_admins("acme", 10).unwrap(), 1);
        for email in ["a@x", "b@x"] {
            let member = snapshot.membership("acme", email).unwrap().unwrap();
            assert_eq!(member.terms, crate::store::Terms::default(), "{email}");
        }
        // Its organizations map no group.
        assert_eq!(
            snapshot.org("acme").unwrap(),
            Some(crate::store::OrgRecord {
                created_at: 1,
                created_by_uid: 0,
                groups: Vec::new(),
            })
        );
        assert_eq!(
            snapshot.orgs_of_groups(&[0, 1, 100]).unwrap(),
            Vec::<String>::new()
        );
    }

    /// An organization's groups are found by their gids, through the index: each a gid,
    /// none missing.
    #[test]
    fn an_organizations_group_gids_are_gids() {
        let Some(postgres) = server("an_organizations_group_gids_are_gids") else {
            return;
        };
        runtime().block_on(async {
            let client = fixture(&postgres).await;
            for broken in ["'{-1}'", "'{4294967296}'", "'{100,NULL}'", "NULL"] {
                let err = client
                    .execute(
                        &format!("UPDATE orgs SET group_gids = {broken} WHERE name = 'acme'"),
                        &[],
                    )
                    .await
                    .unwrap_err();
                assert!(
                    matches!(
                        err.code(),
                        Some(&SqlState::CHECK_VIOLATION | &SqlState::NOT_NULL_VIOLATION)
                    ),
                    "{broken}: {err}"
                );
            }
            client
                .batch_execute(
                    "UPDATE orgs SET group_gids = '{0,4294967295}' WHERE name = 'acme';
                     INSERT INTO orgs (name, created_at, created_by_uid, group_gids)
                         VALUES ('beta', 1, 0, '{100,200}'), ('gamma', 1, 0, '{}');",
                )
                .await
                .unwrap();
            let found = |gids: &'static [i64]| {
                let client = &client;
                async move {
                    let rows = client
                        .query(
                            "SELECT name FROM orgs WHERE group_gids && $1::bigint[] ORDER BY name",
                            &[&gids],
                        )
                        .await
                        .unwrap();
                    rows.iter().map(|row| row.get(0)).collect::<Vec<String>>()
                }
            };
            assert_eq!(found(&[4294967295, 200]).await, ["acme", "beta"]);
            assert_eq!(found(&[100]).await, ["beta"]);
            assert_eq!(found(&[1]).await, Vec::<String>::new());
            // Three rows are read whole rather than through an index, unless that is off:
            // then the index answers.
            client
                .batch_execute("SET enable_seqscan = off")
                .await
                .unwrap();
            let plan: Vec<String> = client
                .query(
                    "EXPLAIN (COSTS OFF)
                     SELECT name FROM orgs WHERE group_gids && $1::bigint[] ORDER BY name",
                    &[&vec![1i64]],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect();
            assert!(
                plan.iter().any(|line| line.contains("orgs_by_group")),
                "{plan:#?}"
            );
        });
    }

    /// Two admins removing each other at once, each in a serializable transaction on a
    /// connection of its own (as two daemons would): exactly one succeeds.
    #[test]
    fn two_admins_removing_each_other_at_once_leave_one() {
        let Some(postgres) = server("two_admins_removing_each_other_at_once_leave_one") else {
            return;
        };
        runtime().block_on(async {
            let mut first = fixture(&postgres).await;
            let mut second = connect(&postgres).await;
            let one = first
                .build_transaction()
                .isolation_level(IsolationLevel::Serializable)
                .start()
                .await
                .unwrap();
            let two = second
                .build_transaction()
                .isolation_level(IsolationLevel::Serializable)
                .start()
                .await
                .unwrap();
            one.execute("DELETE FROM memberships WHERE email = 'b@x'", &[])
                .await
                .unwrap();
            two.execute("DELETE FROM memberships WHERE email = 'a@x'", &[])
                .await
                .unwrap();
            let results = [one.commit().await, two.commit().await];
            let committed = results.iter().filter(|result| result.is_ok()).count();
            assert_eq!(committed, 1, "{results:?}");
            let refused = results
                .iter()
                .find_map(|result| result.as_ref().err())
                .unwrap();
            assert_eq!(
                refused.code(),
                Some(&SqlState::T_R_SERIALIZATION_FAILURE),
                "{refused}"
            );
            let admins: i64 = first
                .query_one(
                    "SELECT count(*) FROM memberships WHERE role = 'admin' AND status = 'active'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(admins, 1);
        });
    }

    /// A token is spent once: a pending one may be used, a used one changes no more (it may
    /// be written again as it is).
    #[test]
    fn a_spent_token_never_changes() {
        let Some(postgres) = server("a_spent_token_never_changes") else {
            return;
        };
        runtime().block_on(async {
            let client = fixture(&postgres).await;
            let key = vec![7u8; 32];
            client
                .execute(
                    "INSERT INTO tokens (key, org, email, expires_at, state, issued_by_superuser)
                     VALUES ($1, 'acme', 'c@x', 10, 'pending', true)",
                    &[&key],
                )
                .await
                .unwrap();
            let spend = "UPDATE tokens SET state = $2 WHERE key = $1";
            client.execute(spend, &[&key, &"used"]).await.unwrap();
            // Written again as it is, it is not changed.
            client.execute(spend, &[&key, &"used"]).await.unwrap();
            for state in ["pending", "revoked", "expired"] {
                let err = client.execute(spend, &[&key, &state]).await.unwrap_err();
                assert!(violated(&err), "{state}: {err}");
            }
            let forget_at: i64 = client
                .query_one("SELECT forget_at FROM tokens WHERE key = $1", &[&key])
                .await
                .unwrap()
                .get(0);
            assert_eq!(forget_at, 10 + crate::store::SPENT_TOKEN_MEMORY as i64);
        });
    }

    /// One binding per uid and one per account.
    #[test]
    fn a_uid_and_an_account_are_bound_once() {
        let Some(postgres) = server("a_uid_and_an_account_are_bound_once") else {
            return;
        };
        runtime().block_on(async {
            let client = fixture(&postgres).await;
            let bind = "INSERT INTO bindings (uid, email, bound_at, provenance)
                        VALUES ($1, $2, 1, 'superuser')";
            client.execute(bind, &[&1000i64, &"a@x"]).await.unwrap();
            for (uid, email) in [(1000i64, "b@x"), (1001, "a@x")] {
                let err = client.execute(bind, &[&uid, &email]).await.unwrap_err();
                assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION), "{err}");
            }
            let err = client
                .execute(bind, &[&1002i64, &"nobody@x"])
                .await
                .unwrap_err();
            assert_eq!(err.code(), Some(&SqlState::FOREIGN_KEY_VIOLATION), "{err}");
            let err = client
                .execute(bind, &[&4_294_967_296i64, &"b@x"])
                .await
                .unwrap_err();
            assert_eq!(err.code(), Some(&SqlState::CHECK_VIOLATION), "{err}");
        });
    }
}
