//! What went wrong below the rules.

use std::fmt;

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
    /// A restore would write the same key twice (a backup never holds one twice).
    Duplicate {
        table: &'static str,
        key: String,
    },
    /// A write failed for want of space, and there is still too little to resume writing.
    DiskFull,
    /// The database is being reopened after a write failed; try again.
    Reopening,
    /// What PostgreSQL answered, or why the connection to it failed.
    Postgres(tokio_postgres::Error),
    /// No connection to PostgreSQL could be had (it is down, or every connection is busy).
    Unreachable(String),
    /// A read of a [`Glance`](super::Glance) beyond the rows it holds: the decision is made
    /// again on a snapshot, and never answered with this.
    BeyondGlance,
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

    /// True for a conflict with a concurrent transaction (PostgreSQL's serialization
    /// failure, or a deadlock): the whole transaction is worth running again.
    pub fn is_retryable(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match self {
            StoreError::Postgres(err) => matches!(
                err.code(),
                Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED
            ),
            _ => false,
        }
    }

    /// True when the store cannot be reached (PostgreSQL down, restarting, or the
    /// connection lost): the client is told to try again, and the daemon reconnects by
    /// itself once it is back.
    pub fn is_unreachable(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match self {
            StoreError::Unreachable(_) => true,
            StoreError::Postgres(err) => {
                err.is_closed()
                    || err.code().is_some_and(|code| {
                        // Class 08 (connection exception), and a server shutting down or
                        // starting up.
                        code.code().starts_with("08")
                            || *code == SqlState::ADMIN_SHUTDOWN
                            || *code == SqlState::CRASH_SHUTDOWN
                            || *code == SqlState::CANNOT_CONNECT_NOW
                    })
            }
            _ => false,
        }
    }

    /// True when the error leaves redb's handle unusable for writes until it is reopened:
    /// redb latches the first I/O error and answers `PreviousIo` from then on.
    pub(crate) fn breaks_the_handle(&self) -> bool {
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
            StoreError::Duplicate { table, key } => {
                write!(f, "{key} comes twice in table {table}")
            }
            StoreError::Unencodable { table, detail } => {
                write!(f, "a record for table {table} does not encode: {detail}")
            }
            StoreError::DiskFull => f.write_str("no space left for the database"),
            StoreError::Reopening => f.write_str("the database is being reopened"),
            StoreError::Postgres(err) => {
                write!(f, "PostgreSQL: {}", super::postgres::Explained(err))
            }
            StoreError::Unreachable(why) => write!(f, "PostgreSQL cannot be reached: {why}"),
            StoreError::BeyondGlance => f.write_str("a read beyond the rows glanced at"),
        }
    }
}

impl std::error::Error for StoreError {}

/// redb's errors, each as the `Redb` variant, so that `?` works on every redb call.
macro_rules! from_redb {
    ($($error:ty),*) => {
        $(impl From<$error> for StoreError {
            fn from(err: $error) -> StoreError {
                StoreError::Redb(err.into())
            }
        })*
    };
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    redb::CompactionError,
    redb::SavepointError
);

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> StoreError {
        StoreError::Postgres(err)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
