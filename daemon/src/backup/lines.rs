//! The lines of a backup file after its header: one record a line, each a JSON object whose
//! `kind` says which table it belongs to, and the last one, `end`, with the counts.
//!
//! Times are milliseconds since the Unix epoch, as the store keeps them, so that a restore
//! is exact; token keys are base64url (43 characters); enumerations are spelled as the wire
//! spells them. A field is never removed or renamed within a format version.

use compartmentctl::wire::{AuditActor, BackupCounts, EventKind, MemberStatus, Role};
use serde::{Deserialize, Serialize};

use crate::store::{
    chain, AccountRecord, BindingRecord, EventNote, EventRecord, LegacyAuditRecord,
    MembershipRecord, Millis, OrgRecord, Sealed, TokenHash, TokenRecord,
};

/// One line of a backup after the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Line {
    Org {
        name: String,
        #[serde(flatten)]
        record: OrgRecord,
    },
    Account {
        email: String,
        #[serde(flatten)]
        record: AccountRecord,
    },
    Binding {
        uid: u32,
        #[serde(flatten)]
        record: BindingRecord,
    },
    Membership {
        org: String,
        email: String,
        #[serde(flatten)]
        record: MembershipRecord,
    },
    Token {
        key: TokenHash,
        #[serde(flatten)]
        record: TokenRecord,
    },
    CurrentOrg {
        uid: u32,
        org: String,
    },
    /// A record of the audit log: as sealed (`record` is the text that was hashed, `hash`
    /// its hash in hex), or, from a backup of before the chain, the old fields.
    Audit {
        seq: u64,
        #[serde(flatten)]
        body: AuditLine,
    },
    /// A change of the feed, with its sequence number; `event` is its kind.
    Event {
        seq: u64,
        #[serde(flatten)]
        record: EventLine,
    },
    /// The event `seq` is in `org`'s feed.
    FeedEntry {
        org: String,
        seq: u64,
    },
    /// The last line: how many records of each kind came before it.
    End {
        counts: BackupCounts,
    },
}

/// What an audit line holds after its number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AuditLine {
    Sealed {
        record: String,
        hash: String,
    },
    /// Written by a daemon of before the chain: sealed as it is restored.
    Legacy(LegacyAuditRecord),
}

impl AuditLine {
    pub fn of(sealed: Sealed) -> AuditLine {
        AuditLine::Sealed {
            record: sealed.text,
            hash: chain::hex(&sealed.hash),
        }
    }
}

/// An [`EventRecord`] in a backup line, its kind named `event` (the line's `kind` is
/// `event`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    pub at: Millis,
    pub event: EventKind,
    pub org: Option<String>,
    pub email: String,
    pub role: Option<Role>,
    pub previous_role: Option<Role>,
    pub status: Option<MemberStatus>,
    pub uid: Option<u32>,
    /// Who made the change (absent from changes made before the feed named them, and from
    /// the backups of daemons of then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<AuditActor>,
    /// When what the event tells of ends, and a block's reason (absent when the event has
    /// neither, and from the backups of daemons before blocks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<EventNote>,
}

impl From<EventRecord> for EventLine {
    fn from(record: EventRecord) -> EventLine {
        EventLine {
            at: record.at,
            event: record.kind,
            org: record.org,
            email: record.email,
            role: record.role,
            previous_role: record.previous_role,
            status: record.status,
            uid: record.uid,
            actor: record.actor,
            note: record.note,
        }
    }
}

impl From<EventLine> for EventRecord {
    fn from(line: EventLine) -> EventRecord {
        EventRecord {
            at: line.at,
            kind: line.event,
            org: line.org,
            email: line.email,
            role: line.role,
            previous_role: line.previous_role,
            status: line.status,
            uid: line.uid,
            actor: line.actor,
            note: line.note,
        }
    }
}

