//! The host's users, as NSS knows them (so LDAP and sssd users work): uid ↔ name, with a
//! short cache so that a request never waits on a directory lookup it made seconds ago.
//!
//! A uid with no user (deleted, unmapped in a user namespace, or the kernel's overflow uid
//! `nobody`) resolves to nothing: it can never be bound to an account.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::store::UnixUser;

/// The name the kernel gives uids it cannot map, and Debian's user for them.
const NOBODY: &str = "nobody";
/// The kernel's overflow uid (`/proc/sys/kernel/overflowuid`), 65534 unless changed.
const OVERFLOW_UID: u32 = 65534;
/// How long a lookup is trusted: a uid deleted and reused is noticed within this.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries kept at most; the cache starts over when full rather than grow.
const CACHE_CAP: usize = 4096;

/// Where user names come from: the system's NSS in the daemon, a table in tests.
pub trait Directory: Send + Sync + 'static {
    /// The name of `uid`'s user, if it has one that may hold an account.
    fn name_of(&self, uid: u32) -> Option<String>;
    /// [`Directory::name_of`] when it can answer without asking NSS (a fresh cache entry);
    /// `None` when it would have to ask.
    fn cached_name_of(&self, uid: u32) -> Option<Option<String>> {
        let _ = uid;
        None
    }
    /// The user called `name`, if there is one that may hold an account.
    fn user_named(&self, name: &str) -> Option<UnixUser>;
    /// Whether the user called `name`, whose primary group is `primary_gid`, is in the group
    /// `gid`: it is its primary group, or the group lists it (NSS's `getgrouplist`).
    fn in_group(&self, name: &str, primary_gid: u32, gid: u32) -> bool;
    /// [`Directory::in_group`] when it can answer without asking NSS; `None` when it would
    /// have to ask.
    fn cached_in_group(&self, name: &str, primary_gid: u32, gid: u32) -> Option<bool> {
        let _ = (name, primary_gid, gid);
        None
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

/// A user's groups as NSS listed them, and when it was asked.
type Groups = (Instant, Vec<u32>);

/// The system's users, cached for [`CACHE_TTL`].
#[derive(Default)]
pub struct SystemUsers {
    by_uid: Mutex<HashMap<u32, (Instant, Option<String>)>>,
    /// Each user's groups, by (name, primary gid).
    groups: Mutex<HashMap<(String, u32), Groups>>,
}

impl SystemUsers {
    pub fn new() -> Arc<SystemUsers> {
        Arc::new(SystemUsers::default())
    }
}

impl Directory for SystemUsers {
    fn cached_name_of(&self, uid: u32) -> Option<Option<String>> {
        let cache = self.by_uid.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, name) = cache.get(&uid)?;
        (at.elapsed() < CACHE_TTL).then(|| name.clone())
    }

    fn name_of(&self, uid: u32) -> Option<String> {
        if let Some(hit) = self.cached_name_of(uid) {
            return hit;
        }
        let now = Instant::now();
        let name = lookup_uid(uid);
        let mut cache = self.by_uid.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_CAP {
            cache.clear();
        }
        cache.insert(uid, (now, name.clone()));
        name
    }

    fn user_named(&self, name: &str) -> Option<UnixUser> {
        // Asked only by invitations and checks that name a user: rare enough to go to NSS
        // each time, and then the answer is as fresh as it can be.
        lookup_name(name)
    }

    fn cached_in_group(&self, name: &str, primary_gid: u32, gid: u32) -> Option<bool> {
        if primary_gid == gid {
            return Some(true);
        }
        let cache = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, groups) = cache.get(&(name.to_owned(), primary_gid))?;
        (at.elapsed() < CACHE_TTL).then(|| groups.contains(&gid))
    }

    fn in_group(&self, name: &str, primary_gid: u32, gid: u32) -> bool {
        if let Some(hit) = self.cached_in_group(name, primary_gid, gid) {
            return hit;
        }
        let key = (name.to_owned(), primary_gid);
        let now = Instant::now();
        let groups = lookup_groups(name, primary_gid);
        let member = groups.contains(&gid);
        let mut cache = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_CAP {
            cache.clear();
        }
        cache.insert(key, (now, groups));
        member
    }
}

/// The groups NSS lists `name` in, with `primary_gid`; none when it cannot say.
fn lookup_groups(name: &str, primary_gid: u32) -> Vec<u32> {
    let Ok(name) = std::ffi::CString::new(name) else {
        return Vec::new();
    };
    nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(primary_gid))
        .map(|groups| groups.into_iter().map(|gid| gid.as_raw()).collect())
        .unwrap_or_default()
}

/// A fixed table of users, for tests.
#[derive(Default)]
pub struct FakeUsers {
    users: Mutex<HashMap<u32, String>>,
    /// The groups that list a user, by name.
    groups: Mutex<HashMap<String, Vec<u32>>>,
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

    /// Gives `uid` a user called `name`, or (with `None`) deletes its user.
    pub fn set(&self, uid: u32, name: Option<&str>) {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        match name {
            Some(name) => users.insert(uid, name.to_owned()),
            None => users.remove(&uid),
        };
    }
}

impl Directory for FakeUsers {
    fn cached_name_of(&self, uid: u32) -> Option<Option<String>> {
        Some(self.name_of(uid))
    }

    fn name_of(&self, uid: u32) -> Option<String> {
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        users.get(&uid).filter(|name| usable(uid, name)).cloned()
    }

    fn user_named(&self, name: &str) -> Option<UnixUser> {
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        users
            .iter()
            .find(|(uid, n)| n.as_str() == name && usable(**uid, n))
            .map(|(uid, n)| UnixUser {
                uid: *uid,
                name: n.clone(),
            })
    }

    fn cached_in_group(&self, name: &str, primary_gid: u32, gid: u32) -> Option<bool> {
        Some(self.in_group(name, primary_gid, gid))
    }

    fn in_group(&self, name: &str, primary_gid: u32, gid: u32) -> bool {
        let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        primary_gid == gid || groups.get(name).is_some_and(|listed| listed.contains(&gid))
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
    fn groups_come_from_the_primary_gid_and_the_group_database() {
        let users = SystemUsers::new();
        assert!(users.in_group("root", 0, 0));
        assert!(!users.in_group("root", 0, 3_999_999_999));
        // A group that lists nobody: only those whose primary group it is are in it.
        let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap();
        assert!(!users.in_group("root", 0, nogroup.gid.as_raw()));
        assert!(users.in_group("root", nogroup.gid.as_raw(), nogroup.gid.as_raw()));
        assert!(!users.in_group("no-such-user-here", 0, 3_999_999_999));
    }

    #[test]
    fn the_cache_answers_within_its_lifetime() {
        let users = SystemUsers::new();
        assert_eq!(users.name_of(0).as_deref(), Some("root"));
        // A planted entry is what the next lookup within the lifetime sees.
        users
            .by_uid
            .lock()
            .unwrap()
            .insert(0, (Instant::now(), Some("planted".into())));
        assert_eq!(users.name_of(0).as_deref(), Some("planted"));
        users
            .by_uid
            .lock()
            .unwrap()
            .insert(0, (Instant::now() - CACHE_TTL, Some("planted".into())));
        assert_eq!(users.name_of(0).as_deref(), Some("root"));
    }
}
