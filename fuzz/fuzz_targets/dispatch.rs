//! Fuzzes request dispatch: bytes are decoded, and a request that results is served by
//! `compartmentd::dispatch::dispatch` against a real `Context` (a store in a temporary
//! directory, the writer thread, a fake clock), once as root and once as a non-superuser.
//! Every call must return, and a refusal must never be `internal`.
//!
//! The context is built once and lives across inputs, so the store accumulates what the
//! fuzzer's requests create; each input also moves the clock an hour on and sweeps due
//! invitations, so expiry paths are reached. An activation whose token is a small number
//! `n` presents the n-th most recent activation URL the daemon handed out, so activation
//! paths past "unknown token" are reached although tokens come from the OS.

#![no_main]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use compartment_fuzz::{check_decode_error, check_reply};
use compartmentctl::wire::{
    decode, ActivateParams, Call, ErrorKind, Id, Incoming, OrgCreateParams, Request, Response,
    Role, RpcError, UserInviteParams,
};
use compartmentd::admission::Admission;
use compartmentd::clock::{Clock, FakeClock};
use compartmentd::context::Context;
use compartmentd::dispatch::dispatch;
use compartmentd::limits::Limits;
use compartmentd::rules::{invitations, Caller, Policy};
use compartmentd::store::{ReadSide, Store};
use compartmentd::writer::Writer;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokio::runtime::Runtime;

/// The uid the fake daemon runs as: a superuser too.
const DAEMON_UID: u32 = 999;
/// How many activation URLs the harness remembers.
const URLS_KEPT: usize = 16;

struct Harness {
    runtime: Runtime,
    ctx: Context,
    clock: Arc<FakeClock>,
    /// The activation URLs invitations returned, oldest first.
    urls: Mutex<Vec<String>>,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// A directory in which every uid has a user named after it.
struct AnyUid;

impl compartmentd::users::Directory for AnyUid {
    fn name_of(&self, uid: u32) -> Option<String> {
        Some(format!("user{uid}"))
    }

    fn user_named(&self, name: &str) -> Option<compartmentd::store::UnixUser> {
        let uid = name.strip_prefix("user")?.parse().ok()?;
        Some(compartmentd::store::UnixUser {
            uid,
            name: name.to_owned(),
        })
    }
}

fn caller(ctx: &Context, uid: u32) -> Caller {
    ctx.caller(uid, uid, Some(1))
}

/// A directory for the store, on tmpfs when there is one: the writer commits durably, and
/// fsync on a disk would make each input cost milliseconds.
fn temp_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("compartment-fuzz-")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::tempdir().expect("a temporary directory")
}

fn harness() -> &'static Harness {
    HARNESS.get_or_init(|| {
        let dir = temp_dir();
        let store = Arc::new(Store::open(dir.path()).expect("a fresh store opens"));
        // The store keeps its file open; its directory goes now, as libFuzzer exits without
        // running the destructors that would remove it.
        let _ = std::fs::remove_dir_all(dir.path());
        let clock = Arc::new(FakeClock::new(1_777_636_800_000));
        let (writer, _thread) =
            Writer::spawn(store.clone(), clock.clone()).expect("the writer starts");
        let metrics = Arc::new(compartmentd::metrics::Metrics::new(writer.metrics(), true));
        let ctx = Context {
            metrics,
            store: ReadSide::new(store),
            writer,
            clock: clock.clone() as Arc<dyn Clock>,
            policy: Arc::new(Policy {
                public_url: "https://your-compartment-host".into(),
                invitation_ttl: Duration::from_secs(7 * 24 * 3600),
            }),
            daemon_uid: DAEMON_UID,
            sweeper_wake: Arc::default(),
            // Every uid the fuzzer calls as has a user, so activations can bind.
            users: Arc::new(AnyUid),
            service_group: None,
            stale_audited: Default::default(),
            replays: compartmentd::events::Replays::new(4, 32),
            caller_names: Default::default(),
            // No rate and no floor: the fuzzer calls as fast as it can, in a removed dir.
            admission: Admission::new(
                &Limits {
                    max_changes_per_sec: u32::MAX,
                    changes_burst: u32::MAX,
                    min_free_space: 0,
                    ..Limits::default()
                },
                Some(dir.path().to_owned()),
            ),
            started: std::time::Instant::now(),
            slots: compartmentd::limits::Slots::new(Limits::default()),
            last_sweep: Default::default(),
            audit: Arc::new(compartmentd::checkpoint::Keeper::new(
                compartmentd::checkpoint::Signer::from_secret(
                    &[5; 32],
                    "fuzz/compartment-audit".into(),
                ),
                std::time::Duration::from_secs(3600),
            )),
            refusals: Arc::new(compartmentd::refusals::Refusals::new(&Limits {
                max_changes_per_sec: u32::MAX,
                changes_burst: u32::MAX,
                ..Limits::default()
            })),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let beta_url = runtime.block_on(seed(&ctx));
        Harness {
            runtime,
            ctx,
            clock,
            urls: Mutex::new(vec![beta_url]),
        }
    })
}

