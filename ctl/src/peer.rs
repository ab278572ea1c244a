//! Whom the client is talking to (libpq's `requirepeer`): before anything is sent, the
//! server behind the socket must run as root, as the client's own uid, or as the one other
//! user the client was told to trust (`--trust-server-user`), and a non-root server's
//! directory must be writable by nobody but its owner. A socket planted by another user (in
//! `/tmp`, in that user's own directory, at a path the user was tricked into passing) then
//! never receives an activation URL or forges an answer.
//!
//! Why these: the peer's uid is taken by the kernel when the server listened, so it cannot
//! be forged. Root already holds everything, and a server of the caller's own is the
//! caller. The daemon's other superuser, the user it runs as, is trusted only when named:
//! the uid of a path's directory owner says nothing about whom the caller meant, since any
//! user may make a directory of their own and hand out a path into it. Under systemd the
//! socket unit listens (as root, so the peer is root) in the root-owned `/run/compartment`,
//! whatever user the daemon then runs as; a user's own daemon listens in their own
//! `$XDG_RUNTIME_DIR/compartment`.

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Uid, User};

/// The option that names another user to trust, and its environment variable.
pub const TRUST_FLAG: &str = "--trust-server-user";
pub const TRUST_VAR: &str = "COMPARTMENT_TRUST_SERVER_USER";

/// A Unix user, by name and uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixUser {
    pub name: String,
    pub uid: u32,
}

impl UnixUser {
    /// The user called `name`, through NSS.
    pub fn by_name(name: &str) -> Result<UnixUser, UnknownUser> {
        match User::from_name(name) {
            Ok(Some(user)) => Ok(UnixUser {
                name: user.name,
                uid: user.uid.as_raw(),
            }),
            Ok(None) => Err(UnknownUser {
                name: name.to_owned(),
                source: None,
            }),
            Err(errno) => Err(UnknownUser {
                name: name.to_owned(),
                source: Some(io::Error::from(errno)),
            }),
        }
    }

    /// The name of `uid`, through NSS, when it has one.
    pub fn name_of(uid: u32) -> Option<String> {
        User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|user| user.name)
    }
}

/// A user to trust that NSS does not know.
#[derive(Debug)]
pub struct UnknownUser {
    pub name: String,
    /// Why the lookup failed, when it did rather than find nobody.
    pub source: Option<io::Error>,
}

impl fmt::Display for UnknownUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TRUST_FLAG} names {:?}, and there is no Unix user by that name",
            self.name
        )?;
        if let Some(source) = &self.source {
            write!(f, " (the user database: {source})")?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownUser {}

/// Whose servers the client talks to: root's, its own uid's, and one more user's when told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// The uid the client runs as: its effective uid, the one the server sees.
    pub own_uid: u32,
    /// The user `--trust-server-user` names.
    pub server_user: Option<UnixUser>,
}

impl Trust {
    /// Root and the uid this process runs as.
    pub fn own() -> Trust {
        Trust {
            own_uid: nix::unistd::geteuid().as_raw(),
            server_user: None,
        }
    }

    /// This trust, and `user`'s servers too.
    pub fn and_user(self, user: UnixUser) -> Trust {
        Trust {
            server_user: Some(user),
            ..self
        }
    }

    fn trusts(&self, uid: u32) -> bool {
        uid == 0
            || uid == self.own_uid
            || self
                .server_user
                .as_ref()
                .is_some_and(|user| user.uid == uid)
    }
}

/// Why the client refuses the server behind a socket.
#[derive(Debug)]
pub enum UntrustedServer {
    /// The server's uid is neither root, nor the client's own, nor the trusted user's.
    Stranger {
        path: PathBuf,
        server_uid: u32,
        /// The server uid's user name, when NSS has one.
        server_user: Option<String>,
        trust: Trust,
    },
    /// A non-root server in a directory others may write.
    OpenDirectory {
        path: PathBuf,
        dir: PathBuf,
        mode: u32,
    },
    /// Who serves, or how its directory may be written, cannot be told.
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
                path,
                server_uid,
                server_user,
                trust,
            } => {
                write!(
                    f,
                    "refusing to talk to {}: its server runs as uid {server_uid}",
                    path.display()
                )?;
                if let Some(name) = server_user {
                    write!(f, " ({name})")?;
                }
                write!(f, ", not root and not your own uid {}", trust.own_uid)?;
                if let Some(user) = &trust.server_user {
                    write!(
                        f,
                        ", nor {} (uid {}) whom {TRUST_FLAG} names",
                        user.name, user.uid
                    )?;
                }
                Ok(())
            }
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

impl UntrustedServer {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            UntrustedServer::Stranger {
                server_user: Some(name),
                ..
            } => Some(format!(
                "if that is your Compartment daemon (one run as its own user, say), trust it with \
                 {TRUST_FLAG} {name} or {TRUST_VAR}={name}; otherwise point --socket at your daemon's socket"
            )),
            UntrustedServer::Stranger {
                server_user: None, ..
            } => Some(
                "a server whose uid has no user name cannot be trusted; point --socket at your \
                 daemon's socket"
                    .to_owned(),
            ),
            UntrustedServer::OpenDirectory { dir, .. } => Some(format!(
                "make {} writable by its owner only (chmod go-w), or point --socket at a socket in such a directory",
                dir.display()
            )),
            UntrustedServer::Unknown { .. } => None,
        }
    }
}

