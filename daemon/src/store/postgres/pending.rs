//! What a transaction knows of the rows it touched, and what a write transaction wrote and
//! has not yet sent to PostgreSQL.
//!
//! A read-only transaction sees one moment, and a write transaction is the only one writing
//! while it runs (every daemon's writes take turns on the feed's lock, see the schema), so
//! what either read of a row stays true, until a write transaction writes the row itself. A point read is answered from here once the transaction has read
//! or written its row; a write changes the row here and is sent later, with every other
//! pending write, as one statement per table (`flush.rs`): before a read that ranges over
//! a table, and at the commit. A batch of changes that each read and write a few rows thus
//! costs a few round trips for the batch rather than one per statement per change.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use crate::store::{
    AccountRecord, BindingRecord, ChainHash, EventRecord, MembershipRecord, OrgRecord, Sealed,
    TokenHash, TokenRecord,
};

/// One table's rows as the transaction knows them.
pub(super) struct Known<K, V> {
    rows: HashMap<K, Row<V>>,
}

struct Row<V> {
    /// The row, or `None` for none.
    value: Option<V>,
    /// Written by the transaction and not yet sent.
    unsent: bool,
}

impl<K, V> Default for Known<K, V> {
    fn default() -> Known<K, V> {
        Known {
            rows: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Known<K, V> {
    /// The row at `key` (`Some(None)`: there is none), or `None` when the transaction has
    /// neither read nor written it and must ask the database.
    pub(super) fn get(&self, key: &K) -> Option<Option<V>> {
        self.rows.get(key).map(|row| row.value.clone())
    }

    /// The row at `key` as the database answered it.
    pub(super) fn learn(&mut self, key: K, value: Option<V>) {
        self.rows.entry(key).or_insert(Row {
            value,
            unsent: false,
        });
    }

    /// Writes the row at `key` (`None` deletes it).
    pub(super) fn write(&mut self, key: K, value: Option<V>) {
        self.rows.insert(
            key,
            Row {
                value,
                unsent: true,
            },
        );
    }

    /// Forgets the rows the database holds as the transaction knows them (all but those
    /// written and not yet sent): they are read again when next asked.
    pub(super) fn forget_sent(&mut self) {
        self.rows.retain(|_, row| row.unsent);
    }

    /// The rows written since the last time, each as the transaction left it: to send.
    pub(super) fn take_unsent(&mut self) -> Vec<(K, Option<V>)> {
        self.rows
            .iter_mut()
            .filter(|(_, row)| row.unsent)
            .map(|(key, row)| {
                row.unsent = false;
                (key.clone(), row.value.clone())
            })
            .collect()
    }
}

/// The feed's head as the transaction numbers its events.
#[derive(Clone, Copy)]
pub(super) struct Head {
    /// As the database has it.
    pub(super) sent: u64,
    /// The last number the transaction gave.
    pub(super) now: u64,
}

/// An event the transaction appended, with the organizations whose feeds carry it.
pub(super) struct Appended {
    pub(super) seq: u64,
    pub(super) event: EventRecord,
    pub(super) orgs: Vec<String>,
}

/// A write transaction's rows: what it knows, and what it has yet to send.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) orgs: Known<String, OrgRecord>,
    pub(super) accounts: Known<String, AccountRecord>,
    pub(super) bindings: Known<u32, BindingRecord>,
    pub(super) memberships: Known<(String, String), MembershipRecord>,
    /// Accounts whose every membership is in `memberships`: read ahead, none other exists.
    pub(super) memberships_of: HashSet<String>,
    pub(super) tokens: Known<TokenHash, TokenRecord>,
    pub(super) current_org: Known<u32, String>,
    /// Appended and sealed, not yet sent.
    pub(super) audit: Vec<Sealed>,
    /// The audit's last number and hash, once read (the transaction holds the feed's lock,
    /// so nobody else appends meanwhile).
    pub(super) chain: Option<(u64, ChainHash)>,
    /// Appended, not yet sent.
    pub(super) events: Vec<Appended>,
    /// Known once the transaction read it, or appended.
    pub(super) head: Option<Head>,
}

/// Every write a transaction had not sent, as it left each row.
#[derive(Default)]
pub(super) struct Unsent {
    pub(super) orgs: Vec<(String, Option<OrgRecord>)>,
    pub(super) accounts: Vec<(String, Option<AccountRecord>)>,
    pub(super) bindings: Vec<(u32, Option<BindingRecord>)>,
    pub(super) memberships: Vec<((String, String), Option<MembershipRecord>)>,
    pub(super) tokens: Vec<(TokenHash, Option<TokenRecord>)>,
    pub(super) current_org: Vec<(u32, Option<String>)>,
    pub(super) audit: Vec<Sealed>,
    pub(super) events: Vec<Appended>,
    /// The feed's head to write, when events were appended.
    pub(super) head: Option<u64>,
}

impl Pending {
    /// Forgets every row the database holds as the transaction knew it: after a statement
    /// that changed rows in place of the pending writes (a rename moves an organization's
    /// or an account's rows to its new key, a deletion of an organization takes its uses
    /// with it), what the transaction read of them may be stale. Called once the writes
    /// are sent; a row written since is kept, as it is to be sent.
    pub(super) fn forget_rows(&mut self) {
        self.orgs.forget_sent();
        self.accounts.forget_sent();
        self.bindings.forget_sent();
        self.memberships.forget_sent();
        // No longer all there, the memberships of an account are read again.
        self.memberships_of.clear();
        self.tokens.forget_sent();
        self.current_org.forget_sent();
    }

    /// Takes what is to send; from here on it counts as sent.
    pub(super) fn take_unsent(&mut self) -> Unsent {
        let head = match &mut self.head {
            Some(head) if head.now != head.sent => {
                head.sent = head.now;
                Some(head.now)
            }
            _ => None,
        };
        Unsent {
            orgs: self.orgs.take_unsent(),
            accounts: self.accounts.take_unsent(),
            bindings: self.bindings.take_unsent(),
            memberships: self.memberships.take_unsent(),
            tokens: self.tokens.take_unsent(),
            current_org: self.current_org.take_unsent(),
            audit: std::mem::take(&mut self.audit),
            events: std::mem::take(&mut self.events),
            head,
        }
    }
}

impl Unsent {
    pub(super) fn is_empty(&self) -> bool {
        self.orgs.is_empty()
            && self.accounts.is_empty()
            && self.bindings.is_empty()
            && self.memberships.is_empty()
            && self.tokens.is_empty()
            && self.current_org.is_empty()
            && self.audit.is_empty()
            && self.events.is_empty()
            && self.head.is_none()
    }
}
