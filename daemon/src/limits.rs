//! What one client may hold: connections in total and per uid, and how long a connection
//! may sit on a partial line or do nothing. A connection over a cap is answered `busy`,
//! never silently dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use compartmentctl::wire::{ErrorKind, RpcError};

/// The limits, each a daemon flag.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_uid: usize,
    /// A request line must be complete this long after it started (slow-loris).
    pub line_timeout: Duration,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_connections_per_uid: 64,
            line_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
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

    /// Takes a slot for a connection from `uid`, or says why there is none.
    pub fn take(self: &Arc<Slots>, uid: u32) -> Result<Slot, RpcError> {
        // The counts stay consistent even if a holder panicked: recover the guard.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.limits.max_connections {
            return Err(RpcError::new(
                ErrorKind::Busy,
                format!(
                    "compartmentd is serving its maximum of {} connections",
                    self.limits.max_connections
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
            ..Limits::default()
        });
        let a1 = slots.take(1).unwrap();
        let _a2 = slots.take(1).unwrap();
        let err = slots.take(1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy);
        assert_eq!(
            err.message,
            "uid 1 already holds 2 connections, the most one user may"
        );
        let _b1 = slots.take(2).unwrap();
        let err = slots.take(3).unwrap_err();
        assert_eq!(
            err.message,
            "compartmentd is serving its maximum of 3 connections"
        );
        drop(a1);
        let _a3 = slots.take(1).unwrap();
    }
}
