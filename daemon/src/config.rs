//! The daemon's command line. Every flag is also an environment variable, so that
//! `/etc/default/compartmentd` can set it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use compartmentctl::paths::NoDefaultPath;

use crate::limits::{Limits, DEFAULT_CHANGES_BURST, DEFAULT_MAX_CHANGES_PER_SEC};
use crate::rules::MAX_INVITATION_TTL;
use crate::store::postgres::{Target, TargetError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// The journal when started by systemd with a journal, else text on stderr.
    Auto,
    Text,
    Json,
    Journald,
}

/// compartmentd: organizations, members, roles and invitations of one Compartment host,
/// served as JSON-RPC over a local Unix socket.
#[derive(Debug, Clone, Parser)]
#[command(name = "compartmentd", version)]
pub struct Config {
    /// The Unix socket to listen on [default: /run/compartment/compartmentd.sock as root
    /// or under systemd, else $XDG_RUNTIME_DIR/compartment/compartmentd.sock, else
    /// ~/.local/state/compartment/compartmentd.sock]
    #[arg(long, env = "COMPARTMENT_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Where the database lives [default: /var/lib/compartment as root or under systemd,
    /// else $XDG_STATE_HOME/compartment, else ~/.local/state/compartment]
    #[arg(long, env = "COMPARTMENT_STATE_DIR", value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,

