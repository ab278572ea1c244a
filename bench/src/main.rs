//! The benchmark of `compartmentd`: measures the floors (a raw Unix-socket line echo, raw
//! redb durable commits) and a real daemon process driven over its real socket, in one run,
//! and prints each daemon figure beside its floor with their ratio, then the scale figures.
//!
//! ```sh
//! cargo run --release -p compartment-bench -- [--quick] [--members N] [--phase-secs S] \
//!     [--store redb|postgres] [--reads-only]
//! ```
//!
//! The machine is shared and noisy: the ratios hold from run to run, the absolute figures do
//! not. It builds `compartmentd` and `compartmentctl` in the same profile first (a no-op
//! when they are current) and runs them from its own target directory. All files live in
//! one temporary directory, on the filesystem of `$TMPDIR`: the redb floor and the daemon's
//! database share it. Nothing here asserts a speed; a step that fails stops the run and says
//! which.
//!
//! # The table: `what | daemon | floor | ratio`
//!
//! Each floor is measured right before the daemon figure beside it, so that both see the
//! same load. The ratio is daemon ÷ floor. For a rate, 1.00 means the daemon is as fast as the floor
//! (lower is worse); for a latency, it means it is as quick (higher is worse).
//!
//! - `whoami, N conn`: `whoami` requests per second over N library clients (`Client`), each
//!   sending one request and waiting for its answer. Floor: the same request line sent to a
//!   line echo server (one thread per connection, no parsing) over N connections: the cost
//!   of the socket round trip alone.
//! - `authz.check, 16 conn` and its latency: may this process's uid deploy in an
//!   organization, beside the echo of the same request line. The 16 connections send the
//!   line as it is and read the answer line, exactly as the echo's clients do, so that the
//!   ratio is the daemon's against the echo server's (each connection's first answer is read
//!   as a decision that must say yes, every later one must be the same bytes). The latency
//!   is a library client's (`Client::check`), as a service in Rust asks.
//! - `authz.check, 16 Client::check`: the same through the library, as a service in Rust
//!   asks; what parsing and building requests in the client adds on these shared CPUs.
//! - `whoami CPU, 16 conn` and `authz.check CPU, 16 conn`: the figure that holds across
//!   machines. The daemon's CPU time (user and system, all its threads, from
//!   `/proc/<pid>/stat`) over the 16-connection phase, per request, beside the echo
//!   server's CPU per line over its phase of the same round. The echo server is a process
//!   of its own (this binary again) so that its time is its own.
//! - `authz.check CPU per decision, batch of 1,000`: one connection sending one
//!   `{"checks": […]}` line of 1,000 distinct checks the caller asks about itself (every
//!   permission in each of as many organizations as that takes), the daemon's CPU per
//!   decision, beside the echo's CPU per batch line ÷ 1,000.
//! - The rows the access authority is held to carry their target: `whoami` and
//!   `authz.check` at 16 connections at least half the echo's rate, their CPU per request
//!   at most 1.5× the echo's per line, their 1-connection p50 at most 3× the echo's round
//!   trip, and a batched decision at most 0.5 µs of daemon CPU. Printed, never asserted.
//! - The 1-connection phases (`whoami, 1 conn` and both latencies beside the echo) run with
//!   the client, the echo server and the daemon on one CPU, then let go (see
//!   `measure::on_one_cpu`): on a virtual machine a round trip that wakes a server asleep on
//!   the other, idle CPU waits some 50 µs for the hypervisor, and which CPU each side slept
//!   on decided the median (the echo's was 4 µs in one phase and 55 µs in the next).
//! - The 16-connection rows are measured in 5 rounds, each the echo then the daemon, and
//!   show the round whose ratio is the median: on a machine shared with others, one round
//!   can fall on a burst of their load (on 2 shared cores, the same binary's ratio moves by
//!   a fifth from one round to the next; with 3 rounds, two unlucky ones still decided it).
//! - `user.invite, N clients`: durable invitations per second, each a new member, over N
//!   library clients one request at a time. Floor: one thread writing 256-byte values into
//!   a fresh redb database, N inserts per durable commit (`Durability::Immediate`): what the
//!   disk allows if the daemon committed its N concurrent changes together.
//! - `user.invite, N clients` (again): the same load beside a floor that writes the rows N
//!   invitations write (an account, a membership and its two index entries, a token, an
//!   audit record; the same tables, key shapes and value sizes), N invitations per durable
//!   commit: what redb and the disk cost for the data itself, so the ratio is the share of
//!   the time left after parsing, rules, logging and the socket.
//! - `user.invite, 64 clients ÷ 1 client`: how many times the 1-client rate 64 clients
//!   reach, beside the same factor for the rows floor (64 invitations' rows per commit ÷ one
//!   invitation's): how far batching can go on this disk at all.
//! - `… latency p50/p99`: per request, from writing it to reading its answer, with one client.
//!   Floors: the echo round trip, and one redb commit of one insert.
//!
//! # The scale figures, on an organization of N members (`--members`)
//!
//! - `populate`: inviting N members through the socket over 8 connections, each with up to
//!   64 request lines written ahead of its replies (pipelining); wall time and rate.
//! - `database file`: the size of `compartment.redb` once populated.
//! - `daemon RSS`: the daemon's resident memory (`VmRSS`) and its peak so far (`VmHWM`) from
//!   `/proc/<pid>/status`, after populating, and after the two listings below.
//! - `user list`: `compartmentctl user list` of the N-member organization as a child
//!   process, wall time from spawn to exit with its output read as it comes, and the CLI's
//!   peak RSS, the run of median time of 3; then the same with `--output json`, and the
//!   bytes it printed.
//! - `sweep, 1000 due among N`: 1,000 invitations to another organization, each expiring
//!   soon after it is issued (twice the time issuing them takes at the populating rate, at
//!   least a second), made while the daemon runs; then SIGTERM, a wait until they
//!   are due, and a new daemon, whose first sweep finds them all due at once among the N
//!   pending. The figure is the daemon's own log of each sweep transaction (`micros`: from
//!   queueing it to its commit).
//! - `daemon start`: a last start, after the sweeps: its time from spawn to its first answer
//!   (`ping`, which comes after it has told systemd `READY=1`), and its RSS then. As root
//!   the run drops the kernel's page cache first (`/proc/sys/vm/drop_caches`), so the start
//!   reads the database from the disk, as after a reboot; otherwise the line says the cache
//!   was warm. (The sweeps run on a warm cache: their figures are the sweep's cost, not the
//!   disk's.)
//! - `sweep, N/10 due at once`: the same with N/10 invitations (at least 1,000), swept in
//!   transactions of 1,000, or of 100 while others write, as one client invites meanwhile:
//!   the sweep's transactions, and that client's latency beside its latency in the
//!   `user.invite, 1 client` phase.
//! - `compartmentctl whoami`: the whole CLI process, spawn to exit, median and p99 of 50 runs.
//!
//! # On PostgreSQL (`--store postgres`)
//!
//! The run starts a PostgreSQL server of its own (`initdb` and `pg_ctl` in a temporary
//! directory, listening on a Unix socket there, as the tests start theirs: `pgtest/`), runs
//! the daemon with `--store` on a database of it, and measures PostgreSQL's own floors with
//! tokio-postgres directly, over the same socket, each right before the daemon figure beside
//! it. The table gains a last column, the target each row is held to (printed, never
//! asserted): a daemon figure at least half as fast as its floor, or the p99 named.
//!
//! - `authz.check, 16 Client::check`: checks per second over 16 library clients, beside
//!   `SELECT 1` round trips (a statement prepared once) over 16 connections to PostgreSQL;
//!   median of 5 rounds, as above.
//! - `authz.check latency, 16 conn`: the same phase's latencies, beside `SELECT 1`'s at 16
//!   connections; held to a p99 under 2 ms.
//! - `authz.check latency, 1 conn`: one library client, beside one `SELECT 1` connection.
//! - `user.invite, N clients` (1 and 64): durable invitations per second, beside one
//!   connection writing the rows N invitations write (an account, a membership, a token, an
//!   audit record, the feed's head moved and its event with its organization's entry: the
//!   daemon's own statements, from `daemon/src/store/postgres/rows.rs`), N invitations per
//!   serializable transaction committed with the feed's `NOTIFY`, each statement awaited in
//!   turn as the daemon's writer sends them. What the ratio leaves out is the rules' reads,
//!   the socket, and how the daemon drives its connections.
//! - `user.invite, 64 clients (mean batch B)`: the same phase beside the floor at the batches
//!   the writer really made (from its trace); `user.invite latency, 1 client`: beside one
//!   invitation's rows committed.
//!
//! Then the scale figures: `populate` of N members through one daemon (8 pipelined
//! connections), the daemon's RSS, `compartmentctl user list` of them (text and JSON); then a
//! second daemon on the same database and N more members populated through both at once
//! (8 pipelined connections to each, the members dealt round all 16), wall time and rate,
//! with the write transactions each daemon ran again after a conflict with the other's
//! (`conflicts` of `admin.status`, before and after). The targets close the run:
//! 1,000,000 members through two daemons in under 3 minutes (estimated at the measured rate
//! when N is not a million), `user list` of 100,000 members under 300 ms (scaled in
//! proportion from N's when N is not 100,000), `authz.check` p99 under 2 ms at 16
//! connections. The redb run's
//! sweeps, restarts and database file have no PostgreSQL counterpart here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark, not a request path: a failed step stops the run with its message"
)]

