//! The redb store: its tables, the one place their indexes are kept in step, and
//! opening a database with its schema version checked.
//!
//! Reads go through [`Reader`], which both read snapshots and the writer's transaction
//! implement, so a rule sees the same view whether it only reads or also writes. Writes go
//! through [`Changes`], implemented by `WriteTransaction` and by [`Tracked`] (the writer's
//! view of it, which records whether a change wrote anything); it is the single place that
//! maintains the secondary indexes (`account_orgs`, `pending_by_expiry`), so they cannot
//! drift from `memberships`.

#[cfg(test)]
mod power_loss;
mod records;
mod schema;

use std::cell::{Cell, RefCell, RefMut};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use compartmentctl::wire::EventKind;
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

pub use records::*;
pub use schema::{check, CheckReport, OpenError, CURRENT_SCHEMA_VERSION};

/// redb's page cache unless told otherwise: enough for the hot pages of a million
/// members (the branch pages and the recent leaves), far below redb's own 1 GiB default, which
/// a large organization would fill just by being listed.
pub const DEFAULT_CACHE_SIZE: usize = 16 * 1024 * 1024;

/// How the database is opened.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// The most memory redb's page cache may hold, in bytes.
    pub cache_size: usize,
    /// The user name of a uid as the host names it now, for the one migration that records
    /// it (schema 1 → 2): the daemon passes NSS (`users::lookup_uid`). The default knows no
    /// names, so a binding upgraded through it holds for nobody until a superuser rebinds
    /// it. The store asks the host nothing of its own.
    pub user_name_of: fn(u32) -> Option<String>,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            cache_size: DEFAULT_CACHE_SIZE,
            user_name_of: |_| None,
        }
    }
}

/// The file name of the database inside the state directory.
pub const DATABASE_FILE: &str = "compartment.redb";

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const ORGS: TableDefinition<&str, &[u8]> = TableDefinition::new("orgs");
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
/// (org, email) → membership.
const MEMBERSHIPS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("memberships");
/// (email, org): the organizations an account belongs to.
const ACCOUNT_ORGS: TableDefinition<(&str, &str), ()> = TableDefinition::new("account_orgs");
/// uid → its binding to an account (schema 2 on).
const BINDINGS: TableDefinition<u32, &[u8]> = TableDefinition::new("bindings");
/// Token key (issue time, then a hash of the text: `token::key_of`) → token record.
const TOKENS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("tokens");
/// (expires_at, org, email) for every membership whose invitation is pending, so the
/// sweeper finds what is due without scanning what is not.
const PENDING_BY_EXPIRY: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("pending_by_expiry");
/// (org, email) of every active admin: the last-admin rule counts them without reading the
/// whole organization (schema 3 on).
const ORG_ADMINS: TableDefinition<(&str, &str), ()> = TableDefinition::new("org_admins");
/// uid → the organization chosen with `org use`.
const CURRENT_ORG: TableDefinition<u32, &str> = TableDefinition::new("current_org");
/// Sequence number → audit record.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// The change feed: sequence number → what changed (`events.subscribe`).
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// The feed by organization: (org, sequence number) of each event an organization's feed
/// carries, so that it reads its own rows and no one else's (schema 6).
const ORG_EVENTS: TableDefinition<(&str, u64), ()> = TableDefinition::new("org_events");
/// Spent tokens (used, revoked, expired) by the time they may be forgotten: (expiry plus
/// [`SPENT_TOKEN_MEMORY`], key), so that the sweeper prunes what no longer matters at the
/// cost of what it prunes (schema 6).
const SPENT_TOKENS: TableDefinition<(u64, &[u8; 32]), ()> = TableDefinition::new("spent_tokens");

/// How long past its expiry a spent token is kept, so that presenting it is still answered
/// "used", "revoked" or "expired" rather than "unknown". After that it can no longer
/// matter: it is forgotten, and the tokens table stays the size of what recent invitations
/// left.
pub const SPENT_TOKEN_MEMORY: Millis = 30 * 24 * 60 * 60 * 1000;

/// What went wrong below the rules.
#[derive(Debug)]
pub enum StoreError {
    Redb(redb::Error),
    /// A stored value that does not decode: the file was changed behind our back.
    Corrupt {
        table: &'static str,
        detail: String,
    },
    /// A record that does not encode (a bug: records are plain structs).
    Unencodable {
        table: &'static str,
        detail: String,
    },
    /// A write failed for want of space, and there is still too little to resume writing.
    DiskFull,
    /// The database is being reopened after a write failed; try again.
    Reopening,
}

impl StoreError {
    /// True when the disk is full: the client is told to free space and retry, not that
    /// the daemon broke.
    pub fn is_storage_full(&self) -> bool {
        match self {
            StoreError::DiskFull => true,
            StoreError::Redb(redb::Error::Io(err)) => {
                err.raw_os_error() == Some(nix::libc::ENOSPC)
                    || err.raw_os_error() == Some(nix::libc::EDQUOT)
            }
            _ => false,
        }
    }

    /// True when the error leaves redb's handle unusable for writes until it is reopened:
    /// redb latches the first I/O error and answers `PreviousIo` from then on.
    fn breaks_the_handle(&self) -> bool {
        matches!(
            self,
            StoreError::Redb(redb::Error::Io(_) | redb::Error::PreviousIo)
        )
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Redb(err) => write!(f, "database error: {err}"),
            StoreError::Corrupt { table, detail } => {
                write!(f, "unreadable record in table {table}: {detail}")
            }
            StoreError::Unencodable { table, detail } => {
                write!(f, "a record for table {table} does not encode: {detail}")
            }
            StoreError::DiskFull => f.write_str("no space left for the database"),
            StoreError::Reopening => f.write_str("the database is being reopened"),
        }
    }
}

impl std::error::Error for StoreError {}

