//! Opening the database file: a clear refusal when another daemon holds it, when it is
//! damaged or when a newer daemon wrote it; migrations when an older one did.

use std::fmt;
use std::path::{Path, PathBuf};

use redb::{
    Builder, Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableError,
    WriteTransaction,
};

use compartmentctl::wire::{AccountStatus, MemberStatus};

use super::tables::{create_tables, Tables, META};
use super::StoreOptions;
use crate::store::chain::seal;
use crate::store::{
    decode, encode, spent_key, AuditRecord, BindingRecord, Changes, LegacyAuditRecord,
    LegacyMembershipRecord, LegacyOrgRecord, MembershipRecord, OrgRecord, Provenance, Reader,
    StoreError, TokenRecord, GENESIS,
};

/// The schema this daemon writes. Bump it with a migration in [`MIGRATIONS`].
pub const CURRENT_SCHEMA_VERSION: u64 = 8;
const VERSION_KEY: &str = "schema_version";

/// A step from version `n` to `n + 1`, at index `n - 1`, with what it may need of the host.
type Migration = fn(&WriteTransaction, &StoreOptions) -> Result<(), StoreError>;

const MIGRATIONS: &[Migration] = &[
    bindings_with_names_and_provenance,
    token_keys_and_admins_index,
    binary_records,
    change_feed,
    feed_by_org_and_spent_tokens,
    audit_chain,
    membership_terms,
];

/// The audit log of schemas 1 to 6: sequence number → [`LegacyAuditRecord`].
const LEGACY_AUDIT: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit");

/// The records of [`LEGACY_AUDIT`] after `after`, at most `limit`; none when it is gone.
fn legacy_audit(
    txn: &WriteTransaction,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, LegacyAuditRecord)>, StoreError> {
    let table = match txn.open_table(LEGACY_AUDIT) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(err) => return Err(err.into()),
    };
    let mut page = Vec::new();
    for entry in table.range(after.saturating_add(1)..)?.take(limit) {
        let (seq, value) = entry?;
        page.push((seq.value(), decode("audit", value.value())?));
    }
    Ok(page)
}