mod daemon;
mod floors;
mod load;
mod log;
mod measure;
mod pg;
mod report;
mod sweep;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use compartmentctl::wire::{AuthzCheckParams, Decision, Request, RequestEnvelope, Response};

use crate::daemon::Daemon;
use crate::measure::Measured;
use crate::report::{Report, Row};

#[derive(Parser)]
#[command(about = "Measures compartmentd beside the floors of this machine, in one run")]
struct Args {
    /// A short run that proves the benchmark still works (CI): 2,000 members, short phases.
    #[arg(long)]
    quick: bool,
    /// Members of the organization the scale figures are measured on [default: 100000, or
    /// 2000 with --quick].
    #[arg(long, value_name = "N")]
    members: Option<usize>,
    /// Seconds each throughput phase runs [default: 3, or 0.3 with --quick].
    #[arg(long, value_name = "S")]
    phase_secs: Option<f64>,
    /// Use the compartmentd and compartmentctl binaries next to this one as they are,
    /// without building them first.
    #[arg(long)]
    no_build: bool,
    /// The store the daemon runs on: its redb file, or a PostgreSQL server the run starts
    /// (`initdb` and `pg_ctl`, as the tests do), measured beside PostgreSQL's own floors.
    #[arg(long, value_enum, default_value_t = StoreKind::Redb)]
    store: StoreKind,
    /// Only the reads beside the echo (`whoami`, `authz.check`, the batch), then the table:
    /// for working on the read path (redb).
    #[arg(long)]
    reads_only: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Redb,
    Postgres,
}

