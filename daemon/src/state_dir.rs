//! The state directory and database file the daemon trusts, checked before the store
//! opens, as PostgreSQL checks its data directory and sshd's `StrictModes` its files.
//!
//! - A directory the daemon creates is 0700, and a database file it creates is 0600,
//!   whatever the umask.
//! - A directory owned by another non-root user, or writable by its group or others, is
//!   refused: whoever can write it can replace the database under the daemon.
//! - A symlinked state directory is followed once, only when the link belongs to root or
//!   the daemon's own user (systemd's `DynamicUser=` makes `/var/lib/compartment` a
//!   root-owned link to `/var/lib/private/compartment`); the checks apply to the real
//!   directory, and the store opens that real path, so a link changed later redirects
//!   nothing.
//! - A symlinked database file is refused; so is one owned by another non-root user. An
//!   existing database readable by others is made 0600, with a log line: it holds members'
//!   e-mails and the audit trail.
//!
//! Once the real directory is known to be writable by nobody but its owner (the daemon's
//! user or root), nobody else can swap the file between these checks and the store's open.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of a state directory the daemon creates.
pub const DIR_MODE: u32 = 0o700;
/// The mode of a database file the daemon creates, and what a too-open one is set to.
pub const FILE_MODE: u32 = 0o600;

/// Why the state directory or database file is refused.
#[derive(Debug)]
pub enum StateDirError {
    NotADirectory(PathBuf),
    /// A symlinked state directory whose link another non-root user made.
    UntrustedLink {
        path: PathBuf,
        owner: u32,
    },
    /// The real directory belongs to another non-root user.
    Owner {
        path: PathBuf,
        owner: u32,
        daemon_uid: u32,
    },
    /// The real directory is writable by its group or others.
    Writable {
        path: PathBuf,
        mode: u32,
    },
    DatabaseSymlink(PathBuf),
    DatabaseNotAFile(PathBuf),
    DatabaseOwner {
        path: PathBuf,
        owner: u32,
        daemon_uid: u32,
    },
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for StateDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateDirError::NotADirectory(path) => write!(
                f,
                "the state directory {} is not a directory; pass another --state-dir",
                path.display()
            ),
            StateDirError::UntrustedLink { path, owner } => write!(
                f,
                "the state directory {} is a symbolic link made by uid {owner}; compartmentd follows one only when root or its own user made it: remove the link or pass the real directory as --state-dir",
                path.display()
            ),
            StateDirError::Owner {
                path,
                owner,
                daemon_uid,
            } => write!(
                f,
                "the state directory {} belongs to uid {owner}, neither root nor the user compartmentd runs as (uid {daemon_uid}); whoever owns it could replace the database: chown it or pass another --state-dir",
                path.display()
            ),
            StateDirError::Writable { path, mode } => write!(
                f,
                "the state directory {} is writable by {} (mode {:04o}); anyone who can write it could replace the database: chmod go-w {}",
                path.display(),
                if mode & 0o020 != 0 { "its group" } else { "others" },
                mode & 0o7777,
                path.display()
            ),
            StateDirError::DatabaseSymlink(path) => write!(
                f,
                "the database {} is a symbolic link, which compartmentd does not follow: put the database file itself there",
                path.display()
            ),
            StateDirError::DatabaseNotAFile(path) => write!(
                f,
                "the database {} is not a regular file; move it away",
                path.display()
            ),
            StateDirError::DatabaseOwner {
                path,
                owner,
                daemon_uid,
            } => write!(
                f,
                "the database {} belongs to uid {owner}, neither root nor the user compartmentd runs as (uid {daemon_uid}); chown it if it is yours",
                path.display()
            ),
            StateDirError::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for StateDirError {}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateDirError + 'a {
    move |source| StateDirError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

fn trusted_owner(owner: u32, daemon_uid: u32) -> bool {
    owner == 0 || owner == daemon_uid
}

/// Checks (creating when missing) the state directory `dir` and the database file
/// `database` in it, for a daemon running as `daemon_uid`. Returns the real directory,
/// which the store must open.
pub fn prepare(dir: &Path, database: &str, daemon_uid: u32) -> Result<PathBuf, StateDirError> {
    let real = prepare_dir(dir, daemon_uid)?;
    prepare_database(&real.join(database), daemon_uid)?;
    Ok(real)
}

/// The checks of [`prepare`] on the directory alone (created 0700 when missing), for a
/// daemon whose database is elsewhere (PostgreSQL): it keeps its audit signing key there.
pub fn prepare_dir(dir: &Path, daemon_uid: u32) -> Result<PathBuf, StateDirError> {
    let real = real_dir(dir, daemon_uid)?;
    let meta = fs::metadata(&real).map_err(io_err("look at the state directory", &real))?;
    if !meta.is_dir() {
        return Err(StateDirError::NotADirectory(real));
    }
    if !trusted_owner(meta.uid(), daemon_uid) {
        return Err(StateDirError::Owner {
            path: real,
            owner: meta.uid(),
            daemon_uid,
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(StateDirError::Writable {
            path: real,
            mode: meta.mode(),
        });
    }
    Ok(real)
}

/// The directory `dir` names, created 0700 when missing; a symlink is followed only when
/// root or the daemon's user owns it.
fn real_dir(dir: &Path, daemon_uid: u32) -> Result<PathBuf, StateDirError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            if !trusted_owner(meta.uid(), daemon_uid) {
                return Err(StateDirError::UntrustedLink {
                    path: dir.to_owned(),
                    owner: meta.uid(),
                });
            }
        }
        Ok(meta) if !meta.is_dir() => return Err(StateDirError::NotADirectory(dir.to_owned())),
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => create_dir(dir)?,
        Err(err) => return Err(io_err("look at the state directory", dir)(err)),
    }
    fs::canonicalize(dir).map_err(io_err("resolve the state directory", dir))
}

