//! Man pages rendered with clap_mangen from the clap definitions, plus the sections clap
//! knows nothing of (exit status, environment, files, see also).

use std::io;
use std::path::PathBuf;

use clap::{Command, CommandFactory};
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;
use compartmentctl::args::Cli;
use compartmentd::config::Config;

use crate::Asset;

/// The manual every page belongs to (the centre of its header line).
const MANUAL: &str = "Compartment";

/// The daemon page's NAME line; its clap `about` starts with its own name, which the NAME
/// section already gives.
const DAEMON_ABOUT: &str = "the membership and access authority of one Compartment host";

const DAEMON_DESCRIPTION: &str = "\
compartmentd holds the organizations, accounts, memberships, roles and invitations of one \
Compartment host in an embedded redb database, expires stale invitations on a timer, and \
answers JSON-RPC 2.0 requests, one object per line, on a local Unix socket.

It knows who is calling from the socket's peer credentials (uid, gid, pid), never from \
what the client claims. Root and the user the daemon runs as are superusers; every other \
Unix user acts only through the account it activated. Use compartmentctl(1), also \
installed as compartment, to talk to it.

On a Debian host the package runs it as compartmentd.service, started by \
compartmentd.socket on the first connection, as a dynamic user whose only writable place \
is /var/lib/compartment; its settings are in /etc/default/compartmentd.";

/// compartmentctl(1), a page per subcommand (`compartmentctl-user-invite(1)`…), and
/// compartmentd(8).
pub fn pages(date: &str) -> io::Result<Vec<Asset>> {
    let mut pages = Vec::new();
    let mut cli = without_help_subcommand(Cli::command());
    cli.build();
    cli_pages(&cli, date, &mut pages)?;

    let mut daemon = without_help_subcommand(Config::command())
        .about(DAEMON_ABOUT)
        .long_about(DAEMON_DESCRIPTION);
    daemon.build();
    let extra = Extra {
        sections: daemon_sections(),
        see_also: "compartmentctl(1), systemd.socket(5), systemd.exec(5), journalctl(1)",
    };
    pages.push(render(&daemon, "8", date, extra)?);
    // `compartmentd check`, which the daemon's page lists as compartmentd-check(8).
    for sub in daemon.get_subcommands() {
        let extra = Extra {
            sections: Vec::new(),
            see_also: "compartmentd(8)",
        };
        pages.push(render(sub, "8", date, extra)?);
    }
    Ok(pages)
}

/// The CLI's page for `cmd`, then its subcommands' pages, depth first.
fn cli_pages(cmd: &Command, date: &str, pages: &mut Vec<Asset>) -> io::Result<()> {
    let top = cmd.get_display_name().is_none();
    let extra = if top {
        Extra {
            sections: cli_sections(),
            see_also: "compartmentd(8)",
        }
    } else {
        Extra {
            sections: Vec::new(),
            see_also: "compartmentctl(1), compartmentd(8)",
        }
    };
    pages.push(render(cmd, "1", date, extra)?);
    for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        cli_pages(sub, date, pages)?;
    }
    Ok(())
}

/// `help` is not a real command and has no page: drop it everywhere.
fn without_help_subcommand(cmd: Command) -> Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    names
        .iter()
        .fold(cmd.disable_help_subcommand(true), |cmd, name| {
            cmd.mut_subcommand(name, without_help_subcommand)
        })
}

/// Sections a page adds after clap's, each a heading and its body.
struct Extra {
    sections: Vec<(&'static str, Roff)>,
    see_also: &'static str,
}

/// One page: clap's sections, the extra ones, `after_help` as EXAMPLES, then SEE ALSO (the
/// order man-pages(7) gives).
fn render(cmd: &Command, section: &str, date: &str, extra: Extra) -> io::Result<Asset> {
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned();
    let version = cmd.get_version().unwrap_or_default();
    let man = Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section(section)
        .date(date)
        .source(format!("{MANUAL} {version}"))
        .manual(MANUAL);

    // Each of clap_mangen's section renderers writes roff's preamble (it defines the
    // apostrophe string): keep the first and strip it from the rest.
    let mut preamble = Vec::new();
    Roff::new().to_writer(&mut preamble)?;
    let mut out = preamble.clone();
    let mut section_of = |render: &dyn Fn(&mut Vec<u8>) -> io::Result<()>| -> io::Result<()> {
        let mut text = Vec::new();
        render(&mut text)?;
        out.extend_from_slice(text.strip_prefix(preamble.as_slice()).unwrap_or(&text));
        Ok(())
    };
    section_of(&|w| man.render_title(w))?;
    section_of(&|w| man.render_name_section(w))?;
    section_of(&|w| man.render_synopsis_section(w))?;
    section_of(&|w| man.render_description_section(w))?;
    if cmd.get_arguments().any(|arg| !arg.is_hide_set()) {
        section_of(&|w| man.render_options_section(w))?;
    }
    if cmd.has_subcommands() {
        section_of(&|w| man.render_subcommands_section(w))?;
    }
    let mut roff = Roff::new();
    for (heading, body) in extra.sections {
        roff.control("SH", [heading]);
        roff.extend([body]);
    }
    if let Some(examples) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
        roff.control("SH", ["EXAMPLES"]);
        examples_section(&mut roff, &examples.to_string());
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(extra.see_also)]);
    section_of(&|w| roff.to_writer(w))?;

    Ok(Asset {
        path: PathBuf::from(format!("man/man{section}/{name}.{section}")),
        contents: out,
    })
}