impl<E: Into<redb::Error>> From<E> for StoreError {
    fn from(err: E) -> StoreError {
        StoreError::Redb(err.into())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The first byte of every record this daemon writes: postcard's encoding of the record
/// follows. A JSON record (schema 3 and before) begins with `{` instead.
pub(crate) const BINARY_RECORD: u8 = 0x01;

pub(crate) fn encode<T: Serialize>(table: &'static str, value: &T) -> Result<Vec<u8>> {
    postcard::to_extend(value, vec![BINARY_RECORD]).map_err(|err| StoreError::Unencodable {
        table,
        detail: err.to_string(),
    })
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(table: &'static str, bytes: &'a [u8]) -> Result<T> {
    let corrupt = |detail: String| StoreError::Corrupt { table, detail };
    match bytes.split_first() {
        Some((&BINARY_RECORD, fields)) => match postcard::take_from_bytes(fields) {
            Ok((value, [])) => Ok(value),
            Ok((_, rest)) => Err(corrupt(format!("{} bytes after the record", rest.len()))),
            Err(err) => Err(corrupt(err.to_string())),
        },
        Some((b'{', _)) => serde_json::from_slice(bytes).map_err(|err| corrupt(err.to_string())),
        Some((first, _)) => Err(corrupt(format!("unknown record format {first:#04x}"))),
        None => Err(corrupt("an empty record".to_owned())),
    }
}

/// A membership as a list reads it: from a binary record, the whole record read in place,
/// less what a list does not show; from a JSON one, only the fields a list shows.
pub(crate) fn decode_member_row(bytes: &[u8]) -> Result<MemberRow> {
    if bytes.first() == Some(&BINARY_RECORD) {
        decode::<MembershipView<'_>>("memberships", bytes).map(MemberRow::from)
    } else {
        decode("memberships", bytes)
    }
}

/// Free space the state directory needs before writes resume after running out.
const SPACE_TO_RESUME: u64 = 1024 * 1024;

/// The database, shared by the connections (which read snapshots) and the writer.
///
/// redb latches the first I/O error of a handle (a full disk, say) and refuses writes from
/// then on, while reads of committed data keep working. So the writer marks the handle
/// broken, and before its next change, once there is space again, reopens the file (redb
/// repairs it on open); reads use the old handle until that moment.
pub struct Store {
    db: RwLock<Option<Arc<Database>>>,
    broken: AtomicBool,
    path: PathBuf,
    state_dir: PathBuf,
    options: StoreOptions,
    /// False for a store opened on a storage backend (tests): there is no file to reopen,
    /// so a broken handle stays broken rather than a new one being opened on a file.
    reopens: bool,
    /// The sequence number of the last committed event: the feed's subscribers wait on it.
    events: tokio::sync::watch::Sender<u64>,
    /// The snapshot reads share between writes.
    snapshots: Mutex<Snapshots>,
    /// The heads of the organizations' feeds that have subscribers ([`Store::org_event_head`]).
    org_heads: Mutex<HashMap<String, tokio::sync::watch::Sender<u64>>>,
}

/// What a commit tells the feeds: its last event's sequence number, if it appended any, and
/// the organizations whose feeds it appended to.
#[derive(Debug, Default)]
pub(crate) struct Announcement {
    last: Option<u64>,
    orgs: Vec<String>,
}

/// The snapshot of the last commit, once a read has begun one; how many commits (and
/// write transactions begun) the store has seen, so that a read begun before one may not
/// share its snapshot after it; and how many write transactions are open.
///
/// No snapshot is shared while a write transaction is open: redb reuses the pages a commit
/// frees only once no read of the version before it is open, and a shared snapshot would
/// be one at nearly every commit of a stream of writes (the file grew by two thirds when
/// twenty thousand invitations were made so). Reads then begin their own, as they would
/// anyway.
#[derive(Default)]
struct Snapshots {
    commits: u64,
    current: Option<Snapshot>,
    writes_open: usize,
}

impl Store {
    /// Opens (or creates) `<state_dir>/compartment.redb`, migrating an older schema and
    /// refusing a newer one or a database another daemon holds.
    pub fn open(state_dir: &Path) -> Result<Store, OpenError> {
        Store::open_with(state_dir, &StoreOptions::default())
    }

    /// [`Store::open`] with `options`.
    pub fn open_with(state_dir: &Path, options: &StoreOptions) -> Result<Store, OpenError> {
        let path = state_dir.join(DATABASE_FILE);
        let db = schema::open(state_dir, &path, options)?;
        Ok(Store {
            events: events_head(&db, &path)?,
            db: RwLock::new(Some(Arc::new(db))),
            broken: AtomicBool::new(false),
            path,
            state_dir: state_dir.to_owned(),
            options: *options,
            reopens: true,
            snapshots: Mutex::default(),
            org_heads: Mutex::default(),
        })
    }

    /// A store on `backend` instead of a file, opened as [`Store::open`] opens one: for the
    /// power-loss test, whose backend loses unsynced writes at a simulated power cut.
    #[cfg(test)]
    pub(crate) fn open_backend(backend: impl redb::StorageBackend) -> Result<Store, OpenError> {
        let path = PathBuf::from("<storage backend>");
        let db = schema::open_with_backend(backend, &path)?;
        Ok(Store {
            events: events_head(&db, &path)?,
            db: RwLock::new(Some(Arc::new(db))),
            broken: AtomicBool::new(false),
            state_dir: path.clone(),
            path,
            options: StoreOptions::default(),
            reopens: false,
            snapshots: Mutex::default(),
            org_heads: Mutex::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sequence number of the last committed event, changed as each commit with events
    /// lands: a feed waits on it, and never holds up the writer.
    pub fn event_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.events.subscribe()
    }

    /// The last event of `org`'s feed, changed as each commit that appends to it lands: an
    /// organization's feed waits on it, so that other organizations' changes do not wake it.
    /// (Its value starts at 0 and says only that something changed since it was last seen.)
    pub fn org_event_head(&self, org: &str) -> tokio::sync::watch::Receiver<u64> {
        let mut heads = self
            .org_heads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        heads.retain(|_, head| head.receiver_count() > 0);
        heads
            .entry(org.to_owned())
            .or_insert_with(|| tokio::sync::watch::Sender::new(0))
            .subscribe()
    }

    /// Called after every commit ([`Write::commit`]), before its changes are answered:
    /// reads from then on see them, and the feeds learn of the events `announced`.
    fn committed(&self, announced: Announcement) {
        drop(self.forget_snapshot());
        let Some(seq) = announced.last else {
            return;
        };
        self.events.send_if_modified(|head| {
            let newer = seq > *head;
            if newer {
                *head = seq;
            }
            newer
        });
        if announced.orgs.is_empty() {
            return;
        }
        let heads = self
            .org_heads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for org in &announced.orgs {
            if let Some(head) = heads.get(org) {
                head.send_replace(seq);
            }
        }
    }

    /// Stops reads from sharing the current snapshot; returns it, to be dropped out of the
    /// lock (the last reference ends its read transaction).
    fn forget_snapshot(&self) -> Option<Snapshot> {
        let mut snapshots = self
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        snapshots.commits += 1;
        snapshots.current.take()
    }

    fn handle(&self) -> Result<Arc<Database>> {
        let slot = self.db.read().unwrap_or_else(PoisonError::into_inner);
        slot.clone().ok_or(StoreError::Reopening)
    }

    /// A consistent snapshot of the last commit to read from. Between writes, reads share
    /// one (until the next write transaction begins), which saves each of them beginning a
    /// read transaction and opening its tables: most of the cost of a small read.
    pub fn read(&self) -> Result<Snapshot> {
        let commits = {
            let snapshots = self
                .snapshots
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(current) = &snapshots.current {
                return Ok(current.clone());
            }
            (snapshots.writes_open == 0).then_some(snapshots.commits)
        };
        let snapshot = Snapshot::new(self.handle()?.begin_read()?);
        if let Some(commits) = commits {
            let mut snapshots = self
                .snapshots
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // A commit (or a write begun) since `commits` was read may have landed before
            // the transaction began or after: either way the snapshot is not shared.
            if snapshots.commits == commits {
                snapshots.current = Some(snapshot.clone());
            }
        }
        Ok(snapshot)
    }

    /// The write side; only the writer task calls it. Reopens a broken handle first.
    pub(crate) fn begin_write(&self) -> Result<Write<'_>> {
        if self.broken.load(Ordering::Acquire) {
            self.reopen()?;
        }
        let open = WriteOpen::new(self);
        Ok(Write {
            txn: self.handle()?.begin_write()?,
            open,
        })
    }

    /// Called by the writer with every store error a change met.
    pub(crate) fn note_failure(&self, err: &StoreError) {
        if err.breaks_the_handle() {
            tracing::warn!(error = %err, "a database write failed; reopening before the next change");
            self.broken.store(true, Ordering::Release);
        }
    }

    fn reopen(&self) -> Result<()> {
        if !self.reopens {
            return Err(StoreError::Reopening);
        }
        let free = nix::sys::statvfs::statvfs(&self.state_dir)
            .map(|s| s.blocks_available() * s.fragment_size())
            .unwrap_or(0);
        if free < SPACE_TO_RESUME {
            return Err(StoreError::DiskFull);
        }
        // The old handle is taken out under the lock and the lock released at once: the
        // wait below (up to 2 s) must not block readers, which meanwhile get `Reopening`
        // (answered `unavailable`, try again) instead of waiting on a runtime worker.
        let old = self
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // redb's file lock goes when the last reader of the old handle finishes; the shared
        // snapshot is one, and no read shares it from now on.
        drop(self.forget_snapshot());
        drop(old);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let db = loop {
            match schema::builder(&self.options).create(&self.path) {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(err) => return Err(err.into()),
            }
        };
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
        self.broken.store(false, Ordering::Release);
        tracing::info!(database = %self.path.display(), "database reopened; writes resume");
        Ok(())
    }
}

/// How a write transaction is committed: redb's durable commit in the daemon
/// (`writer::commit`); tests may fail it, or commit without a sync.
pub(crate) type Commit<'a> = &'a dyn Fn(WriteTransaction) -> Result<(), StoreError>;

/// A write transaction on the store. It commits only through [`Write::commit`], which
/// makes what it wrote visible to reads begun from then on (redb's own `commit`, which takes
/// the transaction by value, is out of reach behind the reference this derefs to); dropped
/// or aborted, it rolls back.
pub struct Write<'s> {
    txn: WriteTransaction,
    open: WriteOpen<'s>,
}

impl Write<'_> {
    /// Commits with `commit`, then tells the store: reads begun from then on see the change,
    /// and the feeds the events `announced`.
    pub(crate) fn commit(self, commit: Commit<'_>, announced: Announcement) -> Result<()> {
        let Write { txn, open } = self;
        commit(txn)?;
        open.0.committed(announced);
        Ok(())
    }

    /// Rolls the transaction back.
    pub(crate) fn abort(self) -> std::result::Result<(), redb::StorageError> {
        self.txn.abort()
    }
}

impl std::ops::Deref for Write<'_> {
    type Target = WriteTransaction;

    fn deref(&self) -> &WriteTransaction {
        &self.txn
    }
}

impl std::ops::DerefMut for Write<'_> {
    fn deref_mut(&mut self) -> &mut WriteTransaction {
        &mut self.txn
    }
}

