//! The change feed (`events.subscribe`, `compartment events watch`) end to end: what it
//! tells, to whom, and that a subscriber that comes back misses nothing, as real Unix users.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use compartment_e2e::{
    each_store, parse_invite, root_test, test_group, Daemon, DaemonOptions, InProcess, RawConn,
    TestUser, ROOT,
};
use compartmentctl::wire::{Event, EventsSubscribeParams};
use compartmentctl::{Client, FeedItem};
use serde_json::{json, Value};

/// Params as the wire carries them.
fn raw(params: Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(&params).unwrap()
}

/// An event as the tests compare it: everything but its time and its actor's pid (which
/// must be there).
fn shown(event: &Event) -> String {
    let mut value = serde_json::to_value(event).unwrap();
    value.as_object_mut().unwrap().remove("at");
    let actor = value["actor"]
        .as_object_mut()
        .expect("an event names its actor");
    let pid = actor.remove("pid").unwrap();
    assert!(pid.as_i64().is_some_and(|pid| pid > 0), "{event:?}");
    value.to_string()
}

/// An event's actor, as [`shown`] leaves it: root, or a user through its account.
fn by(email: Option<&str>, user: &str, uid: u32) -> Value {
    let kind = if uid == 0 { "superuser" } else { "user" };
    json!({"kind": kind, "email": email, "uid": uid, "user": user})
}

fn next_event(feed: &mut compartmentctl::Subscription) -> Event {
    match feed.next_item().unwrap() {
        FeedItem::Event(event) => *event,
        FeedItem::Closed(closed) => panic!("the feed closed: {closed:?}"),
    }
}

/// The next notification on a raw feed connection.
fn notification(conn: &mut RawConn) -> Value {
    let value = conn.read_json();
    assert!(
        value.get("id").is_none(),
        "a notification has no id: {value}"
    );
    value
}