/// The checks in the batch of the batched `authz.check` row: each a decision of its own
/// (the daemon answers identical checks of a batch once).
const BATCH_CHECKS: usize = 1000;

/// Rounds of a 16-connection phase beside its echo, of which the median is shown.
const ROUNDS: usize = 5;

/// [`ROUNDS`] rounds of `floor` then `daemon`, each pair adjacent so that both see the same
/// load: the (daemon, floor) of the round whose ratio is the median. A burst of load from
/// elsewhere that falls on one side of one round moves the figure no more than the others.
fn median_round(
    mut floor: impl FnMut() -> Measured,
    mut daemon: impl FnMut() -> Measured,
) -> (Measured, Measured) {
    let mut rounds: Vec<(Measured, Measured)> = (0..ROUNDS)
        .map(|_| {
            let floor = floor();
            (daemon(), floor)
        })
        .collect();
    rounds.sort_by(|(a, a_floor), (b, b_floor)| {
        (a.rate() / a_floor.rate()).total_cmp(&(b.rate() / b_floor.rate()))
    });
    rounds.swap_remove(ROUNDS / 2)
}

/// Connections that populate the scale organization, and the requests each keeps ahead.
const POPULATE_CONNECTIONS: usize = 8;
const POPULATE_WINDOW: usize = 64;

/// Runs of `compartmentctl whoami` timed as whole processes.
const CLI_WHOAMI_RUNS: usize = 50;

/// Runs of each `compartmentctl user list`, the median shown.
const LIST_RUNS: usize = 3;

