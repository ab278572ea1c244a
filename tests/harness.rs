//! Test support for the end-to-end tests: finds the built binaries, runs a real
//! `compartmentd` in its own temp dir, runs `compartmentctl` as any Unix uid, and speaks
//! the raw line protocol with timeouts so that no test can hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use compartmentctl::wire::{MemberList, OrgParams, Request, Response};
use compartmentctl::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// `ctl(ROOT, …)` runs the CLI as the test process itself (a superuser when it is root).
pub const ROOT: u32 = 0;
/// What every test daemon is told its public URL is, as on the documentation page.
pub const PUBLIC_URL: &str = "https://your-compartment-host";
/// How every activation URL begins.
pub const URL_PREFIX: &str = "https://your-compartment-host/activate?token=";

/// How long a CLI run or a second daemon may take before the test gives up on it.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a raw connection waits for a response line.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a daemon may take to answer its first ping.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Binaries and privileges

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
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("compartment-e2e-bin-{}-{modified:x}", meta.len()));
    let shared = dir.join(name);
    if !shared.is_file() {
        fs::create_dir_all(&dir).expect("create the shared binary directory");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod it");
        // Copied under a private name, then renamed: test processes running at once never
        // run a half-written file.
        static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let copy = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

// ---------------------------------------------------------------------------------------
// Running processes with a deadline

/// What a finished process left behind.
#[derive(Debug, Clone)]
pub struct Out {
    /// The command line, for failure messages.
    pub cmd: String,
    /// The exit code; `128 + signal` when a signal ended it.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    }
}

impl Out {
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }

    /// Exit 0 and exactly `stdout`.
    #[track_caller]
    pub fn assert_ok(&self, stdout: &str) -> &Out {
        assert_eq!(self.code, 0, "expected exit 0 from {self:#?}");
        assert_eq!(self.stdout, stdout, "stdout of {self:#?}");
        self
    }

    /// Exit 0, whatever the output.
    #[track_caller]
    pub fn assert_success(&self) -> &Out {
        assert_eq!(self.code, 0, "expected exit 0 from {self:#?}");
        self
    }

    /// Exit `code`, nothing on stdout, and `compartmentctl: <message>` as the first line of
    /// stderr (a hint line may follow).
    #[track_caller]
    pub fn assert_err(&self, code: i32, message: &str) -> &Out {
        assert_eq!(self.code, code, "expected exit {code} from {self:#?}");
        assert_eq!(self.stdout, "", "stdout of a failed command {self:#?}");
        assert_eq!(
            self.stderr_lines().first().copied(),
            Some(format!("compartmentctl: {message}").as_str()),
            "first stderr line of {self:#?}"
        );
        self
    }

    /// Exit `code`, nothing on stdout, and exactly the two stderr lines
    /// `compartmentctl: <message>` and `hint: <hint>`.
    #[track_caller]
    pub fn assert_err_hint(&self, code: i32, message: &str, hint: &str) -> &Out {
        assert_eq!(self.code, code, "expected exit {code} from {self:#?}");
        assert_eq!(self.stdout, "", "stdout of a failed command {self:#?}");
        assert_eq!(
            self.stderr,
            format!("compartmentctl: {message}\nhint: {hint}\n"),
            "stderr of {self:#?}"
        );
        self
    }
}

/// A spawned process whose output is being collected.
pub struct Running {
    cmd: String,
    pid: Pid,
    done_rx: mpsc::Receiver<io::Result<std::process::Output>>,
}

impl Running {
    fn spawn(command: Command) -> Running {
        Running::spawn_with_stdin(command, None)
    }

