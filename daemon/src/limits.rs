//! What one client may hold: connections in total and per uid, and how long a connection
//! may sit on a partial line, do nothing, or leave an answer unread. A connection over a cap
//! is answered `busy`, never silently dropped. The last few slots of the total are kept for
//! superusers (PostgreSQL's `superuser_reserved_connections`), so that however many
//! connections other uids hold, root can still get in to look and repair.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use compartmentctl::wire::{ErrorKind, RpcError};

/// The limits, each a daemon flag.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_uid: usize,
    /// Of `max_connections`, how many only superusers may take.
    pub superuser_reserved_connections: usize,
    /// A request line must be complete this long after it started (slow-loris).
    pub line_timeout: Duration,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// An answer that cannot be written for this long (the client does not read) closes the
    /// connection.
    pub write_timeout: Duration,
    /// A feed whose subscriber has not had this many changes made since it subscribed is
    /// ended as behind.
    pub feed_max_lag: u64,
    /// How many feeds of one uid may replay what was written before they subscribed at
    /// once (superusers excepted).
    pub feed_replays_per_uid: usize,
    /// How many feeds may replay at once, from everyone together (superusers excepted).
    pub feed_replays: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_connections_per_uid: 64,
            superuser_reserved_connections: 3,
            line_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(10),
            feed_max_lag: 10_000,
            feed_replays_per_uid: 4,
            feed_replays: 32,
        }
    }
}

/// Counts open connections, in total and per uid.
#[derive(Debug)]
pub struct Slots {
    limits: Limits,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_uid: HashMap<u32, usize>,
}

/// One open connection's place; it is given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    uid: u32,
}

impl Slots {
    pub fn new(limits: Limits) -> Arc<Slots> {
        Arc::new(Slots {
            limits,
            open: Mutex::new(Open::default()),
        })
    }

    /// Takes a slot for a connection from `uid`, or says why there is none. Superusers may
    /// take the reserved slots too; everyone else stops short of them.
    pub fn take(self: &Arc<Slots>, uid: u32, superuser: bool) -> Result<Slot, RpcError> {
        // The counts stay consistent even if a holder panicked: recover the guard.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let max = self.limits.max_connections;
        if open.total >= max {
            return Err(RpcError::new(
                ErrorKind::Busy,
                format!("compartmentd is serving its maximum of {max} connections"),
            )
            .with_hint("retry in a moment"));
        }
        let reserved = self.limits.superuser_reserved_connections;
        if !superuser && open.total >= max.saturating_sub(reserved) {
            return Err(RpcError::new(
                ErrorKind::Busy,
                format!(
                    "compartmentd is serving its maximum of {max} connections ({reserved} of them kept for superusers)"
                ),
            )
            .with_hint("retry in a moment"));
        }
        let mine = open.per_uid.entry(uid).or_insert(0);
        if *mine >= self.limits.max_connections_per_uid {
            return Err(RpcError::new(
                ErrorKind::Busy,
                format!(
                    "uid {uid} already holds {} connections, the most one user may",
                    self.limits.max_connections_per_uid
                ),
            )
            .with_hint("close idle connections, then retry"));
        }
        *mine += 1;
        open.total += 1;
        Ok(Slot {
            slots: self.clone(),
            uid,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.per_uid.get_mut(&self.uid) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                open.per_uid.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn caps_hold_per_uid_and_in_total_and_slots_come_back() {
        let slots = Slots::new(Limits {
            max_connections: 3,
            max_connections_per_uid: 2,
            superuser_reserved_connections: 0,
            ..Limits::default()
        });
        let a1 = slots.take(1, false).unwrap();
        let _a2 = slots.take(1, false).unwrap();
        let err = slots.take(1, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy);
        assert_eq!(
            err.message,
            "uid 1 already holds 2 connections, the most one user may"
        );
        let _b1 = slots.take(2, false).unwrap();
        let err = slots.take(3, false).unwrap_err();
        assert_eq!(
            err.message,
            "compartmentd is serving its maximum of 3 connections"
        );
        drop(a1);
        let _a3 = slots.take(1, false).unwrap();
    }

    #[test]
    fn reserved_slots_are_for_superusers_only() {
        let slots = Slots::new(Limits {
            max_connections: 4,
            max_connections_per_uid: 10,
            superuser_reserved_connections: 2,
            ..Limits::default()
        });
        let _others: Vec<Slot> = (0..2)
            .map(|uid| slots.take(uid + 1000, false).unwrap())
            .collect();
        let err = slots.take(1002, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy);
        assert_eq!(
            err.message,
            "compartmentd is serving its maximum of 4 connections (2 of them kept for superusers)"
        );
        let _root = slots.take(0, true).unwrap();
        let _daemon_user = slots.take(999, true).unwrap();
        let err = slots.take(0, true).unwrap_err();
        assert_eq!(
            err.message,
            "compartmentd is serving its maximum of 4 connections"
        );
    }
}
