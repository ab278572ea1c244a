//! The `compartmentctl` command: parse the command line, make one call to compartmentd,
//! print the result or the error, and pick the exit code.
//!
//! # Layout
//!
//! - [`args`]: the clap grammar and help texts.
//! - [`render`]: each method's text rendering, and the call-and-print step derived from it.
//! - [`list`]: `user list`, which follows the cursor and prints pages as they arrive.
//! - [`output`]: the sentences, tables and JSON a successful call prints.
//! - [`exit`]: exit codes and the error report on stderr.
//! - [`escape`]: what the daemon sends and the command line gives, made safe to print.
//! - [`secret`]: reading the activation URL from a no-echo prompt or stdin.
//! - [`watch`]: `events watch`, which prints the change feed as it comes.
//! - [`backup`]: `admin backup`, which writes the daemon's backup to a file.

mod audit;
mod backup;
mod escape;
mod exit;
mod list;
mod output;
mod render;
mod secret;
mod watch;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use compartmentctl::paths::default_client_socket;
use compartmentctl::peer::{Trust, UnixUser, TRUST_FLAG, TRUST_VAR};
use compartmentctl::wire::{
    methods, AccountBindParams, AccountDeleteParams, AccountParams, AccountRenameParams,
    ActivateParams, AuditListParams, AuditVerifyParams, AuthzCheckParams, Check,
    EventsSubscribeParams, NoParams, OrgCreateParams, OrgDeleteParams, OrgMapGroupParams,
    OrgRenameParams, OrgUnmapGroupParams, OrgUseParams, Pong, Request, RoleGrantParams,
    RoleShowParams, UserBlockParams, UserInviteParams, UserListParams, UserRemoveParams,
    UserUnblockParams,
};
use compartmentctl::{Client, ClientError};

use compartmentctl::args::{
    AccountCommand, AdminCommand, AuditCommand, AuthCommand, Cli, Command, EventsCommand,
    GlobalOptions, OrgCommand, OutputFormat, RoleCommand, UserCommand,
};
use exit::{Exit, Failure};

/// The whole program, minus turning the exit code into a process status.
pub fn run() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let prog = program_name(argv.first());
    // Called back by the shell's registration at a TAB: print the candidates and exit.
    clap_complete::CompleteEnv::with_factory(|| Cli::command().bin_name(prog.clone()))
        .var(compartmentctl::complete::VAR)
        .complete();
    // Help and usage say the name it was invoked as (`compartment` through the package's
    // link), as errors do.
    let parsed = Cli::command()
        .bin_name(prog.clone())
        .try_get_matches_from(&argv)
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) if err.use_stderr() && asks_for_json(&argv) => {
            let failure = Failure::from_clap(&err);
            exit::write_stderr(&failure.report(&prog, OutputFormat::Json));
            return failure.exit().into();
        }
        Err(err) if err.use_stderr() => {
            // A usage error quotes what was typed, which may hold escape sequences.
            exit::write_stderr(&escape::escaped_lines(&err.render().to_string()));
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(Exit::Usage as u8));
        }
        Err(err) => {
            // Help and version come through here, on stdout with code 0; a closed stdout
            // leaves nothing more to do, so a failed print changes nothing.
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(Exit::Usage as u8));
        }
    };
    let format = cli.global.output;
    match execute(cli, &prog) {
        Ok(exit) => exit.into(),
        Err(failure) => {
            exit::write_stderr(&failure.report(&prog, format));
            failure.exit().into()
        }
    }
}

/// The basename of argv[0], so errors name the command the user typed (`compartment` when
/// run through the package's link), escaped for printing: whoever runs a command chooses
/// its argv[0].
fn program_name(argv0: Option<&OsString>) -> String {
    argv0
        .and_then(|arg| Path::new(arg).file_name())
        .map(|name| escape::escaped(&name.to_string_lossy()).into_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "compartmentctl".to_owned())
}

/// Whose daemon to talk to: root's and the caller's own, and the user `--trust-server-user`
/// names, looked up now so that a name NSS does not know is a usage error before anything
/// else happens.
fn trust_of(global: &GlobalOptions) -> Result<Trust, Failure> {
    let own = Trust::own();
    match global.trust_server_user.as_deref() {
        None | Some("") => Ok(own),
        Some(name) => match UnixUser::by_name(name) {
            Ok(user) => Ok(own.and_user(user)),
            Err(err) => Err(Failure::usage(
                err.to_string(),
                format!(
                    "name the Unix user your daemon runs as, or leave {TRUST_FLAG} and \
                     {TRUST_VAR} unset to talk only to root's daemon or your own"
                ),
            )),
        },
    }
}

