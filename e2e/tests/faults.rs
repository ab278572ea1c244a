//! Faults the daemon must survive without losing anything acknowledged: a full disk, and
//! database files that are truncated, damaged or written by a newer schema (refused, left
//! untouched, with a message that says what to do).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use compartment_e2e::{binary, ctl_command, root_test, Daemon};
use compartmentctl::wire::{MemberList, Pong, Request, UserListParams};
use compartmentctl::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("state");
        std::fs::create_dir(&mount).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&mount)
            .status()
            .ok()?;
        status.success().then_some(SmallDisk { mount, _dir: dir })
    }

    /// Fills what is left with a file, and returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.mount.join("filler");
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", filler.display()))
            .args(["bs=64k", "count=100000"])
            .stderr(Stdio::null())
            .status();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

fn start_daemon(socket: &Path, state_dir: &Path) -> Child {
    let child = Command::new(binary("compartmentd"))
        .arg("--socket")
        .arg(socket)
        .arg("--state-dir")
        .arg(state_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Client::connect(socket)
        .and_then(|mut c| c.call::<Pong>(&Request::Ping))
        .is_err()
    {
        assert!(Instant::now() < deadline, "the daemon did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn stop(mut child: Child) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
}

fn members(socket: &Path) -> Vec<String> {
    let list: MemberList = Client::connect(socket)
        .unwrap()
        .call(&Request::UserList(UserListParams {
            org: Some("acme".into()),
            ..UserListParams::default()
        }))
        .unwrap();
    list.members.into_iter().map(|m| m.email).collect()
}

fn invite(socket: &Path, email: &str) -> std::process::Output {
    ctl_command(
        socket,
        0,
        &["--org", "acme", "user", "invite", email, "--role", "viewer"],
    )
    .output()
    .unwrap()
}

root_test!(
    a_full_disk_refuses_writes_clearly_keeps_reads_and_recovers,
    "to mount a tmpfs",
    || {
        let Some(disk) = SmallDisk::new("4m") else {
            panic!("mounting a tmpfs failed although running as root");
        };
        let socket = disk._dir.path().join("d.sock");
        let daemon = start_daemon(&socket, &disk.mount);
        let out = ctl_command(
            &socket,
            0,
            &["org", "create", "acme", "--admin", "admin@example.com"],
        )
        .output()
        .unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut acknowledged = vec!["admin@example.com".to_owned()];
        for i in 0..10 {
            let email = format!("before{i}@example.com");
            assert!(invite(&socket, &email).status.success());
            acknowledged.push(email);
        }

        let filler = disk.fill();
        // Pages redb had already allocated may absorb some writes; once one is refused for
        // lack of space, every later one is, each told why, until space is freed.
        let mut refused = 0;
        for i in 0..200 {
            let email = format!("during{i}@example.com");
            let out = invite(&socket, &email);
            if out.status.success() {
                assert_eq!(
                    refused, 0,
                    "a write succeeded after one was refused: {out:?}"
                );
                acknowledged.push(email);
                continue;
            }
            refused += 1;
            assert_eq!(out.status.code(), Some(1), "{out:?}");
            assert_eq!(
                String::from_utf8_lossy(&out.stderr),
                "compartmentctl: the change was not saved: the daemon's disk is full\n\
             hint: free space on the daemon's state directory, then try again\n"
            );
            if refused == 10 {
                break;
            }
        }
        assert_eq!(refused, 10, "200 writes fit on a full disk");
        // Reads keep working, and show everything acknowledged.
        let mut listed = members(&socket);
        listed.sort();
        acknowledged.sort();
        assert_eq!(listed, acknowledged);

        std::fs::remove_file(filler).unwrap();
        let out = invite(&socket, "after@example.com");
        assert!(
            out.status.success(),
            "writes did not resume once space was freed: {out:?}"
        );
        acknowledged.push("after@example.com".into());

        stop(daemon);
        let daemon = start_daemon(&socket, &disk.mount);
        let mut listed = members(&socket);
        listed.sort();
        acknowledged.sort();
        assert_eq!(listed, acknowledged, "something acknowledged was lost");
        stop(daemon);
    }
);

/// What the daemon says of a truncated or damaged database.
const DAMAGED: &[&str] = &[
    "is damaged",
    "it was left untouched",
    "restore it from a backup",
];

/// A stopped daemon's state dir holding an org with a few members.
fn a_used_database() -> Daemon {
    let mut daemon = Daemon::start_default();
    daemon
        .ctl(
            0,
            &["org", "create", "acme", "--admin", "admin@example.com"],
        )
        .assert_success();
    for i in 0..20 {
        daemon
            .ctl(
                0,
                &[
                    "--org",
                    "acme",
                    "user",
                    "invite",
                    &format!("u{i}@example.com"),
                    "--role",
                    "viewer",
                ],
            )
            .assert_success();
    }
    daemon.stop();
    daemon
}

/// Starts a daemon on a bad database: it must refuse, say `expected`, and not touch it.
fn assert_refused(daemon: &Daemon, expected: &[&str]) {
    let before = std::fs::read(daemon.db_path()).unwrap();
    let other_socket = daemon.dir().join("other.sock");
    let out = daemon
        .run_second_daemon(&other_socket, &daemon.state_dir())
        .expect("the daemon kept running on a bad database");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        !out.stderr.contains("panicked"),
        "a panic reached the operator: {}",
        out.stderr
    );
    for words in expected {
        assert!(
            out.stderr.contains(words),
            "stderr lacks {words:?}: {}",
            out.stderr
        );
    }
    assert!(
        std::fs::read(daemon.db_path()).unwrap() == before,
        "the daemon modified the bad database"
    );
}

#[test]
fn a_truncated_database_is_refused_and_left_untouched() {
    let daemon = a_used_database();
    let bytes = std::fs::read(daemon.db_path()).unwrap();
    std::fs::write(daemon.db_path(), &bytes[..bytes.len() / 2]).unwrap();
    assert_refused(&daemon, DAMAGED);
}

#[test]
fn a_damaged_database_is_refused_and_left_untouched() {
    let daemon = a_used_database();
    let mut bytes = std::fs::read(daemon.db_path()).unwrap();
    for page in (4096..bytes.len()).step_by(4096) {
        bytes[page + 100..page + 164].copy_from_slice(&[0x5A; 64]);
    }
    std::fs::write(daemon.db_path(), &bytes).unwrap();
    assert_refused(&daemon, DAMAGED);
}

#[test]
fn a_database_from_a_newer_schema_is_refused_and_left_untouched() {
    let daemon = a_used_database();
    {
        const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
        let db = redb::Database::create(daemon.db_path()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 99)
            .unwrap();
        txn.commit().unwrap();
    }
    let understood = format!(
        "newer than the {} this compartmentd understands",
        compartmentd::store::CURRENT_SCHEMA_VERSION
    );
    assert_refused(
        &daemon,
        &["schema version 99", &understood, "run a newer compartmentd"],
    );
}

/// What `compartmentd check` printed and its exit code.
#[derive(Debug)]
struct Checked {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `compartmentd check --state-dir <daemon's state dir>`, waited for.
fn check(daemon: &Daemon) -> Checked {
    let out = Command::new(binary("compartmentd"))
        .arg("check")
        .arg("--state-dir")
        .arg(daemon.state_dir())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("run compartmentd check");
    Checked {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn check_reports_a_clean_database_with_what_it_holds() {
    let daemon = a_used_database();
    let out = check(&daemon);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            format!("checking {}", daemon.db_path().display()).as_str(),
            "pages: every checksum verified",
            "indexes: they agree with the tables",
            format!(
                "contents: schema version {}, 1 organizations, 21 memberships, 21 accounts",
                compartmentd::store::CURRENT_SCHEMA_VERSION
            )
            .as_str(),
            "clean",
        ]
    );
}

/// A start reads what it needs and no more (so that it stays quick on a large database);
/// damage in a page no start reads is found by `check`, which exits 1 and says so.
#[test]
fn check_finds_damage_that_a_start_does_not_read() {
    let mut daemon = a_used_database();
    let mut bytes = std::fs::read(daemon.db_path()).unwrap();
    // The leaf that holds the members' e-mail addresses: garbage over one of them.
    let at = bytes
        .windows(b"u13@example.com".len())
        .position(|w| w == b"u13@example.com")
        .expect("a member's address is in the file");
    bytes[at..at + 15].copy_from_slice(b"XXXXXXXXXXXXXXX");
    std::fs::write(daemon.db_path(), &bytes).unwrap();
    daemon.restart();
    assert!(daemon.answers_ping(), "the daemon did not start");
    // A request that reads the damaged page gets an answer, and the daemon lives on.
    daemon.ctl(0, &["--org", "acme", "user", "list"]);
    assert!(
        daemon.answers_ping(),
        "reading the damaged page stopped the daemon"
    );
    daemon.stop();
    let out = check(&daemon);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("checking {}\n", daemon.db_path().display())
    );
    assert!(
        out.stderr.starts_with(&format!(
            "compartmentd: the database {} is damaged (",
            daemon.db_path().display()
        )),
        "{out:?}"
    );
    assert!(
        out.stderr
            .ends_with(") and cannot be repaired: restore it from a backup\n"),
        "{out:?}"
    );
}

#[test]
fn check_refuses_a_database_in_use_and_a_missing_one() {
    let mut daemon = a_used_database();
    daemon.restart();
    let out = check(&daemon);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("is in use by another compartmentd"),
        "{out:?}"
    );
    daemon.stop();
    std::fs::remove_file(daemon.db_path()).unwrap();
    let out = check(&daemon);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr.trim(),
        format!(
            "compartmentd: there is no database at {}: nothing to check",
            daemon.db_path().display()
        )
    );
}
