//! The daemon's listening socket: inherited from systemd (socket activation), or bound
//! here with mode 0666 (authorization is by peer credentials, not file mode); a stale
//! socket file is replaced, a live daemon on it is never displaced, and on the way out the
//! file is removed only while it is still the one this daemon bound.
//!
//! Binding never changes a mode by path, since a path can be swapped for a symbolic link
//! between two system calls (an attacker who did so between `bind` and `chmod` made a
//! file of root's 0666). Instead:
//!
//! - The path is walked from `/` one entry at a time through directory handles
//!   (`openat(O_PATH | O_NOFOLLOW)`, symbolic links read and followed by hand), and the
//!   owner and mode of every directory and link on the way are judged by
//!   [`compartmentctl::dir_trust`]: nobody but root and the daemon's user may be able to
//!   change what the path names. Otherwise the daemon refuses to start.
//! - Missing directories are made with `mkdirat` on the handle of their parent, with mode
//!   0755 under a umask of 0022; a directory that exists keeps its mode.
//! - The stale socket is looked at with `fstatat(AT_SYMLINK_NOFOLLOW)` and removed with
//!   `unlinkat`, both on the directory's handle; the socket is made by `bind` under a umask
//!   of 0111, so it is 0666 from the start and nothing is chmodded after.
//!
//! `bind` and `connect` take a path, not a directory handle. The work runs in a thread of
//! its own that first leaves the process's file-system context (`unshare(CLONE_FS)`):
//! its umask and working directory are then its alone, so it changes directory to the
//! handle and binds the bare file name, and no other thread ever sees its umask. Where
//! `unshare` is refused (a container's seccomp filter), the thread names the file as
//! `/proc/self/fd/<handle>/<name>`, which resolves through the open directory too, and
//! sets the process's umask for the few calls that create something; the daemon binds at
//! start-up, before any task of its own runs, so no other thread creates files then.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Component, Path, PathBuf};

use compartmentctl::dir_trust::{self, Entry, Untrusted};
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fstat, fstatat, mkdirat, umask, FileStat, Mode, SFlag};
use nix::unistd::{fchdir, unlinkat, UnlinkatFlags};

#[derive(Debug)]
pub enum BindError {
    /// Another daemon answers on the socket.
    InUse(PathBuf),
    /// Something that is not a socket sits at the path.
    NotASocket(PathBuf),
    /// Someone besides root and the daemon's user could change what the path names.
    Untrusted {
        socket: PathBuf,
        daemon_uid: u32,
        reason: Untrusted,
    },
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
            BindError::Untrusted {
                socket,
                daemon_uid,
                reason,
            } => write!(
                f,
                "refusing to listen on {}: {reason}, so another user could put a link or a socket of their own in its place; {}",
                socket.display(),
                remedy(reason, *daemon_uid)
            ),
            BindError::Io { path, source } => {
                write!(f, "cannot listen on {}: {source}", path.display())
            }
            BindError::Activation(detail) => write!(f, "socket activation: {detail}"),
        }
    }
}

impl std::error::Error for BindError {}

/// What to do about an untrusted way to the socket, as the end of a sentence.
fn remedy(reason: &Untrusted, daemon_uid: u32) -> String {
    let (writers, example) = if daemon_uid == 0 {
        ("root".to_owned(), "/run/compartment")
    } else {
        (
            format!("root or uid {daemon_uid}"),
            "$XDG_RUNTIME_DIR/compartment",
        )
    };
    let elsewhere =
        format!("pass a --socket in a directory only {writers} can change (such as {example})");
    match reason {
        Untrusted::Writable { path, mode, .. } if mode & 0o1000 != 0 => format!(
            "{elsewhere}; a new directory inside {} will do",
            path.display()
        ),
        Untrusted::Writable { path, .. } => {
            format!("chmod go-w {}, or {elsewhere}", path.display())
        }
        Untrusted::Owner {
            kind: dir_trust::Kind::Symlink,
            ..
        } => elsewhere,
        Untrusted::Owner { path, .. } => format!(
            "{elsewhere}, or chown {daemon_uid} {} if it is meant for compartmentd",
            path.display()
        ),
    }
}

/// The name (`FileDescriptorName=`) of the activation page's socket among those systemd
/// passes: `compartmentd-page.socket`'s.
pub const PAGE_FD_NAME: &str = "page";

