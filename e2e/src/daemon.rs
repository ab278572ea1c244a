//! The daemon under test as a process: the built `compartmentd` in its own temp dir,
//! started, stopped with SIGTERM, killed and restarted; and the flags every test daemon
//! takes ([`DaemonOptions`]), in a process or in the test process alike.

use std::fs::{self, OpenOptions};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::endpoint::Endpoint;
use crate::postgres::Database;
use crate::privileges::binary;
use crate::process::{search_path, Out, Running};

/// What every test daemon is told its public URL is, as on the documentation page.
pub const PUBLIC_URL: &str = "https://your-compartment-host";

/// How long a daemon may take to answer its first ping.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Extra flags and environment for a test daemon.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    /// The PostgreSQL the daemon keeps its membership in, kept running as long as it.
    pub(crate) database: Option<Database>,
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

    /// Whether the daemon keeps its membership in PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.database.is_some()
    }

    /// Keeps the membership in `database` (`--store`) rather than in the state directory.
    pub fn postgres(mut self, database: &Database) -> DaemonOptions {
        self.args.push("--store".to_owned());
        self.args.push(database.conninfo());
        self.database = Some(database.clone());
        self
    }
}

/// The built `compartmentd`, a process of its own in an [`Endpoint`]'s temp dir, its
/// stdout and stderr appended to `<dir>/daemon.log`; it can be stopped with SIGTERM, killed
/// and restarted. Killed on drop. For what needs none of that, see [`Daemon::in_process`].
pub struct Daemon {
    endpoint: Endpoint,
    options: DaemonOptions,
    child: Option<Child>,
}

impl Deref for Daemon {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Daemon {
    /// Starts a daemon with the default flags and waits until it answers a ping.
    pub fn start_default() -> Daemon {
        Daemon::start(DaemonOptions::new())
    }

    /// Starts a daemon with `options` and waits until it answers a ping.
    pub fn start(options: DaemonOptions) -> Daemon {
        let mut daemon = Daemon {
            endpoint: Endpoint::new(),
            options,
            child: None,
        };
        daemon.spawn_and_wait_ready();
        daemon
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

    /// Runs a daemon with `options` that must refuse to start: what it printed and its
    /// exit code; fails when it is still running after 10 s (then killed).
    #[track_caller]
    pub fn refused_start(options: DaemonOptions) -> Out {
        let daemon = Daemon {
            endpoint: Endpoint::new(),
            options,
            child: None,
        };
        let command = daemon.daemon_command(&daemon.socket(), &daemon.state_dir());
        Running::spawn(command)
            .wait_timeout(Duration::from_secs(10))
            .expect("a daemon that should have refused to start is still running")
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
}

/// Runs the built `compartmentd` with `args` (`restore`, `check`…) in `dir`, its
/// environment cleared, and waits for it (two minutes at most, then it is killed).
pub fn run_compartmentd(dir: &Path, args: &[&str]) -> Out {
    let mut command = Command::new(binary("compartmentd"));
    command
        .args(args)
        .env_clear()
        .env("PATH", search_path())
        .env("HOME", dir)
        .current_dir(dir);
    Running::spawn(command)
        .wait_timeout(Duration::from_secs(120))
        .expect("compartmentd ran for more than two minutes")
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
            return;
        }
        // Every error a method answered is among those rpc.discover says it may answer.
        let log = self.log();
        let undeclared: Vec<&str> = log
            .lines()
            .filter(|line| line.contains(compartmentd::pipeline::UNDECLARED_ERROR))
            .collect();
        assert!(
            undeclared.is_empty(),
            "the daemon answered errors its methods do not declare:\n{}",
            undeclared.join("\n")
        );
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