/// Counts a write transaction open from its beginning to its end (committed, aborted,
/// dropped or never begun): no snapshot is shared meanwhile (see [`Snapshots`]).
struct WriteOpen<'s>(&'s Store);

impl<'s> WriteOpen<'s> {
    fn new(store: &'s Store) -> WriteOpen<'s> {
        let shared = {
            let mut snapshots = store
                .snapshots
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            snapshots.writes_open += 1;
            // A read that began its own transaction before this write does not share it.
            snapshots.commits += 1;
            snapshots.current.take()
        };
        drop(shared);
        WriteOpen(store)
    }
}

impl Drop for WriteOpen<'_> {
    fn drop(&mut self) {
        let mut snapshots = self
            .0
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        snapshots.writes_open = snapshots.writes_open.saturating_sub(1);
    }
}

/// The feed's head as the file holds it when opened.
fn events_head(
    db: &Database,
    path: &Path,
) -> std::result::Result<tokio::sync::watch::Sender<u64>, OpenError> {
    let head = db
        .begin_read()
        .map_err(StoreError::from)
        .and_then(|txn| Snapshot::new(txn).last_event_seq())
        .map_err(|err| OpenError::Store {
            path: path.to_owned(),
            source: err,
        })?;
    Ok(tokio::sync::watch::Sender::new(head))
}

/// Reads shared by snapshots and the write transaction.
pub trait Reader {
    fn org(&self, name: &str) -> Result<Option<OrgRecord>>;
    /// Every organization, by name.
    fn org_names(&self) -> Result<Vec<String>>;
    fn account(&self, email: &str) -> Result<Option<AccountRecord>>;
    /// The binding of `uid`, if it has one (whether or not it still holds).
    fn binding(&self, uid: u32) -> Result<Option<BindingRecord>>;
    /// The e-mail of the account `uid` is bound to (whether or not the binding holds).
    fn bound_email(&self, uid: u32) -> Result<Option<String>> {
        Ok(self.binding(uid)?.map(|b| b.email))
    }
    /// Every account, by e-mail.
    fn accounts(&self) -> Result<Vec<(String, AccountRecord)>>;
    fn membership(&self, org: &str, email: &str) -> Result<Option<MembershipRecord>>;
    /// Every membership of `org`, by e-mail.
    fn members(&self, org: &str) -> Result<Vec<(String, MembershipRecord)>>;
    /// At most `limit` memberships of `org` by e-mail, starting just after `after` (from
    /// the first when `None`). A range read: it costs what it returns, whatever the
    /// organization's size.
    fn members_after(
        &self,
        org: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, MemberRow)>>;
    /// How many active admins `org` has, counted up to `at_most`: the last-admin rule
    /// asks only whether there is another, whatever the organization's size.
    fn active_admins(&self, org: &str, at_most: usize) -> Result<usize>;
    /// The organizations `email` has a membership in (any status), by name.
    fn orgs_of(&self, email: &str) -> Result<Vec<String>>;
    fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>>;
    fn current_org(&self, uid: u32) -> Result<Option<String>>;
    /// The earliest expiry among pending invitations.
    fn next_expiry(&self) -> Result<Option<Millis>>;
    /// Pending invitations whose expiry is at or before `now`, as (org, email).
    fn due_invitations(&self, now: Millis) -> Result<Vec<(String, String)>> {
        self.due_invitations_up_to(now, usize::MAX)
    }
    /// The first `limit` of [`Reader::due_invitations`], earliest expiry first.
    fn due_invitations_up_to(&self, now: Millis, limit: usize) -> Result<Vec<(String, String)>>;
    /// Every audit record in order (for tests and, later, `audit list`).
    fn audit(&self) -> Result<Vec<AuditRecord>>;
    /// At most `limit` events with sequence numbers above `after`, in order.
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, EventRecord)>>;
    /// At most `limit` of the events `org`'s feed carries with sequence numbers above
    /// `after`, in order: a range read of its own rows, whatever the rest of the feed holds.
    fn org_events_after(
        &self,
        org: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EventRecord)>>;
    /// The keys of at most `limit` spent tokens that may be forgotten at `now`, earliest
    /// first.
    fn spent_tokens_due(&self, now: Millis, limit: usize) -> Result<Vec<TokenHash>>;
    /// When the earliest spent token may be forgotten.
    fn next_spent_token_due(&self) -> Result<Option<Millis>>;
    /// The last event's sequence number; 0 before the first.
    fn last_event_seq(&self) -> Result<u64>;
}

