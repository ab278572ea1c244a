//! The change feed (`events.subscribe`): a connection that, once subscribed, carries only
//! the membership changes its subscriber may see, as JSON-RPC notifications.
//!
//! The feed is the store's `events` table, which every change to a membership or binding
//! appends to in its own transaction, keyed by a sequence number. A subscriber reads it
//! from where it is (`after`) at its own pace, a batch at a time, and waits for the
//! writer's announcement of a new commit when it has caught up. So nothing is ever lost
//! or sent twice, a reconnecting subscriber replays exactly what it missed, and no
//! subscriber can hold up the writer, which announces a commit by setting one number.
//!
//! What bounds a subscriber is how far it may trail: one that reads slower than changes
//! are made falls behind, and once more than `--feed-max-lag` changes made since it
//! subscribed are still unsent, the feed ends with an `events.closed` saying so (`behind`);
//! it resubscribes from its last sequence number. (The replay of what it missed before
//! subscribing does not count.) One that stops reading altogether cannot be told anything:
//! the write timeout disconnects it like any other client.
//!
//! Before each batch is sent, the subscriber's right to it is checked again, so an admin
//! removed from the organization (or a user dropped from the service group) gets nothing
//! more: the feed ends with an `events.closed` notification saying why.

use compartmentctl::wire::{
    Event, EventsSubscribeParams, FeedClosed, FeedEnd, Permission, Subscribed, EVENT_METHOD,
    FEED_CLOSED_METHOD, JSONRPC,
};
use serde::Serialize;

use crate::clock::rfc3339;
use crate::dispatch::Context;
use crate::rules::{identity, Caller, RuleError};
use crate::store::{EventRecord, Reader};

/// The most events read and sent at a time.
pub const FEED_BATCH: usize = 256;

/// Who a feed is for, checked again before every batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A superuser or a member of the service group: every organization.
    Service,
    /// An admin of `org`, for `org` only.
    Admin { org: String },
}

/// A subscription the connection is turned into once its answer is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// Only this organization's changes; every change when `None`.
    pub org: Option<String>,
    /// The last sequence number the subscriber has.
    pub after: u64,
    /// The last change when it subscribed: what it missed before is replayed whatever its
    /// number; only the changes made since count toward how far behind it may fall.
    pub head: u64,
    pub access: Access,
}

impl Feed {
    /// How many changes made since the subscription the subscriber has not had yet, when
    /// the newest change is `newest`.
    pub fn behind(&self, newest: u64) -> u64 {
        newest.saturating_sub(self.after.max(self.head))
    }
}

impl Feed {
    /// Whether the subscriber sees `event`.
    pub fn shows(&self, event: &EventRecord) -> bool {
        match &self.org {
            Some(org) => event.org.as_deref() == Some(org.as_str()),
            None => true,
        }
    }
}

/// Authorizes `params` for `caller` on `snapshot`: the feed and its answer. Superusers and
/// services may subscribe to one organization or to all; anyone else only to an
/// organization they administer (their current one when none is named).
pub async fn subscribe(
    ctx: &Context,
    caller: &Caller,
    params: &EventsSubscribeParams,
    snapshot: &impl Reader,
) -> Result<(Feed, Subscribed), RuleError> {
    let head = snapshot.last_event_seq()?;
    let after = params.after.unwrap_or(head);
    if after > head {
        return Err(RuleError::BadRequest(format!(
            "after {after} is past the last change, {head}"
        )));
    }
    let (org, access) = if ctx.is_service(caller).await {
        if let Some(org) = &params.org {
            if snapshot.org(org)?.is_none() {
                return Err(RuleError::OrgNotFound(org.clone()));
            }
        }
        (params.org.clone(), Access::Service)
    } else {
        let here = admin_of(snapshot, caller, params.org.as_deref())?;
        (Some(here.clone()), Access::Admin { org: here })
    };
    let feed = Feed {
        org: org.clone(),
        after,
        head,
        access,
    };
    Ok((feed, Subscribed { org, after, head }))
}

/// The organization `caller` administers, by the same steps as every request: who they are,
/// which organization, and whether their role there holds the audit log's permission.
fn admin_of(reader: &impl Reader, caller: &Caller, org: Option<&str>) -> Result<String, RuleError> {
    let actor = identity::authenticate(reader, caller)?;
    let here = identity::in_org(reader, &actor, org)?;
    here.require(Permission::OrganizationAuditRead)?;
    Ok(here.org)
}

/// Whether `caller` may still have `feed`'s events; why not when not.
pub async fn still_allowed(
    ctx: &Context,
    caller: &Caller,
    feed: &Feed,
) -> Result<(), (FeedEnd, String)> {
    let caller = ctx.identify(caller.clone()).await;
    match &feed.access {
        Access::Service => {
            if ctx.is_service(&caller).await {
                Ok(())
            } else {
                let reason = "the subscriber is no longer in the daemon's service group";
                Err((FeedEnd::Revoked, reason.to_owned()))
            }
        }
        Access::Admin { org } => {
            let snapshot = ctx.store.read().map_err(|err| {
                tracing::error!(error = %err, "a feed cannot read the store");
                let reason = "internal error; the daemon's log has details";
                (FeedEnd::Internal, reason.to_owned())
            })?;
            admin_of(&snapshot, &caller, Some(org))
                .map(|_| ())
                .map_err(|err| (FeedEnd::Revoked, err.user_message()))
        }
    }
}

/// A notification line, newline included.
pub fn notification(method: &'static str, params: &impl Serialize) -> Vec<u8> {
    #[derive(Serialize)]
    struct Notification<'a, P> {
        jsonrpc: &'static str,
        method: &'static str,
        params: &'a P,
    }
    let mut line = serde_json::to_vec(&Notification {
        jsonrpc: JSONRPC,
        method,
        params,
    })
    .unwrap_or_default();
    line.push(b'\n');
    line
}

/// The `event` notification of the event `seq`.
pub fn event_line(seq: u64, record: EventRecord) -> Vec<u8> {
    let event = Event {
        seq,
        at: rfc3339(record.at),
        kind: record.kind,
        org: record.org,
        email: record.email,
        role: record.role,
        previous_role: record.previous_role,
        status: record.status,
        uid: record.uid,
    };
    notification(EVENT_METHOD, &event)
}

/// The `events.closed` notification that ends a feed.
pub fn closed_line(after: u64, cause: FeedEnd, reason: String) -> Vec<u8> {
    notification(
        FEED_CLOSED_METHOD,
        &FeedClosed {
            after,
            cause,
            reason,
        },
    )
}
