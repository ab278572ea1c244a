//! `compartmentd restore FILE [--replace]`: a backup read back into the store `--state-dir`
//! or `--store` names, in one write transaction, so that a store is either left as it was
//! or holds the whole backup.
//!
//! Everything is checked before the commit: the header (the format, its version, a schema
//! no newer than this daemon's), each line (a line that does not read is refused with its
//! number), and the last line's counts against the lines read and the header's (a file
//! cut short has no last line). A store that holds anything is refused unless `--replace`,
//! which empties it in the same transaction. The embedded database is opened as the daemon
//! opens it, so a daemon still using it is refused by its lock; PostgreSQL is restored
//! while daemons run only into an empty database (see docs/operations.md).

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;
use std::time::Duration;

use compartmentctl::wire::{BackupCounts, BackupHeader, BACKUP_FORMAT, BACKUP_VERSION};
use indicatif::{ProgressBar, ProgressStyle};

use super::error::RestoreError;
use super::lines::{AuditLine, Line};
use crate::rules::valid_org_name;
use crate::store::{
    chain::seal, Announcement, AuditRecord, Backend, Batch, ChainHash, Import, Sealed, Store,
    StoreError, CURRENT_SCHEMA_VERSION, GENESIS,
};

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub counts: BackupCounts,
    /// The store, as the daemon names it in its log.
    pub store: String,
}

impl Restored {
    /// The one line `compartmentd restore` prints.
    pub fn summary(&self, file: &Path) -> String {
        format!(
            "restored {} from {} into {}",
            self.counts,
            file.display(),
            self.store
        )
    }
}

/// Reads and checks the header, the first line of `reader`.
pub fn read_header(reader: &mut impl BufRead, file: &Path) -> Result<BackupHeader, RestoreError> {
    let mut first = String::new();
    reader
        .read_line(&mut first)
        .map_err(|source| RestoreError::Read {
            file: file.to_owned(),
            after_line: None,
            source,
        })?;
    let not_a_backup = |why: String| RestoreError::NotABackup {
        file: file.to_owned(),
        why,
    };
    let value: serde_json::Value =
        serde_json::from_str(&first).map_err(|err| not_a_backup(err.to_string()))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(BACKUP_FORMAT) {
        return Err(not_a_backup(format!(
            "its header does not name the format {BACKUP_FORMAT:?}"
        )));
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(version) if version > u64::from(BACKUP_VERSION) => {
            return Err(RestoreError::NewerFormat {
                file: file.to_owned(),
                version,
            })
        }
        Some(_) => {}
        None => return Err(not_a_backup("its header has no version".to_owned())),
    }
    let header: BackupHeader =
        serde_json::from_value(value).map_err(|err| not_a_backup(err.to_string()))?;
    if header.schema > CURRENT_SCHEMA_VERSION {
        return Err(RestoreError::NewerSchema {
            file: file.to_owned(),
            schema: header.schema,
        });
    }
    Ok(header)
}

/// Restores `file` into `store`, emptied first when `replace`; shows progress on stderr
/// when it is a terminal. Nothing is written unless the whole file is good.
pub fn restore(store: &Store, file: &Path, replace: bool) -> Result<Restored, RestoreError> {
    let opened = File::open(file).map_err(|source| RestoreError::Read {
        file: file.to_owned(),
        after_line: None,
        source,
    })?;
    let mut reader = BufReader::with_capacity(1 << 20, opened);
    let header = read_header(&mut reader, file)?;
    let failed = |source: StoreError| RestoreError::Store {
        store: store.to_string(),
        source: Box::new(source),
    };
    let write = store.begin_write().map_err(failed)?;
    let tables = write.tables();
    let held = tables.counts().map_err(failed)?;
    if held.total() > 0 {
        if !replace {
            return Err(RestoreError::NotEmpty {
                store: store.to_string(),
                held: Box::new(held),
            });
        }
        tables.clear().map_err(failed)?;
    }
    let progress = progress(header.counts.total());
    let counts = import_lines(&tables, &mut reader, file, &progress)?;
    progress.finish_and_clear();
    if counts != header.counts {
        return Err(RestoreError::Counts {
            file: file.to_owned(),
            read: Box::new(counts),
            header: Box::new(header.counts),
        });
    }
    tables.finish_import(header.last_event).map_err(failed)?;
    drop(tables);
    write
        .commit(&|commit| commit.durably(), Announcement::default())
        .map_err(failed)?;
    Ok(Restored {
        counts,
        store: store.to_string(),
    })
}

