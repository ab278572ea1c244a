//! The host's users, as NSS knows them (so LDAP and sssd users work): uid ↔ name, with a
//! short cache so that a request never waits on a directory lookup it made seconds ago.
//!
//! A uid with no user (deleted, unmapped in a user namespace, or the kernel's overflow uid
//! `nobody`) resolves to nothing: it can never be bound to an account.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::store::UnixUser;

/// The name the kernel gives uids it cannot map, and Debian's user for them.
const NOBODY: &str = "nobody";
/// The kernel's overflow uid (`/proc/sys/kernel/overflowuid`), 65534 unless changed.
const OVERFLOW_UID: u32 = 65534;
/// How long a lookup is trusted: a uid deleted and reused, a user renamed or moved out of a
/// group, is noticed within this by answers about others, and by a long-lived connection
/// about its own caller.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries kept at most in each table; a table starts over when full rather than grow.
pub const CACHE_CAP: usize = 4096;

/// Where user names come from: the system's NSS in the daemon, a table in tests.
///
/// Two kinds of question: about the caller of a connection, answered fresh
/// ([`Directory::name_of_now`]), so that a uid handed to a new user inherits nothing; and
/// about others, which services ask thousands of times a second, answered from a cache at
/// most [`CACHE_TTL`] old.
pub trait Directory: Send + Sync + 'static {
    /// The name of `uid`'s user, if it has one that may hold an account (cached).
    fn name_of(&self, uid: u32) -> Option<String>;
    /// [`Directory::name_of`] when it can answer without asking NSS (a fresh cache entry);
    /// `None` when it would have to ask.
    fn cached_name_of(&self, uid: u32) -> Option<Option<String>> {
        let _ = uid;
        None
    }
    /// [`Directory::name_of`] asked of NSS now, whatever the cache holds: who a connection's
    /// caller is. The answer does not go into the cache of answers about others.
    fn name_of_now(&self, uid: u32) -> Option<String> {
        self.name_of(uid)
    }
    /// The user called `name`, if there is one that may hold an account (cached).
    fn user_named(&self, name: &str) -> Option<UnixUser>;
    /// [`Directory::user_named`] when it can answer without asking NSS; `None` when it
    /// would have to ask.
    fn cached_user_named(&self, name: &str) -> Option<Option<UnixUser>> {
        let _ = name;
        None
    }
    /// [`Directory::user_named`] asked of NSS now: for what a change records (a binding, an
    /// invitation for one user), which should not rest on an answer seconds old.
    fn user_named_now(&self, name: &str) -> Option<UnixUser> {
        self.user_named(name)
    }
    /// Whether `uid`'s user is in the group `gid`: the primary group of its passwd entry,
    /// or a group that lists it (NSS's `getgrouplist`). What a process runs with (its gid,
    /// setgid programs, `sg`) does not count: only what the user database says.
    fn in_group(&self, uid: u32, gid: u32) -> bool {
        let _ = (uid, gid);
        false
    }
    /// [`Directory::in_group`] when it can answer without asking NSS; `None` when it would
    /// have to ask.
    fn cached_in_group(&self, uid: u32, gid: u32) -> Option<bool> {
        let _ = (uid, gid);
        None
    }
    /// Every group `uid`'s user is in, as [`Directory::in_group`] counts them (cached): what
    /// `org map-group` mappings are matched against. Empty for a uid without a user.
    fn groups_of(&self, uid: u32) -> Arc<[u32]> {
        let _ = uid;
        Arc::from([])
    }
    /// [`Directory::groups_of`] when it can answer without asking NSS.
    fn cached_groups_of(&self, uid: u32) -> Option<Arc<[u32]>> {
        let _ = uid;
        None
    }
    /// The group called `name`: its gid and name, asked of NSS now (for a mapping that a
    /// change records).
    fn group_named(&self, name: &str) -> Option<(u32, String)> {
        let _ = name;
        None
    }
    /// The users the group `gid` lists as members, by name (NSS's `gr_mem`: not the users
    /// whose primary group it is).
    fn group_members(&self, gid: u32) -> Vec<String> {
        let _ = gid;
        Vec::new()
    }
}

/// True when `uid`/`name` is a real user that may hold an account.
fn usable(uid: u32, name: &str) -> bool {
    uid != OVERFLOW_UID && name != NOBODY && !name.is_empty()
}

/// NSS through libc's `getpwuid_r`/`getpwnam_r`, uncached.
pub fn lookup_uid(uid: u32) -> Option<String> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()??;
    usable(uid, &user.name).then_some(user.name)
}