fn create_dir(dir: &Path) -> Result<(), StateDirError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_err("create the directory above", parent))?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {
            // The umask may have taken bits from the mode asked for; set it outright.
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
                .map_err(io_err("set the mode of", dir))?;
            tracing::info!(state_dir = %dir.display(), "created the state directory");
            Ok(())
        }
        // Created by someone else in the meantime: it is checked like any existing one.
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(io_err("create the state directory", dir)(err)),
    }
}

fn prepare_database(path: &Path, daemon_uid: u32) -> Result<(), StateDirError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return create_database(path),
        Err(err) => return Err(io_err("look at the database", path)(err)),
    };
    if meta.file_type().is_symlink() {
        return Err(StateDirError::DatabaseSymlink(path.to_owned()));
    }
    if !meta.is_file() {
        return Err(StateDirError::DatabaseNotAFile(path.to_owned()));
    }
    if !trusted_owner(meta.uid(), daemon_uid) {
        return Err(StateDirError::DatabaseOwner {
            path: path.to_owned(),
            owner: meta.uid(),
            daemon_uid,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE))
            .map_err(io_err("set the mode of", path))?;
        tracing::warn!(
            database = %path.display(),
            "the database was readable or writable by others (mode {mode:04o}); made it {FILE_MODE:04o}"
        );
    }
    Ok(())
}

