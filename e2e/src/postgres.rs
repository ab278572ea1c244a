//! A PostgreSQL server of the test's own that daemons share (`--store`), started as the
//! daemon's own tests start theirs: outside CI a test without one is skipped loudly, under
//! CI it fails.

use std::fmt;
use std::sync::Arc;

use compartment_pgtest::Postgres;

use crate::privileges::{in_ci, say_loudly};

/// A running server, shared by the daemons given it and stopped when the last is gone.
#[derive(Clone)]
pub struct Database(Arc<Postgres>);

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgreSQL at {}", self.0.socket_dir().display())
    }
}

impl Database {
    /// Starts a server for `test`; `None` (said loudly) when it cannot outside CI.
    pub fn start(test: &str) -> Option<Database> {
        match Postgres::start() {
            Ok(server) => Some(Database(Arc::new(server))),
            Err(err) if !in_ci() => {
                say_loudly(&format!("SKIPPED: {test} needs PostgreSQL: {err}"));
                None
            }
            Err(err) => panic!("{test} needs PostgreSQL, and CI is set: {err}"),
        }
    }

    /// What `--store` is given: the server's `postgres` database.
    pub fn conninfo(&self) -> String {
        self.0.url("postgres")
    }

    /// The server itself: to stop it, start it again, read its log.
    pub fn server(&self) -> &Postgres {
        &self.0
    }
}

/// The options of a test daemon on each store: the embedded one, then (when a server can
/// be had; outside CI a test without one is skipped there, loudly) PostgreSQL.
pub fn each_store(test: &str) -> Vec<crate::DaemonOptions> {
    let mut stores = vec![crate::DaemonOptions::new()];
    if let Some(database) = Database::start(test) {
        stores.push(crate::DaemonOptions::new().postgres(&database));
    }
    stores
}