    /// Spawns `command` with `input` (then end of file) as its stdin, or no stdin at all.
    fn spawn_with_stdin(mut command: Command, input: Option<Vec<u8>>) -> Running {
        let cmd = format!("{command:?}");
        command
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {cmd}: {err}"));
        let pid = Pid::from_raw(child.id() as i32);
        let stdin = child.stdin.take();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            if let (Some(mut stdin), Some(input)) = (stdin, input) {
                // A process that exits without reading leaves a broken pipe: not our concern.
                let _ = stdin.write_all(&input);
            }
            let _ = done_tx.send(child.wait_with_output());
        });
        Running { cmd, pid, done_rx }
    }

    /// The output, or `None` (after killing the process) when it ran past `timeout`.
    pub fn wait_timeout(self, timeout: Duration) -> Option<Out> {
        match self.done_rx.recv_timeout(timeout) {
            Ok(output) => {
                let output = output.unwrap_or_else(|err| panic!("waiting for {}: {err}", self.cmd));
                Some(Out {
                    cmd: self.cmd,
                    code: exit_code(output.status),
                    stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                })
            }
            Err(_) => {
                let _ = kill(self.pid, Signal::SIGKILL);
                let _ = self.done_rx.recv_timeout(Duration::from_secs(5));
                None
            }
        }
    }

    /// The output; panics when the process runs for more than 30 s.
    #[track_caller]
    pub fn wait(self) -> Out {
        let cmd = self.cmd.clone();
        self.wait_timeout(PROCESS_TIMEOUT)
            .unwrap_or_else(|| panic!("{cmd} ran for more than {PROCESS_TIMEOUT:?}; killed it"))
    }
}

fn search_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned())
}

/// `compartmentctl --socket <socket> <args…>` as `uid` (and gid = uid, no supplementary
/// groups), with a clean environment: only `PATH` and `HOME=/`.
pub fn ctl_command(socket: &Path, uid: u32, args: &[&str]) -> Command {
    let program = if uid == ROOT {
        binary("compartmentctl")
    } else {
        binary_for_other_users("compartmentctl")
    };
    let mut command = Command::new(program);
    command
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_clear()
        .env("PATH", search_path())
        .env("HOME", "/")
        .current_dir("/");
    if uid != ROOT {
        command.uid(uid).gid(uid);
    }
    command
}

// ---------------------------------------------------------------------------------------
// The daemon

