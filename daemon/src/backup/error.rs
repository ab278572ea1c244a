//! Why a restore wrote nothing, in the words `compartmentd restore` prints.

use std::fmt;
use std::path::PathBuf;

use compartmentctl::wire::{BackupCounts, BACKUP_VERSION};

use crate::store::{StoreError, CURRENT_SCHEMA_VERSION};

/// Why a restore wrote nothing: the store was left as it was.
#[derive(Debug)]
pub enum RestoreError {
    /// The file could not be read (after `line`, when any was).
    Read {
        file: PathBuf,
        after_line: Option<u64>,
        source: std::io::Error,
    },
    /// Its first line is not a backup's header.
    NotABackup { file: PathBuf, why: String },
    /// A format version newer than this daemon reads.
    NewerFormat { file: PathBuf, version: u64 },
    /// Records of a schema newer than this daemon's.
    NewerSchema { file: PathBuf, schema: u64 },
    /// The store holds something, and `--replace` was not given.
    NotEmpty {
        store: String,
        held: Box<BackupCounts>,
    },
    /// Line `line` is not a record this daemon can write.
    BadLine {
        file: PathBuf,
        line: u64,
        why: String,
    },
    /// The file ends before its end line.
    CutShort { file: PathBuf, after_line: u64 },
    /// The records do not add up to the header's counts.
    Counts {
        file: PathBuf,
        read: Box<BackupCounts>,
        header: Box<BackupCounts>,
    },
    /// The store refused the batch of lines `first` to `last`.
    Refused {
        file: PathBuf,
        first: u64,
        last: u64,
        source: Box<StoreError>,
    },
    /// The store failed.
    Store {
        store: String,
        source: Box<StoreError>,
    },
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NOTHING: &str = "nothing was restored";
        match self {
            RestoreError::Read {
                file,
                after_line: None,
                source,
            } => write!(f, "cannot read {}: {source}", file.display()),
            RestoreError::Read {
                file,
                after_line: Some(line),
                source,
            } => write!(
                f,
                "cannot read {} after line {line}: {source}; {NOTHING}",
                file.display()
            ),
            RestoreError::NotABackup { file, why } => write!(
                f,
                "{} is not a compartment backup: line 1: {why}",
                file.display()
            ),
            RestoreError::NewerFormat { file, version } => write!(
                f,
                "{} is a backup of format version {version}, newer than the {BACKUP_VERSION} this compartmentd reads; {NOTHING}: restore it with a newer compartmentd",
                file.display()
            ),
            RestoreError::NewerSchema { file, schema } => write!(
                f,
                "{} holds records of schema version {schema}, newer than the {CURRENT_SCHEMA_VERSION} this compartmentd understands; {NOTHING}: restore it with a newer compartmentd",
                file.display()
            ),
            RestoreError::NotEmpty { store, held } => write!(
                f,
                "{store} is not empty: it holds {}; {NOTHING}: restore into an empty store, or pass --replace to replace what it holds",
                held
            ),
            RestoreError::BadLine { file, line, why } => {
                write!(f, "{} line {line}: {why}; {NOTHING}", file.display())
            }
            RestoreError::CutShort { file, after_line } => write!(
                f,
                "{} ends after line {after_line} without its end line: the backup was cut short; {NOTHING}",
                file.display()
            ),
            RestoreError::Counts { file, read, header } => write!(
                f,
                "{} holds {}, but its header counts {}; {NOTHING}",
                file.display(),
                read,
                header
            ),
            RestoreError::Refused {
                file,
                first,
                last,
                source,
            } => write!(
                f,
                "{} lines {first}-{last}: {source}; {NOTHING}",
                file.display()
            ),
            RestoreError::Store { store, source } => write!(f, "{store}: {source}; {NOTHING}"),
        }
    }
}

impl std::error::Error for RestoreError {}
