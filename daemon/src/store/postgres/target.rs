//! Where the daemon's PostgreSQL is, as `--store` names it: a libpq connection string (the
//! URL or the key = value form, several hosts included), completed as libpq would from the
//! environment (`PGHOST`, `PGUSER`…), a service file and the passfile. A password never
//! comes from the string itself: it would show in `ps`, the unit and the logs.

use std::fmt;
use std::time::Duration;

use tokio_postgres::config::Host;

use super::passfile;

/// Where libpq looks when no host is named, on Debian.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// How long a connection attempt may take before the host is tried again later (or the
/// next host is tried), when the string does not say.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A PostgreSQL to connect to, and how to name it without its password.
#[derive(Clone)]
pub struct Target {
    pub(super) config: tokio_postgres::Config,
    shown: String,
}

/// Why `--store` was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct TargetError(String);

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--store: {}", self.0)
    }
}

impl std::error::Error for TargetError {}

impl Target {
    /// Parses `text`, then completes it from the environment, a service file and the
    /// passfile. Refuses a password in `text`.
    pub fn parse(text: &str) -> Result<Target, TargetError> {
        // A leading `service=NAME` names a service file's entry, which the client library
        // does not parse; what follows it is checked as written.
        let written = match text.trim_start().strip_prefix("service=") {
            Some(after) => after
                .split_once(char::is_whitespace)
                .map_or("", |(_, rest)| rest),
            None => text,
        };
        let written: tokio_postgres::Config = written
            .parse()
            .map_err(|err| TargetError(format!("not a PostgreSQL connection string: {err}")))?;
        if written.get_password().is_some() {
            return Err(TargetError(
                "a password here would show in `ps`, the service's unit and its logs; put it in a passfile (PGPASSFILE, or ~/.pgpass of the daemon's user) instead".into(),
            ));
        }
        let mut config = pg_client_config::load_config(Some(text)).map_err(|err| {
            TargetError(format!("cannot complete the connection settings: {err}"))
        })?;
        if config.get_hosts().is_empty() {
            config.host(DEFAULT_SOCKET_DIR);
        }
        if config.get_password().is_none() {
            if let Some(password) = passfile::password(&config).map_err(TargetError)? {
                config.password(password);
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        config.application_name("compartmentd");
        let shown = show(&config);
        Ok(Target { config, shown })
    }
}

impl Target {
    /// The hosts, each a name or a socket directory.
    pub fn hosts(&self) -> Vec<String> {
        self.config
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect()
    }

    pub fn ports(&self) -> &[u16] {
        self.config.get_ports()
    }

    pub fn dbname(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    pub fn user(&self) -> Option<&str> {
        self.config.get_user()
    }
}

impl fmt::Display for Target {
    /// Hosts, ports, database and user: never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// `config` in the key = value form, without the password.
fn show(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let mut shown = format!("host={}", hosts.join(","));
    if !config.get_ports().is_empty() {
        let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
        shown.push_str(&format!(" port={}", ports.join(",")));
    }
    if let Some(dbname) = config.get_dbname() {
        shown.push_str(&format!(" dbname={dbname}"));
    }
    if let Some(user) = config.get_user() {
        shown.push_str(&format!(" user={user}"));
    }
    if config.get_target_session_attrs() == tokio_postgres::config::TargetSessionAttrs::ReadWrite {
        shown.push_str(" target_session_attrs=read-write");
    }
    shown
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_password_in_the_string_is_refused_in_either_form() {
        for text in [
            "postgresql://compartment:s3cret@db.example/compartment",
            "host=db.example dbname=compartment password=s3cret",
        ] {
            let err = Target::parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with("--store: a password here would show in `ps`"),
                "{err}"
            );
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn what_is_shown_names_every_host_and_never_a_password() {
        let mut target = Target::parse(
            "postgresql://compartment@db1.example:5433,db2.example:5434/membership?target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(
            target.to_string(),
            "host=db1.example,db2.example port=5433,5434 dbname=membership user=compartment target_session_attrs=read-write"
        );
        // A password found later (the passfile) is used but never shown.
        target.config.password("s3cret");
        assert!(!format!("{target} {target:?}").contains("s3cret"));
        assert_eq!(
            target.config.get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
    }

    #[test]
    fn a_service_is_looked_up_and_what_follows_it_is_checked() {
        let err = Target::parse("service=compartment-test-nosuch dbname=x")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--store: cannot complete the connection settings:"),
            "{err}"
        );
        let err = Target::parse("service=compartment-test-nosuch password=s3cret")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--store: a password here would show in `ps`"),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_refused_with_what_is_wrong() {
        let err = Target::parse("postgresql://db.example/x?sslmode=sometimes")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--store: not a PostgreSQL connection string:"),
            "{err}"
        );
    }
}
