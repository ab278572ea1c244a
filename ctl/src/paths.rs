//! Where the daemon's socket and state live when no flag or variable says otherwise
//! (DESIGN §6). Shared so that the daemon and the client agree. A default is never a
//! relative path: with no `$HOME`, no XDG variable and no home directory in the user
//! database, there is no default, and the caller is told to name the path.

use std::fmt;
use std::path::PathBuf;

/// The socket a system daemon listens on (the systemd socket unit's `ListenStream=`).
pub const SYSTEM_SOCKET: &str = "/run/compartment/compartmentd.sock";
/// The state directory of a system daemon (the unit's `StateDirectory=`).
pub const SYSTEM_STATE_DIR: &str = "/var/lib/compartment";
/// The file name of the socket inside a runtime directory.
pub const SOCKET_NAME: &str = "compartmentd.sock";

/// No default path can be made: nothing says where this user's files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoDefaultPath {
    /// What has no default: "the socket", "the state directory".
    pub what: &'static str,
    /// How to name it instead.
    pub instead: &'static str,
}

impl fmt::Display for NoDefaultPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no default for {}: HOME and the XDG variables are unset (or not absolute) and the user database gives no home directory; pass {}",
            self.what, self.instead
        )
    }
}

impl std::error::Error for NoDefaultPath {}

/// True when the defaults should be the system paths: running as root, or under systemd
/// (which sets `RUNTIME_DIRECTORY`/`STATE_DIRECTORY` for the unit).
fn system_mode() -> bool {
    nix::unistd::geteuid().is_root() || std::env::var_os("INVOCATION_ID").is_some()
}

/// An environment variable naming an absolute directory; a relative or empty one counts as
/// unset, since it would be resolved against whatever directory the process runs in.
fn absolute_var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
}

/// The runtime directory for a non-root user: `$XDG_RUNTIME_DIR/compartment`, else the
/// user's state directory. Never a shared directory such as `/tmp`, where another user
/// could put a socket of their own first.
pub fn user_runtime_dir() -> Option<PathBuf> {
    match absolute_var("XDG_RUNTIME_DIR") {
        Some(dir) => Some(dir.join("compartment")),
        None => user_state_dir(),
    }
}

/// `$XDG_STATE_HOME/compartment`, else `~/.local/state/compartment` (home from `$HOME`, else
/// the user database).
fn user_state_dir() -> Option<PathBuf> {
    if let Some(dir) = absolute_var("XDG_STATE_HOME") {
        return Some(dir.join("compartment"));
    }
    let home = absolute_var("HOME").or_else(|| {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|user| user.dir)
            .filter(|dir| dir.is_absolute())
    })?;
    Some(home.join(".local/state/compartment"))
}

/// The socket the daemon binds by default.
pub fn default_daemon_socket() -> Result<PathBuf, NoDefaultPath> {
    if let Some(dir) = absolute_var("RUNTIME_DIRECTORY") {
        return Ok(dir.join(SOCKET_NAME));
    }
    if system_mode() {
        return Ok(PathBuf::from(SYSTEM_SOCKET));
    }
    user_runtime_dir()
        .map(|dir| dir.join(SOCKET_NAME))
        .ok_or(NoDefaultPath {
            what: "the socket",
            instead: "--socket or COMPARTMENT_SOCKET",
        })
}

/// The state directory the daemon uses by default.
pub fn default_state_dir() -> Result<PathBuf, NoDefaultPath> {
    if let Some(dir) = absolute_var("STATE_DIRECTORY") {
        return Ok(dir);
    }
    if system_mode() {
        return Ok(PathBuf::from(SYSTEM_STATE_DIR));
    }
    user_state_dir().ok_or(NoDefaultPath {
        what: "the state directory",
        instead: "--state-dir or COMPARTMENT_STATE_DIR",
    })
}

/// The socket the client talks to when neither `--socket` nor `COMPARTMENT_SOCKET` is
/// given: the system socket when it exists, else the caller's own per-user one.
pub fn default_client_socket() -> Result<PathBuf, NoDefaultPath> {
    let system = PathBuf::from(SYSTEM_SOCKET);
    if system.exists() {
        return Ok(system);
    }
    user_runtime_dir()
        .map(|dir| dir.join(SOCKET_NAME))
        .ok_or(NoDefaultPath {
            what: "the socket",
            instead: "--socket or COMPARTMENT_SOCKET",
        })
}