root_test!(a_feed_tells_each_change_and_replays_from_any_point, || {
    let daemon = Daemon::start_default();
    let admin = TestUser::get("cpt-ev-admin");
    let deployer = TestUser::get("cpt-ev-dep");
    let mut feed = daemon
        .client()
        .subscribe(EventsSubscribeParams::default())
        .unwrap();
    assert_eq!(
        (
            feed.subscribed.org.clone(),
            feed.subscribed.after,
            feed.subscribed.head
        ),
        (None, 0, 0)
    );
    // The documentation page's story.
    let acme = daemon.create_acme();
    daemon.activate(admin.uid, &acme.url).assert_success();
    let out = daemon.ctl(
        admin.uid,
        &["user", "invite", "deploy@example.com", "--role", "deployer"],
    );
    let invitation = parse_invite(&out, "deploy@example.com", "deployer");
    daemon
        .activate(deployer.uid, &invitation.url)
        .assert_success();
    daemon
        .ctl(
            admin.uid,
            &["role", "grant", "deploy@example.com", "readonly"],
        )
        .assert_success();
    daemon
        .ctl(admin.uid, &["user", "remove", "deploy@example.com"])
        .assert_success();
    let root = by(None, "root", 0);
    let by_admin = by(Some("admin@example.com"), &admin.name, admin.uid);
    let by_deployer = by(Some("deploy@example.com"), &deployer.name, deployer.uid);
    let expected = [
        json!({"seq": 1, "kind": "member.added", "org": "acme", "email": "admin@example.com", "role": "admin", "status": "invited", "actor": root}),
        json!({"seq": 2, "kind": "binding.changed", "email": "admin@example.com", "uid": admin.uid, "actor": by_admin}),
        json!({"seq": 3, "kind": "member.activated", "org": "acme", "email": "admin@example.com", "role": "admin", "status": "active", "uid": admin.uid, "actor": by_admin}),
        json!({"seq": 4, "kind": "member.added", "org": "acme", "email": "deploy@example.com", "role": "deployer", "status": "invited", "actor": by_admin}),
        json!({"seq": 5, "kind": "binding.changed", "email": "deploy@example.com", "uid": deployer.uid, "actor": by_deployer}),
        json!({"seq": 6, "kind": "member.activated", "org": "acme", "email": "deploy@example.com", "role": "deployer", "status": "active", "uid": deployer.uid, "actor": by_deployer}),
        json!({"seq": 7, "kind": "member.role_changed", "org": "acme", "email": "deploy@example.com", "role": "readonly", "previous_role": "deployer", "status": "active", "uid": deployer.uid, "actor": by_admin}),
        json!({"seq": 8, "kind": "member.removed", "org": "acme", "email": "deploy@example.com", "role": "readonly", "uid": deployer.uid, "actor": by_admin}),
    ];
    let expected: Vec<String> = expected.iter().map(Value::to_string).collect();
    let live: Vec<String> = (0..8).map(|_| shown(&next_event(&mut feed))).collect();
    assert_eq!(live, expected);
    // From any point, the same changes again, and only those after it.
    for after in [0, 3, 7, 8] {
        let mut replay = daemon
            .client()
            .subscribe(EventsSubscribeParams {
                org: Some("acme".into()),
                after: Some(after),
            })
            .unwrap();
        assert_eq!(replay.subscribed.head, 8);
        // acme's changes, and the bindings of its members.
        let acme_only: Vec<&String> = expected[after as usize..]
            .iter()
            .filter(|e| e.contains("\"org\":\"acme\"") || e.contains("binding.changed"))
            .collect();
        for want in acme_only {
            assert_eq!(&shown(&next_event(&mut replay)), want, "after {after}");
        }
    }
    // The CLI prints the same, a line each, until the daemon ends the feed.
    let watching = daemon.spawn_ctl(ROOT, &["events", "watch", "--after", "6", "--org", "acme"]);
    // Stopped once the watch has printed the last change: all it is sent is printed.
    assert!(
        watching.wait_for_stdout("#8  ", Duration::from_secs(30)),
        "events watch never printed #8"
    );
    let mut daemon = daemon;
    daemon.stop();
    let out = watching.wait();
    let lines: Vec<String> = out
        .stdout_lines()
        .iter()
        .map(|line| {
            // `#SEQ  AT  what`, without its time.
            let fields: Vec<&str> = line.splitn(3, "  ").collect();
            match fields.as_slice() {
                [seq, _, what] => format!("{seq}  {what}"),
                _ => line.to_string(),
            }
        })
        .collect();
    assert_eq!(
        lines,
        [
            "Watching changes in acme after #6 (the last so far is #8).".to_owned(),
            format!(
                "#7  acme: deploy@example.com is now readonly (was deployer), by admin@example.com ({})",
                admin.name
            ),
            format!(
                "#8  acme: deploy@example.com removed (was readonly), by admin@example.com ({})",
                admin.name
            ),
        ],
        "{out:#?}"
    );
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            1,
            "compartmentctl: the daemon ended the feed: compartmentd is stopping\n\
             hint: watch again with --after 8\n"
        ),
        "{out:#?}"
    );
});

/// Every client here is the test process itself, the daemon's own uid (a superuser): it
/// needs no other Unix user, so no root.
#[test]
fn a_subscriber_that_comes_back_sees_every_change_once_in_order() {
    for options in each_store("a_subscriber_that_comes_back_sees_every_change_once_in_order") {
        a_subscriber_comes_back(&Daemon::in_process(options));
    }
}