/// Version 6 → 7: the audit log becomes a chain (`store::chain`): each record the JSON
/// text of its entry (actor, event key, target, before and after, outcome), sealed with
/// the hash of the one before. The old records are carried over in order under their own
/// numbers, in today's terms (`AuditRecord::from_legacy`), and sealed; the old table is
/// deleted. The version changes so that an older daemon, which would append unsealed
/// records to a table it no longer finds, refuses the file.
fn audit_chain(txn: &WriteTransaction, _: &StoreOptions) -> Result<(), StoreError> {
    create_tables(txn)?;
    let tables = Tables::new(txn);
    let mut head = (0, GENESIS);
    loop {
        let page = legacy_audit(txn, head.0, 4096)?;
        if page.is_empty() {
            break;
        }
        for (seq, old) in page {
            let record = AuditRecord::from_legacy(old);
            let sealed = seal(&head.1, seq, &record)?;
            tables.put_sealed(&sealed, record.org.as_deref())?;
            head = (seq, sealed.hash);
        }
    }
    drop(tables);
    match txn.delete_table(LEGACY_AUDIT) {
        Ok(_) => Ok(()),
        Err(TableError::TableDoesNotExist(_)) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Version 7 → 8: a membership gains its terms (a block, an end to access, a temporary
/// elevation) and an organization its Unix groups, each as a trailing field. Every binary
/// membership and organization of schemas 4 to 7 is rewritten with none, a chunk at a time,
/// so that no read need tell the layouts apart; JSON records (schema 3 and before) read with
/// none already and are left as they are. The indexes do not change: a membership with no
/// terms is due and an admin as before, and no group is mapped. The version changes so
/// that an older daemon, which would fail on every membership, refuses the file.
fn membership_terms(txn: &WriteTransaction, _: &StoreOptions) -> Result<(), StoreError> {
    org_groups(txn)?;
    const CHUNK: usize = 4096;
    let mut table = txn.open_table(super::tables::MEMBERSHIPS)?;
    let mut after: Option<(String, String)> = None;
    loop {
        let mut chunk = Vec::with_capacity(CHUNK);
        {
            let range = match &after {
                Some((org, email)) => table.range::<(&str, &str)>((
                    std::ops::Bound::Excluded((org.as_str(), email.as_str())),
                    std::ops::Bound::Unbounded,
                ))?,
                None => table.range::<(&str, &str)>(..)?,
            };
            for entry in range.take(CHUNK) {
                let (key, value) = entry?;
                let (org, email) = key.value();
                let bytes = value.value();
                // A membership an earlier step of this upgrade wrote is already whole.
                let whole = decode::<MembershipRecord>("memberships", bytes).is_ok();
                let rewritten = match bytes.first() {
                    Some(&crate::store::BINARY_RECORD) if !whole => {
                        let old: LegacyMembershipRecord = decode("memberships", bytes)?;
                        Some(encode("memberships", &MembershipRecord::from(old))?)
                    }
                    _ => None,
                };
                chunk.push((org.to_owned(), email.to_owned(), rewritten));
            }
        }
        let Some((org, email, _)) = chunk.last() else {
            break;
        };
        after = Some((org.clone(), email.clone()));
        for (org, email, rewritten) in &chunk {
            if let Some(bytes) = rewritten {
                table.insert((org.as_str(), email.as_str()), bytes.as_slice())?;
            }
        }
    }
    Ok(())
}

/// Organizations of schemas 4 to 7 rewritten with no groups (a few rows: at once).
fn org_groups(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut table = txn.open_table(super::tables::ORGS)?;
    let mut rewritten = Vec::new();
    for entry in table.iter()? {
        let (name, value) = entry?;
        let bytes = value.value();
        let whole = decode::<OrgRecord>("orgs", bytes).is_ok();
        if bytes.first() == Some(&crate::store::BINARY_RECORD) && !whole {
            let old: LegacyOrgRecord = decode("orgs", bytes)?;
            rewritten.push((
                name.value().to_owned(),
                encode("orgs", &OrgRecord::from(old))?,
            ));
        }
    }
    for (name, bytes) in &rewritten {
        table.insert(name.as_str(), bytes.as_slice())?;
    }
    Ok(())
}

/// Version 5 → 6: two indexes. `org_events` files each event under the organization whose
/// feed carries it, so that an organization's feed reads its own rows rather than the whole
/// host's history; `spent_tokens` orders spent tokens by when they may be forgotten, so
/// that the sweeper prunes them. Both are filled from what is stored, once (a binding's
/// events from before the upgrade stay in the feed of every organization only). The version
/// changes so that an older daemon, which would leave the indexes behind, refuses the file.
fn feed_by_org_and_spent_tokens(
    txn: &WriteTransaction,
    _: &StoreOptions,
) -> Result<(), StoreError> {
    create_tables(txn)?;
    let tables = Tables::new(txn);
    let mut after = 0;
    loop {
        let batch = tables.events_after(after, 4096)?;
        let Some(&(last, _)) = batch.last() else {
            break;
        };
        for (seq, event) in &batch {
            if event.org.is_some() {
                tables.index_event(*seq, event)?;
            }
        }
        after = last;
    }
    let mut spent = Vec::new();
    for entry in tables.tokens_table()?.iter()? {
        let (key, value) = entry?;
        let token: TokenRecord = decode("tokens", value.value())?;
        if let Some(at) = spent_key(&token) {
            spent.push((at, *key.value()));
        }
    }
    let mut index = tables.spent_tokens_table()?;
    for (at, hash) in &spent {
        index.insert((*at, hash), ())?;
    }
    Ok(())
}

/// Version 4 → 5: the change feed (`events`), which every change to a membership or a
/// binding appends to from now on; it starts empty. The version changes so that an older
/// daemon, which would change memberships without telling the feed, refuses the file.
fn change_feed(txn: &WriteTransaction, _: &StoreOptions) -> Result<(), StoreError> {
    create_tables(txn)
}

/// Version 3 → 4: records are written in a binary form (`records`), no longer as JSON. The
/// JSON records already stored are left as they are: every read tells the two forms apart
/// by their first byte, and a record takes the binary form when it is next written, so the
/// upgrade costs nothing at any size. The version changes so that an older daemon, which
/// reads only JSON, refuses the file instead of failing on each binary record.
fn binary_records(_: &WriteTransaction, _: &StoreOptions) -> Result<(), StoreError> {
    Ok(())
}

/// Version 2 → 3: new tokens are keyed by their issue time and a hash of their text
/// (`token::key_of`), no longer by the SHA-256 of the text alone, and the active admins of
/// each organization get an index (`org_admins`), so that the last-admin rule no longer
/// reads a whole organization. Stored tokens are not rekeyed (their text is not known, so
/// neither is their new key): activation looks a token up by both keys. The version changes
/// so that an older daemon, which knows only the old key and no admins' index, refuses the
/// file instead of missing new tokens and leaving the index behind.
fn token_keys_and_admins_index(txn: &WriteTransaction, _: &StoreOptions) -> Result<(), StoreError> {
    create_tables(txn)?;
    let tables = Tables::new(txn);
    for org in tables.org_names()? {
        for (email, membership) in tables.members(&org)? {
            if membership.is_active_admin() {
                tables
                    .admins_table()?
                    .insert((org.as_str(), email.as_str()), ())?;
            }
        }
    }
    Ok(())
}

/// Version 1 → 2: a binding was `uid → email`; it becomes a record with the uid's user
/// name and the binding's provenance, and each active membership is pinned to the uid that
/// held it.
///
/// The name is what the host says at the upgrade (`StoreOptions::user_name_of`, NSS in the
/// daemon): the best knowledge there is of who held the uid. A uid with no user then (deleted, `nobody`) keeps a binding without a name, which
/// holds for nobody until a superuser rebinds or unbinds it. The provenance is the
/// organization whose activation made the binding, read from the audit log; `Unknown` (only
/// a superuser may vouch for it) when the log does not say.
fn bindings_with_names_and_provenance(
    txn: &WriteTransaction,
    options: &StoreOptions,
) -> Result<(), StoreError> {
    const V1_BINDINGS: redb::TableDefinition<u32, &str> =
        redb::TableDefinition::new("uid_bindings");
    let old: Vec<(u32, String)> = {
        let table = match txn.open_table(V1_BINDINGS) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(err) => return Err(err.into()),
        };
        let mut old = Vec::new();
        for entry in redb::ReadableTable::iter(&table)? {
            let (uid, email) = entry?;
            old.push((uid.value(), email.value().to_owned()));
        }
        old
    };
    let activations = legacy_audit(txn, 0, usize::MAX)?;
    let tables = Tables::new(txn);
    for (uid, email) in old {
        let provenance = activations
            .iter()
            .find(|(_, r)| r.action == "account.activate" && r.target.as_deref() == Some(&email))
            .and_then(|(_, r)| r.org.clone())
            .map_or(Provenance::Unknown, Provenance::Org);
        let account = tables.account(&email)?;
        let bound_at = account
            .as_ref()
            .and_then(|a| a.activated_at.or(Some(a.created_at)))
            .unwrap_or(0);
        tables.put_binding(
            uid,
            &BindingRecord {
                email: email.clone(),
                user_name: (options.user_name_of)(uid),
                bound_at,
                provenance,
            },
        )?;
        if !matches!(&account, Some(a) if a.status == AccountStatus::Active) {
            continue;
        }
        for org in tables.orgs_of(&email)? {
            if let Some(old) = tables.membership(&org, &email)? {
                if old.status == MemberStatus::Active && old.uid.is_none() {
                    let mut pinned = old.clone();
                    pinned.uid = Some(uid);
                    tables.put_membership(&org, &email, &pinned, Some(&old))?;
                }
            }
        }
    }
    drop(tables);
    txn.delete_table(V1_BINDINGS)?;
    Ok(())
}

/// Why the daemon cannot use the database file. Each message says what is wrong and
/// what to do; none of these paths writes to the file.
#[derive(Debug)]
pub enum OpenError {
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    InUse {
        path: PathBuf,
    },
    Damaged {
        path: PathBuf,
        detail: String,
    },
    /// Damage `check` found in a page and could not repair; redb may have marked the file
    /// for repair while trying.
    DamagedPages {
        path: PathBuf,
        detail: String,
    },
    TooNew {
        path: PathBuf,
        found: u64,
    },
    Store {
        path: PathBuf,
        source: StoreError,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::StateDir { path, source } => write!(
                f,
                "cannot use state directory {}: {source}; create it or pass --state-dir",
                path.display()
            ),
            OpenError::InUse { path } => write!(
                f,
                "the database {} is in use by another compartmentd; only one daemon may use a state directory (stop the other one, or pass a different --state-dir)",
                path.display()
            ),
            OpenError::Damaged { path, detail } => write!(
                f,
                "the database {} is damaged or is not a compartmentd database ({detail}); it was left untouched: restore it from a backup, or move it aside to start empty",
                path.display()
            ),
            OpenError::DamagedPages { path, detail } => write!(
                f,
                "the database {} is damaged ({detail}) and cannot be repaired: restore it from a backup",
                path.display()
            ),
            OpenError::TooNew { path, found } => write!(
                f,
                "the database {} has schema version {found}, newer than the {CURRENT_SCHEMA_VERSION} this compartmentd understands; it was left untouched: run a newer compartmentd",
                path.display()
            ),
            OpenError::Store { path, source } => {
                write!(f, "cannot open the database {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for OpenError {}

pub(super) fn open(
    state_dir: &Path,
    path: &Path,
    options: &StoreOptions,
) -> Result<Database, OpenError> {
    std::fs::create_dir_all(state_dir).map_err(|source| OpenError::StateDir {
        path: state_dir.to_owned(),
        source,
    })?;
    let store_err = |source: StoreError| OpenError::Store {
        path: path.to_owned(),
        source,
    };
    // Look before writing: a database that is damaged or from a newer daemon is refused
    // through a read-only handle, so nothing is written to it, not even a header flag.
    let existing = std::fs::metadata(path)
        .map(|m| m.len() > 0)
        .unwrap_or(false);
    if existing {
        // redb trusts a cleanly closed file on a plain open and may panic on damage it then
        // meets; a panic here means the same as a damaged file.
        let probe =
            quietly_catch_unwind(|| ReadOnlyDatabase::open(path).map(|db| stored_version(&db)));
        match probe {
            Ok(Ok(version)) => check_version(path, version.map_err(store_err)?)?,
            // Left unclean by a crash: the read-write open below repairs it, as redb does
            // after every unclean stop; the version is checked after that.
            Ok(Err(redb::DatabaseError::RepairAborted)) => {}
            Ok(Err(err)) => return Err(open_error(path, err)),
            Err(_) => {
                return Err(OpenError::Damaged {
                    path: path.to_owned(),
                    detail: "reading it failed".into(),
                })
            }
        }
    }
    // A start reads what it needs, not the whole file: redb verifies the last commit's
    // checksums and, after an unclean stop, walks and repairs every tree. A full check of
    // every page of a cleanly closed file is `compartmentd check` (see [`check`]), so a
    // start on a million members stays well under a second.
    let db = builder(options)
        .create(path)
        .map_err(|err| open_error(path, err))?;
    upgrade(db, path, options)
}

/// The steps of every open after redb's own: the schema version checked (a newer one
/// refused) and an older one migrated.
fn upgrade(db: Database, path: &Path, options: &StoreOptions) -> Result<Database, OpenError> {
    let store_err = |source: StoreError| OpenError::Store {
        path: path.to_owned(),
        source,
    };
    let found = stored_version(&db).map_err(store_err)?;
    check_version(path, found)?;
    migrate(&db, found, MIGRATIONS, options).map_err(store_err)?;
    Ok(db)
}

/// redb's builder with the store's options.
pub(super) fn builder(options: &StoreOptions) -> Builder {
    let mut builder = Builder::new();
    builder.set_cache_size(options.cache_size);
    builder
}

/// Opens (or creates) a database on `backend` rather than a file, with the steps [`open`]
/// takes after its file checks: the version check and the migrations. For the power-loss
/// test, whose backend drops unsynced writes at a simulated power cut; `label` names the
/// database in errors. It uses the same builder as [`open`], so that the test opens the
/// database as the daemon does.
pub(super) fn open_with_backend(
    backend: impl redb::StorageBackend,
    label: &Path,
) -> Result<Database, OpenError> {
    let db = builder(&StoreOptions::default())
        .create_with_backend(backend)
        .map_err(|err| open_error(label, err))?;
    upgrade(db, label, &StoreOptions::default())
}

/// `catch_unwind` without the panic hook's message: the caller reports what went wrong
/// in its own words. (The hook is process-wide; this runs at start-up, before any request.)
pub(super) fn quietly_catch_unwind<T>(
    probe: impl FnOnce() -> T + std::panic::UnwindSafe,
) -> std::thread::Result<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(probe);
    std::panic::set_hook(hook);
    result
}

pub(super) fn check_version(path: &Path, found: Option<u64>) -> Result<(), OpenError> {
    match found {
        Some(found) if found > CURRENT_SCHEMA_VERSION => Err(OpenError::TooNew {
            path: path.to_owned(),
            found,
        }),
        _ => Ok(()),
    }
}

pub(super) fn open_error(path: &Path, err: redb::DatabaseError) -> OpenError {
    match err {
        redb::DatabaseError::DatabaseAlreadyOpen => OpenError::InUse {
            path: path.to_owned(),
        },
        // redb reports a file that is not a database as invalid data.
        redb::DatabaseError::Storage(redb::StorageError::Io(source))
            if source.kind() != std::io::ErrorKind::InvalidData =>
        {
            OpenError::Store {
                path: path.to_owned(),
                source: StoreError::Redb(redb::Error::Io(source)),
            }
        }
        other => OpenError::Damaged {
            path: path.to_owned(),
            detail: other.to_string(),
        },
    }
}

/// The schema version in the file, `None` for a new, empty database.
pub(super) fn stored_version(db: &impl ReadableDatabase) -> Result<Option<u64>, StoreError> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(META) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    let version = table.get(VERSION_KEY)?.map(|v| v.value());
    Ok(version)
}

/// Brings a database from `found` (`None`: brand new) to the current version, in one
/// transaction so that a crash mid-way leaves the old version intact.
fn migrate(
    db: &Database,
    found: Option<u64>,
    migrations: &[Migration],
    options: &StoreOptions,
) -> Result<(), StoreError> {
    let target = migrations.len() as u64 + 1;
    if found == Some(target) {
        return Ok(());
    }
    let txn = db.begin_write()?;
    if let Some(from) = found {
        for step in migrations.iter().skip(from.saturating_sub(1) as usize) {
            step(&txn, options)?;
        }
    }
    create_tables(&txn)?;
    txn.open_table(META)?.insert(VERSION_KEY, target)?;
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use redb::ReadableTable;

    fn set_version(path: &Path, version: u64) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(VERSION_KEY, version)
            .unwrap();
        txn.commit().unwrap();
    }

    #[test]
    fn a_new_database_gets_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let db = open(dir.path(), &path, &StoreOptions::default()).unwrap();
        assert_eq!(stored_version(&db).unwrap(), Some(CURRENT_SCHEMA_VERSION));
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        set_version(&path, CURRENT_SCHEMA_VERSION + 1);
        let before = std::fs::read(&path).unwrap();
        let err = open(dir.path(), &path, &StoreOptions::default()).unwrap_err();
        assert!(
            matches!(err, OpenError::TooNew { found, .. } if found == CURRENT_SCHEMA_VERSION + 1)
        );
        assert!(
            err.to_string().contains("run a newer compartmentd"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn migrations_run_in_order_from_the_stored_version() {
        const TRACE: redb::TableDefinition<u64, ()> = redb::TableDefinition::new("trace");
        fn step2(txn: &WriteTransaction, _: &StoreOptions) -> Result<(), StoreError> {
            txn.open_table(TRACE)?.insert(2, ())?;
            Ok(())
        }
        fn step3(txn: &WriteTransaction, _: &StoreOptions) -> Result<(), StoreError> {
            txn.open_table(TRACE)?.insert(3, ())?;
            Ok(())
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        set_version(&path, 2);
        let db = Database::create(&path).unwrap();
        // From version 2 only the step 2 → 3 runs (index 1); step 1 → 2 is skipped.
        migrate(&db, Some(2), &[step2, step3], &StoreOptions::default()).unwrap();
        assert_eq!(stored_version(&db).unwrap(), Some(3));
        let txn = db.begin_read().unwrap();
        let steps: Vec<u64> = txn
            .open_table(TRACE)
            .unwrap()
            .iter()
            .unwrap()
            .map(|e| e.unwrap().0.value())
            .collect();
        assert_eq!(steps, vec![3]);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        std::fs::write(
            &path,
            b"this is not a redb file, it is a note to self".repeat(200),
        )
        .unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = open(dir.path(), &path, &StoreOptions::default()).unwrap_err();
        assert!(matches!(err, OpenError::Damaged { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_damaged_database_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        {
            let db = open(dir.path(), &path, &StoreOptions::default()).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(META).unwrap();
                for i in 0..2000u64 {
                    meta.insert(format!("filler-{i}").as_str(), i).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        // A stripe of garbage in every 4 KiB page after the header hits pages in use.
        for page in (4096..bytes.len()).step_by(4096) {
            bytes[page + 100..page + 164].copy_from_slice(&[0xA5; 64]);
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = open(dir.path(), &path, &StoreOptions::default()).unwrap_err();
        assert!(matches!(err, OpenError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("it was left untouched"), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "the damaged file was modified"
        );
    }

    #[test]
    fn a_truncated_database_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        drop(open(dir.path(), &path, &StoreOptions::default()).unwrap());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = open(dir.path(), &path, &StoreOptions::default()).unwrap_err();
        assert!(matches!(err, OpenError::Damaged { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), &bytes[..bytes.len() / 2]);
    }

    #[test]
    fn a_second_open_is_refused_as_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let _first = open(dir.path(), &path, &StoreOptions::default()).unwrap();
        let err = open(dir.path(), &path, &StoreOptions::default()).unwrap_err();
        assert!(matches!(err, OpenError::InUse { .. }), "{err}");
    }
}
