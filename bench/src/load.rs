//! Load on the daemon through its real socket: the library client for request/response
//! phases, raw JSON lines for pipelined population, and the real CLI as a child process.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use compartmentctl::wire::{
    AdminStatus, Check, OrgCreateParams, Permission, Request, RequestEnvelope, Response, Role,
    UserInviteParams,
};
use compartmentctl::Client;

use crate::measure::{self, Measured};

/// An invitation of `email` to `org` as a viewer, by a superuser (the bench runs as root or
/// as the daemon's own user, both superusers, who may invite in any organization).
pub fn invite(org: &str, email: String) -> Request {
    Request::UserInvite(UserInviteParams {
        org: Some(org.to_owned()),
        email,
        role: Role::Viewer,
        expires_in: None,
        resend: false,
        unix_user: None,
        access_until: None,
    })
}

/// Creates organization `name` with a first admin.
pub fn create_org(socket: &Path, name: &str) {
    let mut client = connect(socket);
    client
        .call::<serde_json::Value>(&Request::OrgCreate(OrgCreateParams {
            name: name.to_owned(),
            admin: format!("admin@{name}.example"),
            admin_unix_user: None,
            expires_in: Default::default(),
        }))
        .unwrap_or_else(|err| panic!("org.create {name}: {err}"));
}

fn connect(socket: &Path) -> Client {
    Client::connect(socket)
        .unwrap_or_else(|err| panic!("connect to compartmentd at {}: {err}", socket.display()))
}

/// Requests per second of `request` (a read) over `connections` library clients, each one
/// at a time.
pub fn reads(socket: &Path, request: &Request, connections: usize, duration: Duration) -> Measured {
    measure::run(
        connections,
        duration,
        1,
        |_| connect(socket),
        |client: &mut Client, _, _| {
            client
                .call::<serde_json::Value>(request)
                .unwrap_or_else(|err| panic!("{}: {err}", request.method()));
        },
    )
}

/// The check the benchmark asks: may this process's uid deploy in `org`?
pub fn authz_check(org: &str) -> Check {
    Check {
        permission: Permission::DeploymentCreate,
        org: Some(org.to_owned()),
        uid: Some(nix::unistd::geteuid().as_raw()),
        user: None,
        email: None,
    }
}