impl Line {
    /// Counts this line in `counts` (the trailer counts nothing).
    pub fn count(&self, counts: &mut BackupCounts) {
        let count = match self {
            Line::Org { .. } => &mut counts.org,
            Line::Account { .. } => &mut counts.account,
            Line::Binding { .. } => &mut counts.binding,
            Line::Membership { .. } => &mut counts.membership,
            Line::Token { .. } => &mut counts.token,
            Line::CurrentOrg { .. } => &mut counts.current_org,
            Line::Audit { .. } => &mut counts.audit,
            Line::Event { .. } => &mut counts.event,
            Line::FeedEntry { .. } => &mut counts.feed_entry,
            Line::End { .. } => return,
        };
        *count += 1;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::store::{Block, Deadline, Elevation, Provenance, Terms, TokenState};
    use compartmentctl::wire::AccountStatus;

    /// A membership and an event of a backup made before blocks read with no terms and no
    /// note; an event's note is carried.
    #[test]
    fn lines_of_before_blocks_read_and_notes_are_carried() {
        let old = r#"{"kind":"membership","org":"acme","email":"a@x.io","role":"viewer","uid":null,"status":"invited","invited_by":"uid 0","invited_at":4,"expires_at":5,"token_hash":null}"#;
        let Line::Membership { record, .. } = serde_json::from_str::<Line>(old).unwrap() else {
            panic!("not a membership");
        };
        assert_eq!(record.terms, Terms::default());
        let blocked = r#"{"kind":"event","seq":9,"at":6,"event":"member.blocked","org":"acme","email":"a@x.io","role":"viewer","previous_role":null,"status":"active","uid":1001,"note":{"until":7,"reason":"audit","previous_name":null}}"#;
        let line = serde_json::from_str::<Line>(blocked).unwrap();
        assert_eq!(serde_json::to_string(&line).unwrap(), blocked);
        let Line::Event { record, .. } = line else {
            panic!("not an event");
        };
        assert_eq!(
            EventRecord::from(record).note,
            Some(EventNote {
                until: Some(7),
                reason: Some("audit".into()),
                previous_name: Default::default(),
            })
        );
    }

    /// Each kind of line as the operations guide shows it: these strings are the format.
    #[test]
    fn each_line_reads_and_writes_as_documented() {
        let lines = [
            (
                Line::Org {
                    name: "acme".into(),
                    record: OrgRecord {
                        created_at: 1,
                        created_by_uid: 0,
                        groups: Default::default(),
                    },
                },
                r#"{"kind":"org","name":"acme","created_at":1,"created_by_uid":0,"groups":[]}"#,
            ),
            (
                Line::Account {
                    email: "a@x.io".into(),
                    record: AccountRecord {
                        status: AccountStatus::Active,
                        uid: Some(1001),
                        created_at: 2,
                        activated_at: Some(3),
                    },
                },
                r#"{"kind":"account","email":"a@x.io","status":"active","uid":1001,"created_at":2,"activated_at":3}"#,
            ),
            (
                Line::Binding {
                    uid: 1001,
                    record: BindingRecord {
                        email: "a@x.io".into(),
                        user_name: Some("alice".into()),
                        bound_at: 3,
                        provenance: Provenance::Org("acme".into()),
                    },
                },
                r#"{"kind":"binding","uid":1001,"email":"a@x.io","user_name":"alice","bound_at":3,"provenance":{"org":"acme"}}"#,
            ),
            (
                Line::Membership {
                    org: "acme".into(),
                    email: "a@x.io".into(),
                    record: MembershipRecord {
                        role: Role::Deployer,
                        uid: None,
                        status: MemberStatus::Invited,
                        invited_by: "uid 0 (root)".into(),
                        invited_at: 4,
                        expires_at: Some(5),
                        token_hash: Some(TokenHash([0; 32])),
                        terms: Terms {
                            block: Some(Block {
                                reason: "audit".into(),
                                by: "uid 0".into(),
                                at: 4,
                                until: None,
                            }),
                            access_until: Some(Deadline { at: 9, warned: 1 }),
                            elevation: Some(Elevation {
                                until: Deadline { at: 8, warned: 0 },
                                fallback: Role::Viewer,
                            }),
                        },
                    },
                },
                r#"{"kind":"membership","org":"acme","email":"a@x.io","role":"deployer","uid":null,"status":"invited","invited_by":"uid 0 (root)","invited_at":4,"expires_at":5,"token_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","terms":{"block":{"reason":"audit","by":"uid 0","at":4,"until":null},"access_until":{"at":9,"warned":1},"elevation":{"until":{"at":8,"warned":0},"fallback":"viewer"}}}"#,
            ),
            (
                Line::Token {
                    key: TokenHash([0; 32]),
                    record: TokenRecord {
                        org: "acme".into(),
                        email: "a@x.io".into(),
                        expires_at: 5,
                        state: TokenState::Revoked,
                        redeemer: None,
                        issued_by_superuser: true,
                    },
                },
                r#"{"kind":"token","key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","org":"acme","email":"a@x.io","expires_at":5,"state":"revoked","redeemer":null,"issued_by_superuser":true}"#,
            ),
            (
                Line::CurrentOrg {
                    uid: 1001,
                    org: "acme".into(),
                },
                r#"{"kind":"current_org","uid":1001,"org":"acme"}"#,
            ),
            (
                Line::Audit {
                    seq: 7,
                    body: AuditLine::Sealed {
                        record: r#"{"seq":7}"#.into(),
                        hash: "ab".repeat(32),
                    },
                },
                r#"{"kind":"audit","seq":7,"record":"{\"seq\":7}","hash":"abababababababababababababababababababababababababababababababab"}"#,
            ),
            // A record of a backup from before the chain (schema 6): read, to be sealed.
            (
                Line::Audit {
                    seq: 7,
                    body: AuditLine::Legacy(LegacyAuditRecord {
                        at: 6,
                        uid: Some(0),
                        pid: Some(42),
                        action: "user.invite".into(),
                        org: Some("acme".into()),
                        target: Some("a@x.io".into()),
                        detail: None,
                    }),
                },
                r#"{"kind":"audit","seq":7,"at":6,"uid":0,"pid":42,"action":"user.invite","org":"acme","target":"a@x.io","detail":null}"#,
            ),
            (
                Line::Event {
                    seq: 8,
                    record: EventLine {
                        at: 6,
                        event: EventKind::RoleChanged,
                        org: Some("acme".into()),
                        email: "a@x.io".into(),
                        role: Some(Role::Admin),
                        previous_role: Some(Role::Viewer),
                        status: Some(MemberStatus::Active),
                        uid: Some(1001),
                        actor: None,
                        note: Default::default(),
                    },
                },
                r#"{"kind":"event","seq":8,"at":6,"event":"member.role_changed","org":"acme","email":"a@x.io","role":"admin","previous_role":"viewer","status":"active","uid":1001}"#,
            ),
            (
                Line::FeedEntry {
                    org: "acme".into(),
                    seq: 8,
                },
                r#"{"kind":"feed_entry","org":"acme","seq":8}"#,
            ),
        ];
        for (line, text) in lines {
            assert_eq!(serde_json::to_string(&line).unwrap(), text);
            assert_eq!(serde_json::from_str::<Line>(text).unwrap(), line);
        }
    }
}
