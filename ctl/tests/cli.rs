//! The `compartmentctl` binary as a user meets it, without a real daemon: usage errors,
//! an unreachable socket, completions, and a fake daemon that answers one canned line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_compartmentctl");

const CONNECT_HINT: &str =
    "hint: is compartmentd running? start it, or point --socket / COMPARTMENT_SOCKET at its socket\n";

const LAST_ADMIN: &str = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32003,"message":"cannot remove the last admin of acme","data":{"kind":"last_admin","hint":"grant admin to another member first"}}}"#;

/// The second member has no `unix_user` at all, as a daemon before bindings had names
/// answers: it reads as none.
const MEMBERS: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"org":"acme","members":[{"email":"admin@example.com","role":"admin","status":"active","expires_at":null,"unix_user":"alice"},{"email":"deploy@example.com","role":"deployer","status":"invited","expires_at":"2026-05-01T12:00:00Z"}]}}"#;

const MEMBER_TABLE: &str = "\
EMAIL               ROLE      STATUS   UNIX USER  EXPIRES
admin@example.com   admin     active   alice      -
deploy@example.com  deployer  invited  -          2026-05-01T12:00:00Z
";

/// The binary with the caller's own socket and organization settings cleared, so the
/// tests see only what they pass.
fn ctl(program: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env_remove("COMPARTMENT_SOCKET")
        .env_remove("COMPARTMENT_ORG")
        .env_remove("COMPARTMENT_TRUST_SERVER_USER");
    command
}

