//! `--store postgres`: a PostgreSQL server of the run's own (`initdb` and `pg_ctl` in a
//! temporary directory, as the tests start theirs), and its floors measured with
//! tokio-postgres directly, over the same Unix socket the daemon connects to: a `SELECT 1`
//! round trip, and transactions writing the rows invitations write, as the daemon writes
//! them (the same statements, one per table sent at once, in a serializable transaction
//! committed with the feed's `NOTIFY`).

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

/// The statements that write invitations' rows, as the daemon's PostgreSQL backend sends
/// them at a commit (`daemon/src/store/postgres/flush.rs`): one per table, each row's
/// columns as arrays.
const ACCOUNTS: &str = "INSERT INTO accounts (email, status, uid, created_at, activated_at)
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
     ON CONFLICT (email) DO UPDATE
         SET status = excluded.status, uid = excluded.uid,
             created_at = excluded.created_at, activated_at = excluded.activated_at";
const MEMBERSHIPS: &str = "INSERT INTO memberships
         (org, email, role, uid, status, invited_by, invited_at, expires_at, token_key)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                          $6::text[], $7::bigint[], $8::bigint[], $9::bytea[])
     ON CONFLICT (org, email) DO UPDATE
         SET role = excluded.role, uid = excluded.uid, status = excluded.status,
             invited_by = excluded.invited_by, invited_at = excluded.invited_at,
             expires_at = excluded.expires_at, token_key = excluded.token_key";
const TOKENS: &str = "INSERT INTO tokens (key, org, email, expires_at, state, redeemer_uid,
                         redeemer_name, issued_by_superuser)
     SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                          $6::bigint[], $7::text[], $8::boolean[])
     ON CONFLICT (key) DO UPDATE
         SET org = excluded.org, email = excluded.email,
             expires_at = excluded.expires_at, state = excluded.state,
             redeemer_uid = excluded.redeemer_uid, redeemer_name = excluded.redeemer_name,
             issued_by_superuser = excluded.issued_by_superuser";
const AUDIT: &str = "INSERT INTO audit_log (seq, record, hash)
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[])";
const EVENTS: &str =
    "INSERT INTO events (seq, at, kind, org, email, role, previous_role, status, uid)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                          $6::text[], $7::text[], $8::text[], $9::bigint[])";
const ORG_EVENTS: &str =
    "INSERT INTO org_events (org, seq) SELECT * FROM unnest($1::text[], $2::bigint[])";
const EVENT_HEAD: &str = "UPDATE event_head SET seq = $1";
const HEAD: &str = "SELECT seq FROM event_head";
/// The audit chain's newest record, read once per transaction before the first record is
/// sealed.
const CHAIN_HEAD: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";

/// Transactions of `batch` invitations' rows each (an account, a membership, a token, an
/// audit record, an event with the feed's head moved, its organization's index entry) into
/// organization `org`, which must exist, as the daemon's writer commits a batch: `BEGIN
/// ISOLATION LEVEL SERIALIZABLE` and the feed's lock, the feed's and the audit chain's heads
/// read, the rows as one
/// statement per table sent at once, then `NOTIFY …; COMMIT`, with the server's own
/// durability (`fsync`, `synchronous_commit` as initdb left them). One thread. What the
/// rules, the reads, the socket and the daemon add is what the ratio leaves out. `tag` keeps
/// the e-mails of phases apart.
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
                    ACCOUNTS,
                    MEMBERSHIPS,
                    TOKENS,
                    AUDIT,
                    EVENTS,
                    ORG_EVENTS,
                    EVENT_HEAD,
                    HEAD,
                    CHAIN_HEAD,
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
                    .batch_execute(
                        "BEGIN ISOLATION LEVEL SERIALIZABLE;
                         LOCK TABLE event_head IN EXCLUSIVE MODE",
                    )
                    .await
                    .expect("BEGIN");
                let head: i64 = client
                    .query_one(&statements[7], &[])
                    .await
                    .expect("read the feed's head")
                    .get(0);
                let chain: i64 = client
                    .query_opt(&statements[8], &[])
                    .await
                    .expect("read the audit chain's head")
                    .map_or(0, |row| row.get(0));
                let rows = Rows::new(org, &format!("{tag}-{i}"), batch, head, chain);
                rows.write(client, statements).await;
                client
                    .batch_execute("NOTIFY compartment_events; COMMIT")
                    .await
                    .expect("COMMIT");
            });
        },
    )
}

