//! Whether a path to a directory can be changed by nobody but root and one trusted user:
//! the rule the daemon applies before it listens in a directory, as sshd's `StrictModes`
//! applies one to the files it reads.
//!
//! Whoever can rename, remove or create an entry anywhere on the way from `/` to a
//! directory decides what that path names: they can put a symbolic link, or a directory
//! of their own, where a program expects its own. So every entry met on the way (each
//! directory, and each symbolic link followed, as the kernel follows it) must satisfy:
//!
//! 1. its owner is root or the trusted user (the owner of a directory may do anything in
//!    it, and the owner of a link may replace it);
//! 2. a directory is writable by neither its group nor others (mode `& 0o022 == 0`), with
//!    one exception: a directory with the sticky bit (`/tmp`, mode 1777) may be, when it is
//!    not the last directory and the entry under it on the way is owned by root or the
//!    trusted user. In a sticky directory only an entry's owner, the directory's owner and
//!    root may rename or remove the entry, so others can add names beside it but cannot
//!    touch it: `/tmp/ours` stays ours. The last directory gets no such exception: others
//!    could create the very name that is to be made in it.
//!
//! A symbolic link's own mode means nothing on Linux, so only its owner is judged. The
//! condition on a sticky directory's child is rule 1 applied to that child, so a refusal
//! names the child (`/tmp/x belongs to uid 1001`), the entry to fix.

use std::fmt;
use std::path::{Path, PathBuf};

/// Group- or other-writable.
const WRITABLE_BY_OTHERS: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// What an entry on the way is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    Symlink,
}

/// One entry met on the way to a directory: its path as walked, and what `lstat`/`fstat`
/// said of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: Kind,
    pub owner: u32,
    /// `st_mode`; the file type bits are ignored.
    pub mode: u32,
}

impl Entry {
    pub fn directory(path: impl Into<PathBuf>, owner: u32, mode: u32) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Directory,
            owner,
            mode,
        }
    }

    pub fn symlink(path: impl Into<PathBuf>, owner: u32) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Symlink,
            owner,
            mode: 0o777,
        }
    }
}

/// Why a path is refused: the first entry on the way that someone else could change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    /// An entry that belongs to a user who is neither root nor the trusted user.
    Owner {
        path: PathBuf,
        kind: Kind,
        owner: u32,
        mode: u32,
        trusted_uid: u32,
    },
    /// A directory its group or others may write (and the sticky bit does not save).
    Writable {
        path: PathBuf,
        owner: u32,
        mode: u32,
    },
}

impl Untrusted {
    /// The entry refused.
    pub fn path(&self) -> &Path {
        match self {
            Untrusted::Owner { path, .. } | Untrusted::Writable { path, .. } => path,
        }
    }
}

impl fmt::Display for Untrusted {
    /// One clause, to be put in a sentence that says what was refused.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Untrusted::Owner {
                path,
                kind: Kind::Symlink,
                owner,
                trusted_uid,
                ..
            } => write!(
                f,
                "{} is a symbolic link of uid {owner}, neither root nor uid {trusted_uid}",
                path.display()
            ),
            Untrusted::Owner {
                path,
                kind: Kind::Directory,
                owner,
                mode,
                trusted_uid,
            } => write!(
                f,
                "{} belongs to uid {owner} (mode {:04o}), neither root nor uid {trusted_uid}",
                path.display(),
                mode & 0o7777
            ),
            Untrusted::Writable { path, owner, mode } => write!(
                f,
                "{} is writable by {} (mode {:04o}, owner uid {owner})",
                path.display(),
                writers(*mode),
                mode & 0o7777
            ),
        }
    }
}

fn writers(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and others",
        (true, false) => "its group",
        _ => "others",
    }
}

fn trusted(owner: u32, trusted_uid: u32) -> bool {
    owner == 0 || owner == trusted_uid
}

