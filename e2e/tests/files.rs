//! The files and sockets each end trusts: the daemon's state directory and database are
//! private whatever the umask, and a directory others can write, another user's
//! directory or a symlinked database is refused with nothing written; the CLI talks only
//! to a server run by root, by the caller's own uid or by the user it is told to trust, in
//! a directory others cannot write, and sends any other nothing; and no default path is
//! ever relative.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use compartment_e2e::{
    binary_for_other_users, poll, root_test, say_loudly, uid_without_user, Daemon, Out, RawConn,
    TestUser,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const PYTHON: &str = "/usr/bin/python3";
const DB: &str = "compartment.redb";

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// A fresh directory every uid can reach.
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("compartment-files-")
        .tempdir()
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn answers_ping(socket: &Path) -> bool {
    let Ok(stream) = UnixStream::connect(socket) else {
        return false;
    };
    drop(stream);
    let mut conn = RawConn::connect(socket);
    conn.call(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)["result"].is_object()
}

/// Runs a second daemon of `daemon`'s on `state_dir` that is expected to refuse it at
/// once; returns its output.
fn refused(daemon: &Daemon, state_dir: &Path) -> Out {
    let socket = daemon.dir().join("refused.sock");
    let out = daemon
        .run_second_daemon(&socket, state_dir)
        .expect("a refused daemon exits at once");
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(!socket.exists(), "a refused daemon bound its socket");
    out
}

fn last_stderr_line(out: &Out) -> &str {
    out.stderr_lines().last().copied().unwrap_or_default()
}

#[test]
fn state_dir_and_database_are_private_whatever_the_umask() {
    let daemon = Daemon::start_default();
    let socket = daemon.dir().join("run/compartmentd.sock");
    let state = daemon.dir().join("lib/state");
    let mut command = daemon.daemon_command(&socket, &state);
    // SAFETY: umask is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            Ok(())
        });
    }
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = poll(Duration::from_secs(10), || {
        answers_ping(&socket).then_some(())
    });
    let modes = (
        mode(&state),
        mode(&state.join(DB)),
        mode(socket.parent().unwrap()),
        mode(&socket),
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(ready.is_some(), "the daemon never answered");
    assert!(status.success(), "{status}");
    // State 0700 and database 0600; the socket's directory 0755 and the socket 0666, since
    // every local user must reach it.
    assert_eq!(modes, (0o700, 0o600, 0o755, 0o666));
}

#[test]
fn a_state_directory_others_can_write_is_refused_and_left_untouched() {
    let daemon = Daemon::start_default();
    for (bits, who) in [
        (0o775, "its group"),
        (0o757, "others"),
        (0o1777, "its group"),
    ] {
        let state = daemon.dir().join(format!("open-{bits:o}"));
        fs::create_dir(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(bits)).unwrap();
        let out = refused(&daemon, &state);
        assert_eq!(
            last_stderr_line(&out),
            format!(
                "compartmentd: the state directory {} is writable by {who} (mode {bits:04o}); anyone who can write it could replace the database: chmod go-w {}",
                state.display(),
                state.display()
            )
        );
        assert_eq!(
            fs::read_dir(&state).unwrap().count(),
            0,
            "something was written"
        );
        assert_eq!(mode(&state), bits, "its mode was changed");
    }
}

root_test!(another_users_state_directory_is_refused, || {
    let daemon = Daemon::start_default();
    let state = daemon.dir().join("theirs");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&state, Some(61301), Some(61301)).unwrap();
    let out = refused(&daemon, &state);
    assert_eq!(
        last_stderr_line(&out),
        format!(
            "compartmentd: the state directory {} belongs to uid 61301, neither root nor the user compartmentd runs as (uid 0); whoever owns it could replace the database: chown it or pass another --state-dir",
            state.display()
        )
    );
    assert_eq!(fs::read_dir(&state).unwrap().count(), 0);
});