/// Implements [`Reader`] for a transaction type; both of redb's transaction types have
/// `open_table` returning a [`ReadableTable`].
macro_rules! impl_reader {
    ($txn:ty) => {
        impl Reader for $txn {
            fn org(&self, name: &str) -> Result<Option<OrgRecord>> {
                let table = self.orgs_table()?;
                let value = table.get(name)?;
                value.map(|v| decode("orgs", v.value())).transpose()
            }

            fn org_names(&self) -> Result<Vec<String>> {
                let table = self.orgs_table()?;
                let mut names = Vec::new();
                for entry in table.iter()? {
                    let (key, _) = entry?;
                    names.push(key.value().to_owned());
                }
                Ok(names)
            }

            fn account(&self, email: &str) -> Result<Option<AccountRecord>> {
                let table = self.accounts_table()?;
                let value = table.get(email)?;
                value.map(|v| decode("accounts", v.value())).transpose()
            }

            fn binding(&self, uid: u32) -> Result<Option<BindingRecord>> {
                let table = self.bindings_table()?;
                let value = table.get(uid)?;
                value.map(|v| decode("bindings", v.value())).transpose()
            }

            fn accounts(&self) -> Result<Vec<(String, AccountRecord)>> {
                let table = self.accounts_table()?;
                let mut accounts = Vec::new();
                for entry in table.iter()? {
                    let (key, value) = entry?;
                    accounts.push((key.value().to_owned(), decode("accounts", value.value())?));
                }
                Ok(accounts)
            }

            fn membership(&self, org: &str, email: &str) -> Result<Option<MembershipRecord>> {
                let table = self.memberships_table()?;
                let value = table.get((org, email))?;
                value.map(|v| decode("memberships", v.value())).transpose()
            }

            fn members(&self, org: &str) -> Result<Vec<(String, MembershipRecord)>> {
                let table = self.memberships_table()?;
                let mut members = Vec::new();
                for entry in table.range((org, "")..)? {
                    let (key, value) = entry?;
                    let (key_org, email) = key.value();
                    if key_org != org {
                        break;
                    }
                    members.push((email.to_owned(), decode("memberships", value.value())?));
                }
                Ok(members)
            }

            fn members_after(
                &self,
                org: &str,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<(String, MemberRow)>> {
                use std::ops::Bound;
                let table = self.memberships_table()?;
                // Keys order by (org, email), so an org's rows are contiguous and the
                // page starts strictly after the cursor's e-mail within that org.
                let start = match after {
                    Some(email) => Bound::Excluded((org, email)),
                    None => Bound::Included((org, "")),
                };
                let mut members = Vec::new();
                if limit == 0 {
                    return Ok(members);
                }
                for entry in table.range::<(&str, &str)>((start, Bound::Unbounded))? {
                    let (key, value) = entry?;
                    let (key_org, email) = key.value();
                    if key_org != org {
                        break;
                    }
                    members.push((email.to_owned(), decode_member_row(value.value())?));
                    if members.len() >= limit {
                        break;
                    }
                }
                Ok(members)
            }

            fn active_admins(&self, org: &str, at_most: usize) -> Result<usize> {
                let table = self.admins_table()?;
                let mut count = 0;
                for entry in table.range((org, "")..)?.take(at_most) {
                    let (key, _) = entry?;
                    if key.value().0 != org {
                        break;
                    }
                    count += 1;
                }
                Ok(count)
            }

            fn orgs_of(&self, email: &str) -> Result<Vec<String>> {
                let table = self.account_orgs_table()?;
                let mut orgs = Vec::new();
                for entry in table.range((email, "")..)? {
                    let (key, _) = entry?;
                    let (key_email, org) = key.value();
                    if key_email != email {
                        break;
                    }
                    orgs.push(org.to_owned());
                }
                Ok(orgs)
            }

            fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>> {
                let table = self.tokens_table()?;
                let value = table.get(&hash.0)?;
                value.map(|v| decode("tokens", v.value())).transpose()
            }

            fn current_org(&self, uid: u32) -> Result<Option<String>> {
                let table = self.current_org_table()?;
                let value = table.get(uid)?;
                Ok(value.map(|v| v.value().to_owned()))
            }

            fn next_expiry(&self) -> Result<Option<Millis>> {
                let table = self.pending_table()?;
                let first = table.first()?;
                Ok(first.map(|(key, _)| key.value().0))
            }

            fn due_invitations_up_to(
                &self,
                now: Millis,
                limit: usize,
            ) -> Result<Vec<(String, String)>> {
                let table = self.pending_table()?;
                let mut due = Vec::new();
                // Due as `clock::is_due` says: at or before `now`, so the bound is inclusive.
                let range = table.range(..=(now, "\u{10FFFF}", "\u{10FFFF}"))?;
                for entry in range.take(limit) {
                    let (key, _) = entry?;
                    let (_, org, email) = key.value();
                    due.push((org.to_owned(), email.to_owned()));
                }
                Ok(due)
            }

            fn audit(&self) -> Result<Vec<AuditRecord>> {
                let table = self.audit_table()?;
                let mut records = Vec::new();
                for entry in table.iter()? {
                    let (_, value) = entry?;
                    records.push(decode("audit", value.value())?);
                }
                Ok(records)
            }

            fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, EventRecord)>> {
                let table = self.events_table()?;
                let mut events = Vec::new();
                for entry in table.range(after.saturating_add(1)..)?.take(limit) {
                    let (key, value) = entry?;
                    events.push((key.value(), decode("events", value.value())?));
                }
                Ok(events)
            }

            fn last_event_seq(&self) -> Result<u64> {
                let table = self.events_table()?;
                let last = table.last()?;
                Ok(last.map_or(0, |(key, _)| key.value()))
            }

            fn org_events_after(
                &self,
                org: &str,
                after: u64,
                limit: usize,
            ) -> Result<Vec<(u64, EventRecord)>> {
                let index = self.org_events_table()?;
                let table = self.events_table()?;
                let mut events = Vec::new();
                let range = index.range((org, after.saturating_add(1))..=(org, u64::MAX))?;
                for entry in range.take(limit) {
                    let (key, _) = entry?;
                    let seq = key.value().1;
                    // Every entry names an event of the same commit: the two are written
                    // together and nothing deletes events.
                    if let Some(value) = table.get(seq)? {
                        events.push((seq, decode("events", value.value())?));
                    }
                }
                Ok(events)
            }

            fn spent_tokens_due(&self, now: Millis, limit: usize) -> Result<Vec<TokenHash>> {
                let table = self.spent_tokens_table()?;
                let mut due = Vec::new();
                // Due as `clock::is_due` says: at or before `now`.
                for entry in table.range(..=(now, &[u8::MAX; 32]))?.take(limit) {
                    let (key, _) = entry?;
                    due.push(TokenHash(*key.value().1));
                }
                Ok(due)
            }

            fn next_spent_token_due(&self) -> Result<Option<Millis>> {
                let table = self.spent_tokens_table()?;
                let first = table.first()?;
                Ok(first.map(|(key, _)| key.value().0))
            }
        }
    };
}

