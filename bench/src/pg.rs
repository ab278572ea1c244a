//! `--store postgres`: a PostgreSQL server of the run's own (`initdb` and `pg_ctl` in a
//! temporary directory, as the tests start theirs), and its floors measured with
//! tokio-postgres directly, over the same Unix socket the daemon connects to: a `SELECT 1`
//! round trip, and transactions writing the rows invitations write, as the daemon writes
//! them (the same statements, one after another, in a serializable transaction committed
//! with the feed's `NOTIFY`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use compartment_pgtest::Postgres;
use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use crate::measure::{self, Measured};

/// The database the daemons and the floors share.
const DATABASE: &str = "compartment";

/// A running server, stopped and removed when dropped.
pub struct Server {
    server: Postgres,
}

impl Server {
    /// Creates a cluster, starts it and creates the daemons' database.
    pub fn start() -> Server {
        let server = Postgres::start().unwrap_or_else(|err| panic!("start PostgreSQL: {err}"));
        server
            .create_database(DATABASE)
            .unwrap_or_else(|err| panic!("create the database: {err}"));
        Server { server }
    }

    /// What `--store` is given, and the floors connect to.
    pub fn conninfo(&self) -> String {
        self.server.url(DATABASE)
    }
}

/// One connection of a floor's thread: a runtime of its own that drives it.
struct Connection {
    runtime: Runtime,
    client: Client,
}

fn connect(conninfo: &str) -> Connection {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for a floor's connection");
    let client = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(conninfo, NoTls)
            .await
            .unwrap_or_else(|err| panic!("connect to PostgreSQL ({conninfo}): {err}"));
        tokio::spawn(connection);
        client
    });
    Connection { runtime, client }
}

/// `SELECT 1` round trips over `connections` connections, each one at a time, prepared
/// once (as the daemon prepares each statement once per connection).
pub fn select_1(conninfo: &str, connections: usize, duration: Duration) -> Measured {
    measure::run(
        connections,
        duration,
        1,
        |_| {
            let connection = connect(conninfo);
            let statement = connection
                .runtime
                .block_on(connection.client.prepare("SELECT 1"))
                .expect("prepare SELECT 1");
            (connection, statement)
        },
        |(connection, statement): &mut (Connection, Statement), _, _| {
            let row = connection
                .runtime
                .block_on(connection.client.query_one(&*statement, &[]))
                .expect("SELECT 1");
            assert_eq!(row.get::<_, i32>(0), 1);
        },
    )
}

/// The statements of one invitation's rows, as the daemon's PostgreSQL backend writes them
/// (`daemon/src/store/postgres/rows.rs`).
const ACCOUNT: &str = "INSERT INTO accounts (email, status, uid, created_at, activated_at)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (email) DO UPDATE
         SET status = excluded.status, uid = excluded.uid,
             created_at = excluded.created_at, activated_at = excluded.activated_at";
const MEMBERSHIP: &str = "INSERT INTO memberships
         (org, email, role, uid, status, invited_by, invited_at, expires_at, token_key)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (org, email) DO UPDATE
         SET role = excluded.role, uid = excluded.uid, status = excluded.status,
             invited_by = excluded.invited_by, invited_at = excluded.invited_at,
             expires_at = excluded.expires_at, token_key = excluded.token_key";
const TOKEN: &str = "INSERT INTO tokens (key, org, email, expires_at, state, redeemer_uid,
                         redeemer_name, issued_by_superuser)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (key) DO UPDATE
         SET org = excluded.org, email = excluded.email,
             expires_at = excluded.expires_at, state = excluded.state,
             redeemer_uid = excluded.redeemer_uid, redeemer_name = excluded.redeemer_name,
             issued_by_superuser = excluded.issued_by_superuser";
const AUDIT: &str = "INSERT INTO audit (at, uid, pid, action, org, target, detail)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
const EVENT_HEAD: &str = "UPDATE event_head SET seq = seq + 1 RETURNING seq";
const EVENT: &str =
    "INSERT INTO events (seq, at, kind, org, email, role, previous_role, status, uid)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const ORG_EVENT: &str = "INSERT INTO org_events (org, seq) VALUES ($1, $2)";