/// An `after_help` of example commands ("Examples:\n  cmd\n  cmd"), one command a line,
/// without the heading clap's help shows.
fn examples_section(roff: &mut Roff, text: &str) {
    let lines = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            ["Examples:", "Example:"]
                .iter()
                .find_map(|prefix| line.strip_prefix(prefix))
                .unwrap_or(line)
                .trim()
        })
        .filter(|line| !line.is_empty());
    roff.control("nf", []);
    roff.control("RS", []);
    for line in lines {
        roff.text([roman(line)]);
    }
    roff.control("RE", []);
    roff.control("fi", []);
}

/// A tagged paragraph: `tag` in bold, then `body`.
fn item(roff: &mut Roff, tag: &str, body: &str) {
    roff.control("TP", []);
    roff.text([bold(tag)]);
    roff.text([roman(body)]);
}

fn paragraph(text: &str) -> Roff {
    let mut roff = Roff::new();
    roff.text([roman(text)]);
    roff
}

fn cli_sections() -> Vec<(&'static str, Roff)> {
    let mut exit = Roff::new();
    for (code, meaning) in [
        ("0", "Success."),
        (
            "1",
            "Refused by a rule, such as last_admin, already_member, already_invited or \
             token_expired.",
        ),
        ("2", "Usage error: an unknown command, flag or value."),
        (
            "3",
            "The daemon is unreachable (no socket, or nobody listening) or not trusted: its \
             socket was opened by neither root, nor you, nor the user --trust-server-user \
             names, or lies in a directory others may write.",
        ),
        (
            "4",
            "Permission denied: unauthenticated, forbidden, or a role above your own.",
        ),
        (
            "5",
            "Not found: no such organization, member or invitation.",
        ),
    ] {
        item(&mut exit, code, meaning);
    }

    let mut files = Roff::new();
    item(
        &mut files,
        compartmentctl::paths::SYSTEM_SOCKET,
        "The system daemon's socket, used when it exists and neither --socket nor \
         COMPARTMENT_SOCKET says otherwise.",
    );

    let mut notes = paragraph(
        "The package also installs this command as compartment, so that the commands of the \
         Compartment documentation work verbatim; run that way, its error messages begin with \
         \"compartment:\". Who you are is taken from the socket's peer credentials: root and \
         the daemon's own user are superusers, everyone else acts through the account their \
         Unix user activated with",
    );
    notes.text([bold("compartmentctl activate"), roman(".")]);

    let trust = paragraph(compartmentctl::args::TRUST_MODEL);
    let server_trust = paragraph(compartmentctl::args::SERVER_TRUST);

    vec![
        ("TRUST MODEL", trust),
        ("DAEMON TRUST AND OUTPUT", server_trust),
        ("PERMISSIONS", permissions()),
        ("EXIT STATUS", exit),
        ("FILES", files),
        ("NOTES", notes),
    ]
}