    /// The PostgreSQL database that holds the membership, shared by every daemon given the
    /// same: a libpq connection string (postgresql://USER@HOST[:PORT][,HOST2…]/DBNAME, or
    /// host=… dbname=…), completed from PGHOST, PGUSER…, a service file and the passfile
    /// (PGPASSFILE); never with a password in it [default: the embedded database in
    /// --state-dir]
    #[arg(
        long,
        env = "COMPARTMENT_STORE",
        value_name = "CONNINFO",
        hide_env_values = true,
        global = true
    )]
    pub store: Option<String>,

    /// The base of activation URLs: https://HOST[:PORT] [default: https://<hostname>]
    #[arg(long, env = "COMPARTMENT_PUBLIC_URL", value_name = "URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// A Unix group whose members (by primary group, or listed in it) may ask what any
    /// user may do (`authz.check`, `compartment auth can --user`): the host's services.
    /// Superusers always may; without this flag nobody else may
    #[arg(long, env = "COMPARTMENT_SERVICE_GROUP", value_name = "GROUP")]
    pub service_group: Option<String>,

    /// How long an invitation lives unless the inviter says otherwise (at most 30 days)
    #[arg(long, env = "COMPARTMENT_INVITATION_TTL", value_name = "DURATION",
          default_value = "7days", value_parser = parse_ttl)]
    pub invitation_ttl: Duration,

    /// The longest the invitation sweeper sleeps; it also wakes at each expiry
    #[arg(long, env = "COMPARTMENT_SWEEP_INTERVAL", value_name = "DURATION",
          default_value = "1min", value_parser = parse_positive)]
    pub sweep_interval: Duration,

    /// How often the daemon signs a checkpoint of the audit log, keeps it and logs it, while
    /// the log grows
    #[arg(long, env = "COMPARTMENT_AUDIT_CHECKPOINT_INTERVAL", value_name = "DURATION",
          default_value = "10min", value_parser = parse_positive)]
    pub audit_checkpoint_interval: Duration,

    /// Serve the activation page (`/activate?token=…`, what invitation URLs point at) on
    /// this address, such as 127.0.0.1:8080 behind the host's reverse proxy. Off by
    /// default; the page only tells an invitee what to run on the host
    #[arg(long, env = "COMPARTMENT_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<std::net::SocketAddr>,

    /// Write the daemon's metrics, in Prometheus' text format, to this file (its name
    /// ending in .prom) every --metrics-interval, replaced atomically: for node_exporter's
    /// textfile collector. Off by default; `compartment admin metrics` shows the same text
    #[arg(long, env = "COMPARTMENT_METRICS_TEXTFILE", value_name = "PATH",
          value_parser = parse_textfile)]
    pub metrics_textfile: Option<PathBuf>,

    /// How often --metrics-textfile is written
    #[arg(long, env = "COMPARTMENT_METRICS_INTERVAL", value_name = "DURATION",
          default_value = "15s", value_parser = parse_positive)]
    pub metrics_interval: Duration,

    /// How long audit records and the change feed's events are kept (at least a day), or
    /// `forever`. Older ones are pruned at each checkpoint, behind a checkpoint signed of
    /// the last one pruned, so the rest still verifies. A year by default, what PCI DSS
    /// asks and SOC 2 auditors expect
    #[arg(long, env = "COMPARTMENT_AUDIT_RETENTION", value_name = "DURATION",
          default_value = "365days", value_parser = crate::retention::parse)]
    pub audit_retention: crate::retention::Retention,

    /// The verifier key of another daemon sharing this PostgreSQL store, as it logs its
    /// own at start (`audit checkpoints are signed with this key`): its checkpoints, the
    /// ones it prunes behind included, are trusted as this daemon's own. Repeat it, or
    /// separate keys with commas
    #[arg(long = "audit-peer-key", env = "COMPARTMENT_AUDIT_PEER_KEYS", value_name = "KEY",
          value_delimiter = ',', value_parser = crate::checkpoint::Peer::parse)]
    pub audit_peer_keys: Vec<crate::checkpoint::Peer>,

    /// Connections served at once, from everyone together; more are answered `busy`
    #[arg(long, env = "COMPARTMENT_MAX_CONNECTIONS", value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Connections served at once from one Unix user; more are answered `busy`
    #[arg(long, env = "COMPARTMENT_MAX_CONNECTIONS_PER_UID", value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_uid: u32,

    /// Of --max-connections, how many only superusers (root and the daemon's own user) may
    /// take, so that they can always get in however many connections others hold
    #[arg(
        long,
        env = "COMPARTMENT_SUPERUSER_RESERVED_CONNECTIONS",
        value_name = "N",
        default_value_t = 3
    )]
    pub superuser_reserved_connections: u32,

    /// How long a request line may take to arrive once it has begun; a slower one closes
    /// the connection
    #[arg(long, env = "COMPARTMENT_LINE_TIMEOUT", value_name = "DURATION",
          default_value = "5s", value_parser = parse_positive)]
    pub line_timeout: Duration,

    /// How long a connection may stay without a request before it is closed
    #[arg(long, env = "COMPARTMENT_IDLE_TIMEOUT", value_name = "DURATION",
          default_value = "5min", value_parser = parse_positive)]
    pub idle_timeout: Duration,

    /// How long an answer may wait for the client to read it; a client that stops reading
    /// is disconnected after this
    #[arg(long, env = "COMPARTMENT_WRITE_TIMEOUT", value_name = "DURATION",
          default_value = "10s", value_parser = parse_positive)]
    pub write_timeout: Duration,

    /// How many changes a subscriber of the change feed (`events.subscribe`) may trail the
    /// newest by; one that falls further behind is told so and disconnected
    #[arg(long, env = "COMPARTMENT_FEED_MAX_LAG", value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub feed_max_lag: u64,

    /// How many change feeds of one user may replay past changes (`events.subscribe` with
    /// `after`) at once; one more is refused `busy` until one has caught up. Superusers are
    /// not limited
    #[arg(long, env = "COMPARTMENT_FEED_REPLAYS_PER_UID", value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub feed_replays_per_uid: u32,

    /// How many change feeds may replay past changes at once, from everyone together
    /// (superusers not counted)
    #[arg(long, env = "COMPARTMENT_FEED_REPLAYS", value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub feed_replays: u32,

    /// Changes (invitations, removals, grants, activations…) one Unix user may make a
    /// second, on average; faster ones are answered `busy` with when to retry, whether the
    /// rules would have accepted them or not. Superusers are not limited
    #[arg(long, env = "COMPARTMENT_MAX_CHANGES_PER_SEC", value_name = "N",
          default_value_t = DEFAULT_MAX_CHANGES_PER_SEC,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_changes_per_sec: u32,

    /// Changes one Unix user may make at once, after a quiet while, before
    /// --max-changes-per-sec applies: a bulk invitation of this many goes through at once
    #[arg(long, env = "COMPARTMENT_CHANGES_BURST", value_name = "N",
          default_value_t = DEFAULT_CHANGES_BURST,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub changes_burst: u32,

    /// Free space kept on the state directory's filesystem (e.g. 256MiB, 1GiB; 0 for none):
    /// below it, changes of everyone but superusers are refused `unavailable`, so that the
    /// disk never fills from requests and superusers can still repair
    #[arg(long, env = "COMPARTMENT_MIN_FREE_SPACE", value_name = "SIZE",
          default_value = "256MiB", value_parser = parse_size)]
    pub min_free_space: u64,

    /// Where logs go
    #[arg(long, env = "COMPARTMENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// The most memory the database's page cache may hold (e.g. 32MiB, 1GiB); the rest of
    /// the file is read from the kernel's page cache or the disk when needed
    #[arg(long, env = "COMPARTMENT_CACHE_SIZE", value_name = "SIZE", default_value = "16MiB",
          value_parser = parse_cache_size, global = true)]
    pub cache_size: usize,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Verify the database, then exit
    ///
    /// Reads every page of the database, verifying its checksum, then checks that the
    /// indexes agree with the tables; prints what it found and exits 0 when everything was
    /// clean, 1 when anything was wrong. Run it with the daemon stopped: a start reads only
    /// what it needs, this reads the whole file. Damage that can be repaired, as after a crash,
    /// is repaired and reported.
    Check,
    /// Restore a backup into an empty store, then exit
    ///
    /// Reads a backup written by `compartment admin backup` and writes it into the store
    /// (--state-dir's database, which no daemon may be using, or the PostgreSQL database
    /// --store names) in one transaction: the store holds either the whole backup or what
    /// it held before. A store that holds anything is refused unless --replace. Prints one
    /// line with what it restored.
    Restore {
        /// The backup file
        file: PathBuf,
        /// Replace whatever the store holds (stop every daemon using it first)
        #[arg(long)]
        replace: bool,
    },
}

