//! The feed's heads in this daemon: what its subscribers wait on, moved by each commit
//! before the commit's changes are answered.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;

use super::ChainHash;

/// What a commit tells the feeds: its last event's sequence number, if it appended any, and
/// the organizations whose feeds it appended to; and the last audit record it sealed.
#[derive(Debug, Default)]
pub struct Announcement {
    pub(crate) last: Option<u64>,
    pub(crate) orgs: Vec<String>,
    pub(crate) sealed: Option<(u64, ChainHash)>,
}

/// The sequence number of the last event committed, and the heads of the organizations'
/// feeds that have subscribers; and the last audit record this daemon committed, which
/// `audit verify` holds the log to.
pub(crate) struct FeedHeads {
    events: watch::Sender<u64>,
    orgs: Mutex<HashMap<String, watch::Sender<u64>>>,
    sealed: Mutex<Option<(u64, ChainHash)>>,
}

impl FeedHeads {
    /// Heads starting at `last`, the last event the store holds.
    pub(crate) fn new(last: u64) -> FeedHeads {
        FeedHeads {
            events: watch::Sender::new(last),
            orgs: Mutex::default(),
            sealed: Mutex::default(),
        }
    }

    /// The last audit record this daemon committed: its number and hash.
    pub(crate) fn last_sealed(&self) -> Option<(u64, ChainHash)> {
        *self.sealed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changed as each commit with events lands: the whole host's feed waits on it.
    pub(crate) fn event_head(&self) -> watch::Receiver<u64> {
        self.events.subscribe()
    }

    /// Changed as each commit that appends to `org`'s feed lands. (Its value starts at 0
    /// and says only that something changed since it was last seen.)
    pub(crate) fn org_event_head(&self, org: &str) -> watch::Receiver<u64> {
        let mut heads = self.orgs.lock().unwrap_or_else(PoisonError::into_inner);
        heads.retain(|_, head| head.receiver_count() > 0);
        heads
            .entry(org.to_owned())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    /// Moves the heads to `seq`, waking every organization's feed: after more commits than
    /// are worth asking which organizations they touched.
    pub(crate) fn announce_everywhere(&self, seq: u64) {
        self.advance(seq);
        let heads = self.orgs.lock().unwrap_or_else(PoisonError::into_inner);
        for head in heads.values() {
            head.send_replace(seq);
        }
    }

    /// Moves the heads past what a commit `announced`.
    pub(crate) fn announce(&self, announced: &Announcement) {
        if let Some((seq, hash)) = announced.sealed {
            let mut sealed = self.sealed.lock().unwrap_or_else(PoisonError::into_inner);
            if sealed.is_none_or(|(last, _)| last < seq) {
                *sealed = Some((seq, hash));
            }
        }
        let Some(seq) = announced.last else {
            return;
        };
        self.advance(seq);
        if announced.orgs.is_empty() {
            return;
        }
        let heads = self.orgs.lock().unwrap_or_else(PoisonError::into_inner);
        for org in &announced.orgs {
            if let Some(head) = heads.get(org) {
                head.send_replace(seq);
            }
        }
    }

    /// Moves the host's head to `seq`, if that is past it.
    fn advance(&self, seq: u64) {
        self.events.send_if_modified(|head| {
            let newer = seq > *head;
            if newer {
                *head = seq;
            }
            newer
        });
    }
}