fn lookup_name(name: &str) -> Option<UnixUser> {
    let user = nix::unistd::User::from_name(name).ok()??;
    let uid = user.uid.as_raw();
    usable(uid, &user.name).then_some(UnixUser {
        uid,
        name: user.name,
    })
}

/// The groups of `uid`'s user as NSS lists them: its passwd entry's primary group and the
/// groups that list its name. None for a uid without a user.
fn lookup_groups(uid: u32) -> Vec<u32> {
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return Vec::new();
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return vec![user.gid.as_raw()];
    };
    nix::unistd::getgrouplist(&name, user.gid)
        .map(|groups| groups.into_iter().map(|gid| gid.as_raw()).collect())
        .unwrap_or_else(|_| vec![user.gid.as_raw()])
}

/// Answers kept for a while: each with when it was asked, at most [`CACHE_CAP`] of them.
struct Cache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    fn new(ttl: Duration) -> Cache<K, V> {
        Cache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `key`, if one was asked less than the lifetime ago.
    fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, value) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Keeps `value`, asked at `at`, unless a later answer is kept already.
    fn put(&self, key: K, at: Instant, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.get(&key).is_some_and(|(kept, _)| *kept > at) {
            return;
        }
        if entries.len() >= CACHE_CAP && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (at, value));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The names of connections' callers by uid, each as NSS gave it when a connection of that
/// uid opened or a request found the last answer older than [`CACHE_TTL`]: never an answer
/// given about someone else, so that a uid handed to a new user is the new user from its
/// first connection on.
pub struct CallerNames(Cache<u32, Option<Arc<str>>>);

impl Default for CallerNames {
    fn default() -> CallerNames {
        CallerNames::with_ttl(CACHE_TTL)
    }
}

impl CallerNames {
    /// Names trusted for `ttl` on a long-lived connection.
    pub fn with_ttl(ttl: Duration) -> CallerNames {
        CallerNames(Cache::new(ttl))
    }

    /// `uid`'s name, if a connection's lookup gave it less than the lifetime ago.
    pub fn fresh(&self, uid: u32) -> Option<Option<Arc<str>>> {
        self.0.get(&uid)
    }

    /// Keeps `name`, which NSS gave for `uid` at `at`.
    pub fn put(&self, uid: u32, at: Instant, name: Option<Arc<str>>) {
        self.0.put(uid, at, name);
    }
}

/// The system's users, answers about others cached for [`CACHE_TTL`].
pub struct SystemUsers {
    by_uid: Cache<u32, Option<String>>,
    by_name: Cache<String, Option<UnixUser>>,
    /// Each uid's groups.
    groups: Cache<u32, Arc<[u32]>>,
    /// How many times NSS was asked, for the tests that show what the cache saves.
    asked: AtomicUsize,
}

impl SystemUsers {
    pub fn new() -> Arc<SystemUsers> {
        SystemUsers::with_ttl(CACHE_TTL)
    }

    /// With answers trusted for `ttl` rather than [`CACHE_TTL`].
    pub fn with_ttl(ttl: Duration) -> Arc<SystemUsers> {
        Arc::new(SystemUsers {
            by_uid: Cache::new(ttl),
            by_name: Cache::new(ttl),
            groups: Cache::new(ttl),
            asked: AtomicUsize::new(0),
        })
    }

    /// How many times NSS has been asked.
    pub fn nss_lookups(&self) -> usize {
        self.asked.load(Ordering::Relaxed)
    }

    fn ask<T>(&self, lookup: impl FnOnce() -> T) -> T {
        self.asked.fetch_add(1, Ordering::Relaxed);
        lookup()
    }
}

impl Directory for SystemUsers {
    fn cached_name_of(&self, uid: u32) -> Option<Option<String>> {
        self.by_uid.get(&uid)
    }

    fn name_of(&self, uid: u32) -> Option<String> {
        if let Some(hit) = self.cached_name_of(uid) {
            return hit;
        }
        let now = Instant::now();
        let name = self.ask(|| lookup_uid(uid));
        self.by_uid.put(uid, now, name.clone());
        name
    }

    fn name_of_now(&self, uid: u32) -> Option<String> {
        self.ask(|| lookup_uid(uid))
    }

    fn cached_user_named(&self, name: &str) -> Option<Option<UnixUser>> {
        self.by_name.get(name)
    }

    fn user_named(&self, name: &str) -> Option<UnixUser> {
        if let Some(hit) = self.cached_user_named(name) {
            return hit;
        }
        let now = Instant::now();
        let user = self.ask(|| lookup_name(name));
        self.by_name.put(name.to_owned(), now, user.clone());
        user
    }