fn main() {
    // A fresh copy of this binary measures each CLI run: see `load::cli`.
    if let Some(code) = load::measurer() {
        std::process::exit(code);
    }
    if let Some(code) = floors::echo_server_main() {
        std::process::exit(code);
    }
    let args = Args::parse();
    let members = args
        .members
        .unwrap_or(if args.quick { 2_000 } else { 100_000 });
    let phase =
        Duration::from_secs_f64(
            args.phase_secs
                .unwrap_or(if args.quick { 0.3 } else { 3.0 }),
        );
    let (daemon_bin, ctl_bin) = binaries(args.no_build);
    let run_started = Instant::now();

    let dir = tempfile::Builder::new()
        .prefix("compartment-bench-")
        .tempdir()
        .expect("create a temp dir");
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "compartment-bench: {} run on {}, {members} members, {:.1} s phases, {cpus} CPUs, files in {}",
        if args.quick { "quick" } else { "full" },
        match args.store {
            StoreKind::Redb => "redb",
            StoreKind::Postgres => "PostgreSQL",
        },
        phase.as_secs_f64(),
        dir.path().display()
    );
    if args.store == StoreKind::Postgres {
        on_postgres(&daemon_bin, &ctl_bin, dir.path(), members, phase);
        println!();
        println!("whole run: {:.0} s", run_started.elapsed().as_secs_f64());
        return;
    }
    let mut report = Report::default();

    let echo_socket = dir.path().join("echo.sock");
    let echo_server = floors::EchoServer::start(&echo_socket);
    let mut whoami_line =
        serde_json::to_vec(&RequestEnvelope::new(1, &Request::Whoami)).expect("encode whoami");
    whoami_line.push(b'\n');

    step("daemon: start");
    let daemon_dir = dir.path().join("daemon");
    std::fs::create_dir(&daemon_dir).expect("create the daemon's directory");
    let (mut daemon, first_start) = Daemon::start(&daemon_bin, &daemon_dir);
    let socket = daemon.socket();
    load::create_org(&socket, "bench");
    load::create_org(&socket, "scale");

    // Each floor is measured right before the daemon figure it is compared with: on a
    // shared machine, load drifts over minutes, and adjacent phases see the same load.
    step("whoami, beside the line echo");
    let (echo_pid, daemon_pid) = (echo_server.pid(), daemon.pid());
    let (echo1, whoami1) = measure::on_one_cpu(&[echo_pid, daemon_pid], || {
        (
            floors::echo(&echo_socket, 1, phase, &whoami_line),
            load::reads(&socket, &Request::Whoami, 1, phase),
        )
    });
    let (whoami16, echo16) = median_round(
        || {
            measure::with_server_cpu(echo_pid, || {
                floors::echo(&echo_socket, 16, phase, &whoami_line)
            })
        },
        || {
            measure::with_server_cpu(daemon_pid, || {
                load::reads(&socket, &Request::Whoami, 16, phase)
            })
        },
    );
    report.row(Row::rate(
        "whoami, 1 conn",
        &whoami1,
        "echo, 1 conn",
        &echo1,
    ));
    report.row(Row::rate("whoami, 16 conn", &whoami16, "echo, 16 conn", &echo16).half_of_floor());
    report
        .row(Row::cpu("whoami CPU, 16 conn", &whoami16, "echo", &echo16).at_most_times_floor(1.5));
    report.row(
        Row::latency(
            "whoami latency, 1 conn",
            &whoami1,
            "echo round trip",
            &echo1,
        )
        .median_within(3.0),
    );

    step("authz.check, beside the line echo");
    let check = load::authz_check("bench");
    let authz = Request::AuthzCheck(AuthzCheckParams::One(check.clone()));
    let mut authz_line =
        serde_json::to_vec(&RequestEnvelope::new(1, &authz)).expect("encode authz.check");
    authz_line.push(b'\n');
    let (echo1, authz1) = measure::on_one_cpu(&[echo_pid, daemon_pid], || {
        (
            floors::echo(&echo_socket, 1, phase, &authz_line),
            load::checks(&socket, &check, 1, phase),
        )
    });
    let allowed = |answer: &[u8]| {
        let response: Response = serde_json::from_slice(answer).expect("an authz.check answer");
        let decision: Decision =
            serde_json::from_value(response.result.expect("a result")).expect("a decision");
        assert!(
            decision.allowed,
            "authz.check said no: {}",
            decision.message
        );
    };
    let (authz16, echo16) = median_round(
        || {
            measure::with_server_cpu(echo_pid, || {
                floors::echo(&echo_socket, 16, phase, &authz_line)
            })
        },
        || {
            measure::with_server_cpu(daemon_pid, || {
                measure::line_round_trips(&socket, &authz_line, 16, phase, allowed)
            })
        },
    );
    report
        .row(Row::rate("authz.check, 16 conn", &authz16, "echo, 16 conn", &echo16).half_of_floor());
    report.row(
        Row::cpu("authz.check CPU, 16 conn", &authz16, "echo", &echo16).at_most_times_floor(1.5),
    );
    let (library16, echo16) = median_round(
        || floors::echo(&echo_socket, 16, phase, &authz_line),
        || load::checks(&socket, &check, 16, phase),
    );
    report.row(Row::rate(
        "authz.check, 16 Client::check",
        &library16,
        "echo, 16 conn",
        &echo16,
    ));
    report.row(
        Row::latency(
            "authz.check latency, 1 conn",
            &authz1,
            "echo round trip",
            &echo1,
        )
        .median_within(3.0),
    );

    step("authz.check, a batch of 1,000 distinct self-checks");
    let batch_line = load::self_check_batch(&socket, BATCH_CHECKS);
    let echo_batch = measure::with_server_cpu(echo_pid, || {
        floors::echo(&echo_socket, 1, phase, &batch_line).per_line(BATCH_CHECKS)
    });
    let batch = measure::with_server_cpu(daemon_pid, || {
        measure::line_round_trips(&socket, &batch_line, 1, phase, |answer| {
            load::all_allowed(answer, BATCH_CHECKS)
        })
        .per_line(BATCH_CHECKS)
    });
    report.row(
        Row::cpu(
            "authz.check CPU per decision, batch of 1,000",
            &batch,
            "echo of the batch line, ÷ 1,000",
            &echo_batch,
        )
        .at_most(Duration::from_nanos(500)),
    );
    if args.reads_only {
        daemon.stop();
        report.print();
        return;
    }

    step("user.invite, beside redb commits");
    let mut latencies = None;
    for clients in [1, 16, 64] {
        let floor = floors::redb_commits(dir.path(), clients, phase);
        let measured = load::invites(&socket, "bench", &format!("c{clients}"), clients, phase);
        report.row(Row::rate(
            &format!(
                "user.invite, {clients} client{}",
                if clients == 1 { "" } else { "s" }
            ),
            &measured,
            &format!("redb, {clients}/commit"),
            &floor,
        ));
        latencies.get_or_insert((measured, floor));
    }
    // The same phases beside the rows they write: the daemon's own cost above the data's.
    let mut beside_rows = Vec::new();
    let mut batch_of_64 = None;
    for clients in [1, 16, 64] {
        let floor = floors::redb_invitation_rows(dir.path(), clients, phase);
        let log_from = log_len(&daemon);
        let measured = load::invites(&socket, "bench", &format!("r{clients}"), clients, phase);
        if clients == 64 {
            batch_of_64 = log::mean_batch(&daemon.log_path(), log_from, log_len(&daemon));
        }
        report.row(Row::rate(
            &format!(
                "user.invite, {clients} client{}",
                if clients == 1 { "" } else { "s" }
            ),
            &measured,
            &format!(
                "redb, rows of {clients} invitation{}/commit",
                if clients == 1 { "" } else { "s" }
            ),
            &floor,
        ));
        beside_rows.push((measured, floor));
    }
    // What 64 clients gain over one, beside what the same rows gain in redb alone: a
    // daemon cannot batch its way past the disk's own cost of the data.
    if let [(one, one_floor), _, (many, many_floor)] = beside_rows.as_slice() {
        report.row(Row::scaling(
            "user.invite, 64 clients ÷ 1 client",
            (many, one),
            "rows of 64 ÷ rows of 1",
            (many_floor, one_floor),
        ));
        // 64 clients do not make batches of 64: while one batch commits, the clients it
        // answers are still on their way back. The floor at the batches they did make.
        if let Some(batch) = batch_of_64 {
            let batch = (batch.round() as usize).max(1);
            let floor = floors::redb_invitation_rows(dir.path(), batch, phase);
            report.row(Row::rate(
                &format!("user.invite, 64 clients (mean batch {batch})"),
                many,
                &format!("redb, rows of {batch} invitations/commit"),
                &floor,
            ));
        }
    }
    let (invite1, redb1) = latencies.expect("the 1-client phase ran");
    report.row(Row::latency(
        "user.invite latency, 1 client",
        &invite1,
        "redb commit of 1",
        &redb1,
    ));

    step(&format!("daemon: populate {members} members"));
    let populated = populate(&socket, "scale", members, None);
    let after_populate = daemon.memory();
    let database = daemon.database_bytes();

    step("daemon: user list");
    let (list, list_json) = scale_lists(&ctl_bin, &socket);
    let after_list = daemon.memory();

    step("daemon: compartmentctl whoami");
    let mut cli_whoami: Vec<Duration> = (0..CLI_WHOAMI_RUNS)
        .map(|_| load::cli_wall(&ctl_bin, &socket, &["whoami"]))
        .collect();
    cli_whoami.sort_unstable();

    // A few due among all the members: invited to expire while the daemon is stopped, so
    // the new daemon's first sweep finds them due at once.
    step(&format!(
        "daemon: {SWEEP_FEW} invitations due among {members}"
    ));
    let rate = populated.accepted as f64 / populated.elapsed.as_secs_f64();
    let log_from = due_at_restart(&mut daemon, "sweep-few", SWEEP_FEW, rate);
    let few = sweep::wait_for_sweeps(
        &daemon.log_path(),
        log_from,
        SWEEP_FEW,
        Duration::from_secs(60),
    );

    // Many due at once: swept in chunks while a client keeps inviting.
    let sweep_many = (members / 10).max(SWEEP_FEW);
    step(&format!(
        "daemon: {sweep_many} invitations due at once, beside invitations"
    ));
    let log_from = due_at_restart(&mut daemon, "sweep-many", sweep_many, rate);
    let during_sweep = load::invites(&socket, "bench", "during-sweep", 1, phase);
    let many = sweep::wait_for_sweeps(
        &daemon.log_path(),
        log_from,
        sweep_many,
        Duration::from_secs(600),
    );

    // A start with the kernel's page cache dropped (as root), as after a reboot.
    step("daemon: a cold start");
    daemon.stop();
    let cold = sweep::drop_page_cache();
    let restart = daemon.start_again();
    let after_restart = daemon.memory();
    daemon.stop();

    report.print();
    println!();
    println!("scale, on an organization of {members} members:");
    let secs = populated.elapsed.as_secs_f64();
    report::line(
        &format!("populate, {POPULATE_CONNECTIONS} pipelined conn"),
        format!(
            "{} invitations in {secs:.1} s ({}/s)",
            report::count(populated.accepted as f64),
            report::count(populated.accepted as f64 / secs)
        ),
    );
    report::line("database file", report::bytes(database));
    report::line(
        "daemon RSS after populating",
        report::memory(after_populate),
    );
    report_lists(&list, &list_json);
    report::line("daemon RSS after listing", report::memory(after_list));
    report::line(
        "daemon start, empty database",
        format!("{} to the first answer", report::duration(first_start)),
    );
    report::line(
        "daemon start, populated",
        format!(
            "{} to the first answer ({}); RSS then {}",
            report::duration(restart),
            match &cold {
                Ok(()) => "page cache dropped first".to_owned(),
                Err(err) => format!("warm page cache: dropping it failed: {err}"),
            },
            report::kib(after_restart.rss_kib)
        ),
    );
    report::line(
        &format!("sweep, {SWEEP_FEW} due among {members}"),
        format!(
            "{} expired in {} transaction(s), the longest {}",
            report::count(few.expired() as f64),
            few.transactions.len(),
            report::duration(few.longest())
        ),
    );
    report::line(
        &format!("sweep, {sweep_many} due at once"),
        format!(
            "{} transactions, the longest {}, {} in all",
            report::count(many.transactions.len() as f64),
            report::duration(many.longest()),
            report::duration(many.busy())
        ),
    );
    report::line(
        "user.invite, 1 client, during it",
        format!(
            "p50 {} / p99 {} (before: p50 {} / p99 {})",
            report::duration(during_sweep.pct(0.5)),
            report::duration(during_sweep.pct(0.99)),
            report::duration(invite1.pct(0.5)),
            report::duration(invite1.pct(0.99)),
        ),
    );
    let pct = |q: f64| cli_whoami[((cli_whoami.len() - 1) as f64 * q).round() as usize];
    report::line(
        "compartmentctl whoami, whole process",
        format!(
            "p50 {}, p99 {} ({CLI_WHOAMI_RUNS} runs)",
            report::duration(pct(0.5)),
            report::duration(pct(0.99))
        ),
    );
    println!();
    println!("whole run: {:.0} s", run_started.elapsed().as_secs_f64());
}

