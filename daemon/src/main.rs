//! `compartmentd`'s entry point: flags, logging, the state directory's checks, the store,
//! the socket, signals.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use compartmentd::clock::SystemClock;
use compartmentd::config::{Command, Config};
use compartmentd::rules::Policy;
use compartmentd::server::{self, Daemon};
use compartmentd::store::DATABASE_FILE;
use compartmentd::store::{Store, StoreOptions};
use compartmentd::{logging, socket, state_dir};

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
    if let Some(Command::Check) = config.command {
        return check(&config);
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
    let limits = config.limits()?;
    let state_dir = config.state_dir()?;
    let socket_path = config.socket()?;
    let daemon_uid = nix::unistd::geteuid().as_raw();
    // Before anything is opened: the store only ever sees the checked, real directory.
    let state_dir = state_dir::prepare(&state_dir, DATABASE_FILE, daemon_uid)?;
    let store = Store::open_with(&state_dir, &store_options(&config))?;
    ensure_descriptors(limits.max_connections);
    // Under socket activation the socket unit owns the path: nothing to bind or remove.
    let (listener, bound) = match socket::inherited()? {
        Some(listener) => (listener, None),
        None => {
            let (listener, file) = socket::bind_file(&socket_path)?;
            (listener, Some(file))
        }
    };
    let listening_on = match &bound {
        Some(file) => file.path.display().to_string(),
        None => "the socket systemd passed".to_owned(),
    };
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let service_group = match &config.service_group {
        Some(name) => Some(service_group(name)?),
        None => None,
    };
    let policy = Policy {
        public_url: config.public_url(),
        invitation_ttl: config.invitation_ttl,
    };
    tracing::info!(
        socket = %listening_on,
        database = %store.path().display(),
        public_url = %policy.public_url,
        "compartmentd listening"
    );
    let daemon = Daemon {
        store: Arc::new(store),
        clock: Arc::new(SystemClock),
        policy,
        daemon_uid,
        sweep_interval: config.sweep_interval,
        limits,
        users: compartmentd::users::SystemUsers::new(),
        service_group,
    };
    // Requests that arrive from here on wait in the listen queue until the accept loop runs.
    notify(sd_notify::NotifyState::Ready);
    let stop_signal = shutdown_signal();
    let result = server::run(listener, daemon, async {
        stop_signal.await;
        notify(sd_notify::NotifyState::Stopping);
    })
    .await;
    if let Some(file) = bound {
        socket::remove(&file);
    }
    Ok(result?)
}

/// The gid of `--service-group`, refused when the group does not exist.
fn service_group(name: &str) -> Result<u32, String> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(format!(
            "--service-group {name}: there is no such group (getent group {name})"
        )),
        Err(err) => Err(format!("--service-group {name}: {err}")),
    }
}

fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        cache_size: config.cache_size,
        user_name_of: compartmentd::users::lookup_uid,
    }
}

/// `compartmentd check`: verifies the database of the state directory and says what it
/// found, one line per finding; exit 0 only when everything was clean.
fn check(config: &Config) -> ExitCode {
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

/// Tells systemd (when `NOTIFY_SOCKET` is set) where the daemon is in its life.
fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(err) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %err, "cannot notify the service manager");
    }
}

/// Descriptors the daemon needs besides one per connection: the runtime, the database,
/// the listener, the log, the spare kept for running out.
const DESCRIPTORS_BESIDES_CONNECTIONS: u64 = 64;

/// Raises the soft limit on open files towards the hard one when the connection cap needs
/// more (as many servers do); says so when even the hard limit is too low. Running out is
/// answered `busy` either way, never a hang.
fn ensure_descriptors(max_connections: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let needed = (max_connections as u64).saturating_add(DESCRIPTORS_BESIDES_CONNECTIONS);
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= needed {
        return;
    }
    let raised = needed.min(hard);
    if raised > soft && setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_ok() && raised >= needed
    {
        return;
    }
    tracing::warn!(
        limit = raised.max(soft),
        needed,
        "the open-files limit is below what --max-connections needs; connections past it are answered busy (raise LimitNOFILE or lower --max-connections)"
    );
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
