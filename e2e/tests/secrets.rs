//! Activation tokens never leak: through every invitation path (issue, resend, activate,
//! used, expired, replaced, garbled, removed, swept) with the daemon logging at trace, no
//! token (text, raw bytes, URL, or any long piece of them) reaches the daemon's log, the
//! CLI's output other than the one reply that issues it, or the database file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use compartment_e2e::{
    files_under, parse_invitation_lines, poll, root_test, token_bytes, Daemon, DaemonOptions, Out,
    TestUser, ROOT, URL_PREFIX,
};
use serde_json::Value;

fn admin_user() -> TestUser {
    TestUser::get("cpt-admin")
}

fn deployer_user() -> TestUser {
    TestUser::get("cpt-deployer")
}

/// A user with no account, who tries other people's URLs.
fn stranger_user() -> TestUser {
    TestUser::get("cpt-stranger")
}

/// A piece of a token this long, anywhere, counts as a leak.
const WINDOW: usize = 16;

/// An issued token, as the reply that issued it showed it.
struct Issued {
    what: &'static str,
    url: String,
    token: String,
}

impl Issued {
    fn from_url(what: &'static str, url: &str) -> Issued {
        let token = url
            .strip_prefix(URL_PREFIX)
            .unwrap_or_else(|| panic!("{url} does not start with {URL_PREFIX}"));
        assert_eq!(token_bytes(token).len(), 32, "{token}");
        Issued {
            what,
            url: url.to_owned(),
            token: token.to_owned(),
        }
    }

