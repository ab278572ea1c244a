//! Load benchmark: an in-process daemon on a temporary socket, driven by concurrent
//! blocking clients over the real wire. Prints throughput and latency percentiles for
//! writes (invitations, each a durable commit) and reads (whoami, user list).
//!
//! `cargo run --release -p compartmentd --example bench -- [clients] [requests-per-client]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use compartmentctl::wire::{
    MemberList, OrgCreateParams, Request, Role, UserInviteParams, UserListParams, WhoAmI,
};
use compartmentctl::Client;
use compartmentd::clock::SystemClock;
use compartmentd::limits::Limits;
use compartmentd::rules::Policy;
use compartmentd::server::{self, Daemon};
use compartmentd::store::Store;

fn main() {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().map_or(8, |a| a.parse().unwrap());
    let per_client: usize = args.next().map_or(250, |a| a.parse().unwrap());

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bench.sock");
    let store = Arc::new(Store::open(&dir.path().join("state")).unwrap());
    let listener = compartmentd::socket::bind(&socket).unwrap();
    let daemon = Daemon {
        store,
        clock: Arc::new(SystemClock),
        policy: Policy {
            public_url: "https://bench.example".into(),
            invitation_ttl: Duration::from_secs(86_400),
        },
        daemon_uid: nix::unistd::geteuid().as_raw(),
        sweep_interval: Duration::from_secs(60),
        // Every client is this uid: let all of them (and the setup connection) in.
        limits: Limits {
            max_connections_per_uid: Limits::default().max_connections_per_uid.max(clients + 2),
            max_connections: Limits::default().max_connections.max(clients + 8),
            ..Limits::default()
        },
        users: compartmentd::users::SystemUsers::new(),
    };
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::UnixListener::from_std(listener).unwrap();
            server::run(listener, daemon, std::future::pending())
                .await
                .unwrap();
        });
    });

    let mut setup = Client::connect(&socket).unwrap();
    let _: serde_json::Value = setup
        .call(&Request::OrgCreate(OrgCreateParams {
            name: "bench".into(),
            admin: "admin@bench.example".into(),
            admin_unix_user: None,
        }))
        .unwrap();

    println!("compartmentd bench: {clients} clients x {per_client} requests each");
    run_phase(
        "user.invite (durable write)",
        &socket,
        clients,
        per_client,
        |client, c, i| {
            let _: serde_json::Value = client
                .call(&Request::UserInvite(UserInviteParams {
                    org: Some("bench".into()),
                    email: format!("u{c}-{i}@bench.example"),
                    role: Role::Viewer,
                    expires_in: None,
                    resend: false,
                    unix_user: None,
                }))
                .unwrap();
        },
    );
    run_phase(
        "whoami (read)",
        &socket,
        clients,
        per_client,
        |client, _, _| {
            let _: WhoAmI = client.call(&Request::Whoami).unwrap();
        },
    );
    let members = clients * per_client + 1;
    run_phase(
        &format!("user.list of {members} members (read)"),
        &socket,
        clients,
        per_client.min(50),
        move |client, _, _| {
            let list: MemberList = client
                .call(&Request::UserList(UserListParams {
                    org: Some("bench".into()),
                    ..UserListParams::default()
                }))
                .unwrap();
            assert_eq!(list.members.len(), members);
        },
    );
}

fn run_phase(
    name: &str,
    socket: &Path,
    clients: usize,
    per_client: usize,
    op: impl Fn(&mut Client, usize, usize) + Send + Sync + Copy + 'static,
) {
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let socket: PathBuf = socket.to_owned();
            std::thread::spawn(move || {
                let mut client = Client::connect(&socket).unwrap();
                let mut latencies = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let t = Instant::now();
                    op(&mut client, c, i);
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    println!(
        "{name:<40} {:>8.0} req/s   p50 {:>8.2?}   p99 {:>8.2?}   max {:>8.2?}   ({} requests in {:.2?})",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(1.0),
        latencies.len(),
        elapsed
    );
}
