//! `events watch`: subscribes and prints each change as it comes, until interrupted or the
//! daemon ends the feed.

use std::io;

use compartmentctl::args::OutputFormat;
use compartmentctl::wire::{ErrorKind, Event, EventKind, EventsSubscribeParams, RpcError};
use compartmentctl::{Client, ClientError, FeedItem};

use super::escape::escaped;
use super::exit::Failure;
use super::output;

/// Prints the feed to stdout, a line per change; the first line (text only) says what is
/// watched. A reader that went away (`| head`) is a normal end.
pub fn events(
    client: Client,
    params: EventsSubscribeParams,
    format: OutputFormat,
) -> Result<(), Failure> {
    let mut feed = client.subscribe(params)?;
    if format == OutputFormat::Text {
        let subscribed = &feed.subscribed;
        let what = match &subscribed.org {
            Some(org) => format!("changes in {}", escaped(org)),
            None => "every change".to_owned(),
        };
        print(&format!(
            "Watching {what} after #{} (the last so far is #{}).\n",
            subscribed.after, subscribed.head
        ))?;
    }
    loop {
        match feed.next_item()? {
            FeedItem::Event(event) => {
                let line = match format {
                    OutputFormat::Text => event_line(&event),
                    OutputFormat::Json | OutputFormat::Jsonl => output::json(&event)?,
                };
                print(&line)?;
            }
            FeedItem::Closed(closed) => {
                let ended = RpcError::new(
                    ErrorKind::Other,
                    format!("the daemon ended the feed: {}", closed.reason),
                )
                .with_hint(format!("watch again with --after {}", closed.after));
                return Err(Failure::Client(ClientError::Rpc(ended)));
            }
        }
    }
}

fn print(text: &str) -> Result<(), Failure> {
    output::write_stdout(text.as_bytes()).map_err(Failure::Output)
}

/// `#SEQ  AT  what happened`, one line, the daemon's strings escaped.
pub fn event_line(event: &Event) -> String {
    let org = escaped(event.org.as_deref().unwrap_or("-"));
    let email = escaped(&event.email);
    let role = |role: Option<compartmentctl::wire::Role>| {
        role.map_or_else(|| "?".to_owned(), |role| role.to_string())
    };
    let what = match event.kind {
        EventKind::MemberAdded => format!(
            "{org}: {} added as {}, {}",
            email,
            role(event.role),
            event.status.map_or("?", |status| status.as_str())
        ),
        EventKind::MemberReinvited => {
            format!("{org}: {} invited again as {}", email, role(event.role))
        }
        EventKind::MemberActivated => {
            format!("{org}: {} activated, {}", email, role(event.role))
        }
        // A role granted until a time says so: ` until <until>` after the role.
        EventKind::RoleChanged => format!(
            "{org}: {} is now {}{} (was {})",
            email,
            role(event.role),
            event
                .until
                .as_deref()
                .map(|until| format!(" until {}", escaped(until)))
                .unwrap_or_default(),
            role(event.previous_role)
        ),
        EventKind::MemberExpired => format!("{org}: {}'s invitation expired", email),
        EventKind::MemberRemoved => {
            format!("{org}: {} removed (was {})", email, role(event.role))
        }
        EventKind::MemberBlocked => {
            let lasts = output::block_lasts(event.until.as_deref());
            match &event.reason {
                Some(reason) => {
                    format!("{org}: {email} is blocked {lasts}: {}", escaped(reason))
                }
                None => format!("{org}: {email} is blocked {lasts}"),
            }
        }
        EventKind::MemberUnblocked => format!("{org}: {email} is unblocked"),
        // A warning ahead of an end: of an elevated role when the one after is named,
        // else of the membership itself.
        EventKind::AccessExpiring => {
            let until = escaped(event.until.as_deref().unwrap_or("?"));
            match event.previous_role {
                Some(after) => format!(
                    "{org}: {email} is {} until {until}, then {after}",
                    role(event.role)
                ),
                None => format!("{org}: {email}'s access ends at {until}"),
            }
        }
        EventKind::BindingChanged => match event.uid {
            Some(uid) => format!("{} bound to uid {uid}", email),
            None => format!("{} unbound", email),
        },
        EventKind::AccountRenamed => format!(
            "{} renamed to {email}",
            escaped(event.previous_email.as_deref().unwrap_or("?"))
        ),
        EventKind::OrgRenamed => format!(
            "{} renamed to {org}",
            escaped(event.previous_org.as_deref().unwrap_or("?"))
        ),
    };
    match &event.actor {
        Some(actor) => format!(
            "#{}  {}  {what}, by {}\n",
            event.seq,
            escaped(&event.at),
            output::actor_name(actor)
        ),
        None => format!("#{}  {}  {what}\n", event.seq, escaped(&event.at)),
    }
}

