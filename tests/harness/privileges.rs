//! Binaries and privileges: where the built binaries are, and whether this process may act
//! as other Unix users (and, when it may not, skipping loudly).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

/// `ctl(ROOT, …)` runs the CLI as the test process itself (a superuser when it is root).
pub const ROOT: u32 = 0;

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
    let path = binary(name);
    if others_may_run(&path) {
        return path;
    }
    let meta = fs::metadata(&path).expect("the binary's metadata");
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
        fs::copy(&path, &partial).expect("copy the binary");
        fs::set_permissions(&partial, fs::Permissions::from_mode(0o755)).expect("chmod it");
        fs::rename(&partial, &shared).expect("move the copy into place");
    }
    shared
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True (after saying so loudly) when the test cannot run because it needs root to run
/// `compartmentctl` as other Unix uids; the caller then returns.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    say_loudly(&format!(
        "SKIPPED: {test} needs root to run compartmentctl as other Unix uids"
    ));
    true
}

/// Writes `message` to the real stderr, past the test harness's output capture, so that a
/// skipped test never passes silently.
pub fn say_loudly(message: &str) {
    let stars = "*".repeat(72);
    let _ = writeln!(io::stderr(), "\n{stars}\n{message}\n{stars}\n");
}