/// A bar on stderr when it is a terminal, of `total` records: done, rate, time left.
fn progress(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "restoring [{bar:30}] {human_pos}/{human_len} records, {per_sec}, {eta} left",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Rows written at once: a PostgreSQL statement per table per batch.
const RESTORE_BATCH: usize = 5000;

/// Writes each record line of `reader` (the header read) through `tables`, a batch at a
/// time, up to and including the end line, which must be the last; the counts read.
fn import_lines(
    tables: &impl Import,
    reader: &mut impl BufRead,
    file: &Path,
    progress: &ProgressBar,
) -> Result<BackupCounts, RestoreError> {
    let mut counts = BackupCounts::default();
    let mut batch = Batch::default();
    let mut text = String::new();
    let mut number = 1u64;
    let mut ended = false;
    let mut chain = (0, GENESIS);
    let flush = |batch: &mut Batch, last: u64| -> Result<(), RestoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let first = last + 1 - batch.len() as u64;
        tables
            .import(batch)
            .map_err(|source| RestoreError::Refused {
                file: file.to_owned(),
                first,
                last,
                source: Box::new(source),
            })?;
        progress.inc(batch.len() as u64);
        batch.clear();
        Ok(())
    };
    loop {
        text.clear();
        let read = reader
            .read_line(&mut text)
            .map_err(|source| RestoreError::Read {
                file: file.to_owned(),
                after_line: Some(number),
                source,
            })?;
        if read == 0 {
            break;
        }
        number += 1;
        let bad = |why: String| RestoreError::BadLine {
            file: file.to_owned(),
            line: number,
            why,
        };
        if ended {
            return Err(bad("a line after the end line".to_owned()));
        }
        let line: Line = serde_json::from_str(&text).map_err(|err| bad(err.to_string()))?;
        if let Line::End { counts: declared } = &line {
            if *declared != counts {
                return Err(bad(format!(
                    "the end line counts {}, but the lines before it hold {}",
                    declared, counts
                )));
            }
            ended = true;
            flush(&mut batch, number - 1)?;
            continue;
        }
        line.count(&mut counts);
        add(&mut batch, line, &mut chain).map_err(bad)?;
        if batch.len() >= RESTORE_BATCH {
            flush(&mut batch, number)?;
        }
    }
    if !ended {
        return Err(RestoreError::CutShort {
            file: file.to_owned(),
            after_line: number,
        });
    }
    Ok(counts)
}

/// Adds one record to `batch`, or says why it cannot be one. `chain` is the last audit
/// record's number and hash: an audit record of before the chain is sealed after it.
fn add(batch: &mut Batch, line: Line, chain: &mut (u64, ChainHash)) -> Result<(), String> {
    let org_name = |org: &str| {
        if valid_org_name(org) {
            Ok(())
        } else {
            Err(format!("{org:?} is not an organization name"))
        }
    };
    match line {
        Line::Org { name, record } => {
            org_name(&name)?;
            batch.orgs.push((name, record));
        }
        Line::Account { email, record } => batch.accounts.push((email, record)),
        Line::Binding { uid, record } => batch.bindings.push((uid, record)),
        Line::Membership { org, email, record } => {
            org_name(&org)?;
            batch.memberships.push((org, email, record));
        }
        Line::Token { key, record } => batch.tokens.push((key, record)),
        Line::CurrentOrg { uid, org } => batch.current_orgs.push((uid, org)),
        Line::Audit { seq, body } => {
            if seq <= chain.0 {
                return Err(format!("audit record {seq} after record {}", chain.0));
            }
            let sealed = match body {
                AuditLine::Sealed { record, hash } => Sealed {
                    seq,
                    text: record,
                    hash: crate::store::chain::unhex(&hash)
                        .ok_or_else(|| format!("{hash:?} is not a hash in hex (64 digits)"))?,
                },
                AuditLine::Legacy(old) => seal(&chain.1, seq, &AuditRecord::from_legacy(old))
                    .map_err(|e| e.to_string())?,
            };
            *chain = (seq, sealed.hash);
            batch.audit.push(sealed);
        }
        Line::Event { seq, record } => batch.events.push((seq, record.into())),
        Line::FeedEntry { org, seq } => batch.feed_entries.push((org, seq)),
        Line::End { .. } => {}
    }
    Ok(())
}
