//! What a rule writes, on the writer's transaction only, and what every backend derives
//! from each write: the index keys it keeps in step and the feed's events.

use compartmentctl::wire::EventKind;

use super::{
    AccountRecord, AuditRecord, BindingRecord, EventRecord, MembershipRecord, Millis, OrgRecord,
    Reader, Result, TokenHash, TokenRecord, TokenState, SPENT_TOKEN_MEMORY,
};

/// Changes, on the writer's transaction only.
pub trait Changes: Reader {
    fn put_org(&self, name: &str, org: &OrgRecord) -> Result<()>;
    fn put_account(&self, email: &str, account: &AccountRecord) -> Result<()>;
    fn put_binding(&self, uid: u32, binding: &BindingRecord) -> Result<()>;
    fn delete_binding(&self, uid: u32) -> Result<()>;
    /// Writes a membership, keeping `account_orgs` and `pending_by_expiry` in step with
    /// it; `old` is the record it replaces.
    fn put_membership(
        &self,
        org: &str,
        email: &str,
        new: &MembershipRecord,
        old: Option<&MembershipRecord>,
    ) -> Result<()>;
    /// Deletes a membership and its index entries; `old` is the record being deleted.
    fn delete_membership(&self, org: &str, email: &str, old: &MembershipRecord) -> Result<()>;
    /// Writes a token, keeping `spent_tokens` in step with its state.
    fn put_token(&self, hash: &TokenHash, token: &TokenRecord) -> Result<()>;
    /// Forgets a token and its index entry.
    fn delete_token(&self, hash: &TokenHash) -> Result<()>;
    fn set_current_org(&self, uid: u32, org: &str) -> Result<()>;
    fn clear_current_org(&self, uid: u32) -> Result<()>;
    fn append_audit(&self, record: &AuditRecord) -> Result<()>;
}

/// The pending-index key of a membership, if it has one.
pub(super) fn pending_key(record: &MembershipRecord) -> Option<Millis> {
    match (record.status, record.expires_at) {
        (compartmentctl::wire::MemberStatus::Invited, Some(expires_at)) => Some(expires_at),
        _ => None,
    }
}

/// The `spent_tokens` key of a token, if it has one: when a spent token may be forgotten.
pub(crate) fn spent_key(token: &TokenRecord) -> Option<Millis> {
    (token.state != TokenState::Pending)
        .then(|| token.expires_at.saturating_add(SPENT_TOKEN_MEMORY))
}

/// The event a membership's change makes, if the feed tells of it: a new membership, an
/// activation, an expiry, a new invitation after an expiry, a role changed, a removal. A
/// change the feed does not tell of (a new URL for a pending invitation) makes none.
pub(super) fn membership_event(
    at: Millis,
    org: &str,
    email: &str,
    new: Option<&MembershipRecord>,
    old: Option<&MembershipRecord>,
) -> Option<EventRecord> {
    use compartmentctl::wire::MemberStatus::{Active, Expired, Invited};
    let (kind, record) = match (old, new) {
        (None, Some(new)) => (EventKind::MemberAdded, new),
        (Some(old), None) => (EventKind::MemberRemoved, old),
        (Some(old), Some(new)) => {
            let kind = match (old.status, new.status) {
                (from, Active) if from != Active => EventKind::MemberActivated,
                (from, Expired) if from != Expired => EventKind::MemberExpired,
                (Expired, Invited) => EventKind::MemberReinvited,
                _ if old.role != new.role => EventKind::RoleChanged,
                _ => return None,
            };
            (kind, new)
        }
        (None, None) => return None,
    };
    Some(EventRecord {
        at,
        kind,
        org: Some(org.to_owned()),
        email: email.to_owned(),
        role: Some(record.role),
        previous_role: match (kind, old) {
            (EventKind::RoleChanged, Some(old)) => Some(old.role),
            _ => None,
        },
        status: (kind != EventKind::MemberRemoved).then_some(record.status),
        uid: record.uid,
    })
}

/// The event of `email`'s account being bound to `uid`, or unbound (`None`).
pub(super) fn binding_event(at: Millis, email: String, uid: Option<u32>) -> EventRecord {
    EventRecord {
        at,
        kind: EventKind::BindingChanged,
        org: None,
        email,
        role: None,
        previous_role: None,
        status: None,
        uid,
    }
}
