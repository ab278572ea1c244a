//! The tables, and their accessors on a snapshot (each opened on first use and shared by
//! the reads of the snapshot) and on a write transaction (each opened once for all the
//! changes of a batch).

use std::cell::{Cell, RefCell, RefMut};
use std::sync::{Arc, OnceLock};

use redb::{ReadTransaction, TableDefinition, WriteTransaction};

use crate::store::{ChainHash, Result, Sealed, StoreError};

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(super) const ORGS: TableDefinition<&str, &[u8]> = TableDefinition::new("orgs");
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
/// (org, email) → membership.
pub(super) const MEMBERSHIPS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("memberships");
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
/// Sequence number → audit record as sealed: its hash (32 bytes), then its text (schema 7;
/// [`sealed_bytes`]).
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_log");
/// (org, sequence number) of each audit record naming an organization, so that an
/// organization's admins read their own records (schema 7).
const AUDIT_BY_ORG: TableDefinition<(&str, u64), ()> = TableDefinition::new("audit_by_org");
/// Sequence number → the signed checkpoint of the audit log at that record (schema 7).
const AUDIT_CHECKPOINTS: TableDefinition<u64, &str> = TableDefinition::new("audit_checkpoints");
/// The change feed: sequence number → what changed (`events.subscribe`).
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// The feed by organization: (org, sequence number) of each event an organization's feed
/// carries, so that it reads its own rows and no one else's (schema 6).
const ORG_EVENTS: TableDefinition<(&str, u64), ()> = TableDefinition::new("org_events");
/// (gid, org) of each Unix group an organization maps to a role, so that a caller's
/// groups find their organizations without reading every organization (schema 8).
const GROUP_ORGS: TableDefinition<(u32, &str), ()> = TableDefinition::new("group_orgs");
/// Spent tokens (used, revoked, expired) by the time they may be forgotten: (expiry plus
/// [`SPENT_TOKEN_MEMORY`], key), so that the sweeper prunes what no longer matters at the
/// cost of what it prunes (schema 6).
const SPENT_TOKENS: TableDefinition<(u64, &[u8; 32]), ()> = TableDefinition::new("spent_tokens");

/// Each table's accessor, for the three kinds of view the store is read through: a
/// [`Snapshot`] opens each table on first use and keeps it open for every read that shares
/// it; [`Tables`] opens it once per write transaction and keeps it open.
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
            pub(super) fn new(txn: ReadTransaction) -> Snapshot {
                Snapshot(Arc::new(SnapshotTables {
                    txn,
                    $($accessor: OnceLock::new(),)*
                }))
            }

            /// Whether `self` and `other` are the same read transaction.
            #[cfg(test)]
            pub(super) fn shares(&self, other: &Snapshot) -> bool {
                Arc::ptr_eq(&self.0, &other.0)
            }

            /// How many hold this read transaction open (the store counts as one).
            #[cfg(test)]
            pub(super) fn holders(&self) -> usize {
                Arc::strong_count(&self.0)
            }

            $(pub(super) fn $accessor(&self) -> std::result::Result<&redb::ReadOnlyTable<$key, $value>, redb::TableError> {
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
            /// The last audit record's number and hash (0 and the genesis hash before the
            /// first), and the next event's sequence number, once read.
            pub(super) chain_head: Cell<Option<(u64, ChainHash)>>,
            pub(super) next_event: Cell<Option<u64>>,
            /// The organizations whose feeds this transaction appended to.
            pub(super) touched_orgs: RefCell<Vec<String>>,
        }

        impl<'t> Tables<'t> {
            pub(super) fn new(txn: &'t WriteTransaction) -> Tables<'t> {
                Tables {
                    txn,
                    $($accessor: RefCell::new(None),)*
                    chain_head: Cell::new(None),
                    next_event: Cell::new(None),
                    touched_orgs: RefCell::new(Vec::new()),
                }
            }

            $(
                #[track_caller]
                pub(super) fn $accessor(&self) -> Result<RefMut<'_, redb::Table<'t, $key, $value>>> {
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
    audit_by_org_table: AUDIT_BY_ORG: (&'static str, u64) => (),
    audit_checkpoints_table: AUDIT_CHECKPOINTS: u64 => &'static str,
    admins_table: ORG_ADMINS: (&'static str, &'static str) => (),
    events_table: EVENTS: u64 => &'static [u8],
    org_events_table: ORG_EVENTS: (&'static str, u64) => (),
    spent_tokens_table: SPENT_TOKENS: (u64, &'static [u8; 32]) => (),
    group_orgs_table: GROUP_ORGS: (u32, &'static str) => (),
}

/// Creates every table, so that read snapshots can open them all.
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<()> {
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
    txn.open_table(AUDIT_BY_ORG)?;
    txn.open_table(AUDIT_CHECKPOINTS)?;
    txn.open_table(ORG_ADMINS)?;
    txn.open_table(EVENTS)?;
    txn.open_table(ORG_EVENTS)?;
    txn.open_table(SPENT_TOKENS)?;
    txn.open_table(GROUP_ORGS)?;
    Ok(())
}

/// An audit record's value in [`AUDIT`]: its hash, then its text.
pub(super) fn sealed_bytes(sealed: &Sealed) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(32 + sealed.text.len());
    bytes.extend_from_slice(&sealed.hash);
    bytes.extend_from_slice(sealed.text.as_bytes());
    bytes
}

/// The record `seq` of [`AUDIT`] from its value.
pub(super) fn unseal(seq: u64, bytes: &[u8]) -> Result<Sealed> {
    let corrupt = |detail: &str| StoreError::Corrupt {
        table: "audit_log",
        detail: format!("record {seq}: {detail}"),
    };
    let (hash, text) = bytes
        .split_first_chunk::<32>()
        .ok_or_else(|| corrupt("shorter than its hash"))?;
    let text = std::str::from_utf8(text).map_err(|_| corrupt("its text is not UTF-8"))?;
    Ok(Sealed {
        seq,
        text: text.to_owned(),
        hash: *hash,
    })
}

impl Tables<'_> {
    /// Writes a sealed record and files it under the organization it names.
    pub(super) fn put_sealed(&self, sealed: &Sealed, org: Option<&str>) -> Result<()> {
        self.audit_table()?
            .insert(sealed.seq, sealed_bytes(sealed).as_slice())?;
        if let Some(org) = org {
            self.audit_by_org_table()?.insert((org, sealed.seq), ())?;
        }
        Ok(())
    }
}

#[cfg(test)]
impl Tables<'_> {
    /// Writes audit record `seq` as given, index and chain untouched: tampering, for tests.
    pub(crate) fn raw_audit_set(&self, seq: u64, text: &str, hash: &ChainHash) {
        let sealed = Sealed {
            seq,
            text: text.to_owned(),
            hash: *hash,
        };
        #[allow(clippy::unwrap_used)]
        self.audit_table()
            .unwrap()
            .insert(seq, sealed_bytes(&sealed).as_slice())
            .unwrap();
    }

    /// Removes audit record `seq` alone: tampering, for tests.
    pub(crate) fn raw_audit_remove(&self, seq: u64) {
        #[allow(clippy::unwrap_used)]
        self.audit_table().unwrap().remove(seq).unwrap();
    }

    /// Removes the checkpoint of record `seq`: tampering, for tests.
    pub(crate) fn raw_checkpoint_remove(&self, seq: u64) {
        #[allow(clippy::unwrap_used)]
        self.audit_checkpoints_table().unwrap().remove(seq).unwrap();
    }
}
