//! How a command that failed ends: its exit code, and the lines it leaves on stderr.

use std::io::{self, Write};
use std::process::ExitCode;

use compartmentctl::wire::{ErrorKind, RpcError};
use compartmentctl::ClientError;

use compartmentctl::args::OutputFormat;

use super::escape::escaped;

/// The exit codes of DESIGN §7; scripts branch on them, so they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    /// A rule refused the change, or the daemon could not carry it out.
    Refused = 1,
    Usage = 2,
    Unreachable = 3,
    PermissionDenied = 4,
    NotFound = 5,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// The one mapping from the daemon's error kinds to exit codes.
pub fn exit_for_kind(kind: ErrorKind) -> Exit {
    match kind {
        ErrorKind::BadRequest | ErrorKind::UnknownMethod | ErrorKind::OrgRequired => Exit::Usage,
        ErrorKind::Unauthenticated
        | ErrorKind::Forbidden
        | ErrorKind::RoleAboveOwn
        | ErrorKind::Blocked => Exit::PermissionDenied,
        ErrorKind::NotFound => Exit::NotFound,
        ErrorKind::LastAdmin
        | ErrorKind::AlreadyMember
        | ErrorKind::AlreadyInvited
        | ErrorKind::AlreadyExists
        | ErrorKind::InvalidToken
        | ErrorKind::TokenExpired
        | ErrorKind::TokenUsed
        | ErrorKind::NotEmpty
        | ErrorKind::FrameTooLong
        | ErrorKind::Busy
        | ErrorKind::Unavailable
        | ErrorKind::Internal
        | ErrorKind::Other => Exit::Refused,
        ErrorKind::Unreachable => Exit::Unreachable,
    }
}