/// What systemd passed (`LISTEN_FDS`/`LISTEN_PID`/`LISTEN_FDNAMES`): the socket unit's Unix
/// socket, and the activation page's TCP socket when `compartmentd-page.socket` is on. The
/// daemon then binds and unlinks nothing: the socket units own them, and the page is
/// served from a socket the daemon never made, so its unit's network sandbox stays shut.
#[derive(Debug, Default)]
pub struct Inherited {
    pub socket: Option<UnixListener>,
    pub page: Option<std::net::TcpListener>,
}

/// The sockets systemd passed, if any (see [`Inherited`]).
#[allow(unsafe_code)]
pub fn inherited() -> Result<Inherited, BindError> {
    let fds =
        sd_notify::listen_fds_with_names().map_err(|err| BindError::Activation(err.to_string()))?;
    let mut inherited = Inherited::default();
    for (fd, name) in fds {
        if name == PAGE_FD_NAME {
            if inherited.page.is_some() {
                return Err(BindError::Activation(
                    "expected one page socket, got more; compartmentd-page.socket should have one ListenStream=".to_owned(),
                ));
            }
            // SAFETY: the service manager handed this descriptor to this process
            // (LISTEN_PID is ours), and nothing else in the process owns it.
            let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
            let activation_err = |err: io::Error| {
                BindError::Activation(format!(
                    "descriptor {fd} (named {PAGE_FD_NAME}) is not a listening TCP socket: {err}"
                ))
            };
            listener.local_addr().map_err(activation_err)?;
            listener.set_nonblocking(true).map_err(activation_err)?;
            inherited.page = Some(listener);
            continue;
        }
        if inherited.socket.is_some() {
            return Err(BindError::Activation(
                "expected one socket, got more; the socket unit should have one ListenStream="
                    .to_owned(),
            ));
        }
        // SAFETY: as above.
        let listener = unsafe { UnixListener::from_raw_fd(fd) };
        let activation_err = |err: io::Error| {
            BindError::Activation(format!(
                "descriptor {fd} is not a listening Unix socket: {err}"
            ))
        };
        listener.local_addr().map_err(activation_err)?;
        listener.set_nonblocking(true).map_err(activation_err)?;
        inherited.socket = Some(listener);
    }
    Ok(inherited)
}

/// Binds `path`, creating its directory if needed, for a daemon running as this process's
/// effective uid.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    bind_file(path).map(|(listener, _)| listener)
}

/// [`bind`], and the identity of the file it made, for [`remove`].
pub fn bind_file(path: &Path) -> Result<(UnixListener, SocketFile), BindError> {
    bind_as(path, nix::unistd::geteuid().as_raw())
}

/// [`bind_file`] for a daemon whose own user is `daemon_uid`: the user besides root whose
/// directories the socket's path may pass through (see the module's doc).
pub fn bind_as(path: &Path, daemon_uid: u32) -> Result<(UnixListener, SocketFile), BindError> {
    let io_err = |source| BindError::Io {
        path: path.to_owned(),
        source,
    };
    let Some(name) = path.file_name() else {
        return Err(io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path names no file",
        )));
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let dir = std::path::absolute(dir).map_err(io_err)?;
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("socket-bind".to_owned())
            .spawn_scoped(scope, || bind_in_own_thread(path, &dir, name, daemon_uid))
            .map_err(io_err)?;
        worker.join().unwrap_or_else(|_| {
            Err(io_err(io::Error::other(
                "the thread that binds the socket panicked",
            )))
        })
    })
}

/// The umask under which `mkdirat(0o755)` makes a directory 0755.
const DIR_UMASK: u32 = 0o022;
/// The umask under which `bind` makes the socket 0666.
const SOCKET_UMASK: u32 = 0o111;
/// The mode new directories are made with.
const DIR_MODE: u32 = 0o755;
/// At most this many symbolic links are followed on the way (the kernel's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Whether this thread has a file-system context (umask, working directory) of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// `unshare(CLONE_FS)` succeeded: umask and working directory are this thread's.
    Own,
    /// Shared with the process: names go through `/proc/self/fd`, and the umask is set
    /// only around the calls that create something.
    Shared,
}

