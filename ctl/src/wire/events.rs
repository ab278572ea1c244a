//! `events.subscribe`: a connection that becomes a feed of membership changes, each a
//! JSON-RPC notification (`{"jsonrpc":"2.0","method":"event","params":{…}}`) with a
//! sequence number, so that a service that reconnects with `after` misses nothing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{AuditActor, MemberStatus, Params, Role};

/// The method of the notifications a feed carries.
pub const EVENT_METHOD: &str = "event";
/// The method of the last notification of a feed the daemon ends, saying why.
pub const FEED_CLOSED_METHOD: &str = "events.closed";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsSubscribeParams {
    /// Only this organization's changes. Superusers and services may leave it out for
    /// every change; an organization's admin gets their current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Replay every change after this sequence number first; without it, the feed starts
    /// with the next change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
}

impl Params for EventsSubscribeParams {
    fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }
}

/// The result of `events.subscribe`, after which the connection carries only the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Subscribed {
    /// The organization whose changes come, or none for every change.
    pub org: Option<String>,
    /// The feed starts after this sequence number: `after`, or the last change so far.
    pub after: u64,
    /// The last change so far when subscribing.
    pub head: u64,
}

/// Declares the kinds of change once: variant and name.
macro_rules! event_kinds {
    ($($variant:ident = $name:literal: $doc:literal;)*) => {
        /// What changed. Stored and sent by name, so kinds can be added in any order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $(#[doc = $doc] $variant,)*
        }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }
        }
    };
}

event_kinds! {
    MemberAdded = "member.added": "A membership was made: invited, or active at once.";
    MemberReinvited = "member.reinvited": "An expired invitation was issued again.";
    MemberActivated = "member.activated": "An invitation was redeemed: the member is active.";
    RoleChanged = "member.role_changed": "A member's role changed.";
    MemberExpired = "member.expired": "An invitation lapsed.";
    MemberRemoved = "member.removed": "A member was removed, an invitation revoked, or access ended.";
    MemberBlocked = "member.blocked": "A member was blocked: end their sessions (`reason`, `until`).";
    MemberUnblocked = "member.unblocked": "A member's block was lifted, by an admin or at its end.";
    AccessExpiring = "member.access_expiring": "A member's access or elevated role ends at `until` (a week and a day ahead).";
    BindingChanged = "binding.changed": "An account was bound to a Unix user, or unbound.";
    OrgRenamed = "org.renamed": "An organization was renamed: `org` is its new name, `previous_org` its old one (no `email`).";
    AccountRenamed = "account.renamed": "An account's e-mail changed: `email` is the new one, `previous_email` the old one.";
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;

    fn from_str(name: &str) -> Result<EventKind, String> {
        EventKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "{:?} is not a kind of event",
                    name.chars().take(40).collect::<String>()
                )
            })
    }
}

/// A kind of event is a string, one of the names.
impl schemars::JsonSchema for EventKind {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EventKind".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = EventKind::ALL.iter().map(|kind| kind.as_str()).collect();
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<EventKind, D::Error> {
        super::deserialize_by_name(deserializer, "a kind of event, such as member.added")
    }
}

/// One change, as a feed's `event` notification carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Event {
    /// Increases by one with each change the daemon makes, across all organizations; a
    /// subscriber that sees only one organization sees gaps.
    pub seq: u64,
    /// When, RFC 3339 in UTC.
    pub at: String,
    pub kind: EventKind,
    /// The organization, for a membership's change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// The account's address.
    pub email: String,
    /// The member's role after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The role before, for `member.role_changed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_role: Option<Role>,
    /// The membership's status after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MemberStatus>,
    /// The uid the member acts as, or the account is bound to (none once unbound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Who made the change, as its audit record names them (absent from changes made
    /// before the feed carried it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<AuditActor>,
    /// When what the event tells of ends, RFC 3339 in UTC: a block, access, or an elevated
    /// role (for `member.role_changed`, the role's end; for `member.access_expiring`, the
    /// end it warns of).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// A block's reason, for `member.blocked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The organization's former name, for `org.renamed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_org: Option<String>,
    /// The account's former e-mail, for `account.renamed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_email: Option<String>,
}

/// Why the daemon ended a feed: the params of its last notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FeedClosed {
    /// The last sequence number sent: resubscribe with it as `after` to miss nothing.
    pub after: u64,
    /// Why, for programs (absent from daemons older than it: `other`).
    #[serde(default)]
    pub cause: FeedEnd,
    /// Why, in one sentence.
    pub reason: String,
}

/// Why a feed ended, for programs; [`FeedClosed::reason`] says it for people.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FeedEnd {
    /// The subscriber may no longer see the feed: no longer an admin of the organization,
    /// or no longer in the daemon's service group.
    Revoked,
    /// The subscriber fell too far behind the newest change (the daemon's `--feed-max-lag`).
    Behind,
    /// The daemon is stopping.
    Stopping,
    /// The daemon could not read its store.
    Internal,
    /// A cause this client does not know yet.
    #[default]
    #[serde(other)]
    Other,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn kinds_read_and_write_by_name() {
        for kind in EventKind::ALL {
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
            assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), *kind);
            let stored = postcard::to_allocvec(kind).unwrap();
            assert_eq!(postcard::from_bytes::<EventKind>(&stored).unwrap(), *kind);
        }
        assert!(serde_json::from_str::<EventKind>("\"member.eaten\"").is_err());
    }
}
