//! The floors: what the machine does with no daemon logic at all, measured in the same run
//! as the daemon so that their ratio holds however busy the machine is.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use redb::{Database, TableDefinition};

use crate::measure::{self, Measured};

/// Starts a line echo server on `socket`: one thread per connection, each line written back
/// as it came. The threads end with their connections; the accepting thread with the process.
pub fn start_echo_server(socket: &Path) {
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
    measure::run(
        connections,
        duration,
        1,
        |_| {
            let stream = UnixStream::connect(socket)
                .unwrap_or_else(|err| panic!("connect to the echo server: {err}"));
            let writer = stream.try_clone().expect("clone the echo stream");
            (writer, BufReader::new(stream), Vec::new())
        },
        |(writer, reader, buf): &mut (UnixStream, BufReader<UnixStream>, Vec<u8>), _, _| {
            writer.write_all(line).expect("write to the echo server");
            buf.clear();
            reader
                .read_until(b'\n', buf)
                .expect("read from the echo server");
            assert_eq!(
                buf.as_slice(),
                line,
                "the echo server answered another line"
            );
        },
    )
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
