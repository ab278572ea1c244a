//! Real Unix users for the tests, as an operator's host has them: created with `useradd` on
//! first use and found through NSS; deleted, or their uid handed to a new user, for the
//! scenarios that need it.

use std::fs::{File, OpenOptions};
use std::ops::RangeInclusive;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::unistd::{Group, Uid, User};

/// Every test user's name begins with this, so that they are recognizable on a host, and no
/// helper here ever creates or deletes a user the tests do not own.
pub const TEST_USER_PREFIX: &str = "cpt-";

/// The longest user name `useradd` accepts.
const MAX_NAME_LEN: usize = 32;

/// How long to keep retrying while another program holds the lock of `/etc/passwd`.
const PASSWD_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// `useradd` hands out uids up to `UID_MAX` (60000 on Debian) and 65534 is `nobody`: the
/// uids between belong to no user unless someone chose them by hand. The tests split them.
/// Users that a test deletes take their uids from this part, so that no `useradd` of
/// another test can take a uid while a test counts on it being free, or reused by the user
/// it chose.
const DELETABLE_UIDS: RangeInclusive<u32> = 60_001..=64_999;
/// [`uid_without_user`] finds its uids in this part.
const UNASSIGNED_UIDS: RangeInclusive<u32> = 65_000..=65_533;

/// The uid of `nobody`, the overflow user: it has a passwd entry, but stands for no one.
pub const NOBODY: u32 = 65_534;

/// A Unix user that exists on this host, as NSS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    /// Its primary group: the gid its CLI runs have.
    pub gid: u32,
}

impl TestUser {
    /// The user `name` (which begins with `cpt-`), created if it is missing: a system user
    /// with its own group, no home directory and the nologin shell. Idempotent, and safe
    /// when parallel tests and test binaries ask for the same user at once. Creating a user
    /// needs root. Tests running at once share these users, so none is ever deleted; a test
    /// that deletes a user asks [`TestUser::deletable`] for one of its own.
    #[track_caller]
    pub fn get(name: &str) -> TestUser {
        check_name(name);
        if let Some(user) = TestUser::lookup(name) {
            return user;
        }
        let _lock = users_lock();
        // Another thread or process may have created it while this one waited for the lock.
        if let Some(user) = TestUser::lookup(name) {
            return user;
        }
        create_locked(name, None)
    }

    /// The user called `name`, if NSS knows one.
    pub fn lookup(name: &str) -> Option<TestUser> {
        User::from_name(name).ok().flatten().map(TestUser::from)
    }

    /// The user that owns `uid`, if NSS knows one.
    pub fn by_uid(uid: u32) -> Option<TestUser> {
        User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(TestUser::from)
    }

    /// A user of one test's own, which that test may [`delete`](TestUser::delete) or give
    /// its uid to another name ([`reuse_uid`](TestUser::reuse_uid)). Created like
    /// [`TestUser::get`], but with a uid that `useradd` never hands out by itself, chosen
    /// from the name, so that a uid this test frees is not taken by a user another test
    /// creates meanwhile. Use a name no other test uses (with the process id in it when two
    /// runs of the test at once must not meet).
    #[track_caller]
    pub fn deletable(name: &str) -> TestUser {
        check_name(name);
        let _lock = users_lock();
        match TestUser::lookup(name) {
            Some(user) => {
                assert_deletable(&user);
                user
            }
            None => create_locked(name, Some(deletable_uid(name))),
        }
    }

    /// Deletes this user and its group with `userdel`, as an operator deletes an account:
    /// its uid then resolves to no user. Deleting a user that is gone already is no error.
    /// Only users from [`TestUser::deletable`] may be deleted.
    #[track_caller]
    pub fn delete(&self) {
        assert_deletable(self);
        let _lock = users_lock();
        delete_locked(&self.name);
    }

    /// The uid-reuse scenario: deletes this user (from [`TestUser::deletable`]), then
    /// creates `new_name` with the same uid, as a host does that hands a freed uid to its
    /// next user. Returns the new user, itself deletable; the uid now resolves to
    /// `new_name`. An earlier user called `new_name` with another uid is deleted first. Done
    /// under one hold of the lock, so that no other test user can take the uid in between.
    #[track_caller]
    pub fn reuse_uid(&self, new_name: &str) -> TestUser {
        assert_deletable(self);
        check_name(new_name);
        assert_ne!(self.name, new_name, "the uid goes to a different user name");
        let _lock = users_lock();
        delete_locked(&self.name);
        if let Some(earlier) = TestUser::lookup(new_name) {
            assert_deletable(&earlier);
            delete_locked(new_name);
        }
        if let Some(holder) = TestUser::by_uid(self.uid) {
            panic!(
                "uid {} belongs to {} already; it cannot go to {new_name}",
                self.uid, holder.name
            );
        }
        let user = create_locked(new_name, Some(self.uid));
        assert_eq!(user.uid, self.uid, "useradd --uid {} {new_name}", self.uid);
        user
    }
}

