//! Values between the records and PostgreSQL's columns: enumerations spelled as the wire
//! spells them, times and counts as `bigint`, uids checked, and what to say of a stored value
//! this daemon cannot read.

use serde::de::value::StrDeserializer;
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::Serialize;
use tokio_postgres::Row;

use crate::store::{Millis, Result, StoreError, TokenHash};

/// A stored value this daemon cannot read: the database was changed behind its back.
pub(super) fn corrupt(table: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        table,
        detail: detail.to_string(),
    }
}

/// An enumeration's value as the wire spells it (`"admin"`, `"invited"`, …).
pub(super) fn spelled<T: Serialize>(table: &'static str, value: &T) -> Result<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => Ok(text),
        Ok(other) => Err(StoreError::Unencodable {
            table,
            detail: format!("{other} is not a name"),
        }),
        Err(err) => Err(StoreError::Unencodable {
            table,
            detail: err.to_string(),
        }),
    }
}

/// A value kept as its JSON text (an event's actor).
pub(super) fn json_text<T: Serialize>(table: &'static str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|err| StoreError::Unencodable {
        table,
        detail: err.to_string(),
    })
}

/// The value kept as the JSON `text`.
pub(super) fn from_json_text<T: DeserializeOwned>(table: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|err| corrupt(table, err))
}

/// The enumeration's value spelled `text`.
pub(super) fn parsed<T: DeserializeOwned>(table: &'static str, text: &str) -> Result<T> {
    let text: StrDeserializer<'_, serde::de::value::Error> = text.into_deserializer();
    T::deserialize(text).map_err(|err| corrupt(table, err))
}

/// A time or count as a parameter: beyond `i64::MAX` means "no bound".
pub(super) fn bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A time to store: one this daemon made, so within range (a value beyond is refused
/// rather than stored wrong).
pub(super) fn stored(table: &'static str, value: Millis) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::Unencodable {
        table,
        detail: format!("the time {value} is out of range"),
    })
}

/// A limit as a parameter.
pub(super) fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn millis(table: &'static str, value: i64) -> Result<Millis> {
    Millis::try_from(value).map_err(|_| corrupt(table, format!("a negative time {value}")))
}

pub(super) fn uid(table: &'static str, value: Option<i64>) -> Result<Option<u32>> {
    value
        .map(|uid| u32::try_from(uid).map_err(|_| corrupt(table, format!("uid {uid}"))))
        .transpose()
}

/// The uid in `row`'s column `column`, which holds one.
pub(super) fn uid_of(table: &'static str, row: &Row, column: &str) -> Result<u32> {
    uid(table, Some(row.try_get(column)?))?.ok_or_else(|| corrupt(table, "no uid"))
}

pub(super) fn token_hash(table: &'static str, bytes: &[u8]) -> Result<TokenHash> {
    <[u8; 32]>::try_from(bytes)
        .map(TokenHash)
        .map_err(|_| corrupt(table, format!("a key of {} bytes", bytes.len())))
}
