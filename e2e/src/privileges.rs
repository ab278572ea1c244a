//! Binaries and privileges: where the built binaries are, whether this process may act as
//! other Unix users, and what a test does when it may not (skip loudly, or fail under CI).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

/// `ctl(ROOT, …)` runs the CLI as the test process itself (a superuser when it is root).
pub const ROOT: u32 = 0;

/// Why most root-only tests need root; the reason a skip or a CI failure gives.
pub const NEEDS_ROOT_FOR_USERS: &str = "to run compartmentctl as other Unix users";

/// `<target>/<profile>`: the test executable is `<target>/<profile>/deps/<test>-<hash>`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// The path of a built binary of the workspace, next to the test executable.
pub fn binary(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    if !path.is_file() {
        panic!(
            "{} does not exist: build them first: cargo build --workspace",
            path.display()
        );
    }
    path
}

/// True when a user other than the owner may run `path`: the file and every directory
/// above it are open to others.
fn others_may_run(path: &Path) -> bool {
    let open_to_others =
        |p: &Path, bits: u32| fs::metadata(p).is_ok_and(|m| m.permissions().mode() & bits == bits);
    open_to_others(path, 0o005)
        && path
            .ancestors()
            .skip(1)
            .all(|dir| dir.as_os_str().is_empty() || open_to_others(dir, 0o001))
}

/// [`binary`], at a path other Unix users can run it from. A checkout under a private
/// directory (`/root`, say) is out of their reach; the binary is then copied once per
/// build to a shared temp directory.
pub fn binary_for_other_users(name: &str) -> PathBuf {
    runnable_by_others(&binary(name))
}

/// `path`, or a copy of it that other Unix users can run: made once per build of the file,
/// in a shared temp directory.
fn runnable_by_others(path: &Path) -> PathBuf {
    if others_may_run(path) {
        return path.to_path_buf();
    }
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .expect("a binary's file name");
    let meta = fs::metadata(path).expect("the binary's metadata");
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("compartment-e2e-bin-{}-{modified:x}", meta.len()));
    let shared = dir.join(name);
    if !shared.is_file() {
        fs::create_dir_all(&dir).expect("create the shared binary directory");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod it");
        // Copied under a private name, then renamed: test processes running at once never
        // run a half-written file.
        static COPIES: AtomicU64 = AtomicU64::new(0);
        let copy = COPIES.fetch_add(1, Ordering::Relaxed);
        let partial = dir.join(format!("{name}.{}.{copy}", std::process::id()));
        fs::copy(path, &partial).expect("copy the binary");
        fs::set_permissions(&partial, fs::Permissions::from_mode(0o755)).expect("chmod it");
        fs::rename(&partial, &shared).expect("move the copy into place");
    }
    shared
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True when the `CI` environment variable is set and not empty. There a test that cannot
/// do what it exists for fails instead of passing by skipping.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|value| !value.is_empty())
}

/// True (after saying so loudly) when the test cannot run because it needs root to run
/// `compartmentctl` as other Unix users; the caller then returns. Under CI it panics
/// instead: a root-only test must not pass by skipping there. Prefer [`root_test!`], which
/// names the test for you.
#[track_caller]
pub fn skip_unless_root(test: &str) -> bool {
    skip_unless_root_for(test, NEEDS_ROOT_FOR_USERS)
}

/// [`skip_unless_root`] with the reason the test needs root (`"to mount a tmpfs"`).
#[track_caller]
pub fn skip_unless_root_for(test: &str, reason: &str) -> bool {
    if is_root() {
        return false;
    }
    refuse_to_skip_in_ci(test, reason);
    say_loudly(&format!("SKIPPED: {test} needs root {reason}"));
    true
}