/// Whether a command line that clap refused still asked for `--output json`, so that its
/// usage error is reported as JSON too. Looks no further than a `--` that ends the options.
fn asks_for_json(argv: &[OsString]) -> bool {
    let args: Vec<&str> = argv
        .iter()
        .skip(1)
        .map(|arg| arg.to_str().unwrap_or(""))
        .take_while(|&arg| arg != "--")
        .collect();
    let mut format = None;
    for (i, arg) in args.iter().enumerate() {
        if let Some(value) = arg.strip_prefix("--output=") {
            format = Some(value);
        } else if *arg == "--output" {
            format = args.get(i + 1).copied();
        }
    }
    matches!(format, Some("json" | "jsonl"))
}

/// Warns, before an activation URL given as an argument is sent, that it was readable.
fn argv_secret_warning(prog: &str) -> String {
    format!(
        "{prog}: warning: other local users can read an activation URL given as an argument \
         from the process list\n\
         hint: run `{prog} activate` with no argument and paste the URL at its prompt, or \
         pipe it in on standard input\n"
    )
}

/// Runs the command; its exit code when it printed its result.
fn execute(cli: Cli, prog: &str) -> Result<Exit, Failure> {
    let Cli { global, command } = cli;
    if let Command::Activate { token: Some(_) } = &command {
        exit::write_stderr(&argv_secret_warning(prog));
    }
    let trust = match &command {
        Command::Completions { .. } => Trust::own(),
        _ => trust_of(&global)?,
    };
    let window = match &command {
        Command::User(UserCommand::List { page, per_page, .. }) => {
            Some(list::Window::of(*page, *per_page))
        }
        _ => None,
    };
    let audit_listing = match &command {
        Command::Audit(AuditCommand::List { follow, .. }) => {
            Some(audit::Listing::list(global.output, *follow)?)
        }
        Command::Audit(AuditCommand::Export { format, .. }) => {
            Some(audit::Listing::export(*format))
        }
        _ => None,
    };
    let backup_file = match &command {
        Command::Admin(AdminCommand::Backup { file }) => Some(file.clone()),
        _ => None,
    };
    let Some(request) = request_for(command, global.org, prog)? else {
        return Ok(Exit::Ok);
    };
    let chosen = global.socket.is_some();
    let socket = match global.socket {
        Some(socket) => socket,
        None => default_client_socket().map_err(|err| ClientError::Refused(err.to_string()))?,
    };
    let mut client = match Client::connect_trusting(&socket, &trust) {
        Ok(client) => client,
        Err(ClientError::Connect { path, source }) if !chosen => {
            return Err(no_daemon_at_the_defaults(&path, &source))
        }
        Err(err) => return Err(err.into()),
    };
    if let (Request::Ping, OutputFormat::Text) = (&request, global.output) {
        let pong: Pong = client.call_method::<methods::Ping>(NoParams {})?;
        output::write_stdout(
            output::pong_at(&pong, client.path(), client.server_uid()).as_bytes(),
        )?;
        return Ok(Exit::Ok);
    }
    if let Request::EventsSubscribe(params) = request {
        watch::quietly(watch::events(client, params, global.output))?;
        return Ok(Exit::Ok);
    }
    if let (Request::AdminBackup, Some(file)) = (&request, &backup_file) {
        backup::backup(client, file, global.output, prog)?;
        return Ok(Exit::Ok);
    }
    if let (Request::AuditList(params), Some(listing)) = (&request, audit_listing) {
        audit::list(&mut client, params.clone(), listing)?;
        return Ok(Exit::Ok);
    }
    if let (Request::UserList(params), Some(window)) = (&request, window) {
        list::members(&mut client, params.clone(), window, global.output)?;
        return Ok(Exit::Ok);
    }
    // `account show NAME`: a Unix user's name finds the account bound to it.
    let request = match request {
        Request::AccountShow(params) if !params.email.contains('@') => {
            let accounts = client.call_method::<methods::AccountList>(NoParams {})?;
            let bound = accounts
                .accounts
                .into_iter()
                .find(|account| account.unix_user.as_deref() == Some(params.email.as_str()));
            match bound {
                Some(account) => Request::AccountShow(AccountParams {
                    email: account.email,
                }),
                None => {
                    return Err(Failure::Client(ClientError::Rpc(
                        compartmentctl::wire::RpcError::new(
                            compartmentctl::wire::ErrorKind::NotFound,
                            format!(
                            "{:?} is neither an e-mail address nor a Unix user bound to an account",
                            params.email
                        ),
                        )
                        .with_hint(
                            "compartment account list shows every account and its Unix user",
                        ),
                    )))
                }
            }
        }
        request => request,
    };
    let (text, exit) = render::call(&mut client, request, global.output)?;
    output::write_stdout(text.as_bytes())?;
    Ok(exit)
}