fn run(args: &[&str]) -> Output {
    ctl(Path::new(BIN)).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A socket in a temp dir where a fake daemon will answer.
struct FakeDaemon {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    listener: UnixListener,
}

impl FakeDaemon {
    fn bind() -> FakeDaemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("compartmentd.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        FakeDaemon {
            _dir: dir,
            socket,
            listener,
        }
    }

    fn socket(&self) -> &str {
        self.socket.to_str().unwrap()
    }

    /// Accepts one connection, reads one request line, answers `response`, and returns
    /// the request as JSON. Gives up after ten seconds so a CLI that never connects fails
    /// the test instead of hanging it.
    fn answer_one(&self, response: &str) -> Value {
        self.listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match self.listener.accept() {
                Ok((stream, _)) => break stream,
                Err(err) if err.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(err) => panic!("the CLI never connected: {err}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        (&stream)
            .write_all(format!("{response}\n").as_bytes())
            .unwrap();
        serde_json::from_str(&line).unwrap()
    }

    /// Runs the CLI while answering every request of its one connection with the result
    /// `result_for` makes of the request's params, until the CLI hangs up; returns the
    /// requests' params in order.
    fn serve_all(
        &self,
        result_for: impl Fn(&Value) -> Value,
        command: &mut Command,
    ) -> (Vec<Value>, Output) {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match self.listener.accept() {
                Ok((stream, _)) => break stream,
                Err(err) if err.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(err) => panic!("the CLI never connected: {err}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(&stream);
        let mut requests = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let request: Value = serde_json::from_str(&line).unwrap();
            let result = result_for(&request["params"]);
            let reply = json!({"jsonrpc": "2.0", "id": request["id"], "result": result});
            // A CLI that stopped reading (a closed pipe downstream) may hang up first.
            let _ = (&stream).write_all(format!("{reply}\n").as_bytes());
            requests.push(request["params"].clone());
        }
        (requests, child.wait_with_output().unwrap())
    }

    /// Runs the CLI with `args` while answering its one request with `response`.
    fn serve(&self, response: &str, command: &mut Command) -> (Value, Output) {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let request = self.answer_one(response);
        (request, child.wait_with_output().unwrap())
    }
}

#[test]
fn an_unknown_subcommand_is_a_usage_error() {
    let out = run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("frobnicate"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn an_unknown_role_is_a_usage_error_naming_the_roles() {
    let out = run(&["role", "grant", "a@example.com", "owner"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("\"owner\" is not a role: roles are admin, deployer, readonly and viewer"),
        "{stderr}"
    );
}

#[test]
fn a_bad_duration_is_a_usage_error() {
    let out = run(&[
        "user",
        "invite",
        "a@example.com",
        "--role",
        "viewer",
        "--expires-in",
        "a while",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_unreachable_daemon_exits_3_with_a_hint() {
    let out = run(&["--socket", "/nonexistent/x.sock", "whoami"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("compartmentctl: cannot reach compartmentd at /nonexistent/x.sock"),
        "{stderr}"
    );
    assert!(stderr.ends_with(CONNECT_HINT), "{stderr}");
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn the_socket_comes_from_the_environment() {
    let out = ctl(Path::new(BIN))
        .env("COMPARTMENT_SOCKET", "/nonexistent/env.sock")
        .arg("ping")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr)
            .starts_with("compartmentctl: cannot reach compartmentd at /nonexistent/env.sock"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn through_the_compartment_link_errors_say_compartment() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("compartment");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let out = ctl(&link)
        .args(["whoami", "--socket", "/nonexistent/x.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("compartment: cannot reach compartmentd at /nonexistent/x.sock"),
        "{stderr}"
    );
    assert!(stderr.ends_with(CONNECT_HINT), "{stderr}");

    // Help and usage say the name it was invoked as, down to a subcommand's.
    let help = ctl(&link).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(
        text(&help.stdout).contains("Usage: compartment [OPTIONS] <COMMAND>"),
        "{}",
        text(&help.stdout)
    );
    let help = ctl(&link)
        .args(["user", "block", "--help"])
        .output()
        .unwrap();
    assert!(
        text(&help.stdout)
            .contains("Usage: compartment user block [OPTIONS] --reason <TEXT> <EMAIL>"),
        "{}",
        text(&help.stdout)
    );
    let usage = ctl(&link).args(["user", "nope"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(
        text(&usage.stderr).contains("Usage: compartment user [OPTIONS] <COMMAND>"),
        "{}",
        text(&usage.stderr)
    );
}

#[test]
fn completions_need_no_daemon() {
    let out = run(&["--socket", "/nonexistent/x.sock", "completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("compartmentctl"));
    assert!(out.stderr.is_empty());
}

#[test]
fn invite_help_tells_the_invitation_lifetime() {
    let out = run(&["user", "invite", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("7 days"), "{help}");
    assert!(help.contains("30 days"), "{help}");
}

#[test]
fn a_refusal_prints_message_and_hint_and_exits_1() {
    let daemon = FakeDaemon::bind();
    let (request, out) = daemon.serve(
        LAST_ADMIN,
        ctl(Path::new(BIN)).args([
            "--socket",
            daemon.socket(),
            "user",
            "remove",
            "a@example.com",
        ]),
    );
    assert_eq!(request["method"], "user.remove");
    assert_eq!(request["params"], json!({"email": "a@example.com"}));
    assert_eq!(
        text(&out.stderr),
        "compartmentctl: cannot remove the last admin of acme\nhint: grant admin to another member first\n"
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn with_json_output_a_refusal_is_the_error_object() {
    let daemon = FakeDaemon::bind();
    let (_, out) = daemon.serve(
        LAST_ADMIN,
        ctl(Path::new(BIN)).args([
            "user",
            "remove",
            "a@example.com",
            "--output",
            "json",
            "--socket",
            daemon.socket(),
        ]),
    );
    assert_eq!(
        text(&out.stderr),
        "{\"code\":-32003,\"message\":\"cannot remove the last admin of acme\",\"data\":{\"kind\":\"last_admin\",\"hint\":\"grant admin to another member first\"}}\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn user_list_prints_the_table_and_sends_the_org() {
    let daemon = FakeDaemon::bind();
    let (request, out) = daemon.serve(
        MEMBERS,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "user", "list", "--org", "acme"]),
    );
    assert_eq!(request["jsonrpc"], "2.0");
    assert_eq!(request["method"], "user.list");
    assert_eq!(request["params"], json!({"org": "acme", "limit": 1000}));
    assert_eq!(text(&out.stdout), MEMBER_TABLE);
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn without_an_org_the_daemon_chooses() {
    let daemon = FakeDaemon::bind();
    let (request, out) = daemon.serve(
        MEMBERS,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "user", "list"]),
    );
    assert_eq!(request["params"], json!({"limit": 1000}));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn json_output_is_the_result_object_and_env_names_socket_and_org() {
    let daemon = FakeDaemon::bind();
    let (request, out) = daemon.serve(
        MEMBERS,
        ctl(Path::new(BIN))
            .env("COMPARTMENT_SOCKET", daemon.socket())
            .env("COMPARTMENT_ORG", "acme")
            .args(["--output", "json", "user", "list"]),
    );
    assert_eq!(request["params"], json!({"org": "acme", "limit": 1000}));
    // The typed result's field order, one line, exactly as scripts will read it.
    assert_eq!(
        text(&out.stdout),
        concat!(
            r#"{"org":"acme","members":[{"email":"admin@example.com","role":"admin","status":"active","expires_at":null,"unix_user":"alice"},"#,
            r#"{"email":"deploy@example.com","role":"deployer","status":"invited","expires_at":"2026-05-01T12:00:00Z","unix_user":null}]}"#,
            "\n"
        )
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_reader_that_leaves_early_is_a_normal_end() {
    let daemon = FakeDaemon::bind();
    let mut child = ctl(Path::new(BIN))
        .args(["--socket", daemon.socket(), "user", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the answer arrives, so the CLI's first write meets a broken pipe.
    drop(child.stdout.take());
    daemon.answer_one(MEMBERS);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn a_missing_account_exits_5() {
    let daemon = FakeDaemon::bind();
    let (_, out) = daemon.serve(
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"nobody@example.com is not a member of acme","data":{"kind":"not_found"}}}"#,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "role", "grant", "nobody@example.com", "viewer"]),
    );
    assert_eq!(
        text(&out.stderr),
        "compartmentctl: nobody@example.com is not a member of acme\n"
    );
    assert_eq!(out.status.code(), Some(5));
}

/// Runs the CLI with `stdin` as its standard input while answering its one request with
/// `response`.
fn serve_with_stdin(
    daemon: &FakeDaemon,
    response: &str,
    command: &mut Command,
    stdin: &[u8],
) -> (Value, Output) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let request = daemon.answer_one(response);
    (request, child.wait_with_output().unwrap())
}

const BUSY: &str = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32014,"message":"uid 1000 already holds 64 connections, the most one user may","data":{"kind":"busy","hint":"close idle connections, then retry"}}}"#;

#[test]
fn busy_with_id_null_is_shown_as_busy_and_exits_1() {
    let daemon = FakeDaemon::bind();
    let (_, out) = daemon.serve(
        BUSY,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "whoami"]),
    );
    assert_eq!(
        text(&out.stderr),
        "compartmentctl: uid 1000 already holds 64 connections, the most one user may\n\
         hint: close idle connections, then retry\n"
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());

    let daemon = FakeDaemon::bind();
    let (_, out) = daemon.serve(
        BUSY,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "--output", "json", "whoami"]),
    );
    assert_eq!(
        text(&out.stderr),
        "{\"code\":-32014,\"message\":\"uid 1000 already holds 64 connections, the most one user may\",\
         \"data\":{\"kind\":\"busy\",\"hint\":\"close idle connections, then retry\"}}\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn frame_too_long_with_id_null_is_shown_as_such() {
    let daemon = FakeDaemon::bind();
    let (_, out) = daemon.serve(
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32013,"message":"request line longer than 65536 bytes; closing the connection","data":{"kind":"frame_too_long"}}}"#,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "org", "use", "acme"]),
    );
    assert_eq!(
        text(&out.stderr),
        "compartmentctl: request line longer than 65536 bytes; closing the connection\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn an_answer_for_another_id_is_still_unexpected() {
    let daemon = FakeDaemon::bind();
    let (_, out) = daemon.serve(
        r#"{"jsonrpc":"2.0","id":7,"result":{"version":"0.1.0"}}"#,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "ping"]),
    );
    assert_eq!(
        text(&out.stderr),
        "compartmentctl: unexpected answer from compartmentd: answer for id 7 to request 1\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn with_json_output_a_usage_error_is_an_error_object_and_exits_2() {
    let out = run(&["--output", "json", "user", "invite"]);
    assert_eq!(
        text(&out.stderr),
        "{\"code\":-32602,\"message\":\"the following required arguments were not provided: \
         --role <ROLE> <EMAIL>\",\"data\":{\"kind\":\"bad_request\",\
         \"hint\":\"usage: compartmentctl user invite --role <ROLE> <EMAIL>\"}}\n"
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());

    let out = run(&[
        "user",
        "invite",
        "a@example.com",
        "--role",
        "owner",
        "--output=json",
    ]);
    assert_eq!(
        text(&out.stderr),
        "{\"code\":-32602,\"message\":\"invalid value 'owner' for '--role <ROLE>': \\\"owner\\\" \
         is not a role: roles are admin, deployer, readonly and viewer\",\"data\":{\"kind\":\
         \"bad_request\",\"hint\":\"see compartmentctl --help\"}}\n"
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn with_json_output_an_unreachable_daemon_is_an_error_object_and_exits_3() {
    let out = run(&[
        "--output",
        "json",
        "--socket",
        "/nonexistent/x.sock",
        "whoami",
    ]);
    assert_eq!(
        text(&out.stderr),
        "{\"code\":-32016,\"message\":\"cannot reach compartmentd at /nonexistent/x.sock: \
         No such file or directory (os error 2)\",\"data\":{\"kind\":\"unreachable\",\
         \"hint\":\"is compartmentd running? start it, or point --socket / COMPARTMENT_SOCKET \
         at its socket\"}}\n"
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
}

#[test]
fn expires_in_under_a_second_is_a_usage_error() {
    for short in ["0s", "500ms"] {
        let out = run(&[
            "--socket",
            "/nonexistent/x.sock",
            "user",
            "invite",
            "a@example.com",
            "--role",
            "viewer",
            "--expires-in",
            short,
        ]);
        assert_eq!(
            text(&out.stderr),
            format!(
                "error: invalid value '{short}' for '--expires-in <DURATION>': an activation URL \
                 must live at least one second\n\nFor more information, try '--help'.\n"
            )
        );
        assert_eq!(out.status.code(), Some(2));
    }
}

const ACTIVATED: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"org":"acme","email":"admin@example.com","role":"admin"}}"#;
const URL: &str = "https://host/activate?token=fBZ_2vJQlsncRbRfub6HdmZS-tH9QEN1W098j8ifbO0";

#[test]
fn activate_reads_the_url_from_stdin_without_a_warning() {
    let daemon = FakeDaemon::bind();
    let (request, out) = serve_with_stdin(
        &daemon,
        ACTIVATED,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "activate"]),
        format!("  {URL}  \nignored\n").as_bytes(),
    );
    assert_eq!(request["method"], "account.activate");
    assert_eq!(request["params"], json!({ "token": URL }));
    assert_eq!(
        text(&out.stdout),
        "Activated admin@example.com: you are now admin in acme.\n"
    );
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn activate_with_the_url_as_an_argument_warns_first() {
    let daemon = FakeDaemon::bind();
    let (request, out) = serve_with_stdin(
        &daemon,
        ACTIVATED,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "activate", URL]),
        b"",
    );
    assert_eq!(request["params"], json!({ "token": URL }));
    assert_eq!(
        text(&out.stderr),
        "compartmentctl: warning: other local users can read an activation URL given as an \
         argument from the process list\n\
         hint: run `compartmentctl activate` with no argument and paste the URL at its prompt, \
         or pipe it in on standard input\n"
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn activate_with_nothing_on_stdin_is_a_usage_error() {
    let out = ctl(Path::new(BIN))
        .args(["--socket", "/nonexistent/x.sock", "activate"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stderr),
        "compartmentctl: no activation URL was given on standard input\n\
         hint: paste the URL you were sent at the prompt, or pipe it in on standard input\n"
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn activate_on_a_terminal_prompts_without_echo_and_restores_the_terminal() {
    use nix::sys::termios::{tcgetattr, LocalFlags};
    use std::io::Read;

    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = pty.slave.try_clone().unwrap();
    let echoes = |fd: &std::os::fd::OwnedFd| {
        tcgetattr(fd)
            .unwrap()
            .local_flags
            .contains(LocalFlags::ECHO)
    };
    assert!(echoes(&slave), "a fresh terminal echoes");
    let daemon = FakeDaemon::bind();
    let mut child = ctl(Path::new(BIN))
        .args(["--socket", daemon.socket(), "activate"])
        .stdin(Stdio::from(pty.slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Type only once echo is off, as a person would after seeing the prompt.
    let deadline = Instant::now() + Duration::from_secs(10);
    while echoes(&slave) {
        assert!(Instant::now() < deadline, "activate never turned echo off");
        thread::sleep(Duration::from_millis(10));
    }
    let mut master = std::fs::File::from(pty.master);
    master.write_all(format!("{URL}\n").as_bytes()).unwrap();
    let request = daemon.answer_one(ACTIVATED);
    assert_eq!(request["params"], json!({ "token": URL }));
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(
        stdout,
        "Activated admin@example.com: you are now admin in acme.\n"
    );
    assert_eq!(stderr, "Activation URL (input hidden): ");
    assert!(echoes(&slave), "echo was not restored");
    // What the terminal showed of the typing: the newline, never the URL.
    drop(slave);
    let mut shown = Vec::new();
    let _ = master.read_to_end(&mut shown); // ends in EIO once no one holds the slave
    assert_eq!(String::from_utf8_lossy(&shown), "\r\n");
}

/// `count` members `m00@example.com`, `m01@…` served as the daemon pages them: `after` is
/// the index of the last member sent (the fake's own opaque cursor), `limit` the page size.
fn roster(count: usize) -> impl Fn(&Value) -> Value {
    move |params: &Value| {
        let limit = params["limit"].as_u64().unwrap() as usize;
        let from = params["after"]
            .as_str()
            .map_or(0, |after| after.parse::<usize>().unwrap() + 1);
        let to = (from + limit).min(count);
        let members: Vec<Value> = (from..to)
            .map(|i| {
                json!({"email": format!("m{i:02}@example.com"), "role": "viewer",
                       "status": "invited", "expires_at": "2026-05-01T12:00:00Z",
                       "unix_user": null})
            })
            .collect();
        let next = (to < count).then(|| (to - 1).to_string());
        json!({"org": "acme", "members": members, "next": next})
    }
}

/// Three pages whose later cells are wider than the first page's.
fn widening_pages(params: &Value) -> Value {
    let member = |email: &str, role: &str, status: &str, user: Value, expires: Value| {
        json!({"email": email, "role": role, "status": status, "unix_user": user,
               "expires_at": expires})
    };
    match params["after"].as_str() {
        None => json!({"org": "acme", "next": "p2", "members": [
            member("a@example.com", "admin", "active", json!("alice"), Value::Null),
            member("b@example.com", "viewer", "invited", Value::Null, json!("2026-05-01T12:00:00Z")),
        ]}),
        Some("p2") => json!({"org": "acme", "next": "p3", "members": []}),
        Some("p3") => json!({"org": "acme", "members": [
            member("a-much-longer-address@example.com", "deployer", "expired", Value::Null,
                   json!("2026-04-01T12:00:00Z")),
            member("c@example.com", "viewer", "active", json!("carol"), Value::Null),
        ]}),
        Some(other) => panic!("a cursor the daemon never sent: {other}"),
    }
}

#[test]
fn user_list_follows_next_and_widens_columns_only_when_a_page_needs_it() {
    let daemon = FakeDaemon::bind();
    let (requests, out) = daemon.serve_all(
        widening_pages,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "user", "list", "--org", "acme"]),
    );
    assert_eq!(
        requests,
        [
            json!({"org": "acme", "limit": 1000}),
            json!({"org": "acme", "limit": 1000, "after": "p2"}),
            json!({"org": "acme", "limit": 1000, "after": "p3"}),
        ]
    );
    // Widths come from the header and the first page; the third page's long address
    // widens EMAIL from its own row on, and the rows after it keep the wider column.
    assert_eq!(
        text(&out.stdout),
        "\
EMAIL          ROLE    STATUS   UNIX USER  EXPIRES
a@example.com  admin   active   alice      -
b@example.com  viewer  invited  -          2026-05-01T12:00:00Z
a-much-longer-address@example.com  deployer  expired  -          2026-04-01T12:00:00Z
c@example.com                      viewer    active   carol      -
"
    );
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn json_output_of_a_paged_list_is_one_valid_document() {
    let daemon = FakeDaemon::bind();
    let (requests, out) = daemon.serve_all(
        widening_pages,
        ctl(Path::new(BIN)).args([
            "--socket",
            daemon.socket(),
            "--output",
            "json",
            "user",
            "list",
        ]),
    );
    assert_eq!(requests.len(), 3);
    assert_eq!(
        text(&out.stdout),
        concat!(
            r#"{"org":"acme","members":["#,
            r#"{"email":"a@example.com","role":"admin","status":"active","expires_at":null,"unix_user":"alice"},"#,
            r#"{"email":"b@example.com","role":"viewer","status":"invited","expires_at":"2026-05-01T12:00:00Z","unix_user":null},"#,
            r#"{"email":"a-much-longer-address@example.com","role":"deployer","status":"expired","expires_at":"2026-04-01T12:00:00Z","unix_user":null},"#,
            r#"{"email":"c@example.com","role":"viewer","status":"active","expires_at":null,"unix_user":"carol"}"#,
            "]}\n"
        )
    );
    let document: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(document["members"].as_array().unwrap().len(), 4);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn jsonl_output_is_one_member_a_line() {
    let daemon = FakeDaemon::bind();
    let (_, out) = daemon.serve_all(
        roster(3),
        ctl(Path::new(BIN)).args([
            "--socket",
            daemon.socket(),
            "--output",
            "jsonl",
            "user",
            "list",
        ]),
    );
    let line = |i: usize| {
        format!(
            r#"{{"email":"m{i:02}@example.com","role":"viewer","status":"invited","expires_at":"2026-05-01T12:00:00Z","unix_user":null}}"#
        ) + "\n"
    };
    assert_eq!(text(&out.stdout), line(0) + &line(1) + &line(2));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn an_empty_list_is_a_header_an_empty_document_or_nothing() {
    for (format, expected) in [
        ("text", "EMAIL  ROLE  STATUS  UNIX USER  EXPIRES\n"),
        ("json", "{\"org\":\"acme\",\"members\":[]}\n"),
        ("jsonl", ""),
    ] {
        let daemon = FakeDaemon::bind();
        let (_, out) = daemon.serve_all(
            roster(0),
            ctl(Path::new(BIN)).args([
                "--socket",
                daemon.socket(),
                "--output",
                format,
                "user",
                "list",
            ]),
        );
        assert_eq!(text(&out.stdout), expected, "{format}");
        assert_eq!(out.status.code(), Some(0), "{format}");
    }
}

#[test]
fn page_and_per_page_print_that_page_only() {
    let emails = |out: &Output| -> Vec<String> {
        text(&out.stdout)
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()["email"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let cases: [(&[&str], &[Value], &[&str]); 4] = [
        // Page 2 of 2: the pages before it are fetched to find where it starts.
        (
            &["--page", "2", "--per-page", "2"],
            &[json!({"limit": 4})],
            &["m02@example.com", "m03@example.com"],
        ),
        // The last page is short.
        (
            &["--page", "3", "--per-page", "2"],
            &[json!({"limit": 6})],
            &["m04@example.com"],
        ),
        // --per-page alone is the first page; --page alone pages by 100.
        (
            &["--per-page", "3"],
            &[json!({"limit": 3})],
            &["m00@example.com", "m01@example.com", "m02@example.com"],
        ),
        (
            &["--page", "1"],
            &[json!({"limit": 100})],
            &[
                "m00@example.com",
                "m01@example.com",
                "m02@example.com",
                "m03@example.com",
                "m04@example.com",
            ],
        ),
    ];
    for (args, requests_sent, expected) in cases {
        let daemon = FakeDaemon::bind();
        let (requests, out) = daemon.serve_all(
            roster(5),
            ctl(Path::new(BIN))
                .args([
                    "--socket",
                    daemon.socket(),
                    "--output",
                    "jsonl",
                    "user",
                    "list",
                ])
                .args(args),
        );
        assert_eq!(requests, requests_sent, "{args:?}");
        assert_eq!(emails(&out), expected, "{args:?}");
        assert_eq!(out.status.code(), Some(0), "{args:?}");
    }
    // Past the end: said so, with the last page, and nothing on stdout.
    let daemon = FakeDaemon::bind();
    let (_, out) = daemon.serve_all(
        roster(5),
        ctl(Path::new(BIN))
            .args(["--socket", daemon.socket(), "user", "list"])
            .args(["--page", "9", "--per-page", "2"]),
    );
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "compartmentctl: page 9 is past the end: acme has 5 members, 3 pages of 2\nhint: the last page is 3 (--page 3)\n"
    );
    assert_eq!(out.status.code(), Some(2));
    // A page beyond one request's reach is found by following next.
    let daemon = FakeDaemon::bind();
    let (requests, out) = daemon.serve_all(
        roster(2_500),
        ctl(Path::new(BIN))
            .args([
                "--socket",
                daemon.socket(),
                "--output",
                "jsonl",
                "user",
                "list",
            ])
            .args(["--page", "3", "--per-page", "1000"]),
    );
    assert_eq!(
        requests,
        [
            json!({"limit": 1000}),
            json!({"limit": 1000, "after": "999"}),
            json!({"limit": 1000, "after": "1999"}),
        ]
    );
    let got = emails(&out);
    assert_eq!(got.len(), 500);
    assert_eq!(got[0], "m2000@example.com");
}

#[test]
fn per_page_and_page_are_bounded_and_status_is_sent() {
    for args in [
        &["--per-page", "1001"][..],
        &["--per-page", "0"],
        &["--page", "0"],
        &["--status", "pending"],
    ] {
        let out = run(&[&["user", "list"][..], args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let daemon = FakeDaemon::bind();
    let (requests, out) = daemon.serve_all(
        roster(1),
        ctl(Path::new(BIN)).args([
            "--socket",
            daemon.socket(),
            "user",
            "list",
            "--status",
            "expired",
        ]),
    );
    assert_eq!(requests, [json!({"limit": 1000, "status": "expired"})]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_reader_that_leaves_mid_list_ends_the_listing_quietly() {
    let daemon = FakeDaemon::bind();
    let mut command = ctl(Path::new(BIN));
    command.args(["--socket", daemon.socket(), "user", "list"]);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    // The reader takes one line, then goes away, as `| head -1` does.
    let child = command.spawn().unwrap();
    let reader = thread::spawn(move || {
        let mut child = child;
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        drop(stdout);
        (first, child.wait_with_output().unwrap())
    });
    // Serve until the CLI hangs up, which it must do on its own.
    let listener = &daemon.listener;
    listener.set_nonblocking(false).unwrap();
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut lines = BufReader::new(&stream);
    let serve = roster(100_000);
    let mut pages = 0;
    loop {
        let mut line = String::new();
        // The CLI hangs up with an answer of ours still unread, which the kernel may tell
        // us as a reset rather than an end of file: either way, it has gone.
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let request: Value = serde_json::from_str(&line).unwrap();
        let reply =
            json!({"jsonrpc": "2.0", "id": request["id"], "result": serve(&request["params"])});
        pages += 1;
        if (&stream)
            .write_all(format!("{reply}\n").as_bytes())
            .is_err()
        {
            break;
        }
    }
    let (first, out) = reader.join().unwrap();
    // The first page's widest address is m999@example.com.
    assert_eq!(
        first,
        "EMAIL             ROLE    STATUS   UNIX USER  EXPIRES\n"
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    // It stopped long before the 100 pages of the whole list.
    assert!(pages < 100, "{pages} pages");
}

#[test]
fn jsonl_output_of_another_command_is_its_result_on_one_line() {
    let daemon = FakeDaemon::bind();
    let (_, out) = daemon.serve(
        r#"{"jsonrpc":"2.0","id":1,"result":{"version":"0.1.0"}}"#,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "--output", "jsonl", "ping"]),
    );
    assert_eq!(text(&out.stdout), "{\"version\":\"0.1.0\"}\n");
    // And its failures are JSON error objects, as with json.
    let out = run(&["--output", "jsonl", "--socket", "/nonexistent/sock", "ping"]);
    assert_eq!(out.status.code(), Some(3));
    let error: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["data"]["kind"], "unreachable");
}

#[test]
fn a_page_in_text_is_a_table_of_its_own_rows() {
    let daemon = FakeDaemon::bind();
    let (_, out) = daemon.serve_all(
        roster(5),
        ctl(Path::new(BIN)).args([
            "--socket",
            daemon.socket(),
            "user",
            "list",
            "--page",
            "2",
            "--per-page",
            "2",
        ]),
    );
    assert_eq!(
        text(&out.stdout),
        "\
EMAIL            ROLE    STATUS   UNIX USER  EXPIRES
m02@example.com  viewer  invited  -          2026-05-01T12:00:00Z
m03@example.com  viewer  invited  -          2026-05-01T12:00:00Z
"
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn user_block_sends_the_reason_and_end_and_says_what_it_did() {
    let daemon = FakeDaemon::bind();
    let (request, out) = daemon.serve(
        r#"{"jsonrpc":"2.0","id":1,"result":{"org":"acme","email":"alice@example.com","block":{"reason":"laptop lost","by":"admin@example.com","at":"2026-12-07T09:00:00Z","until":"2026-12-14T00:00:00Z"}}}"#,
        ctl(Path::new(BIN)).args([
            "--socket",
            daemon.socket(),
            "--org",
            "acme",
            "user",
            "block",
            "alice@example.com",
            "--reason",
            "laptop lost",
            "--until",
            "2026-12-14T00:00:00Z",
        ]),
    );
    assert_eq!(request["method"], "user.block");
    assert_eq!(
        request["params"],
        json!({"org": "acme", "email": "alice@example.com", "reason": "laptop lost", "until": "2026-12-14T00:00:00Z"})
    );
    assert_eq!(
        text(&out.stdout),
        "Blocked alice@example.com in acme until 2026-12-14T00:00:00Z: laptop lost\n"
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn user_unblock_says_so() {
    let daemon = FakeDaemon::bind();
    let (request, out) = daemon.serve(
        r#"{"jsonrpc":"2.0","id":1,"result":{"org":"acme","email":"alice@example.com","block":{"reason":"laptop lost","by":"uid 0","at":"2026-12-07T09:00:00Z"}}}"#,
        ctl(Path::new(BIN)).args([
            "--socket",
            daemon.socket(),
            "user",
            "unblock",
            "alice@example.com",
        ]),
    );
    assert_eq!(request["method"], "user.unblock");
    assert_eq!(request["params"], json!({"email": "alice@example.com"}));
    assert_eq!(text(&out.stdout), "Unblocked alice@example.com in acme.\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn a_block_without_a_reason_is_a_usage_error_before_anything_is_sent() {
    let out = run(&[
        "--socket",
        "/nonexistent/sock",
        "user",
        "block",
        "a@example.com",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--reason <TEXT>"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_blocked_caller_is_told_why_and_exits_4() {
    let daemon = FakeDaemon::bind();
    let (_, out) = daemon.serve(
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32018,"message":"you are blocked in acme until unblocked: laptop lost","data":{"kind":"blocked"}}}"#,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "user", "list"]),
    );
    assert_eq!(
        text(&out.stderr),
        "compartmentctl: you are blocked in acme until unblocked: laptop lost\n"
    );
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn a_grant_until_sends_it_and_says_what_comes_after() {
    let daemon = FakeDaemon::bind();
    let (request, out) = daemon.serve(
        r#"{"jsonrpc":"2.0","id":1,"result":{"org":"acme","email":"oncall@example.com","role":"admin","previous_role":"deployer","until":"2026-12-07T17:00:00Z"}}"#,
        ctl(Path::new(BIN)).args([
            "--socket",
            daemon.socket(),
            "role",
            "grant",
            "oncall@example.com",
            "admin",
            "--until",
            "8h",
        ]),
    );
    assert_eq!(
        request["params"],
        json!({"email": "oncall@example.com", "role": "admin", "until": "8h"})
    );
    assert_eq!(
        text(&out.stdout),
        "Granted admin to oncall@example.com in acme until 2026-12-07T17:00:00Z (was deployer; deployer again after).\n"
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn invite_sends_access_until() {
    let daemon = FakeDaemon::bind();
    let (request, out) = daemon.serve(
        r#"{"jsonrpc":"2.0","id":1,"result":{"org":"acme","email":"c@example.com","role":"deployer","status":"invited","activation_url":"https://host/activate?token=abc","expires_at":"2026-12-14T09:00:00Z","access_until":"2027-01-06T09:00:00Z"}}"#,
        ctl(Path::new(BIN)).args([
            "--socket",
            daemon.socket(),
            "user",
            "invite",
            "c@example.com",
            "--role",
            "deployer",
            "--access-until",
            "30days",
        ]),
    );
    assert_eq!(
        request["params"],
        json!({"email": "c@example.com", "role": "deployer", "access_until": "30days"})
    );
    assert_eq!(
        text(&out.stdout),
        "Invited c@example.com as deployer.\n\
         Activation URL: https://host/activate?token=abc\n\
         Invitation expires at: 2026-12-14T09:00:00Z\n\
         Access ends at: 2027-01-06T09:00:00Z\n"
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn user_list_shows_blocks_and_ends() {
    let daemon = FakeDaemon::bind();
    let (_, out) = daemon.serve(
        r#"{"jsonrpc":"2.0","id":1,"result":{"org":"acme","members":[{"email":"alice@example.com","role":"deployer","status":"active","expires_at":null,"unix_user":"alice","blocked":{"reason":"laptop lost","by":"uid 0","at":"2026-12-07T09:00:00Z"}},{"email":"oncall@example.com","role":"admin","status":"active","expires_at":null,"unix_user":"bob","access_until":"2027-01-06T09:00:00Z","elevation":{"until":"2026-12-07T17:00:00Z","fallback":"deployer"}}]}}"#,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "user", "list"]),
    );
    assert_eq!(
        text(&out.stdout),
        "\
EMAIL               ROLE      STATUS   UNIX USER  EXPIRES
alice@example.com   deployer  blocked  alice      -
oncall@example.com  admin     active   bob        2026-12-07T17:00:00Z (then deployer), 2027-01-06T09:00:00Z (access ends)
"
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

// ---------------------------------------------------------------------------------------
// Text from the daemon or the command line that would act on the terminal

/// Writes the clipboard (OSC 52), sets the window title (OSC 0), clears the screen, and
/// reverses what follows (U+202E), as JSON escapes in a line the daemon sends.
const HOSTILE_JSON: &str = r"\u001b]52;c;ZXZpbA==\u0007\u001b]0;owned\u0007\u001b[2J\u202e";
/// The same as the CLI shows it.
const HOSTILE_SHOWN: &str = r"\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}]0;owned\u{7}\u{1b}[2J\u{202e}";

/// Nothing that acts on a terminal reached it: no ESC byte, no C1 CSI/OSC, no bidi override.
#[track_caller]
fn assert_inert(out: &Output) {
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = text(bytes);
        assert!(!bytes.contains(&0x1b), "an ESC byte on {name}: {text:?}");
        assert!(
            !text.contains(['\u{202e}', '\u{9b}', '\u{9d}', '\u{7}']),
            "a control on {name}: {text:?}"
        );
    }
}

#[test]
fn a_hostile_error_message_and_hint_are_shown_escaped() {
    let daemon = FakeDaemon::bind();
    let response = format!(
        r#"{{"jsonrpc":"2.0","id":1,"error":{{"code":-32005,"message":"organization {HOSTILE_JSON}emca not found","data":{{"kind":"not_found","hint":"ask {HOSTILE_JSON}"}}}}}}"#
    );
    let (_, out) = daemon.serve(
        &response,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "user", "list"]),
    );
    assert_eq!(
        text(&out.stderr),
        format!(
            "compartmentctl: organization {HOSTILE_SHOWN}emca not found\nhint: ask {HOSTILE_SHOWN}\n"
        )
    );
    assert_eq!(out.status.code(), Some(5));
    assert!(out.stdout.is_empty());
    assert_inert(&out);
}

#[test]
fn an_invitation_held_by_a_hostile_user_name_is_shown_escaped() {
    let daemon = FakeDaemon::bind();
    let response = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"org":"acme","email":"cfo@acme.com","role":"admin","status":"invited","activation_url":"https://host/activate?token=abc","expires_at":"2026-05-01T12:00:00Z","held_by":"mal{HOSTILE_JSON}","redeemable_by":"mal{HOSTILE_JSON}"}}}}"#
    );
    let (_, out) = daemon.serve(
        &response,
        ctl(Path::new(BIN)).args([
            "--socket",
            daemon.socket(),
            "user",
            "invite",
            "cfo@acme.com",
            "--role",
            "admin",
        ]),
    );
    assert_eq!(
        text(&out.stdout),
        format!(
            "Invited cfo@acme.com as admin.\n\
             Activation URL: https://host/activate?token=abc\n\
             Invitation expires at: 2026-05-01T12:00:00Z\n\
             cfo@acme.com already has an account, held by Unix user mal{HOSTILE_SHOWN}: only mal{HOSTILE_SHOWN} can redeem this URL.\n"
        )
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_inert(&out);
}

/// A page whose member names carry a bidi override, a zero-width space and a title change.
const HOSTILE_MEMBERS: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"org":"acme","members":[{"email":"admin@example.com","role":"admin","status":"active","expires_at":null,"unix_user":"\u202eeve"},{"email":"b\u200b@example.com","role":"viewer","status":"active","expires_at":null,"unix_user":"\u001b]0;owned\u0007"}]}}"#;

#[test]
fn a_member_list_with_hostile_names_is_escaped_and_still_aligned() {
    let daemon = FakeDaemon::bind();
    let (_, out) = daemon.serve(
        HOSTILE_MEMBERS,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "user", "list"]),
    );
    assert_eq!(
        text(&out.stdout),
        r"EMAIL                  ROLE    STATUS  UNIX USER            EXPIRES
admin@example.com      admin   active  \u{202e}eve          -
b\u{200b}@example.com  viewer  active  \u{1b}]0;owned\u{7}  -
"
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_inert(&out);
}

#[test]
fn json_output_of_hostile_names_is_the_daemons_json() {
    let daemon = FakeDaemon::bind();
    let (_, out) = daemon.serve(
        HOSTILE_MEMBERS,
        ctl(Path::new(BIN)).args([
            "--socket",
            daemon.socket(),
            "--output",
            "json",
            "user",
            "list",
        ]),
    );
    // serde escapes the C0 controls; the other characters are JSON text as they are.
    assert_eq!(
        text(&out.stdout),
        concat!(
            r#"{"org":"acme","members":[{"email":"admin@example.com","role":"admin","status":"active","expires_at":null,"unix_user":""#,
            "\u{202e}eve",
            r#""},{"email":"b"#,
            "\u{200b}",
            r#"@example.com","role":"viewer","status":"active","expires_at":null,"unix_user":"\u001b]0;owned\u0007"}]}"#,
            "\n"
        )
    );
    let document: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(document["members"][1]["unix_user"], "\u{1b}]0;owned\u{7}");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn what_was_typed_is_echoed_escaped_in_a_usage_error() {
    let out = run(&[
        "role",
        "grant",
        "a@example.com",
        "\u{1b}]0;owned\u{7}\u{202e}",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    // clap's plain rendering drops the escape sequences it knows (the OSC here) from its own
    // quote; what is left, and the value as our parser quotes it, is escaped.
    assert_eq!(
        stderr.lines().next(),
        Some(
            r#"error: invalid value '\u{202e}' for '<ROLE>': "\u{1b}]0;owned\u{7}\u{202e}" is not a role: roles are admin, deployer, readonly and viewer"#
        ),
        "{stderr}"
    );
    assert_inert(&out);
}

/// True when a connection waits on the fake daemon's socket: the CLI connected.
fn connected(daemon: &FakeDaemon) -> bool {
    daemon.listener.set_nonblocking(true).unwrap();
    match daemon.listener.accept() {
        Ok(_) => true,
        Err(err) if err.kind() == ErrorKind::WouldBlock => false,
        Err(err) => panic!("accept: {err}"),
    }
}

#[test]
fn an_unknown_user_to_trust_is_a_usage_error_before_anything_is_sent() {
    let daemon = FakeDaemon::bind();
    for args in [
        &["--trust-server-user", "cpt-no-such-user", "whoami"][..],
        &["whoami"][..],
    ] {
        let out = ctl(Path::new(BIN))
            .env("COMPARTMENT_TRUST_SERVER_USER", "cpt-no-such-user")
            .args(["--socket", daemon.socket()])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            text(&out.stderr),
            "compartmentctl: --trust-server-user names \"cpt-no-such-user\", and there is no Unix user by that name\n\
             hint: name the Unix user your daemon runs as, or leave --trust-server-user and \
             COMPARTMENT_TRUST_SERVER_USER unset to talk only to root's daemon or your own\n",
            "{args:?}"
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!connected(&daemon), "{args:?}: the CLI connected");
    }
}

#[test]
fn a_server_of_your_own_is_trusted_whoever_else_is_named() {
    let daemon = FakeDaemon::bind();
    for trusted in [None, Some("root")] {
        let mut command = ctl(Path::new(BIN));
        command.args(["--socket", daemon.socket(), "ping"]);
        if let Some(name) = trusted {
            command.args(["--trust-server-user", name]);
        }
        let (request, out) = daemon.serve(
            r#"{"jsonrpc":"2.0","id":1,"result":{"version":"9.9.9"}}"#,
            &mut command,
        );
        assert_eq!(request["method"], "ping");
        assert!(
            text(&out.stdout).starts_with(&format!(
                "compartmentd 9.9.9 is running at {} (",
                daemon.socket()
            )),
            "{}",
            text(&out.stdout)
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
}

/// `ping` says which socket it reached and whose daemon answered.
#[test]
fn ping_says_where_and_whose_the_daemon_is() {
    let daemon = FakeDaemon::bind();
    let (_, out) = daemon.serve(
        r#"{"jsonrpc":"2.0","id":1,"result":{"version":"0.1.0"}}"#,
        ctl(Path::new(BIN)).args(["--socket", daemon.socket(), "ping"]),
    );
    let uid = nix::unistd::geteuid().as_raw();
    let whose = match uid {
        0 => "root's: the system daemon".to_owned(),
        uid => {
            let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .unwrap()
                .unwrap();
            format!("{}'s (uid {uid})", user.name)
        }
    };
    assert_eq!(
        text(&out.stdout),
        format!(
            "compartmentd 0.1.0 is running at {} ({whose}).\n",
            daemon.socket()
        )
    );
    assert_eq!(out.status.code(), Some(0));
}

/// With no socket named, nothing answering is told where the CLI looked: the per-user
/// socket, and the system one it would have chosen had it existed.
#[test]
fn nothing_at_the_default_sockets_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let out = ctl(Path::new(BIN))
        .env("XDG_RUNTIME_DIR", dir.path())
        .arg("ping")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let system = Path::new("/run/compartment/compartmentd.sock");
    let expected = if system.exists() {
        format!(
            "compartmentctl: cannot reach the system compartmentd at {}",
            system.display()
        )
    } else {
        format!(
            "compartmentctl: cannot reach compartmentd at {}/compartment/compartmentd.sock (your per-user daemon's socket), and there is no system daemon's socket at /run/compartment/compartmentd.sock: ",
            dir.path().display()
        )
    };
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with(&expected), "{stderr}");
}