/// The columns of `batch` invitations' rows.
struct Rows {
    org: Vec<String>,
    email: Vec<String>,
    key: Vec<Vec<u8>>,
    now: Vec<i64>,
    expires: Vec<i64>,
    seq: Vec<i64>,
    audit_seq: Vec<i64>,
    record: Vec<String>,
}

impl Rows {
    /// Invitations of new addresses `{name}-{j}@floor.example` into `org`, their events
    /// numbered after `head` and their audit records after `chain`.
    fn new(org: &str, name: &str, batch: usize, head: i64, chain: i64) -> Rows {
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_millis(),
        )
        .expect("a time in range");
        let email: Vec<String> = (0..batch)
            .map(|j| format!("{name}-{j}@floor.example"))
            .collect();
        // 32 bytes that differ for every invitation, as a token's hash does.
        let key = email
            .iter()
            .map(|email| {
                let mut key = vec![0u8; 32];
                for (byte, source) in key.iter_mut().zip(email.bytes().rev()) {
                    *byte = source;
                }
                key
            })
            .collect();
        // An audit record as long as the daemon's for an invitation.
        let record = email
            .iter()
            .map(|email| {
                format!(
                    r#"{{"at":"2026-12-07T00:00:00.000Z","actor":{{"kind":"superuser","uid":0,"user":"root","pid":1}},"event":"organization.user.invite","org":"{org}","target":{{"type":"account","id":"{email}"}},"after":{{"role":"viewer","status":"invited"}},"outcome":"ok"}}"#
                )
            })
            .collect();
        Rows {
            audit_seq: (1..).map(|n| chain + n).take(batch).collect(),
            record,
            org: vec![org.to_owned(); batch],
            email,
            key,
            now: vec![now; batch],
            expires: vec![now + 7 * 24 * 3600 * 1000; batch],
            seq: (1..).map(|n| head + n).take(batch).collect(),
        }
    }

    /// Sends every statement at once, and waits for them all.
    async fn write(&self, client: &Client, statements: &[Statement]) {
        let batch = self.email.len();
        let none_i64 = vec![None::<i64>; batch];
        let none_text = vec![None::<&str>; batch];
        let text = |value: &'static str| vec![value; batch];
        let last = self.seq.last().copied().unwrap_or_default();
        let keys: Vec<Option<&[u8]>> = self.key.iter().map(|key| Some(&key[..])).collect();
        let by_superuser = vec![true; batch];
        let (pending, viewer, invited, uid, added) = (
            text("pending"),
            text("viewer"),
            text("invited"),
            text("uid 0"),
            text("member.added"),
        );
        let expires: Vec<Option<i64>> = self.expires.iter().copied().map(Some).collect();
        let statements: [(&Statement, Vec<&(dyn ToSql + Sync)>); 7] = [
            (
                &statements[0],
                vec![&self.email, &pending, &none_i64, &self.now, &none_i64],
            ),
            (
                &statements[1],
                vec![
                    &self.org,
                    &self.email,
                    &viewer,
                    &none_i64,
                    &invited,
                    &uid,
                    &self.now,
                    &expires,
                    &keys,
                ],
            ),
            (
                &statements[2],
                vec![
                    &self.key,
                    &self.org,
                    &self.email,
                    &self.expires,
                    &pending,
                    &none_i64,
                    &none_text,
                    &by_superuser,
                ],
            ),
            (
                &statements[3],
                // A token's key stands in for a record's hash: 32 bytes, different each time.
                vec![&self.audit_seq, &self.record, &self.key],
            ),
            (
                &statements[4],
                vec![
                    &self.seq,
                    &self.now,
                    &added,
                    &self.org,
                    &self.email,
                    &viewer,
                    &none_text,
                    &invited,
                    &none_i64,
                ],
            ),
            (&statements[5], vec![&self.org, &self.seq]),
            (&statements[6], vec![&last]),
        ];
        let sent = statements
            .iter()
            .map(|(statement, params)| client.execute(*statement, params));
        for (done, (statement, _)) in futures_util::future::join_all(sent)
            .await
            .into_iter()
            .zip(&statements)
        {
            done.unwrap_or_else(|err| panic!("{statement:?}: {err}"));
        }
    }
}