#[test]
fn a_symlinked_database_is_refused_and_its_target_never_written() {
    let daemon = Daemon::start_default();
    let state = daemon.dir().join("linked-db");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let target = daemon.dir().join("elsewhere.redb");
    symlink(&target, state.join(DB)).unwrap();
    let out = refused(&daemon, &state);
    assert_eq!(
        last_stderr_line(&out),
        format!(
            "compartmentd: the database {} is a symbolic link, which compartmentd does not follow: put the database file itself there",
            state.join(DB).display()
        )
    );
    assert!(!target.exists(), "the link's target was created");
}

#[test]
fn a_symlinked_state_directory_as_under_dynamic_user_is_followed_to_the_real_one() {
    let daemon = Daemon::start_default();
    // As systemd's DynamicUser=: /var/lib/compartment -> private/compartment, made by root
    // (or, when these tests run unprivileged, by the daemon's own user).
    let private = daemon.dir().join("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let real = private.join("compartment");
    fs::create_dir(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    let link = daemon.dir().join("compartment");
    symlink("private/compartment", &link).unwrap();
    let socket = daemon.dir().join("linked.sock");
    let mut child: Child = daemon
        .daemon_command(&socket, &link)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = poll(Duration::from_secs(10), || {
        answers_ping(&socket).then_some(())
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(ready.is_some());
    assert_eq!(mode(&real.join(DB)), 0o600);
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_database_others_can_read_is_made_private_with_a_log_line() {
    let mut daemon = Daemon::start_default();
    daemon.stop();
    fs::set_permissions(daemon.db_path(), fs::Permissions::from_mode(0o644)).unwrap();
    daemon.restart();
    assert_eq!(mode(&daemon.db_path()), 0o600);
    assert!(
        daemon
            .log()
            .contains("the database was readable or writable by others (mode 0644); made it 0600"),
        "{}",
        daemon.log()
    );
}

// ---------------------------------------------------------------------------------------
// The CLI and whom it talks to

/// A socket server run by a uid at a path: it answers one line with one canned line (a
/// ping result unless told otherwise) and reports on stdout how many bytes each connection
/// sent before closing.
struct Planted {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

const PING_ANSWER: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"version":"0.0.0-planted"}}"#;

impl Planted {
    /// Run by `uid` (and the gid of the same number), answering a ping result.
    fn start(uid: u32, path: &Path) -> Planted {
        Planted::serve(uid, uid, path, PING_ANSWER)
    }

    /// Run by `uid` and `gid`, answering `answer`.
    fn serve(uid: u32, gid: u32, path: &Path, answer: &str) -> Planted {
        assert!(
            Path::new(PYTHON).exists(),
            "these tests serve planted sockets as other uids with {PYTHON}; install python3"
        );
        let script = r#"
import os, socket, sys
srv = socket.socket(socket.AF_UNIX)
srv.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
srv.listen(5)
print("listening", flush=True)
while True:
    c, _ = srv.accept()
    c.settimeout(5)
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    if data:
        c.sendall(sys.argv[2].encode() + b"\n")
    print("received", len(data), flush=True)
    c.close()
"#;
        let mut child = Command::new(PYTHON)
            .arg("-c")
            .arg(script)
            .arg(path)
            .arg(answer)
            .env_clear()
            .current_dir("/")
            .uid(uid)
            .gid(gid)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "listening");
        Planted { child, stdout }
    }

    /// How many bytes the last connection sent.
    fn received(&mut self) -> usize {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim()
            .strip_prefix("received ")
            .unwrap_or_else(|| panic!("unexpected: {line}"))
            .parse()
            .unwrap()
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The output of `child` once it exits, or `None` (after killing it) when it runs on past
/// `timeout`.
fn exit_within(mut child: Child, timeout: Duration) -> Option<std::process::Output> {
    let exited = poll(timeout, || child.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    child.wait_with_output().ok()
}

fn ctl_as(uid: u32, socket: &Path, args: &[&str]) -> Out {
    let out = compartment_e2e::ctl_command(socket, uid, args)
        .output()
        .unwrap();
    Out {
        cmd: format!("compartmentctl {args:?}"),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What `command` did with `input` on its stdin.
fn out_of(mut command: Command, input: &str) -> Out {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A CLI that refuses at once may not read it: a broken pipe is no matter.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let out = exit_within(child, Duration::from_secs(30)).expect("the CLI ran for 30 s");
    Out {
        cmd: format!("{command:?}"),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A directory owned by `uid` with `bits`, inside `parent`.
fn dir_of(parent: &Path, name: &str, uid: u32, bits: u32) -> PathBuf {
    let dir = parent.join(name);
    fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(bits)).unwrap();
    dir
}

root_test!(
    the_cli_sends_nothing_to_a_socket_planted_in_a_shared_directory,
    || {
        let tmp = open_tempdir();
        // Like /tmp: root's, writable by all, sticky.
        let shared = dir_of(tmp.path(), "shared", 0, 0o1777);
        let socket = shared.join("compartmentd.sock");
        let mut planted = Planted::start(61401, &socket);
        let refusal = |own: u32| {
            format!(
                "refusing to talk to {}: its server runs as uid 61401, not root and not your own uid {own}",
                socket.display()
            )
        };
        ctl_as(61402, &socket, &["whoami"]).assert_err_hint(
            3,
            &refusal(61402),
            "a server whose uid has no user name cannot be trusted; point --socket at your daemon's socket",
        );
        assert_eq!(planted.received(), 0, "the CLI sent something first");
        // Root is refused as well: it trusts nobody but root unless told.
        ctl_as(0, &socket, &["whoami"]).assert_err(3, &refusal(0));
        assert_eq!(planted.received(), 0);
        // Scripts get the refusal as an error object.
        let out = ctl_as(61402, &socket, &["--output", "json", "whoami"]);
        assert_eq!(out.code, 3, "{out:#?}");
        let error: serde_json::Value = serde_json::from_str(&out.stderr).unwrap();
        assert_eq!(error["message"], refusal(61402).as_str());
        assert_eq!(error["data"]["kind"], "unreachable");
        assert_eq!(planted.received(), 0);
    }
);

root_test!(
    the_cli_refuses_its_own_server_in_a_directory_others_can_write,
    || {
        let tmp = open_tempdir();
        let dir = dir_of(tmp.path(), "group-writable", 61411, 0o775);
        let socket = dir.join("compartmentd.sock");
        let mut planted = Planted::start(61411, &socket);
        let refusal = format!(
            "refusing to talk to {}: its directory {} is writable by its group (mode 0775), so anyone could have put the socket there",
            socket.display(),
            dir.display()
        );
        // The server is the caller's own, but anyone in the group could have put it there.
        ctl_as(61411, &socket, &["whoami"]).assert_err(3, &refusal);
        assert_eq!(planted.received(), 0);
    }
);

root_test!(
    the_cli_talks_to_its_own_uids_server_and_to_roots_only,
    || {
        let tmp = open_tempdir();
        // A user's own daemon in their own directory: trusted by that user.
        let dir = dir_of(tmp.path(), "own", 61421, 0o755);
        let socket = dir.join("compartmentd.sock");
        let mut planted = Planted::start(61421, &socket);
        ctl_as(61421, &socket, &["ping"]).assert_ok(&format!(
            "compartmentd 0.0.0-planted is running at {} (uid 61421's).\n",
            socket.display()
        ));
        assert!(planted.received() > 0);
        // By nobody else, however closed the directory its owner keeps it in.
        ctl_as(61422, &socket, &["ping"]).assert_err(
            3,
            &format!(
                "refusing to talk to {}: its server runs as uid 61421, not root and not your own uid 61422",
                socket.display()
            ),
        );
        assert_eq!(planted.received(), 0);
        // Root's daemon, here in a root-owned directory, is trusted by everyone.
        let daemon = Daemon::start_default();
        ctl_as(61422, &daemon.socket(), &["ping"]).assert_success();
    }
);

/// What a fake server answers `account.activate` with.
const ACTIVATED: &str =
    r#"{"jsonrpc":"2.0","id":1,"result":{"org":"acme","email":"new@example.com","role":"viewer"}}"#;

root_test!(
    activate_sends_no_url_to_another_users_server_in_their_own_directory,
    || {
        let mallory = TestUser::get("cpt-f-mallory");
        let victim = TestUser::get("cpt-f-victim");
        let tmp = open_tempdir();
        // mallory's own closed directory, as any user can make one and hand out a path into it.
        let dir = dir_of(tmp.path(), "mallory", mallory.uid, 0o755);
        let socket = dir.join("compartmentd.sock");
        let mut planted = Planted::serve(mallory.uid, mallory.gid, &socket, ACTIVATED);
        let url = "https://your-compartment-host/activate?token=c2VjcmV0";
        let activate = |extra: &[&str], env: Option<&str>| {
            let mut command = compartment_e2e::ctl_command(&socket, victim.uid, extra);
            command.arg("activate");
            if let Some(name) = env {
                command.env("COMPARTMENT_TRUST_SERVER_USER", name);
            }
            out_of(command, &format!("{url}\n"))
        };
        let out = activate(&[], None);
        out.assert_err_hint(
            3,
            &format!(
                "refusing to talk to {}: its server runs as uid {} ({}), not root and not your own uid {}",
                socket.display(),
                mallory.uid,
                mallory.name,
                victim.uid
            ),
            &format!(
                "if that is your Compartment daemon (one run as its own user, say), trust it with \
                 --trust-server-user {0} or COMPARTMENT_TRUST_SERVER_USER={0}; otherwise point \
                 --socket at your daemon's socket",
                mallory.name
            ),
        );
        assert_eq!(planted.received(), 0, "the URL reached mallory's server");
        // Told to trust mallory, by option or by variable, the CLI talks to it.
        for (extra, env) in [
            (&["--trust-server-user", mallory.name.as_str()][..], None),
            (&[][..], Some(mallory.name.as_str())),
        ] {
            activate(extra, env)
                .assert_ok("Activated new@example.com: you are now viewer in acme.\n");
            assert!(planted.received() > url.len(), "{extra:?} {env:?}");
        }
        // Trusting another user does not make mallory's server trusted.
        activate(&["--trust-server-user", "root"], None).assert_err(
            3,
            &format!(
                "refusing to talk to {}: its server runs as uid {} ({}), not root and not your own uid {}, nor root (uid 0) whom --trust-server-user names",
                socket.display(),
                mallory.uid,
                mallory.name,
                victim.uid
            ),
        );
        assert_eq!(planted.received(), 0);
    }
);

root_test!(
    with_no_home_and_no_xdg_variables_neither_end_guesses_a_path,
    || {
        // A uid with no entry in the user database, so no home directory either.
        let uid = uid_without_user();
        // A directory it may write: a relative default would land here.
        let cwd = open_tempdir();
        fs::set_permissions(cwd.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let daemon = Command::new(binary_for_other_users("compartmentd"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir(cwd.path())
            .uid(uid)
            .gid(uid)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = exit_within(daemon, Duration::from_secs(10))
            .expect("the daemon started on a path it guessed instead of stopping");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let no_default = "compartmentd: no default for the state directory: HOME and the XDG variables are unset (or not absolute) and the user database gives no home directory; pass --state-dir or COMPARTMENT_STATE_DIR";
        assert_eq!(stderr.lines().last(), Some(no_default));
        assert_eq!(
            fs::read_dir(cwd.path()).unwrap().count(),
            0,
            "it wrote in its working directory"
        );

        if Path::new(compartmentctl::paths::SYSTEM_SOCKET).exists() {
            assert!(
                !compartment_e2e::in_ci(),
                "a system socket exists at {}, so the CLI half cannot be tested, and CI is set",
                compartmentctl::paths::SYSTEM_SOCKET
            );
            say_loudly(
                "SKIPPED the CLI half: a system socket exists, so the CLI needs no user path",
            );
            return;
        }
        let out = Command::new(binary_for_other_users("compartmentctl"))
            .arg("whoami")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir(cwd.path())
            .uid(uid)
            .gid(uid)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        let no_default = "compartmentctl: no default for the socket: HOME and the XDG variables are unset (or not absolute) and the user database gives no home directory; pass --socket or COMPARTMENT_SOCKET\n";
        assert_eq!(String::from_utf8_lossy(&out.stderr), no_default);
    }
);
