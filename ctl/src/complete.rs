//! Shell completion that asks the daemon: `--org <TAB>` offers the organizations the
//! caller can see (`org.list`), each with the caller's role there. The shell's script is a
//! small registration (`compartment completions bash`, or the one the package installs)
//! that calls the CLI back for each TAB (clap_complete's dynamic completion); what it
//! offers is computed by the CLI of the same build, so the two cannot disagree.
//!
//! Completing asks only a daemon the CLI would trust anyway (one run as root or as the
//! caller), and gives up after [`TIMEOUT`]: a TAB never hangs on a daemon that is down or
//! slow, it just offers nothing.

use std::ffi::OsStr;
use std::time::Duration;

use clap_complete::engine::CompletionCandidate;
use clap_complete::env::{EnvCompleter, Shells};
use clap_complete::Shell;

use crate::client::Client;
use crate::paths::default_client_socket;
use crate::wire::{methods, NoParams};

/// The longest a TAB waits for the daemon.
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// The variable the registration sets when it calls the CLI back for completions.
pub const VAR: &str = "COMPLETE";

/// `--org`'s candidates: the organizations whose names start with what was typed, from the
/// daemon at `COMPARTMENT_SOCKET` (else the default socket); none when it cannot be asked.
pub fn orgs(typed: &OsStr) -> Vec<CompletionCandidate> {
    let typed = typed.to_string_lossy();
    let Some(list) = org_list() else {
        return Vec::new();
    };
    list.orgs
        .into_iter()
        .filter(|org| org.name.starts_with(typed.as_ref()))
        .map(|org| {
            let help = match (org.role, org.current) {
                (Some(role), true) => format!("{role}, current"),
                (Some(role), false) => role.to_string(),
                (None, _) => "not a member".to_owned(),
            };
            CompletionCandidate::new(org.name).help(Some(help.into()))
        })
        .collect()
}

fn org_list() -> Option<crate::wire::OrgList> {
    let socket = match std::env::var_os("COMPARTMENT_SOCKET") {
        Some(socket) if !socket.is_empty() => socket.into(),
        _ => default_client_socket().ok()?,
    };
    let mut client = Client::connect(&socket).ok()?;
    client.set_timeout(TIMEOUT).ok()?;
    client.call_method::<methods::OrgList>(NoParams {}).ok()
}

/// The registration script of `shell` for the CLI invoked as `name`: it calls `name` back
/// (found on the PATH) with [`VAR`] set at each TAB.
pub fn registration(shell: Shell, name: &str) -> std::io::Result<Vec<u8>> {
    let mut script = Vec::new();
    let shells = Shells::builtins();
    let completer: &dyn EnvCompleter = shells
        .completer(&shell.to_string())
        .ok_or_else(|| std::io::Error::other(format!("no completion for {shell}")))?;
    completer.write_registration(VAR, name, name, name, &mut script)?;
    Ok(script)
}