/// Creates the empty database file 0600; the store initializes an empty file as a new
/// database. `O_NOFOLLOW` and `O_EXCL`: nothing that appeared at the path meanwhile is
/// written through.
fn create_database(path: &Path) -> Result<(), StateDirError> {
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path);
    match created {
        Ok(file) => file
            .set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .map_err(io_err("set the mode of", path)),
        Err(err) => Err(io_err("create the database", path)(err)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::os::unix::fs::symlink;

    const DB: &str = crate::store::DATABASE_FILE;

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn is_root() -> bool {
        me() == 0
    }

    #[test]
    fn a_missing_directory_and_database_are_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/state");
        let real = prepare(&dir, DB, me()).unwrap();
        assert_eq!(real, fs::canonicalize(&dir).unwrap());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(DB)), 0o600);
        assert_eq!(fs::metadata(dir.join(DB)).unwrap().len(), 0);
        // A second run finds them as it left them.
        prepare(&dir, DB, me()).unwrap();
        assert_eq!(mode(&dir.join(DB)), 0o600);
    }

    #[test]
    fn a_directory_others_can_write_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        for (bits, who) in [
            (0o770, "its group"),
            (0o703, "others"),
            (0o1777, "its group"),
        ] {
            let dir = tmp.path().join(format!("state-{bits:o}"));
            fs::create_dir(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(bits)).unwrap();
            let err = prepare(&dir, DB, me()).unwrap_err();
            let real = fs::canonicalize(&dir).unwrap();
            assert_eq!(
                err.to_string(),
                format!(
                    "the state directory {} is writable by {who} (mode {bits:04o}); anyone who can write it could replace the database: chmod go-w {}",
                    real.display(),
                    real.display()
                )
            );
            assert_eq!(mode(&dir), bits);
            assert!(
                !dir.join(DB).exists(),
                "nothing is created in a refused directory"
            );
        }
    }

    #[test]
    fn an_existing_readable_directory_is_kept_and_a_too_open_database_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let db = dir.join(DB);
        fs::write(&db, b"data").unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
        prepare(&dir, DB, me()).unwrap();
        assert_eq!(mode(&dir), 0o755, "tightens nothing it did not create");
        assert_eq!(mode(&db), 0o600);
        assert_eq!(fs::read(&db).unwrap(), b"data");
    }

    #[test]
    fn a_symlinked_database_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let elsewhere = tmp.path().join("elsewhere.redb");
        fs::write(&elsewhere, b"").unwrap();
        symlink(&elsewhere, dir.join(DB)).unwrap();
        let err = prepare(&dir, DB, me()).unwrap_err();
        let real = fs::canonicalize(&dir).unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "the database {} is a symbolic link, which compartmentd does not follow: put the database file itself there",
                real.join(DB).display()
            )
        );
        // A dangling link is refused too, not written through.
        fs::remove_file(&elsewhere).unwrap();
        assert!(matches!(
            prepare(&dir, DB, me()).unwrap_err(),
            StateDirError::DatabaseSymlink(_)
        ));
        assert!(!elsewhere.exists());
    }

    #[test]
    fn a_symlinked_state_directory_of_our_own_is_resolved_once() {
        let tmp = tempfile::tempdir().unwrap();
        let private = tmp.path().join("private");
        fs::create_dir(&private).unwrap();
        let real = private.join("compartment");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
        let link = tmp.path().join("compartment");
        symlink(&real, &link).unwrap();
        let resolved = prepare(&link, DB, me()).unwrap();
        assert_eq!(resolved, fs::canonicalize(&real).unwrap());
        assert_eq!(mode(&real.join(DB)), 0o600);
    }

    #[test]
    fn another_users_directory_link_or_database_is_refused() {
        if !is_root() {
            // CI runs as root: there, a skip would be a test that cannot fail.
            assert!(
                std::env::var_os("CI").is_none_or(|value| value.is_empty()),
                "another_users_directory_link_or_database_is_refused needs root to chown, and \
                 CI is set: refusing to pass by skipping"
            );
            eprintln!(
                "SKIPPED: another_users_directory_link_or_database_is_refused needs root to chown"
            );
            return;
        }
        let other = 61_234;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("theirs");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&dir, Some(other), Some(other)).unwrap();
        let err = prepare(&dir, DB, 0).unwrap_err();
        assert!(
            matches!(err, StateDirError::Owner { owner, daemon_uid: 0, .. } if owner == other),
            "{err}"
        );
        assert!(!dir.join(DB).exists());

        let mine = tmp.path().join("mine");
        fs::create_dir(&mine).unwrap();
        fs::set_permissions(&mine, fs::Permissions::from_mode(0o700)).unwrap();
        let link = tmp.path().join("planted");
        symlink(&mine, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(other), Some(other)).unwrap();
        let err = prepare(&link, DB, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the state directory {} is a symbolic link made by uid {other}; compartmentd follows one only when root or its own user made it: remove the link or pass the real directory as --state-dir",
                link.display()
            )
        );
        assert!(!mine.join(DB).exists());

        fs::write(mine.join(DB), b"").unwrap();
        std::os::unix::fs::chown(mine.join(DB), Some(other), Some(other)).unwrap();
        assert!(matches!(
            prepare(&mine, DB, 0).unwrap_err(),
            StateDirError::DatabaseOwner { owner, .. } if owner == other
        ));
        // The daemon's own (non-root) user may own both.
        std::os::unix::fs::chown(&mine, Some(other), Some(other)).unwrap();
        prepare(&mine, DB, other).unwrap();
    }
}
