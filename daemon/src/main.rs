//! `compartmentd`'s entry point: flags, logging, the store, the socket, signals.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use compartmentd::clock::SystemClock;
use compartmentd::config::Config;
use compartmentd::rules::Policy;
use compartmentd::server::{self, Daemon};
use compartmentd::store::Store;
use compartmentd::{logging, socket};

fn main() -> ExitCode {
    let config = Config::parse();
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
    let state_dir = config.state_dir();
    let socket_path = config.socket();
    let store = Store::open(&state_dir)?;
    // Under socket activation the socket unit owns the path: nothing to bind or remove.
    let (listener, bound_path) = match socket::inherited()? {
        Some(listener) => (listener, None),
        None => (socket::bind(&socket_path)?, Some(socket_path.clone())),
    };
    let listening_on = match &bound_path {
        Some(path) => path.display().to_string(),
        None => "the socket systemd passed".to_owned(),
    };
    let listener = tokio::net::UnixListener::from_std(listener)?;
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
        daemon_uid: nix::unistd::geteuid().as_raw(),
        sweep_interval: config.sweep_interval,
        limits: config.limits(),
        users: compartmentd::users::SystemUsers::new(),
    };
    // Requests that arrive from here on wait in the listen queue until the accept loop runs.
    notify(sd_notify::NotifyState::Ready);
    let result = server::run(listener, daemon, async {
        shutdown_signal().await;
        notify(sd_notify::NotifyState::Stopping);
    })
    .await;
    if let Some(path) = bound_path {
        socket::remove(&path);
    }
    Ok(result?)
}

/// Tells systemd (when `NOTIFY_SOCKET` is set) where the daemon is in its life.
fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(err) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %err, "cannot notify the service manager");
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
