//! `compartment admin status`: the daemon's account of itself for superusers, on redb and
//! on PostgreSQL, and while its PostgreSQL is out of reach.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use compartment_e2e::{
    parse_rfc3339, poll, root_test, Daemon, DaemonOptions, Database, Endpoint, TestUser, ROOT,
};
use serde_json::Value;

/// The width of the keys' column: the longest key, `conflicts retried:`, and a space.
const KEY_WIDTH: usize = "conflicts retried: ".len();

/// `key: value` as `admin status` prints it, the value in the aligned column.
fn line(key: &str, value: &str) -> String {
    format!("{:KEY_WIDTH$}{value}", format!("{key}:"))
}

/// `admin status` as root: its lines.
fn status_text(d: &Endpoint) -> Vec<String> {
    let out = d.ctl(ROOT, &["admin", "status"]);
    out.assert_success();
    out.stdout_lines().into_iter().map(str::to_owned).collect()
}

/// `admin status --output json` as root.
fn status_json(d: &Endpoint) -> Value {
    let out = d.ctl(ROOT, &["--output", "json", "admin", "status"]);
    out.assert_success();
    serde_json::from_str(&out.stdout).unwrap()
}

/// The value of `key`'s line, which must be in the aligned column.
fn value_of<'a>(lines: &'a [String], key: &str) -> &'a str {
    let prefix = line(key, "");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key:?} line in {lines:#?}"))
}

fn is_u64(value: &Value) -> bool {
    value.as_u64().is_some()
}

/// A daemon just started on redb: its version, schema, store, an empty writer and sweeper;
/// then, once an invitation lapsed and was swept, the sweep and the writer's batch, in text
/// and in JSON with the wire's types.
#[test]
fn admin_status_on_redb_tells_the_daemon_store_writer_and_sweeper() {
    let d = Daemon::in_process(DaemonOptions::new().args(&[
        "--invitation-ttl",
        "1s",
        "--sweep-interval",
        "1s",
    ]));
    let db = std::fs::canonicalize(d.db_path()).unwrap();
    let version = env!("CARGO_PKG_VERSION");

    let lines = status_text(&d);
    let keys: Vec<&str> = lines.iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "version",
            "schema",
            "store",
            "reachable",
            "uptime",
            "connections",
            "writer queue",
            "last batch",
            "last sweep",
            "feed head",
        ],
        "{lines:#?}"
    );
    assert_eq!(lines[0], line("version", version));
    assert_eq!(lines[1], line("schema", "8"));
    assert_eq!(lines[2], line("store", &format!("redb {}", db.display())));
    assert_eq!(lines[3], line("reachable", "yes"));
    assert!(value_of(&lines, "uptime").ends_with('s'), "{lines:#?}");
    assert!(value_of(&lines, "connections").parse::<u64>().unwrap() >= 1);
    assert_eq!(lines[6], line("writer queue", "0"));
    assert_eq!(lines[7], line("last batch", "none yet"));
    assert_eq!(lines[8], line("last sweep", "none yet"));
    assert_eq!(lines[9], line("feed head", "0"));

    // acme's admin, invited for a second, lapses and is swept.
    d.create_acme();
    let json = poll(Duration::from_secs(20), || {
        let json = status_json(&d);
        (json["last_sweep"]["expired"] == 1).then_some(json)
    })
    .expect("the lapsed invitation is swept within 20 s");
    assert_eq!(json["version"], version, "{json}");
    assert_eq!(json["schema_version"], 8, "{json}");
    assert_eq!(
        json["store"],
        serde_json::json!({"engine": "redb", "path": db.display().to_string()}),
        "{json}"
    );
    assert!(is_u64(&json["uptime_secs"]), "{json}");
    assert!(json["connections"].as_u64().unwrap() >= 1, "{json}");
    assert!(is_u64(&json["writer_queue"]), "{json}");
    let batch = &json["last_batch"];
    assert!(batch["changes"].as_u64().unwrap() >= 1, "{json}");
    assert!(
        parse_rfc3339(batch["at"].as_str().unwrap()).is_some(),
        "{json}"
    );
    assert!(is_u64(&batch["commit_micros"]), "{json}");
    let sweep_at = json["last_sweep"]["at"].as_str().unwrap();
    assert!(parse_rfc3339(sweep_at).is_some(), "{json}");
    // The organization's creation and the invitation's expiry are on the feed.
    assert!(json["feed_head"].as_u64().unwrap() >= 2, "{json}");
    assert_eq!(json["reachable"], true, "{json}");
    assert_eq!(json["conflicts"], Value::Null, "{json}");
    let members = json.as_object().unwrap().len();
    assert_eq!(members, 11, "every member of the result, no more: {json}");

    let lines = status_text(&d);
    assert_eq!(
        value_of(&lines, "last sweep"),
        format!("1 expired at {sweep_at}")
    );
    let batch = value_of(&lines, "last batch");
    assert!(
        batch.starts_with("1 change at ") && batch.ends_with(" ms"),
        "{lines:#?}"
    );
}

