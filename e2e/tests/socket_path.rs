//! Where the daemon listens: only where nobody but root and its own user can change what
//! the socket's path names (else it refuses to start and says why), and binding never
//! changes a mode by path: an attacker of another uid swapping symbolic links in as fast as
//! it can, thousands of times, never makes a file of root's 0666 or a directory of root's
//! 0755.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use compartment_e2e::{poll, root_test, Daemon, Out, RawConn, TestUser};
use compartmentd::socket::{self, BindError};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const PYTHON: &str = "/usr/bin/python3";
const REASON: &str = "to race an attacker of another uid";
/// Binds per race; each is one chance for the attacker. Against the binding this replaced
/// (chmod by path after bind, and after mkdir), the attacker won 3 to 13 times in 5,000
/// binds of the socket, and 18 to 69 times in 10,000 binds that made the directory.
const TRIES: usize = 5_000;

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// A directory owned by `uid` with `bits`, inside `parent`.
fn dir_of(parent: &Path, name: &str, uid: u32, bits: u32) -> PathBuf {
    let dir = parent.join(name);
    fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(bits)).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------
// The race

/// Root's file and directory that the attacker wants opened up, and the attacker's own
/// directory, all in a fresh temp dir every uid can reach.
struct Arena {
    _tmp: tempfile::TempDir,
    victim_file: PathBuf,
    victim_dir: PathBuf,
    /// The attacker's: it may rename, remove and create anything in it.
    play: PathBuf,
    attacker: TestUser,
}

impl Arena {
    fn new() -> Arena {
        let tmp = tempfile::Builder::new()
            .prefix("compartment-race-")
            .tempdir()
            .unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let victim_file = tmp.path().join("root-secret");
        fs::write(&victim_file, b"root's").unwrap();
        fs::set_permissions(&victim_file, fs::Permissions::from_mode(0o600)).unwrap();
        let victim_dir = dir_of(tmp.path(), "root-private", 0, 0o700);
        let attacker = TestUser::get("cpt-sock-attacker");
        let play = dir_of(tmp.path(), "play", attacker.uid, 0o755);
        Arena {
            _tmp: tmp,
            victim_file,
            victim_dir,
            play,
            attacker,
        }
    }

    #[track_caller]
    fn assert_victims_untouched(&self) {
        assert_eq!(
            mode(&self.victim_file),
            0o600,
            "the attacker made root's file {:04o}",
            mode(&self.victim_file)
        );
        assert_eq!(
            mode(&self.victim_dir),
            0o700,
            "the attacker made root's directory {:04o}",
            mode(&self.victim_dir)
        );
        assert_eq!(fs::read(&self.victim_file).unwrap(), b"root's");
    }
}

/// The attacker, as another uid: in a tight loop until SIGTERM, it exchanges
/// `<play>/<target>` with a symbolic link to `victim` (renameat2 `RENAME_EXCHANGE`, so the
/// name flips between the two and never stops existing), and clears away what the daemon
/// made once it is left outside the name; then it prints how many exchanges it made.
struct Attacker {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

const ATTACKER: &str = r#"
import ctypes, errno, os, signal, sys
play, target, victim = sys.argv[1:4]
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
name = os.path.join(play, target).encode()
link = os.path.join(play, "swap").encode()
swaps = taken = 0
def done(*_):
    print(swaps, flush=True)
    os._exit(0)
signal.signal(signal.SIGTERM, done)
print("ready", flush=True)
while True:
    try:
        os.symlink(victim, link)
    except FileExistsError:
        pass
    if libc.renameat2(AT_FDCWD, link, AT_FDCWD, name, RENAME_EXCHANGE) == 0:
        swaps += 1
    elif ctypes.get_errno() == errno.ENOENT and not os.path.islink(link):
        taken += 1
        try:
            os.rename(link, os.path.join(play, "taken-%d" % taken))
        except OSError:
            pass
"#;

impl Attacker {
    fn start(arena: &Arena, target: &str, victim: &Path) -> Attacker {
        assert!(
            Path::new(PYTHON).exists(),
            "the attacker is a {PYTHON} script; install python3"
        );
        let mut child = Command::new(PYTHON)
            .arg("-c")
            .arg(ATTACKER)
            .arg(&arena.play)
            .arg(target)
            .arg(victim)
            .env_clear()
            .current_dir("/")
            .uid(arena.attacker.uid)
            .gid(arena.attacker.gid)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        Attacker { child, stdout }
    }

