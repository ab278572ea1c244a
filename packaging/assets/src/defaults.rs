//! `/etc/default/compartmentd`: every daemon flag that has an environment variable, with
//! its help text, commented out, from the daemon's clap definition (so a new flag cannot be
//! forgotten here).

use std::path::PathBuf;

use clap::{Arg, CommandFactory};
use compartmentctl::paths::{SYSTEM_SOCKET, SYSTEM_STATE_DIR};
use compartmentd::config::Config;

use crate::Asset;

/// Comment lines are wrapped to this width, `# ` included.
const WIDTH: usize = 80;

const HEADER: &str = "\
# Settings of compartmentd, the Compartment host control plane daemon.
#
# compartmentd.service reads this file (EnvironmentFile=). Each variable does
# what the daemon flag named above it does (see compartmentd(8) or
# `compartmentd --help`). Every setting is commented out and shows its default,
# or an example where the default is computed; uncomment a line to change it,
# then run
#   systemctl restart compartmentd.service
";

const PGPASSFILE: &str = "\
# The password file for --store, as libpq reads it (lines of
# host:port:database:user:password), readable by the daemon alone. Under
# systemd, load it as a credential in a drop-in
# (LoadCredential=pgpass:/etc/compartment/pgpass) and name it here.
#PGPASSFILE=/run/credentials/compartmentd.service/pgpass
";

const RUST_LOG: &str = "\
# What to log, as a tracing filter: error, warn, info, debug or trace, for
# everything or per module (compartmentd=debug).
#RUST_LOG=info
";

/// The file's text; `main` writes it to `default/compartmentd`.
pub fn file() -> Asset {
    let mut text = String::from(HEADER);
    let cmd = Config::command();
    for arg in cmd.get_arguments().filter(|arg| !arg.is_hide_set()) {
        if let Some(entry) = entry(arg) {
            text.push('\n');
            text.push_str(&entry);
        }
    }
    text.push('\n');
    text.push_str(PGPASSFILE);
    text.push('\n');
    text.push_str(RUST_LOG);
    Asset {
        path: PathBuf::from("default/compartmentd"),
        contents: text.into_bytes(),
    }
}

/// One flag's comment and commented-out assignment, or `None` for a flag without a
/// variable (`--help`, `--version`).
fn entry(arg: &Arg) -> Option<String> {
    let var = arg.get_env()?.to_string_lossy().into_owned();
    let flag = arg
        .get_long()
        .map(|long| format!("--{long}"))
        .unwrap_or_else(|| arg.get_id().to_string());
    let help = arg
        .get_help()
        .or_else(|| arg.get_long_help())
        .map(|help| help.to_string())
        .unwrap_or_default();
    let mut comment = format!("{flag}: {}", help.trim_end_matches('.'));
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|value| !value.is_hide_set())
        .map(|value| match value.get_help() {
            Some(help) => {
                let help = help.to_string();
                let help = help.trim_end_matches('.');
                let mut chars = help.chars();
                let first = chars.next().map(|c| c.to_lowercase().collect::<String>());
                format!(
                    "{} ({}{})",
                    value.get_name(),
                    first.unwrap_or_default(),
                    chars.as_str()
                )
            }
            None => value.get_name().to_owned(),
        })
        .collect();
    if !values.is_empty() {
        comment.push_str(&format!(": one of {}", values.join(", ")));
    }
    comment.push('.');
    let mut text = wrap(&comment);
    if let Some(note) = systemd_note(&var) {
        text.push_str(&wrap(note));
    }
    let value = arg
        .get_default_values()
        .first()
        .map(|value| value.to_string_lossy().into_owned())
        .or_else(|| example(&var).map(str::to_owned))
        .unwrap_or_default();
    text.push_str(&format!("#{var}={value}\n"));
    Some(text)
}

/// What a setting means under the package's units, where that differs from running the
/// daemon by hand.
fn systemd_note(var: &str) -> Option<&'static str> {
    match var {
        "COMPARTMENT_SOCKET" => Some(
            "Ignored under systemd: compartmentd.socket owns the socket and passes it to the \
             daemon. To move it, change ListenStream= with `systemctl edit compartmentd.socket`.",
        ),
        "COMPARTMENT_STATE_DIR" => Some(
            "Under systemd leave it unset: the service may write only to its StateDirectory=, \
             /var/lib/compartment (really /var/lib/private/compartment, as DynamicUser=yes).",
        ),
        "COMPARTMENT_STORE" => Some(
            "Under systemd: a PostgreSQL on this host is reached on its socket in \
             /var/run/postgresql as the unit is, by peer authentication as the role \
             compartmentd (e.g. COMPARTMENT_STORE=dbname=compartment). One on another host \
             needs the network, which the unit closes, and a password file: see \
             PGPASSFILE below, and the drop-in in the operations guide's \"Several hosts on \
             one PostgreSQL\".",
        ),
        _ => None,
    }
}

/// A value to show for a flag whose default is computed at run time.
fn example(var: &str) -> Option<&'static str> {
    match var {
        "COMPARTMENT_SOCKET" => Some(SYSTEM_SOCKET),
        "COMPARTMENT_STATE_DIR" => Some(SYSTEM_STATE_DIR),
        "COMPARTMENT_PUBLIC_URL" => Some("https://your-compartment-host"),
        "COMPARTMENT_STORE" => Some("postgresql://compartment@db.example/compartment"),
        _ => None,
    }
}

/// `text` as `# ` comment lines of at most [`WIDTH`] columns (a longer word stays whole).
fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 1 {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_is_there_and_commented_out() {
        let text = String::from_utf8(file().contents).unwrap_or_default();
        for line in [
            "#COMPARTMENT_SOCKET=/run/compartment/compartmentd.sock",
            "#COMPARTMENT_STATE_DIR=/var/lib/compartment",
            "#COMPARTMENT_PUBLIC_URL=https://your-compartment-host",
            "#COMPARTMENT_INVITATION_TTL=7days",
            "#COMPARTMENT_SWEEP_INTERVAL=1min",
            "#COMPARTMENT_LOG_FORMAT=auto",
            "#COMPARTMENT_STORE=postgresql://compartment@db.example/compartment",
            "#PGPASSFILE=/run/credentials/compartmentd.service/pgpass",
            "#RUST_LOG=info",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(text
            .lines()
            .all(|l| l.is_empty() || l.starts_with('#') && l.chars().count() <= WIDTH));
    }

    #[test]
    fn wrapping_keeps_every_word() {
        assert_eq!(wrap("a b"), "# a b\n");
        let long = "word ".repeat(40);
        let wrapped = wrap(&long);
        assert!(wrapped.lines().all(|l| l.len() <= WIDTH));
        assert_eq!(
            wrapped.split_whitespace().filter(|w| *w == "word").count(),
            40
        );
    }
}