impl Context {
    fn enter() -> Context {
        match nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS) {
            Ok(()) => Context::Own,
            Err(err) => {
                tracing::debug!(error = %err, "no file-system context of its own for binding the socket; naming it through /proc/self/fd");
                Context::Shared
            }
        }
    }

    /// Runs `create` under `mask`, then puts the umask back.
    fn with_umask<T>(self, mask: u32, create: impl FnOnce() -> T) -> T {
        let old = umask(Mode::from_bits_truncate(mask));
        let out = create();
        umask(old);
        out
    }

    /// What `bind` and `connect` are given to name `name` in `dir`, which in the `Own`
    /// context is the working directory.
    fn address(self, dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
        match self {
            Context::Own => PathBuf::from(name),
            Context::Shared => Path::new("/proc/self/fd")
                .join(dir.as_raw_fd().to_string())
                .join(name),
        }
    }
}

fn bind_in_own_thread(
    path: &Path,
    dir: &Path,
    name: &OsStr,
    daemon_uid: u32,
) -> Result<(UnixListener, SocketFile), BindError> {
    let io_err = |source| BindError::Io {
        path: path.to_owned(),
        source,
    };
    let context = Context::enter();
    let dir_fd = open_socket_dir(dir, daemon_uid, context).map_err(|err| match err {
        DirError::Untrusted(reason) => BindError::Untrusted {
            socket: path.to_owned(),
            daemon_uid,
            reason,
        },
        DirError::Io(source) => io_err(source),
    })?;
    if context == Context::Own {
        fchdir(&dir_fd).map_err(|errno| io_err(errno.into()))?;
    }
    let listener = bind_in(path, dir_fd.as_fd(), name, context)?;
    let stat = fstatat(&dir_fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|errno| io_err(errno.into()))?;
    if !is_type(&stat, SFlag::S_IFSOCK) {
        return Err(io_err(io::Error::other(
            "the socket was replaced as soon as it was bound",
        )));
    }
    listener.set_nonblocking(true).map_err(io_err)?;
    let file = SocketFile {
        path: path.to_owned(),
        dev: stat.st_dev,
        ino: stat.st_ino,
    };
    Ok((listener, file))
}

/// Replaces a stale socket `name` in `dir`, then binds it 0666.
fn bind_in(
    path: &Path,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    context: Context,
) -> Result<UnixListener, BindError> {
    let io_err = |source| BindError::Io {
        path: path.to_owned(),
        source,
    };
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) if !is_type(&stat, SFlag::S_IFSOCK) => {
            return Err(BindError::NotASocket(path.to_owned()))
        }
        Ok(_) => {
            if UnixStream::connect(context.address(dir, name)).is_ok() {
                return Err(BindError::InUse(path.to_owned()));
            }
            // Nobody answers: a daemon that died without cleaning up left it.
            tracing::info!(socket = %path.display(), "replacing a stale socket");
            match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(errno) => return Err(io_err(errno.into())),
            }
        }
        Err(Errno::ENOENT) => {}
        Err(errno) => return Err(io_err(errno.into())),
    }
    context
        .with_umask(SOCKET_UMASK, || {
            UnixListener::bind(context.address(dir, name))
        })
        .map_err(io_err)
}

fn is_type(stat: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == kind
}

/// Why the socket's directory cannot be used.
#[derive(Debug)]
enum DirError {
    Untrusted(Untrusted),
    Io(io::Error),
}

impl From<Errno> for DirError {
    fn from(errno: Errno) -> DirError {
        DirError::Io(errno.into())
    }
}

/// One step still to take on the way to the directory.
#[derive(Debug)]
enum Step {
    Name(OsString),
    Parent,
}