    fn user_named_now(&self, name: &str) -> Option<UnixUser> {
        self.ask(|| lookup_name(name))
    }

    fn cached_in_group(&self, uid: u32, gid: u32) -> Option<bool> {
        Some(self.groups.get(&uid)?.contains(&gid))
    }

    fn in_group(&self, uid: u32, gid: u32) -> bool {
        self.groups_of(uid).contains(&gid)
    }

    fn cached_groups_of(&self, uid: u32) -> Option<Arc<[u32]>> {
        self.groups.get(&uid)
    }

    fn group_named(&self, name: &str) -> Option<(u32, String)> {
        self.ask(|| {
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .map(|group| (group.gid.as_raw(), group.name))
        })
    }

    fn group_members(&self, gid: u32) -> Vec<String> {
        self.ask(|| {
            nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
                .ok()
                .flatten()
                .map(|group| group.mem)
                .unwrap_or_default()
        })
    }

    fn groups_of(&self, uid: u32) -> Arc<[u32]> {
        if let Some(hit) = self.cached_groups_of(uid) {
            return hit;
        }
        let now = Instant::now();
        let groups: Arc<[u32]> = Arc::from(self.ask(|| lookup_groups(uid)));
        self.groups.put(uid, now, groups.clone());
        groups
    }
}

/// A fixed table of users, for tests: every answer is fresh, and each question counts as a
/// lookup.
#[derive(Default)]
pub struct FakeUsers {
    users: Mutex<HashMap<u32, String>>,
    /// Each uid's primary group, when it is not the uid itself.
    primary: Mutex<HashMap<u32, u32>>,
    /// The groups that list a user, by name.
    groups: Mutex<HashMap<String, Vec<u32>>>,
    /// Groups by name.
    group_names: Mutex<HashMap<String, u32>>,
    asked: AtomicUsize,
}

impl FakeUsers {
    pub fn new(users: &[(u32, &str)]) -> Arc<FakeUsers> {
        let fake = FakeUsers::default();
        for (uid, name) in users {
            fake.set(*uid, Some(name));
        }
        Arc::new(fake)
    }

    /// Lists the user called `name` in the group `gid`.
    pub fn add_to_group(&self, name: &str, gid: u32) {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups.entry(name.to_owned()).or_default().push(gid);
    }

    /// Names the group `gid`, for [`Directory::group_named`].
    pub fn name_group(&self, name: &str, gid: u32) {
        let mut names = self
            .group_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        names.insert(name.to_owned(), gid);
    }

    /// Makes `gid` the primary group of `uid`'s passwd entry (by default, the gid equal to
    /// the uid).
    pub fn set_primary_group(&self, uid: u32, gid: u32) {
        let mut primary = self.primary.lock().unwrap_or_else(PoisonError::into_inner);
        primary.insert(uid, gid);
    }

    /// Gives `uid` a user called `name`, or (with `None`) deletes its user.
    pub fn set(&self, uid: u32, name: Option<&str>) {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        match name {
            Some(name) => users.insert(uid, name.to_owned()),
            None => users.remove(&uid),
        };
    }

    /// How many questions the table has answered.
    pub fn lookups(&self) -> usize {
        self.asked.load(Ordering::Relaxed)
    }

    fn lookup_uid(&self, uid: u32) -> Option<String> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        users.get(&uid).filter(|name| usable(uid, name)).cloned()
    }
}

impl Directory for FakeUsers {
    fn name_of(&self, uid: u32) -> Option<String> {
        self.lookup_uid(uid)
    }

    fn name_of_now(&self, uid: u32) -> Option<String> {
        self.lookup_uid(uid)
    }