impl_reader!(Snapshot);
impl_reader!(Tables<'_>);
impl_reader!(Tracked<'_, '_>);

/// Each table's accessor, for the three kinds of view the store is read through: a
/// [`Snapshot`] opens each table on first use and keeps it open for every read that shares
/// it; [`Tables`] opens it once per write transaction and keeps it open; [`Tracked`] uses
/// its [`Tables`].
macro_rules! tables {
    ($($accessor:ident: $definition:ident: $key:ty => $value:ty,)*) => {
        /// A read transaction: a consistent view of one commit, which any number of reads on
        /// any threads share (it is a reference). Each table is opened on first use and kept
        /// open while the snapshot lives.
        #[derive(Clone)]
        pub struct Snapshot(Arc<SnapshotTables>);

        struct SnapshotTables {
            txn: ReadTransaction,
            $($accessor: OnceLock<redb::ReadOnlyTable<$key, $value>>,)*
        }

        impl Snapshot {
            pub(crate) fn new(txn: ReadTransaction) -> Snapshot {
                Snapshot(Arc::new(SnapshotTables {
                    txn,
                    $($accessor: OnceLock::new(),)*
                }))
            }

            /// Whether `self` and `other` are the same read transaction.
            #[cfg(test)]
            fn shares(&self, other: &Snapshot) -> bool {
                Arc::ptr_eq(&self.0, &other.0)
            }

            /// How many hold this read transaction open (the store counts as one).
            #[cfg(test)]
            fn holders(&self) -> usize {
                Arc::strong_count(&self.0)
            }

            $(fn $accessor(&self) -> std::result::Result<&redb::ReadOnlyTable<$key, $value>, redb::TableError> {
                let slot = &self.0.$accessor;
                if let Some(table) = slot.get() {
                    return Ok(table);
                }
                // Two reads may open it at once: one of the two is kept.
                let table = self.0.txn.open_table($definition)?;
                Ok(slot.get_or_init(|| table))
            })*
        }

        /// The tables of one write transaction, each opened on first use and kept open
        /// until this is dropped (before the commit). Opening and closing a table costs
        /// redb a lookup in its table of tables and a staged root update, each time; the
        /// writer applies hundreds of changes of a few rows each in one transaction, so it
        /// opens each table once for all of them.
        pub struct Tables<'t> {
            txn: &'t WriteTransaction,
            $($accessor: RefCell<Option<redb::Table<'t, $key, $value>>>,)*
            /// The next audit record's and event's sequence numbers, once read.
            next_audit: Cell<Option<u64>>,
            next_event: Cell<Option<u64>>,
            /// The organizations whose feeds this transaction appended to.
            touched_orgs: RefCell<Vec<String>>,
        }

        impl<'t> Tables<'t> {
            pub fn new(txn: &'t WriteTransaction) -> Tables<'t> {
                Tables {
                    txn,
                    $($accessor: RefCell::new(None),)*
                    next_audit: Cell::new(None),
                    next_event: Cell::new(None),
                    touched_orgs: RefCell::new(Vec::new()),
                }
            }

            $(
                #[track_caller]
                fn $accessor(&self) -> Result<RefMut<'_, redb::Table<'t, $key, $value>>> {
                    let already_open = || {
                        StoreError::from(redb::TableError::TableAlreadyOpen(
                            $definition.to_string(),
                            std::panic::Location::caller(),
                        ))
                    };
                    // A rule never holds one table while asking for it again; should one
                    // ever, it gets an error rather than the writer a panic.
                    let mut slot = self.$accessor.try_borrow_mut().map_err(|_| already_open())?;
                    if slot.is_none() {
                        *slot = Some(self.txn.open_table($definition)?);
                    }
                    RefMut::filter_map(slot, Option::as_mut).map_err(|_| already_open())
                }
            )*
        }

        impl<'t> Tracked<'_, 't> {
            $(fn $accessor(&self) -> Result<RefMut<'_, redb::Table<'t, $key, $value>>> {
                self.tables.$accessor()
            })*
        }
    };
}

tables! {
    orgs_table: ORGS: &'static str => &'static [u8],
    accounts_table: ACCOUNTS: &'static str => &'static [u8],
    memberships_table: MEMBERSHIPS: (&'static str, &'static str) => &'static [u8],
    account_orgs_table: ACCOUNT_ORGS: (&'static str, &'static str) => (),
    bindings_table: BINDINGS: u32 => &'static [u8],
    tokens_table: TOKENS: &'static [u8; 32] => &'static [u8],
    pending_table: PENDING_BY_EXPIRY: (u64, &'static str, &'static str) => (),
    current_org_table: CURRENT_ORG: u32 => &'static str,
    audit_table: AUDIT: u64 => &'static [u8],
    admins_table: ORG_ADMINS: (&'static str, &'static str) => (),
    events_table: EVENTS: u64 => &'static [u8],
    org_events_table: ORG_EVENTS: (&'static str, u64) => (),
    spent_tokens_table: SPENT_TOKENS: (u64, &'static [u8; 32]) => (),
}

/// The write transaction as a change sees it: every write goes through [`Changes`], which
/// records that one happened. The writer runs many changes in one transaction; a change
/// refused after it wrote would leave a trace in its neighbours' commit, so the writer
/// reads [`Tracked::wrote`] and, when it is set on a refused change, runs the batch again
/// one transaction per change. The transaction itself is private, so no write bypasses
/// the record.
pub struct Tracked<'a, 't> {
    tables: &'a Tables<'t>,
    wrote: Cell<bool>,
    /// When the change is applied: the time of the events it writes.
    now: Millis,
}

impl<'a, 't> Tracked<'a, 't> {
    pub(crate) fn new(tables: &'a Tables<'t>, now: Millis) -> Tracked<'a, 't> {
        Tracked {
            tables,
            wrote: Cell::new(false),
            now,
        }
    }

    /// True once any write was attempted through this view (even one that failed).
    pub(crate) fn wrote(&self) -> bool {
        self.wrote.get()
    }

    fn mark(&self) -> &'a Tables<'t> {
        self.wrote.set(true);
        self.tables
    }
}

/// Changes, on the writer's transaction only.
pub trait Changes: Reader {
    fn put_org(&self, name: &str, org: &OrgRecord) -> Result<()>;
    fn put_account(&self, email: &str, account: &AccountRecord) -> Result<()>;
    fn put_binding(&self, uid: u32, binding: &BindingRecord) -> Result<()>;
    fn delete_binding(&self, uid: u32) -> Result<()>;
    /// Writes a membership, keeping `account_orgs` and `pending_by_expiry` in step with
    /// it; `old` is the record it replaces.
    fn put_membership(
        &self,
        org: &str,
        email: &str,
        new: &MembershipRecord,
        old: Option<&MembershipRecord>,
    ) -> Result<()>;
    /// Deletes a membership and its index entries; `old` is the record being deleted.
    fn delete_membership(&self, org: &str, email: &str, old: &MembershipRecord) -> Result<()>;
    /// Writes a token, keeping `spent_tokens` in step with its state.
    fn put_token(&self, hash: &TokenHash, token: &TokenRecord) -> Result<()>;
    /// Forgets a token and its index entry.
    fn delete_token(&self, hash: &TokenHash) -> Result<()>;
    fn set_current_org(&self, uid: u32, org: &str) -> Result<()>;
    fn clear_current_org(&self, uid: u32) -> Result<()>;
    fn append_audit(&self, record: &AuditRecord) -> Result<()>;
}

/// The pending-index key of a membership, if it has one.
fn pending_key(record: &MembershipRecord) -> Option<Millis> {
    match (record.status, record.expires_at) {
        (compartmentctl::wire::MemberStatus::Invited, Some(expires_at)) => Some(expires_at),
        _ => None,
    }
}

/// The `spent_tokens` key of a token, if it has one: when a spent token may be forgotten.
pub(crate) fn spent_key(token: &TokenRecord) -> Option<Millis> {
    (token.state != TokenState::Pending)
        .then(|| token.expires_at.saturating_add(SPENT_TOKEN_MEMORY))
}

/// The event a membership's change makes, if the feed tells of it: a new membership, an
/// activation, an expiry, a new invitation after an expiry, a role changed, a removal. A
/// change the feed does not tell of (a new URL for a pending invitation) makes none.
fn membership_event(
    at: Millis,
    org: &str,
    email: &str,
    new: Option<&MembershipRecord>,
    old: Option<&MembershipRecord>,
) -> Option<EventRecord> {
    use compartmentctl::wire::MemberStatus::{Active, Expired, Invited};
    let (kind, record) = match (old, new) {
        (None, Some(new)) => (EventKind::MemberAdded, new),
        (Some(old), None) => (EventKind::MemberRemoved, old),
        (Some(old), Some(new)) => {
            let kind = match (old.status, new.status) {
                (from, Active) if from != Active => EventKind::MemberActivated,
                (from, Expired) if from != Expired => EventKind::MemberExpired,
                (Expired, Invited) => EventKind::MemberReinvited,
                _ if old.role != new.role => EventKind::RoleChanged,
                _ => return None,
            };
            (kind, new)
        }
        (None, None) => return None,
    };
    Some(EventRecord {
        at,
        kind,
        org: Some(org.to_owned()),
        email: email.to_owned(),
        role: Some(record.role),
        previous_role: match (kind, old) {
            (EventKind::RoleChanged, Some(old)) => Some(old.role),
            _ => None,
        },
        status: (kind != EventKind::MemberRemoved).then_some(record.status),
        uid: record.uid,
    })
}

/// The event of `email`'s account being bound to `uid`, or unbound (`None`).
fn binding_event(at: Millis, email: String, uid: Option<u32>) -> EventRecord {
    EventRecord {
        at,
        kind: EventKind::BindingChanged,
        org: None,
        email,
        role: None,
        previous_role: None,
        status: None,
        uid,
    }
}

impl Changes for Tracked<'_, '_> {
    fn put_org(&self, name: &str, org: &OrgRecord) -> Result<()> {
        self.mark().put_org(name, org)
    }

    fn put_account(&self, email: &str, account: &AccountRecord) -> Result<()> {
        self.mark().put_account(email, account)
    }

    fn put_binding(&self, uid: u32, binding: &BindingRecord) -> Result<()> {
        let tables = self.mark();
        let before = tables.binding(uid)?;
        tables.put_binding(uid, binding)?;
        if before.as_ref().map(|b| &b.email) != Some(&binding.email) {
            if let Some(before) = before {
                tables.append_event(&binding_event(self.now, before.email, None))?;
            }
            tables.append_event(&binding_event(self.now, binding.email.clone(), Some(uid)))?;
        }
        Ok(())
    }

    fn delete_binding(&self, uid: u32) -> Result<()> {
        let tables = self.mark();
        let before = tables.binding(uid)?;
        tables.delete_binding(uid)?;
        if let Some(before) = before {
            tables.append_event(&binding_event(self.now, before.email, None))?;
        }
        Ok(())
    }

    fn put_membership(
        &self,
        org: &str,
        email: &str,
        new: &MembershipRecord,
        old: Option<&MembershipRecord>,
    ) -> Result<()> {
        let tables = self.mark();
        tables.put_membership(org, email, new, old)?;
        if let Some(event) = membership_event(self.now, org, email, Some(new), old) {
            tables.append_event(&event)?;
        }
        Ok(())
    }

    fn delete_membership(&self, org: &str, email: &str, old: &MembershipRecord) -> Result<()> {
        let tables = self.mark();
        tables.delete_membership(org, email, old)?;
        if let Some(event) = membership_event(self.now, org, email, None, Some(old)) {
            tables.append_event(&event)?;
        }
        Ok(())
    }

    fn put_token(&self, hash: &TokenHash, token: &TokenRecord) -> Result<()> {
        self.mark().put_token(hash, token)
    }

    fn delete_token(&self, hash: &TokenHash) -> Result<()> {
        self.mark().delete_token(hash)
    }

    fn set_current_org(&self, uid: u32, org: &str) -> Result<()> {
        self.mark().set_current_org(uid, org)
    }

    fn clear_current_org(&self, uid: u32) -> Result<()> {
        self.mark().clear_current_org(uid)
    }

    fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        self.mark().append_audit(record)
    }
}

impl Changes for Tables<'_> {
    fn put_org(&self, name: &str, org: &OrgRecord) -> Result<()> {
        self.orgs_table()?
            .insert(name, encode("orgs", org)?.as_slice())?;
        Ok(())
    }

    fn put_account(&self, email: &str, account: &AccountRecord) -> Result<()> {
        self.accounts_table()?
            .insert(email, encode("accounts", account)?.as_slice())?;
        Ok(())
    }

    fn put_binding(&self, uid: u32, binding: &BindingRecord) -> Result<()> {
        self.bindings_table()?
            .insert(uid, encode("bindings", binding)?.as_slice())?;
        Ok(())
    }

    fn delete_binding(&self, uid: u32) -> Result<()> {
        self.bindings_table()?.remove(uid)?;
        Ok(())
    }

    fn put_membership(
        &self,
        org: &str,
        email: &str,
        new: &MembershipRecord,
        old: Option<&MembershipRecord>,
    ) -> Result<()> {
        self.memberships_table()?
            .insert((org, email), encode("memberships", new)?.as_slice())?;
        if old.is_none() {
            self.account_orgs_table()?.insert((email, org), ())?;
        }
        let (old_key, new_key) = (old.and_then(pending_key), pending_key(new));
        if old_key != new_key {
            let mut pending = self.pending_table()?;
            if let Some(expires_at) = old_key {
                pending.remove((expires_at, org, email))?;
            }
            if let Some(expires_at) = new_key {
                pending.insert((expires_at, org, email), ())?;
            }
        }
        let was_admin = old.is_some_and(MembershipRecord::is_active_admin);
        if was_admin != new.is_active_admin() {
            let mut admins = self.admins_table()?;
            if was_admin {
                admins.remove((org, email))?;
            } else {
                admins.insert((org, email), ())?;
            }
        }
        Ok(())
    }

    fn delete_membership(&self, org: &str, email: &str, old: &MembershipRecord) -> Result<()> {
        self.memberships_table()?.remove((org, email))?;
        self.account_orgs_table()?.remove((email, org))?;
        if let Some(expires_at) = pending_key(old) {
            self.pending_table()?.remove((expires_at, org, email))?;
        }
        if old.is_active_admin() {
            self.admins_table()?.remove((org, email))?;
        }
        Ok(())
    }

    fn put_token(&self, hash: &TokenHash, token: &TokenRecord) -> Result<()> {
        let old = self.token(hash)?;
        self.tokens_table()?
            .insert(&hash.0, encode("tokens", token)?.as_slice())?;
        let (old_key, new_key) = (old.as_ref().and_then(spent_key), spent_key(token));
        if old_key != new_key {
            let mut spent = self.spent_tokens_table()?;
            if let Some(at) = old_key {
                spent.remove((at, &hash.0))?;
            }
            if let Some(at) = new_key {
                spent.insert((at, &hash.0), ())?;
            }
        }
        Ok(())
    }

    fn delete_token(&self, hash: &TokenHash) -> Result<()> {
        let old = self.token(hash)?;
        self.tokens_table()?.remove(&hash.0)?;
        if let Some(at) = old.as_ref().and_then(spent_key) {
            self.spent_tokens_table()?.remove((at, &hash.0))?;
        }
        Ok(())
    }

    fn set_current_org(&self, uid: u32, org: &str) -> Result<()> {
        self.current_org_table()?.insert(uid, org)?;
        Ok(())
    }

    fn clear_current_org(&self, uid: u32) -> Result<()> {
        self.current_org_table()?.remove(uid)?;
        Ok(())
    }

    fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        let seq = self.next_seq(&self.next_audit, || {
            Ok(self.audit_table()?.last()?.map(|(key, _)| key.value()))
        })?;
        self.audit_table()?
            .insert(seq, encode("audit", record)?.as_slice())?;
        Ok(())
    }
}