/// The targets of the run on PostgreSQL: members populated through two daemons, and how
/// long that may take; how long `user list` of [`LIST_TARGET_MEMBERS`] may take; the p99 of
/// `authz.check` at 16 connections.
const TWO_DAEMONS_TARGET_MEMBERS: usize = 1_000_000;
const TWO_DAEMONS_TARGET: Duration = Duration::from_secs(180);
const LIST_TARGET_MEMBERS: usize = 100_000;
const LIST_TARGET: Duration = Duration::from_millis(300);
const AUTHZ_P99_TARGET: Duration = Duration::from_millis(2);

/// The run with `--store postgres`: a PostgreSQL server of the run's own, a daemon on it
/// (and a second on the same database for the last figure), each daemon figure beside
/// PostgreSQL's own floor measured with tokio-postgres right before it, and the targets.
fn on_postgres(daemon_bin: &Path, ctl_bin: &Path, dir: &Path, members: usize, phase: Duration) {
    step("PostgreSQL: start");
    let server = pg::Server::start();
    let conninfo = server.conninfo();
    println!("PostgreSQL: {conninfo} (fsync and synchronous_commit as initdb leaves them: on)");
    let mut report = Report::default();

    step("daemon: start");
    let daemon_dir = dir.join("daemon");
    std::fs::create_dir(&daemon_dir).expect("create the daemon's directory");
    let (mut daemon, first_start) = Daemon::start_on(daemon_bin, &daemon_dir, Some(&conninfo));
    let socket = daemon.socket();
    for org in ["bench", "scale", "floor"] {
        load::create_org(&socket, org);
    }

    step("authz.check, beside SELECT 1");
    let check = load::authz_check("bench");
    let select1 = pg::select_1(&conninfo, 1, phase);
    let authz1 = load::checks(&socket, &check, 1, phase);
    let (authz16, select16) = median_round(
        || pg::select_1(&conninfo, 16, phase),
        || load::checks(&socket, &check, 16, phase),
    );
    report.row(
        Row::rate(
            "authz.check, 16 Client::check",
            &authz16,
            "SELECT 1, 16 conn",
            &select16,
        )
        .half_of_floor(),
    );
    report.row(
        Row::latency(
            "authz.check latency, 16 conn",
            &authz16,
            "SELECT 1, 16 conn",
            &select16,
        )
        .target(
            &format!("p99 < {}", report::duration(AUTHZ_P99_TARGET)),
            authz16.pct(0.99) < AUTHZ_P99_TARGET,
        ),
    );
    report.row(
        Row::latency(
            "authz.check latency, 1 conn",
            &authz1,
            "SELECT 1 round trip",
            &select1,
        )
        .half_of_floor(),
    );

    step("user.invite, beside PostgreSQL commits of the same rows");
    let mut invite1 = None;
    let mut many = None;
    for clients in [1, 64] {
        let plural = if clients == 1 { "" } else { "s" };
        let floor = pg::invitation_rows(&conninfo, "floor", &format!("f{clients}"), clients, phase);
        let log_from = log_len(&daemon);
        let measured = load::invites(&socket, "bench", &format!("c{clients}"), clients, phase);
        report.row(
            Row::rate(
                &format!("user.invite, {clients} client{plural}"),
                &measured,
                &format!("pg, rows of {clients} invitation{plural}/commit"),
                &floor,
            )
            .half_of_floor(),
        );
        if clients == 1 {
            invite1 = Some((measured, floor));
        } else {
            many = log::mean_batch(&daemon.log_path(), log_from, log_len(&daemon))
                .map(|batch| (measured, (batch.round() as usize).max(1)));
        }
    }
    // 64 clients do not make batches of 64 (see the redb run): the floor at the batches
    // they did make.
    if let Some((measured, batch)) = many {
        let floor = pg::invitation_rows(&conninfo, "floor", &format!("b{batch}"), batch, phase);
        report.row(
            Row::rate(
                &format!("user.invite, 64 clients (mean batch {batch})"),
                &measured,
                &format!("pg, rows of {batch} invitations/commit"),
                &floor,
            )
            .half_of_floor(),
        );
    }
    let (invite1, floor1) = invite1.expect("the 1-client phase ran");
    report.row(
        Row::latency(
            "user.invite latency, 1 client",
            &invite1,
            "pg commit of 1 invitation's rows",
            &floor1,
        )
        .half_of_floor(),
    );

    step(&format!("daemon: populate {members} members"));
    let populated = populate(&socket, "scale", members, None);
    let after_populate = daemon.memory();

    step("daemon: user list");
    let (list, list_json) = scale_lists(ctl_bin, &socket);

    step(&format!(
        "two daemons: populate {members} members through both"
    ));
    let second_dir = dir.join("second");
    std::fs::create_dir(&second_dir).expect("create the second daemon's directory");
    let (mut second, _) = Daemon::start_on(daemon_bin, &second_dir, Some(&conninfo));
    let second_socket = second.socket();
    let sockets = [socket.as_path(), second_socket.as_path()];
    load::create_org(&socket, "scale2");
    let conflicts = || -> Vec<u64> {
        sockets
            .iter()
            .map(|socket| load::status(socket).conflicts.unwrap_or(0))
            .collect()
    };
    let before = conflicts();
    let logs_from = [log_len(&daemon), log_len(&second)];
    let both = load::populate_across(
        &sockets,
        "scale2",
        members,
        POPULATE_CONNECTIONS,
        POPULATE_WINDOW,
        None,
    );
    // A refusal here is a figure of two daemons writing at once, not a failed step: what
    // the daemons logged of it is kept for the report.
    let problem = [&daemon, &second]
        .iter()
        .zip(&logs_from)
        .find_map(|(daemon, from)| log::first_problem(&daemon.log_path(), *from));
    let retried: Vec<u64> = conflicts()
        .iter()
        .zip(&before)
        .map(|(after, before)| after - before)
        .collect();
    second.stop();
    daemon.stop();

    report.print();
    println!();
    println!("scale, on organizations of {members} members:");
    let secs = populated.elapsed.as_secs_f64();
    report::line(
        &format!("populate, 1 daemon, {POPULATE_CONNECTIONS} pipelined conn"),
        format!(
            "{} invitations in {secs:.1} s ({}/s)",
            report::count(populated.accepted as f64),
            report::count(populated.accepted as f64 / secs)
        ),
    );
    let both_secs = both.elapsed.as_secs_f64();
    let both_rate = both.accepted as f64 / both_secs;
    report::line(
        &format!("populate, 2 daemons × {POPULATE_CONNECTIONS} pipelined conn"),
        format!(
            "{} invitations in {both_secs:.1} s ({}/s)",
            report::count(both.accepted as f64),
            report::count(both_rate)
        ),
    );
    if both.refused > 0 {
        report::line(
            "… refused",
            format!(
                "{} (the first: {}; the daemon logged: {})",
                report::count(both.refused as f64),
                both.first_refusal.as_deref().unwrap_or("-"),
                problem.as_deref().unwrap_or("nothing at WARN or above")
            ),
        );
    }
    report::line(
        "… conflicts retried (admin.status)",
        format!(
            "{} in all: {} on the first daemon, {} on the second",
            report::count(retried.iter().sum::<u64>() as f64),
            report::count(retried[0] as f64),
            report::count(retried[1] as f64)
        ),
    );
    report::line(
        "daemon RSS after populating",
        report::memory(after_populate),
    );
    report_lists(&list, &list_json);
    report::line(
        "daemon start, empty database",
        format!("{} to the first answer", report::duration(first_start)),
    );

    println!();
    println!("targets (printed, never asserted):");
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    let two_daemons = Duration::from_secs_f64(TWO_DAEMONS_TARGET_MEMBERS as f64 / both_rate);
    report::line(
        &format!(
            "{} members through 2 daemons",
            report::count(TWO_DAEMONS_TARGET_MEMBERS as f64)
        ),
        format!(
            "< {}: {} ({})",
            report::duration(TWO_DAEMONS_TARGET),
            verdict(two_daemons < TWO_DAEMONS_TARGET),
            if members == TWO_DAEMONS_TARGET_MEMBERS {
                format!("took {}", report::duration(both.elapsed))
            } else {
                format!(
                    "{} at the {}/s of {members}",
                    report::duration(two_daemons),
                    report::count(both_rate)
                )
            }
        ),
    );
    // On another N, the list's time scaled to the target's members (it pages through them
    // one page after another, so it grows with them).
    let list_at_target = list
        .wall
        .mul_f64(LIST_TARGET_MEMBERS as f64 / members as f64);
    report::line(
        &format!(
            "user list of {} members",
            report::count(LIST_TARGET_MEMBERS as f64)
        ),
        format!(
            "< {}: {} ({})",
            report::duration(LIST_TARGET),
            verdict(list_at_target < LIST_TARGET),
            if members == LIST_TARGET_MEMBERS {
                format!("took {}", report::duration(list.wall))
            } else {
                format!(
                    "{} scaled from the {} of {members}",
                    report::duration(list_at_target),
                    report::duration(list.wall)
                )
            }
        ),
    );
    report::line(
        "authz.check p99, 16 conn",
        format!(
            "< {}: {} ({})",
            report::duration(AUTHZ_P99_TARGET),
            verdict(authz16.pct(0.99) < AUTHZ_P99_TARGET),
            report::duration(authz16.pct(0.99))
        ),
    );
    report::line(
        "every daemon figure ≥ 50% of its floor",
        "see the table's last column".to_owned(),
    );
    drop(server);
}