/// Organization `acme` with an active admin at uid 1001 and an active deployer at uid
/// 1002, and `beta` whose admin has not activated: enough for the fuzzer's requests to
/// reach past authentication. Returns beta's activation URL.
async fn seed(ctx: &Context) -> String {
    let root = caller(ctx, 0);
    let serve = |who: Caller, request: Request| async move {
        let answer = dispatch(ctx, who, request).await.expect("seeding succeeds");
        serde_json::to_value(&answer.result).expect("a result is JSON")
    };
    let url = |value: &Value| -> String {
        let found = value["activation_url"]
            .as_str()
            .or_else(|| value["admin"]["activation_url"].as_str());
        found.expect("an activation URL").to_owned()
    };
    let created = serve(
        root.clone(),
        Request::OrgCreate(OrgCreateParams {
            name: "acme".into(),
            admin: "a@example.com".into(),
            admin_unix_user: None,
            expires_in: None,
        }),
    )
    .await;
    serve(
        caller(ctx, 1001),
        Request::AccountActivate(ActivateParams {
            token: url(&created),
        }),
    )
    .await;
    let invited = serve(
        root.clone(),
        Request::UserInvite(UserInviteParams {
            org: Some("acme".into()),
            email: "d@example.com".into(),
            role: Role::Deployer,
            expires_in: None,
            resend: false,
            unix_user: None,
            access_until: None,
        }),
    )
    .await;
    serve(
        caller(ctx, 1002),
        Request::AccountActivate(ActivateParams {
            token: url(&invited),
        }),
    )
    .await;
    let beta = serve(
        root.clone(),
        Request::OrgCreate(OrgCreateParams {
            name: "beta".into(),
            admin: "b@example.com".into(),
            admin_unix_user: None,
            expires_in: None,
        }),
    )
    .await;
    url(&beta)
}

/// Serves `request` for `who`, checks the answer, and keeps any activation URL it holds.
async fn serve(h: &Harness, who: Caller, id: &Id, request: Request) {
    let method = request.method();
    let response = match dispatch(&h.ctx, who.clone(), request).await {
        Ok(answer) => {
            let result = serde_json::to_value(&answer.result).expect("a result is JSON");
            let url = result["activation_url"]
                .as_str()
                .or_else(|| result["admin"]["activation_url"].as_str());
            if let Some(url) = url {
                let mut urls = h.urls.lock().expect("the URL list");
                urls.push(url.to_owned());
                if urls.len() > URLS_KEPT {
                    urls.remove(0);
                }
            }
            Response::ok(id.clone(), result)
        }
        Err(err) => {
            let kind = err.kind();
            assert_ne!(
                kind,
                ErrorKind::Internal,
                "{method} as uid {} failed inside: {err:?}",
                who.uid
            );
            Response::err(id.clone(), RpcError::from(err))
        }
    };
    check_reply(&response);
}

/// Tokens are drawn from the OS inside dispatch, so the fuzzer cannot know them: an
/// activation whose token is a small number `n` presents the n-th most recent activation
/// URL an invitation returned instead (fresh, used, replaced or expired by now).
fn with_known_token(h: &Harness, request: Request) -> Request {
    let Request::AccountActivate(params) = &request else {
        return request;
    };
    let Ok(back) = params.token.trim().parse::<usize>() else {
        return request;
    };
    let urls = h.urls.lock().expect("the URL list");
    match urls.len().checked_sub(1 + back) {
        Some(index) => Request::AccountActivate(ActivateParams {
            token: urls[index].clone(),
        }),
        None => request,
    }
}

/// The non-superuser an input is served for besides root: acme's admin, acme's deployer,
/// the unbound uid 4242, or one of many other uids (each can bind one account).
fn other_uid(line: &[u8]) -> u32 {
    match line.len() % 4 {
        0 => 1001,
        1 => 1002,
        2 => 4242,
        _ => 5000 + line.iter().map(|&b| u32::from(b)).sum::<u32>() % 1000,
    }
}

fuzz_target!(|line: &[u8]| {
    let h = harness();
    let calls = match decode(line) {
        Incoming::Single(call) => vec![call],
        Incoming::Batch(calls) => calls,
    };
    let other = caller(&h.ctx, other_uid(line));
    h.runtime.block_on(async {
        // A notification is served like a request; only its reply is never sent.
        for Call { id, request } in calls {
            let id = id.unwrap_or_else(Id::null);
            let request = match request {
                Ok(request) => request,
                Err(error) => {
                    check_decode_error(&error);
                    check_reply(&Response::err(id, error));
                    continue;
                }
            };
            let request = with_known_token(h, request);
            serve(h, caller(&h.ctx, 0), &id, request.clone()).await;
            serve(h, other.clone(), &id, request).await;
        }
        h.clock.advance(Duration::from_secs(3600));
        let swept = h
            .ctx
            .writer
            .write(|txn, now| invitations::expire_due(txn, now))
            .await;
        assert!(swept.is_ok(), "the sweep failed: {swept:?}");
    });
});