/// Nothing answers at the socket the defaults chose: say which that was, and where else a
/// daemon could have been (the system socket is chosen whenever it exists, else the
/// caller's own per-user one).
fn no_daemon_at_the_defaults(path: &std::path::Path, source: &std::io::Error) -> Failure {
    let system = std::path::Path::new(compartmentctl::paths::SYSTEM_SOCKET);
    let own = compartmentctl::paths::user_runtime_dir()
        .map(|dir| dir.join(compartmentctl::paths::SOCKET_NAME));
    let own_shown = own.as_ref().map_or_else(
        || "(none: no home directory)".to_owned(),
        |p| p.display().to_string(),
    );
    if path == system {
        Failure::NoDaemon {
            message: format!(
                "cannot reach the system compartmentd at {}: {source}",
                system.display()
            ),
            hint: format!(
                "is it running? (systemctl status compartmentd); to talk to your own per-user daemon instead, pass --socket {own_shown}"
            ),
        }
    } else {
        Failure::NoDaemon {
            message: format!(
                "cannot reach compartmentd at {} (your per-user daemon's socket), and there is no system daemon's socket at {}: {source}",
                path.display(),
                system.display()
            ),
            hint: "start one (compartmentd, or systemctl start compartmentd.socket), or point --socket / COMPARTMENT_SOCKET at its socket".to_owned(),
        }
    }
}

