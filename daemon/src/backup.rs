//! Backup and restore: the whole store as JSON lines, to move it between hosts and between
//! backends (docs/operations.md, "Backup and restore").
//!
//! - `error.rs`: why a restore wrote nothing.
//! - `lines.rs`: the record lines of the file, one per row, and its end line.
//! - `send.rs`: `admin.backup`: the header, then every row, from one snapshot.
//! - `restore.rs`: `compartmentd restore`: a file checked and written back in one
//!   transaction.
//!
//! A backup is read from one snapshot held for as long as it is sent (a redb read
//! transaction; on PostgreSQL the read-only repeatable-read transaction a snapshot is), so
//! it is one consistent moment of the store whatever is written meanwhile. It is sent on
//! the connection that asked, as a feed is, a page of at most a thousand rows at a time,
//! each page read by key from where the last ended: the daemon holds one page at a time,
//! however large the store, and a client that reads slowly only slows its own backup (a
//! page waits for the socket; a client that stops reading is disconnected by the write
//! timeout, which ends the snapshot). Paging by cursor over separate requests was dropped:
//! each request would read a new snapshot, and pages of different moments do not make one
//! backup, unless the daemon kept the snapshot between requests, for a client that might
//! never come back. While a snapshot is held, redb cannot reuse the pages that commits free:
//! the database file may grow by what is written during a backup.

mod error;
mod lines;
mod restore;
mod send;
#[cfg(test)]
mod tests;

pub use error::RestoreError;
pub use lines::{EventLine, Line};
pub use restore::{read_header, restore, Restored};
pub(crate) use send::run_backup;
pub use send::{begin, Backup, BACKUP_PAGE};
