//! The daemon in process over a temporary socket: the clock it is given drives expiry,
//! the sweeper wakes at the earliest expiry, shutdown is graceful. Every daemon here runs
//! on a fake clock; a test waits for what it proves to be observable, and a deadline only
//! fails a test that hangs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use compartmentctl::wire::{
    ActivateParams, ErrorKind, MemberList, MemberStatus, OrgCreateParams, OrgCreated, Request,
    UserListParams,
};
use compartmentctl::{Client, ClientError};
use compartmentd::clock::{Clock, FakeClock};
use compartmentd::limits::Limits;
use compartmentd::rules::Policy;
use compartmentd::server::{self, Daemon};
use compartmentd::store::{Backend as _, Reader, Store};
use tokio::sync::oneshot;

/// 2026-05-01T12:00:00Z, where every fake clock here starts.
const T0: u64 = 1_777_636_800_000;

/// Longer than any test runs: a wait on it (a sweep interval, a connection timeout) never
/// ends within a test, so what a test sees happen did not come from it.
const NEVER: Duration = Duration::from_secs(365 * 86_400);

/// How long a test waits for what it expects before it fails as hung. Never a measure of
/// promptness: what a test proves, it proves by what happens and in which order.
const HANG: Duration = Duration::from_secs(60);

struct Running {
    socket: PathBuf,
    store: Arc<Store>,
    stop_tx: Option<oneshot::Sender<()>>,
    done_rx: mpsc::Receiver<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

fn start(clock: Arc<dyn Clock>, ttl: Duration, sweep_interval: Duration) -> Running {
    start_with(clock, ttl, sweep_interval, Limits::default())
}

fn start_with(
    clock: Arc<dyn Clock>,
    ttl: Duration,
    sweep_interval: Duration,
    limits: Limits,
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("d.sock");
    let store = Arc::new(Store::open(&dir.path().join("state")).unwrap());
    let listener = compartmentd::socket::bind(&socket).unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let daemon = Daemon {
        store: store.clone(),
        clock,
        policy: Policy {
            public_url: "https://your-compartment-host".into(),
            invitation_ttl: ttl,
        },
        daemon_uid: nix::unistd::geteuid().as_raw(),
        sweep_interval,
        limits,
        users: compartmentd::users::SystemUsers::new(),
        service_group: None,
        audit_retention: compartmentd::retention::Retention::Forever,
        audit: Arc::new(compartmentd::checkpoint::Keeper::new(
            compartmentd::checkpoint::Signer::from_secret(
                &[3; 32],
                "test/compartment-audit".into(),
            ),
            Duration::from_secs(3600),
        )),
        http: Default::default(),
        metrics_textfile: None,
        watchdog: None,
    };
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let served = runtime.block_on(async move {
            let listener = tokio::net::UnixListener::from_std(listener)?;
            server::run(listener, daemon, async {
                let _ = stop_rx.await;
            })
            .await
        });
        let _ = done_tx.send(served);
    });
    Running {
        socket,
        store,
        stop_tx: Some(stop_tx),
        done_rx,
        _dir: dir,
    }
}

impl Running {
    fn client(&self) -> Client {
        Client::connect(&self.socket).unwrap()
    }

    /// Asks the server to stop and waits until `server::run` has returned; fails the test
    /// when it has not after [`HANG`].
    fn stop(mut self) {
        self.stop_tx.take().unwrap().send(()).unwrap();
        self.done_rx
            .recv_timeout(HANG)
            .unwrap_or_else(|_| panic!("server::run had not returned {HANG:?} after the stop"))
            .unwrap();
    }

    /// `email`'s membership of acme as stored.
    fn stored(&self, email: &str) -> compartmentd::store::MembershipRecord {
        self.store
            .read()
            .unwrap()
            .membership("acme", email)
            .unwrap()
            .unwrap()
    }
}

