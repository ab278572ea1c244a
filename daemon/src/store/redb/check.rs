//! `compartmentd check`: every page's checksum, then that the indexes agree.

use std::panic::AssertUnwindSafe;
use std::path::Path;

use redb::{ReadOnlyDatabase, ReadableDatabase};

use super::schema::{
    builder, check_version, open_error, quietly_catch_unwind, stored_version, OpenError,
    CURRENT_SCHEMA_VERSION,
};
use super::{Snapshot, StoreOptions};
use crate::store::{check_indexes, Reader, Result, StoreError};

/// What `compartmentd check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// False when redb found damage and repaired it (the file was rewritten).
    pub pages_clean: bool,
    pub schema_version: Option<u64>,
    /// Disagreements between the tables and their indexes; empty when they agree.
    pub index_problems: Vec<String>,
    pub organizations: usize,
    pub memberships: u64,
    pub accounts: u64,
}

/// Verifies every page's checksum (redb repairs what it can, as after a crash), then that
/// the indexes agree with the tables. The database must exist and not be in use. A file from a newer
/// daemon is refused untouched; one from an older daemon is checked page by page only (its
/// tables are the old ones until the next start migrates them).
pub fn check(state_dir: &Path, options: &StoreOptions) -> Result<CheckReport, OpenError> {
    let path = state_dir.join(super::DATABASE_FILE);
    let store_err = |source: StoreError| OpenError::Store {
        path: path.clone(),
        source,
    };
    let probe =
        quietly_catch_unwind(|| ReadOnlyDatabase::open(&path).map(|db| stored_version(&db)));
    if let Ok(Ok(version)) = probe {
        check_version(&path, version.map_err(store_err)?)?;
    }
    let damaged = |err: OpenError| match err {
        OpenError::Damaged { path, detail } => OpenError::DamagedPages { path, detail },
        other => other,
    };
    let mut db = quietly_catch_unwind(|| builder(options).open(&path))
        .map_err(|_| OpenError::DamagedPages {
            path: path.clone(),
            detail: "reading it failed".into(),
        })?
        .map_err(|err| damaged(open_error(&path, err)))?;
    let pages_clean = match quietly_catch_unwind(AssertUnwindSafe(|| db.check_integrity())) {
        Ok(Ok(clean)) => clean,
        Ok(Err(err)) => return Err(damaged(open_error(&path, err))),
        Err(_) => {
            return Err(OpenError::DamagedPages {
                path: path.clone(),
                detail: "checking it failed".into(),
            })
        }
    };
    let schema_version = stored_version(&db).map_err(store_err)?;
    check_version(&path, schema_version)?;
    let mut report = CheckReport {
        pages_clean,
        schema_version,
        index_problems: Vec::new(),
        organizations: 0,
        memberships: 0,
        accounts: 0,
    };
    if schema_version == Some(CURRENT_SCHEMA_VERSION) {
        let snapshot = Snapshot::new(db.begin_read().map_err(|err| store_err(err.into()))?);
        report.index_problems = check_indexes(&snapshot).map_err(store_err)?;
        let counts = table_counts(&snapshot).map_err(store_err)?;
        (report.organizations, report.memberships, report.accounts) = counts;
    }
    Ok(report)
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
