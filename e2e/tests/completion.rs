//! Shell completion as bash runs it, on each store: the script `compartmentctl completions
//! bash` prints calls the CLI back at each TAB; commands complete from the grammar, and
//! `--org` from the organizations the daemon shows the one pressing TAB (all of them to a
//! superuser, their own to a member, none to a stranger), and from nothing, at once, when
//! no daemon answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use compartment_e2e::{
    binary_for_other_users, each_store, primary_gid, root_test, Daemon, TestUser, ROOT,
};

/// What bash offers for `compartmentctl WORDS…` with the cursor on the last word, as `uid`,
/// through the registration at `script`, asking the daemon at `socket`.
fn offered(script: &Path, socket: &Path, uid: u32, words: &[&str]) -> Vec<String> {
    let ctl = binary_for_other_users("compartmentctl");
    let path = format!("{}:/usr/bin:/bin", ctl.parent().unwrap().display());
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len();
    let current = words.last().copied().unwrap_or("");
    let previous = if words.len() >= 2 {
        words[words.len() - 2]
    } else {
        "compartmentctl"
    };
    let program = format!(
        "source '{}'\n\
         COMP_WORDS=(compartmentctl {})\n\
         COMP_CWORD={cword}\n\
         COMP_TYPE=9\n\
         _clap_complete_compartmentctl compartmentctl '{current}' '{previous}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" ")
    );
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(program)
        .env_clear()
        .env("PATH", path)
        .env("COMPARTMENT_SOCKET", socket)
        .current_dir("/");
    if uid != ROOT {
        command.uid(uid).gid(primary_gid(uid).unwrap_or(uid));
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

root_test!(
    org_completes_from_the_organizations_the_daemon_shows,
    || {
        for options in each_store("org_completes_from_the_organizations_the_daemon_shows") {
            let mut d = Daemon::start(options);
            let acme = d.create_acme();
            d.create_org("acme-labs", "labs@example.com");
            d.create_org("beta", "b@example.com");
            let admin = TestUser::get("cpt-compl-admin");
            let stranger = TestUser::get("cpt-compl-stranger");
            d.activate(admin.uid, &acme.url).assert_success();

            let out = d.ctl(ROOT, &["completions", "bash"]);
            out.assert_success();
            let dir = tempfile::tempdir().unwrap();
            let script = dir.path().join("compartmentctl.bash");
            std::fs::write(&script, &out.stdout).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
            let socket = d.socket();

            // The grammar, from the CLI itself.
            assert_eq!(offered(&script, &socket, ROOT, &["us"]), ["user"]);
            // A superuser sees every organization; a member its own; a stranger none.
            assert_eq!(
                offered(&script, &socket, ROOT, &["user", "list", "--org", "a"]),
                ["acme", "acme-labs"]
            );
            assert_eq!(
                offered(&script, &socket, ROOT, &["--org", ""]),
                ["acme", "acme-labs", "beta"]
            );
            assert_eq!(
                offered(&script, &socket, admin.uid, &["user", "list", "--org", ""]),
                ["acme"]
            );
            assert_eq!(
                offered(
                    &script,
                    &socket,
                    stranger.uid,
                    &["user", "list", "--org", ""]
                ),
                Vec::<String>::new()
            );

            // No daemon: nothing, and at once.
            d.stop();
            let asked = Instant::now();
            assert_eq!(
                offered(&script, &socket, ROOT, &["--org", "a"]),
                Vec::<String>::new()
            );
            assert!(
                asked.elapsed() < Duration::from_secs(5),
                "{:?}",
                asked.elapsed()
            );
        }
    }
);
