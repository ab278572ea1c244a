//! Running processes with a deadline: what a finished process left behind, a spawned
//! process that is killed when it overruns, and the command line of the CLI run as any
//! Unix user.

use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::privileges::{binary, binary_for_other_users, ROOT};
use crate::users::primary_gid;

/// How long a CLI run or a second daemon may take before the test gives up on it.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

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
    stdout: Arc<Collected>,
    /// The exit status and all of stderr, once the process has ended and its stdout is
    /// all read.
    done_rx: mpsc::Receiver<io::Result<(ExitStatus, Vec<u8>)>>,
}

/// What a process has printed on its stdout so far, and whether it has closed it.
#[derive(Default)]
struct Collected {
    printed: Mutex<(Vec<u8>, bool)>,
    grew: Condvar,
}

impl Collected {
    /// Reads `from` to its end, each piece as it arrives.
    fn read_all(&self, mut from: impl Read) {
        let mut buf = [0u8; 4096];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            let mut printed = self.printed.lock().unwrap();
            if n == 0 {
                printed.1 = true;
            } else {
                printed.0.extend_from_slice(&buf[..n]);
            }
            self.grew.notify_all();
            if n == 0 {
                return;
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.printed.lock().unwrap().0).into_owned()
    }
}

impl Running {
    /// Sends `signal` to the process (SIGINT, as Ctrl-C would).
    pub fn signal(&self, signal: Signal) {
        kill(self.pid, signal).expect("signal the process");
    }

    pub(crate) fn spawn(command: Command) -> Running {
        Running::spawn_with_stdin(command, None)
    }

    /// Spawns `command` with `input` (then end of file) as its stdin, or no stdin at all.
    pub(crate) fn spawn_with_stdin(mut command: Command, input: Option<Vec<u8>>) -> Running {
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
        let stdout = Arc::new(Collected::default());
        let reader = {
            let (stdout, pipe) = (stdout.clone(), child.stdout.take());
            std::thread::spawn(move || {
                if let Some(pipe) = pipe {
                    stdout.read_all(pipe);
                }
            })
        };
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            if let (Some(mut stdin), Some(input)) = (stdin, input) {
                // A process that exits without reading leaves a broken pipe: not our concern.
                let _ = stdin.write_all(&input);
            }
            let done = child.wait_with_output().map(|output| {
                let _ = reader.join();
                (output.status, output.stderr)
            });
            let _ = done_tx.send(done);
        });
        Running {
            cmd,
            pid,
            stdout,
            done_rx,
        }
    }

    /// Waits until the process has printed `text` on its stdout: true once it has, false
    /// when it closed its stdout without, or had not after `timeout` (a test's guard
    /// against a hang, not a measure).
    pub fn wait_for_stdout(&self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut printed = self.stdout.printed.lock().unwrap();
        loop {
            if String::from_utf8_lossy(&printed.0).contains(text) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if printed.1 || left.is_zero() {
                return false;
            }
            printed = self.stdout.grew.wait_timeout(printed, left).unwrap().0;
        }
    }

    /// The output, or `None` (after killing the process) when it ran past `timeout`.
    pub fn wait_timeout(self, timeout: Duration) -> Option<Out> {
        match self.done_rx.recv_timeout(timeout) {
            Ok(done) => {
                let (status, stderr) =
                    done.unwrap_or_else(|err| panic!("waiting for {}: {err}", self.cmd));
                Some(Out {
                    cmd: self.cmd,
                    code: exit_code(status),
                    stdout: self.stdout.text(),
                    stderr: String::from_utf8_lossy(&stderr).into_owned(),
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

pub(crate) fn search_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned())
}

/// `compartmentctl --socket <socket> <args…>` as `uid`, with the primary group of the Unix
/// user that owns the uid (the uid itself as gid when no user does) and no supplementary
/// groups, and a clean environment: only `PATH` and `HOME=/`.
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
        command.uid(uid).gid(primary_gid(uid).unwrap_or(uid));
    }
    command
}