    /// Byte strings whose presence means this token leaked: the URL, the text, the raw
    /// bytes, their hex, and every `WINDOW`-long piece of the text and of the raw bytes.
    fn needles(&self) -> Vec<(String, Vec<u8>)> {
        let raw = token_bytes(&self.token);
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let mut needles = vec![
            (
                "the activation URL".to_owned(),
                self.url.clone().into_bytes(),
            ),
            (
                "the token's text".to_owned(),
                self.token.clone().into_bytes(),
            ),
            ("the token's raw bytes".to_owned(), raw.clone()),
            ("the token's bytes in hex".to_owned(), hex.into_bytes()),
        ];
        for (i, piece) in self.token.as_bytes().windows(WINDOW).enumerate() {
            needles.push((
                format!("{WINDOW} characters of the token's text from offset {i}"),
                piece.to_vec(),
            ));
        }
        for (i, piece) in raw.windows(WINDOW).enumerate() {
            needles.push((
                format!("{WINDOW} of the token's raw bytes from offset {i}"),
                piece.to_vec(),
            ));
        }
        needles
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every CLI run of the story, with the token its stdout is allowed to show (the one it
/// issued), if any.
#[derive(Default)]
struct Transcript {
    runs: Vec<(Out, Option<String>)>,
}

impl Transcript {
    /// Runs the CLI and records the run; its output may show no token.
    fn run(&mut self, d: &Daemon, uid: u32, args: &[&str]) -> Out {
        // An activation URL goes on stdin, as documented, never in argv.
        let out = match args.iter().position(|&arg| arg == "activate") {
            Some(at) if at + 1 < args.len() => {
                let mut args = args.to_vec();
                let url = args.remove(at + 1);
                d.ctl_with_stdin(uid, &args, &format!("{url}\n"))
            }
            _ => d.ctl(uid, args),
        };
        self.runs.push((out.clone(), None));
        out
    }

    /// Runs a command that issues a token and returns its activation URL; its stdout may
    /// show that token and no other.
    fn issue(&mut self, d: &Daemon, uid: u32, args: &[&str], url_of: fn(&Out) -> String) -> String {
        let out = d.ctl(uid, args);
        let url = url_of(&out);
        let token = Issued::from_url("an issued token", &url).token;
        self.runs.push((out, Some(token)));
        url
    }

    /// Runs a command that must fail with `kind`: once as text, once with `--output json`,
    /// so that both forms of the error (and any hint) are searched.
    #[track_caller]
    fn refused(&mut self, d: &Daemon, uid: u32, args: &[&str], kind: &str) {
        let out = self.run(d, uid, args);
        assert_ne!(out.code, 0, "{out:#?}");
        assert!(out.stderr.starts_with("compartmentctl: "), "{out:#?}");
        let mut json_args = vec!["--output", "json"];
        json_args.extend_from_slice(args);
        let out = self.run(d, uid, &json_args);
        assert_ne!(out.code, 0, "{out:#?}");
        let error: Value = serde_json::from_str(out.stderr.trim_end())
            .unwrap_or_else(|err| panic!("the JSON error is not JSON ({err}): {out:#?}"));
        assert_eq!(error["data"]["kind"], kind, "{out:#?}");
    }
}

/// The URL the text form of `user invite` (or `org create`) printed.
fn text_url(out: &Out) -> String {
    out.assert_success();
    let lines = out.stdout_lines();
    let start = usize::from(lines.first().is_some_and(|l| l.starts_with("Created ")));
    let email = lines[start]
        .strip_prefix("Invited ")
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no `Invited …` line: {out:#?}"));
    let role = lines[start]
        .rsplit(' ')
        .next()
        .and_then(|r| r.strip_suffix('.'))
        .expect("a role");
    parse_invitation_lines(&lines[start..], email, role).url
}

/// The `activation_url` of a `--output json` invitation.
fn json_url(out: &Out) -> String {
    out.assert_success();
    let invitation: Value = serde_json::from_str(&out.stdout).expect("invitation JSON");
    invitation["activation_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no activation_url: {invitation}"))
        .to_owned()
}

/// Changes the character at `at` to another base64url character.
fn garble(token: &str, at: usize) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// Where tokens must not be, with the search proven able to find what is there.
fn assert_no_token_in_state(d: &Daemon, tokens: &[Issued], when: &str) {
    let files = files_under(&d.state_dir());
    assert!(
        files.iter().any(|(path, _)| path == &d.db_path()),
        "{} is missing {when}",
        d.db_path().display()
    );
    let db = &files
        .iter()
        .find(|(path, _)| path == &d.db_path())
        .expect("the database")
        .1;
    // The database (which holds the audit log) is searched in the clear: it shows the
    // e-mails, so it would show a token stored the same way.
    for known in [
        &b"deploy@example.com"[..],
        b"leaver@example.com",
        b"account.activate",
    ] {
        assert!(
            contains(db, known),
            "{} does not hold {:?} in the clear {when}, so a search for tokens proves nothing",
            d.db_path().display(),
            String::from_utf8_lossy(known)
        );
    }
    let mut leaks = Vec::new();
    for issued in tokens {
        for (what, needle) in issued.needles() {
            for (path, bytes) in &files {
                if contains(bytes, &needle) {
                    leaks.push(format!("{}: {what} of {}", path.display(), issued.what));
                }
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "tokens in the state files {when}:\n{}",
        leaks.join("\n")
    );
}

root_test!(
    no_token_reaches_the_log_the_cli_output_or_the_database,
    || {
        let mut d = Daemon::start(DaemonOptions::new().env("RUST_LOG", "trace").args(&[
            "--invitation-ttl",
            "2s",
            "--sweep-interval",
            "1s",
        ]));
        let mut t = Transcript::default();
        let mut tokens = Vec::new();
        let invite = |email: &'static str, role: &'static str, extra: &[&'static str]| {
            let mut args = vec!["--org", "acme", "user", "invite", email, "--role", role];
            args.extend_from_slice(extra);
            args
        };

        // Issue: the first admin's invitation lives 2 s (the daemon's --invitation-ttl) and is
        // left to lapse; the others ask for an hour.
        let url = t.issue(
            &d,
            ROOT,
            &["org", "create", "acme", "--admin", "admin@example.com"],
            text_url,
        );
        tokens.push(Issued::from_url("admin's lapsed invitation", &url));
        let admin_lapsed = url;

        let url = t.issue(
            &d,
            ROOT,
            &invite("deploy@example.com", "deployer", &["--expires-in", "1h"]),
            text_url,
        );
        tokens.push(Issued::from_url("deploy's replaced invitation", &url));
        let deploy_replaced = url;

        // Already invited: refused with the hint to resend.
        t.refused(
            &d,
            ROOT,
            &invite("deploy@example.com", "deployer", &["--expires-in", "1h"]),
            "already_invited",
        );

        // Resend, in JSON: a new token, the old one revoked.
        let mut resend = vec!["--output", "json"];
        resend.extend(invite(
            "deploy@example.com",
            "deployer",
            &["--expires-in", "1h", "--resend"],
        ));
        let url = t.issue(&d, ROOT, &resend, json_url);
        tokens.push(Issued::from_url("deploy's resent invitation", &url));
        let deploy = url;

        let url = t.issue(
            &d,
            ROOT,
            &invite("viewer@example.com", "viewer", &["--expires-in", "1h"]),
            text_url,
        );
        tokens.push(Issued::from_url("viewer's pending invitation", &url));
        let viewer = url;

        // A pending invitee removed: the token dies with the membership.
        let url = t.issue(
            &d,
            ROOT,
            &invite("leaver@example.com", "viewer", &["--expires-in", "1h"]),
            text_url,
        );
        tokens.push(Issued::from_url("leaver's removed invitation", &url));
        let leaver = url;
        t.run(
            &d,
            ROOT,
            &["--org", "acme", "user", "remove", "leaver@example.com"],
        )
        .assert_ok("Removed leaver@example.com from acme.\n");

        // Activate, then every way an activation is refused.
        t.run(&d, deployer_user().uid, &["activate", &deploy])
            .assert_ok("Activated deploy@example.com: you are now deployer in acme.\n");
        t.refused(
            &d,
            stranger_user().uid,
            &["activate", &deploy],
            "token_used",
        );
        t.refused(
            &d,
            stranger_user().uid,
            &["activate", &deploy_replaced],
            "invalid_token",
        );
        t.refused(
            &d,
            stranger_user().uid,
            &["activate", &leaver],
            "invalid_token",
        );
        let viewer_token = viewer.strip_prefix(URL_PREFIX).expect("a URL").to_owned();
        for garbled in [
            format!("{URL_PREFIX}{}", garble(&viewer_token, 20)),
            garble(&viewer_token, 0),
            garble(&viewer_token, 42),
            viewer_token[..42].to_owned(),
            format!("{viewer_token}A"),
            format!("{URL_PREFIX}{viewer_token}x&utm=1"),
        ] {
            t.refused(
                &d,
                stranger_user().uid,
                &["activate", &garbled],
                "invalid_token",
            );
        }
        // A superuser may not take an account: refused after the token was looked up.
        t.refused(&d, ROOT, &["activate", &viewer], "forbidden");
        // The deployer's uid is bound already: it may not take a second account.
        t.refused(&d, deployer_user().uid, &["activate", &viewer], "forbidden");

        // Expired: wait for the sweeper to mark the admin's invitation, then try it.
        poll(Duration::from_secs(15), || {
            let out = d.ctl(ROOT, &["--org", "acme", "--output", "json", "user", "list"]);
            let list: Value = serde_json::from_str(&out.stdout).ok()?;
            let expired = list["members"]
                .as_array()?
                .iter()
                .any(|m| m["email"] == "admin@example.com" && m["status"] == "expired");
            expired.then_some(())
        })
        .expect("the sweeper marks the admin's invitation expired within 15 s");
        t.refused(
            &d,
            admin_user().uid,
            &["activate", &admin_lapsed],
            "token_expired",
        );

        // Invited again after expiry (a new token at once), and activated.
        let url = t.issue(
            &d,
            ROOT,
            &[
                "--org",
                "acme",
                "user",
                "invite",
                "admin@example.com",
                "--role",
                "admin",
                "--expires-in",
                "1h",
            ],
            text_url,
        );
        tokens.push(Issued::from_url("admin's second invitation", &url));
        t.run(&d, admin_user().uid, &["activate", &url])
            .assert_ok("Activated admin@example.com: you are now admin in acme.\n");
        t.refused(
            &d,
            admin_user().uid,
            &["activate", &admin_lapsed],
            "token_expired",
        );

        // What the accounts and the members look like now, as text and as JSON.
        for uid in [
            ROOT,
            admin_user().uid,
            deployer_user().uid,
            stranger_user().uid,
        ] {
            t.run(&d, uid, &["whoami"]).assert_success();
            t.run(&d, uid, &["--output", "json", "whoami"])
                .assert_success();
        }
        for uid in [ROOT, admin_user().uid, deployer_user().uid] {
            t.run(&d, uid, &["--org", "acme", "user", "list"])
                .assert_success();
            let out = t.run(
                &d,
                uid,
                &["--org", "acme", "--output", "json", "user", "list"],
            );
            out.assert_success();
            assert!(
            out.stdout.contains("viewer@example.com") && out.stdout.contains("\"invited\""),
            "the pending viewer is listed, so the search of this output means something: {out:#?}"
        );
            t.run(&d, uid, &["--output", "json", "org", "list"])
                .assert_success();
        }

        // The database while the daemon runs, after a clean stop, and after another start.
        assert_no_token_in_state(&d, &tokens, "while the daemon runs");
        d.stop();
        assert_no_token_in_state(&d, &tokens, "after a clean stop");
        d.restart();
        t.run(
            &d,
            ROOT,
            &["--org", "acme", "--output", "json", "user", "list"],
        )
        .assert_success();
        d.stop();
        assert_no_token_in_state(&d, &tokens, "after a second run");

        // The CLI's output: only the reply that issued a token shows it.
        let mut leaks = Vec::new();
        for (out, allowed) in &t.runs {
            for issued in &tokens {
                let stdout_may_show = allowed.as_deref() == Some(issued.token.as_str());
                for (what, needle) in issued.needles() {
                    if contains(out.stderr.as_bytes(), &needle) {
                        leaks.push(format!("stderr of {}: {what} of {}", out.cmd, issued.what));
                    }
                    if !stdout_may_show && contains(out.stdout.as_bytes(), &needle) {
                        leaks.push(format!("stdout of {}: {what} of {}", out.cmd, issued.what));
                    }
                }
            }
        }
        let issuing = t.runs.iter().filter(|(_, allowed)| allowed.is_some());
        for (out, allowed) in issuing {
            let token = allowed.as_deref().expect("an issued token");
            assert!(
                out.stdout.contains(token),
                "the issuing reply shows its token, so the search of CLI output works: {out:#?}"
            );
        }

        // The daemon's log, at trace, over both runs. It never names e-mails (it logs the
        // method, organization and outcome of each request), so those are what it must show:
        // with the debug lines, proof that the search runs over a talkative log.
        let log = d.log();
        for known in [
            " DEBUG ",
            "org=\"acme\"",
            "account.activate",
            "token_used",
            "token_expired",
            "invalid_token",
            "expired invitations",
        ] {
            assert!(
            log.contains(known),
            "the daemon log lacks {known:?}, so a search of it for tokens proves little:\n{log}"
        );
        }
        for issued in &tokens {
            for (what, needle) in issued.needles() {
                if contains(log.as_bytes(), &needle) {
                    leaks.push(format!("the daemon log: {what} of {}", issued.what));
                }
            }
        }
        assert!(
            leaks.is_empty(),
            "{} leaks of a token:\n{}\n\nthe daemon log:\n{log}",
            leaks.len(),
            leaks.join("\n")
        );
        eprintln!(
            "secrets: {} tokens, {} CLI runs, {} bytes of trace log searched; no leak",
            tokens.len(),
            t.runs.len(),
            log.len()
        );
    }
);