fn steps(path: &Path) -> impl Iterator<Item = Step> + '_ {
    path.components().filter_map(|component| match component {
        Component::Normal(name) => Some(Step::Name(name.to_owned())),
        Component::ParentDir => Some(Step::Parent),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// `O_PATH | O_NOFOLLOW`: a handle on the entry itself, a symbolic link included, through
/// which nothing is read or written.
fn open_entry(parent: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        parent,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn directory_entry(path: &Path, stat: &FileStat) -> Entry {
    Entry::directory(path, stat.st_uid, stat.st_mode)
}

/// The handle of the directory `dir` (absolute), reached from `/` without following any
/// link but by hand, with every entry on the way judged; missing directories are made
/// 0755, after the way to them is judged as if they were already the daemon's.
fn open_socket_dir(dir: &Path, daemon_uid: u32, context: Context) -> Result<OwnedFd, DirError> {
    let root = openat(
        AT_FDCWD,
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let root_entry = directory_entry(Path::new("/"), &fstat(&root)?);
    let mut way = vec![root_entry.clone()];
    // The directories entered, each with its path as walked; the first is `/`.
    let mut entered: Vec<(OwnedFd, PathBuf)> = vec![(root, PathBuf::from("/"))];
    let mut todo: VecDeque<Step> = steps(dir).collect();
    let mut links = 0;
    let mut missing = Vec::new();
    while let Some(step) = todo.pop_front() {
        let name = match step {
            Step::Parent => {
                if entered.len() > 1 {
                    entered.pop();
                }
                continue;
            }
            Step::Name(name) => name,
        };
        let (parent, parent_path) = entered
            .last()
            .map(|(fd, p)| (fd.as_fd(), p.clone()))
            .ok_or(Errno::EINVAL)?;
        let path = parent_path.join(&name);
        let fd = match open_entry(parent, &name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                missing.push(name);
                for step in todo.drain(..) {
                    match step {
                        Step::Name(name) => missing.push(name),
                        // Not made up lexically: the directory the `..` would leave does
                        // not exist.
                        Step::Parent => return Err(Errno::ENOENT.into()),
                    }
                }
                break;
            }
            Err(errno) => return Err(errno.into()),
        };
        let stat = fstat(&fd)?;
        if is_type(&stat, SFlag::S_IFDIR) {
            way.push(directory_entry(&path, &stat));
            entered.push((fd, path));
        } else if is_type(&stat, SFlag::S_IFLNK) {
            links += 1;
            if links > MAX_LINKS {
                return Err(Errno::ELOOP.into());
            }
            way.push(Entry::symlink(&path, stat.st_uid));
            let target = PathBuf::from(readlinkat(&fd, "")?);
            if target.is_absolute() {
                entered.truncate(1);
                way.push(root_entry.clone());
            }
            for step in steps(&target).collect::<Vec<_>>().into_iter().rev() {
                todo.push_front(step);
            }
        } else {
            return Err(DirError::Io(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", path.display()),
            )));
        }
    }
    // Judged before anything is made: the new directories as they will be.
    let (mut parent, mut parent_path) = entered.pop().ok_or(Errno::EINVAL)?;
    let planned = missing.iter().scan(parent_path.clone(), |path, name| {
        path.push(name);
        Some(Entry::directory(
            path.clone(),
            daemon_uid,
            0o040000 | DIR_MODE,
        ))
    });
    let planned: Vec<Entry> = way.iter().cloned().chain(planned).collect();
    dir_trust::judge(&planned, daemon_uid).map_err(DirError::Untrusted)?;
    if missing.is_empty() {
        return Ok(parent);
    }
    for name in missing {
        let made = context.with_umask(DIR_UMASK, || {
            mkdirat(
                &parent,
                name.as_os_str(),
                Mode::from_bits_truncate(DIR_MODE),
            )
        });
        match made {
            // Made meanwhile by whoever may write the parent: judged below like the rest.
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(errno.into()),
        }
        let fd = openat(
            &parent,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        parent_path.push(&name);
        way.push(directory_entry(&parent_path, &fstat(&fd)?));
        parent = fd;
    }
    // And again as they are: what the handle holds is what is judged.
    dir_trust::judge(&way, daemon_uid).map_err(DirError::Untrusted)?;
    Ok(parent)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    /// Runs `body` in a thread whose umask is `mask` and nobody else's.
    fn with_own_umask<T: Send>(mask: u32, body: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).unwrap();
                    umask(Mode::from_bits_truncate(mask));
                    let out = body();
                    assert_eq!(
                        umask(Mode::from_bits_truncate(mask)).bits(),
                        mask,
                        "the umask was left changed"
                    );
                    out
                })
                .join()
                .unwrap()
        })
    }

    #[test]
    fn the_socket_is_0666_and_new_directories_0755_whatever_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        for (i, mask) in [0o000, 0o022, 0o077, 0o777].into_iter().enumerate() {
            let path = tmp.path().join(format!("{i}/run/s.sock"));
            let (listener, file) = with_own_umask(mask, || bind_as(&path, me()).unwrap());
            assert_eq!(
                (
                    mode(path.parent().unwrap().parent().unwrap()),
                    mode(path.parent().unwrap()),
                    mode(&path)
                ),
                (0o755, 0o755, 0o666),
                "umask {mask:03o}"
            );
            assert_eq!(file, SocketFile::at(&path).unwrap());
            drop(listener);
        }
    }

    #[test]
    fn through_proc_with_the_process_umask_set_only_for_the_bind() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.sock");
        let listener = with_own_umask(0o077, || {
            let dir = openat(
                AT_FDCWD,
                tmp.path(),
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .unwrap();
            bind_in(&path, dir.as_fd(), OsStr::new("s.sock"), Context::Shared).unwrap()
        });
        assert_eq!(mode(&path), 0o666);
        assert!(UnixStream::connect(&path).is_ok());
        drop(listener);
    }

    #[test]
    fn a_stale_socket_is_replaced_a_live_one_kept_and_anything_else_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.sock");
        let (first, _) = bind_as(&path, me()).unwrap();
        assert!(matches!(bind_as(&path, me()), Err(BindError::InUse(p)) if p == path));
        drop(first);
        let (_second, file) = bind_as(&path, me()).unwrap();
        assert_eq!(file, SocketFile::at(&path).unwrap());

        let planted = tmp.path().join("planted.sock");
        let target = tmp.path().join("target");
        fs::write(&target, b"keep").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
        symlink(&target, &planted).unwrap();
        assert!(matches!(
            bind_as(&planted, me()),
            Err(BindError::NotASocket(p)) if p == planted
        ));
        assert_eq!(mode(&target), 0o600);
        assert_eq!(fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn a_directory_others_can_write_is_refused_with_nothing_made() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let path = open.join("run/s.sock");
        let err = bind_as(&path, me()).unwrap_err();
        let writers = if me() == 0 {
            "root".to_owned()
        } else {
            format!("root or uid {}", me())
        };
        let example = if me() == 0 {
            "/run/compartment"
        } else {
            "$XDG_RUNTIME_DIR/compartment"
        };
        assert_eq!(
            err.to_string(),
            format!(
                "refusing to listen on {}: {} is writable by its group and others (mode 0777, owner uid {}), so another user could put a link or a socket of their own in its place; chmod go-w {}, or pass a --socket in a directory only {writers} can change (such as {example})",
                path.display(),
                open.display(),
                me(),
                open.display()
            )
        );
        assert_eq!(
            fs::read_dir(&open).unwrap().count(),
            0,
            "something was made"
        );
        assert_eq!(mode(&open), 0o777);
        // The socket straight in a sticky directory such as /tmp.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        let err = bind_as(&open.join("s.sock"), me()).unwrap_err();
        assert!(
            err.to_string().ends_with(&format!(
                "; pass a --socket in a directory only {writers} can change (such as {example}); a new directory inside {} will do",
                open.display()
            )),
            "{err}"
        );
        // A directory of its own inside it is fine.
        let (_listener, _) = bind_as(&open.join("mine/s.sock"), me()).unwrap();
        assert_eq!(mode(&open.join("mine")), 0o755);
    }

    #[test]
    fn links_and_dot_dots_on_the_way_are_followed_by_hand() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        fs::create_dir(&real).unwrap();
        symlink("real", tmp.path().join("rel")).unwrap();
        symlink(&real, tmp.path().join("abs")).unwrap();
        for (i, via) in ["rel", "abs", "real/../rel"].into_iter().enumerate() {
            let name = format!("s{i}.sock");
            let (_listener, file) = bind_as(&tmp.path().join(via).join(&name), me()).unwrap();
            assert_eq!(
                file,
                SocketFile::at(&tmp.path().join(via).join(&name)).unwrap()
            );
            assert_eq!(mode(&real.join(&name)), 0o666, "through {via}");
        }
        // A loop ends in an error, not a hang.
        symlink("loop", tmp.path().join("loop")).unwrap();
        let err = bind_as(&tmp.path().join("loop/s.sock"), me()).unwrap_err();
        assert!(
            matches!(&err, BindError::Io { source, .. } if source.raw_os_error() == Some(nix::libc::ELOOP)),
            "{err}"
        );
        // So does a file on the way.
        fs::write(tmp.path().join("file"), b"").unwrap();
        let err = bind_as(&tmp.path().join("file/s.sock"), me()).unwrap_err();
        assert!(
            err.to_string().ends_with("file is not a directory"),
            "{err}"
        );
    }
}
