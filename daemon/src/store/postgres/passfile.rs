//! The password file, read as libpq reads it (PostgreSQL's "The Password File"): the file
//! `PGPASSFILE` names, else `~/.pgpass`; lines `hostname:port:database:username:password`,
//! `*` matching anything, `\` escaping a `:` or a `\`, `#` starting a comment; the first
//! line that matches the connection wins; a host that is a socket directory matches
//! `localhost`. Read here rather than by the crate that completes the rest of the settings:
//! that one refuses a file of mode `0400` (which systemd's `LoadCredential=` makes), never
//! matches the default port, and matches a socket directory by its path.
//!
//! Where libpq warns and ignores a file others may read, the daemon refuses to start: an
//! operator who wrote a password there meant it to be used.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio_postgres::config::Host;

/// PostgreSQL's port when none is named.
const DEFAULT_PORT: u16 = 5432;

/// The password the password file holds for `config`'s first host that has one; `None`
/// when there is no file, or no line matches.
pub(super) fn password(config: &tokio_postgres::Config) -> Result<Option<String>, String> {
    let Some(path) = file() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        // libpq too goes on without a file it cannot find.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("the password file {}: {err}", path.display())),
    };
    let mode = std::fs::metadata(&path)
        .map_err(|err| format!("the password file {}: {err}", path.display()))?
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "the password file {} may be read by others (mode {:04o}): make it the daemon's alone (chmod 600 {})",
            path.display(),
            mode & 0o7777,
            path.display()
        ));
    }
    Ok(lookup(&text, config))
}

/// `PGPASSFILE`, else `~/.pgpass`.
fn file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PGPASSFILE") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".pgpass"))
}

/// The first password in `text` for one of `config`'s hosts, in their order.
fn lookup(text: &str, config: &tokio_postgres::Config) -> Option<String> {
    let ports = config.get_ports();
    let user = match config.get_user() {
        Some(user) => user.to_owned(),
        None => nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|user| user.name)?,
    };
    let database = config.get_dbname().unwrap_or(&user).to_owned();
    config.get_hosts().iter().enumerate().find_map(|(i, host)| {
        let host = match host {
            Host::Tcp(name) => name.as_str(),
            Host::Unix(_) => "localhost",
        };
        // One port for every host, or one each.
        let port = match ports {
            [] => DEFAULT_PORT,
            [port] => *port,
            ports => *ports.get(i)?,
        };
        let port = port.to_string();
        text.lines().find_map(|line| {
            let fields = fields(line)?;
            let matches = |field: &str, value: &str| field == "*" || field == value;
            (matches(&fields[0], host)
                && matches(&fields[1], &port)
                && matches(&fields[2], &database)
                && matches(&fields[3], &user))
            .then(|| fields[4].clone())
        })
    })
}

/// A line's five fields, unescaped (what follows a fifth is ignored); `None` for a comment,
/// a blank line or one with fewer.
fn fields(line: &str) -> Option<[String; 5]> {
    if line.trim_start().starts_with('#') {
        return None;
    }
    let mut fields: Vec<String> = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.push(chars.next().unwrap_or('\\')),
            ':' => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    // The password ends at its first unescaped colon, as libpq reads it.
    fields.truncate(5);
    fields.try_into().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config(text: &str) -> tokio_postgres::Config {
        text.parse().unwrap()
    }

    const FILE: &str = "\
# A comment, then lines libpq would read the same way.
db1.example:5432:compartment:compartment:first
db2.example:*:*:compartment:with\\:colon\\\\:and:more
localhost:5433:*:*:socket
*:*:*:other:anyone
";

    #[test]
    fn the_first_matching_line_wins_as_libpq_matches_it() {
        let found = |text: &str| lookup(FILE, &config(text));
        // The default port is matched as 5432.
        assert_eq!(
            found("host=db1.example dbname=compartment user=compartment").as_deref(),
            Some("first")
        );
        assert_eq!(
            found("host=db1.example port=5433 dbname=compartment user=compartment"),
            None
        );
        // Escaped colons and backslashes; the password ends at an unescaped colon.
        assert_eq!(
            found("host=db2.example dbname=x user=compartment").as_deref(),
            Some("with:colon\\")
        );
        // A socket directory matches localhost.
        assert_eq!(
            found("host=/var/run/postgresql port=5433 dbname=x user=y").as_deref(),
            Some("socket")
        );
        // The first host without a line, the second with one.
        assert_eq!(
            found("host=nowhere.example,db1.example dbname=compartment user=compartment")
                .as_deref(),
            Some("first")
        );
        // Wildcards; the database defaults to the user's name.
        assert_eq!(
            found("host=elsewhere user=other").as_deref(),
            Some("anyone")
        );
        assert_eq!(found("host=elsewhere user=nobody-listed"), None);
    }

    #[test]
    fn comments_blank_and_short_lines_match_nothing() {
        assert!(fields("# a:b:c:d:e").is_none());
        assert!(fields("").is_none());
        assert!(fields("a:b:c:d").is_none());
        assert_eq!(
            fields("a:b:c:d:e").unwrap(),
            ["a", "b", "c", "d", "e"].map(String::from)
        );
    }
}
