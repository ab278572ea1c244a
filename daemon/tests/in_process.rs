//! The daemon in process over a temporary socket: the clock it is given drives expiry,
//! the sweeper wakes at the earliest expiry, shutdown is graceful.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use compartmentctl::wire::{
    ActivateParams, ErrorKind, MemberList, MemberStatus, OrgCreateParams, OrgCreated, Request,
    UserListParams,
};
use compartmentctl::{Client, ClientError};
use compartmentd::clock::{Clock, FakeClock, SystemClock};
use compartmentd::limits::Limits;
use compartmentd::rules::Policy;
use compartmentd::server::{self, Daemon};
use compartmentd::store::{Backend as _, Reader, Store};
use tokio::sync::oneshot;

struct Running {
    socket: PathBuf,
    store: Arc<Store>,
    stop_tx: Option<oneshot::Sender<()>>,
    done: std::thread::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

fn start(clock: Arc<dyn Clock>, ttl: Duration, sweep_interval: Duration) -> Running {
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
        limits: Limits::default(),
        users: compartmentd::users::SystemUsers::new(),
        service_group: None,
    };
    let done = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::UnixListener::from_std(listener)?;
            server::run(listener, daemon, async {
                let _ = stop_rx.await;
            })
            .await
        })
    });
    Running {
        socket,
        store,
        stop_tx: Some(stop_tx),
        done,
        _dir: dir,
    }
}

impl Running {
    fn client(&self) -> Client {
        Client::connect(&self.socket).unwrap()
    }

    fn stop(mut self) -> Duration {
        let started = Instant::now();
        self.stop_tx.take().unwrap().send(()).unwrap();
        self.done.join().unwrap().unwrap();
        started.elapsed()
    }
}

fn create_acme(client: &mut Client) -> OrgCreated {
    client
        .call(&Request::OrgCreate(OrgCreateParams {
            name: "acme".into(),
            admin: "admin@example.com".into(),
            admin_unix_user: None,
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
    const T0: u64 = 1_777_636_800_000; // 2026-05-01T12:00:00Z
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

#[test]
fn the_sweeper_wakes_at_the_earliest_expiry_not_its_interval() {
    let daemon = start(
        Arc::new(SystemClock),
        Duration::from_millis(300),
        Duration::from_secs(3600),
    );
    let mut client = daemon.client();
    create_acme(&mut client);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stored = daemon
            .store
            .read()
            .unwrap()
            .membership("acme", "admin@example.com")
            .unwrap()
            .unwrap();
        if stored.status == MemberStatus::Expired {
            assert_eq!(stored.token_hash, None, "the sweeper deletes the token");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not swept 5 s after a 300 ms expiry"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let audit = daemon.store.read().unwrap().audit().unwrap();
    assert_eq!(audit.last().unwrap().action, "invitation.expire");
    daemon.stop();
}

#[test]
fn shutdown_answers_nothing_new_and_returns_promptly() {
    let daemon = start(
        Arc::new(SystemClock),
        Duration::from_secs(60),
        Duration::from_secs(3600),
    );
    let mut idle = daemon.client();
    let _: serde_json::Value = idle.call(&Request::Ping).unwrap();
    let socket = daemon.socket.clone();
    let took = daemon.stop();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    // The idle connection was closed rather than left hanging.
    assert!(matches!(
        idle.call::<serde_json::Value>(&Request::Ping),
        Err(ClientError::Io(_))
    ));
    assert!(Client::connect(&socket).is_err());
}
