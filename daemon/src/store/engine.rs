//! The store the daemon runs on, on either engine: each type an enum over the two backends
//! and each call one match, so that nothing above the store names an engine or takes a type
//! parameter.

use std::path::Path;

use compartmentctl::wire::StoreInfo;
use tokio::runtime::Handle;

use compartmentctl::wire::BackupCounts;

use super::{
    postgres, redb, AccountRecord, Announcement, AuditRecord, Backend, Batch, BindingRecord,
    ChainHash, Changes, EventRecord, Export, Import, MemberRow, MembershipRecord, Millis,
    OrgRecord, Reader, Result, Rows, Sealed, StoreError, TokenHash, TokenRecord,
};

/// The store: a redb file in the state directory, or a PostgreSQL database several daemons
/// share.
pub enum Store {
    Redb(redb::Store),
    Postgres(postgres::Store),
}

impl Store {
    /// Opens (or creates) `<state_dir>/compartment.redb`, migrating an older schema and
    /// refusing a newer one or a database another daemon holds.
    pub fn open(state_dir: &Path) -> Result<Store, redb::OpenError> {
        redb::Store::open(state_dir).map(Store::Redb)
    }

    /// [`Store::open`] with `options`.
    pub fn open_with(
        state_dir: &Path,
        options: &redb::StoreOptions,
    ) -> Result<Store, redb::OpenError> {
        redb::Store::open_with(state_dir, options).map(Store::Redb)
    }

    /// An embedded store on a storage backend rather than a file (tests: memory, or a disk
    /// that loses unsynced writes at a simulated power cut).
    pub fn open_backend(backend: impl ::redb::StorageBackend) -> Result<Store, redb::OpenError> {
        redb::Store::open_backend(backend).map(Store::Redb)
    }

    /// The PostgreSQL database `target` names, its schema brought to this daemon's version
    /// once it can be reached (see [`postgres::Store::open`]); its connections run on
    /// `runtime`.
    pub async fn open_postgres(
        target: &postgres::Target,
        runtime: Handle,
    ) -> Result<Store, postgres::schema::SchemaError> {
        postgres::Store::open(target, runtime)
            .await
            .map(Store::Postgres)
    }

    /// Whether other daemons may write to this store too.
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// The database file of an embedded store.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Store::Redb(store) => Some(store.path()),
            Store::Postgres(_) => None,
        }
    }
}

/// What `admin.status` says of the store, all of it known without asking the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    pub info: StoreInfo,
    /// The schema version this daemon runs the store at.
    pub schema_version: u64,
    /// redb: always; PostgreSQL: its follower's connection is up and the schema is ours.
    pub reachable: bool,
    /// PostgreSQL: write transactions refused as conflicting, run again.
    pub conflicts: Option<u64>,
}

impl Store {
    /// Which store, and how it was last seen: from what the handle keeps, never a query,
    /// so that the answer does not wait for a store out of reach.
    pub fn health(&self) -> StoreHealth {
        match self {
            Store::Redb(store) => StoreHealth {
                info: StoreInfo::Redb {
                    path: store.path().display().to_string(),
                },
                schema_version: redb::CURRENT_SCHEMA_VERSION,
                reachable: true,
                conflicts: None,
            },
            Store::Postgres(store) => {
                let target = store.target();
                StoreHealth {
                    info: StoreInfo::Postgresql {
                        hosts: target.hosts(),
                        ports: target.ports().to_vec(),
                        database: target.dbname().map(str::to_owned),
                        user: target.user().map(str::to_owned),
                    },
                    schema_version: u64::try_from(postgres::schema::CURRENT_SCHEMA_VERSION)
                        .unwrap_or_default(),
                    reachable: store.is_reachable(),
                    conflicts: Some(store.conflicts()),
                }
            }
        }
    }
}

impl std::fmt::Display for Store {
    /// Which store, and where: the database file, or PostgreSQL's hosts and database
    /// (never a password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Redb(store) => write!(f, "redb {}", store.path().display()),
            Store::Postgres(store) => write!(f, "postgresql {}", store.target()),
        }
    }
}