    fn user_named(&self, name: &str) -> Option<UnixUser> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        users
            .iter()
            .find(|(uid, n)| n.as_str() == name && usable(**uid, n))
            .map(|(uid, n)| UnixUser {
                uid: *uid,
                name: n.clone(),
            })
    }

    fn in_group(&self, uid: u32, gid: u32) -> bool {
        self.groups_of(uid).contains(&gid)
    }

    fn group_named(&self, name: &str) -> Option<(u32, String)> {
        let names = self
            .group_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        names.get(name).map(|gid| (*gid, name.to_owned()))
    }

    fn group_members(&self, gid: u32) -> Vec<String> {
        let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let mut users: Vec<String> = groups
            .iter()
            .filter(|(_, gids)| gids.contains(&gid))
            .map(|(name, _)| name.clone())
            .collect();
        users.sort();
        users
    }

    /// Not counted as a lookup: the tests count the questions about names.
    fn groups_of(&self, uid: u32) -> Arc<[u32]> {
        let name = {
            let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
            users.get(&uid).filter(|name| usable(uid, name)).cloned()
        };
        let Some(name) = name else {
            return Arc::from([]);
        };
        let primary = self.primary.lock().unwrap_or_else(PoisonError::into_inner);
        let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all = vec![primary.get(&uid).copied().unwrap_or(uid)];
        all.extend(groups.get(&name).into_iter().flatten().copied());
        Arc::from(all)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nobody_and_missing_users_resolve_to_nothing() {
        assert_eq!(lookup_uid(0).as_deref(), Some("root"));
        assert_eq!(lookup_uid(OVERFLOW_UID), None);
        assert_eq!(lookup_uid(3_999_999_999), None);
        assert_eq!(lookup_name("root").unwrap().uid, 0);
        assert_eq!(lookup_name(NOBODY), None);
        assert_eq!(lookup_name("no-such-user-here"), None);
    }

    #[test]
    fn groups_come_from_the_user_database_not_the_process() {
        let users = SystemUsers::new();
        // root's passwd entry names group 0.
        assert!(users.in_group(0, 0));
        assert!(!users.in_group(0, 3_999_999_999));
        // A group that lists nobody and is not root's primary group.
        let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap();
        assert!(!users.in_group(0, nogroup.gid.as_raw()));
        // A uid without a user is in no group, not even one equal to its number.
        assert!(!users.in_group(3_999_999_999, 3_999_999_999));
        assert_eq!(lookup_groups(3_999_999_999), Vec::<u32>::new());
    }

    #[test]
    fn the_cache_answers_within_its_lifetime() {
        let users = SystemUsers::new();
        assert_eq!(users.name_of(0).as_deref(), Some("root"));
        // A planted entry is what the next lookup within the lifetime sees.
        users
            .by_uid
            .entries
            .lock()
            .unwrap()
            .insert(0, (Instant::now(), Some("planted".into())));
        assert_eq!(users.name_of(0).as_deref(), Some("planted"));
        // The caller's own question goes to NSS whatever the cache holds.
        assert_eq!(users.name_of_now(0).as_deref(), Some("root"));
        users
            .by_uid
            .entries
            .lock()
            .unwrap()
            .insert(0, (Instant::now() - CACHE_TTL, Some("planted".into())));
        assert_eq!(users.name_of(0).as_deref(), Some("root"));
    }

    #[test]
    fn names_are_cached_like_uids() {
        let users = SystemUsers::new();
        assert_eq!(users.user_named("root").unwrap().uid, 0);
        assert_eq!(users.user_named("no-such-user-here"), None);
        assert_eq!(users.nss_lookups(), 2);
        // Within the lifetime, both answers (the missing user too) come from the cache.
        for _ in 0..10 {
            assert_eq!(users.user_named("root").unwrap().uid, 0);
            assert_eq!(users.user_named("no-such-user-here"), None);
        }
        assert_eq!(users.nss_lookups(), 2);
        assert_eq!(
            users.cached_user_named("root").unwrap().unwrap().name,
            "root"
        );
        // Past it, NSS is asked again.
        let short = SystemUsers::with_ttl(Duration::ZERO);
        short.user_named("root");
        short.user_named("root");
        assert_eq!(short.nss_lookups(), 2);
        assert_eq!(short.cached_user_named("root"), None);
    }

    #[test]
    fn name_of_now_neither_reads_nor_fills_the_cache() {
        let users = SystemUsers::new();
        assert_eq!(users.name_of_now(0).as_deref(), Some("root"));
        assert_eq!(users.name_of_now(0).as_deref(), Some("root"));
        assert_eq!(users.nss_lookups(), 2);
        assert_eq!(users.cached_name_of(0), None);
    }

    #[test]
    fn each_cache_is_bounded() {
        let cache = Cache::new(CACHE_TTL);
        for key in 0..CACHE_CAP + 10 {
            cache.put(key, Instant::now(), ());
        }
        assert!(cache.len() <= CACHE_CAP, "{} entries", cache.len());
        assert_eq!(cache.get(&(CACHE_CAP + 9)), Some(()));
        // An answer older than the one kept does not replace it.
        let later = Instant::now();
        cache.put(1, later, ());
        let by_name: Cache<&str, u32> = Cache::new(CACHE_TTL);
        by_name.put("a", later, 2);
        by_name.put("a", later - Duration::from_secs(1), 1);
        assert_eq!(by_name.get("a"), Some(2));
    }
}
