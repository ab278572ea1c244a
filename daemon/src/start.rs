//! From a parsed command line to a serving daemon, one path for the binary and the tests:
//! the state directory checked and its store opened, the socket bound (or inherited from
//! systemd), the server run until a shutdown future, the socket removed. What only a
//! process does (the service manager's notifications, signals, logging) stays in `main`.

use std::error::Error;
use std::future::Future;
use std::sync::Arc;

use crate::checkpoint::{Keeper, Signer, KEY_FILE};
use crate::clock::Clock;
use crate::config::Config;
use crate::rules::Policy;
use crate::server::{self, Daemon};
use crate::socket::{self, SocketFile};
use crate::state_dir;
use crate::store::{Backend as _, Reader as _, Store, StoreOptions, DATABASE_FILE};
use crate::users::SystemUsers;

/// A daemon whose store is open and whose socket is listening: connections that arrive
/// from here on wait in the listen queue until [`Listening::serve`] accepts them.
pub struct Listening {
    listener: tokio::net::UnixListener,
    /// The socket file bound, removed at the end; `None` under socket activation, where
    /// the socket unit owns the path.
    bound: Option<SocketFile>,
    daemon: Daemon,
}

/// Where the store is.
enum Place {
    /// The embedded database in this state directory.
    Redb(std::path::PathBuf),
    Postgres(Box<crate::store::postgres::Target>),
}

/// Opens what `config` names and listens, on `clock`; called within a tokio runtime.
pub async fn listen(config: &Config, clock: Arc<dyn Clock>) -> Result<Listening, Box<dyn Error>> {
    let limits = config.limits()?;
    // The store's place is checked before the socket's (so a missing default is reported
    // for the state directory first, as before there was a choice).
    let place = match config.postgres()? {
        Some(target) => Place::Postgres(Box::new(target)),
        None => Place::Redb(config.state_dir()?),
    };
    let socket_path = config.socket()?;
    let daemon_uid = nix::unistd::geteuid().as_raw();
    let (store, state_dir) = match place {
        Place::Postgres(target) => {
            let store = Store::open_postgres(&target, tokio::runtime::Handle::current()).await?;
            // The database is elsewhere; the directory keeps this host's signing key.
            (
                store,
                state_dir::prepare_dir(&config.state_dir()?, daemon_uid)?,
            )
        }
        Place::Redb(state_dir) => {
            // Before anything is opened: the store only ever sees the checked, real
            // directory.
            let state_dir = state_dir::prepare(&state_dir, DATABASE_FILE, daemon_uid)?;
            (
                Store::open_with(&state_dir, &store_options(config))?,
                state_dir,
            )
        }
    };
    ensure_descriptors(limits.max_connections);
    // Under socket activation the socket unit owns the path: nothing to bind or remove.
    let inherited = socket::inherited()?;
    let (listener, bound) = match inherited.socket {
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
    let http = match (config.http_listen, inherited.page) {
        (Some(addr), Some(_)) => {
            return Err(format!(
                "the activation page's socket is passed by systemd (compartmentd-page.socket) and --http-listen {addr} asks for another: choose one"
            )
            .into())
        }
        (Some(addr), None) => {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|err| {
                format!("cannot serve the activation page on {addr} (--http-listen): {err}")
            })?;
            tracing::info!(address = %addr, "the activation page is served");
            Some(listener)
        }
        (None, Some(page)) => {
            let listener = tokio::net::TcpListener::from_std(page)?;
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(address = %addr, "the activation page is served on the socket systemd passed");
            }
            Some(listener)
        }
        (None, None) => None,
    };
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
        store = %store,
        public_url = %policy.public_url,
        "compartmentd listening"
    );
    let signer =
        Signer::load_or_create(&state_dir.join(KEY_FILE), audit_origin(&policy.public_url))
            .map_err(|err| {
                format!(
                    "cannot load the audit signing key in {}: {err}",
                    state_dir.display()
                )
            })?;
    let signer = signer.with_peers(config.audit_peer_keys.clone());
    tracing::info!(key = %signer.verifier_key(), "audit checkpoints are signed with this key");
    let audit = Arc::new(Keeper::new(signer, config.audit_checkpoint_interval));
    if let Some((seq, hash)) = store.read()?.audit_head()? {
        audit.saw(seq, hash);
    }
    let daemon = Daemon {
        audit,
        audit_retention: config.audit_retention,
        store: Arc::new(store),
        clock,
        policy,
        daemon_uid,
        sweep_interval: config.sweep_interval,
        limits,
        users: SystemUsers::new(),
        service_group,
        http,
        metrics_textfile: config
            .metrics_textfile
            .clone()
            .map(|path| (path, config.metrics_interval)),
        watchdog: sd_notify::watchdog_enabled(),
    };
    Ok(Listening {
        listener,
        bound,
        daemon,
    })
}

impl Listening {
    /// Serves until `shutdown` completes, then stops gracefully (see [`server::run`]) and
    /// removes the socket file it bound.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), Box<dyn Error>> {
        let result = server::run(self.listener, self.daemon, shutdown).await;
        if let Some(file) = self.bound {
            socket::remove(&file);
        }
        Ok(result?)
    }
}

/// [`listen`], then [`Listening::serve`] until `shutdown`: the daemon as the binary runs
/// it, for a caller with nobody to tell in between.
pub async fn serve(
    config: &Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Box<dyn Error>> {
    listen(config, clock).await?.serve(shutdown).await
}

/// The name of this host's audit checkpoints: the public URL's host and
/// `/compartment-audit`.
fn audit_origin(public_url: &str) -> String {
    let host = public_url
        .split_once("://")
        .map_or(public_url, |(_, rest)| rest)
        .trim_end_matches('/');
    format!("{host}/compartment-audit")
}

/// The store's options as the command line sets them.
pub fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        cache_size: config.cache_size,
        user_name_of: crate::users::lookup_uid,
    }
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
