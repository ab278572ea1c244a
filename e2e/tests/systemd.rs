//! The daemon as systemd runs it: unit files that verify cleanly, socket activation,
//! `READY=1`/`STOPPING=1` notifications, and logs to the journal (or stderr without one).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use compartment_e2e::{
    binary, binary_for_other_users, ctl_command, free_port, http_get, root_test, skip_without_tool,
    TestUser,
};
use compartmentctl::peer::{Trust, UnixUser};
use compartmentctl::wire::{Pong, Request};
use compartmentctl::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const WAIT: Duration = Duration::from_secs(10);

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// A temp dir other uids can traverse, as the daemon's home for one test.
fn temp_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    dir
}

/// Pings until the daemon answers, or panics after [`WAIT`].
fn wait_for_ping(socket: &Path) -> Instant {
    wait_for_ping_trusting(socket, &Trust::own())
}

/// [`wait_for_ping`] of a daemon `trust` trusts.
fn wait_for_ping_trusting(socket: &Path, trust: &Trust) -> Instant {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(mut client) = Client::connect_trusting(socket, trust) {
            if client.call::<Pong>(&Request::Ping).is_ok() {
                return Instant::now();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no answer on {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, then the exit status; panics with the daemon's stderr if it is not success.
fn stop(child: &mut Child) -> std::process::ExitStatus {
    let status = terminate(child);
    if !status.success() {
        panic!("the daemon exited with {status:?}:\n{}", stderr_of(child));
    }
    status
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the daemon ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text
}

#[test]
fn the_units_verify_without_a_word() {
    if skip_without_tool("the_units_verify_without_a_word", "systemd-analyze") {
        return;
    }
    // systemd-analyze checks that ExecStart exists: point it at the built daemon. The man
    // pages it would also look for are checked after the package is installed (.ci/package).
    let dir = temp_dir();
    let service = std::fs::read_to_string(repo_file("systemd/compartmentd.service")).unwrap();
    let daemon = binary("compartmentd");
    let service = service.replace("/usr/sbin/compartmentd", daemon.to_str().unwrap());
    std::fs::write(dir.path().join("compartmentd.service"), service).unwrap();
    for socket in ["compartmentd.socket", "compartmentd-page.socket"] {
        std::fs::copy(
            repo_file(&format!("systemd/{socket}")),
            dir.path().join(socket),
        )
        .unwrap();
    }
    let out = Command::new("systemd-analyze")
        .args([
            "verify",
            "--man=no",
            "compartmentd.socket",
            "compartmentd-page.socket",
            "compartmentd.service",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.is_empty(),
        "systemd-analyze verify said:\n{said}"
    );
}

#[test]
fn the_service_unit_asks_for_what_the_daemon_needs() {
    let service = std::fs::read_to_string(repo_file("systemd/compartmentd.service")).unwrap();
    let socket = std::fs::read_to_string(repo_file("systemd/compartmentd.socket")).unwrap();
    for line in [
        "Type=notify",
        "StateDirectory=compartment",
        "RuntimeDirectory=compartment",
        "RuntimeDirectoryPreserve=yes",
        "EnvironmentFile=-/etc/default/compartmentd",
        "Restart=on-failure",
        "WatchdogSec=30s",
        "NotifyAccess=main",
        "RestrictAddressFamilies=AF_UNIX",
        "SystemCallFilter=@system-service",
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "the service lacks {line}"
        );
    }
    // Peer credentials are the identity: a user namespace would map every caller to nobody.
    assert!(!service.contains("PrivateUsers=yes"));
    for line in [
        "ListenStream=/run/compartment/compartmentd.sock",
        "SocketMode=0666",
    ] {
        assert!(socket.lines().any(|l| l == line), "the socket lacks {line}");
    }
}

#[test]
fn socket_activation_serves_the_inherited_socket_and_binds_nothing() {
    if skip_without_tool(
        "socket_activation_serves_the_inherited_socket_and_binds_nothing",
        "systemd-socket-activate",
    ) {
        return;
    }
    let dir = temp_dir();
    let socket = dir.path().join("activated.sock");
    let unused = dir.path().join("never-bound.sock");
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&socket)
        .arg(binary("compartmentd"))
        .arg("--socket")
        .arg(&unused)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first connection starts the daemon, which then serves it on the inherited socket.
    wait_for_ping(&socket);
    let out = ctl_command(
        &socket,
        0,
        &["org", "create", "acme", "--admin", "a@example.com"],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        !unused.exists(),
        "the daemon bound its own socket despite LISTEN_FDS"
    );
    assert!(stop(&mut child).success());
    // The socket belongs to whoever passed it: the daemon does not unlink it.
    assert!(
        socket.exists(),
        "the daemon removed the inherited socket's path"
    );
    let log = stderr_of(&mut child);
    assert!(log.contains("socket=the socket systemd passed"), "{log}");
}

/// `compartmentd` (after `wrapper`, a command it is run through) under
/// systemd-socket-activate, handed a Unix socket at `socket` and a TCP one on `port` named
/// `page`, as compartmentd.socket and compartmentd-page.socket hand them over; its state in
/// `dir`, `extra` flags after.
fn with_page_socket(
    socket: &Path,
    port: u16,
    wrapper: &[&str],
    dir: &Path,
    extra: &[&str],
) -> Child {
    Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(socket)
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--fdname=compartmentd.sock:page")
        .args(wrapper)
        .arg(binary("compartmentd"))
        .arg("--socket")
        .arg(dir.join("never-bound.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

root_test!(
    the_page_socket_systemd_passes_is_served_with_the_network_shut,
    || {
        let test = "the_page_socket_systemd_passes_is_served_with_the_network_shut";
        if skip_without_tool(test, "systemd-socket-activate") || skip_without_tool(test, "unshare")
        {
            return;
        }
        // As compartmentd-page.socket and compartmentd.socket hand them over: a Unix socket and
        // a TCP one named `page`; the daemon runs in a network namespace of its own with no
        // interface up (as PrivateNetwork=yes makes it), so only the passed socket can serve.
        let dir = temp_dir();
        let socket = dir.path().join("activated.sock");
        let port = free_port();
        let mut child = with_page_socket(&socket, port, &["unshare", "--net"], dir.path(), &[]);
        wait_for_ping(&socket);
        let (head, body) = http_get(
            port,
            "/activate?token=AaJPBrjfC2r_xCRfyB8h3JdDSn8hTJhtNBmBXXD_0a0",
        )
        .expect("the page answers on the passed socket");
        assert!(head.starts_with("http/1.1 404"), "{head}");
        assert!(body.contains("This invitation link is not valid"), "{body}");
        assert!(stop(&mut child).success());
        let log = stderr_of(&mut child);
        assert!(
            log.contains("the activation page is served on the socket systemd passed"),
            "{log}"
        );
    }
);

#[test]
fn a_passed_page_socket_and_http_listen_together_are_refused() {
    if skip_without_tool(
        "a_passed_page_socket_and_http_listen_together_are_refused",
        "systemd-socket-activate",
    ) {
        return;
    }
    let dir = temp_dir();
    let socket = dir.path().join("activated.sock");
    let mut child = with_page_socket(
        &socket,
        free_port(),
        &[],
        dir.path(),
        &["--http-listen", "127.0.0.1:0"],
    );
    // The first connection starts it (once systemd-socket-activate listens), and it ends
    // at once, saying why.
    let deadline = Instant::now() + WAIT;
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens at {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the daemon kept running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "{status:?}");
    let log = stderr_of(&mut child);
    assert!(
        log.contains("the activation page's socket is passed by systemd (compartmentd-page.socket) and --http-listen 127.0.0.1:0 asks for another: choose one"),
        "{log}"
    );
}

root_test!(
    a_daemon_run_as_its_own_user_behind_the_socket_unit_is_trusted_by_every_cli,
    || {
        let test = "a_daemon_run_as_its_own_user_behind_the_socket_unit_is_trusted_by_every_cli";
        if skip_without_tool(test, "systemd-socket-activate") || skip_without_tool(test, "setpriv")
        {
            return;
        }
        // As the package runs it: the socket unit (root) listens, the daemon runs as a user
        // of its own (DynamicUser=yes there), and callers are other users.
        let owner = TestUser::get("cpt-s-daemon");
        let caller = TestUser::get("cpt-s-caller");
        let dir = temp_dir();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(owner.uid), Some(owner.gid)).unwrap();
        let as_owner = |command: &mut Command| {
            command
                .arg("setpriv")
                .arg(format!("--reuid={}", owner.uid))
                .arg(format!("--regid={}", owner.gid))
                .arg("--clear-groups")
                .arg("env")
                .arg(format!("HOME={}", home.display()))
                .arg(binary_for_other_users("compartmentd"))
                .arg("--state-dir")
                .arg(home.join("state"));
        };
        let socket = dir.path().join("activated.sock");
        let mut activator = Command::new("systemd-socket-activate");
        activator.arg("-l").arg(&socket);
        as_owner(&mut activator);
        let mut child = activator
            .arg("--socket")
            .arg(home.join("never-bound.sock"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "systemd-socket-activate never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The socket unit's SocketMode=0666.
        std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
        wait_for_ping(&socket);
        let version = env!("CARGO_PKG_VERSION");
        let out = ctl_command(&socket, caller.uid, &["ping"])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.starts_with(&format!("compartmentd {version} is running at "))
                && said.ends_with(").\n"),
            "{out:?}"
        );
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(stop(&mut child).success());

        // The same daemon listening on a socket of its own is trusted only when named.
        let own_socket = home.join("own.sock");
        let mut command = Command::new("/usr/bin/env");
        as_owner(&mut command);
        let mut own = command
            .arg("--socket")
            .arg(&own_socket)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let owner_user = UnixUser::by_name(&owner.name).unwrap();
        wait_for_ping_trusting(&own_socket, &Trust::own().and_user(owner_user));
        let out = ctl_command(&own_socket, caller.uid, &["ping"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).lines().next(),
            Some(
                format!(
                    "compartmentctl: refusing to talk to {}: its server runs as uid {} ({}), not root and not your own uid {}",
                    own_socket.display(),
                    owner.uid,
                    owner.name,
                    caller.uid
                )
                .as_str()
            ),
            "{out:?}"
        );
        let out = ctl_command(
            &own_socket,
            caller.uid,
            &["--trust-server-user", &owner.name, "ping"],
        )
        .output()
        .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.starts_with(&format!("compartmentd {version} is running at "))
                && said.ends_with(").\n"),
            "{out:?}"
        );
        assert!(stop(&mut own).success());
    }
);

#[test]
fn it_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let dir = temp_dir();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let socket = dir.path().join("d.sock");
    let mut child = Command::new(binary("compartmentd"))
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_ping(&socket);
    // A datagram is queued once sent: READY=1, sent before any request is answered, is
    // already there when the first answer has come (however late this thread runs).
    notify.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    let ready = match notify.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(err) => panic!("a request was answered before READY=1 ({err})"),
    };
    assert_eq!(ready, "READY=1\n");
    assert!(stop(&mut child).success());
    notify.set_nonblocking(false).unwrap();
    notify.set_read_timeout(Some(WAIT)).unwrap();
    // Its STATUS= lines may come between (every ten seconds, without a watchdog).
    let stopping = loop {
        let n = notify.recv(&mut buf).expect("STOPPING=1 after SIGTERM");
        let said = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !said.starts_with("STATUS=") {
            break said;
        }
    };
    assert_eq!(stopping, "STOPPING=1\n");
}

/// Starts the daemon in a private mount namespace whose /run/systemd/journal/socket is
/// `journal`, a datagram socket the test reads: journald as the daemon sees it.
fn spawn_with_fake_journal(dir: &Path, journal: &Path, extra_env: &[(&str, &str)]) -> Child {
    let script = r#"set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal
touch /run/systemd/journal/socket
mount --bind "$FAKE_JOURNAL" /run/systemd/journal/socket
exec "$@""#;
    let mut command = Command::new("unshare");
    command
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(binary("compartmentd"))
        .arg("--socket")
        .arg(dir.join("d.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("FAKE_JOURNAL", journal)
        // A successful ping is routine, logged at debug: the record the test looks for.
        .env("RUST_LOG", "info,compartmentd=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in extra_env {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

/// Journal export records (`NAME=value` lines, or `NAME\n<u64 le length><value>\n`) as
/// (name, value) pairs.
fn journal_fields(mut datagram: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    while let Some(end) = datagram.iter().position(|&b| b == b'\n' || b == b'=') {
        let name = String::from_utf8_lossy(&datagram[..end]).into_owned();
        if datagram[end] == b'=' {
            let rest = &datagram[end + 1..];
            let stop = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            fields.push((name, String::from_utf8_lossy(&rest[..stop]).into_owned()));
            datagram = rest.get(stop + 1..).unwrap_or_default();
        } else {
            let rest = &datagram[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            fields.push((
                name,
                String::from_utf8_lossy(&rest[8..8 + len]).into_owned(),
            ));
            datagram = rest.get(8 + len + 1..).unwrap_or_default();
        }
    }
    fields
}

root_test!(
    under_systemd_it_logs_structured_records_to_the_journal,
    "to fake /run/systemd/journal/socket in a mount namespace",
    || {
        if skip_without_tool(
            "under_systemd_it_logs_structured_records_to_the_journal",
            "unshare",
        ) {
            return;
        }
        for (case, env) in [
            ("JOURNAL_STREAM set", vec![("JOURNAL_STREAM", "8:12345")]),
            (
                "--log-format journald",
                vec![("COMPARTMENT_LOG_FORMAT", "journald")],
            ),
        ] {
            let dir = temp_dir();
            let journal_path = dir.path().join("journal.sock");
            let journal = UnixDatagram::bind(&journal_path).unwrap();
            journal
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut child = spawn_with_fake_journal(dir.path(), &journal_path, &env);
            wait_for_ping(&dir.path().join("d.sock"));
            assert!(stop(&mut child).success());

            let mut records = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = journal.recv(&mut buf) {
                if n > 0 {
                    records.push(journal_fields(&buf[..n]));
                }
            }
            let field = |record: &Vec<(String, String)>, name: &str| {
                record
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            assert!(!records.is_empty(), "{case}: nothing reached the journal");
            assert!(
                records
                    .iter()
                    .all(|r| field(r, "SYSLOG_IDENTIFIER").as_deref() == Some("compartmentd")),
                "{case}: {records:?}"
            );
            let ping = records
                .iter()
                .find(|r| field(r, "METHOD").as_deref() == Some("ping"))
                .unwrap_or_else(|| panic!("{case}: no request record: {records:?}"));
            assert_eq!(field(ping, "OUTCOME").as_deref(), Some("ok"), "{case}");
            assert_eq!(field(ping, "UID").as_deref(), Some("0"), "{case}");
            assert!(field(ping, "PID").is_some(), "{case}: {ping:?}");
            assert_eq!(field(ping, "ORG").as_deref(), Some("-"), "{case}");
            // Nothing went to stderr but what the journal could not take.
            let stderr = stderr_of(&mut child);
            assert!(
                !stderr.contains("compartmentd listening"),
                "{case}: logged to stderr too:\n{stderr}"
            );
        }
    }
);

#[test]
fn without_a_journal_it_logs_to_stderr_and_keeps_running() {
    for env in [vec![], vec![("JOURNAL_STREAM", "8:12345")]] {
        let dir = temp_dir();
        let socket = dir.path().join("d.sock");
        let mut command = Command::new(binary("compartmentd"));
        command
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            // A successful ping is routine, logged at debug: the line the test looks for.
            .env("RUST_LOG", "info,compartmentd=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in &env {
            command.env(key, value);
        }
        // Where a journal does run, only the plain case says something about this machine.
        let journal_present = Path::new("/run/systemd/journal/socket").exists();
        let mut child = command.spawn().unwrap();
        wait_for_ping(&socket);
        assert!(stop(&mut child).success());
        let stderr = stderr_of(&mut child);
        if env.is_empty() || !journal_present {
            assert!(
                stderr.contains("compartmentd listening"),
                "{env:?}: {stderr}"
            );
            assert!(stderr.contains("method=\"ping\""), "{env:?}: {stderr}");
        }
        if !env.is_empty() && !journal_present {
            assert!(
                stderr.contains("the journal is unreachable"),
                "a missing journal should be reported, not fatal: {stderr}"
            );
        }
    }
}