/// A request line (newline included) of one `authz.check` batch of `count` distinct
/// checks the caller asks about itself: every permission in as many organizations as it
/// takes, which are made here (`batch-0`, `batch-1`, …) when missing. Distinct, because the
/// daemon answers identical checks of a batch once.
pub fn self_check_batch(socket: &Path, count: usize) -> Vec<u8> {
    let per_org = Permission::ALL.len();
    let orgs = count.div_ceil(per_org);
    let mut client = connect(socket);
    let known: Vec<String> = match client.call::<serde_json::Value>(&Request::OrgList) {
        Ok(list) => list["orgs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|org| org["name"].as_str().map(str::to_owned))
            .collect(),
        Err(err) => panic!("org.list: {err}"),
    };
    let names: Vec<String> = (0..orgs).map(|i| format!("batch-{i}")).collect();
    for name in &names {
        if !known.contains(name) {
            create_org(socket, name);
        }
    }
    let checks: Vec<Check> = names
        .iter()
        .flat_map(|org| {
            Permission::ALL.iter().map(move |permission| Check {
                permission: *permission,
                org: Some(org.clone()),
                uid: None,
                user: None,
                email: None,
            })
        })
        .take(count)
        .collect();
    let request = Request::AuthzCheck(compartmentctl::wire::AuthzCheckParams::Many(checks));
    let mut line =
        serde_json::to_vec(&RequestEnvelope::new(1, &request)).expect("encode the batch");
    line.push(b'\n');
    line
}

/// Asserts that `answer` is a batch's answer of `count` decisions, every one yes.
pub fn all_allowed(answer: &[u8], count: usize) {
    let response: compartmentctl::wire::Response =
        serde_json::from_slice(answer).expect("an authz.check answer");
    let compartmentctl::wire::AuthzAnswer::Many { decisions } =
        serde_json::from_value(response.result.expect("a result")).expect("decisions")
    else {
        panic!("a batch answered with one decision");
    };
    assert_eq!(decisions.len(), count, "the batch's answers");
    if let Some(no) = decisions.iter().find(|decision| !decision.allowed) {
        panic!("a self-check of the batch said no: {}", no.message);
    }
}

/// Checks per second over `connections` library clients asking `check` one at a time, as a
/// service does (`Client::check`); each answer must allow it.
pub fn checks(socket: &Path, check: &Check, connections: usize, duration: Duration) -> Measured {
    measure::run(
        connections,
        duration,
        1,
        |_| connect(socket),
        |client: &mut Client, _, _| {
            let decision = client
                .check(check.clone())
                .unwrap_or_else(|err| panic!("authz.check: {err}"));
            assert!(
                decision.allowed,
                "authz.check said no: {}",
                decision.message
            );
        },
    )
}

/// Durable `user.invite` into `org` over `clients` library clients, each one request at a
/// time; every e-mail is new (`tag` keeps phases apart), so every request writes.
pub fn invites(
    socket: &Path,
    org: &str,
    tag: &str,
    clients: usize,
    duration: Duration,
) -> Measured {
    measure::run(
        clients,
        duration,
        1,
        |_| connect(socket),
        |client: &mut Client, thread, i| {
            client
                .call::<serde_json::Value>(&invite(
                    org,
                    format!("{tag}-{thread}-{i}@bench.example"),
                ))
                .unwrap_or_else(|err| panic!("user.invite: {err}"));
        },
    )
}

/// What populating an organization took.
pub struct Populated {
    pub elapsed: Duration,
    pub accepted: usize,
    pub refused: usize,
    pub first_refusal: Option<String>,
}

/// Invites `members` new members into `org` over `connections` raw connections, each
/// keeping up to `window` request lines written ahead of the replies it has read; each
/// invitation lives `lifetime` (whole seconds) when given, else the daemon's default. The
/// daemon answers each connection's requests in order, so replies are matched to ids in
/// sequence.
pub fn populate(
    socket: &Path,
    org: &str,
    members: usize,
    connections: usize,
    window: usize,
    lifetime: Option<Duration>,
) -> Populated {
    populate_across(&[socket], org, members, connections, window, lifetime)
}

/// [`populate`] through several daemons of one store: `connections` to each of `sockets`,
/// the members dealt round the connections of all of them.
pub fn populate_across(
    sockets: &[&Path],
    org: &str,
    members: usize,
    connections: usize,
    window: usize,
    lifetime: Option<Duration>,
) -> Populated {
    let connections = connections * sockets.len();
    let started = Instant::now();
    let results: Vec<(usize, usize, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|conn| {
                scope.spawn(move || {
                    // This connection's share: members conn, conn + connections, …
                    let mine: Vec<usize> = (conn..members).step_by(connections).collect();
                    pipeline(sockets[conn % sockets.len()], org, &mine, window, lifetime)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a populating thread panicked"))
            .collect()
    });
    let elapsed = started.elapsed();
    Populated {
        elapsed,
        accepted: results.iter().map(|r| r.0).sum(),
        refused: results.iter().map(|r| r.1).sum(),
        first_refusal: results.into_iter().find_map(|r| r.2),
    }
}

/// One pipelined connection: invites `members` (by number), returns accepted, refused and
/// the first refusal's message.
fn pipeline(
    socket: &Path,
    org: &str,
    members: &[usize],
    window: usize,
    lifetime: Option<Duration>,
) -> (usize, usize, Option<String>) {
    let stream = UnixStream::connect(socket)
        .unwrap_or_else(|err| panic!("connect to compartmentd at {}: {err}", socket.display()));
    let mut writer = stream.try_clone().expect("clone the stream");
    let mut reader = BufReader::new(stream);
    let line_for = |id: usize| {
        let mut request = invite(org, format!("m{}@{org}.example", members[id]));
        if let (Request::UserInvite(params), Some(lifetime)) = (&mut request, lifetime) {
            params.expires_in = Some(format!("{}s", lifetime.as_secs()));
        }
        let mut line = serde_json::to_vec(&RequestEnvelope::new(id as u64, &request))
            .expect("encode a request");
        line.push(b'\n');
        line
    };
    let (mut sent, mut accepted, mut refused, mut first_refusal) = (0, 0, 0, None);
    let mut reply = Vec::new();
    for expected in 0..members.len() {
        // Top the window up before waiting for the oldest reply. A window's lines (a few
        // hundred bytes each) fit in the socket buffer, so these writes do not block on
        // the daemon.
        while sent < members.len() && sent < expected + window {
            writer.write_all(&line_for(sent)).expect("write a request");
            sent += 1;
        }
        reply.clear();
        let read = reader.read_until(b'\n', &mut reply).expect("read a reply");
        assert!(read > 0, "compartmentd closed a pipelined connection");
        let response: Response = serde_json::from_slice(&reply).unwrap_or_else(|err| {
            panic!(
                "an unreadable reply ({err}): {}",
                String::from_utf8_lossy(&reply)
            )
        });
        if let Some(error) = response.error {
            refused += 1;
            first_refusal.get_or_insert(format!("{}: {}", response.id, error.message));
            if response.id.is_null() {
                // Not tied to a request (busy, say): the connection is done for.
                panic!("compartmentd refused the connection: {}", error.message);
            }
        } else {
            accepted += 1;
        }
        assert!(
            response.id == expected as u64,
            "reply for id {} where {expected} was due",
            response.id
        );
    }
    (accepted, refused, first_refusal)
}

/// The daemon's `admin.status`.
pub fn status(socket: &Path) -> AdminStatus {
    connect(socket)
        .call(&Request::AdminStatus)
        .unwrap_or_else(|err| panic!("admin.status: {err}"))
}

/// What one CLI run took.
pub struct CliRun {
    pub wall: Duration,
    pub stdout_bytes: usize,
    pub stdout_lines: usize,
    /// The CLI process's own peak resident memory, in KiB.
    pub peak_kib: u64,
}

/// The hidden first argument that starts this binary as a measurer of one CLI run (see
/// [`measurer`]); never typed by hand.
const MEASURE_ARG: &str = "__measure-cli";

/// Runs `compartmentctl --socket <socket> <args…>` to the end of its output, and checks it
/// succeeded. Wall time is from spawning it to its exit, its output read as it comes.
///
/// The CLI is not this process's child but its grandchild, started by a fresh copy of this
/// binary (a measurer: [`measurer`]), because `ru_maxrss` of a direct child would be this
/// process's own peak. `Command` spawns with `vfork` (or `posix_spawn`, which shares the
/// address space the same way), and at `exec` Linux records the peak of the address space
/// being replaced (`exec_mmap`, `setmax_mm_hiwater_rss`), ours, into the child's `maxrss`;
/// a plain `fork` would count the pages it copies from us just the same. The measurer is a
/// new, small process, so the CLI's figure starts from the measurer's peak (about 2 MiB),
/// not the bench's (tens of MiB once it has populated and read lists). The measurer times
/// the CLI and reaps it with `wait4`; the CLI's stdout and stderr are this process's pipes,
/// read as before.
pub fn cli(binary: &Path, socket: &Path, args: &[&str]) -> CliRun {
    let dir = socket.parent().expect("the socket's directory");
    let report = dir.join("cli-run.report");
    let _ = std::fs::remove_file(&report);
    let mut child = Command::new(std::env::current_exe().expect("this executable's path"))
        .arg(MEASURE_ARG)
        .arg(&report)
        .arg(binary)
        .arg("--socket")
        .arg(socket)
        .args(args)
        // No COMPARTMENT_* settings from the caller's environment; the measurer passes its
        // environment on to the CLI.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("start the measurer of {}: {err}", binary.display()));
    // The output is read as it comes and counted, never kept: a reader as light as
    // `wc -l`, so that the run measures the CLI rather than this process's copying.
    let (mut stdout_bytes, mut stdout_lines) = (0, 0);
    let mut out = child.stdout.take().expect("the CLI's stdout");
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = out.read(&mut chunk).expect("read the CLI's stdout");
        if read == 0 {
            break;
        }
        stdout_bytes += read;
        stdout_lines += chunk[..read].iter().filter(|&&b| b == b'\n').count();
    }
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("the CLI's stderr")
        .read_to_string(&mut stderr);
    let measurer = child.wait().expect("wait for the measurer");
    let text = std::fs::read_to_string(&report).unwrap_or_else(|err| {
        panic!(
            "the measurer of compartmentctl {args:?} ({measurer}) left no report: {err}: {stderr}"
        )
    });
    let report = Report::parse(&text)
        .unwrap_or_else(|| panic!("the measurer's report is not one: {text:?}"));
    if report.exit_code != Some(0) {
        panic!(
            "compartmentctl {args:?} failed (exit code {:?}): {stderr}",
            report.exit_code
        );
    }
    CliRun {
        wall: report.wall,
        stdout_bytes,
        stdout_lines,
        peak_kib: report.peak_kib,
    }
}

/// [`cli`] run `runs` times, the run of median wall time: one listing can fall on a burst
/// of the machine's other load (or PostgreSQL's autovacuum, right after populating).
pub fn cli_median(binary: &Path, socket: &Path, args: &[&str], runs: usize) -> CliRun {
    let mut all: Vec<CliRun> = (0..runs.max(1))
        .map(|_| cli(binary, socket, args))
        .collect();
    all.sort_by_key(|run| run.wall);
    all.swap_remove(all.len() / 2)
}

/// Runs `compartmentctl --socket <socket> <args…>` as this process's own child, to the end
/// of its output, checks it succeeded, and returns the time from spawning it to its exit:
/// for timing the whole process alone, without a measurer's start in between (its peak
/// memory is not measured; see [`cli`] for that).
pub fn cli_wall(binary: &Path, socket: &Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    let output = Command::new(binary)
        .arg("--socket")
        .arg(socket)
        .args(args)
        // No COMPARTMENT_* settings from the caller's environment.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", socket.parent().expect("the socket's directory"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("run {}: {err}", binary.display()));
    let wall = started.elapsed();
    if !output.status.success() {
        panic!(
            "compartmentctl {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    wall
}

/// What a measurer found out about its CLI run: one line, `<exit code or -> <peak KiB>
/// <wall ns>`.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    /// `None` when a signal ended the CLI.
    exit_code: Option<i32>,
    peak_kib: u64,
    /// From spawning the CLI to reaping it.
    wall: Duration,
}

impl Report {
    fn line(&self) -> String {
        let code = self
            .exit_code
            .map_or_else(|| "-".to_owned(), |code| code.to_string());
        format!("{code} {} {}\n", self.peak_kib, self.wall.as_nanos())
    }

    fn parse(text: &str) -> Option<Report> {
        let mut fields = text.split_whitespace();
        let exit_code = match fields.next()? {
            "-" => None,
            code => Some(code.parse().ok()?),
        };
        let peak_kib = fields.next()?.parse().ok()?;
        let wall = Duration::from_nanos(fields.next()?.parse().ok()?);
        fields.next().is_none().then_some(Report {
            exit_code,
            peak_kib,
            wall,
        })
    }
}

/// When this process was started as a measurer (`<bench> __measure-cli <report> <program>
/// <args…>`, by [`cli`]), runs the program with this process's stdio and environment,
/// reaps it with `wait4`, writes its [`Report`] into the file `<report>`, and returns the
/// status to exit with; `None` when started any other way. Called first thing in `main`,
/// so the measurer's own peak stays that of a process that has done nothing yet.
#[allow(
    clippy::zombie_processes,
    reason = "reaped by wait_with_peak, with wait4, which clippy does not know"
)]
pub fn measurer() -> Option<i32> {
    let mut argv = std::env::args_os().skip(1);
    if argv.next()? != MEASURE_ARG {
        return None;
    }
    let report = argv.next().expect("the measurer's report path");
    let program = argv.next().expect("the program to measure");
    let started = Instant::now();
    let child = Command::new(&program)
        .args(argv)
        .spawn()
        .unwrap_or_else(|err| panic!("start {}: {err}", program.to_string_lossy()));
    let (exit_code, peak_kib) = wait_with_peak(&child);
    let wall = started.elapsed();
    let line = Report {
        exit_code,
        peak_kib,
        wall,
    }
    .line();
    std::fs::write(&report, line).expect("write the measurer's report");
    Some(0)
}

/// Reaps `child` with `wait4`, which reports that one process's peak resident memory
/// (`getrusage(RUSAGE_CHILDREN)` would report the largest of every child reaped so far, the
/// bench's own build included). Returns its exit code (`None` when a signal ended it) and
/// its peak in KiB. `child` must not have been waited for.
fn wait_with_peak(child: &std::process::Child) -> (Option<i32>, u64) {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals of the right types; `pid` is our child,
        // not yet reaped (std's `Child` reaps only in `wait`/`try_wait`, never called here).
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            panic!("wait4 for compartmentctl: {err}");
        }
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, u64::try_from(usage.ru_maxrss).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_back() {
        for report in [
            Report {
                exit_code: Some(0),
                peak_kib: 4096,
                wall: Duration::from_nanos(123_456_789),
            },
            Report {
                exit_code: None,
                peak_kib: 0,
                wall: Duration::ZERO,
            },
        ] {
            assert_eq!(Report::parse(&report.line()), Some(report));
        }
        assert_eq!(Report::parse("0 12"), None);
        assert_eq!(Report::parse("0 12 3 4"), None);
    }
}