/// A broken pipe on stdout ends the watch normally.
pub fn quietly(result: Result<(), Failure>) -> Result<(), Failure> {
    match result {
        Err(Failure::Output(err)) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compartmentctl::wire::{AuditActor, MemberStatus, Role};

    fn event(kind: EventKind) -> Event {
        Event {
            seq: 7,
            at: "2026-05-01T12:00:00Z".into(),
            kind,
            org: Some("acme".into()),
            email: "dep@example.com".into(),
            role: Some(Role::Deployer),
            previous_role: Some(Role::Viewer),
            status: Some(MemberStatus::Invited),
            uid: Some(1001),
            actor: None,
            until: None,
            reason: None,
            previous_org: Default::default(),
            previous_email: Default::default(),
        }
    }

    #[test]
    fn each_kind_reads_as_a_sentence() {
        let lines: Vec<String> = EventKind::ALL
            .iter()
            .map(|k| {
                let mut event = event(*k);
                if matches!(k, EventKind::MemberBlocked | EventKind::AccessExpiring) {
                    event.until = Some("2026-12-14T00:00:00Z".into());
                }
                if *k == EventKind::MemberBlocked {
                    event.reason = Some("laptop lost".into());
                }
                if *k == EventKind::OrgRenamed {
                    event.previous_org = Some("acme-old".into());
                }
                if *k == EventKind::AccountRenamed {
                    event.previous_email = Some("old@example.com".into());
                }
                event_line(&event)
            })
            .collect();
        assert_eq!(
            lines,
            [
                "#7  2026-05-01T12:00:00Z  acme: dep@example.com added as deployer, invited\n",
                "#7  2026-05-01T12:00:00Z  acme: dep@example.com invited again as deployer\n",
                "#7  2026-05-01T12:00:00Z  acme: dep@example.com activated, deployer\n",
                "#7  2026-05-01T12:00:00Z  acme: dep@example.com is now deployer (was viewer)\n",
                "#7  2026-05-01T12:00:00Z  acme: dep@example.com's invitation expired\n",
                "#7  2026-05-01T12:00:00Z  acme: dep@example.com removed (was deployer)\n",
                "#7  2026-05-01T12:00:00Z  acme: dep@example.com is blocked until \
                 2026-12-14T00:00:00Z: laptop lost\n",
                "#7  2026-05-01T12:00:00Z  acme: dep@example.com is unblocked\n",
                "#7  2026-05-01T12:00:00Z  acme: dep@example.com is deployer until \
                 2026-12-14T00:00:00Z, then viewer\n",
                "#7  2026-05-01T12:00:00Z  dep@example.com bound to uid 1001\n",
                "#7  2026-05-01T12:00:00Z  acme-old renamed to acme\n",
                "#7  2026-05-01T12:00:00Z  old@example.com renamed to dep@example.com\n",
            ]
        );
        let mut hostile = event(EventKind::MemberRemoved);
        hostile.org = Some("acme\u{1b}]0;t\u{7}".into());
        hostile.email = "a\u{202e}b@example.com".into();
        hostile.at = "\u{1b}[2J".into();
        assert_eq!(
            event_line(&hostile),
            "#7  \\u{1b}[2J  acme\\u{1b}]0;t\\u{7}: a\\u{202e}b@example.com removed (was deployer)\n"
        );
        let mut granted = event(EventKind::RoleChanged);
        granted.actor = Some(AuditActor {
            kind: "user".into(),
            email: Some("admin@example.com".into()),
            uid: Some(1000),
            user: Some("alice".into()),
            pid: Some(4242),
        });
        assert_eq!(
            event_line(&granted),
            "#7  2026-05-01T12:00:00Z  acme: dep@example.com is now deployer (was viewer), \
             by admin@example.com (alice)\n"
        );
        let mut unbound = event(EventKind::BindingChanged);
        unbound.uid = None;
        assert_eq!(
            event_line(&unbound),
            "#7  2026-05-01T12:00:00Z  dep@example.com unbound\n"
        );
    }

    #[test]
    fn blocks_ends_and_elevations_read_as_sentences() {
        let daemon = AuditActor {
            kind: "daemon".into(),
            email: None,
            uid: None,
            user: None,
            pid: None,
        };
        let mut blocked = event(EventKind::MemberBlocked);
        blocked.email = "alice@example.com".into();
        blocked.reason = Some("on leave".into());
        assert_eq!(
            event_line(&blocked),
            "#7  2026-05-01T12:00:00Z  acme: alice@example.com is blocked until unblocked: \
             on leave\n"
        );
        blocked.reason = None;
        assert_eq!(
            event_line(&blocked),
            "#7  2026-05-01T12:00:00Z  acme: alice@example.com is blocked until unblocked\n"
        );
        let mut lifted = event(EventKind::MemberUnblocked);
        lifted.email = "alice@example.com".into();
        lifted.actor = Some(daemon.clone());
        assert_eq!(
            event_line(&lifted),
            "#7  2026-05-01T12:00:00Z  acme: alice@example.com is unblocked, by the daemon\n"
        );
        let mut ending = event(EventKind::AccessExpiring);
        ending.email = "alice@example.com".into();
        ending.previous_role = None;
        ending.until = Some("2026-12-14T00:00:00Z".into());
        assert_eq!(
            event_line(&ending),
            "#7  2026-05-01T12:00:00Z  acme: alice@example.com's access ends at \
             2026-12-14T00:00:00Z\n"
        );
        let mut elevated = event(EventKind::RoleChanged);
        elevated.role = Some(Role::Admin);
        elevated.previous_role = Some(Role::Deployer);
        elevated.until = Some("2026-05-01T20:00:00Z".into());
        assert_eq!(
            event_line(&elevated),
            "#7  2026-05-01T12:00:00Z  acme: dep@example.com is now admin until \
             2026-05-01T20:00:00Z (was deployer)\n"
        );
        let mut ended = event(EventKind::MemberRemoved);
        ended.actor = Some(daemon);
        assert_eq!(
            event_line(&ended),
            "#7  2026-05-01T12:00:00Z  acme: dep@example.com removed (was deployer), by the daemon\n"
        );
        // A reason and an end are the daemon's text, shown escaped.
        let mut hostile = event(EventKind::MemberBlocked);
        hostile.reason = Some("\u{1b}]0;t\u{7}\u{202e}".into());
        hostile.until = Some("\u{1b}[2J".into());
        assert_eq!(
            event_line(&hostile),
            "#7  2026-05-01T12:00:00Z  acme: dep@example.com is blocked until \\u{1b}[2J: \
             \\u{1b}]0;t\\u{7}\\u{202e}\n"
        );
        let mut hostile = event(EventKind::AccessExpiring);
        hostile.until = Some("\u{202e}x".into());
        assert!(event_line(&hostile).contains("until \\u{202e}x, then viewer"));
        let mut hostile = event(EventKind::RoleChanged);
        hostile.until = Some("\u{202e}x".into());
        assert!(event_line(&hostile).contains("deployer until \\u{202e}x (was viewer)"));
    }
}
