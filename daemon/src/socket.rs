//! The daemon's listening socket: inherited from systemd (socket activation), or bound
//! here with mode 0666 (authorization is by peer credentials, not file mode); a stale
//! socket file is replaced, a live daemon on it is never displaced, and on the way out the
//! file is removed only while it is still the one this daemon bound.

use std::fmt;
use std::io;
use std::os::fd::FromRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum BindError {
    /// Another daemon answers on the socket.
    InUse(PathBuf),
    /// Something that is not a socket sits at the path.
    NotASocket(PathBuf),
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// systemd passed sockets we cannot use.
    Activation(String),
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::InUse(path) => write!(
                f,
                "another compartmentd is already listening on {}; stop it first, or pass a different --socket",
                path.display()
            ),
            BindError::NotASocket(path) => write!(
                f,
                "{} exists and is not a socket; move it away or pass a different --socket",
                path.display()
            ),
            BindError::Io { path, source } => {
                write!(f, "cannot listen on {}: {source}", path.display())
            }
            BindError::Activation(detail) => write!(f, "socket activation: {detail}"),
        }
    }
}

impl std::error::Error for BindError {}

/// The listening socket systemd passed (`LISTEN_FDS`/`LISTEN_PID`), if any. The daemon
/// then binds and unlinks nothing: the socket unit owns the path.
pub fn inherited() -> Result<Option<UnixListener>, BindError> {
    let mut fds = sd_notify::listen_fds().map_err(|err| BindError::Activation(err.to_string()))?;
    let fd = match (fds.next(), fds.len()) {
        (None, _) => return Ok(None),
        (Some(fd), 0) => fd,
        (Some(_), more) => {
            return Err(BindError::Activation(format!(
                "expected one socket, got {}; the socket unit should have one ListenStream=",
                more + 1
            )))
        }
    };
    // SAFETY: the service manager handed this descriptor to this process (LISTEN_PID is
    // ours), and nothing else in the process owns it.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    let activation_err = |err: io::Error| {
        BindError::Activation(format!(
            "descriptor {fd} is not a listening Unix socket: {err}"
        ))
    };
    listener.local_addr().map_err(activation_err)?;
    listener.set_nonblocking(true).map_err(activation_err)?;
    Ok(Some(listener))
}

/// Binds `path`, creating its directory if needed.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    let io_err = |source| BindError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_err)?;
            // Every local user must reach the socket, and none but its owner may put
            // anything beside it (the CLI refuses a server in a directory others can
            // write), whatever the umask made of it.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(io_err)?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(BindError::NotASocket(path.to_owned()))
        }
        Ok(_) => {
            if UnixStream::connect(path).is_ok() {
                return Err(BindError::InUse(path.to_owned()));
            }
            // Nobody answers: a daemon that died without cleaning up left it.
            tracing::info!(socket = %path.display(), "replacing a stale socket");
            std::fs::remove_file(path).map_err(io_err)?;
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_err(err)),
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(io_err)?;
    listener.set_nonblocking(true).map_err(io_err)?;
    Ok(listener)
}

/// The socket file this daemon bound: its path and the device and inode it had then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketFile {
    pub path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// What is at `path` now (not following a symlink).
    pub fn at(path: &Path) -> io::Result<SocketFile> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// [`bind`], and the identity of the file it made, for [`remove`].
pub fn bind_file(path: &Path) -> Result<(UnixListener, SocketFile), BindError> {
    let listener = bind(path)?;
    let file = SocketFile::at(path).map_err(|source| BindError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok((listener, file))
}

/// Removes the socket file on the way out, so clients see "not running" at once, but only
/// while it is the file this daemon bound: a socket another daemon has bound there since,
/// or anything else put at the path, is left alone.
pub fn remove(bound: &SocketFile) {
    let path = &bound.path;
    match SocketFile::at(path) {
        Ok(now) if now == *bound => {
            if let Err(err) = std::fs::remove_file(path) {
                if err.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(socket = %path.display(), error = %err, "could not remove the socket");
                }
            }
        }
        Ok(_) => tracing::info!(
            socket = %path.display(),
            "the socket path now holds another file; leaving it in place"
        ),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(socket = %path.display(), error = %err, "could not look at the socket")
        }
    }
}