impl Config {
    /// The connection limits, or why they contradict each other.
    pub fn limits(&self) -> Result<Limits, String> {
        if self.superuser_reserved_connections >= self.max_connections {
            return Err(format!(
                "--superuser-reserved-connections ({}) must be less than --max-connections ({})",
                self.superuser_reserved_connections, self.max_connections
            ));
        }
        Ok(Limits {
            max_connections: self.max_connections as usize,
            max_connections_per_uid: self.max_connections_per_uid as usize,
            superuser_reserved_connections: self.superuser_reserved_connections as usize,
            line_timeout: self.line_timeout,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            feed_max_lag: self.feed_max_lag,
            feed_replays_per_uid: self.feed_replays_per_uid as usize,
            feed_replays: self.feed_replays as usize,
            max_changes_per_sec: self.max_changes_per_sec,
            changes_burst: self.changes_burst,
            min_free_space: self.min_free_space,
        })
    }

    /// The PostgreSQL database `--store` names, if it names one.
    pub fn postgres(&self) -> Result<Option<Target>, TargetError> {
        self.store.as_deref().map(Target::parse).transpose()
    }

    /// The socket to bind; with no flag, the default, which may not exist (no home).
    pub fn socket(&self) -> Result<PathBuf, NoDefaultPath> {
        match &self.socket {
            Some(path) => Ok(path.clone()),
            None => compartmentctl::paths::default_daemon_socket(),
        }
    }

    pub fn state_dir(&self) -> Result<PathBuf, NoDefaultPath> {
        match &self.state_dir {
            Some(path) => Ok(path.clone()),
            None => compartmentctl::paths::default_state_dir(),
        }
    }

    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            let host = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into());
            format!("https://{host}")
        })
    }
}

fn parse_positive(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if duration.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(duration)
}