/// For a test of which only a part needs root: true when that part may run. Otherwise says
/// loudly which part of which test is skipped (the test's name is its thread's, as the
/// standard test runner names it) and returns false; under CI it panics instead.
#[track_caller]
pub fn root_for_part(part: &str) -> bool {
    if is_root() {
        return true;
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    let what = format!("{part} (part of {test})");
    refuse_to_skip_in_ci(&what, NEEDS_ROOT_FOR_USERS);
    say_loudly(&format!(
        "SKIPPED: {what} needs root {NEEDS_ROOT_FOR_USERS}"
    ));
    false
}

#[track_caller]
fn refuse_to_skip_in_ci(what: &str, reason: &str) {
    if in_ci() {
        panic!("{what} needs root {reason}, and CI is set: refusing to pass by skipping");
    }
}

/// True (after saying so loudly) when `tool` cannot be run (it answers no `--version`),
/// so `test`, which needs it, is skipped; under CI it panics instead: `.ci/run` installs
/// every tool the tests need, so a missing one there is a fault, not a reason to pass.
#[track_caller]
pub fn skip_without_tool(test: &str, tool: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if found {
        return false;
    }
    if in_ci() {
        panic!("{test} needs {tool}, and CI is set: refusing to pass by skipping");
    }
    say_loudly(&format!("SKIPPED: {test} needs {tool}"));
    true
}

/// Writes `message` to the real stderr, past the test harness's output capture, so that a
/// skipped test never passes silently.
pub fn say_loudly(message: &str) {
    let stars = "*".repeat(72);
    let _ = writeln!(io::stderr(), "\n{stars}\n{message}\n{stars}\n");
}

/// Declares a test that needs root, named once: `root_test!(name, || { … })` expands to
/// `#[test] fn name()`, which runs the body as root and otherwise skips loudly, or fails
/// when `CI` is set (see [`skip_unless_root`]). `root_test!(name, "to mount a tmpfs", || { … })`
/// gives the reason root is needed when it is not to act as other users.
///
/// The body is a closure that captures nothing (it becomes a `fn()`), so that rustfmt and
/// clippy treat it as ordinary code.
#[macro_export]
macro_rules! root_test {
    ($name:ident, $reason:expr, $body:expr $(,)?) => {
        #[test]
        fn $name() {
            if $crate::skip_unless_root_for(stringify!($name), $reason) {
                return;
            }
            let body: fn() = $body;
            body();
        }
    };
    ($name:ident, $body:expr $(,)?) => {
        $crate::root_test!($name, $crate::NEEDS_ROOT_FOR_USERS, $body);
    };
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    use super::*;

    // The specimen for the test below: as root it passes (it asks for nothing more).
    crate::root_test!(specimen_root_test, || {});

    /// `specimen_root_test` run alone by this test binary as `nobody`, with `CI` set to
    /// `ci` (or unset): its exit code and all it wrote.
    fn specimen_as_nobody(ci: Option<&str>) -> (Option<i32>, String) {
        let exe = std::env::current_exe().expect("the test executable's path");
        let mut command = Command::new(runnable_by_others(&exe));
        command
            .args(["--exact", "privileges::tests::specimen_root_test"])
            .env_clear()
            .current_dir("/")
            .uid(crate::NOBODY)
            .gid(crate::NOBODY);
        if let Some(ci) = ci {
            command.env("CI", ci);
        }
        let out = command.output().expect("run the test binary as nobody");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    }

    crate::root_test!(
        a_root_test_skips_loudly_without_root_and_fails_under_ci,
        "to run a test as nobody",
        || {
            let skipped = format!("SKIPPED: specimen_root_test needs root {NEEDS_ROOT_FOR_USERS}");
            for ci in [None, Some("")] {
                let (code, text) = specimen_as_nobody(ci);
                assert_eq!(code, Some(0), "CI={ci:?}: {text}");
                assert!(text.contains(&skipped), "CI={ci:?}: {text}");
                assert!(
                    text.contains("test result: ok. 1 passed"),
                    "CI={ci:?}: {text}"
                );
            }
            let (code, text) = specimen_as_nobody(Some("1"));
            assert_eq!(code, Some(101), "CI=1: {text}");
            assert!(
                text.contains(&format!(
                "specimen_root_test needs root {NEEDS_ROOT_FOR_USERS}, and CI is set: refusing \
                 to pass by skipping"
            )),
                "CI=1: {text}"
            );
            assert!(!text.contains("SKIPPED"), "CI=1: {text}");
        }
    );
}