root_test!(admin_status_is_refused_to_everyone_but_superusers, || {
    let d = Daemon::in_process_default();
    let someone = TestUser::get("cpt-status");
    d.ctl(someone.uid, &["admin", "status"]).assert_err_hint(
        4,
        "reading the daemon's status is for superusers (root or the daemon's own user)",
        "run it as root",
    );
    let out = d.ctl(someone.uid, &["--output", "json", "admin", "status"]);
    assert_eq!((out.code, out.stdout.as_str()), (4, ""), "{out:#?}");
    assert_eq!(
        out.stderr,
        concat!(
            r#"{"code":-32002,"message":"reading the daemon's status is for superusers (root or the daemon's own user)","#,
            r#""data":{"kind":"forbidden","hint":"run it as root"}}"#,
            "\n"
        ),
        "{out:#?}"
    );
});

/// On PostgreSQL the store line names the host, port, database and user, never a
/// password, and the conflicts count appears; with the server stopped, the status still
/// answers, from what the daemon keeps, and says the store is out of reach.
#[test]
fn admin_status_on_postgresql_answers_while_the_database_is_down() {
    let Some(database) =
        Database::start("admin_status_on_postgresql_answers_while_the_database_is_down")
    else {
        return;
    };
    let d = Daemon::in_process(DaemonOptions::new().postgres(&database));
    d.create_acme();
    let socket_dir = database.server().socket_dir().display().to_string();
    let lines = status_text(&d);
    let store = format!("postgresql host={socket_dir} port=5432 dbname=postgres user=compartment");
    assert_eq!(lines[2], line("store", &store), "{lines:#?}");
    assert_eq!(lines[3], line("reachable", "yes"), "{lines:#?}");
    assert_eq!(lines.last().unwrap(), &line("conflicts retried", "0"));
    assert!(!lines.iter().any(|l| l.contains("password")), "{lines:#?}");
    let json = status_json(&d);
    assert_eq!(
        json["store"],
        serde_json::json!({
            "engine": "postgresql",
            "hosts": [socket_dir],
            "ports": [5432],
            "database": "postgres",
            "user": "compartment",
        }),
        "{json}"
    );
    assert_eq!(json["conflicts"], 0, "{json}");
    assert_eq!(json["last_batch"]["changes"], 1, "{json}");

    database.server().stop_server().unwrap();
    let lines = poll(Duration::from_secs(20), || {
        let lines = status_text(&d);
        (value_of(&lines, "reachable") == "no").then_some(lines)
    })
    .expect("the status says PostgreSQL is out of reach within 20 s");
    assert_eq!(lines[2], line("store", &store), "{lines:#?}");
    assert_eq!(json["reachable"], true);
    assert_eq!(status_json(&d)["reachable"], false);
    database.server().start_server().unwrap();
    poll(Duration::from_secs(20), || {
        (status_json(&d)["reachable"] == true).then_some(())
    })
    .expect("reachable again within 20 s of the server's start");
}
