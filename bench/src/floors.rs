//! The floors: what the machine does with no daemon logic at all, measured in the same run
//! as the daemon so that their ratio holds however busy the machine is.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use redb::{Database, TableDefinition};

use crate::measure::{self, Measured};

/// The argument that makes this binary the echo server (see [`EchoServer`]).
const ECHO_ARG: &str = "--run-echo-server-on";

/// The line echo server, a process of its own (this binary again) so that its CPU time is
/// its own to measure, beside the daemon's: killed on drop.
pub struct EchoServer {
    child: std::process::Child,
}

impl EchoServer {
    /// Starts it on `socket` and waits until it listens.
    pub fn start(socket: &Path) -> EchoServer {
        let child =
            std::process::Command::new(std::env::current_exe().expect("the benchmark's own path"))
                .arg(ECHO_ARG)
                .arg(socket)
                .spawn()
                .expect("start the echo server");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the echo server did not listen on {} within 10 s",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        EchoServer { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When this process was started as the echo server: serves until killed.
pub fn echo_server_main() -> Option<i32> {
    let mut argv = std::env::args_os().skip(1);
    if argv.next()? != ECHO_ARG {
        return None;
    }
    let socket = std::path::PathBuf::from(argv.next().expect("the echo server's socket"));
    serve_echo(&socket);
    loop {
        std::thread::park();
    }
}

/// A line echo server on `socket`: one thread per connection, each line written back as it
/// came. The threads end with their connections; the accepting thread with the process.
fn serve_echo(socket: &Path) {
    let listener = UnixListener::bind(socket)
        .unwrap_or_else(|err| panic!("bind the echo socket {}: {err}", socket.display()));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let Ok(mut writer) = stream.try_clone() else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            if writer.write_all(&line).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
}

/// Requests per second of `connections` clients, each sending `line` to the echo server and
/// reading it back, one at a time: the same round trip as a daemon request, minus the daemon.
pub fn echo(socket: &Path, connections: usize, duration: Duration, line: &[u8]) -> Measured {
    measure::line_round_trips(socket, line, connections, duration, |answer| {
        assert_eq!(answer, line, "the echo server answered another line");
    })
}

const FLOOR_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("floor");

/// The size of each value the redb floor writes: about one member record with its indexes.
const RECORD_BYTES: usize = 256;

/// Writes per second of one thread committing `batch` small inserts per durable commit
/// (redb's default, `Durability::Immediate`: fsync before `commit` returns) to a fresh
/// database in `dir`. Latency is per commit.
pub fn redb_commits(dir: &Path, batch: usize, duration: Duration) -> Measured {
    let path = dir.join(format!("floor-{batch}.redb"));
    let db = Database::create(&path)
        .unwrap_or_else(|err| panic!("create the redb floor {}: {err}", path.display()));
    let value = vec![0x5a_u8; RECORD_BYTES];
    let measured = measure::run(
        1,
        duration,
        batch,
        |_| 0_u64,
        |next_key: &mut u64, _, _| {
            let txn = db.begin_write().expect("begin a redb write");
            {
                let mut table = txn.open_table(FLOOR_TABLE).expect("open the floor table");
                for _ in 0..batch {
                    table
                        .insert(*next_key, value.as_slice())
                        .expect("insert into the floor table");
                    *next_key += 1;
                }
            }
            txn.commit().expect("commit to the redb floor");
        },
    );
    drop(db);
    let _ = std::fs::remove_file(&path);
    measured
}

/// The rows one invitation of a new address writes, as `compartmentd` stores them: table,
/// and the size of the value (binary records, their sizes for this benchmark's invitations:
/// a viewer invited by root, addresses of about 25 bytes; the index tables hold keys only).
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
const MEMBERSHIPS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("memberships");
const ACCOUNT_ORGS: TableDefinition<(&str, &str), ()> = TableDefinition::new("account_orgs");
const TOKENS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("tokens");
const PENDING: TableDefinition<(u64, &str, &str), ()> = TableDefinition::new("pending_by_expiry");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const ACCOUNT_BYTES: usize = 10;
const MEMBERSHIP_BYTES: usize = 70;
const TOKEN_BYTES: usize = 42;
const AUDIT_BYTES: usize = 60;

/// Invitations per second of one thread writing, `batch` per durable commit, exactly the
/// rows `batch` invitations write (an account, a membership, its two index entries, a token
/// keyed by issue time, an audit record), with keys shaped as the daemon phase's are (`batch`
/// clients, each its own run of addresses), each table opened once per transaction: the
/// disk's and redb's cost of the data itself, without parsing, rules or sockets.
pub fn redb_invitation_rows(dir: &Path, batch: usize, duration: Duration) -> Measured {
    let path = dir.join(format!("floor-rows-{batch}.redb"));
    let db = Database::create(&path)
        .unwrap_or_else(|err| panic!("create the redb floor {}: {err}", path.display()));
    let value = |len: usize| vec![0x5a_u8; len];
    let (account, membership, token, audit) = (
        value(ACCOUNT_BYTES),
        value(MEMBERSHIP_BYTES),
        value(TOKEN_BYTES),
        value(AUDIT_BYTES),
    );
    let org = "bench";
    let measured = measure::run(
        1,
        duration,
        batch,
        |_| 0_u64,
        |round: &mut u64, _, _| {
            let txn = db.begin_write().expect("begin a redb write");
            {
                let open = "open a floor table";
                let mut accounts = txn.open_table(ACCOUNTS).expect(open);
                let mut memberships = txn.open_table(MEMBERSHIPS).expect(open);
                let mut account_orgs = txn.open_table(ACCOUNT_ORGS).expect(open);
                let mut tokens = txn.open_table(TOKENS).expect(open);
                let mut pending = txn.open_table(PENDING).expect(open);
                let mut audits = txn.open_table(AUDIT).expect(open);
                let insert = "insert into a floor table";
                for client in 0..batch {
                    let seq = *round * batch as u64 + client as u64;
                    let email = format!("f{batch}-{client}-{round}@bench.example");
                    let mut key = [0u8; 32];
                    key[..8].copy_from_slice(&seq.to_be_bytes());
                    key[8..16]
                        .copy_from_slice(&seq.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
                    accounts
                        .insert(email.as_str(), account.as_slice())
                        .expect(insert);
                    memberships
                        .insert((org, email.as_str()), membership.as_slice())
                        .expect(insert);
                    account_orgs
                        .insert((email.as_str(), org), ())
                        .expect(insert);
                    tokens.insert(&key, token.as_slice()).expect(insert);
                    pending
                        .insert((seq, org, email.as_str()), ())
                        .expect(insert);
                    audits.insert(seq, audit.as_slice()).expect(insert);
                }
            }
            txn.commit().expect("commit to the redb floor");
            *round += 1;
        },
    );
    drop(db);
    let _ = std::fs::remove_file(&path);
    measured
}