/// Creates every table, so that read snapshots can open them all.
impl Tables<'_> {
    /// The next sequence number of an append-only table, read from it (`last`) once per
    /// transaction and counted from there: each append costs one insert, not a lookup too.
    fn next_seq(
        &self,
        next: &Cell<Option<u64>>,
        last: impl FnOnce() -> Result<Option<u64>>,
    ) -> Result<u64> {
        let seq = match next.get() {
            Some(seq) => seq,
            None => last()?.map_or(1, |last| last + 1),
        };
        next.set(Some(seq + 1));
        Ok(seq)
    }

    /// Appends `event` to the feed; returns its sequence number.
    fn append_event(&self, event: &EventRecord) -> Result<u64> {
        let seq = self.next_seq(&self.next_event, || {
            Ok(self.events_table()?.last()?.map(|(key, _)| key.value()))
        })?;
        self.events_table()?
            .insert(seq, encode("events", event)?.as_slice())?;
        self.index_event(seq, event)?;
        Ok(seq)
    }

    /// Files the event `seq` under each organization whose feed carries it: a membership's
    /// under its organization; a binding's under every organization the account is a member
    /// of, so that their admins learn that a member now acts through another uid.
    pub(crate) fn index_event(&self, seq: u64, event: &EventRecord) -> Result<()> {
        let orgs = match &event.org {
            Some(org) => vec![org.clone()],
            None => self.orgs_of(&event.email)?,
        };
        let mut index = self.org_events_table()?;
        let mut touched = self.touched_orgs.borrow_mut();
        for org in orgs {
            index.insert((org.as_str(), seq), ())?;
            if !touched.contains(&org) {
                touched.push(org);
            }
        }
        Ok(())
    }

    /// What the writer announces once the transaction is committed: the sequence number of
    /// the last event it appended, if any, and the organizations whose feeds it appended to.
    pub(crate) fn last_event(&self) -> Announcement {
        Announcement {
            last: self.next_event.get().map(|next| next - 1),
            orgs: self.touched_orgs.take(),
        }
    }
}

pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(META)?;
    txn.open_table(ORGS)?;
    txn.open_table(ACCOUNTS)?;
    txn.open_table(MEMBERSHIPS)?;
    txn.open_table(ACCOUNT_ORGS)?;
    txn.open_table(BINDINGS)?;
    txn.open_table(TOKENS)?;
    txn.open_table(PENDING_BY_EXPIRY)?;
    txn.open_table(CURRENT_ORG)?;
    txn.open_table(AUDIT)?;
    txn.open_table(ORG_ADMINS)?;
    txn.open_table(EVENTS)?;
    txn.open_table(ORG_EVENTS)?;
    txn.open_table(SPENT_TOKENS)?;
    Ok(())
}

/// Checks that the secondary indexes agree with `memberships`, both ways (tests and,
/// later, `compartmentd check`). Linear in the number of memberships.
pub fn check_indexes(reader: &impl Reader) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut unmatched_pending: std::collections::HashSet<(String, String)> =
        reader.due_invitations(Millis::MAX)?.into_iter().collect();
    for org in reader.org_names()? {
        let mut admins = 0;
        for (email, membership) in reader.members(&org)? {
            if !reader.orgs_of(&email)?.contains(&org) {
                problems.push(format!("account_orgs lacks ({email}, {org})"));
            }
            admins += usize::from(membership.is_active_admin());
            if pending_key(&membership).is_some()
                && !unmatched_pending.remove(&(org.clone(), email.clone()))
            {
                problems.push(format!("pending_by_expiry lacks ({org}, {email})"));
            }
        }
        let indexed = reader.active_admins(&org, usize::MAX)?;
        if indexed != admins {
            problems.push(format!(
                "org_admins holds {indexed} active admins of {org}, memberships {admins}"
            ));
        }
    }
    for (org, email) in unmatched_pending {
        problems.push(format!(
            "pending_by_expiry has ({org}, {email}) with no pending invitation"
        ));
    }
    check_feed_index(reader, &mut problems)?;
    for hash in reader.spent_tokens_due(Millis::MAX, usize::MAX)? {
        let spent = reader.token(&hash)?.and_then(|token| spent_key(&token));
        if spent.is_none() {
            let prefix: String = hash.0[..4].iter().map(|b| format!("{b:02x}")).collect();
            problems.push(format!(
                "spent_tokens names a token that is not spent ({prefix}…)"
            ));
        }
    }
    Ok(problems)
}

/// Every membership's event is filed under its organization, and the index files under an
/// organization only that organization's events and bindings' events.
fn check_feed_index(reader: &impl Reader, problems: &mut Vec<String>) -> Result<()> {
    let mut filed = std::collections::HashSet::new();
    for org in reader.org_names()? {
        for (seq, event) in reader.org_events_after(&org, 0, usize::MAX)? {
            if event.org.is_some() && event.org.as_deref() != Some(org.as_str()) {
                problems.push(format!("org_events files event {seq} under {org}"));
            }
            filed.insert((org.clone(), seq));
        }
    }
    let mut after = 0;
    loop {
        let batch = reader.events_after(after, 4096)?;
        let Some(&(last, _)) = batch.last() else {
            break;
        };
        for (seq, event) in batch {
            if let Some(org) = event.org {
                if !filed.contains(&(org.clone(), seq)) {
                    problems.push(format!("org_events lacks ({org}, {seq})"));
                }
            }
        }
        after = last;
    }
    Ok(())
}

