//! The embedded backend: one redb file in the state directory.
//!
//! - `handle.rs`: the [`Store`] handle, its snapshots shared between commits, the write
//!   transaction, and reopening the file after a write failed.
//! - `tables.rs`: the tables, and their accessors on a snapshot and on a write transaction.
//! - `reads.rs`: [`Reader`](super::Reader) on both.
//! - `writes.rs`: [`Rows`](super::Rows), keeping the indexes in step, and the feed's append.
//! - `schema.rs`: opening a file, the schema version, the migrations.
//! - `check.rs`: `compartmentd check`: every page, then the indexes.
//! - `backup.rs`: [`Export`](super::Export) and [`Import`](super::Import): what a backup
//!   reads and a restore writes.

mod backup;
mod check;
mod handle;
mod reads;
mod schema;
mod tables;
#[cfg(test)]
mod tests;
mod writes;

pub use check::{check, CheckReport};
pub use handle::{
    Commit, Committing, Store, StoreOptions, Write, DATABASE_FILE, DEFAULT_CACHE_SIZE,
};
pub use schema::{OpenError, CURRENT_SCHEMA_VERSION};
pub use tables::{Snapshot, Tables};
