//! The daemon's metrics on each store: `compartment admin metrics` (superusers only) and
//! `--metrics-textfile` give the same Prometheus text, which `promtool check metrics`
//! accepts and Debian's `prometheus-node-exporter` serves through its textfile collector
//! with every family typed as the daemon typed it; requests are counted by method and
//! outcome, never by anything a client names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use compartment_e2e::{
    each_store, free_port, http_get, poll, root_test, run_compartmentd, skip_without_tool, Daemon,
    TestUser, ROOT,
};

/// `admin metrics` as root.
fn metrics(d: &Daemon) -> String {
    let out = d.ctl(ROOT, &["admin", "metrics"]);
    out.assert_success();
    out.stdout
}

/// The sample line of `name` with `labels` (as the text writes them), if there is one.
fn sample<'a>(text: &'a str, name_and_labels: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' '))
}

/// `promtool check metrics` on `text`: what it said, and whether it passed.
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

root_test!(
    the_metrics_count_requests_and_read_the_same_in_promtool_and_node_exporter,
    || {
        let test = "the_metrics_count_requests_and_read_the_same_in_promtool_and_node_exporter";
        if skip_without_tool(test, "promtool")
            || skip_without_tool(test, "prometheus-node-exporter")
        {
            return;
        }
        for options in each_store(test) {
            let textfiles = tempfile::tempdir().unwrap();
            let textfile = textfiles.path().join("compartmentd.prom");
            let postgres = options.is_postgres();
            let d = Daemon::start(options.args(&[
                "--metrics-textfile",
                textfile.to_str().unwrap(),
                "--metrics-interval",
                "200ms",
            ]));
            d.create_acme();
            let someone = TestUser::get("cpt-metrics");
            for _ in 0..3 {
                d.ctl(ROOT, &["whoami"]).assert_success();
            }
            // Refused twice: a user the daemon does not know asks for acme's members.
            for _ in 0..2 {
                let out = d.ctl(someone.uid, &["user", "list", "--org", "acme"]);
                assert_eq!(out.code, 4, "{out:?}");
            }
            // A method nobody declared is counted as undecoded, under no name of its own.
            let mut raw = d.raw();
            raw.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"made.up.by.a.client"}"#);
            assert!(raw.read_line().contains("unknown_method"));

            let text = metrics(&d);
            let (passed, said) = promtool(&text);
            assert!(passed, "promtool check metrics: {said}\n{text}");
            assert_eq!(said, "", "promtool has nothing to say about the text");

            assert_eq!(
                sample(
                    &text,
                    r#"compartment_requests_total{method="whoami",outcome="ok"}"#
                ),
                Some("3"),
                "{text}"
            );
            assert_eq!(
                sample(
                    &text,
                    r#"compartment_requests_total{method="user.list",outcome="unauthenticated"}"#
                ),
                Some("2"),
                "{text}"
            );
            assert_eq!(
                sample(
                    &text,
                    r#"compartment_requests_total{method="(undecoded)",outcome="unknown_method"}"#
                ),
                Some("1"),
                "{text}"
            );
            assert!(!text.contains("made.up"), "{text}");
            assert!(!text.contains("acme"), "no organization is named: {text}");
            assert_eq!(
                sample(
                    &text,
                    r#"compartment_request_duration_seconds_count{method="whoami"}"#
                ),
                Some("3"),
                "{text}"
            );
            assert!(text.contains("# TYPE compartment_request_duration_seconds histogram\n"));
            assert!(text.contains("# TYPE compartment_requests_total counter\n"));
            // org.create's batch committed, and the connections were let in.
            assert_ne!(sample(&text, "compartment_writer_changes_total"), Some("0"));
            assert!(text.contains("compartment_writer_commit_duration_seconds_count"));
            let accepted: u64 = sample(&text, "compartment_connections_accepted_total")
                .unwrap()
                .parse()
                .unwrap();
            assert!(accepted >= 7, "{text}");
            assert!(sample(&text, "compartment_connections_open").is_some());
            assert_eq!(
                sample(&text, "compartment_store_size_bytes").is_some(),
                !postgres,
                "the file's size on redb only: {text}"
            );
            assert_eq!(sample(&text, "compartment_store_reachable"), Some("1"));
            assert_eq!(
                sample(&text, "compartment_store_conflicts_total").is_some(),
                postgres,
                "conflicts on PostgreSQL only: {text}"
            );
            assert_eq!(
                sample(
                    &text,
                    &format!(
                        r#"compartment_build_info{{version="{}"}}"#,
                        env!("CARGO_PKG_VERSION")
                    )
                ),
                Some("1")
            );

            // The textfile: the same families, written within the interval.
            let written = poll(Duration::from_secs(10), || {
                let written = std::fs::read_to_string(&textfile).ok()?;
                (sample(
                    &written,
                    r#"compartment_requests_total{method="admin.metrics",outcome="ok"}"#,
                ) == Some("1"))
                .then_some(written)
            })
            .expect("the textfile counts the admin.metrics request within 10 s");
            let (passed, said) = promtool(&written);
            assert!(passed, "promtool check metrics: {said}\n{written}");
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&textfile).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644, "the collector's user reads it");
            node_exporter_reads(textfiles.path());
        }
    }
);

