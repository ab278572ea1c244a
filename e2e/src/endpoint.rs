//! What every test daemon offers, wherever it runs: its own temp dir with the socket and
//! the state directory, and every way a test talks to it (the CLI as any uid, the library
//! client, raw connections). [`crate::Daemon`] (the built binary) and [`crate::InProcess`]
//! (the server in the test process) both dereference to an [`Endpoint`], so a helper that
//! takes `&Endpoint` serves tests of either.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use compartmentctl::wire::{MemberList, Request, Response, UserListParams, MAX_PAGE};
use compartmentctl::Client;

use crate::printed::{parse_invitation_lines, InvitationLines};
use crate::privileges::ROOT;
use crate::process::{ctl_command, Out, Running};
use crate::raw::RawConn;

/// A test daemon's temp dir: `<dir>/compartmentd.sock`, `<dir>/state/`, and the ways to
/// reach the daemon listening there.
pub struct Endpoint {
    dir: tempfile::TempDir,
}

impl Endpoint {
    /// A fresh temp dir, open for other uids to pass through.
    pub(crate) fn new() -> Endpoint {
        let dir = tempfile::Builder::new()
            .prefix("compartment-e2e-")
            .tempdir()
            .expect("a temp dir");
        // Temp dirs are 0700; the CLI run as other uids must reach the socket inside.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("chmod the temp dir");
        Endpoint { dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("compartmentd.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir().join("state")
    }

    pub fn db_path(&self) -> PathBuf {
        self.state_dir().join("compartment.redb")
    }

    /// True when a fresh connection gets a `ping` result.
    pub fn answers_ping(&self) -> bool {
        let Ok(stream) = UnixStream::connect(self.socket()) else {
            return false;
        };
        let mut conn = RawConn::from_stream(stream, Duration::from_secs(2));
        if conn
            .try_send(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")
            .is_err()
        {
            return false;
        }
        match conn.try_read_line() {
            Ok(Some(line)) => serde_json::from_str::<Response>(&line)
                .map(|response| response.result.is_some())
                .unwrap_or(false),
            _ => false,
        }
    }

    /// Runs `compartmentctl --socket <socket> <args…>` as `uid` and waits for it.
    #[track_caller]
    pub fn ctl(&self, uid: u32, args: &[&str]) -> Out {
        self.spawn_ctl(uid, args).wait()
    }

    /// Starts `compartmentctl` as `uid` without waiting, for races.
    pub fn spawn_ctl(&self, uid: u32, args: &[&str]) -> Running {
        Running::spawn(ctl_command(&self.socket(), uid, args))
    }

    /// Runs `compartmentctl --socket <socket> <args…>` as `uid` with `input` on its stdin,
    /// and waits for it.
    #[track_caller]
    pub fn ctl_with_stdin(&self, uid: u32, args: &[&str], input: &str) -> Out {
        Running::spawn_with_stdin(
            ctl_command(&self.socket(), uid, args),
            Some(input.as_bytes().to_vec()),
        )
        .wait()
    }

    /// `compartmentctl activate` as `uid` the documented way, the URL on stdin (never in
    /// argv, where other users could read it), and waits for it.
    #[track_caller]
    pub fn activate(&self, uid: u32, url: &str) -> Out {
        self.ctl_with_stdin(uid, &["activate"], &format!("{url}\n"))
    }

    /// Starts [`Daemon::activate`] without waiting, for races.
    pub fn spawn_activate(&self, uid: u32, url: &str) -> Running {
        Running::spawn_with_stdin(
            ctl_command(&self.socket(), uid, &["activate"]),
            Some(format!("{url}\n").into_bytes()),
        )
    }

    /// Root creates `acme` with `admin@example.com`; returns the admin's invitation, after
    /// checking the page's lines.
    #[track_caller]
    pub fn create_acme(&self) -> InvitationLines {
        self.create_org("acme", "admin@example.com")
    }

    /// Root creates `name` with its first admin `admin`; returns the admin's invitation,
    /// after checking the page's lines.
    #[track_caller]
    pub fn create_org(&self, name: &str, admin: &str) -> InvitationLines {
        let out = self.ctl(ROOT, &["org", "create", name, "--admin", admin]);
        out.assert_success();
        let lines = out.stdout_lines();
        assert_eq!(
            lines.first().copied(),
            Some(format!("Created organization {name}.").as_str()),
            "{out:#?}"
        );
        parse_invitation_lines(&lines[1..], admin, "admin")
    }

    /// A library client, as the test process (root: a superuser).
    pub fn client(&self) -> Client {
        Client::connect(&self.socket()).expect("connect to compartmentd")
    }

    /// A raw connection, as the test process.
    pub fn raw(&self) -> RawConn {
        RawConn::connect(&self.socket())
    }

    /// Every member of `org`, asked over the library client as the test process, page by
    /// page until the last (which has no `next`).
    pub fn members(&self, org: &str) -> MemberList {
        let mut client = self.client();
        let mut all = MemberList {
            org: org.to_owned(),
            members: Vec::new(),
            next: None,
            groups: Default::default(),
        };
        let mut after = None;
        loop {
            let page: MemberList = client
                .call(&Request::UserList(UserListParams {
                    org: Some(org.to_owned()),
                    limit: Some(MAX_PAGE),
                    after: after.take(),
                    status: None,
                }))
                .unwrap_or_else(|err| panic!("user.list in {org}: {err}"));
            all.org = page.org;
            all.members.extend(page.members);
            match page.next {
                Some(next) => after = Some(next),
                None => return all,
            }
        }
    }
}
