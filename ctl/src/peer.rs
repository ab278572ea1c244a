//! Whom the client is talking to (libpq's `requirepeer`): before anything is sent, the
//! server behind the socket must run as root or as the owner of the socket's directory,
//! and a non-root server's directory must be writable by nobody else. A socket planted by
//! another user (in `/tmp`, in a directory someone let others write, or at a path the
//! user was tricked into passing) then never receives an activation URL or forges an
//! answer.
//!
//! Why these two: the peer's uid is taken by the kernel when the server listened, so it
//! cannot be forged. Root already holds everything. A directory's owner decides what
//! appears in it, so a server of the owner's in the owner's directory is whom the path
//! names; when others may write the directory, that no longer follows. Under systemd the
//! socket unit listens (as root) in the root-owned `/run/compartment`; a user's own daemon
//! listens in their own `$XDG_RUNTIME_DIR/compartment`.

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// Why the client refuses the server behind a socket.
#[derive(Debug)]
pub enum UntrustedServer {
    /// The server's uid is neither root nor the directory's owner.
    Stranger {
        path: PathBuf,
        server_uid: u32,
        dir_owner: u32,
    },
    /// A non-root server in a directory others may write.
    OpenDirectory {
        path: PathBuf,
        dir: PathBuf,
        mode: u32,
    },
    /// Who serves, or who owns the directory, cannot be told.
    Unknown {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for UntrustedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UntrustedServer::Stranger {
                path, server_uid, ..
            } => write!(
                f,
                "refusing to talk to {}: its server runs as uid {server_uid}, neither root nor the directory's owner",
                path.display()
            ),
            UntrustedServer::OpenDirectory { path, dir, mode } => write!(
                f,
                "refusing to talk to {}: its directory {} is writable by {} (mode {:04o}), so anyone could have put the socket there",
                path.display(),
                dir.display(),
                if mode & 0o020 != 0 { "its group" } else { "others" },
                mode & 0o7777
            ),
            UntrustedServer::Unknown { path, what, source } => write!(
                f,
                "refusing to talk to {}: cannot tell {what}: {source}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for UntrustedServer {}

/// Checks the server behind `stream`, connected at `path`.
pub fn check(stream: &UnixStream, path: &Path) -> Result<(), UntrustedServer> {
    let unknown = |what| {
        move |source| UntrustedServer::Unknown {
            path: path.to_owned(),
            what,
            source,
        }
    };
    let server_uid = getsockopt(stream, PeerCredentials)
        .map_err(io::Error::from)
        .map_err(unknown("who serves it"))?
        .uid();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let meta = std::fs::metadata(dir).map_err(unknown("who owns its directory"))?;
    judge(path, dir, server_uid, meta.uid(), meta.mode())
}

/// The rule itself, on what [`check`] looked up.
pub fn judge(
    path: &Path,
    dir: &Path,
    server_uid: u32,
    dir_owner: u32,
    dir_mode: u32,
) -> Result<(), UntrustedServer> {
    if server_uid == 0 {
        return Ok(());
    }
    if server_uid != dir_owner {
        return Err(UntrustedServer::Stranger {
            path: path.to_owned(),
            server_uid,
            dir_owner,
        });
    }
    if dir_mode & 0o022 != 0 {
        return Err(UntrustedServer::OpenDirectory {
            path: path.to_owned(),
            dir: dir.to_owned(),
            mode: dir_mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn judged(server_uid: u32, dir_owner: u32, dir_mode: u32) -> Result<(), String> {
        judge(
            Path::new("/d/s.sock"),
            Path::new("/d"),
            server_uid,
            dir_owner,
            dir_mode,
        )
        .map_err(|err| err.to_string())
    }

    #[test]
    fn root_or_the_directory_owner_in_a_closed_directory() {
        // The systemd socket, and root's daemon wherever it listens.
        assert_eq!(judged(0, 0, 0o40755), Ok(()));
        assert_eq!(judged(0, 1000, 0o41777), Ok(()));
        // A user's own daemon in their own runtime directory.
        assert_eq!(judged(1000, 1000, 0o40700), Ok(()));
        assert_eq!(
            judged(1001, 1000, 0o40700),
            Err("refusing to talk to /d/s.sock: its server runs as uid 1001, neither root nor the directory's owner".into())
        );
        // A planted socket in /tmp.
        assert!(judged(1001, 0, 0o41777).is_err());
        assert_eq!(
            judged(1000, 1000, 0o40775),
            Err("refusing to talk to /d/s.sock: its directory /d is writable by its group (mode 0775), so anyone could have put the socket there".into())
        );
        assert!(judged(1000, 1000, 0o41777).is_err());
    }

    #[test]
    fn a_socket_of_our_own_is_judged_by_its_real_peer() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let stream = UnixStream::connect(&path).unwrap();
        // Our own server in our own (0700) temp dir.
        check(&stream, &path).unwrap();
    }
}
