//! The Compartment control plane's client side: the wire protocol both ends share, and a
//! small synchronous client for it.
//!
//! # Layout
//!
//! - [`wire`]: the JSON-RPC 2.0 envelope (ids, notifications, batches), each method declared
//!   once with its params and result, roles, statuses and the stable error kinds. The daemon
//!   depends on this module, so the two ends cannot drift.
//! - [`email`]: the one definition of a valid e-mail address.
//! - [`client`]: a blocking [`Client`] that speaks one request per line over the Unix socket.
//! - [`paths`]: where the daemon's socket lives when nobody says otherwise.
//! - [`peer`]: whom the client talks to: the server behind a socket must be trusted.
//! - [`args`]: the CLI's grammar (clap), here so that packaging can render man pages and
//!   completions from it.
//! - [`complete`]: shell completion that asks the daemon (`--org <TAB>`).
//!
//! The `compartmentctl` binary (`src/main.rs` and `src/cli/`) is built on these.

#![forbid(unsafe_code)]

pub mod args;
pub mod client;
pub mod complete;
pub mod dir_trust;
pub mod email;
pub mod paths;
pub mod peer;
pub mod wire;

pub use client::{BackupItem, BackupStream, Client, ClientError, FeedItem, Subscription};