/// How many organizations, memberships and accounts `snapshot` holds (for `compartmentd
/// check`).
fn table_counts(snapshot: &Snapshot) -> Result<(usize, u64, u64)> {
    use redb::ReadableTableMetadata;
    Ok((
        snapshot.org_names()?.len(),
        snapshot.memberships_table()?.len()?,
        snapshot.accounts_table()?.len()?,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::{Duration, Instant};

    use super::*;

    /// The admins' index follows every membership change, and the index check notices an
    /// index that no longer does.
    #[test]
    fn the_admins_index_follows_memberships_and_is_checked() {
        use compartmentctl::wire::{MemberStatus, Role};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let member = |role, status| MembershipRecord {
            role,
            uid: Some(1000),
            status,
            invited_by: "uid 0".into(),
            invited_at: 1,
            expires_at: None,
            token_hash: None,
        };
        let admin = member(Role::Admin, MemberStatus::Active);
        let invited_admin = member(Role::Admin, MemberStatus::Invited);
        let deployer = member(Role::Deployer, MemberStatus::Active);
        let write = |change: &dyn Fn(&Tables<'_>) -> Result<()>| {
            let txn = store.begin_write().unwrap();
            change(&Tables::new(&txn)).unwrap();
            txn.commit(&crate::writer::commit, Announcement::default())
                .unwrap();
        };
        let admins = |org| {
            store
                .read()
                .unwrap()
                .active_admins(org, usize::MAX)
                .unwrap()
        };
        write(&|t| {
            t.put_org(
                "acme",
                &OrgRecord {
                    created_at: 1,
                    created_by_uid: 0,
                },
            )?;
            t.put_org(
                "beta",
                &OrgRecord {
                    created_at: 1,
                    created_by_uid: 0,
                },
            )?;
            t.put_membership("acme", "a@x", &invited_admin, None)?;
            t.put_membership("acme", "b@x", &admin, None)?;
            t.put_membership("beta", "c@x", &admin, None)
        });
        assert_eq!((admins("acme"), admins("beta")), (1, 1));
        write(&|t| t.put_membership("acme", "a@x", &admin, Some(&invited_admin)));
        assert_eq!(admins("acme"), 2);
        assert_eq!(store.read().unwrap().active_admins("acme", 1).unwrap(), 1);
        write(&|t| t.put_membership("acme", "b@x", &deployer, Some(&admin)));
        write(&|t| t.delete_membership("beta", "c@x", &admin));
        assert_eq!((admins("acme"), admins("beta")), (1, 0));
        assert!(check_indexes(&store.read().unwrap()).unwrap().is_empty());
        write(&|t| {
            t.admins_table()?.remove(("acme", "a@x"))?;
            Ok(())
        });
        assert_eq!(
            check_indexes(&store.read().unwrap()).unwrap(),
            ["org_admins holds 0 active admins of acme, memberships 1"]
        );
    }

    /// The feed's index by organization and the spent tokens' index are checked: an entry
    /// missing from the one, or naming a token still pending in the other, is reported.
    #[test]
    fn the_feed_and_spent_token_indexes_are_checked() {
        use compartmentctl::wire::{MemberStatus, Role};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let write = |change: &dyn Fn(&Tracked<'_, '_>) -> Result<()>| {
            let txn = store.begin_write().unwrap();
            let tables = Tables::new(&txn);
            change(&Tracked::new(&tables, 1)).unwrap();
            let announced = tables.last_event();
            drop(tables);
            txn.commit(&crate::writer::commit, announced).unwrap();
        };
        let member = MembershipRecord {
            role: Role::Viewer,
            uid: None,
            status: MemberStatus::Invited,
            invited_by: "uid 0".into(),
            invited_at: 1,
            expires_at: Some(10),
            token_hash: None,
        };
        let token = TokenRecord {
            org: "acme".into(),
            email: "a@x".into(),
            expires_at: 10,
            state: TokenState::Used,
            redeemer: None,
            issued_by_superuser: true,
        };
        write(&|t| {
            t.put_org(
                "acme",
                &OrgRecord {
                    created_at: 1,
                    created_by_uid: 0,
                },
            )?;
            t.put_membership("acme", "a@x", &member, None)?;
            t.put_token(&TokenHash([7; 32]), &token)
        });
        assert!(check_indexes(&store.read().unwrap()).unwrap().is_empty());
        write(&|t| {
            t.mark().org_events_table()?.remove(("acme", 1))?;
            t.mark().tokens_table()?.insert(
                &[7; 32],
                encode(
                    "tokens",
                    &TokenRecord {
                        state: TokenState::Pending,
                        ..token.clone()
                    },
                )?
                .as_slice(),
            )?;
            Ok(())
        });
        assert_eq!(
            check_indexes(&store.read().unwrap()).unwrap(),
            [
                "org_events lacks (acme, 1)",
                "spent_tokens names a token that is not spent (07070707…)"
            ]
        );
    }

    /// A membership schema 3 stored as JSON reads, through both the record and the list's
    /// row, and takes the binary form when it is next written.
    #[test]
    fn a_json_record_reads_and_is_rewritten_binary() {
        use compartmentctl::wire::{MemberStatus, Role};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let json = br#"{"role":"deployer","uid":7,"status":"active","invited_by":"uid 0","invited_at":1,"expires_at":null,"token_hash":null}"#;
        let txn = store.begin_write().unwrap();
        txn.open_table(MEMBERSHIPS)
            .unwrap()
            .insert(("acme", "a@x"), json.as_slice())
            .unwrap();
        txn.commit(&crate::writer::commit, Announcement::default())
            .unwrap();
        let raw = || {
            let txn = store.read().unwrap();
            let table = txn.memberships_table().unwrap();
            let value = table.get(("acme", "a@x")).unwrap().unwrap();
            value.value().to_vec()
        };
        let old = store
            .read()
            .unwrap()
            .membership("acme", "a@x")
            .unwrap()
            .unwrap();
        assert_eq!(
            (old.role, old.uid, old.status),
            (Role::Deployer, Some(7), MemberStatus::Active)
        );
        let rows = store
            .read()
            .unwrap()
            .members_after("acme", None, 10)
            .unwrap();
        assert_eq!(rows, [("a@x".to_owned(), MemberRow::from(&old))]);
        assert_eq!(raw()[0], b'{');
        let mut admin = old.clone();
        admin.role = Role::Admin;
        let txn = store.begin_write().unwrap();
        Tables::new(&txn)
            .put_membership("acme", "a@x", &admin, Some(&old))
            .unwrap();
        txn.commit(&crate::writer::commit, Announcement::default())
            .unwrap();
        assert_eq!(raw()[0], BINARY_RECORD);
        assert_eq!(
            store.read().unwrap().membership("acme", "a@x").unwrap(),
            Some(admin)
        );
    }

    fn add_org(store: &Store, name: &str) {
        crate::writer::apply(store, 1, |txn, _| {
            Ok::<_, crate::rules::RuleError>(txn.put_org(
                name,
                &OrgRecord {
                    created_at: 1,
                    created_by_uid: 0,
                },
            )?)
        })
        .unwrap();
    }

    /// Reads share one snapshot until a commit; the first read after it sees the commit
    /// in a snapshot of its own, while one taken before keeps its view.
    #[test]
    fn reads_share_a_snapshot_until_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let before = store.read().unwrap();
        assert!(store.read().unwrap().shares(&before));
        add_org(&store, "acme");
        let after = store.read().unwrap();
        assert!(!after.shares(&before));
        assert!(after.org("acme").unwrap().is_some());
        assert!(before.org("acme").unwrap().is_none());
        assert!(store.read().unwrap().shares(&after));
        // A write transaction begun, the store lets go of the snapshot it shared (so that it
        // holds back none of the pages the commit frees); while it is open, each read has a
        // snapshot of its own; once it ends, committed or not, reads share one again.
        assert_eq!(after.holders(), 2);
        let write = store.begin_write().unwrap();
        assert_eq!(after.holders(), 1);
        let during = store.read().unwrap();
        assert!(!during.shares(&after));
        assert!(!store.read().unwrap().shares(&during));
        write.abort().unwrap();
        let again = store.read().unwrap();
        assert!(store.read().unwrap().shares(&again));
        assert!(again.org("acme").unwrap().is_some());
    }

    /// Under concurrent reads, every read begun after a commit returned sees it: a read
    /// that began its transaction before the commit never has its snapshot shared after.
    #[test]
    fn a_read_begun_after_a_commit_sees_it() {
        use std::sync::atomic::AtomicUsize;
        const COMMITS: usize = 300;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let committed = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| loop {
                    let n = committed.load(Ordering::Acquire);
                    let snapshot = store.read().unwrap();
                    if n > 0 {
                        let name = format!("org-{n}");
                        assert!(
                            snapshot.org(&name).unwrap().is_some(),
                            "a read begun after {name} was committed does not see it"
                        );
                    }
                    if n == COMMITS {
                        break;
                    }
                });
            }
            for n in 1..=COMMITS {
                add_org(&store, &format!("org-{n}"));
                committed.store(n, Ordering::Release);
            }
        });
    }

    /// While the writer reopens a broken handle and waits for the old one's last reader,
    /// other readers are answered at once (`Reopening`), not held on the handle's lock.
    #[test]
    fn reopening_does_not_block_readers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        // A reader still holding the old handle keeps its file lock until it finishes; the
        // snapshot reads share is let go of by the reopening.
        let lingering = store.handle().unwrap();
        drop(store.read().unwrap());
        store.note_failure(&StoreError::Redb(redb::Error::PreviousIo));
        let writer_store = store.clone();
        let writer = std::thread::spawn(move || writer_store.begin_write().map(drop));
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let read = store.read();
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_millis(50),
            "a read waited {waited:?}"
        );
        assert!(
            matches!(read, Err(StoreError::Reopening)),
            "{:?}",
            read.err()
        );
        drop(lingering);
        writer.join().unwrap().unwrap();
        store.read().unwrap().org("acme").unwrap();
    }
}
