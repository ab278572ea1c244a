//! Test support for the end-to-end tests: finds the built binaries, runs a real
//! `compartmentd` in its own temp dir (or its server in the test process), runs
//! `compartmentctl` as real Unix users, and speaks the raw line protocol with timeouts so
//! that no test can hang.
//!
//! # Layout
//!
//! - `privileges`: the built binaries, whether this process may act as other Unix users,
//!   and [`root_test!`], which names a root-only test once and fails it under `CI` rather
//!   than let it pass by skipping.
//! - `users`: real Unix users ([`TestUser`]), created with `useradd` on first use.
//! - `process`: running a process with a deadline, and the CLI's command line as any uid.
//! - `endpoint`: a test daemon's temp dir, socket and state directory, and the CLI, the
//!   library client and raw connections pointed at it ([`Endpoint`]).
//! - `daemon`: the daemon under test as a process, the built binary ([`Daemon`]), and the
//!   flags of every test daemon ([`DaemonOptions`]).
//! - `in_process`: the daemon's server in the test process ([`InProcess`], from
//!   [`Daemon::in_process`]), for what needs no pid, signal, log or restart.
//! - `history`: a long history written into a stopped daemon's database ([`add_history`]).
//! - `raw`: the raw line protocol ([`RawConn`]).
//! - `http`: a free loopback port and one HTTP GET ([`http_get`]).
//! - `printed`: what the CLI prints (invitation lines, the member and account tables).
//! - `time`: the clock, RFC 3339 as the CLI prints it, polling with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod daemon;
mod endpoint;
mod history;
mod http;
mod in_process;
mod postgres;
mod printed;
mod privileges;
mod process;
mod raw;
mod time;
mod users;

pub use daemon::{files_under, run_compartmentd, Daemon, DaemonOptions, PUBLIC_URL};
pub use endpoint::Endpoint;
pub use history::add_history;
pub use http::{free_port, http_get};
pub use in_process::InProcess;
pub use postgres::{each_store, Database};
pub use printed::{
    account_table, assert_token_shape, member_table, parse_invitation_lines, parse_invite,
    text_table, token_bytes, InvitationLines, URL_PREFIX,
};
pub use privileges::{
    binary, binary_for_other_users, in_ci, is_root, profile_dir, root_for_part, say_loudly,
    skip_unless_root, skip_unless_root_for, skip_without_tool, NEEDS_ROOT_FOR_USERS, ROOT,
};
pub use process::{ctl_command, Out, Running};
pub use raw::RawConn;
pub use time::{now_unix, parse_rfc3339, poll};
pub use users::{primary_gid, test_group, uid_without_user, TestUser, NOBODY, TEST_USER_PREFIX};