impl Backend for Store {
    type Snapshot = Snapshot;
    type Write<'s> = Write<'s>;

    fn read(&self) -> Result<Snapshot> {
        match self {
            Store::Redb(store) => store.read().map(Snapshot::Redb),
            Store::Postgres(store) => store.read().map(Snapshot::Postgres),
        }
    }

    fn begin_write(&self) -> Result<Write<'_>> {
        match self {
            Store::Redb(store) => store.begin_write().map(Write::Redb),
            Store::Postgres(store) => Ok(Write::Postgres {
                session: store.begin_write()?,
                store,
            }),
        }
    }

    fn note_failure(&self, err: &StoreError) {
        match self {
            Store::Redb(store) => store.note_failure(err),
            Store::Postgres(store) => store.note_failure(err),
        }
    }

    fn event_head(&self) -> tokio::sync::watch::Receiver<u64> {
        match self {
            Store::Redb(store) => store.event_head(),
            Store::Postgres(store) => store.event_head(),
        }
    }

    fn org_event_head(&self, org: &str) -> tokio::sync::watch::Receiver<u64> {
        match self {
            Store::Redb(store) => store.org_event_head(org),
            Store::Postgres(store) => store.org_event_head(org),
        }
    }

    fn last_sealed(&self) -> Option<(u64, ChainHash)> {
        match self {
            Store::Redb(store) => store.last_sealed(),
            Store::Postgres(store) => store.last_sealed(),
        }
    }
}

/// A consistent view of one commit, which any number of reads share.
#[derive(Clone)]
pub enum Snapshot {
    Redb(redb::Snapshot),
    Postgres(postgres::Snapshot),
}

impl Snapshot {
    /// Which engine holds the store: `redb` or `postgresql`.
    pub fn engine(&self) -> &'static str {
        match self {
            Snapshot::Redb(_) => "redb",
            Snapshot::Postgres(_) => "postgresql",
        }
    }
}

/// What one decision about a uid in an organization reads. On redb, a snapshot: a read
/// costs no more there. On PostgreSQL, only those rows (the uid's binding and current
/// organization, the organization and the bound account's membership there), read in one
/// statement that the decisions asked meanwhile share: a read beyond them is answered
/// [`StoreError::BeyondGlance`], and the decision is then made on a [`Snapshot`].
// One per request, moved once: boxing the larger variant would allocate for each.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Glance {
    Redb(redb::Snapshot),
    Postgres(postgres::Glance),
}

impl Store {
    /// A snapshot of the last commit, like [`Backend::read`], in which the rows a decision
    /// about `uid` in `org` (else its current organization) reads cost no more round trips:
    /// on PostgreSQL they come with its `BEGIN`.
    pub fn read_about(&self, uid: u32, org: Option<&str>) -> Result<Snapshot> {
        match self {
            Store::Redb(store) => store.read().map(Snapshot::Redb),
            Store::Postgres(store) => store.read_about(uid, org).map(Snapshot::Postgres),
        }
    }

    /// A glance at what a decision about `uid` in `org` (else its current organization)
    /// reads: every change answered before this call is in it.
    pub async fn glance(&self, uid: u32, org: Option<&str>) -> Result<Glance> {
        match self {
            Store::Redb(store) => store.read().map(Glance::Redb),
            Store::Postgres(store) => store.glance(uid, org).await.map(Glance::Postgres),
        }
    }
}

/// The writer's transaction: rolled back unless committed.
// One at a time, on the writer's stack: boxing the larger variant would allocate for each
// batch.
#[allow(clippy::large_enum_variant)]
pub enum Write<'s> {
    Redb(redb::Write<'s>),
    Postgres {
        session: postgres::Session,
        store: &'s postgres::Store,
    },
}

