//! The records' encoding in a backend's values: postcard after a one-byte mark, so that a
//! record written as JSON (schema 3 and before) still reads.

use compartmentctl::wire::AuditActor;
use serde::{Deserialize, Serialize};

use super::{EventRecord, LegacyEventRecord, MemberRow, MembershipView, Result, StoreError};

/// The first byte of every record this daemon writes: postcard's encoding of the record
/// follows. A JSON record (schema 3 and before) begins with `{` instead.
pub(crate) const BINARY_RECORD: u8 = 0x01;

pub(crate) fn encode<T: Serialize>(table: &'static str, value: &T) -> Result<Vec<u8>> {
    postcard::to_extend(value, vec![BINARY_RECORD]).map_err(|err| StoreError::Unencodable {
        table,
        detail: err.to_string(),
    })
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(table: &'static str, bytes: &'a [u8]) -> Result<T> {
    let corrupt = |detail: String| StoreError::Corrupt { table, detail };
    match bytes.split_first() {
        Some((&BINARY_RECORD, fields)) => match postcard::take_from_bytes(fields) {
            Ok((value, [])) => Ok(value),
            Ok((_, rest)) => Err(corrupt(format!("{} bytes after the record", rest.len()))),
            Err(err) => Err(corrupt(err.to_string())),
        },
        Some((b'{', _)) => serde_json::from_slice(bytes).map_err(|err| corrupt(err.to_string())),
        Some((first, _)) => Err(corrupt(format!("unknown record format {first:#04x}"))),
        None => Err(corrupt("an empty record".to_owned())),
    }
}

/// An event of the feed, as this daemon writes it, as schema 7 did (without its note), or
/// as schemas 4 to 6 did (without its actor either). The layouts cannot be mistaken for
/// each other: a record of one is a whole record of that layout only (an older one lacks
/// the trailing fields' bytes; read as an older one, a newer one has bytes after it).
/// Postcard writes a struct as its fields in a row, so schema 7's layout is the legacy
/// record followed by the actor.
pub(crate) fn decode_event(bytes: &[u8]) -> Result<EventRecord> {
    decode::<EventRecord>("events", bytes).or_else(|err| {
        decode::<(LegacyEventRecord, Option<AuditActor>)>("events", bytes)
            .map(|(old, actor)| EventRecord {
                actor,
                ..EventRecord::from(old)
            })
            .or_else(|_| decode::<LegacyEventRecord>("events", bytes).map(EventRecord::from))
            .map_err(|_| err)
    })
}

/// A membership as a list reads it: from a binary record, the whole record read in place,
/// less what a list does not show; from a JSON one, only the fields a list shows.
pub(crate) fn decode_member_row(bytes: &[u8]) -> Result<MemberRow> {
    if bytes.first() == Some(&BINARY_RECORD) {
        decode::<MembershipView<'_>>("memberships", bytes).map(MemberRow::from)
    } else {
        decode("memberships", bytes)
    }
}
