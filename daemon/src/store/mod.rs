//! The store: what the rules read and write through, whatever engine holds the data.
//!
//! The seam a backend fills:
//!
//! - [`Backend`]: the handle. A consistent read snapshot ([`Backend::read`]), the write
//!   transaction the single writer applies changes in ([`Backend::begin_write`]), and the
//!   heads of the change feed that subscribers wait on.
//! - [`Reader`] (`read.rs`): every read a rule makes, on a snapshot or inside the write
//!   transaction, including the change feed's range reads.
//! - [`Rows`] (`change.rs`): a backend's writes of rows with their indexes, its audit
//!   append and its feed append. A rule writes through [`Changes`] on a [`Tracked`] view,
//!   which records that it wrote and derives the feed's events from each write, the same
//!   for every backend.
//! - [`Export`] and [`Import`] (`export.rs`): every row a page at a time on a snapshot, and
//!   the rows written back with their sequence numbers: what a backup reads and a restore
//!   writes.
//! - The records (`records.rs`), their binary encoding (`encoding.rs`), the errors
//!   (`error.rs`), and the check that indexes agree with what they index (`check.rs`),
//!   written once against [`Reader`].
//!
//! The backends:
//!
//! - `redb/`, embedded, the one the daemon runs on: its handle and reopening, tables,
//!   reads, writes and index upkeep, schema and migrations, and `compartmentd check`.
//! - `postgres/`, for several daemons on one database: its schema and migrations, reads and
//!   writes, held to redb's by `conformance.rs` (the same transactions through both, every
//!   read compared).
//!
//! The daemon names the store's types through this module ([`Store`], [`Snapshot`],
//! [`Tracked`]), so nothing above `store` names an engine.

pub(crate) mod chain;
mod change;
mod check;
#[cfg(test)]
mod conformance;
mod encoding;
mod engine;
mod error;
mod export;
mod heads;
pub mod postgres;
mod read;
mod records;
pub mod redb;

pub use chain::{ChainHash, Sealed, GENESIS};
pub(crate) use change::spent_key;
pub use change::{Changes, Rows};
pub use check::check_indexes;
pub(crate) use encoding::BINARY_RECORD;
pub(crate) use encoding::{decode, decode_event, decode_member_row, encode};
pub use error::{Result, StoreError};
pub use export::{Batch, Export, Import};
pub use heads::Announcement;
pub use read::Reader;
pub use records::*;

pub use self::redb::{
    check, CheckReport, OpenError, StoreOptions, CURRENT_SCHEMA_VERSION, DATABASE_FILE,
    DEFAULT_CACHE_SIZE,
};
pub use engine::{Commit, Committing, Glance, Snapshot, Store, StoreHealth, Tables, Write};

/// A change's view of the write transaction of the backend the daemon runs on.
pub type Tracked<'a, 't> = change::Tracked<'a, Tables<'t>>;

/// How long past its expiry a spent token is kept, so that presenting it is still answered
/// "used", "revoked" or "expired" rather than "unknown". After that it can no longer
/// matter: it is forgotten, and the tokens table stays the size of what recent invitations
/// left.
pub const SPENT_TOKEN_MEMORY: Millis = 30 * 24 * 60 * 60 * 1000;

/// The store as its readers hold it: snapshots and the feed's heads, never the write side.
/// The connections and the feeds hold this; only the writer holds the [`Store`] itself, so
/// that nothing but the writer can begin a write transaction.
#[derive(Clone)]
pub struct ReadSide(std::sync::Arc<Store>);

impl ReadSide {
    pub fn new(store: std::sync::Arc<Store>) -> ReadSide {
        ReadSide(store)
    }

    /// [`Backend::read`].
    pub fn read(&self) -> Result<Snapshot> {
        self.0.read()
    }

    /// [`Store::read_about`].
    pub fn read_about(&self, uid: u32, org: Option<&str>) -> Result<Snapshot> {
        self.0.read_about(uid, org)
    }

    /// [`Store::glance`].
    pub async fn glance(&self, uid: u32, org: Option<&str>) -> Result<Glance> {
        self.0.glance(uid, org).await
    }

    /// [`Store::health`].
    pub fn health(&self) -> StoreHealth {
        self.0.health()
    }

    /// [`Backend::event_head`].
    pub fn event_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.event_head()
    }

    /// [`Backend::org_event_head`].
    pub fn org_event_head(&self, org: &str) -> tokio::sync::watch::Receiver<u64> {
        self.0.org_event_head(org)
    }

    /// [`Backend::last_sealed`].
    pub fn last_sealed(&self) -> Option<(u64, ChainHash)> {
        self.0.last_sealed()
    }
}

/// The handle of a backend: what the connections, the writer, the sweeper and the feeds
/// ask of the store, whatever holds the data.
pub trait Backend: Send + Sync + 'static {
    /// A consistent view of one commit, which reads on any thread may share.
    type Snapshot: Reader + Clone + Send + Sync + 'static;
    /// A write transaction: rolled back unless committed.
    type Write<'s>
    where
        Self: 's;

    /// A snapshot of the last commit: every change answered before this call is in it.
    fn read(&self) -> Result<Self::Snapshot>;

    /// Begins the write transaction. Only the writer calls it: there is one writer.
    fn begin_write(&self) -> Result<Self::Write<'_>>;

    /// Told of every store error a change met, so that the backend may recover (reopen a
    /// handle an I/O error broke) before the next change.
    fn note_failure(&self, err: &StoreError);

    /// The sequence number of the last committed event, changed as each commit with events
    /// lands: the whole host's feed waits on it.
    fn event_head(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Changed as each commit that appends to `org`'s feed lands: an organization's feed
    /// waits on it, so that other organizations' changes do not wake it. (Its value starts
    /// at 0 and says only that something changed since it was last seen.)
    fn org_event_head(&self, org: &str) -> tokio::sync::watch::Receiver<u64>;

    /// The last audit record this daemon committed, its number and hash: `audit verify`
    /// finds a log cut short behind it, whatever checkpoint was or was not kept.
    fn last_sealed(&self) -> Option<(u64, ChainHash)>;
}
