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
        EventKind::RoleChanged => format!(
            "{org}: {} is now {} (was {})",
            email,
            role(event.role),
            role(event.previous_role)
        ),
        EventKind::MemberExpired => format!("{org}: {}'s invitation expired", email),
        EventKind::MemberRemoved => {
            format!("{org}: {} removed (was {})", email, role(event.role))
        }
        EventKind::BindingChanged => match event.uid {
            Some(uid) => format!("{} bound to uid {uid}", email),
            None => format!("{} unbound", email),
        },
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
        }
    }

    #[test]
    fn each_kind_reads_as_a_sentence() {
        let lines: Vec<String> = EventKind::ALL
            .iter()
            .map(|k| event_line(&event(*k)))
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
                "#7  2026-05-01T12:00:00Z  dep@example.com bound to uid 1001\n",
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
}
