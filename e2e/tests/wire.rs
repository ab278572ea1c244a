//! The wire as JSON-RPC 2.0 promises it, over a raw connection to the daemon
//! (notifications, batches, ids echoed exactly), and the CLI keeping the activation URL out
//! of every process's command line. The daemon runs in the test process but where a test
//! reads its log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::process::{Child, Stdio};
use std::time::Duration;

use compartment_e2e::{ctl_command, each_store, poll, Daemon, Endpoint, ROOT};
use compartmentctl::wire::MAX_BATCH;
use serde_json::{json, Value};

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

#[test]
fn a_notification_is_run_and_gets_no_reply() {
    let daemon = Daemon::in_process_default();
    let mut conn = daemon.raw();
    // As the daemon's own user the test is a superuser, so the notification can create an
    // organization: that it exists afterwards shows it was run.
    conn.send_line(
        r#"{"jsonrpc":"2.0","method":"org.create","params":{"name":"beta","admin":"b@example.com"}}"#,
    );
    conn.send_line(r#"{"jsonrpc":"2.0","method":"no.such.method"}"#);
    conn.send_line(r#"{"jsonrpc":"2.0","id":2,"method":"org.list"}"#);
    let reply = conn.read_json();
    assert_eq!(reply["id"], 2, "{reply}");
    let orgs: Vec<&str> = reply["result"]["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|org| org["name"].as_str().unwrap())
        .collect();
    assert_eq!(orgs, ["beta"], "{reply}");
}

#[test]
fn a_batch_gets_one_array_of_replies_without_the_notifications() {
    let daemon = Daemon::in_process_default();
    let mut conn = daemon.raw();
    conn.send_line(
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},
            {"jsonrpc":"2.0","method":"ping"},
            {"jsonrpc":"2.0","id":"two","method":"role.list"},
            {"jsonrpc":"2.0","id":3,"method":"no.such.method"},
            7]"#
        .replace('\n', "")
        .as_str(),
    );
    let reply = conn.read_json();
    let replies = reply
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {reply}"));
    let mut ids: Vec<String> = replies.iter().map(|r| r["id"].to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["\"two\"", "1", "3", "null"], "{reply}");
    let by_id = |id: Value| replies.iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(
        by_id(json!(1))["result"]["version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(by_id(json!("two"))["result"]["roles"][0]["name"], "admin");
    assert_eq!(by_id(json!(3))["error"]["data"]["kind"], "unknown_method");
    assert_eq!(by_id(Value::Null)["error"]["code"], -32600);
    // The connection goes on.
    assert_eq!(conn.call(PING)["id"], 1);
}

#[test]
fn a_batch_of_notifications_gets_nothing() {
    let daemon = Daemon::in_process_default();
    let mut conn = daemon.raw();
    conn.send_line(r#"[{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","method":"whoami"}]"#);
    conn.send_line(r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#);
    assert_eq!(conn.read_json()["id"], 9);
}

#[test]
fn an_empty_batch_is_one_invalid_request_error() {
    let daemon = Daemon::in_process_default();
    let mut conn = daemon.raw();
    let reply = conn.call("[]");
    assert_eq!(reply["id"], Value::Null, "{reply}");
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    assert_eq!(reply["error"]["data"]["kind"], "bad_request", "{reply}");
    assert_eq!(
        reply["error"]["message"],
        "invalid request: an empty batch holds no request"
    );
}

#[test]
fn a_batch_over_the_bound_is_one_error_and_at_the_bound_is_served() {
    let daemon = Daemon::in_process_default();
    let mut conn = daemon.raw();
    let batch = |n: usize| format!("[{}]", vec![PING; n].join(","));
    let reply = conn.call(&batch(MAX_BATCH + 1));
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    assert_eq!(
        reply["error"]["message"],
        format!(
            "invalid request: a batch holds at most {MAX_BATCH} requests, this one {}",
            MAX_BATCH + 1
        )
    );
    let reply = conn.call(&batch(MAX_BATCH));
    assert_eq!(reply.as_array().map(Vec::len), Some(MAX_BATCH));
}

/// Changes sent on one connection without waiting are begun together, so the writer
/// commits them in shared transactions, yet they apply in the order sent, and a read sent
/// after them sees them all. Invite, remove and invite again of one address succeed only
/// in that order (a remove first finds no member; a second invite first finds one).
#[test]
fn pipelined_changes_apply_in_the_order_sent_and_a_later_read_sees_them() {
    for options in
        each_store("pipelined_changes_apply_in_the_order_sent_and_a_later_read_sees_them")
    {
        // The built daemon: the writer's batches are read from its log.
        pipelined_changes(&Daemon::start(
            options.env("RUST_LOG", "info,compartmentd::writer=trace"),
        ));
    }
}

fn pipelined_changes(daemon: &Daemon) {
    let mut conn = daemon.raw();
    let created = conn.call(
        r#"{"jsonrpc":"2.0","id":0,"method":"org.create","params":{"name":"acme","admin":"admin@example.com"}}"#,
    );
    assert!(created.get("result").is_some(), "{created}");
    const ADDRESSES: usize = 60;
    let mut lines = String::new();
    let mut expected = Vec::new();
    for i in 0..ADDRESSES {
        let email = format!("p{i:03}@example.com");
        for (step, method) in ["user.invite", "user.remove", "user.invite"]
            .iter()
            .enumerate()
        {
            let id = expected.len() + 1;
            // The first invitation names a Unix user, which the daemon looks up before it
            // queues the change: a remove sent after it must still wait its turn.
            let params = match step {
                0 => {
                    json!({"org": "acme", "email": email, "role": "viewer", "unix_user": "daemon"})
                }
                1 => json!({"org": "acme", "email": email}),
                _ => json!({"org": "acme", "email": email, "role": "viewer"}),
            };
            lines.push_str(
                &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
                    .to_string(),
            );
            lines.push('\n');
            expected.push((id, method, email.clone()));
        }
    }
    let list_id = expected.len() + 1;
    lines.push_str(&format!(
        r#"{{"jsonrpc":"2.0","id":{list_id},"method":"user.list","params":{{"org":"acme","limit":1000}}}}"#
    ));
    lines.push('\n');
    // Written from another thread: the daemon answers while the lines still arrive.
    let mut writer = conn.writer();
    let sender = std::thread::spawn(move || writer.write_all(lines.as_bytes()).unwrap());
    for (id, method, email) in &expected {
        let reply = conn.read_json();
        assert_eq!(reply["id"], *id, "answers out of order: {reply}");
        assert!(
            reply.get("result").is_some(),
            "{method} {email} (id {id}) was refused, so it ran out of order: {reply}"
        );
    }
    sender.join().unwrap();
    let listed = conn.read_json();
    assert_eq!(listed["id"], list_id, "{listed}");
    let members = listed["result"]["members"].as_array().unwrap();
    let invited: Vec<&str> = members
        .iter()
        .filter(|m| m["status"] == "invited" && m["email"] != "admin@example.com")
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(invited.len(), ADDRESSES, "{listed}");
    // The writer shared transactions among them: some batch carried more than one change.
    let log = daemon.log();
    let largest = log
        .lines()
        .filter_map(|line| line.split("changes=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        largest > 1,
        "every change of the pipelined connection had a commit of its own"
    );
}

/// A client that writes its requests and closes its side (`socat`, a shell pipe) still
/// gets every answer, in order, before the daemon closes the connection.
#[test]
fn a_client_that_closes_its_side_after_writing_gets_every_answer() {
    for options in each_store("a_client_that_closes_its_side_after_writing_gets_every_answer") {
        closes_its_side(&Daemon::in_process(options));
    }
}

fn closes_its_side(daemon: &Endpoint) {
    let mut conn = daemon.raw();
    let mut lines = String::from(
        r#"{"jsonrpc":"2.0","id":0,"method":"org.create","params":{"name":"acme","admin":"admin@example.com"}}"#,
    );
    lines.push('\n');
    for id in 1..=20 {
        lines.push_str(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"user.invite","params":{{"org":"acme","email":"h{id}@example.com","role":"viewer"}}}}"#
        ));
        lines.push('\n');
    }
    lines.push_str(r#"{"jsonrpc":"2.0","id":21,"method":"ping"}"#);
    lines.push('\n');
    conn.send(lines.as_bytes());
    conn.writer().shutdown(std::net::Shutdown::Write).unwrap();
    for id in 0..=21 {
        let reply = conn.read_json();
        assert_eq!(reply["id"], id, "{reply}");
        assert!(reply.get("result").is_some(), "{reply}");
    }
    assert!(conn.is_closed());
}

#[test]
fn id_null_is_answered_with_null() {
    let daemon = Daemon::in_process_default();
    let mut conn = daemon.raw();
    conn.send_line(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#);
    let line = conn.read_line();
    assert!(
        line.starts_with(r#"{"jsonrpc":"2.0","id":null,"result":"#),
        "{line}"
    );
}

#[test]
fn ids_of_any_size_are_echoed_byte_for_byte() {
    let daemon = Daemon::in_process_default();
    let mut conn = daemon.raw();
    for id in [
        "123456789012345678901234567890",
        "-98765432109876543210987654321098765",
        "1.000000000000000000001",
        r#""\u00e9t\u00e9""#,
    ] {
        conn.send_line(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#));
        let line = conn.read_line();
        assert!(
            line.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"#)),
            "{id}: {line}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The activation URL and the process list

/// Every process's command line that contains `needle`, as `pid: cmdline`.
fn command_lines_containing(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // A process may end between the listing and the read.
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// Waits until `child` has become `compartmentctl activate` (past fork and exec).
fn wait_for_exec(child: &Child) {
    let path = format!("/proc/{}/cmdline", child.id());
    poll(Duration::from_secs(10), || {
        let cmdline = fs::read(&path).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
        (cmdline.contains("compartmentctl") && cmdline.contains("activate")).then_some(())
    })
    .expect("compartmentctl activate never started");
}

/// `read`'s system call number, as `/proc/<pid>/syscall` shows it.
#[cfg(target_arch = "x86_64")]
const READ_SYSCALL: &str = "0";
#[cfg(target_arch = "aarch64")]
const READ_SYSCALL: &str = "63";

/// True while process `pid` is blocked reading its standard input (in `read(0, …)`).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn reading_stdin(pid: u32) -> bool {
    let syscall = fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let mut fields = syscall.split_whitespace();
    fields.next() == Some(READ_SYSCALL) && fields.next() == Some("0x0")
}

/// True while process `pid` is blocked reading a pipe (its standard input is the only one
/// it reads).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn reading_stdin(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|wchan| wchan.contains("pipe_read"))
}

#[test]
fn the_documented_activate_never_shows_the_token_in_a_command_line() {
    let daemon = Daemon::in_process_default();
    let invitation = daemon.create_acme();
    let mut child = ctl_command(&daemon.socket(), ROOT, &["activate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_exec(&child);
    // Alive, waiting for its standard input: nothing anywhere shows the token.
    poll(Duration::from_secs(10), || {
        reading_stdin(child.id()).then_some(())
    })
    .expect("activate never waited for its standard input");
    assert!(child.try_wait().unwrap().is_none(), "activate did not wait");
    assert_eq!(
        command_lines_containing(&invitation.token),
        Vec::<String>::new()
    );
    // Then it reads the URL and carries on; a superuser is refused an account, which is
    // all this test needs: the URL arrived by stdin.
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", invitation.url).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let uid = nix::unistd::geteuid().as_raw();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "compartmentctl: uid {uid} is a superuser and needs no account; run activate as the \
             invited person's own Unix user\n"
        )
    );
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn activate_with_the_url_in_argv_warns_and_the_token_is_visible() {
    // A daemon that accepts and never answers keeps the command alive while the process
    // list is read: the scan sees the token, so the test above would see a leak too.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    let token = "visibletokenvisibletokenvisibletokenvisible";
    let url = format!("https://host/activate?token={token}");
    let mut child = ctl_command(&socket, ROOT, &["activate", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The warning comes before the connection, so once connected it has been written.
    let _connection =
        poll(Duration::from_secs(10), || listener.accept().ok()).expect("activate never connected");
    let seen = command_lines_containing(token);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with(&format!("{}: ", child.id())),
        "{seen:?}"
    );
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "compartmentctl: warning: other local users can read an activation URL given as an \
         argument from the process list\n\
         hint: run `compartmentctl activate` with no argument and paste the URL at its prompt, \
         or pipe it in on standard input\n"
    );
}

/// `rpc.discover` answers the OpenRPC document the wire declares, and the daemon serves
/// every method it lists: none is answered `unknown_method`.
#[test]
fn rpc_discover_lists_exactly_the_methods_the_daemon_serves() {
    let daemon = Daemon::in_process_default();
    let mut conn = daemon.raw();
    let reply = conn.call(r#"{"jsonrpc":"2.0","id":1,"method":"rpc.discover"}"#);
    let document = &reply["result"];
    assert_eq!(*document, compartmentctl::wire::openrpc::document());
    let methods = document["methods"].as_array().unwrap();
    assert_eq!(methods.len() + 1, compartmentctl::wire::METHODS.len());
    for method in methods {
        let name = method["name"].as_str().unwrap();
        let request = json!({"jsonrpc": "2.0", "id": 2, "method": name}).to_string();
        let answer = if ["events.subscribe", "admin.backup"].contains(&name) {
            // Served, each on a connection of its own: it turns the connection into a feed
            // or a backup.
            daemon.raw().call(&request)
        } else {
            conn.call(&request)
        };
        assert_ne!(
            answer["error"]["data"]["kind"], "unknown_method",
            "{name}: {answer}"
        );
    }
    let answer = conn.call(r#"{"jsonrpc":"2.0","id":3,"method":"rpc.nothing"}"#);
    assert_eq!(answer["error"]["data"]["kind"], "unknown_method");
}