impl Write<'_> {
    /// The transaction's tables, through which a batch of changes writes; dropped before
    /// the commit.
    pub fn tables(&self) -> Tables<'_> {
        match self {
            Write::Redb(txn) => Tables::Redb(txn.tables()),
            Write::Postgres { session, .. } => Tables::Postgres(session),
        }
    }

    /// Commits with `commit`, then tells the feeds what the transaction `announced`: reads
    /// begun from then on see the change.
    pub fn commit(self, commit: Commit<'_>, announced: Announcement) -> Result<()> {
        match self {
            Write::Redb(txn) => txn.commit(&|txn| commit(Committing::Redb(txn)), announced),
            Write::Postgres { session, store } => {
                commit(Committing::Postgres(session))?;
                store.committed(&announced);
                Ok(())
            }
        }
    }

    /// Reads ahead what the transaction will read of the uids `callers` (their bindings,
    /// current organizations and memberships), the accounts `emails` (each account and its
    /// memberships) and the organizations `orgs`, where that saves round trips: a batch of
    /// changes then reads their rows in one go rather than one by one.
    pub fn read_ahead(&self, callers: &[u32], emails: &[&str], orgs: &[&str]) -> Result<()> {
        match self {
            // Reads from a file in memory cost no more one by one.
            Write::Redb(_) => Ok(()),
            Write::Postgres { session, .. } => session.read_ahead(callers, emails, orgs),
        }
    }

    /// Rolls the transaction back.
    pub fn abort(self) -> Result<()> {
        match self {
            Write::Redb(txn) => txn.abort(),
            // Dropped, the session rolls back.
            Write::Postgres { .. } => Ok(()),
        }
    }
}

/// How a write transaction is committed: [`Committing::durably`] in the daemon; tests may
/// fail it, or commit without a sync.
pub type Commit<'a> = &'a dyn Fn(Committing) -> Result<()>;

/// A write transaction being committed, as a [`Commit`] receives it.
// One at a time, on the writer's stack: boxing the larger variant would allocate for each
// batch.
#[allow(clippy::large_enum_variant)]
pub enum Committing {
    Redb(redb::Committing),
    Postgres(postgres::Session),
}

impl Committing {
    /// Returns once what the transaction wrote is durable.
    pub fn durably(self) -> Result<()> {
        match self {
            Committing::Redb(txn) => txn.durably(),
            Committing::Postgres(session) => session.commit(),
        }
    }

    /// A commit that does not wait for the disk: visible at once, lost at a power cut.
    pub fn without_sync(self) -> Result<()> {
        match self {
            Committing::Redb(txn) => txn.without_sync(),
            Committing::Postgres(session) => session.commit_without_sync(),
        }
    }
}

/// The tables of a write transaction, as a batch of changes writes them.
// One at a time, on the writer's stack: boxing the larger variant would allocate for each
// batch.
#[allow(clippy::large_enum_variant)]
pub enum Tables<'t> {
    Redb(redb::Tables<'t>),
    Postgres(&'t postgres::Session),
}

impl Tables<'_> {
    /// What the writer announces once the transaction is committed: the last event it
    /// appended, if any, and the organizations whose feeds it appended to.
    pub fn last_event(&self) -> Announcement {
        match self {
            Tables::Redb(tables) => tables.last_event(),
            Tables::Postgres(session) => session.announcement(),
        }
    }
}

/// `$call` on whichever backend `$this` holds.
macro_rules! either {
    ($this:expr, $view:ident => $call:expr) => {
        match $this {
            Self::Redb($view) => $call,
            Self::Postgres($view) => $call,
        }
    };
}

