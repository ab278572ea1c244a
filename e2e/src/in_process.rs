//! The daemon under test in the test process: the server the binary runs
//! (`compartmentd::start`), from the same flags, on a thread of its own with its own async
//! runtime, in an [`Endpoint`]'s temp dir, on the real clock or a fake one. It runs as the
//! test process's uid, as the process daemon does; it has no log, no pid and no exit code.

use std::ffi::{OsStr, OsString};
use std::ops::Deref;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches};
use compartmentd::clock::{Clock, SystemClock};
use compartmentd::config::Config;
use tokio::sync::oneshot;

use crate::daemon::{Daemon, DaemonOptions, PUBLIC_URL, READY_TIMEOUT};
use crate::endpoint::Endpoint;

/// How long a stop may take before the test fails as hung: the server stops accepting,
/// lets each connection finish its request, and drains the writer.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `compartmentd`'s server running in the test process, in an [`Endpoint`]'s temp dir.
/// Stopped gracefully on drop. What only a process has (a pid, signals, a log, an exit
/// code, a restart) is [`Daemon::start`]'s.
pub struct InProcess {
    endpoint: Endpoint,
    stop_tx: Option<oneshot::Sender<()>>,
    /// What `start::serve` returned, its error as text.
    done_rx: mpsc::Receiver<Result<(), String>>,
    thread: Option<JoinHandle<()>>,
    /// The PostgreSQL the daemon keeps its membership in, running as long as it.
    _database: Option<crate::Database>,
}

impl Deref for InProcess {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Daemon {
    /// The server in the test process with the default flags, on the real clock.
    pub fn in_process_default() -> InProcess {
        Daemon::in_process(DaemonOptions::new())
    }

    /// The server in the test process with `options`, on the real clock; waits until it
    /// answers a ping.
    pub fn in_process(options: DaemonOptions) -> InProcess {
        Daemon::in_process_with_clock(options, Arc::new(SystemClock))
    }

    /// [`Daemon::in_process`] on `clock`: a `compartmentd::clock::FakeClock` the test keeps
    /// a handle on and moves, for a test that needs time to pass.
    pub fn in_process_with_clock(options: DaemonOptions, clock: Arc<dyn Clock>) -> InProcess {
        let endpoint = Endpoint::new();
        let config = config(&options, &endpoint);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("compartmentd".to_owned())
            .spawn(move || {
                let served = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .map_err(|err| format!("cannot start the async runtime: {err}"))
                    .and_then(|runtime| {
                        runtime
                            .block_on(compartmentd::start::serve(&config, clock, async {
                                let _ = stop_rx.await;
                            }))
                            .map_err(|err| err.to_string())
                    });
                let _ = done_tx.send(served);
            })
            .expect("a thread for the daemon");
        let daemon = InProcess {
            endpoint,
            stop_tx: Some(stop_tx),
            done_rx,
            thread: Some(thread),
            _database: options.database.clone(),
        };
        daemon.wait_ready();
        daemon
    }
}

/// The command line of `options` with this endpoint's socket and state directory, parsed
/// as the binary parses its own. The binary's environment is cleared but for `options`'
/// variables; here no variable is read, and each of `options`' is given as the flag it
/// stands for.
fn config(options: &DaemonOptions, endpoint: &Endpoint) -> Config {
    let command = Config::command();
    let mut argv: Vec<OsString> = vec![
        "compartmentd".into(),
        "--socket".into(),
        endpoint.socket().into(),
        "--state-dir".into(),
        endpoint.state_dir().into(),
        "--public-url".into(),
        PUBLIC_URL.into(),
    ];
    for (key, value) in &options.env {
        let flag = command
            .get_arguments()
            .find(|arg| arg.get_env() == Some(OsStr::new(key)))
            .and_then(|arg| arg.get_long())
            .unwrap_or_else(|| {
                panic!(
                    "{key} is no setting of compartmentd's; a daemon in the test process has \
                     no log nor environment of its own: use Daemon::start"
                )
            });
        argv.push(format!("--{flag}").into());
        argv.push(value.into());
    }
    argv.extend(options.args.iter().map(OsString::from));
    let matches = command
        .mut_args(|arg| arg.env(None::<&'static str>))
        .try_get_matches_from(&argv)
        .unwrap_or_else(|err| panic!("compartmentd {argv:?}: {err}"));
    let config = Config::from_arg_matches(&matches)
        .unwrap_or_else(|err| panic!("compartmentd {argv:?}: {err}"));
    assert!(
        config.command.is_none(),
        "{argv:?}: a daemon in the test process only serves; run the binary for a subcommand"
    );
    config
}

impl InProcess {
    fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.done_rx.try_recv() {
                Ok(served) => panic!("compartmentd stopped before answering a ping: {served:?}"),
                Err(mpsc::TryRecvError::Disconnected) => panic!("the daemon's thread panicked"),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            if self.answers_ping() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "compartmentd did not answer a ping within {READY_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the server as SIGTERM stops the binary (no new connections, the requests in
    /// flight answered, the writer drained, the socket removed), waits for its thread, and
    /// asserts that it returned no error.
    #[track_caller]
    pub fn stop(&mut self) {
        let served = self.shut_down().expect("the daemon is not running");
        match served {
            Ok(Ok(())) => {}
            Ok(Err(err)) => panic!("compartmentd stopped with an error: {err}"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("compartmentd had not stopped {STOP_TIMEOUT:?} after the stop")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the daemon's thread panicked"),
        }
    }

    /// Triggers the shutdown and waits for what the server returned; `None` when it was
    /// already stopped.
    fn shut_down(&mut self) -> Option<Result<Result<(), String>, mpsc::RecvTimeoutError>> {
        let stop_tx = self.stop_tx.take()?;
        // Gone when the server has already returned; its result is waiting all the same.
        let _ = stop_tx.send(());
        let served = self.done_rx.recv_timeout(STOP_TIMEOUT);
        if served.is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
        Some(served)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // A server that does not stop is left to end with the test process.
        let _ = self.shut_down();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use compartmentctl::wire::MemberStatus;
    use compartmentd::clock::FakeClock;

    use super::*;

    /// The flags reach the server, and so does the clock: an invitation of a 1-day TTL
    /// expires a day after the fake clock's start, and lapses when that clock is moved on.
    #[test]
    fn the_server_in_process_takes_the_flags_and_the_fake_clock() {
        // 2026-05-01T12:00:00Z.
        let clock = Arc::new(FakeClock::new(1_777_636_800_000));
        let daemon = Daemon::in_process_with_clock(
            DaemonOptions::new().args(&["--invitation-ttl", "1day"]),
            clock.clone(),
        );
        let invitation = daemon.create_acme();
        assert_eq!(invitation.expires_at, "2026-05-02T12:00:00Z");
        clock.advance(Duration::from_secs(86_400));
        let members = daemon.members("acme");
        assert_eq!(members.members[0].status, MemberStatus::Expired);
    }
}
