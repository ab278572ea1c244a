//! `compartmentd`: the membership and access authority of one Compartment host.
//!
//! # Layout
//!
//! - [`config`]: the command line, each flag also an environment variable.
//! - [`start`]: from the command line to a serving daemon (state directory, store, socket,
//!   server), the one path of the binary and of the tests that run the daemon in process.
//! - [`server`]: the accept loop: peer credentials first, caps on connections, graceful
//!   shutdown.
//! - [`connection`]: one connection: JSON lines in, replies out in order, timeouts.
//! - [`lines`], [`peek`]: a connection's request lines, read so that a request's bytes
//!   leave the socket only once it is answered (which spares the client a wake-up).
//! - [`pipeline`]: a connection's requests in flight, answered in order; one line served.
//! - [`reply`]: what a request line gets back: a reply, one response or a batch's.
//! - [`sending`]: a line written within the write timeout; why a connection ended.
//! - [`limits`]: connection caps and timeouts, and how fast one uid may change the store.
//! - [`admission`]: whether a change may go to the writer: the uid's rate, the free-space
//!   floor.
//! - [`context`]: what every request is served with, and the lookups of who a caller is.
//! - [`dispatch`]: a parsed request to the rule that serves it, read or write: its answer.
//! - [`rules`]: who may do what to whom (DESIGN §3, §4), on a store transaction.
//! - [`store`]: what the rules read and write through (traits), and its one backend,
//!   redb (`store/redb/`): tables, indexes, the schema version and its migrations.
//! - [`writer`]: the single task that owns the write side; every change goes through it.
//! - [`sweeper`]: expires invitations, waking at the earliest expiry.
//! - [`status`]: what the writer and the sweeper last did, kept for `admin.status`.
//! - [`metrics`]: requests, connections, the writer, the sweeper and the feed in
//!   Prometheus' text format (`admin.metrics`, `--metrics-textfile`).
//! - [`health`]: `STATUS=` and systemd's watchdog, pinged only while the accept loop and
//!   the writer move.
//! - [`refusals`]: refused requests in the audit log, one by one or counted.
//! - [`retention`]: pruning what is older than `--audit-retention`.
//! - [`events`]: the change feed a subscribed connection carries.
//! - [`backup`]: `admin.backup`, sent from one snapshot, and `compartmentd restore`.
//! - [`socket`]: binding the Unix socket, replacing a stale one, refusing a live one.
//! - [`page`]: the activation page, over HTTP, with `--http-listen`.
//! - [`users`]: the host's users (NSS), cached briefly.
//! - [`state_dir`]: the state directory and database file it trusts (owner, mode, links).
//! - [`clock`], [`token`]: time and randomness, as parameters.
//! - [`logging`]: tracing to stderr or the journal.

// Unsafe code only where a function allows it, beside its reason: the descriptor systemd
// hands over (`socket::inherited`) and a thread's priority (`events`).
#![deny(unsafe_code)]

pub mod admission;
pub mod backup;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod connection;
pub mod context;
pub mod dispatch;
pub mod events;
pub mod health;
pub mod limits;
pub mod lines;
pub mod logging;
pub mod metrics;
pub mod page;
pub mod peek;
pub mod pipeline;
pub mod refusals;
pub mod reply;
pub mod retention;
pub mod rules;
pub mod sending;
pub mod server;
pub mod socket;
pub mod start;
pub mod state_dir;
pub mod status;
pub mod store;
pub mod sweeper;
pub mod token;
pub mod users;
pub mod writer;
