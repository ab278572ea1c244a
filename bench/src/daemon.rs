//! The daemon under measurement: a real `compartmentd` process on a temporary socket and
//! state directory, started, timed to its first answer, sampled for memory, and stopped.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use compartmentctl::wire::{Pong, Request};
use compartmentctl::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a start may take before the run is called failed.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running `compartmentd`; killed on drop, so a failed run leaves no daemon behind.
pub struct Daemon {
    binary: PathBuf,
    dir: PathBuf,
    /// What `--store` names, when not the redb file in the state directory.
    store: Option<String>,
    child: Option<Child>,
}

/// A process's resident memory, from `/proc/<pid>/status`.
#[derive(Clone, Copy)]
pub struct Memory {
    /// `VmRSS`: resident now, in KiB.
    pub rss_kib: u64,
    /// `VmHWM`: the most it was ever resident, in KiB.
    pub peak_kib: u64,
}

impl Daemon {
    /// Starts `binary` with its socket and state directory in `dir`, and returns it with the
    /// time from spawning it to its first answer (a `ping` over the library client).
    pub fn start(binary: &Path, dir: &Path) -> (Daemon, Duration) {
        Daemon::start_on(binary, dir, None)
    }

    /// [`Daemon::start`] on the PostgreSQL `store` names (`--store`), when given.
    pub fn start_on(binary: &Path, dir: &Path, store: Option<&str>) -> (Daemon, Duration) {
        let mut daemon = Daemon {
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            store: store.map(str::to_owned),
            child: None,
        };
        let took = daemon.spawn();
        (daemon, took)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("compartmentd.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    fn spawn(&mut self) -> Duration {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the daemon's log file");
        let mut command = Command::new(&self.binary);
        command
            .arg("--socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(["--public-url", "https://bench.example"])
            // The bench opens 64 connections at once, all as this uid, plus its own.
            .args(["--max-connections-per-uid", "512"])
            .args(
                self.store
                    .iter()
                    .flat_map(|store| ["--store", store.as_str()]),
            )
            // No COMPARTMENT_* settings or systemd variables from the caller's environment.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("duplicate the log file"))
            .stderr(log);
        // The writer's trace of each commit gives the batches it made (`log::mean_batch`).
        command.env(
            "RUST_LOG",
            std::env::var_os("RUST_LOG")
                .unwrap_or_else(|| "info,compartmentd::writer=trace".into()),
        );
        let started = Instant::now();
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", self.binary.display()));
        self.child = Some(child);
        loop {
            if let Ok(mut client) = Client::connect(&self.socket()) {
                if client.call::<Pong>(&Request::Ping).is_ok() {
                    return started.elapsed();
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!(
                    "compartmentd exited with {status} before answering; its log:\n{}",
                    self.log_tail()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "compartmentd did not answer within {START_TIMEOUT:?}; its log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the daemon with SIGTERM, as systemd does, and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM compartmentd");
        let status = child.wait().expect("wait for compartmentd");
        if !status.success() {
            panic!(
                "compartmentd exited with {status} after SIGTERM; its log:\n{}",
                self.log_tail()
            );
        }
    }

    /// Starts the stopped daemon again; the time from spawning it to its first answer.
    pub fn start_again(&mut self) -> Duration {
        assert!(self.child.is_none(), "compartmentd is still running");
        self.spawn()
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("compartmentd is running").id()
    }

    /// The daemon's resident memory now and at its peak.
    pub fn memory(&self) -> Memory {
        let pid = self.child.as_ref().expect("compartmentd is running").id();
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|err| panic!("read /proc/{pid}/status: {err}"));
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        Memory {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
        }
    }

    /// The size of the database file, in bytes.
    pub fn database_bytes(&self) -> u64 {
        let path = self.state_dir().join("compartment.redb");
        fs::metadata(&path)
            .unwrap_or_else(|err| panic!("stat {}: {err}", path.display()))
            .len()
    }

    /// The last lines of the daemon's log, for a failure's message.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("---- end of compartmentd's log ----\n{}", self.log_tail());
            }
        }
    }
}
