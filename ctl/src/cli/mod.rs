//! The `compartmentctl` command: parse the command line, make one call to compartmentd,
//! print the result or the error, and pick the exit code.
//!
//! # Layout
//!
//! - [`args`]: the clap grammar and help texts.
//! - [`output`]: the sentences, tables and JSON a successful call prints.
//! - [`exit`]: exit codes and the error report on stderr.

mod exit;
mod output;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use compartmentctl::paths::default_client_socket;
use compartmentctl::wire::{
    AccountBindParams, AccountParams, ActivateParams, OrgCreateParams, OrgParams, OrgUseParams,
    Request, RoleGrantParams, UserInviteParams, UserRemoveParams,
};
use compartmentctl::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;

use compartmentctl::args::{
    AccountCommand, Cli, Command, OrgCommand, OutputFormat, RoleCommand, UserCommand,
};
use exit::{Exit, Failure};

/// The whole program, minus turning the exit code into a process status.
pub fn run() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let prog = program_name(argv.first());
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version come through here too, on stdout with code 0; a closed
            // stdout leaves nothing more to do, so a failed print changes nothing.
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(Exit::Usage as u8));
        }
    };
    let format = cli.global.output;
    match execute(cli) {
        Ok(()) => Exit::Ok.into(),
        Err(failure) => {
            exit::write_stderr(&failure.report(&prog, format));
            failure.exit().into()
        }
    }
}

/// The basename of argv[0], so errors name the command the user typed (`compartment` when
/// run through the package's link).
fn program_name(argv0: Option<&OsString>) -> String {
    argv0
        .and_then(|arg| Path::new(arg).file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "compartmentctl".to_owned())
}

fn execute(cli: Cli) -> Result<(), Failure> {
    let Cli { global, command } = cli;
    let Some(request) = request_for(command, global.org)? else {
        return Ok(());
    };
    let socket = global.socket.unwrap_or_else(default_client_socket);
    let mut client = Client::connect(&socket)?;
    let text = call(&mut client, &request, global.output)?;
    output::write_stdout(text.as_bytes())?;
    Ok(())
}

/// The request a command sends, or `None` for the commands that need no daemon (which have
/// done their work by then).
fn request_for(command: Command, org: Option<String>) -> Result<Option<Request>, Failure> {
    let request = match command {
        Command::User(UserCommand::Invite {
            email,
            role,
            expires_in,
            resend,
            unix_user,
        }) => Request::UserInvite(UserInviteParams {
            org,
            email,
            role,
            expires_in,
            resend,
            unix_user,
        }),
        Command::User(UserCommand::List) => Request::UserList(OrgParams { org }),
        Command::User(UserCommand::Remove { email }) => {
            Request::UserRemove(UserRemoveParams { org, email })
        }
        Command::Role(RoleCommand::Grant { email, role }) => {
            Request::RoleGrant(RoleGrantParams { org, email, role })
        }
        Command::Role(RoleCommand::List) => Request::RoleList,
        // The daemon pulls the token out of a URL itself, so the argument goes as typed.
        Command::Activate { token } => Request::AccountActivate(ActivateParams { token }),
        Command::Whoami => Request::Whoami,
        Command::Org(OrgCommand::Create {
            name,
            admin,
            admin_unix_user,
        }) => Request::OrgCreate(OrgCreateParams {
            name,
            admin,
            admin_unix_user,
        }),
        Command::Account(AccountCommand::List) => Request::AccountList,
        Command::Account(AccountCommand::Show { email }) => {
            Request::AccountShow(AccountParams { email })
        }
        Command::Account(AccountCommand::Unbind { email }) => {
            Request::AccountUnbind(AccountParams { email })
        }
        Command::Account(AccountCommand::Bind { email, unix_user }) => {
            Request::AccountBind(AccountBindParams { email, unix_user })
        }
        Command::Org(OrgCommand::List) => Request::OrgList,
        Command::Org(OrgCommand::Use { name }) => Request::OrgUse(OrgUseParams { name }),
        Command::Ping => Request::Ping,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "compartmentctl", &mut script);
            output::write_stdout(&script)?;
            return Ok(None);
        }
    };
    Ok(Some(request))
}

/// Makes the call and renders its typed result; the request decides the result's type.
fn call(client: &mut Client, request: &Request, format: OutputFormat) -> Result<String, Failure> {
    match request {
        Request::UserInvite(_) => render(client, request, format, output::invitation),
        Request::UserList(_) => render(client, request, format, output::member_list),
        Request::UserRemove(_) => render(client, request, format, output::removed),
        Request::RoleGrant(_) => render(client, request, format, output::granted),
        Request::RoleList => render(client, request, format, output::role_list),
        Request::AccountActivate(_) => render(client, request, format, output::activated),
        Request::Whoami => render(client, request, format, output::whoami),
        Request::OrgCreate(_) => render(client, request, format, output::org_created),
        Request::OrgList => render(client, request, format, output::org_list),
        Request::OrgUse(_) => render(client, request, format, output::org_used),
        Request::Ping => render(client, request, format, output::pong),
        Request::AccountList => render(client, request, format, output::account_list),
        Request::AccountShow(_) => render(client, request, format, output::account_detail),
        Request::AccountUnbind(_) => render(client, request, format, output::unbound),
        Request::AccountBind(_) => render(client, request, format, output::bound),
    }
}

fn render<T: DeserializeOwned + Serialize>(
    client: &mut Client,
    request: &Request,
    format: OutputFormat,
    text: fn(&T) -> String,
) -> Result<String, Failure> {
    let result: T = client.call(request)?;
    Ok(match format {
        OutputFormat::Text => text(&result),
        OutputFormat::Json => output::json(&result)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use compartmentctl::wire::Role;

    fn request(args: &[&str]) -> Request {
        let cli =
            Cli::try_parse_from(std::iter::once("compartmentctl").chain(args.iter().copied()))
                .unwrap();
        request_for(cli.command, cli.global.org).unwrap().unwrap()
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
            })
        );
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
    fn program_name_is_the_basename() {
        let name = |arg: &str| program_name(Some(&OsString::from(arg)));
        assert_eq!(name("/usr/bin/compartment"), "compartment");
        assert_eq!(name("./target/debug/compartmentctl"), "compartmentctl");
        assert_eq!(program_name(None), "compartmentctl");
    }
}