/// `--metrics-textfile`: a file named `*.prom` (the only files the textfile collector
/// reads) in a directory that exists.
fn parse_textfile(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.extension().is_none_or(|ext| ext != "prom") {
        return Err(
            "must name a file ending in .prom: node_exporter's textfile collector reads only those"
                .into(),
        );
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    Ok(path)
}

/// The smallest page cache allowed: a few hundred pages, below which every request would
/// go to the file.
const MIN_CACHE_SIZE: u64 = 1024 * 1024;

fn parse_cache_size(text: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = text.trim().parse()?;
    if size.as_u64() < MIN_CACHE_SIZE {
        return Err("must be at least 1MiB".into());
    }
    usize::try_from(size.as_u64()).map_err(|_| "is more than this machine can address".into())
}

fn parse_size(text: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = text.trim().parse()?;
    Ok(size.as_u64())
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let duration = parse_positive(text)?;
    if duration > MAX_INVITATION_TTL {
        return Err("must be at most 30 days".into());
    }
    Ok(duration)
}

fn parse_public_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err("must be https://HOST[:PORT][/PATH] without a query".into());
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_are_validated() {
        assert_eq!(parse_ttl("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_ttl("31days").unwrap_err(), "must be at most 30 days");
        assert_eq!(parse_positive("0s").unwrap_err(), "must be more than zero");
        assert_eq!(
            parse_public_url("https://h.example/").unwrap(),
            "https://h.example"
        );
        assert!(parse_public_url("h.example").is_err());
    }

    #[test]
    fn the_cache_size_is_a_size_of_at_least_one_mebibyte() {
        assert_eq!(parse_cache_size("32MiB").unwrap(), 32 << 20);
        assert_eq!(parse_cache_size("1 GiB").unwrap(), 1 << 30);
        assert_eq!(
            parse_cache_size("4096").unwrap_err(),
            "must be at least 1MiB"
        );
        assert!(parse_cache_size("lots").is_err());
        let config = Config::parse_from(["compartmentd"]);
        assert_eq!(config.cache_size, crate::store::DEFAULT_CACHE_SIZE);
        let config = Config::parse_from(["compartmentd", "check", "--state-dir", "/x"]);
        assert!(matches!(config.command, Some(Command::Check)));
        assert_eq!(config.state_dir.unwrap(), PathBuf::from("/x"));
    }

    #[test]
    fn reserved_connections_must_leave_room_for_others() {
        let config = Config::parse_from([
            "compartmentd",
            "--max-connections",
            "3",
            "--superuser-reserved-connections",
            "3",
        ]);
        assert_eq!(
            config.limits().unwrap_err(),
            "--superuser-reserved-connections (3) must be less than --max-connections (3)"
        );
        let config = Config::parse_from(["compartmentd"]);
        let limits = config.limits().unwrap();
        assert_eq!(limits.superuser_reserved_connections, 3);
        assert_eq!(limits.write_timeout, Duration::from_secs(10));
    }

    #[test]
    fn change_limits_have_defaults_and_take_sizes() {
        let limits = Config::parse_from(["compartmentd"]).limits().unwrap();
        assert_eq!(limits.max_changes_per_sec, 20);
        assert_eq!(limits.changes_burst, 500);
        assert_eq!(limits.min_free_space, crate::limits::DEFAULT_MIN_FREE_SPACE);
        assert_eq!(limits.min_free_space, 256 << 20);
        let config = Config::parse_from([
            "compartmentd",
            "--max-changes-per-sec",
            "5",
            "--changes-burst",
            "50",
            "--min-free-space",
            "1 GiB",
        ]);
        let limits = config.limits().unwrap();
        assert_eq!(
            (
                limits.max_changes_per_sec,
                limits.changes_burst,
                limits.min_free_space
            ),
            (5, 50, 1 << 30)
        );
        assert_eq!(parse_size("0").unwrap(), 0);
        assert!(parse_size("lots").is_err());
        assert!(Config::try_parse_from(["compartmentd", "--max-changes-per-sec", "0"]).is_err());
    }

    #[test]
    fn retention_is_a_year_by_default_at_least_a_day_or_forever() {
        use crate::retention::Retention;
        let retention = |args: &[&str]| {
            let mut argv = vec!["compartmentd"];
            argv.extend_from_slice(args);
            Config::try_parse_from(argv).map(|config| config.audit_retention)
        };
        assert_eq!(
            retention(&[]).unwrap(),
            Retention::For(Duration::from_secs(365 * 24 * 3600))
        );
        assert_eq!(
            retention(&["--audit-retention", "forever"]).unwrap(),
            Retention::Forever
        );
        assert_eq!(
            retention(&["--audit-retention", "30days"]).unwrap(),
            Retention::For(Duration::from_secs(30 * 24 * 3600))
        );
        assert!(retention(&["--audit-retention", "12h"]).is_err());
        assert!(retention(&["--audit-retention", "never"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }
}