/// Judges `way`: every entry met from `/` down to the directory, in order, the last being
/// the directory itself (a directory, not a link). `trusted_uid` is the user besides root
/// whose entries may be on the way (the daemon's own). See the module's rule.
pub fn judge(way: &[Entry], trusted_uid: u32) -> Result<(), Untrusted> {
    for (i, entry) in way.iter().enumerate() {
        if !trusted(entry.owner, trusted_uid) {
            return Err(Untrusted::Owner {
                path: entry.path.clone(),
                kind: entry.kind,
                owner: entry.owner,
                mode: entry.mode,
                trusted_uid,
            });
        }
        if entry.kind == Kind::Symlink || entry.mode & WRITABLE_BY_OTHERS == 0 {
            continue;
        }
        // The entry under it is held to rule 1 in the next round, which is what makes the
        // sticky bit protect it; the last directory has none to protect.
        if entry.mode & STICKY != 0 && i + 1 < way.len() {
            continue;
        }
        return Err(Untrusted::Writable {
            path: entry.path.clone(),
            owner: entry.owner,
            mode: entry.mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const DAEMON: u32 = 998;
    const OTHER: u32 = 1001;

    fn dir(path: &str, owner: u32, mode: u32) -> Entry {
        Entry::directory(path, owner, 0o40000 | mode)
    }

    fn judged(way: &[Entry]) -> Result<(), String> {
        judge(way, DAEMON).map_err(|err| err.to_string())
    }

    #[test]
    fn the_default_directories_are_trusted() {
        // /run/compartment, made by systemd or by root's daemon.
        let system = [dir("/", 0, 0o755), dir("/run", 0, 0o755)];
        assert_eq!(
            judged(&[system.as_slice(), &[dir("/run/compartment", 0, 0o755)]].concat()),
            Ok(())
        );
        // ... or owned by the (dynamic) user the daemon runs as.
        assert_eq!(
            judged(&[system.as_slice(), &[dir("/run/compartment", DAEMON, 0o755)]].concat()),
            Ok(())
        );
        // $XDG_RUNTIME_DIR/compartment of a developer's own daemon.
        assert_eq!(
            judged(&[
                dir("/", 0, 0o755),
                dir("/run", 0, 0o755),
                dir("/run/user", 0, 0o755),
                dir("/run/user/998", DAEMON, 0o700),
                dir("/run/user/998/compartment", DAEMON, 0o755),
            ]),
            Ok(())
        );
        // A temp dir of one's own in /tmp.
        assert_eq!(
            judged(&[
                dir("/", 0, 0o755),
                dir("/tmp", 0, 0o1777),
                dir("/tmp/tmp.x1", DAEMON, 0o700),
            ]),
            Ok(())
        );
    }

    #[test]
    fn a_directory_others_can_write_is_refused_wherever_it_is_on_the_way() {
        assert_eq!(
            judged(&[
                dir("/", 0, 0o755),
                dir("/srv", 0, 0o777),
                dir("/srv/c", 0, 0o755)
            ]),
            Err("/srv is writable by its group and others (mode 0777, owner uid 0)".into())
        );
        assert_eq!(
            judged(&[dir("/", 0, 0o755), dir("/srv", 0, 0o775)]),
            Err("/srv is writable by its group (mode 0775, owner uid 0)".into())
        );
        assert_eq!(
            judged(&[dir("/", 0, 0o757), dir("/srv", 0, 0o755)]),
            Err("/ is writable by others (mode 0757, owner uid 0)".into())
        );
        assert_eq!(
            judged(&[dir("/", 0, 0o755), dir("/srv", DAEMON, 0o703)]),
            Err("/srv is writable by others (mode 0703, owner uid 998)".into())
        );
    }

    #[test]
    fn another_users_entry_is_refused_even_when_closed() {
        assert_eq!(
            judged(&[
                dir("/", 0, 0o755),
                dir("/home", 0, 0o755),
                dir("/home/eve", OTHER, 0o700),
                dir("/home/eve/c", DAEMON, 0o755),
            ]),
            Err("/home/eve belongs to uid 1001 (mode 0700), neither root nor uid 998".into())
        );
        // The last directory too.
        assert!(judged(&[dir("/", 0, 0o755), dir("/srv", OTHER, 0o755)]).is_err());
    }

    #[test]
    fn a_sticky_directory_is_passed_only_towards_an_entry_others_cannot_rename() {
        let tmp = dir("/tmp", 0, 0o1777);
        // Ours under /tmp: fine, for root's daemon and the daemon's user alike.
        for owner in [0, DAEMON] {
            assert_eq!(
                judged(&[dir("/", 0, 0o755), tmp.clone(), dir("/tmp/c", owner, 0o755)]),
                Ok(())
            );
        }
        // Someone else's directory under /tmp: they may swap what is inside.
        assert_eq!(
            judged(&[dir("/", 0, 0o755), tmp.clone(), dir("/tmp/c", OTHER, 0o755)]),
            Err("/tmp/c belongs to uid 1001 (mode 0755), neither root nor uid 998".into())
        );
        // A symbolic link someone else put in /tmp.
        assert_eq!(
            judged(&[
                dir("/", 0, 0o755),
                tmp.clone(),
                Entry::symlink("/tmp/c", OTHER),
                dir("/run", 0, 0o755),
            ]),
            Err("/tmp/c is a symbolic link of uid 1001, neither root nor uid 998".into())
        );
        // The socket's own directory may not be sticky and open: others could take the
        // name first.
        assert_eq!(
            judged(&[dir("/", 0, 0o755), tmp.clone()]),
            Err("/tmp is writable by its group and others (mode 1777, owner uid 0)".into())
        );
        // Nor is a sticky directory of another user's passed.
        assert!(judged(&[
            dir("/", 0, 0o755),
            dir("/tmp", OTHER, 0o1777),
            dir("/tmp/c", 0, 0o755)
        ])
        .is_err());
        // Without the sticky bit, a writable directory is refused even above ours.
        assert!(judged(&[
            dir("/", 0, 0o755),
            dir("/tmp", 0, 0o777),
            dir("/tmp/c", 0, 0o755)
        ])
        .is_err());
        // A sticky directory only its group may write, above ours: fine as well.
        assert_eq!(
            judged(&[
                dir("/", 0, 0o755),
                dir("/srv", 0, 0o1775),
                dir("/srv/c", 0, 0o755)
            ]),
            Ok(())
        );
    }

    #[test]
    fn links_of_root_or_ours_are_followed_and_their_mode_ignored() {
        // /var/run -> /run, as on Debian.
        assert_eq!(
            judged(&[
                dir("/", 0, 0o755),
                dir("/var", 0, 0o755),
                Entry::symlink("/var/run", 0),
                dir("/", 0, 0o755),
                dir("/run", 0, 0o755),
                dir("/run/compartment", DAEMON, 0o755),
            ]),
            Ok(())
        );
    }
}