/// Debian's node_exporter, its textfile collector pointed at `dir`, serves the daemon's
/// families with their types and no scrape error.
fn node_exporter_reads(dir: &Path) {
    let port = free_port();
    let mut exporter = Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--collector.disable-defaults")
        .arg("--collector.textfile")
        .arg(format!("--collector.textfile.directory={}", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let served = poll(Duration::from_secs(10), || {
        http_get(port, "/metrics")
            .map(|(_, body)| body)
            .filter(|body| body.contains("compartment_"))
    });
    let _ = exporter.kill();
    let _ = exporter.wait();
    let served = served.expect("node_exporter serves the textfile within 10 s");
    for family in [
        "# TYPE compartment_requests_total counter",
        "# TYPE compartment_request_duration_seconds histogram",
        "# TYPE compartment_connections_open gauge",
        "# TYPE compartment_writer_batch_changes histogram",
        "# TYPE compartment_feed_subscribers gauge",
    ] {
        assert!(served.contains(family), "{family} in {served}");
    }
    assert!(served.contains("node_textfile_scrape_error 0"), "{served}");
    assert!(!served.contains("untyped"), "{served}");
}

root_test!(the_metrics_are_for_superusers_only, || {
    for options in each_store("the_metrics_are_for_superusers_only") {
        let d = Daemon::start(options);
        let acme = d.create_acme();
        let admin = TestUser::get("cpt-metrics-admin");
        d.activate(admin.uid, &acme.url).assert_success();
        // Even an organization's admin: the figures are the host's, not an organization's.
        d.ctl(admin.uid, &["admin", "metrics"]).assert_err_hint(
            4,
            "reading the daemon's metrics is for superusers (root or the daemon's own user)",
            "run it as root",
        );
        let out = d.ctl(admin.uid, &["--output", "json", "admin", "metrics"]);
        assert_eq!((out.code, out.stdout.as_str()), (4, ""), "{out:#?}");
        assert!(out.stderr.contains(r#""kind":"forbidden""#), "{out:#?}");
    }
});

#[test]
fn a_textfile_not_named_prom_or_in_no_directory_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| run_compartmentd(dir.path(), args);
    let out = run(&["--metrics-textfile", "/tmp/compartmentd.txt", "check"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "must name a file ending in .prom: node_exporter's textfile collector reads only those"
        ),
        "{out:?}"
    );
    let out = run(&["--metrics-textfile", "/no/such/dir/c.prom", "check"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("/no/such/dir is not a directory"),
        "{out:?}"
    );
}