/// Invitations made due among the members for the first sweep figure.
const SWEEP_FEW: usize = 1000;

/// Invites `count` new members into `org` over the pipelined connections (each expiring
/// after `lifetime` when given); stops the run if any is refused.
fn populate(socket: &Path, org: &str, count: usize, lifetime: Option<Duration>) -> load::Populated {
    let populated = load::populate(
        socket,
        org,
        count,
        POPULATE_CONNECTIONS,
        POPULATE_WINDOW,
        lifetime,
    );
    if let Some(refusal) = &populated.first_refusal {
        panic!(
            "{} of {count} invitations to {org} were refused; the first: {refusal}",
            populated.refused
        );
    }
    populated
}

/// The daemon log's length now: what a later look at it skips.
/// Invites `count` members into a new organization `org`, each expiring soon after it is
/// issued (at `rate` invitations per second), then stops the daemon until all are due and
/// starts it again, so that its first sweep finds them due at once. Returns where the new
/// daemon's log lines begin.
fn due_at_restart(daemon: &mut Daemon, org: &str, count: usize, rate: f64) -> usize {
    let socket = daemon.socket();
    load::create_org(&socket, org);
    let lifetime = sweep::lifetime_for(count, rate);
    populate(&socket, org, count, Some(lifetime));
    daemon.stop();
    std::thread::sleep(lifetime + Duration::from_millis(200));
    let log_from = log_len(daemon);
    daemon.start_again();
    log_from
}