    /// Stops it; how many swaps it made.
    fn stop(mut self) -> usize {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim()
            .parse()
            .unwrap_or_else(|_| panic!("the attacker said {line:?}"))
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes `path`, whatever it is now.
fn remove_any(path: &Path) {
    let _ = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        _ => fs::remove_file(path),
    };
}

/// Removes what the attacker left in its directory (links, and what root made that it
/// moved away).
fn sweep(play: &Path) {
    for entry in fs::read_dir(play).unwrap().flatten() {
        remove_any(&entry.path());
    }
}

/// Binds `socket` `tries` times as a daemon whose own user is `daemon_uid`, with the
/// attacker swapping `target` in its directory for a link to `victim`, and `target`
/// removed before every `fresh_every`th bind (so it makes the directory, or binds with no
/// stale socket to replace); returns how many binds failed and how many swaps the attacker
/// made.
fn race(
    arena: &Arena,
    (target, victim): (&str, &Path),
    socket: &Path,
    daemon_uid: u32,
    (tries, fresh_every): (usize, usize),
) -> (usize, usize) {
    let attacker = Attacker::start(arena, target, victim);
    let mut failed = 0;
    for i in 0..tries {
        if i % fresh_every == 0 {
            remove_any(&arena.play.join(target));
        }
        match socket::bind_as(socket, daemon_uid) {
            Ok((listener, _)) => drop(listener),
            Err(_) => failed += 1,
        }
        // Sockets left in root's directory when the link won the walk (the rule was told
        // to trust the attacker's directory, so it follows the attacker's links).
        for entry in fs::read_dir(&arena.victim_dir).unwrap().flatten() {
            let _ = fs::remove_file(entry.path());
        }
        if i % 64 == 0 {
            sweep(&arena.play);
        }
    }
    let swaps = attacker.stop();
    sweep(&arena.play);
    (failed, swaps)
}

root_test!(
    swapping_the_socket_for_a_link_never_makes_roots_file_0666,
    REASON,
    || {
        let arena = Arena::new();
        // The attacker's own directory, which the rule is told to trust (as if the daemon
        // ran as the attacker's uid) so that only the binding's mechanics stand in its way.
        let socket = arena.play.join("compartmentd.sock");
        let (failed, swaps) = race(
            &arena,
            ("compartmentd.sock", &arena.victim_file),
            &socket,
            arena.attacker.uid,
            (TRIES, 2),
        );
        arena.assert_victims_untouched();
        // It did race: the attacker's links met the daemon's binds.
        assert!(swaps >= TRIES, "only {swaps} swaps");
        assert!(failed > 0, "no bind ever met the attacker's link");
        assert!(failed < TRIES, "no bind ever succeeded: nothing was raced");
    }
);

root_test!(
    swapping_the_new_directory_for_a_link_never_makes_roots_directory_0755,
    REASON,
    || {
        let arena = Arena::new();
        // `sub` is made by each bind (swept away between binds); the attacker swaps it
        // for a link to root's private directory.
        let socket = arena.play.join("sub/compartmentd.sock");
        let (failed, swaps) = race(
            &arena,
            ("sub", &arena.victim_dir),
            &socket,
            arena.attacker.uid,
            (TRIES, 1),
        );
        arena.assert_victims_untouched();
        assert!(swaps >= TRIES, "only {swaps} swaps");
        assert!(failed > 0, "no bind ever met the attacker's link");
        assert!(failed < TRIES, "no bind ever succeeded: nothing was raced");
    }
);

root_test!(
    roots_daemon_refuses_the_attackers_directory_every_time,
    REASON,
    || {
        let arena = Arena::new();
        // Something of the attacker's at the name, for it to exchange with its link.
        let planted = arena.play.join("compartmentd.sock");
        fs::write(&planted, b"").unwrap();
        std::os::unix::fs::chown(&planted, Some(arena.attacker.uid), None).unwrap();
        let attacker = Attacker::start(&arena, "compartmentd.sock", &arena.victim_file);
        for _ in 0..TRIES {
            for socket in [
                arena.play.join("compartmentd.sock"),
                arena.play.join("sub/compartmentd.sock"),
            ] {
                match socket::bind_as(&socket, 0) {
                    Err(BindError::Untrusted { reason, .. }) => {
                        assert_eq!(reason.path(), arena.play)
                    }
                    Err(err) => panic!("refused for another reason: {err}"),
                    Ok(_) => panic!("root's daemon listened in the attacker's directory"),
                }
            }
        }
        let swaps = attacker.stop();
        arena.assert_victims_untouched();
        assert!(swaps > 0);
        assert!(!arena.play.join("sub").exists(), "a directory was made");
    }
);

// ---------------------------------------------------------------------------------------
// Start-up

/// Who besides root may change the socket's directory, as a refusal says it.
fn writers() -> String {
    if me() == 0 {
        "root".to_owned()
    } else {
        format!("root or uid {}", me())
    }
}

fn example() -> &'static str {
    if me() == 0 {
        "/run/compartment"
    } else {
        "$XDG_RUNTIME_DIR/compartment"
    }
}

/// A second daemon of `daemon`'s on `socket`, expected to refuse at once: its output.
fn refused(daemon: &Daemon, socket: &Path) -> Out {
    let out = daemon
        .run_second_daemon(socket, &daemon.dir().join("second"))
        .expect("a refused daemon exits at once");
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(!socket.exists(), "a refused daemon bound its socket");
    out
}

fn last_stderr_line(out: &Out) -> &str {
    out.stderr_lines().last().copied().unwrap_or_default()
}

/// Starts a second daemon of `daemon`'s on `socket`, checks that it answers a ping, stops it.
fn serves(daemon: &Daemon, socket: &Path) {
    let mut child = daemon
        .daemon_command(socket, &daemon.dir().join("second"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = poll(Duration::from_secs(10), || {
        UnixStream::connect(socket).ok()?;
        RawConn::connect(socket).call(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)["result"]
            .is_object()
            .then_some(())
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(ready.is_some(), "no answer on {}", socket.display());
    assert!(!socket.exists(), "the socket was left behind");
}

#[test]
fn a_socket_directory_others_can_write_is_refused_at_start() {
    let daemon = Daemon::start_default();
    let open = daemon.dir().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let socket = open.join("x.sock");
    let out = refused(&daemon, &socket);
    assert_eq!(
        last_stderr_line(&out),
        format!(
            "compartmentd: refusing to listen on {}: {} is writable by its group and others (mode 0777, owner uid {}), so another user could put a link or a socket of their own in its place; chmod go-w {}, or pass a --socket in a directory only {} can change (such as {})",
            socket.display(),
            open.display(),
            me(),
            open.display(),
            writers(),
            example()
        )
    );
    assert_eq!(mode(&open), 0o777, "its mode was changed");
    assert_eq!(fs::read_dir(&open).unwrap().count(), 0);
}

#[test]
fn a_group_writable_directory_above_the_socket_is_refused_at_start() {
    let daemon = Daemon::start_default();
    let group = daemon.dir().join("group");
    fs::create_dir(&group).unwrap();
    fs::set_permissions(&group, fs::Permissions::from_mode(0o775)).unwrap();
    let sub = group.join("sub");
    fs::create_dir(&sub).unwrap();
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).unwrap();
    // And one level further that does not exist yet: nothing is made.
    let socket = sub.join("run/x.sock");
    let out = refused(&daemon, &socket);
    assert_eq!(
        last_stderr_line(&out),
        format!(
            "compartmentd: refusing to listen on {}: {} is writable by its group (mode 0775, owner uid {}), so another user could put a link or a socket of their own in its place; chmod go-w {}, or pass a --socket in a directory only {} can change (such as {})",
            socket.display(),
            group.display(),
            me(),
            group.display(),
            writers(),
            example()
        )
    );
    assert!(!sub.join("run").exists(), "a directory was made");
}

#[test]
fn a_closed_directory_like_run_compartment_is_used_and_made_0755() {
    let daemon = Daemon::start_default();
    // As /run/compartment: made by the daemon under a closed parent.
    let socket = daemon.dir().join("run/compartment/compartmentd.sock");
    serves(&daemon, &socket);
    assert_eq!(mode(&daemon.dir().join("run")), 0o755);
    assert_eq!(mode(&daemon.dir().join("run/compartment")), 0o755);
    // And again, now that it exists.
    serves(&daemon, &socket);
}

root_test!(
    another_users_directory_on_the_way_is_refused_at_start,
    "to chown directories",
    || {
        let daemon = Daemon::start_default();
        let theirs = dir_of(daemon.dir(), "theirs", 61501, 0o755);
        let socket = theirs.join("x.sock");
        let out = refused(&daemon, &socket);
        assert_eq!(
            last_stderr_line(&out),
            format!(
                "compartmentd: refusing to listen on {}: {} belongs to uid 61501 (mode 0755), neither root nor uid 0, so another user could put a link or a socket of their own in its place; pass a --socket in a directory only root can change (such as /run/compartment), or chown 0 {} if it is meant for compartmentd",
                socket.display(),
                theirs.display(),
                theirs.display()
            )
        );
    }
);

root_test!(
    a_sticky_shared_directory_is_passed_only_towards_an_entry_of_roots,
    "to chown directories",
    || {
        let daemon = Daemon::start_default();
        // Like /tmp: root's, writable by all, sticky.
        let shared = dir_of(daemon.dir(), "shared", 0, 0o1777);
        // Root's own directory in it: others cannot rename it away.
        let ours = dir_of(&shared, "ours", 0, 0o755);
        serves(&daemon, &ours.join("x.sock"));
        // One the daemon makes there itself.
        serves(&daemon, &shared.join("made/x.sock"));
        assert_eq!(mode(&shared.join("made")), 0o755);
        // Another user's directory in it.
        let theirs = dir_of(&shared, "theirs", 61502, 0o755);
        let out = refused(&daemon, &theirs.join("x.sock"));
        assert!(
            last_stderr_line(&out).contains(&format!(
                ": {} belongs to uid 61502 (mode 0755), neither root nor uid 0,",
                theirs.display()
            )),
            "{out:#?}"
        );
        // The shared directory itself: anyone could take the socket's name first.
        let socket = shared.join("x.sock");
        let out = refused(&daemon, &socket);
        assert_eq!(
            last_stderr_line(&out),
            format!(
                "compartmentd: refusing to listen on {}: {} is writable by its group and others (mode 1777, owner uid 0), so another user could put a link or a socket of their own in its place; pass a --socket in a directory only root can change (such as /run/compartment); a new directory inside {} will do",
                socket.display(),
                shared.display(),
                shared.display()
            )
        );
    }
);