/// The request a command sends, or `None` for the commands that need no daemon (which have
/// done their work by then).
fn request_for(
    command: Command,
    org: Option<String>,
    prog: &str,
) -> Result<Option<Request>, Failure> {
    let request = match command {
        Command::User(UserCommand::Invite {
            email,
            role,
            expires_in,
            resend,
            unix_user,
            access_until,
        }) => Request::UserInvite(UserInviteParams {
            org,
            email,
            role,
            expires_in,
            resend,
            unix_user,
            access_until,
        }),
        Command::User(UserCommand::List { status, .. }) => Request::UserList(UserListParams {
            org,
            status: status.map(Into::into),
            ..UserListParams::default()
        }),
        Command::User(UserCommand::Remove { email }) => {
            Request::UserRemove(UserRemoveParams { org, email })
        }
        Command::User(UserCommand::Block {
            email,
            reason,
            until,
        }) => Request::UserBlock(UserBlockParams {
            org,
            email,
            reason,
            until,
        }),
        Command::User(UserCommand::Unblock { email }) => {
            Request::UserUnblock(UserUnblockParams { org, email })
        }
        Command::Role(RoleCommand::Grant { email, role, until }) => {
            Request::RoleGrant(RoleGrantParams {
                org,
                email,
                role,
                until,
            })
        }
        Command::Role(RoleCommand::List) => Request::RoleList,
        Command::Events(EventsCommand::Watch { after }) => {
            Request::EventsSubscribe(EventsSubscribeParams { org, after })
        }
        Command::Role(RoleCommand::Show { role }) => Request::RoleShow(RoleShowParams { role }),
        Command::Auth(AuthCommand::Can {
            permission,
            user,
            email,
        }) => Request::AuthzCheck(AuthzCheckParams::One(Check {
            permission,
            org,
            uid: None,
            user,
            email,
        })),
        // The daemon pulls the token out of a URL itself, so the URL goes as typed.
        Command::Activate { token } => {
            let token = match token {
                Some(token) => token,
                None => secret::read_activation_url()?,
            };
            Request::AccountActivate(ActivateParams { token })
        }
        Command::Whoami => Request::Whoami,
        Command::Org(OrgCommand::Create {
            name,
            admin,
            admin_unix_user,
            expires_in,
        }) => Request::OrgCreate(OrgCreateParams {
            name,
            admin,
            admin_unix_user,
            expires_in,
        }),
        Command::Org(OrgCommand::Delete { name, force }) => {
            Request::OrgDelete(OrgDeleteParams { name, force })
        }
        Command::Org(OrgCommand::Rename { name, new_name }) => {
            Request::OrgRename(OrgRenameParams { name, new_name })
        }
        Command::Org(OrgCommand::MapGroup { name, group, role }) => {
            Request::OrgMapGroup(OrgMapGroupParams { name, group, role })
        }
        Command::Org(OrgCommand::UnmapGroup { name, group }) => {
            Request::OrgUnmapGroup(OrgUnmapGroupParams { name, group })
        }
        Command::Account(AccountCommand::List) => Request::AccountList,
        Command::Admin(AdminCommand::Backup { .. }) => Request::AdminBackup,
        Command::Account(AccountCommand::Show { email }) => {
            Request::AccountShow(AccountParams { email })
        }
        Command::Account(AccountCommand::Unbind { email }) => {
            Request::AccountUnbind(AccountParams { email })
        }
        Command::Audit(
            AuditCommand::List { filters, .. } | AuditCommand::Export { filters, .. },
        ) => Request::AuditList(AuditListParams {
            org,
            from: filters.from,
            to: filters.to,
            event: filters.event,
            actor: filters.actor,
            target_type: filters.target_type,
            outcome: filters.outcome,
            ..AuditListParams::default()
        }),
        Command::Audit(AuditCommand::Verify { checkpoint }) => {
            let checkpoint = match checkpoint {
                Some(file) => Some(std::fs::read_to_string(&file).map_err(|err| {
                    Failure::usage(
                        format!("cannot read {}: {err}", file.display()),
                        "give the file `audit checkpoint` printed",
                    )
                })?),
                None => None,
            };
            Request::AuditVerify(AuditVerifyParams { checkpoint })
        }
        Command::Audit(AuditCommand::Checkpoint) => Request::AuditCheckpoint,
        Command::Account(AccountCommand::Delete { email, force }) => {
            Request::AccountDelete(AccountDeleteParams { email, force })
        }
        Command::Account(AccountCommand::Rename { email, new_email }) => {
            Request::AccountRename(AccountRenameParams { email, new_email })
        }
        Command::Account(AccountCommand::Bind {
            email,
            unix_user,
            carry_all,
        }) => Request::AccountBind(AccountBindParams {
            email,
            unix_user,
            carry_all,
        }),
        Command::Admin(AdminCommand::Status) => Request::AdminStatus,
        Command::Admin(AdminCommand::Metrics) => Request::AdminMetrics,
        Command::Org(OrgCommand::List) => Request::OrgList,
        Command::Org(OrgCommand::Use { name }) => Request::OrgUse(OrgUseParams { name }),
        Command::Ping => Request::Ping,
        Command::Completions { shell } => {
            let script = compartmentctl::complete::registration(shell, prog)
                .map_err(|err| ClientError::Refused(err.to_string()))?;
            output::write_stdout(&script)?;
            return Ok(None);
        }
    };
    Ok(Some(request))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use clap::Parser;
    use compartmentctl::wire::Role;

    fn request(args: &[&str]) -> Request {
        let cli =
            Cli::try_parse_from(std::iter::once("compartmentctl").chain(args.iter().copied()))
                .unwrap();
        request_for(cli.command, cli.global.org, "compartment")
            .unwrap()
            .unwrap()
    }

    #[test]
    fn invite_carries_every_flag() {
        assert_eq!(
            request(&[
                "user",
                "invite",
                "deploy@example.com",
                "--role",
                "deployer",
                "--expires-in",
                "2days",
                "--resend",
                "--org",
                "acme",
            ]),
            Request::UserInvite(UserInviteParams {
                org: Some("acme".into()),
                email: "deploy@example.com".into(),
                role: Role::Deployer,
                expires_in: Some("2days".into()),
                resend: true,
                unix_user: None,
                access_until: None,
            })
        );
    }

    #[test]
    fn access_until_block_and_a_grant_until_carry_their_flags() {
        assert_eq!(
            request(&[
                "user",
                "invite",
                "c@example.com",
                "--role",
                "deployer",
                "--access-until",
                "30days",
                "--org",
                "acme",
            ]),
            Request::UserInvite(UserInviteParams {
                org: Some("acme".into()),
                email: "c@example.com".into(),
                role: Role::Deployer,
                expires_in: None,
                resend: false,
                unix_user: None,
                access_until: Some("30days".into()),
            })
        );
        assert_eq!(
            request(&[
                "user",
                "block",
                "a@example.com",
                "--reason",
                "laptop lost",
                "--until",
                "2026-12-14T00:00:00Z",
                "--org",
                "acme",
            ]),
            Request::UserBlock(UserBlockParams {
                org: Some("acme".into()),
                email: "a@example.com".into(),
                reason: "laptop lost".into(),
                until: Some("2026-12-14T00:00:00Z".into()),
            })
        );
        assert_eq!(
            request(&["user", "block", "a@example.com", "--reason", "on leave"]),
            Request::UserBlock(UserBlockParams {
                org: None,
                email: "a@example.com".into(),
                reason: "on leave".into(),
                until: None,
            })
        );
        assert_eq!(
            request(&["--org", "acme", "user", "unblock", "a@example.com"]),
            Request::UserUnblock(UserUnblockParams {
                org: Some("acme".into()),
                email: "a@example.com".into(),
            })
        );
        assert_eq!(
            request(&["role", "grant", "u@example.com", "admin", "--until", "8h"]),
            Request::RoleGrant(RoleGrantParams {
                org: None,
                email: "u@example.com".into(),
                role: Role::Admin,
                until: Some("8h".into()),
            })
        );
    }

    #[test]
    fn a_block_needs_a_reason_and_an_end_must_read_as_one() {
        for args in [
            &["user", "block", "a@example.com"][..],
            &[
                "user",
                "block",
                "a@example.com",
                "--reason",
                "x",
                "--until",
                "soon",
            ],
            &["role", "grant", "u@example.com", "admin", "--until", "0s"],
            &[
                "user",
                "invite",
                "c@example.com",
                "--role",
                "viewer",
                "--access-until",
                "later",
            ],
        ] {
            let err =
                Cli::try_parse_from(std::iter::once("compartmentctl").chain(args.iter().copied()))
                    .unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        let before = request(&["--org", "acme", "role", "grant", "u@example.com", "admin"]);
        let after = request(&["role", "grant", "u@example.com", "admin", "--org", "acme"]);
        assert_eq!(before, after);
        assert_eq!(
            before,
            Request::RoleGrant(RoleGrantParams {
                org: Some("acme".into()),
                email: "u@example.com".into(),
                role: Role::Admin,
                until: None,
            })
        );
    }

    #[test]
    fn activate_sends_the_argument_as_given() {
        let url = "https://host/activate?token=abc";
        assert_eq!(
            request(&["activate", url]),
            Request::AccountActivate(ActivateParams { token: url.into() })
        );
    }

    #[test]
    fn the_other_commands_map_to_their_methods() {
        let cases: [(&[&str], &str); 9] = [
            (&["user", "list"], "user.list"),
            (&["user", "remove", "a@example.com"], "user.remove"),
            (&["role", "list"], "role.list"),
            (&["whoami"], "whoami"),
            (
                &["org", "create", "acme", "--admin", "a@example.com"],
                "org.create",
            ),
            (&["org", "list"], "org.list"),
            (&["org", "use", "acme"], "org.use"),
            (&["ping"], "ping"),
            (&["--output", "json", "ping"], "ping"),
        ];
        for (args, method) in cases {
            assert_eq!(request(args).method(), method, "{args:?}");
        }
    }

    #[test]
    fn a_bad_duration_is_a_usage_error() {
        let err = Cli::try_parse_from([
            "compartmentctl",
            "user",
            "invite",
            "a@example.com",
            "--role",
            "viewer",
            "--expires-in",
            "soon",
        ])
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn json_output_is_seen_in_a_refused_command_line() {
        let argv = |args: &[&str]| -> Vec<OsString> {
            std::iter::once("compartmentctl")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect()
        };
        assert!(asks_for_json(&argv(&[
            "--output", "json", "user", "invite"
        ])));
        assert!(asks_for_json(&argv(&["user", "invite", "--output=json"])));
        assert!(!asks_for_json(&argv(&[
            "user", "invite", "--output", "text"
        ])));
        assert!(!asks_for_json(&argv(&["user", "invite"])));
        assert!(!asks_for_json(&argv(&["user", "--", "--output", "json"])));
    }

    #[test]
    fn program_name_is_the_basename() {
        let name = |arg: &str| program_name(Some(&OsString::from(arg)));
        assert_eq!(name("/usr/bin/compartment"), "compartment");
        assert_eq!(name("./target/debug/compartmentctl"), "compartmentctl");
        assert_eq!(program_name(None), "compartmentctl");
    }
}