fn create_acme(client: &mut Client) -> OrgCreated {
    client
        .call(&Request::OrgCreate(OrgCreateParams {
            name: "acme".into(),
            admin: "admin@example.com".into(),
            admin_unix_user: None,
            expires_in: Default::default(),
        }))
        .unwrap()
}

fn list_acme(client: &mut Client) -> MemberList {
    client
        .call(&Request::UserList(UserListParams {
            org: Some("acme".into()),
            ..UserListParams::default()
        }))
        .unwrap()
}

#[test]
fn expiry_follows_the_daemons_clock() {
    let clock = Arc::new(FakeClock::new(T0));
    // Whether or not the sweeper has run by then (it may wake when the invitation is
    // written), the daemon's clock decides: rules::tests shows the refusal without a sweep.
    let daemon = start(
        clock.clone(),
        Duration::from_secs(7 * 86_400),
        Duration::from_secs(3600),
    );
    let mut client = daemon.client();
    let created = create_acme(&mut client);
    assert_eq!(
        created.admin.expires_at.as_deref(),
        Some("2026-05-08T12:00:00Z")
    );
    let url = created.admin.activation_url.unwrap();

    clock.advance(Duration::from_secs(7 * 86_400));
    let members = list_acme(&mut client);
    assert_eq!(members.members[0].status, MemberStatus::Expired);
    let Err(ClientError::Rpc(err)) =
        client.call::<serde_json::Value>(&Request::AccountActivate(ActivateParams { token: url }))
    else {
        panic!("activation of an expired token succeeded");
    };
    assert_eq!(err.kind(), ErrorKind::TokenExpired);
    assert_eq!(
        err.message,
        "this activation URL expired at 2026-05-08T12:00:00Z"
    );
    daemon.stop();
}

/// The sweeper's interval is [`NEVER`]: an invitation swept at all was swept because the
/// sweeper woke at its expiry. Before the daemon's clock reaches it, it is not swept.
#[test]
fn the_sweeper_wakes_at_the_earliest_expiry_not_its_interval() {
    let clock = Arc::new(FakeClock::new(T0));
    let ttl = Duration::from_millis(300);
    let daemon = start(clock.clone(), ttl, NEVER);
    let mut client = daemon.client();
    create_acme(&mut client);
    let invited = daemon.stored("admin@example.com");
    assert_eq!(invited.status, MemberStatus::Invited);
    assert!(invited.token_hash.is_some());

    clock.advance(ttl);
    let deadline = Instant::now() + HANG;
    let swept = loop {
        let stored = daemon.stored("admin@example.com");
        if stored.status == MemberStatus::Expired {
            break stored;
        }
        assert!(
            Instant::now() < deadline,
            "not swept {HANG:?} after its expiry, with a sweep interval of a year"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(swept.token_hash, None, "the sweeper deletes the token");
    let audit = daemon.store.read().unwrap().audit().unwrap();
    assert_eq!(
        audit.last().unwrap().event,
        "organization.invitation.expire"
    );
    daemon.stop();
}

/// Shutdown does not wait for an idle connection: its idle timeout is [`NEVER`], so a stop
/// that returns at all did not wait for it; the connection is then closed, not left hanging.
#[test]
fn shutdown_answers_nothing_new_and_returns_promptly() {
    let limits = Limits {
        idle_timeout: NEVER,
        line_timeout: NEVER,
        write_timeout: NEVER,
        ..Limits::default()
    };
    let daemon = start_with(
        Arc::new(FakeClock::new(T0)),
        Duration::from_secs(60),
        NEVER,
        limits,
    );
    let mut idle = daemon.client();
    let _: serde_json::Value = idle.call(&Request::Ping).unwrap();
    let socket = daemon.socket.clone();
    daemon.stop();
    assert!(matches!(
        idle.call::<serde_json::Value>(&Request::Ping),
        Err(ClientError::Io(_))
    ));
    assert!(Client::connect(&socket).is_err());
}