impl TestUser {
    /// Makes `group` this user's primary group (`usermod -g`); the user is one from
    /// [`TestUser::deletable`], whose groups no other test counts on.
    #[track_caller]
    pub fn set_primary_group(&self, group: &str) {
        assert_deletable(self);
        let _lock = users_lock();
        run_user_tool(
            "usermod",
            &["-g".to_owned(), group.to_owned(), self.name.clone()],
        );
    }
}

/// The group `group` (which begins with `cpt-`), created if it is missing, listing
/// `members` (test users) as its members, as `/etc/group` lists a service account's
/// supplementary groups. Returns its gid. Idempotent; needs root.
#[track_caller]
pub fn test_group(group: &str, members: &[&TestUser]) -> u32 {
    check_name(group);
    let _lock = users_lock();
    if Group::from_name(group).ok().flatten().is_none() {
        run_user_tool("groupadd", &["--system".to_owned(), group.to_owned()]);
    }
    for member in members {
        check_name(&member.name);
        run_user_tool(
            "usermod",
            &[
                "--append".to_owned(),
                "--groups".to_owned(),
                group.to_owned(),
                member.name.clone(),
            ],
        );
    }
    Group::from_name(group)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("groupadd created {group}, but NSS does not know it"))
        .gid
        .as_raw()
}

impl From<User> for TestUser {
    fn from(user: User) -> TestUser {
        TestUser {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }
    }
}

/// A uid that no Unix user owns (neither deleted nor `nobody`; just never assigned), for
/// the tests of callers the daemon cannot name.
#[track_caller]
pub fn uid_without_user() -> u32 {
    UNASSIGNED_UIDS
        .rev()
        .find(|&uid| TestUser::by_uid(uid).is_none())
        .unwrap_or_else(|| panic!("every uid in {UNASSIGNED_UIDS:?} has a user"))
}

/// The primary gid of the user that owns `uid`, if any.
pub fn primary_gid(uid: u32) -> Option<u32> {
    TestUser::by_uid(uid).map(|user| user.gid)
}

/// A uid in [`DELETABLE_UIDS`] for `name`: the first free one from a point the name
/// hashes to. The same name gets the same uid run after run, and two names almost never
/// the same one, so that a uid one test has just freed is not the next that another test's
/// new user takes. The caller holds the lock.
#[track_caller]
fn deletable_uid(name: &str) -> u32 {
    // FNV-1a: stable across builds, unlike std's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let (first, last) = (*DELETABLE_UIDS.start(), *DELETABLE_UIDS.end());
    let span = last - first + 1;
    let start = (hash % u64::from(span)) as u32;
    (0..span)
        .map(|i| first + (start + i) % span)
        .find(|&uid| TestUser::by_uid(uid).is_none())
        .unwrap_or_else(|| panic!("every uid in {DELETABLE_UIDS:?} has a user"))
}

#[track_caller]
fn assert_deletable(user: &TestUser) {
    check_name(&user.name);
    assert!(
        DELETABLE_UIDS.contains(&user.uid),
        "{} (uid {}) is shared by the tests and is never deleted: a test that deletes a user \
         or reuses its uid asks TestUser::deletable for one of its own",
        user.name,
        user.uid
    );
}

#[track_caller]
fn check_name(name: &str) {
    let rest = name.strip_prefix(TEST_USER_PREFIX).unwrap_or_else(|| {
        panic!("test user names begin with {TEST_USER_PREFIX:?}, so that the tests touch only their own users: {name:?}")
    });
    assert!(
        name.len() <= MAX_NAME_LEN
            && !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'),
        "a test user name is {TEST_USER_PREFIX} and lowercase letters, digits, - or _, at most \
         {MAX_NAME_LEN} characters in all: {name:?}"
    );
}

/// Holds the lock that serializes `useradd` and `userdel` across the threads of a test
/// binary and across test binaries running at once. An flock belongs to an open file
/// description, so two threads of one process exclude each other too. The lock is
/// released when the returned value is dropped.
#[track_caller]
fn users_lock() -> Flock<File> {
    let dir = Path::new("/run/lock");
    let dir = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let path: PathBuf = dir.join("compartment-e2e-users.lock");
    // Not following a symlink: the lock lives in a directory every user may write to.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(&path)
        .unwrap_or_else(|err| panic!("open the lock file {}: {err}", path.display()));
    Flock::lock(file, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, errno)| panic!("lock {}: {errno}", path.display()))
}

/// Creates `name` (with `uid`, or the next free system uid); the caller holds the lock.
#[track_caller]
fn create_locked(name: &str, uid: Option<u32>) -> TestUser {
    let nologin = ["/usr/sbin/nologin", "/sbin/nologin", "/bin/false"]
        .into_iter()
        .find(|shell| Path::new(shell).exists())
        .unwrap_or("/bin/false");
    let mut args = vec![
        "--system".to_owned(),
        "--no-create-home".to_owned(),
        "--home-dir".to_owned(),
        "/nonexistent".to_owned(),
        "--shell".to_owned(),
        nologin.to_owned(),
        "--comment".to_owned(),
        "compartment end-to-end tests".to_owned(),
    ];
    // A group left behind by an earlier `userdel` (it keeps a group another user shares)
    // would make `--user-group` fail: join it instead.
    if Group::from_name(name).ok().flatten().is_some() {
        args.extend(["--gid".to_owned(), name.to_owned()]);
    } else {
        args.push("--user-group".to_owned());
    }
    if let Some(uid) = uid {
        args.extend(["--uid".to_owned(), uid.to_string()]);
    }
    args.push(name.to_owned());
    run_user_tool("useradd", &args);
    TestUser::lookup(name)
        .unwrap_or_else(|| panic!("useradd created {name}, but NSS does not know it"))
}

