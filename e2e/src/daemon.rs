//! The daemon under test: a real `compartmentd` in its own temp dir, started, stopped,
//! killed and restarted, with the CLI, the library client and raw connections pointed at it.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use compartmentctl::wire::{MemberList, Request, Response, UserListParams, MAX_PAGE};
use compartmentctl::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::printed::{parse_invitation_lines, InvitationLines};
use crate::privileges::{binary, ROOT};
use crate::process::{ctl_command, search_path, Out, Running};
use crate::raw::RawConn;

/// What every test daemon is told its public URL is, as on the documentation page.
pub const PUBLIC_URL: &str = "https://your-compartment-host";

/// How long a daemon may take to answer its first ping.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// Runs another `compartmentd` with this daemon's options and `args` on a socket and
    /// state directory of its own, and waits up to 10 s for it to exit; `None` when it was
    /// still running (then killed).
    pub fn run_second_daemon_with(&self, args: &[&str]) -> Option<Out> {
        let mut command =
            self.daemon_command(&self.dir().join("second.sock"), &self.dir().join("second"));
        command.args(args);
        Running::spawn(command).wait_timeout(Duration::from_secs(10))
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

    /// Every member of `org`, asked over the library client as the test process, page by
    /// page until the last (which has no `next`).
    pub fn members(&self, org: &str) -> MemberList {
        let mut client = self.client();
        let mut all = MemberList {
            org: org.to_owned(),
            members: Vec::new(),
            next: None,
        };
        let mut after = None;
        loop {
            let page: MemberList = client
                .call(&Request::UserList(UserListParams {
                    org: Some(org.to_owned()),
                    limit: Some(MAX_PAGE),
                    after: after.take(),
                    status: None,
                }))
                .unwrap_or_else(|err| panic!("user.list in {org}: {err}"));
            all.org = page.org;
            all.members.extend(page.members);
            match page.next {
                Some(next) => after = Some(next),
                None => return all,
            }
        }
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
