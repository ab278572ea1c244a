//! The PostgreSQL backend, for several daemons that serve one membership:
//!
//! - `handle.rs`: the pool, a read-only transaction per snapshot, a serializable one per
//!   write;
//! - `session.rs`: a connection in a transaction, driven from the store's synchronous
//!   reads and writes;
//! - `reads.rs`, `rows.rs`: [`Reader`](super::Reader), [`Changes`](super::Changes) and
//!   [`Rows`](super::Rows) as SQL;
//! - `schema.rs` and `migrations/*.sql`: the schema, versioned.
//!
//! The SQL is part of the design: the schema's constraints hold the rules (one binding per
//! uid and per account, a token spent once, an organization's last admin) even against a
//! bug above them, and the feed's sequence numbers are dense and in commit order across
//! daemons.

mod handle;
mod reads;
mod rows;
pub mod schema;
mod session;
#[cfg(test)]
mod tests;

pub use handle::{Snapshot, Store};
pub use session::Session;
