//! The raw socket protocol under bad input: each malformed request gets its documented
//! error and the connection lives on; an over-long line closes only its own connection;
//! pipelined requests are answered in order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;

use compartment_e2e::{each_store, Daemon, Endpoint, RawConn};
use compartmentctl::wire::{OrgCreateParams, OrgCreated, Pong, Request, MAX_LINE};
use serde_json::{json, Value};

/// The exact line the daemon sends before closing a connection whose line is too long.
const FRAME_TOO_LONG: &str = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32013,"message":"request line longer than 65536 bytes; closing the connection","data":{"kind":"frame_too_long"}}}"#;

fn create_acme(d: &Endpoint) {
    let _: OrgCreated = d
        .client()
        .call(&Request::OrgCreate(OrgCreateParams {
            name: "acme".into(),
            admin: "admin@example.com".into(),
            admin_unix_user: None,
            expires_in: Default::default(),
        }))
        .expect("org.create as root");
}

/// Asserts `response` is an error with this id, code and kind, and returns its message.
#[track_caller]
fn assert_error(response: &Value, id: Value, code: i64, kind: &str) -> String {
    assert_eq!(response["jsonrpc"], json!("2.0"), "{response}");
    assert_eq!(response["id"], id, "{response}");
    assert!(
        response.get("result").is_none(),
        "an error has no result: {response}"
    );
    assert_eq!(response["error"]["code"], json!(code), "{response}");
    assert_eq!(response["error"]["data"]["kind"], json!(kind), "{response}");
    response["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("the error has a message: {response}"))
        .to_owned()
}

/// The connection still answers: a ping with `id` gets a pong with that id.
#[track_caller]
fn assert_pings(conn: &mut RawConn, id: u64) {
    let response = conn.call(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#));
    assert_eq!(response["id"], json!(id), "{response}");
    assert!(response.get("error").is_none(), "ping failed: {response}");
    assert!(response["result"]["version"].is_string(), "{response}");
}

/// A bad request line, the id echoed, the code, the kind, and the exact message when the
/// contract fixes it.
struct BadLine(
    &'static [u8],
    Value,
    i64,
    &'static str,
    Option<&'static str>,
);

#[test]
fn each_bad_request_gets_its_error_and_the_connection_lives_on() {
    for options in each_store("each_bad_request_gets_its_error_and_the_connection_lives_on") {
        each_bad_request(&Daemon::in_process(options));
    }
}

fn each_bad_request(d: &Endpoint) {
    create_acme(d);
    let mut conn = d.raw();

    let cases: Vec<BadLine> = vec![
        BadLine(b"{not json", Value::Null, -32700, "bad_request", None),
        BadLine(
            b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"\xff\xfe\"}",
            Value::Null,
            -32700,
            "bad_request",
            None,
        ),
        // An empty batch is one error; `[1,2]` is a batch, answered with an array
        // (wire.rs), and a request without an id a notification, answered with nothing.
        BadLine(b"[]", Value::Null, -32600, "bad_request", None),
        BadLine(br#"{"jsonrpc":"2.0","method":7}"#, Value::Null, -32600, "bad_request", None),
        BadLine(br#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#, Value::Null, -32600, "bad_request", None),
        BadLine(br#"{"jsonrpc":"1.0","id":5,"method":"ping"}"#, json!(5), -32600, "bad_request", None),
        BadLine(
            br#"{"jsonrpc":"2.0","id":6,"method":"user.frobnicate"}"#,
            json!(6),
            -32601,
            "unknown_method",
            Some(r#"unknown method "user.frobnicate""#),
        ),
        // Missing params: user.remove without the e-mail.
        BadLine(
            br#"{"jsonrpc":"2.0","id":7,"method":"user.remove","params":{"org":"acme"}}"#,
            json!(7),
            -32602,
            "bad_request",
            None,
        ),
        // Wrongly typed params.
        BadLine(
            br#"{"jsonrpc":"2.0","id":8,"method":"role.grant","params":{"org":"acme","email":"admin@example.com","role":7}}"#,
            json!(8),
            -32602,
            "bad_request",
            None,
        ),
        BadLine(
            br#"{"jsonrpc":"2.0","id":"nine","method":"ping","params":[1]}"#,
            json!("nine"),
            -32602,
            "bad_request",
            None,
        ),
        // An invalid e-mail address.
        BadLine(
            br#"{"jsonrpc":"2.0","id":10,"method":"user.invite","params":{"org":"acme","email":"nope","role":"viewer"}}"#,
            json!(10),
            -32602,
            "bad_request",
            Some(r#""nope" is not a valid e-mail address: it must contain exactly one @"#),
        ),
    ];
    for (i, BadLine(line, id, code, kind, message)) in cases.into_iter().enumerate() {
        let mut bytes = line.to_vec();
        bytes.push(b'\n');
        conn.send(&bytes);
        let response = conn.read_json();
        let got = assert_error(&response, id, code, kind);
        if let Some(message) = message {
            assert_eq!(got, message, "{}", String::from_utf8_lossy(line));
        }
        assert_pings(&mut conn, 100 + i as u64);
    }

    // An invalid role names the four roles.
    let response = conn.call(
        r#"{"jsonrpc":"2.0","id":11,"method":"role.grant","params":{"org":"acme","email":"admin@example.com","role":"owner"}}"#,
    );
    let message = assert_error(&response, json!(11), -32602, "bad_request");
    assert!(
        message.contains("roles are admin, deployer, readonly and viewer"),
        "{message}"
    );
    assert_pings(&mut conn, 111);

    // None of it changed anything.
    let members = d.members("acme").members;
    assert_eq!(members.len(), 1, "{members:#?}");
    assert_eq!(members[0].email, "admin@example.com");

    // A client that hangs up mid-line harms nobody else.
    let mut partial = d.raw();
    partial.send(br#"{"jsonrpc":"2.0","id":1,"meth"#);
    drop(partial);
    assert_pings(&mut conn, 112);
    assert_pings(&mut d.raw(), 1);
}

/// A valid ping request padded with JSON whitespace to exactly `len` bytes.
fn ping_of_length(id: u64, len: usize) -> Vec<u8> {
    let head = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping""#);
    let mut line = head.into_bytes();
    assert!(line.len() < len);
    line.resize(len - 1, b' ');
    line.push(b'}');
    line
}

#[test]
fn a_line_of_exactly_64_kib_is_served() {
    let d = Daemon::in_process_default();
    let mut conn = d.raw();
    let mut line = ping_of_length(1, MAX_LINE);
    assert_eq!(line.len(), 65536);
    line.push(b'\n');
    conn.send(&line);
    let response = conn.read_json();
    assert_eq!(response["id"], json!(1), "{response}");
    assert!(response["result"]["version"].is_string(), "{response}");
    assert_pings(&mut conn, 2);
}

#[test]
fn a_line_one_byte_over_64_kib_gets_frame_too_long_and_the_connection_closes() {
    let d = Daemon::in_process_default();
    let mut conn = d.raw();
    let mut line = ping_of_length(1, MAX_LINE + 1);
    line.push(b'\n');
    conn.send(&line);
    assert_eq!(conn.read_line(), FRAME_TOO_LONG);
    assert!(conn.is_closed());
    assert_pings(&mut d.raw(), 1);
}

#[test]
fn a_one_mib_line_gets_frame_too_long_the_connection_closes_and_others_are_served() {
    let d = Daemon::in_process_default();
    let mut conn = d.raw();
    assert_pings(&mut conn, 1);
    // Another connection, open through it all.
    let mut bystander = d.raw();
    assert_pings(&mut bystander, 1);

    // Written from another thread: the daemon may stop reading before it is all sent.
    let mut line = ping_of_length(2, 1024 * 1024);
    line.push(b'\n');
    let mut writer = conn.writer();
    let write_thread = std::thread::spawn(move || writer.write_all(&line));

    assert_eq!(conn.read_line(), FRAME_TOO_LONG);
    assert!(
        conn.is_closed(),
        "the connection is closed after frame_too_long"
    );
    // The write ends, one way or the other, once the daemon has closed the connection.
    let _ = write_thread.join().expect("the writer thread");

    assert_pings(&mut bystander, 2);
    assert_pings(&mut d.raw(), 1);
    let pong: Pong = d
        .client()
        .call(&Request::Ping)
        .expect("a fresh client is served");
    assert!(!pong.version.is_empty());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    for options in each_store("pipelined_requests_are_answered_in_order") {
        pipelined_requests(&Daemon::in_process(options));
    }
}

fn pipelined_requests(d: &Endpoint) {
    create_acme(d);
    let mut conn = d.raw();
    // A write, a ping, a read of what was written, and a whoami, in one write.
    let batch = concat!(
        r#"{"jsonrpc":"2.0","id":1,"method":"user.invite","params":{"org":"acme","email":"deploy@example.com","role":"deployer"}}"#,
        "\n",
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
        "\n",
        r#"{"jsonrpc":"2.0","id":3,"method":"user.list","params":{"org":"acme"}}"#,
        "\n",
        r#"{"jsonrpc":"2.0","id":"four","method":"whoami"}"#,
        "\n",
    );
    conn.send(batch.as_bytes());

    let invited = conn.read_json();
    assert_eq!(invited["id"], json!(1), "{invited}");
    assert_eq!(invited["result"]["status"], json!("invited"), "{invited}");
    assert_eq!(
        invited["result"]["email"],
        json!("deploy@example.com"),
        "{invited}"
    );

    let pong = conn.read_json();
    assert_eq!(pong["id"], json!(2), "{pong}");
    assert!(pong["result"]["version"].is_string(), "{pong}");

    let list = conn.read_json();
    assert_eq!(list["id"], json!(3), "{list}");
    let emails: Vec<&str> = list["result"]["members"]
        .as_array()
        .unwrap_or_else(|| panic!("members: {list}"))
        .iter()
        .filter_map(|member| member["email"].as_str())
        .collect();
    assert_eq!(
        emails,
        ["admin@example.com", "deploy@example.com"],
        "{list}"
    );

    let whoami = conn.read_json();
    assert_eq!(whoami["id"], json!("four"), "{whoami}");
    assert_eq!(whoami["result"]["superuser"], json!(true), "{whoami}");
}