/// Deletes `name` if it exists; the caller holds the lock.
#[track_caller]
fn delete_locked(name: &str) {
    if TestUser::lookup(name).is_some() {
        run_user_tool("userdel", &[name.to_owned()]);
    }
    assert!(
        TestUser::lookup(name).is_none(),
        "userdel ran, but NSS still knows {name}"
    );
}

/// Runs `useradd`, `userdel`, `groupadd` or `usermod` (from `/usr/sbin` when `PATH` lacks
/// it), retrying while another program holds the lock of the user database: these tools
/// refuse at once ("cannot lock /etc/passwd; try again later.") instead of waiting for it.
#[track_caller]
fn run_user_tool(tool: &str, args: &[String]) {
    let program = ["/usr/sbin", "/sbin"]
        .into_iter()
        .map(|dir| Path::new(dir).join(tool))
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(tool));
    let deadline = Instant::now() + PASSWD_LOCK_TIMEOUT;
    loop {
        let output = Command::new(&program)
            .args(args)
            .output()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run {}: {err} (Debian's passwd package provides it)",
                    program.display()
                )
            });
        if output.status.success() {
            return;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("lock") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        panic!(
            "{} {} failed with {}: {stderr}",
            program.display(),
            args.join(" "),
            output.status
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_user_names_are_checked() {
        check_name("cpt-alice");
        check_name("cpt-race-19");
        for bad in [
            "alice",
            "cpt-",
            "cpt-Alice",
            "cpt-a b",
            &format!("cpt-{}", "a".repeat(29)),
        ] {
            let result = std::panic::catch_unwind(|| check_name(bad));
            assert!(result.is_err(), "{bad:?} was accepted");
        }
    }

    crate::root_test!(
        threads_asking_for_a_missing_user_at_once_get_the_one_same_user,
        "to create and delete Unix users",
        || {
            // The process id keeps two runs of this test at once apart.
            let name: &'static str = format!("cpt-kit-conc-{}", std::process::id()).leak();
            let threads: Vec<_> = (0..8)
                .map(|_| std::thread::spawn(move || TestUser::deletable(name)))
                .collect();
            let users: Vec<TestUser> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            assert!(users.iter().all(|user| *user == users[0]), "{users:#?}");
            let user = &users[0];
            assert_eq!(user.name, name);
            assert_eq!(TestUser::by_uid(user.uid).as_ref(), Some(user));
            let entry = User::from_name(name).unwrap().unwrap();
            assert_eq!(entry.shell, Path::new("/usr/sbin/nologin"));
            assert!(
                !entry.dir.exists(),
                "no home directory: {}",
                entry.dir.display()
            );
            user.delete();
            assert_eq!(TestUser::lookup(name), None);
        }
    );

    crate::root_test!(
        a_deleted_users_uid_goes_to_a_new_name,
        "to create and delete Unix users",
        || {
            // The process id keeps two runs of this test at once apart.
            let old_name = format!("cpt-kit-old-{}", std::process::id());
            let new_name = format!("cpt-kit-new-{}", std::process::id());
            let before = TestUser::deletable(&old_name);
            assert!(DELETABLE_UIDS.contains(&before.uid), "{before:?}");
            assert_eq!(TestUser::deletable(&old_name), before);

            let after = before.reuse_uid(&new_name);
            assert_eq!(after.uid, before.uid);
            assert_eq!(after.name, new_name);
            assert_eq!(TestUser::lookup(&old_name), None);
            assert_eq!(TestUser::by_uid(before.uid), Some(after.clone()));
            assert_eq!(primary_gid(before.uid), Some(after.gid));

            // Deleting leaves the uid to no one; deleting again is no error.
            after.delete();
            after.delete();
            assert_eq!(TestUser::by_uid(after.uid), None);
            assert_eq!(primary_gid(after.uid), None);
        }
    );

    crate::root_test!(
        shared_users_are_never_deleted,
        "to create and delete Unix users",
        || {
            let shared = TestUser::get("cpt-admin");
            let result = std::panic::catch_unwind(|| shared.delete());
            assert!(result.is_err(), "{shared:?} was deleted");
            assert_eq!(TestUser::lookup("cpt-admin"), Some(shared));
        }
    );

    #[test]
    fn an_unassigned_uid_has_no_user() {
        let uid = uid_without_user();
        assert!(UNASSIGNED_UIDS.contains(&uid));
        assert_eq!(TestUser::by_uid(uid), None);
    }
}