fn a_subscriber_comes_back(daemon: &InProcess) {
    daemon.create_acme();
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let socket = daemon.socket();
            std::thread::spawn(move || {
                let mut client = Client::connect(&socket).unwrap();
                for i in 0..60 {
                    let email = format!("w{w}-{i}@example.com");
                    let params = raw(json!({"org": "acme", "email": email, "role": "viewer"}));
                    let request =
                        compartmentctl::wire::Request::parse("user.invite", Some(&params)).unwrap();
                    client.call::<Value>(&request).unwrap();
                    if i % 3 == 0 {
                        let params = raw(json!({"org": "acme", "email": email}));
                        let request =
                            compartmentctl::wire::Request::parse("user.remove", Some(&params))
                                .unwrap();
                        client.call::<Value>(&request).unwrap();
                    }
                }
            })
        })
        .collect();
    let watcher = {
        let done = done.clone();
        let socket = daemon.socket();
        std::thread::spawn(move || {
            let mut seen: Vec<String> = Vec::new();
            let mut last = 0;
            let mut round = 0;
            loop {
                // Read before subscribing: writers done before this subscription are all in
                // its head (read after, a last commit could land between the two).
                let finished = done.load(Ordering::SeqCst);
                let client = Client::connect(&socket).unwrap();
                let mut feed = client
                    .subscribe(EventsSubscribeParams {
                        org: None,
                        after: Some(last),
                    })
                    .unwrap();
                let head = feed.subscribed.head;
                if last == head {
                    if finished {
                        return seen;
                    }
                    // Caught up while the writers write: come back for more.
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                // Leave mid-stream after a few, a different number each time.
                for _ in 0..(7 + round % 11).min(head - last) {
                    let event = next_event(&mut feed);
                    assert!(event.seq > last, "{} after {last}", event.seq);
                    last = event.seq;
                    seen.push(shown(&event));
                }
                round += 1;
            }
        })
    };
    for writer in writers {
        writer.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = watcher.join().unwrap();
    // Everything, once, in order: the same as one replay from the start.
    let mut all = daemon
        .client()
        .subscribe(EventsSubscribeParams {
            org: None,
            after: Some(0),
        })
        .unwrap();
    let head = all.subscribed.head;
    assert_eq!(
        head,
        1 + 4 * 60 + 4 * 20,
        "one event per invitation and removal, and acme's admin"
    );
    let whole: Vec<String> = (0..head).map(|_| shown(&next_event(&mut all))).collect();
    assert_eq!(seen.len(), whole.len());
    assert_eq!(seen, whole);
}

root_test!(
    an_admin_sees_its_organization_only_and_only_while_admin,
    || {
        let services = TestUser::get("cpt-ev-svc");
        test_group("cpt-ev-services", &[&services]);
        let daemon =
            Daemon::start(DaemonOptions::new().args(&["--service-group", "cpt-ev-services"]));
        let admin = TestUser::get("cpt-ev-admin");
        let second = TestUser::get("cpt-ev-admin2");
        let deployer = TestUser::get("cpt-ev-dep");
        let outsider = TestUser::get("cpt-ev-beta");
        let bystander = TestUser::get("cpt-ev-by");
        let acme = daemon.create_acme();
        daemon.activate(admin.uid, &acme.url).assert_success();
        for (email, role, user) in [
            ("second@example.com", "admin", &second),
            ("dep@example.com", "deployer", &deployer),
        ] {
            let out = daemon.ctl(admin.uid, &["user", "invite", email, "--role", role]);
            daemon
                .activate(user.uid, &parse_invite(&out, email, role).url)
                .assert_success();
        }
        let out = daemon.ctl(
            ROOT,
            &["org", "create", "beta", "--admin", "boss@beta.example"],
        );
        out.assert_success();
        let beta = compartment_e2e::parse_invitation_lines(
            &out.stdout_lines()[1..],
            "boss@beta.example",
            "admin",
        );
        daemon.activate(outsider.uid, &beta.url).assert_success();

        // Who may not subscribe, and what they are told.
        let subscribe = |uid: u32, params: Value| {
            let mut conn = RawConn::connect_as(&daemon.socket(), uid);
            let reply = conn.call(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "events.subscribe", "params": params})
                    .to_string(),
            );
            (conn, reply)
        };
        let refusal = |uid: u32, params: Value| {
            let (_, reply) = subscribe(uid, params);
            (
                reply["error"]["data"]["kind"]
                    .as_str()
                    .unwrap_or("none")
                    .to_owned(),
                reply["error"]["message"].as_str().unwrap_or("").to_owned(),
            )
        };
        assert_eq!(
            refusal(deployer.uid, json!({})),
            (
                "forbidden".into(),
                "reading the audit log of acme needs the admin role; yours is deployer".into()
            )
        );
        assert_eq!(
            refusal(outsider.uid, json!({"org": "acme"})),
            ("not_found".into(), "organization acme not found".into())
        );
        assert_eq!(refusal(bystander.uid, json!({})).0, "unauthenticated");
        // Who may not subscribe learns nothing of how far the host's changes have gone:
        // `after` is judged only once the subscriber is authorized.
        for (uid, kind) in [
            (bystander.uid, "unauthenticated"),
            (deployer.uid, "forbidden"),
            (outsider.uid, "not_found"),
        ] {
            let org = if uid == outsider.uid {
                json!("acme")
            } else {
                json!(null)
            };
            let (got, message) = refusal(uid, json!({"org": org, "after": 999}));
            assert_eq!(got, kind, "{message}");
            assert!(!message.contains("past the last change"), "{message}");
        }
        assert_eq!(refusal(ROOT, json!({"org": "nowhere"})).0, "not_found");
        assert_eq!(
            refusal(ROOT, json!({"after": 999})),
            (
                "bad_request".into(),
                "after 999 is past the last change, 12".into()
            )
        );

        // acme's admin, with its current organization; the service, for everything.
        let (mut admins_feed, reply) = subscribe(admin.uid, json!({}));
        assert_eq!(
            reply["result"],
            json!({"org": "acme", "after": 12, "head": 12}),
            "{reply}"
        );
        let (mut services_feed, reply) = subscribe(services.uid, json!({}));
        assert_eq!(
            reply["result"],
            json!({"org": null, "after": 12, "head": 12}),
            "{reply}"
        );
        daemon
            .ctl(
                outsider.uid,
                &["user", "invite", "b@beta.example", "--role", "viewer"],
            )
            .assert_success();
        daemon
            .ctl(
                admin.uid,
                &["user", "invite", "a@example.com", "--role", "viewer"],
            )
            .assert_success();
        let event = notification(&mut admins_feed);
        assert_eq!(
            (
                event["method"].as_str(),
                event["params"]["seq"].as_u64(),
                event["params"]["email"].as_str()
            ),
            (Some("event"), Some(14), Some("a@example.com")),
            "beta's change (seq 13) is not acme's admin's to see: {event}"
        );
        assert_eq!(
            notification(&mut services_feed)["params"]["email"],
            "b@beta.example"
        );
        assert_eq!(
            notification(&mut services_feed)["params"]["email"],
            "a@example.com"
        );

        // Demoted, the admin gets nothing more, not even the news of its demotion.
        daemon
            .ctl(
                second.uid,
                &["role", "grant", "admin@example.com", "deployer"],
            )
            .assert_success();
        let closed = notification(&mut admins_feed);
        assert_eq!(
            closed,
            json!({"jsonrpc": "2.0", "method": "events.closed", "params": {
                "after": 14,
                "cause": "revoked",
                "reason": "reading the audit log of acme needs the admin role; yours is deployer",
            }})
        );
        assert!(admins_feed.is_closed());
        assert_eq!(
            notification(&mut services_feed)["params"]["kind"],
            "member.role_changed"
        );

        // A feed is the whole connection: not one answer of a batch.
        let mut conn = RawConn::connect_as(&daemon.socket(), ROOT);
        let reply = conn.call(r#"[{"jsonrpc":"2.0","id":1,"method":"events.subscribe"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#);
        assert_eq!(
            reply[0]["error"]["message"],
            "events.subscribe must be sent alone, not in a batch"
        );
        assert!(reply[1]["result"].is_object(), "{reply}");
    }
);