/// Extra flags and environment for a test daemon.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl DaemonOptions {
    pub fn new() -> DaemonOptions {
        DaemonOptions::default()
    }

    pub fn arg(mut self, arg: &str) -> DaemonOptions {
        self.args.push(arg.to_owned());
        self
    }

    pub fn args(mut self, args: &[&str]) -> DaemonOptions {
        self.args.extend(args.iter().map(|arg| (*arg).to_owned()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> DaemonOptions {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// A `compartmentd` running in its own temp dir: `<dir>/compartmentd.sock`,
/// `<dir>/state/`, and its stdout and stderr appended to `<dir>/daemon.log`. Killed on
/// drop.
pub struct Daemon {
    dir: tempfile::TempDir,
    options: DaemonOptions,
    child: Option<Child>,
}

impl Daemon {
    /// Starts a daemon with the default flags and waits until it answers a ping.
    pub fn start_default() -> Daemon {
        Daemon::start(DaemonOptions::new())
    }

    /// Starts a daemon with `options` and waits until it answers a ping.
    pub fn start(options: DaemonOptions) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("compartment-e2e-")
            .tempdir()
            .expect("a temp dir");
        // Temp dirs are 0700; the CLI run as other uids must reach the socket inside.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("chmod the temp dir");
        let mut daemon = Daemon {
            dir,
            options,
            child: None,
        };
        daemon.spawn_and_wait_ready();
        daemon
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("compartmentd.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir().join("state")
    }

    pub fn db_path(&self) -> PathBuf {
        self.state_dir().join("compartment.redb")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("daemon.log")
    }

    /// Everything the daemon wrote to stdout and stderr, over all its runs.
    pub fn log(&self) -> String {
        fs::read(self.log_path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The command line that starts a daemon on `socket` and `state_dir` with this
    /// daemon's extra options.
    pub fn daemon_command(&self, socket: &Path, state_dir: &Path) -> Command {
        let mut command = Command::new(binary("compartmentd"));
        command
            .arg("--socket")
            .arg(socket)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--public-url")
            .arg(PUBLIC_URL)
            .args(&self.options.args)
            // No systemd variables, no COMPARTMENT_* settings from the caller.
            .env_clear()
            .env("PATH", search_path())
            .env("HOME", self.dir())
            .current_dir(self.dir());
        if let Ok(filter) = std::env::var("RUST_LOG") {
            command.env("RUST_LOG", filter);
        }
        for (key, value) in &self.options.env {
            command.env(key, value);
        }
        command
    }

    fn spawn_and_wait_ready(&mut self) {
        assert!(self.child.is_none(), "the daemon is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open daemon.log");
        let mut command = self.daemon_command(&self.socket(), &self.state_dir());
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup daemon.log"))
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "compartmentd exited with {status} before answering a ping; its log:\n{}",
                        self.log()
                    );
                }
            }
            if self.answers_ping() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "compartmentd did not answer a ping within {READY_TIMEOUT:?}; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True when a fresh connection gets a `ping` result.
    pub fn answers_ping(&self) -> bool {
        let Ok(stream) = UnixStream::connect(self.socket()) else {
            return false;
        };
        let mut conn = RawConn::from_stream(stream, Duration::from_secs(2));
        if conn
            .try_send(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")
            .is_err()
        {
            return false;
        }
        match conn.try_read_line() {
            Ok(Some(line)) => serde_json::from_str::<Response>(&line)
                .map(|response| response.result.is_some())
                .unwrap_or(false),
            _ => false,
        }
    }

    /// Sends SIGTERM, waits, and asserts a clean exit.
    #[track_caller]
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("the daemon is not running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM the daemon");
        let status = wait_child(&mut child, Duration::from_secs(10));
        match status {
            Some(status) => assert!(
                status.success(),
                "compartmentd exited with {status} after SIGTERM; its log:\n{}",
                self.log()
            ),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "compartmentd did not exit within 10 s of SIGTERM; its log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// Sends SIGKILL and waits: no chance to clean up or flush.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the daemon is not running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("SIGKILL the daemon");
        child.wait().expect("wait for the killed daemon");
    }

    /// Stops the daemon if it runs, then starts it again on the same socket and state dir.
    #[track_caller]
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn_and_wait_ready();
    }

    /// Runs another `compartmentd` on `socket` and `state_dir` (this daemon's options) and
    /// waits up to 10 s for it to exit; `None` when it was still running (then killed).
    pub fn run_second_daemon(&self, socket: &Path, state_dir: &Path) -> Option<Out> {
        Running::spawn(self.daemon_command(socket, state_dir)).wait_timeout(Duration::from_secs(10))
    }

    /// Runs `compartmentctl --socket <socket> <args…>` as `uid` and waits for it.
    #[track_caller]
    pub fn ctl(&self, uid: u32, args: &[&str]) -> Out {
        self.spawn_ctl(uid, args).wait()
    }

    /// Starts `compartmentctl` as `uid` without waiting, for races.
    pub fn spawn_ctl(&self, uid: u32, args: &[&str]) -> Running {
        Running::spawn(ctl_command(&self.socket(), uid, args))
    }

    /// Runs `compartmentctl --socket <socket> <args…>` as `uid` with `input` on its stdin,
    /// and waits for it.
    #[track_caller]
    pub fn ctl_with_stdin(&self, uid: u32, args: &[&str], input: &str) -> Out {
        Running::spawn_with_stdin(
            ctl_command(&self.socket(), uid, args),
            Some(input.as_bytes().to_vec()),
        )
        .wait()
    }

    /// `compartmentctl activate` as `uid` the documented way, the URL on stdin (never in
    /// argv, where other users could read it), and waits for it.
    #[track_caller]
    pub fn activate(&self, uid: u32, url: &str) -> Out {
        self.ctl_with_stdin(uid, &["activate"], &format!("{url}\n"))
    }

    /// Starts [`Daemon::activate`] without waiting, for races.
    pub fn spawn_activate(&self, uid: u32, url: &str) -> Running {
        Running::spawn_with_stdin(
            ctl_command(&self.socket(), uid, &["activate"]),
            Some(format!("{url}\n").into_bytes()),
        )
    }

    /// Root creates `acme` with `admin@example.com`; returns the admin's invitation, after
    /// checking the page's lines.
    #[track_caller]
    pub fn create_acme(&self) -> InvitationLines {
        let out = self.ctl(
            ROOT,
            &["org", "create", "acme", "--admin", "admin@example.com"],
        );
        out.assert_success();
        let lines = out.stdout_lines();
        assert_eq!(
            lines.first(),
            Some(&"Created organization acme."),
            "{out:#?}"
        );
        parse_invitation_lines(&lines[1..], "admin@example.com", "admin")
    }

    /// A library client, as the test process (root: a superuser).
    pub fn client(&self) -> Client {
        Client::connect(&self.socket()).expect("connect to compartmentd")
    }

    /// A raw connection, as the test process.
    pub fn raw(&self) -> RawConn {
        RawConn::connect(&self.socket())
    }

    /// The members of `org`, asked over the library client as the test process.
    pub fn members(&self, org: &str) -> MemberList {
        self.client()
            .call(&Request::UserList(OrgParams {
                org: Some(org.to_owned()),
            }))
            .unwrap_or_else(|err| panic!("user.list in {org}: {err}"))
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- daemon log ({}) ----\n{}---- end of daemon log ----",
                self.log_path().display(),
                self.log()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// The raw protocol

/// A raw connection to the socket: write any bytes, read response lines with a timeout.
pub struct RawConn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl RawConn {
    #[track_caller]
    pub fn connect(socket: &Path) -> RawConn {
        let stream = UnixStream::connect(socket)
            .unwrap_or_else(|err| panic!("connect to {}: {err}", socket.display()));
        RawConn::from_stream(stream, READ_TIMEOUT)
    }

    fn from_stream(stream: UnixStream, timeout: Duration) -> RawConn {
        stream
            .set_read_timeout(Some(timeout))
            .expect("set a read timeout");
        stream
            .set_write_timeout(Some(timeout))
            .expect("set a write timeout");
        let writer = stream.try_clone().expect("clone the stream");
        RawConn {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Another handle on the writing side, for writing from another thread.
    pub fn writer(&self) -> UnixStream {
        self.writer.try_clone().expect("clone the stream")
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).expect("write to the socket");
    }

    /// Sends `line` and a newline.
    #[track_caller]
    pub fn send_line(&mut self, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        self.send(&bytes);
    }

    /// The next line without its newline; `Ok(None)` when the daemon closed the connection
    /// (end of file, or a reset because it closed with our bytes unread).
    pub fn try_read_line(&mut self) -> io::Result<Option<String>> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => Ok(None),
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Ok(Some(String::from_utf8_lossy(&line).into_owned()))
            }
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The next line; panics on a timeout or a closed connection.
    #[track_caller]
    pub fn read_line(&mut self) -> String {
        match self.try_read_line() {
            Ok(Some(line)) => line,
            Ok(None) => panic!("compartmentd closed the connection instead of answering"),
            Err(err) => panic!("no response line within {READ_TIMEOUT:?}: {err}"),
        }
    }

    /// The next line as JSON.
    #[track_caller]
    pub fn read_json(&mut self) -> Value {
        let line = self.read_line();
        serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("response is not JSON ({err}): {line}"))
    }

    /// Sends one line and reads one JSON response.
    #[track_caller]
    pub fn call(&mut self, line: &str) -> Value {
        self.send_line(line);
        self.read_json()
    }

    /// True when the daemon has closed the connection: the next read ends (EOF or reset)
    /// rather than timing out or returning data.
    #[track_caller]
    pub fn is_closed(&mut self) -> bool {
        match self.try_read_line() {
            Ok(None) => true,
            Ok(Some(line)) => panic!("expected the connection to be closed, got the line {line}"),
            Err(err) => panic!("expected the connection to be closed, the read failed: {err}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// What the CLI prints

/// The three lines `user invite` prints for a new account, parsed and checked.
#[derive(Debug, Clone)]
pub struct InvitationLines {
    pub email: String,
    pub role: String,
    pub url: String,
    pub token: String,
    pub expires_at: String,
    /// `expires_at` as seconds since the epoch.
    pub expires_at_unix: i64,
}

/// Checks the documentation page's three invitation lines exactly:
/// `Invited <email> as <role>.`, `Activation URL: https://your-compartment-host/activate?token=<token>`
/// (the token 32 bytes in unpadded base64url) and `Invitation expires at: <RFC 3339 UTC>`.
#[track_caller]
pub fn parse_invitation_lines(lines: &[&str], email: &str, role: &str) -> InvitationLines {
    assert_eq!(
        lines.len(),
        3,
        "three invitation lines expected: {lines:#?}"
    );
    assert_eq!(
        lines[0],
        format!("Invited {email} as {role}."),
        "{lines:#?}"
    );
    let url = lines[1]
        .strip_prefix("Activation URL: ")
        .unwrap_or_else(|| panic!("second line is not `Activation URL: …`: {lines:#?}"));
    let token = url
        .strip_prefix(URL_PREFIX)
        .unwrap_or_else(|| panic!("the URL does not start with {URL_PREFIX}: {url}"));
    assert_token_shape(token);
    let expires_at = lines[2]
        .strip_prefix("Invitation expires at: ")
        .unwrap_or_else(|| panic!("third line is not `Invitation expires at: …`: {lines:#?}"));
    let expires_at_unix = parse_rfc3339(expires_at).unwrap_or_else(|| {
        panic!("expiry is not RFC 3339 like 2026-05-01T12:00:00Z: {expires_at}")
    });
    InvitationLines {
        email: email.to_owned(),
        role: role.to_owned(),
        url: url.to_owned(),
        token: token.to_owned(),
        expires_at: expires_at.to_owned(),
        expires_at_unix,
    }
}

/// [`parse_invitation_lines`] on a whole successful `user invite` run.
#[track_caller]
pub fn parse_invite(out: &Out, email: &str, role: &str) -> InvitationLines {
    out.assert_success();
    parse_invitation_lines(&out.stdout_lines(), email, role)
}

/// A token is 32 random bytes in base64url without padding (43 characters).
#[track_caller]
pub fn assert_token_shape(token: &str) {
    let bytes = token_bytes(token);
    assert_eq!(bytes.len(), 32, "a token is 32 random bytes: {token}");
}

/// The raw bytes a token encodes.
#[track_caller]
pub fn token_bytes(token: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .unwrap_or_else(|err| panic!("the token is not unpadded base64url ({err}): {token}"))
}

/// The text of `user list`: a header and rows, columns separated by two spaces and padded
/// to the widest cell, no trailing spaces.
pub fn member_table(rows: &[[&str; 4]]) -> String {
    let header = ["EMAIL", "ROLE", "STATUS", "EXPIRES"];
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

// ---------------------------------------------------------------------------------------
// Time

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64
}

/// Parses exactly `YYYY-MM-DDTHH:MM:SSZ` into seconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every file under `dir`, recursively, with its bytes.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).expect("read the state dir") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            let bytes = fs::read(&path).expect("read a state file");
            files.push((path, bytes));
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-05-01T12:00:00Z"), Some(1_777_636_800));
        assert_eq!(parse_rfc3339("2026-05-01 12:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-05-01T12:00:00+00:00"), None);
    }

    #[test]
    fn member_table_aligns_without_trailing_spaces() {
        assert_eq!(
            member_table(&[["a@example.com", "admin", "active", "-"]]),
            "EMAIL          ROLE   STATUS  EXPIRES\na@example.com  admin  active  -\n"
        );
    }
}