/// Each of [`Reader`]'s reads, answered by whichever backend `$view` holds.
macro_rules! reads_of_either {
    ($view:ty) => {
        impl Reader for $view {
            fn org(&self, name: &str) -> Result<Option<OrgRecord>> {
                either!(self, view => view.org(name))
            }

            fn org_names(&self) -> Result<Vec<String>> {
                either!(self, view => view.org_names())
            }

            fn account(&self, email: &str) -> Result<Option<AccountRecord>> {
                either!(self, view => view.account(email))
            }

            fn binding(&self, uid: u32) -> Result<Option<BindingRecord>> {
                either!(self, view => view.binding(uid))
            }

            fn accounts(&self) -> Result<Vec<(String, AccountRecord)>> {
                either!(self, view => view.accounts())
            }

            fn membership(&self, org: &str, email: &str) -> Result<Option<MembershipRecord>> {
                either!(self, view => view.membership(org, email))
            }

            fn members(&self, org: &str) -> Result<Vec<(String, MembershipRecord)>> {
                either!(self, view => view.members(org))
            }

            fn members_after(
                &self,
                org: &str,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<(String, MemberRow)>> {
                either!(self, view => view.members_after(org, after, limit))
            }

            fn active_admins(&self, org: &str, at_most: usize) -> Result<usize> {
                either!(self, view => view.active_admins(org, at_most))
            }

            fn orgs_of(&self, email: &str) -> Result<Vec<String>> {
                either!(self, view => view.orgs_of(email))
            }

            fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>> {
                either!(self, view => view.token(hash))
            }

            fn current_org(&self, uid: u32) -> Result<Option<String>> {
                either!(self, view => view.current_org(uid))
            }

            fn orgs_of_groups(&self, gids: &[u32]) -> Result<Vec<String>> {
                either!(self, view => view.orgs_of_groups(gids))
            }

            fn next_due(&self) -> Result<Option<Millis>> {
                either!(self, view => view.next_due())
            }

            fn due_memberships_up_to(
                &self,
                now: Millis,
                limit: usize,
            ) -> Result<Vec<(String, String)>> {
                either!(self, view => view.due_memberships_up_to(now, limit))
            }

            fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<Sealed>> {
                either!(self, view => view.audit_after(after, limit))
            }

            fn org_audit_after(
                &self,
                org: &str,
                after: u64,
                limit: usize,
            ) -> Result<Vec<Sealed>> {
                either!(self, view => view.org_audit_after(org, after, limit))
            }

            fn audit_head(&self) -> Result<Option<(u64, ChainHash)>> {
                either!(self, view => view.audit_head())
            }

            fn latest_checkpoint(&self) -> Result<Option<(u64, String)>> {
                either!(self, view => view.latest_checkpoint())
            }

            fn checkpoint_at(&self, seq: u64) -> Result<Option<String>> {
                either!(self, view => view.checkpoint_at(seq))
            }

            fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, EventRecord)>> {
                either!(self, view => view.events_after(after, limit))
            }

            fn org_events_after(
                &self,
                org: &str,
                after: u64,
                limit: usize,
            ) -> Result<Vec<(u64, EventRecord)>> {
                either!(self, view => view.org_events_after(org, after, limit))
            }

            fn spent_tokens_due(&self, now: Millis, limit: usize) -> Result<Vec<TokenHash>> {
                either!(self, view => view.spent_tokens_due(now, limit))
            }

            fn next_spent_token_due(&self) -> Result<Option<Millis>> {
                either!(self, view => view.next_spent_token_due())
            }

            fn last_event_seq(&self) -> Result<u64> {
                either!(self, view => view.last_event_seq())
            }
        }
    };
}