/// Transactions of `batch` invitations' rows each (an account, a membership, a token, an
/// audit record, an event with the feed's head moved, its organization's index entry) into
/// organization `org`, which must exist: one thread, each statement awaited before the
/// next as the daemon's writer sends them, `BEGIN ISOLATION LEVEL SERIALIZABLE` to
/// `NOTIFY …; COMMIT` with the server's own durability (`fsync`, `synchronous_commit` as
/// initdb left them). What the rules, the socket and the daemon add is what the ratio
/// leaves out. `tag` keeps the e-mails of phases apart.
pub fn invitation_rows(
    conninfo: &str,
    org: &str,
    tag: &str,
    batch: usize,
    duration: Duration,
) -> Measured {
    measure::run(
        1,
        duration,
        batch,
        |_| {
            let connection = connect(conninfo);
            let statements = connection.runtime.block_on(async {
                let mut statements = Vec::new();
                for sql in [
                    ACCOUNT, MEMBERSHIP, TOKEN, AUDIT, EVENT_HEAD, EVENT, ORG_EVENT,
                ] {
                    statements.push(connection.client.prepare(sql).await.expect(sql));
                }
                statements
            });
            (connection, statements)
        },
        |(connection, statements): &mut (Connection, Vec<Statement>), _, i| {
            let client = &connection.client;
            connection.runtime.block_on(async {
                client
                    .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
                    .await
                    .expect("BEGIN");
                for j in 0..batch {
                    write_invitation(client, statements, org, &format!("{tag}-{i}-{j}")).await;
                }
                client
                    .batch_execute("NOTIFY compartment_events; COMMIT")
                    .await
                    .expect("COMMIT");
            });
        },
    )
}

/// Runs a statement the floor cannot do without.
async fn execute(client: &Client, statement: &Statement, params: &[&(dyn ToSql + Sync)]) {
    client
        .execute(statement, params)
        .await
        .unwrap_or_else(|err| panic!("{statement:?}: {err}"));
}

/// One invitation's rows, for the new address `{name}@floor.example`.
async fn write_invitation(client: &Client, statements: &[Statement], org: &str, name: &str) {
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("a time in range");
    let expires = now + 7 * 24 * 3600 * 1000;
    let email = format!("{name}@floor.example");
    // 32 bytes that differ for every invitation, as a token's hash does.
    let mut key = [0u8; 32];
    for (byte, source) in key.iter_mut().zip(email.bytes().rev()) {
        *byte = source;
    }
    let key = &key[..];
    let none_i64: Option<i64> = None;
    let none_str: Option<&str> = None;
    execute(
        client,
        &statements[0],
        &[&email, &"pending", &none_i64, &now, &none_i64],
    )
    .await;
    execute(
        client,
        &statements[1],
        &[
            &org,
            &email,
            &"viewer",
            &none_i64,
            &"invited",
            &"uid 0",
            &now,
            &Some(expires),
            &Some(key),
        ],
    )
    .await;
    execute(
        client,
        &statements[2],
        &[
            &key, &org, &email, &expires, &"pending", &none_i64, &none_str, &true,
        ],
    )
    .await;
    execute(
        client,
        &statements[3],
        &[
            &now,
            &Some(0i64),
            &Some(1i32),
            &"user.invite",
            &Some(org),
            &Some(email.as_str()),
            &Some("viewer"),
        ],
    )
    .await;
    let seq: i64 = client
        .query_one(&statements[4], &[])
        .await
        .expect("move the feed's head")
        .get(0);
    execute(
        client,
        &statements[5],
        &[
            &seq,
            &now,
            &"member.added",
            &Some(org),
            &email,
            &Some("viewer"),
            &none_str,
            &Some("invited"),
            &none_i64,
        ],
    )
    .await;
    execute(client, &statements[6], &[&org, &seq]).await;
}
