//! `compartmentd`'s entry point: flags, logging, `check`, the service manager's
//! notifications and signals; the rest of a start is the library's (`start`).

#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use compartmentd::clock::SystemClock;
use compartmentd::config::{Command, Config};
use compartmentd::start::{self, store_options};
use compartmentd::store::{OpenError, Store, DATABASE_FILE};
use compartmentd::{backup, logging, state_dir};

/// mimalloc rather than the C library's allocator: a page of a member list allocates and
/// frees a few hundred kilobytes, which glibc kept handing back to the kernel and faulting
/// in again. Measured on a 100,000-member list: the daemon's time per list 100 → 74 ms, its
/// resident memory after listing a million members 54 MiB (the 16 MiB page cache's churn).
/// Built without transparent huge pages (the `no_thp` feature): otherwise every first touch
/// of its arenas faulted in and zeroed 2 MiB at once, which made the first sweep after a
/// start take 13–17 ms instead of 8–10 (1,000 invitations' work) and the resident memory
/// after listing 100,000 members 55 MiB instead of 35.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = Config::parse();
    match &config.command {
        Some(Command::Check) => return check(&config),
        Some(Command::Restore { file, replace }) => return restore(&config, file, *replace),
        None => {}
    }
    if let Some(note) = logging::init(config.log_format) {
        eprintln!("compartmentd: {note}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("compartmentd: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("compartmentd: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let listening = start::listen(&config, Arc::new(SystemClock)).await?;
    // Requests that arrive from here on wait in the listen queue until the accept loop runs.
    notify(sd_notify::NotifyState::Ready);
    let stop_signal = shutdown_signal();
    listening
        .serve(async {
            stop_signal.await;
            notify(sd_notify::NotifyState::Stopping);
        })
        .await
}

/// `compartmentd check`: verifies the database of the state directory and says what it
/// found, one line per finding; exit 0 only when everything was clean.
fn check(config: &Config) -> ExitCode {
    if config.store.is_some() {
        eprintln!(
            "compartmentd: check verifies the embedded database; with --store, PostgreSQL's constraints hold the same rules (its amcheck extension verifies its pages)"
        );
        return ExitCode::FAILURE;
    }
    let report = config
        .state_dir()
        .map_err(|err| err.to_string())
        .and_then(|dir| {
            if !dir.join(DATABASE_FILE).exists() {
                return Err(format!(
                    "there is no database at {}: nothing to check",
                    dir.join(DATABASE_FILE).display()
                ));
            }
            let dir = state_dir::prepare(&dir, DATABASE_FILE, nix::unistd::geteuid().as_raw())
                .map_err(|err| err.to_string())?;
            println!("checking {}", dir.join(DATABASE_FILE).display());
            compartmentd::store::check(&dir, &store_options(config)).map_err(|err| err.to_string())
        });
    let report = match report {
        Ok(report) => report,
        Err(err) => {
            eprintln!("compartmentd: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut clean = true;
    if report.pages_clean {
        println!("pages: every checksum verified");
    } else {
        clean = false;
        println!("pages: damage found and repaired, as after a crash; check again");
    }
    match report.schema_version {
        Some(version) if version == compartmentd::store::CURRENT_SCHEMA_VERSION => {
            for problem in &report.index_problems {
                println!("index: {problem}");
            }
            if report.index_problems.is_empty() {
                println!("indexes: they agree with the tables");
            } else {
                clean = false;
            }
            println!(
                "contents: schema version {version}, {} organizations, {} memberships, {} accounts",
                report.organizations, report.memberships, report.accounts
            );
        }
        Some(version) => println!(
            "contents: schema version {version}, which the next start migrates; indexes not checked"
        ),
        None => println!("contents: empty"),
    }
    if clean {
        println!("clean");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `compartmentd restore`: the backup `file` written into the store `config` names, in one
/// transaction; one line saying what was restored, or why nothing was.
fn restore(config: &Config, file: &Path, replace: bool) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("compartmentd: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let opened: Result<Store, String> = match config.postgres() {
        Err(err) => Err(err.to_string()),
        Ok(Some(target)) => runtime
            .block_on(Store::open_postgres(&target, runtime.handle().clone()))
            .map_err(|err| err.to_string()),
        Ok(None) => config
            .state_dir()
            .map_err(|err| err.to_string())
            .and_then(|dir| {
                let uid = nix::unistd::geteuid().as_raw();
                state_dir::prepare(&dir, DATABASE_FILE, uid).map_err(|err| err.to_string())
            })
            .and_then(|dir| {
                Store::open_with(&dir, &store_options(config)).map_err(|err| match err {
                    OpenError::InUse { path } => format!(
                        "the database {} is in use by a running compartmentd; stop it before restoring into its state directory",
                        path.display()
                    ),
                    err => err.to_string(),
                })
            }),
    };
    let store = match opened {
        Ok(store) => store,
        Err(err) => {
            eprintln!("compartmentd: {err}");
            return ExitCode::FAILURE;
        }
    };
    match backup::restore(&store, file, replace) {
        Ok(restored) => {
            println!("{}", restored.summary(file));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("compartmentd: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Tells systemd (when `NOTIFY_SOCKET` is set) where the daemon is in its life.
fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(err) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %err, "cannot notify the service manager");
    }
}

/// Completes on SIGTERM or SIGINT. SIGHUP, which would otherwise end the process, is
/// logged and otherwise ignored: nothing is reloaded yet (the settings are flags). The
/// handlers are installed when this is called, not when it is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = handlers else {
            tracing::error!("cannot listen for signals; stop the daemon with SIGKILL");
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return tracing::info!("SIGTERM received"),
                _ = int.recv() => return tracing::info!("SIGINT received"),
                _ = hup.recv() => tracing::info!(
                    "SIGHUP received; nothing to reload (settings are flags: restart to change them)"
                ),
            }
        }
    }
}