/// Why a command did not print its result.
#[derive(Debug)]
pub enum Failure {
    Client(ClientError),
    /// The command line, or what it said to read, does not make a command.
    Usage {
        message: String,
        hint: String,
    },
    /// No daemon answers at the default socket; says where else it looked.
    NoDaemon {
        message: String,
        hint: String,
    },
    /// Standard input could not be read.
    Input(io::Error),
    /// A backup could not be written to its file (which was left as it was).
    Backup(String),
    /// Stdout failed for a reason other than its reader leaving, or the result would not
    /// encode.
    Output(io::Error),
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Failure {
        Failure::Client(err)
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Failure {
        Failure::Output(err)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(err: serde_json::Error) -> Failure {
        Failure::Output(err.into())
    }
}

const CONNECT_HINT: &str =
    "is compartmentd running? start it, or point --socket / COMPARTMENT_SOCKET at its socket";

impl Failure {
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Failure {
        Failure::Usage {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// A usage error clap found: its first paragraph as one sentence, and its usage line
    /// (or a pointer to `--help`) as the hint; clap's other paragraphs (tips, "for more
    /// information") are for people reading text.
    pub fn from_clap(err: &clap::Error) -> Failure {
        let rendered = err.render().to_string();
        let mut paragraphs = rendered.split("\n\n").map(str::trim);
        let problem = paragraphs.next().unwrap_or_default();
        let problem = problem.strip_prefix("error: ").unwrap_or(problem);
        let message = problem.split_whitespace().collect::<Vec<_>>().join(" ");
        let hint = paragraphs
            .find_map(|paragraph| paragraph.strip_prefix("Usage: "))
            .and_then(|usage| usage.lines().next())
            .map_or_else(
                || "see compartmentctl --help".to_owned(),
                |usage| format!("usage: {usage}"),
            );
        Failure::usage(message, hint)
    }

    pub fn exit(&self) -> Exit {
        match self {
            Failure::Client(
                ClientError::Connect { .. }
                | ClientError::Io(_)
                | ClientError::Untrusted(_)
                | ClientError::Refused(_),
            ) => Exit::Unreachable,
            Failure::Client(ClientError::Protocol(_)) => Exit::Refused,
            Failure::Client(ClientError::Rpc(err)) => exit_for_kind(err.kind()),
            Failure::NoDaemon { .. } => Exit::Unreachable,
            Failure::Usage { .. } | Failure::Input(_) => Exit::Usage,
            Failure::Output(_) | Failure::Backup(_) => Exit::Refused,
        }
    }

    /// The failure as a JSON-RPC error object, whether the daemon sent it or it happened
    /// here, so that `--output json` gives scripts one shape for every failure.
    pub fn error_object(&self) -> RpcError {
        match self {
            Failure::Client(ClientError::Rpc(err)) => err.clone(),
            Failure::Client(err @ ClientError::Connect { .. }) => {
                RpcError::new(ErrorKind::Unreachable, err.to_string()).with_hint(CONNECT_HINT)
            }
            Failure::Client(ClientError::Untrusted(err)) => {
                let error = RpcError::new(ErrorKind::Unreachable, err.to_string());
                match err.hint() {
                    Some(hint) => error.with_hint(hint),
                    None => error,
                }
            }
            Failure::Client(err @ (ClientError::Io(_) | ClientError::Refused(_))) => {
                RpcError::new(ErrorKind::Unreachable, err.to_string())
            }
            Failure::Client(err @ ClientError::Protocol(_)) => {
                RpcError::new(ErrorKind::Other, err.to_string())
            }
            Failure::Usage { message, hint } => {
                RpcError::new(ErrorKind::BadRequest, message.clone()).with_hint(hint.clone())
            }
            Failure::NoDaemon { message, hint } => {
                RpcError::new(ErrorKind::Unreachable, message.clone()).with_hint(hint.clone())
            }
            Failure::Input(err) => RpcError::new(
                ErrorKind::BadRequest,
                format!("cannot read the activation URL: {err}"),
            ),
            Failure::Output(err) => {
                RpcError::new(ErrorKind::Other, format!("cannot write the output: {err}"))
            }
            Failure::Backup(message) => RpcError::new(ErrorKind::Other, message.clone()),
        }
    }

    /// What stderr shows: `<prog>: <message>` and an optional `hint: …` line, or with
    /// `--output json` the error object on one line, for scripts to parse. The message and
    /// the hint are escaped: the daemon's echo an organization or a user name, and ours a
    /// socket path or what was typed.
    pub fn report(&self, prog: &str, format: OutputFormat) -> String {
        let error = self.error_object();
        if format.is_json() {
            if let Ok(mut line) = serde_json::to_string(&error) {
                line.push('\n');
                return line;
            }
        }
        let mut text = format!("{prog}: {}\n", escaped(&error.message));
        if let Some(hint) = error.hint() {
            text.push_str(&format!("hint: {}\n", escaped(hint)));
        }
        text
    }
}

/// Writes a failure report. Nothing is left to tell when stderr itself is gone, so its
/// errors are dropped.
pub fn write_stderr(text: &str) {
    let mut stderr = io::stderr().lock();
    let _ = stderr
        .write_all(text.as_bytes())
        .and_then(|()| stderr.flush());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn every_kind_has_its_exit_code() {
        let cases = [
            (ErrorKind::BadRequest, 2),
            (ErrorKind::UnknownMethod, 2),
            (ErrorKind::Unauthenticated, 4),
            (ErrorKind::Forbidden, 4),
            (ErrorKind::NotFound, 5),
            (ErrorKind::AlreadyExists, 1),
            (ErrorKind::AlreadyMember, 1),
            (ErrorKind::AlreadyInvited, 1),
            (ErrorKind::LastAdmin, 1),
            (ErrorKind::RoleAboveOwn, 4),
            (ErrorKind::Blocked, 4),
            (ErrorKind::InvalidToken, 1),
            (ErrorKind::TokenExpired, 1),
            (ErrorKind::TokenUsed, 1),
            (ErrorKind::NotEmpty, 1),
            (ErrorKind::OrgRequired, 2),
            (ErrorKind::FrameTooLong, 1),
            (ErrorKind::Busy, 1),
            (ErrorKind::Unavailable, 1),
            (ErrorKind::Internal, 1),
            (ErrorKind::Other, 1),
            (ErrorKind::Unreachable, 3),
        ];
        for (kind, code) in cases {
            assert_eq!(exit_for_kind(kind) as u8, code, "{kind}");
        }
        // Every kind is listed once: the wire's codes are distinct per kind.
        let mut codes: Vec<i64> = cases.iter().map(|(kind, _)| kind.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 22);
    }

    #[test]
    fn client_failures_have_their_exit_codes() {
        let connect = Failure::Client(ClientError::Connect {
            path: PathBuf::from("/x.sock"),
            source: io::Error::from(io::ErrorKind::NotFound),
        });
        assert_eq!(connect.exit(), Exit::Unreachable);
        let io = Failure::Client(ClientError::Io(io::Error::from(
            io::ErrorKind::UnexpectedEof,
        )));
        assert_eq!(io.exit(), Exit::Unreachable);
        let protocol = Failure::Client(ClientError::Protocol("garbage".into()));
        assert_eq!(protocol.exit(), Exit::Refused);
        let rpc = Failure::Client(ClientError::Rpc(RpcError::new(ErrorKind::NotFound, "no")));
        assert_eq!(rpc.exit(), Exit::NotFound);
    }

    #[test]
    fn reports_message_and_hint() {
        let err = RpcError::new(ErrorKind::LastAdmin, "cannot remove the last admin of acme")
            .with_hint("grant admin to another member first");
        let failure = Failure::Client(ClientError::Rpc(err));
        assert_eq!(
            failure.report("compartment", OutputFormat::Text),
            "compartment: cannot remove the last admin of acme\n\
             hint: grant admin to another member first\n"
        );
        assert_eq!(
            failure.report("compartmentctl", OutputFormat::Json),
            "{\"code\":-32003,\"message\":\"cannot remove the last admin of acme\",\
             \"data\":{\"kind\":\"last_admin\",\"hint\":\"grant admin to another member first\"}}\n"
        );
        let no_hint = Failure::Client(ClientError::Rpc(RpcError::new(ErrorKind::NotFound, "gone")));
        assert_eq!(
            no_hint.report("compartmentctl", OutputFormat::Text),
            "compartmentctl: gone\n"
        );
    }

    #[test]
    fn a_message_and_hint_are_escaped_in_text_and_kept_in_json() {
        let err = RpcError::new(
            ErrorKind::NotFound,
            "organization \u{1b}]0;owned\u{7}\u{202e}emca not found",
        )
        .with_hint("held by Unix user \u{1b}[2J\u{85}bob");
        let failure = Failure::Client(ClientError::Rpc(err));
        assert_eq!(
            failure.report("compartment", OutputFormat::Text),
            "compartment: organization \\u{1b}]0;owned\\u{7}\\u{202e}emca not found\n\
             hint: held by Unix user \\u{1b}[2J\\u{85}bob\n"
        );
        assert_eq!(
            failure.report("compartment", OutputFormat::Json),
            "{\"code\":-32005,\"message\":\"organization \\u001b]0;owned\\u0007\u{202e}emca not found\",\
             \"data\":{\"kind\":\"not_found\",\"hint\":\"held by Unix user \\u001b[2J\u{85}bob\"}}\n"
        );
    }

    #[test]
    fn an_untrusted_server_is_exit_3_with_how_to_trust_it() {
        use compartmentctl::peer::{Trust, UntrustedServer};
        let failure = Failure::Client(ClientError::Untrusted(UntrustedServer::Stranger {
            path: PathBuf::from("/home/m/s.sock"),
            server_uid: 1003,
            server_user: Some("m\u{202e}x".into()),
            trust: Trust {
                own_uid: 1001,
                server_user: None,
            },
        }));
        assert_eq!(failure.exit(), Exit::Unreachable);
        assert_eq!(
            failure.report("compartment", OutputFormat::Text),
            "compartment: refusing to talk to /home/m/s.sock: its server runs as uid 1003 (m\\u{202e}x), not root and not your own uid 1001\n\
             hint: if that is your Compartment daemon (one run as its own user, say), trust it with \
             --trust-server-user m\\u{202e}x or COMPARTMENT_TRUST_SERVER_USER=m\\u{202e}x; otherwise \
             point --socket at your daemon's socket\n"
        );
        assert_eq!(failure.error_object().kind(), ErrorKind::Unreachable);
    }

    #[test]
    fn an_unreachable_daemon_gets_the_connect_hint() {
        let failure = Failure::Client(ClientError::Connect {
            path: PathBuf::from("/nonexistent/x.sock"),
            source: io::Error::from(io::ErrorKind::NotFound),
        });
        assert_eq!(failure.exit(), Exit::Unreachable);
        assert_eq!(
            failure.report("compartmentctl", OutputFormat::Text),
            format!(
                "compartmentctl: cannot reach compartmentd at /nonexistent/x.sock: entity not found\n\
                 hint: {CONNECT_HINT}\n"
            )
        );
        assert_eq!(
            failure.report("compartmentctl", OutputFormat::Json),
            format!(
                "{{\"code\":-32016,\"message\":\"cannot reach compartmentd at /nonexistent/x.sock: \
                 entity not found\",\"data\":{{\"kind\":\"unreachable\",\"hint\":\"{CONNECT_HINT}\"}}}}\n"
            )
        );
    }

    #[test]
    fn a_usage_failure_is_exit_2_and_a_bad_request_in_json() {
        let failure = Failure::usage("no URL", "paste it");
        assert_eq!(failure.exit(), Exit::Usage);
        assert_eq!(
            failure.report("compartment", OutputFormat::Text),
            "compartment: no URL\nhint: paste it\n"
        );
        assert_eq!(
            failure.report("compartment", OutputFormat::Json),
            "{\"code\":-32602,\"message\":\"no URL\",\"data\":{\"kind\":\"bad_request\",\"hint\":\"paste it\"}}\n"
        );
    }
}