reads_of_either!(Snapshot);
reads_of_either!(Glance);
reads_of_either!(Tables<'_>);

impl Changes for Tables<'_> {
    fn put_org(&self, name: &str, org: &OrgRecord) -> Result<()> {
        either!(self, rows => rows.put_org(name, org))
    }

    fn delete_org(&self, name: &str) -> Result<()> {
        either!(self, rows => rows.delete_org(name))
    }

    fn rename_org(&self, old: &str, new: &str) -> Result<()> {
        either!(self, rows => rows.rename_org(old, new))
    }

    fn put_account(&self, email: &str, account: &AccountRecord) -> Result<()> {
        either!(self, rows => rows.put_account(email, account))
    }

    fn rename_account(&self, old: &str, new: &str) -> Result<()> {
        either!(self, rows => rows.rename_account(old, new))
    }

    fn delete_account(&self, email: &str) -> Result<()> {
        either!(self, rows => rows.delete_account(email))
    }

    fn put_binding(&self, uid: u32, binding: &BindingRecord) -> Result<()> {
        either!(self, rows => rows.put_binding(uid, binding))
    }

    fn delete_binding(&self, uid: u32) -> Result<()> {
        either!(self, rows => rows.delete_binding(uid))
    }

    fn put_membership(
        &self,
        org: &str,
        email: &str,
        new: &MembershipRecord,
        old: Option<&MembershipRecord>,
    ) -> Result<()> {
        either!(self, rows => rows.put_membership(org, email, new, old))
    }

    fn delete_membership(&self, org: &str, email: &str, old: &MembershipRecord) -> Result<()> {
        either!(self, rows => rows.delete_membership(org, email, old))
    }

    fn put_token(&self, hash: &TokenHash, token: &TokenRecord) -> Result<()> {
        either!(self, rows => rows.put_token(hash, token))
    }

    fn delete_token(&self, hash: &TokenHash) -> Result<()> {
        either!(self, rows => rows.delete_token(hash))
    }

    fn set_current_org(&self, uid: u32, org: &str) -> Result<()> {
        either!(self, rows => rows.set_current_org(uid, org))
    }

    fn clear_current_org(&self, uid: u32) -> Result<()> {
        either!(self, rows => rows.clear_current_org(uid))
    }

    fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        either!(self, rows => rows.append_audit(record))
    }

    fn claim_sweep(&self) -> Result<bool> {
        either!(self, rows => rows.claim_sweep())
    }

    fn put_checkpoint(&self, seq: u64, note: &str) -> Result<()> {
        either!(self, rows => rows.put_checkpoint(seq, note))
    }

    fn prune_audit(&self, through: u64) -> Result<()> {
        either!(self, rows => rows.prune_audit(through))
    }

    fn prune_events(&self, through: u64) -> Result<()> {
        either!(self, rows => rows.prune_events(through))
    }
}

impl Rows for Tables<'_> {
    fn append_event(&self, event: &EventRecord) -> Result<u64> {
        either!(self, rows => rows.append_event(event))
    }
}

impl Export for Snapshot {
    fn counts(&self) -> Result<BackupCounts> {
        match self {
            Snapshot::Redb(view) => Export::counts(view),
            Snapshot::Postgres(view) => Export::counts(view.as_ref()),
        }
    }

    fn orgs_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, OrgRecord)>> {
        either!(self, view => view.orgs_after(after, limit))
    }

    fn accounts_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, AccountRecord)>> {
        either!(self, view => view.accounts_after(after, limit))
    }

    fn bindings_after(
        &self,
        after: Option<u32>,
        limit: usize,
    ) -> Result<Vec<(u32, BindingRecord)>> {
        either!(self, view => view.bindings_after(after, limit))
    }

    fn memberships_after(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<(String, String, MembershipRecord)>> {
        either!(self, view => view.memberships_after(after, limit))
    }

    fn tokens_after(
        &self,
        after: Option<&TokenHash>,
        limit: usize,
    ) -> Result<Vec<(TokenHash, TokenRecord)>> {
        either!(self, view => view.tokens_after(after, limit))
    }

    fn current_orgs_after(&self, after: Option<u32>, limit: usize) -> Result<Vec<(u32, String)>> {
        either!(self, view => view.current_orgs_after(after, limit))
    }

    fn feed_entries_after(
        &self,
        after: Option<(&str, u64)>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>> {
        either!(self, view => view.feed_entries_after(after, limit))
    }
}

impl Import for Tables<'_> {
    fn counts(&self) -> Result<BackupCounts> {
        match self {
            Tables::Redb(rows) => Import::counts(rows),
            Tables::Postgres(rows) => Import::counts(*rows),
        }
    }

    fn clear(&self) -> Result<()> {
        either!(self, rows => rows.clear())
    }

    fn import(&self, batch: &Batch) -> Result<()> {
        either!(self, rows => rows.import(batch))
    }

    fn finish_import(&self, last_event: u64) -> Result<()> {
        either!(self, rows => rows.finish_import(last_event))
    }
}