/// The roles' permissions, from the one table the daemon's rules use (DESIGN §3): for each
/// of its rows, the lowest role that holds it and the permission keys that stand for it.
fn permissions() -> Roff {
    use compartmentctl::wire::{Role, TABLE};
    let mut roff = paragraph(
        "Roles are ordered admin > deployer > readonly > viewer, and each holds every \
         permission of those below it. compartmentctl auth can PERMISSION asks whether a user \
         holds one in an organization; compartmentctl role show ROLE lists a role's.",
    );
    for row in TABLE {
        let holders = match row.lowest {
            Role::Admin => "admin".to_owned(),
            lowest => format!("{lowest} and above"),
        };
        let keys: Vec<&str> = row.permissions.iter().map(|p| p.key()).collect();
        item(
            &mut roff,
            &keys.join(", "),
            &format!("{} ({holders}).", capitalized(row.what)),
        );
    }
    roff
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn daemon_sections() -> Vec<(&'static str, Roff)> {
    let mut env = paragraph(
        "Every option above is also read from the environment variable it names, which is \
         how /etc/default/compartmentd configures the service. Besides those:",
    );
    for (name, meaning) in [
        (
            "RUST_LOG",
            "What to log, as a tracing filter such as debug or compartmentd=debug [default: info].",
        ),
        (
            "STATE_DIRECTORY",
            "Set by systemd from StateDirectory=; the default state directory when \
             COMPARTMENT_STATE_DIR is unset.",
        ),
        (
            "RUNTIME_DIRECTORY",
            "Set by systemd from RuntimeDirectory=; the directory of the default socket when \
             COMPARTMENT_SOCKET is unset.",
        ),
        (
            "LISTEN_FDS, LISTEN_PID",
            "Socket activation: when systemd passes the listening socket (compartmentd.socket), \
             the daemon serves it and ignores COMPARTMENT_SOCKET.",
        ),
        (
            "NOTIFY_SOCKET",
            "Where the daemon reports READY=1 and STOPPING=1 (Type=notify).",
        ),
        (
            "JOURNAL_STREAM",
            "With --log-format auto, logs go to the journal when this is set.",
        ),
    ] {
        item(&mut env, name, meaning);
    }

    let mut files = Roff::new();
    for (path, meaning) in [
        (
            "/etc/default/compartmentd",
            "The service's settings (EnvironmentFile=), every option commented out.",
        ),
        (
            "/var/lib/compartment/compartment.redb",
            "The database. The service runs with DynamicUser=yes, so it lives in \
             /var/lib/private/compartment with /var/lib/compartment a link to it. Purging the \
             package deletes it.",
        ),
        (
            compartmentctl::paths::SYSTEM_SOCKET,
            "The socket, created by compartmentd.socket with mode 0666: callers are authorized \
             by their peer credentials, not by the file's mode.",
        ),
        (
            "/lib/systemd/system/compartmentd.socket, /lib/systemd/system/compartmentd.service",
            "The units. Start and stop the daemon with systemctl; the socket unit starts it on \
             the first connection.",
        ),
    ] {
        item(&mut files, path, meaning);
    }

    let mut signals = Roff::new();
    item(
        &mut signals,
        "SIGTERM, SIGINT",
        "Stop accepting connections, finish the requests in flight, and exit with status 0.",
    );

    let mut example = Roff::new();
    example.control("nf", []);
    example.control("RS", []);
    example.text([roman("systemctl status compartmentd.socket")]);
    example.text([roman(
        "compartment org create acme --admin admin@example.com",
    )]);
    example.text([roman("journalctl -u compartmentd")]);
    example.control("RE", []);
    example.control("fi", []);
    example.text([
        roman("Run by hand, as root or as any user: "),
        bold("compartmentd"),
        roman(" "),
        italic("--public-url https://your-compartment-host"),
    ]);

    vec![
        ("ENVIRONMENT", env),
        ("FILES", files),
        ("SIGNALS", signals),
        ("EXAMPLES", example),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_page_per_command_and_no_help_page() {
        let pages = pages("2026-01-01").unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|page| page.path.display().to_string())
            .collect();
        for expected in [
            "man/man1/compartmentctl.1",
            "man/man1/compartmentctl-user.1",
            "man/man1/compartmentctl-user-invite.1",
            "man/man1/compartmentctl-org-create.1",
            "man/man8/compartmentd.8",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let top = String::from_utf8(pages[0].contents.clone()).unwrap();
        assert!(top.contains("\n.TH COMPARTMENTCTL 1 2026-01-01 "), "{top}");
        assert_eq!(top.matches(".ds Aq").count(), 2, "one preamble: {top}");
        assert!(top.contains(".SH \"EXIT STATUS\""), "{top}");
        assert!(
            names
                .iter()
                .any(|n| n == "man/man1/compartmentctl-auth-can.1"),
            "{names:?}"
        );
    }

    #[test]
    fn the_top_page_says_whom_the_cli_talks_to() {
        let pages = pages("2026-01-01").unwrap();
        let top = String::from_utf8(pages[0].contents.clone()).unwrap();
        assert!(top.contains(".SH \"DAEMON TRUST AND OUTPUT\""), "{top}");
        assert!(top.contains("COMPARTMENT_TRUST_SERVER_USER"), "{top}");
        assert!(top.contains("\\-\\-trust\\-server\\-user"), "{top}");
    }

    #[test]
    fn the_top_page_lists_every_permission_with_the_roles_that_hold_it() {
        let pages = pages("2026-01-01").unwrap();
        let top = String::from_utf8(pages[0].contents.clone()).unwrap();
        assert!(top.contains(".SH PERMISSIONS"), "{top}");
        for permission in compartmentctl::wire::Permission::ALL {
            assert!(top.contains(permission.key()), "{permission} in {top}");
        }
        assert!(
            top.contains("Read sensitive values (deployer and above)."),
            "{top}"
        );
        assert!(top.contains("Invite and remove users (admin)."), "{top}");
    }
}
