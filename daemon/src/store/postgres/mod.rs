//! The PostgreSQL backend, for several daemons that serve one membership:
//!
//! - `target.rs`: where the database is (`--store`), and how to name it without its
//!   password; `passfile.rs`: the password, from the password file as libpq reads it;
//! - `handle.rs`: the pool, a read-only transaction per snapshot, a serializable one per
//!   write;
//! - `glance.rs`: the rows one authorization decision reads, read in one statement that
//!   every decision asked meanwhile shares;
//! - `follow.rs`: a connection of the daemon's own that migrates the schema once the
//!   database can be reached, and moves the feed's heads past other daemons' commits;
//! - `session.rs`: a connection in a transaction, driven from the store's synchronous
//!   reads and writes;
//! - `columns.rs`: the tables' columns, and a row read back into its record;
//! - `reads.rs`, `rows.rs`: [`Reader`](super::Reader), [`Changes`](super::Changes) and
//!   [`Rows`](super::Rows); a write transaction, the only writer while it runs, keeps what it
//!   read and wrote (`pending.rs`) and sends its writes as one statement per table
//!   (`flush.rs`) before a read that ranges over rows and at its commit; `values.rs`: the
//!   columns' values;
//! - `backup.rs`: [`Export`](super::Export) and [`Import`](super::Import) as SQL;
//! - `schema.rs` and `migrations/*.sql`: the schema, versioned.
//!
//! The SQL is part of the design: the schema's constraints hold the rules (one binding per
//! uid and per account, a token spent once, an organization's last admin) even against a
//! bug above them, and the feed's sequence numbers are dense and in commit order across
//! daemons.

mod backup;
mod columns;
mod flush;
mod follow;
mod glance;
mod handle;
mod passfile;
mod pending;
mod reads;
mod rows;
pub mod schema;
mod session;
mod target;
#[cfg(test)]
mod tests;
mod values;

pub use glance::Glance;
pub use handle::{Snapshot, Store};
pub use session::Session;
pub use target::{Target, TargetError};

/// A client library error with what the server said, which its own `Display` leaves out
/// (it says only "db error").
pub struct Explained<'e>(pub &'e tokio_postgres::Error);

impl std::fmt::Display for Explained<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "{db}"),
            None => write!(f, "{}", self.0),
        }
    }
}
