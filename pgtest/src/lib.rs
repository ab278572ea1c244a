//! A PostgreSQL server of the tests' own: `initdb` and `pg_ctl` in a temporary directory,
//! listening on a Unix socket there and nowhere else, stopped and removed when dropped.
//!
//! The server runs as the test's user, or, under root (which `initdb` refuses to run as),
//! as `nobody`. Its superuser role is [`ROLE`], and any local connection is trusted: the
//! socket is in a directory only the server's user can enter (and root).
//!
//! The binaries are looked for in `$PG_BIN`, then where `pg_config --bindir` says, then in
//! Debian's `/usr/lib/postgresql/<version>/bin` (the newest), then on the `PATH`. `.ci/run`
//! installs Debian's `postgresql` package.

#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The role the tests connect as: the cluster's superuser.
pub const ROLE: &str = "compartment";

/// The port, which with a socket directory of its own only names the socket's file.
const PORT: u16 = 5432;

/// A running PostgreSQL server in a temporary directory.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The uid and gid the server runs as, when not the test's own.
    run_as: Option<(u32, u32)>,
}

impl Postgres {
    /// Creates a cluster and starts it. The error says what failed and what it printed.
    pub fn start() -> Result<Postgres, String> {
        let bin = binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("compartment-pg-")
            .tempdir()
            .map_err(|err| format!("a temporary directory: {err}"))?;
        let run_as = if nix::unistd::geteuid().is_root() {
            let nobody = nix::unistd::User::from_name("nobody")
                .ok()
                .flatten()
                .ok_or("no user nobody to run PostgreSQL as")?;
            let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
            nix::unistd::chown(dir.path(), Some(nobody.uid), Some(nobody.gid))
                .map_err(|err| format!("chown {}: {err}", dir.path().display()))?;
            Some((uid, gid))
        } else {
            None
        };
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|err| format!("chmod {}: {err}", dir.path().display()))?;
        let postgres = Postgres { dir, bin, run_as };
        postgres.run(
            "initdb",
            &[
                "--pgdata",
                &postgres.data().display().to_string(),
                "--username",
                ROLE,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                // A test's cluster need not survive the machine's crash.
                "--no-sync",
            ],
        )?;
        postgres.start_server()?;
        Ok(postgres)
    }

    /// The directory of the server's socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A libpq connection string (key = value form) for `database`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "host={} port={PORT} user={ROLE} dbname={database}",
            self.socket_dir().display()
        )
    }

    /// Creates an empty database named `name`.
    pub fn create_database(&self, name: &str) -> Result<(), String> {
        let socket = self.socket_dir().display().to_string();
        let port = PORT.to_string();
        self.run(
            "createdb",
            &["--host", &socket, "--port", &port, "--username", ROLE, name],
        )
    }

    /// Stops the server (fast: sessions are ended, committed work kept) and leaves the
    /// cluster in place for [`Postgres::start_server`].
    pub fn stop_server(&self) -> Result<(), String> {
        let data = self.data().display().to_string();
        self.run(
            "pg_ctl",
            &["stop", "--pgdata", &data, "--mode", "fast", "--wait"],
        )
    }

    /// Starts the server on the cluster, and waits until it accepts connections.
    pub fn start_server(&self) -> Result<(), String> {
        let data = self.data().display().to_string();
        let log = self.dir.path().join("server.log").display().to_string();
        let options = format!(
            "-k {} -p {PORT} -c listen_addresses=''",
            self.socket_dir().display()
        );
        self.run(
            "pg_ctl",
            &[
                "start",
                "--pgdata",
                &data,
                "--log",
                &log,
                "--options",
                &options,
                "--wait",
            ],
        )
    }

    /// Makes a role `name` that logs in only with `password` (SCRAM, on the socket), owning
    /// a database of the same name: what an operator gives a daemon that must prove who it
    /// is.
    pub fn password_role(&self, name: &str, password: &str) -> Result<(), String> {
        let socket = self.socket_dir().display().to_string();
        let port = PORT.to_string();
        self.execute(
            "postgres",
            &format!("CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'"),
        )?;
        self.run(
            "createdb",
            &[
                "--host",
                &socket,
                "--port",
                &port,
                "--username",
                ROLE,
                "--owner",
                name,
                name,
            ],
        )?;
        let hba = self.data().join("pg_hba.conf");
        let rules =
            std::fs::read_to_string(&hba).map_err(|err| format!("{}: {err}", hba.display()))?;
        std::fs::write(&hba, format!("local all {name} scram-sha-256\n{rules}"))
            .map_err(|err| format!("{}: {err}", hba.display()))?;
        let data = self.data().display().to_string();
        self.run("pg_ctl", &["reload", "--pgdata", &data])
    }

    /// Runs `sql` in `database` as the cluster's owner (as someone with the database in
    /// hand would, behind the daemon's back).
    pub fn execute(&self, database: &str, sql: &str) -> Result<(), String> {
        let socket = self.socket_dir().display().to_string();
        let port = PORT.to_string();
        self.run(
            "psql",
            &[
                "--host",
                &socket,
                "--port",
                &port,
                "--username",
                ROLE,
                "--dbname",
                database,
                "--no-psqlrc",
                "--quiet",
                "--set",
                "ON_ERROR_STOP=1",
                "--command",
                sql,
            ],
        )
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of the server's programs as the server's user, in the cluster's directory.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let mut command = Command::new(self.bin.join(program));
        command.args(args).current_dir(self.dir.path());
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        let output = command
            .output()
            .map_err(|err| format!("run {program}: {err}"))?;
        checked(program, &output)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data().display().to_string();
        // Immediate: the cluster is removed with the directory anyway.
        let _ = self.run(
            "pg_ctl",
            &["stop", "--pgdata", &data, "--mode", "immediate", "--wait"],
        );
    }
}

fn checked(program: &str, output: &Output) -> Result<(), String> {
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{program} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// The directory of PostgreSQL's programs (`initdb`, `pg_ctl`, `createdb`).
fn binaries() -> Result<PathBuf, String> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("PG_BIN").map(PathBuf::from) {
        return if has_initdb(&dir) {
            Ok(dir)
        } else {
            Err(format!("PG_BIN={} has no initdb", dir.display()))
        };
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_initdb(&dir) {
            return Ok(dir);
        }
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_initdb(dir))
        .collect();
    debian.sort();
    if let Some((_, dir)) = debian.pop() {
        return Ok(dir);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| has_initdb(dir))
        .ok_or_else(|| {
            "PostgreSQL's programs (initdb, pg_ctl) are not installed: apt-get install postgresql"
                .to_owned()
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// A server starts, takes a database, stops and starts again on the same cluster, and
    /// its socket is where `url` says.
    #[test]
    fn a_server_starts_restarts_and_is_gone_when_dropped() {
        let postgres = match Postgres::start() {
            Ok(postgres) => postgres,
            Err(err) if std::env::var_os("CI").is_none() => {
                eprintln!("SKIPPED: a_server_starts_restarts_and_is_gone_when_dropped: {err}");
                return;
            }
            Err(err) => panic!("{err}"),
        };
        postgres.create_database("compartment").unwrap();
        let socket = postgres.socket_dir().join(format!(".s.PGSQL.{PORT}"));
        assert!(socket.exists(), "{}", postgres.log());
        assert!(postgres.url("compartment").contains("dbname=compartment"));
        postgres.stop_server().unwrap();
        assert!(!socket.exists());
        postgres.start_server().unwrap();
        assert!(socket.exists(), "{}", postgres.log());
        let dir = postgres.socket_dir().to_owned();
        drop(postgres);
        assert!(!dir.exists());
    }
}