fn log_len(daemon: &Daemon) -> usize {
    log::len(&daemon.log_path())
}

/// Says on stderr what the run is doing, so that a failure's place is plain.
fn step(what: &str) {
    eprintln!("… {what}");
}

/// The `compartmentd` and `compartmentctl` binaries of this build profile: built first (a
/// no-op when current) unless `no_build`, so the figures are never those of stale binaries.
/// They live next to this executable, in `<target>/<profile>/`.
fn binaries(no_build: bool) -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().expect("this executable's path");
    let profile_dir = exe
        .parent()
        .expect("this executable's directory")
        .to_owned();
    if !no_build {
        build_binaries(&profile_dir);
    }
    let find = |name: &str| {
        let path = profile_dir.join(name);
        if !path.is_file() {
            panic!(
                "{} does not exist: build it first: cargo build --release -p compartmentd -p compartmentctl",
                path.display()
            );
        }
        path
    };
    (find("compartmentd"), find("compartmentctl"))
}

/// Builds the daemon and CLI binaries (and the packaging assets) into `profile_dir`, with the cargo that runs us (or
/// `cargo` on the PATH), the workspace's manifest and the target directory above
/// `profile_dir`.
fn build_binaries(profile_dir: &Path) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let target_dir = profile_dir.parent().expect("<target>/<profile>");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        // The outer `cargo run` has already resolved the lock file: never change it here.
        .args([
            "--locked",
            "-p",
            "compartmentd",
            "-p",
            "compartmentctl",
            "--bins",
        ]);
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        command.arg("--release");
    }
    step("building compartmentd and compartmentctl");
    let status = command
        .status()
        .unwrap_or_else(|err| panic!("run {command:?}: {err} (or pass --no-build)"));
    if !status.success() {
        panic!("{command:?} failed with {status}");
    }
}

/// `compartmentctl user list` of the scale organization, as text and as JSON, each the run
/// of median time of [`LIST_RUNS`].
fn scale_lists(ctl_bin: &Path, socket: &Path) -> (load::CliRun, load::CliRun) {
    let list = |args: &[&str]| load::cli_median(ctl_bin, socket, args, LIST_RUNS);
    (
        list(&["--org", "scale", "user", "list"]),
        list(&["--org", "scale", "--output", "json", "user", "list"]),
    )
}

/// The rows of `compartmentctl user list` of the scale organization, as text and as JSON.
fn report_lists(list: &load::CliRun, list_json: &load::CliRun) {
    report::line(
        "compartmentctl user list",
        format!(
            "{} wall, {} lines, CLI peak RSS {}",
            report::duration(list.wall),
            report::count(list.stdout_lines as f64),
            report::kib(list.peak_kib)
        ),
    );
    report::line(
        "… --output json",
        format!(
            "{} wall, {} printed, CLI peak RSS {}",
            report::duration(list_json.wall),
            report::bytes(list_json.stdout_bytes as u64),
            report::kib(list_json.peak_kib)
        ),
    );
}