/// Checks the server behind `stream`, connected at `path`; the uid it runs as when trusted.
pub fn check(stream: &UnixStream, path: &Path, trust: &Trust) -> Result<u32, UntrustedServer> {
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
    if server_uid == 0 {
        return Ok(server_uid);
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let meta = std::fs::metadata(dir).map_err(unknown("who may write its directory"))?;
    judge(path, dir, server_uid, meta.mode(), trust)
        .map(|()| server_uid)
        .map_err(|err| match err {
            UntrustedServer::Stranger {
                path,
                server_uid,
                trust,
                ..
            } => UntrustedServer::Stranger {
                path,
                server_uid,
                server_user: UnixUser::name_of(server_uid),
                trust,
            },
            other => other,
        })
}

/// The rule itself, on what [`check`] looked up (all but the server uid's name).
pub fn judge(
    path: &Path,
    dir: &Path,
    server_uid: u32,
    dir_mode: u32,
    trust: &Trust,
) -> Result<(), UntrustedServer> {
    if server_uid == 0 {
        return Ok(());
    }
    if !trust.trusts(server_uid) {
        return Err(UntrustedServer::Stranger {
            path: path.to_owned(),
            server_uid,
            server_user: None,
            trust: trust.clone(),
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

    fn trust(own_uid: u32, server_user: Option<(&str, u32)>) -> Trust {
        Trust {
            own_uid,
            server_user: server_user.map(|(name, uid)| UnixUser {
                name: name.to_owned(),
                uid,
            }),
        }
    }

    fn judged(server_uid: u32, dir_mode: u32, trust: &Trust) -> Result<(), String> {
        judge(
            Path::new("/d/s.sock"),
            Path::new("/d"),
            server_uid,
            dir_mode,
            trust,
        )
        .map_err(|err| err.to_string())
    }

    #[test]
    fn root_or_your_own_server_in_a_closed_directory() {
        let me = trust(1000, None);
        // The systemd socket, and root's daemon wherever it listens.
        assert_eq!(judged(0, 0o40755, &me), Ok(()));
        assert_eq!(judged(0, 0o41777, &me), Ok(()));
        // Your own daemon in your own runtime directory.
        assert_eq!(judged(1000, 0o40700, &me), Ok(()));
        assert_eq!(judged(1000, 0o40755, &me), Ok(()));
        // Another user's server, even in that user's own closed directory.
        assert_eq!(
            judged(1001, 0o40755, &me),
            Err("refusing to talk to /d/s.sock: its server runs as uid 1001, not root and not your own uid 1000".into())
        );
        // Root trusts nobody else either.
        assert_eq!(
            judged(1001, 0o40700, &trust(0, None)),
            Err("refusing to talk to /d/s.sock: its server runs as uid 1001, not root and not your own uid 0".into())
        );
        // Your own server, but in a directory others could have put the socket in.
        assert_eq!(
            judged(1000, 0o40775, &me),
            Err("refusing to talk to /d/s.sock: its directory /d is writable by its group (mode 0775), so anyone could have put the socket there".into())
        );
        assert!(judged(1000, 0o41777, &me).is_err());
    }

    #[test]
    fn a_user_named_to_trust_is_trusted_and_nobody_else() {
        let named = trust(1000, Some(("compartment", 999)));
        assert_eq!(judged(999, 0o40755, &named), Ok(()));
        assert_eq!(judged(1000, 0o40755, &named), Ok(()));
        assert_eq!(
            judged(1001, 0o40755, &named),
            Err("refusing to talk to /d/s.sock: its server runs as uid 1001, not root and not your own uid 1000, nor compartment (uid 999) whom --trust-server-user names".into())
        );
        assert!(judged(999, 0o40777, &named).is_err());
    }

    #[test]
    fn the_hint_says_how_to_trust_a_named_server() {
        let stranger = UntrustedServer::Stranger {
            path: PathBuf::from("/d/s.sock"),
            server_uid: 1001,
            server_user: Some("mallory".into()),
            trust: trust(1000, None),
        };
        assert_eq!(
            stranger.to_string(),
            "refusing to talk to /d/s.sock: its server runs as uid 1001 (mallory), not root and not your own uid 1000"
        );
        assert_eq!(
            stranger.hint().unwrap(),
            "if that is your Compartment daemon (one run as its own user, say), trust it with \
             --trust-server-user mallory or COMPARTMENT_TRUST_SERVER_USER=mallory; otherwise \
             point --socket at your daemon's socket"
        );
    }

    #[test]
    fn a_socket_of_our_own_is_judged_by_its_real_peer() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let stream = UnixStream::connect(&path).unwrap();
        // Our own server in our own (0700) temp dir.
        check(&stream, &path, &Trust::own()).unwrap();
        // Trusting another user takes nothing away.
        let root = UnixUser::by_name("root").unwrap();
        assert_eq!(root.uid, 0);
        check(&stream, &path, &Trust::own().and_user(root)).unwrap();
    }

    #[test]
    fn an_unknown_user_to_trust_is_named_in_the_error() {
        let err = UnixUser::by_name("cpt-no-such-user").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--trust-server-user names \"cpt-no-such-user\", and there is no Unix user by that name"
        );
    }
}
