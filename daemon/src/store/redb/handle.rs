//! The handle on the database file: snapshots shared between commits, the write
//! transaction, and reopening the file after a write failed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use redb::{Database, ReadableDatabase, WriteTransaction};

use super::schema::{self, OpenError};
use super::tables::{Snapshot, Tables};
use crate::store::heads::{Announcement, FeedHeads};
use crate::store::{Backend, Reader, Result, StoreError};

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
    /// What the feed's subscribers wait on.
    heads: FeedHeads,
    /// The snapshot reads share between writes.
    snapshots: Mutex<Snapshots>,
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
            heads: FeedHeads::new(last_event(&db, &path)?),
            db: RwLock::new(Some(Arc::new(db))),
            broken: AtomicBool::new(false),
            path,
            state_dir: state_dir.to_owned(),
            options: *options,
            reopens: true,
            snapshots: Mutex::default(),
        })
    }

    /// A store on `backend` instead of a file, opened as [`Store::open`] opens one (the
    /// version checked, the migrations run): for tests, on memory, or on a backend that
    /// loses unsynced writes at a simulated power cut. A write error leaves it broken: there
    /// is no file to reopen.
    pub fn open_backend(backend: impl redb::StorageBackend) -> Result<Store, OpenError> {
        let path = PathBuf::from("<storage backend>");
        let db = schema::open_with_backend(backend, &path)?;
        Ok(Store {
            heads: FeedHeads::new(last_event(&db, &path)?),
            db: RwLock::new(Some(Arc::new(db))),
            broken: AtomicBool::new(false),
            state_dir: path.clone(),
            path,
            options: StoreOptions::default(),
            reopens: false,
            snapshots: Mutex::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Called after every commit ([`Write::commit`]), before its changes are answered:
    /// reads from then on see them, and the feeds learn of the events `announced`.
    fn committed(&self, announced: Announcement) {
        drop(self.forget_snapshot());
        self.heads.announce(&announced);
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

    pub(super) fn handle(&self) -> Result<Arc<Database>> {
        let slot = self.db.read().unwrap_or_else(PoisonError::into_inner);
        slot.clone().ok_or(StoreError::Reopening)
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

impl Backend for Store {
    type Snapshot = Snapshot;
    type Write<'s> = Write<'s>;

    /// A consistent snapshot of the last commit to read from. Between writes, reads share
    /// one (until the next write transaction begins), which saves each of them beginning a
    /// read transaction and opening its tables: most of the cost of a small read.
    fn read(&self) -> Result<Snapshot> {
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
    fn begin_write(&self) -> Result<Write<'_>> {
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
    fn note_failure(&self, err: &StoreError) {
        if err.breaks_the_handle() {
            tracing::warn!(error = %err, "a database write failed; reopening before the next change");
            self.broken.store(true, Ordering::Release);
        }
    }

    fn event_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.heads.event_head()
    }

    fn org_event_head(&self, org: &str) -> tokio::sync::watch::Receiver<u64> {
        self.heads.org_event_head(org)
    }

    fn last_sealed(&self) -> Option<(u64, crate::store::ChainHash)> {
        self.heads.last_sealed()
    }
}

/// How a write transaction is committed: [`Committing::durably`] in the daemon; tests may
/// fail it, or commit without a sync.
pub type Commit<'a> = &'a dyn Fn(Committing) -> Result<()>;

/// A write transaction being committed, as a [`Commit`] receives it.
pub struct Committing(WriteTransaction);

impl Committing {
    /// redb's durable commit: it returns once what the transaction wrote is on the disk.
    pub fn durably(self) -> Result<()> {
        self.0.commit()?;
        Ok(())
    }

    /// A commit without a sync: visible at once, lost at a power cut. For tests whose
    /// databases need not survive one, and for the test that shows such a commit is lost.
    pub fn without_sync(mut self) -> Result<()> {
        self.0.set_durability(redb::Durability::None)?;
        self.0.commit()?;
        Ok(())
    }
}

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
    pub fn commit(self, commit: Commit<'_>, announced: Announcement) -> Result<()> {
        let Write { txn, open } = self;
        commit(Committing(txn))?;
        open.0.committed(announced);
        Ok(())
    }

    /// Rolls the transaction back.
    pub fn abort(self) -> Result<()> {
        self.txn.abort()?;
        Ok(())
    }

    /// The transaction's tables, each opened on first use and kept open until they are
    /// dropped, which must be before the commit: the writer applies a whole batch of
    /// changes through one.
    pub fn tables(&self) -> Tables<'_> {
        Tables::new(&self.txn)
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

/// The feed's last event as the file holds it when opened.
fn last_event(db: &Database, path: &Path) -> std::result::Result<u64, OpenError> {
    let head = db
        .begin_read()
        .map_err(StoreError::from)
        .and_then(|txn| Snapshot::new(txn).last_event_seq())
        .map_err(|err| OpenError::Store {
            path: path.to_owned(),
            source: err,
        })?;
    Ok(head)
}
