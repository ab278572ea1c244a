//! The activation page (`--http-listen`), loaded in headless Chromium on each store: a
//! valid token shows the organization, the role, until when and the command to run (and
//! is not spent by being looked at); an expired, a used, a revoked and an unknown one each
//! get their own sentence and nothing about the organization; every answer keeps out of
//! caches and referrers; a client asking too often is told to wait.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use compartment_e2e::{
    each_store, free_port, http_get, parse_invite, root_test, skip_without_tool, Daemon, TestUser,
    ROOT, URL_PREFIX,
};

root_test!(
    the_activation_page_tells_the_invitee_what_to_run_and_no_one_else_anything,
    || {
        let test = "the_activation_page_tells_the_invitee_what_to_run_and_no_one_else_anything";
        if skip_without_tool(test, "chromium") {
            return;
        }
        for options in each_store(test) {
            let port = free_port();
            let d = Daemon::start(options.args(&["--http-listen", &format!("127.0.0.1:{port}")]));
            page(&d, port);
        }
    }
);

/// The page's address for an activation URL the CLI printed.
fn on_page(port: u16, url: &str) -> String {
    let token = url.strip_prefix(URL_PREFIX).unwrap_or(url);
    format!("http://127.0.0.1:{port}/activate?token={token}")
}

/// What headless Chromium shows of `url`: its document, after the page is loaded. A
/// screenshot at a phone's width goes beside the test's other output.
fn browse(url: &str, shot: &str) -> String {
    let shots = std::env::temp_dir().join("compartment-page-shots");
    std::fs::create_dir_all(&shots).unwrap();
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
    ];
    let shot_path = shots.join(format!("{shot}.png"));
    let out = Command::new("chromium")
        .args(common)
        .arg("--window-size=390,844")
        .arg(format!("--screenshot={}", shot_path.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium --screenshot: {out:?}");
    let out = Command::new("chromium")
        .args(common)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium --dump-dom: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The text a document shows: its style dropped, each tag a space, white space folded,
/// and no space left before punctuation.
fn text_of(dom: &str) -> String {
    let mut rest = dom;
    let mut text = String::new();
    if let (Some(start), Some(end)) = (dom.find("<style"), dom.find("</style>")) {
        text.push_str(&dom[..start]);
        rest = &dom[end..];
    }
    text.push_str(rest);
    let mut shown = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => {
                in_tag = true;
                shown.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => shown.push(c),
            _ => {}
        }
    }
    let folded = shown
        .replace("&amp;", "&")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    folded
        .replace(" ,", ",")
        .replace(" .", ".")
        .replace(" :", ":")
}

/// A raw request's status line and headers, lowercased, and its body.
fn get(port: u16, path: &str) -> (String, String) {
    http_get(port, path).expect("the page answers")
}

fn page(d: &Daemon, port: u16) {
    let admin = TestUser::get("cpt-pg-admin");
    let dev = TestUser::get("cpt-pg-dev");
    let acme = d.create_acme();

    // A valid token: what the invitee needs, and the command to run.
    let valid = text_of(&browse(&on_page(port, &acme.url), "valid"));
    assert!(
        valid.contains("You are invited to acme as admin, as admin@example.com."),
        "{valid}"
    );
    assert!(valid.contains("compartment activate"), "{valid}");
    assert!(
        valid.contains("Log in to the host as your own Unix user."),
        "{valid}"
    );
    // Looking at it spent nothing: the invitee redeems it after.
    d.activate(admin.uid, &acme.url).assert_success();
    let used = text_of(&browse(&on_page(port, &acme.url), "used"));
    assert!(
        used.contains("This invitation link has already been used"),
        "{used}"
    );
    assert!(!used.contains("acme") && !used.contains("admin@"), "{used}");

    // For one Unix user only: the page names the user.
    let out = d.ctl(
        ROOT,
        &[
            "--org",
            "acme",
            "user",
            "invite",
            "dev@example.com",
            "--role",
            "deployer",
            "--unix-user",
            &dev.name,
            "--access-until",
            "30days",
        ],
    );
    out.assert_success();
    let url = out
        .stdout_lines()
        .into_iter()
        .find_map(|line| line.strip_prefix("Activation URL: "))
        .unwrap()
        .to_owned();
    let named = text_of(&browse(&on_page(port, &url), "named"));
    assert!(
        named.contains(
            "Log in to the host as the Unix user cpt-pg-dev: this invitation is for that user only."
        ),
        "{named}"
    );
    assert!(
        named.contains("Your access will end by itself at"),
        "{named}"
    );

    // Revoked by a newer URL, expired, unknown: each its own sentence, nothing more.
    let first = parse_invite(
        &d.ctl(
            ROOT,
            &[
                "--org",
                "acme",
                "user",
                "invite",
                "r@example.com",
                "--role",
                "viewer",
            ],
        ),
        "r@example.com",
        "viewer",
    );
    d.ctl(
        ROOT,
        &[
            "--org",
            "acme",
            "user",
            "invite",
            "r@example.com",
            "--role",
            "viewer",
            "--resend",
        ],
    )
    .assert_success();
    let revoked = text_of(&browse(&on_page(port, &first.url), "revoked"));
    assert!(
        revoked.contains("This invitation link was replaced or revoked"),
        "{revoked}"
    );
    let late = parse_invite(
        &d.ctl(
            ROOT,
            &[
                "--org",
                "acme",
                "user",
                "invite",
                "late@example.com",
                "--role",
                "viewer",
                "--expires-in",
                "1s",
            ],
        ),
        "late@example.com",
        "viewer",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let expired = text_of(&browse(&on_page(port, &late.url), "expired"));
    assert!(
        expired.contains("This invitation link has expired"),
        "{expired}"
    );
    assert!(
        !expired.contains("acme") && !expired.contains("late@"),
        "{expired}"
    );
    let unknown = text_of(&browse(
        &format!(
            "http://127.0.0.1:{port}/activate?token=AaJPBrjfC2r_xCRfyB8h3JdDSn8hTJhtNBmBXXD_0a0"
        ),
        "unknown",
    ));
    assert!(
        unknown.contains("This invitation link is not valid"),
        "{unknown}"
    );

    // What every answer says to caches, referrers and browsers; and its status.
    for (path, status) in [
        (
            on_page(port, &url).replacen(&format!("http://127.0.0.1:{port}"), "", 1),
            "200",
        ),
        ("/activate?token=nope".to_owned(), "404"),
        ("/activate".to_owned(), "404"),
        ("/".to_owned(), "404"),
        (
            on_page(port, &late.url).replacen(&format!("http://127.0.0.1:{port}"), "", 1),
            "410",
        ),
    ] {
        let (head, body) = get(port, &path);
        assert!(
            head.starts_with(&format!("http/1.1 {status}")),
            "{path}: {head}"
        );
        for header in [
            "cache-control: no-store",
            "referrer-policy: no-referrer",
            "x-content-type-options: nosniff",
            "content-security-policy: default-src 'none'",
        ] {
            assert!(head.contains(header), "{path}: {header} missing in {head}");
        }
        assert!(!body.contains("<script"), "{path}: {body}");
    }
    // A client asking too often is told to wait.
    let limited = (0..30)
        .map(|_| get(port, "/activate?token=nope"))
        .find(|(head, _)| head.starts_with("http/1.1 429"));
    let (_, body) = limited.expect("never limited");
    assert!(body.contains("Try again in a minute"), "{body}");
}