root_test!(
    a_subscriber_that_falls_behind_is_told_so_and_disconnected,
    || {
        const MAX_LAG: u64 = 100;
        let daemon = Daemon::start(DaemonOptions::new().args(&[
            "--feed-max-lag",
            &MAX_LAG.to_string(),
            // Long enough that the subscriber's pause below is not taken for a dead client.
            "--write-timeout",
            "120s",
        ]));
        daemon.create_acme();
        let mut conn = RawConn::connect_as(&daemon.socket(), ROOT);
        let reply = conn.call(r#"{"jsonrpc":"2.0","id":1,"method":"events.subscribe"}"#);
        let head = reply["result"]["head"].as_u64().unwrap();
        // More changes than the socket's buffer holds as event lines (of over 150 bytes
        // each), so the daemon cannot hand them all to the kernel while nobody reads.
        let buffer: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(212_992);
        let per_writer = (buffer / 150 + 4 * MAX_LAG as usize) / 4 + 1;
        // The subscriber reads nothing while 4 writers make the changes: they are never
        // held up by it.
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let socket = daemon.socket();
                std::thread::spawn(move || {
                    let mut client = Client::connect(&socket).unwrap();
                    for i in 0..per_writer {
                        let params = raw(
                            json!({"org": "acme", "email": format!("w{w}-{i}@example.com"), "role": "viewer"}),
                        );
                        let request =
                            compartmentctl::wire::Request::parse("user.invite", Some(&params))
                                .unwrap();
                        client.call::<Value>(&request).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let made = 4 * per_writer as u64;
        // Then it reads: the changes the daemon had sent, in order, and why it stopped.
        let mut last = head;
        let closed = loop {
            let line = notification(&mut conn);
            match line["method"].as_str() {
                Some("event") => {
                    let seq = line["params"]["seq"].as_u64().unwrap();
                    assert_eq!(seq, last + 1, "{line}");
                    last = seq;
                }
                _ => break line,
            }
        };
        assert_eq!(closed["method"], "events.closed", "{closed}");
        assert_eq!(closed["params"]["cause"], "behind", "{closed}");
        assert_eq!(closed["params"]["after"], last, "{closed}");
        let reason = closed["params"]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("the subscriber fell ")
                && reason.ends_with(
                    " changes behind the newest, more than the daemon's --feed-max-lag of 100"
                ),
            "{reason}"
        );
        assert!(last < head + made, "it was sent every change: {last}");
        assert_eq!(
            conn.try_read_line().unwrap(),
            None,
            "the connection stays open"
        );
        // Subscribing again from where it was, it misses nothing.
        let mut again = daemon
            .client()
            .subscribe(EventsSubscribeParams {
                org: None,
                after: Some(last),
            })
            .unwrap();
        assert_eq!(again.subscribed.head, head + made);
        for seq in last + 1..=head + made {
            assert_eq!(next_event(&mut again).seq, seq);
        }
    }
);

#[test]
fn a_request_sent_on_a_feed_is_answered_with_an_error_and_the_feed_goes_on() {
    let daemon = Daemon::in_process_default();
    let mut conn = daemon.raw();
    // The subscription and a ping sent right behind it, before its answer is read.
    conn.send(
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"events.subscribe\"}\n\
          {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n",
    );
    let subscribed = conn.read_json();
    assert_eq!(subscribed["result"]["head"], 0, "{subscribed}");
    let refusal = json!({"jsonrpc": "2.0", "id": 2, "error": {
        "code": -32602,
        "message": "this connection carries the change feed and answers no other request",
        "data": {"kind": "bad_request", "hint": "send other requests on a connection of their own"},
    }});
    assert_eq!(conn.read_json(), refusal);
    // A notification gets nothing; a batch, an error for each request with an id; blank
    // lines nothing.
    conn.send_line(r#"{"jsonrpc":"2.0","method":"ping"}"#);
    conn.send_line("");
    conn.send_line(
        r#"[{"jsonrpc":"2.0","id":3,"method":"whoami"},{"jsonrpc":"2.0","method":"ping"}]"#,
    );
    let batch = conn.read_json();
    assert_eq!(batch.as_array().map(Vec::len), Some(1), "{batch}");
    assert_eq!(batch[0]["id"], 3);
    assert_eq!(batch[0]["error"]["data"]["kind"], "bad_request");
    // The feed still carries changes.
    daemon.create_acme();
    let event = notification(&mut conn);
    assert_eq!(
        (event["method"].as_str(), event["params"]["seq"].as_u64()),
        (Some("event"), Some(1)),
        "{event}"
    );
}

root_test!(
    replays_are_bounded_per_uid_and_a_replay_that_caught_up_gives_its_place_back,
    || {
        let mut daemon = Daemon::start(DaemonOptions::new().args(&[
            "--feed-replays-per-uid",
            "1",
            // Long enough that the feed left unread below is not cut off meanwhile.
            "--write-timeout",
            "120s",
        ]));
        let admin = TestUser::get("cpt-ev-admin");
        let acme = daemon.create_acme();
        daemon.activate(admin.uid, &acme.url).assert_success();
        daemon
            .ctl(
                ROOT,
                &[
                    "user",
                    "invite",
                    "pawn@example.com",
                    "--role",
                    "viewer",
                    "--org",
                    "acme",
                ],
            )
            .assert_success();
        // More of acme's changes than the socket holds as event lines.
        daemon.stop();
        compartment_e2e::add_history(&daemon.state_dir(), "acme", "pawn@example.com", 20_000);
        daemon.restart();
        let subscribe = |uid: u32, after: Option<u64>| {
            let mut conn = RawConn::connect_as(&daemon.socket(), uid);
            let params = match after {
                Some(after) => json!({"after": after}),
                None => json!({}),
            };
            let reply = conn.call(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "events.subscribe", "params": params})
                    .to_string(),
            );
            (conn, reply)
        };
        // The first replay is never read: it stops at a full socket, still replaying. (Its
        // place among the replays is taken before the answer is sent.)
        let (unread, reply) = subscribe(admin.uid, Some(0));
        assert!(
            reply["result"]["head"].as_u64().unwrap() > 20_000,
            "{reply}"
        );
        let (_, reply) = subscribe(admin.uid, Some(0));
        assert_eq!(
            reply["error"],
            json!({"code": -32014, "message": format!("uid {} already replays as many feeds as one user may (1)", admin.uid),
                   "data": {"kind": "busy", "hint": "subscribe once your other feeds have caught up, or without --after to follow new changes only"}}),
        );
        // Following new changes only is no replay; a superuser's replay is not counted.
        let (_, reply) = subscribe(admin.uid, None);
        assert!(reply["result"].is_object(), "{reply}");
        let (_, reply) = subscribe(ROOT, Some(0));
        assert!(reply["result"].is_object(), "{reply}");
        // Once the first has gone, its place is free.
        drop(unread);
        let again = compartment_e2e::poll(Duration::from_secs(10), || {
            let (conn, reply) = subscribe(admin.uid, Some(0));
            let head = reply["result"]["head"].as_u64();
            head.map(|head| (conn, head))
        });
        let (mut conn, head) = again.expect("the replay's place never came back");
        // A replay that has caught up gives its place back too (once the daemon has seen
        // it caught up, a moment after the last line it sent): while it is still open,
        // another replay of the same uid is let in.
        let mut last = 0;
        while last < head {
            last = notification(&mut conn)["params"]["seq"].as_u64().unwrap();
        }
        let let_in = compartment_e2e::poll(Duration::from_secs(10), || {
            let (_, reply) = subscribe(admin.uid, Some(1));
            if reply["error"].is_object() {
                assert_eq!(reply["error"]["data"]["kind"], "busy", "{reply}");
            }
            reply["result"].is_object().then_some(())
        });
        assert!(let_in.is_some(), "a replay that caught up kept its place");
        drop(conn);
    }
);
