//! Where the daemon's socket and state live when no flag or variable says otherwise
//! (DESIGN §6). Shared so that the daemon and the client agree.

use std::path::PathBuf;

/// The socket a system daemon listens on (the systemd socket unit's `ListenStream=`).
pub const SYSTEM_SOCKET: &str = "/run/compartment/compartmentd.sock";
/// The state directory of a system daemon (the unit's `StateDirectory=`).
pub const SYSTEM_STATE_DIR: &str = "/var/lib/compartment";
/// The file name of the socket inside a runtime directory.
pub const SOCKET_NAME: &str = "compartmentd.sock";

/// True when the defaults should be the system paths: running as root, or under systemd
/// (which sets `RUNTIME_DIRECTORY`/`STATE_DIRECTORY` for the unit).
fn system_mode() -> bool {
    nix::unistd::geteuid().is_root() || std::env::var_os("INVOCATION_ID").is_some()
}

/// The runtime directory for a non-root user: `$XDG_RUNTIME_DIR/compartment`, else the
/// user's state directory. Never a shared directory such as `/tmp`, where another user
/// could put a socket of their own first.
pub fn user_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("compartment"),
        None => user_state_dir(),
    }
}

/// `$XDG_STATE_HOME/compartment`, else `~/.local/state/compartment`.
fn user_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("compartment");
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|user| user.dir)
        })
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/compartment")
}

/// The socket the daemon binds by default.
pub fn default_daemon_socket() -> PathBuf {
    if let Some(dir) = std::env::var_os("RUNTIME_DIRECTORY").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join(SOCKET_NAME);
    }
    if system_mode() {
        PathBuf::from(SYSTEM_SOCKET)
    } else {
        user_runtime_dir().join(SOCKET_NAME)
    }
}

/// The state directory the daemon uses by default.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if system_mode() {
        return PathBuf::from(SYSTEM_STATE_DIR);
    }
    user_state_dir()
}

/// The socket the client talks to when neither `--socket` nor `COMPARTMENT_SOCKET` is
/// given: the system socket when it exists, else the caller's own per-user one.
pub fn default_client_socket() -> PathBuf {
    let system = PathBuf::from(SYSTEM_SOCKET);
    if system.exists() {
        system
    } else {
        user_runtime_dir().join(SOCKET_NAME)
    }
}
