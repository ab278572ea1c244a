//! The audit log's chain: each record is kept as the exact JSON text of its entry and
//! sealed with `SHA-256(previous hash ‖ text)`, the first record's previous hash being 32
//! zero bytes. Both backends store the text and the hash as they are; verifying reads them
//! back and hashes the text again, so an edited, removed, swapped or added record breaks
//! the chain where it was changed (docs/audit.md).

use compartmentctl::wire::{AuditBreak, AuditEntry, AuditRecordView, AuditVerified};
use sha2::{Digest, Sha256};

use super::{AuditRecord, Millis, Reader, Result, StoreError};

/// A hash of the chain.
pub type ChainHash = [u8; 32];

/// The hash before the first record.
pub const GENESIS: ChainHash = [0; 32];

/// A record as stored: its number, its text and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub seq: u64,
    pub text: String,
    pub hash: ChainHash,
}

/// The hash of `text` following `previous`.
pub fn link(previous: &ChainHash, text: &str) -> ChainHash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(text.as_bytes());
    hasher.finalize().into()
}

/// An RFC 3339 time with milliseconds, UTC: fixed width, so that texts sort as times do.
pub fn timestamp(at: Millis) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at);
    humantime::format_rfc3339_millis(time).to_string()
}

/// The entry `record` is as record `seq`.
pub fn entry(seq: u64, record: &AuditRecord) -> AuditEntry {
    AuditEntry {
        seq,
        at: timestamp(record.at),
        actor: record.actor.clone(),
        event: record.event.clone(),
        org: record.org.clone(),
        target: record.target.clone(),
        before: record.before.clone(),
        after: record.after.clone(),
        outcome: record.outcome.clone(),
        detail: record.detail.clone(),
    }
}

/// Seals `record` as record `seq` after the record whose hash is `previous`.
pub fn seal(previous: &ChainHash, seq: u64, record: &AuditRecord) -> Result<Sealed> {
    let text =
        serde_json::to_string(&entry(seq, record)).map_err(|err| StoreError::Unencodable {
            table: "audit",
            detail: err.to_string(),
        })?;
    let hash = link(previous, &text);
    Ok(Sealed { seq, text, hash })
}

impl Sealed {
    /// The entry its text holds.
    pub fn entry(&self) -> Result<AuditEntry> {
        serde_json::from_str(&self.text).map_err(|err| StoreError::Corrupt {
            table: "audit",
            detail: format!("record {}: {err}", self.seq),
        })
    }

    /// The entry with its hash, as `audit.list` answers it.
    pub fn view(&self) -> Result<AuditRecordView> {
        Ok(AuditRecordView {
            entry: self.entry()?,
            hash: hex(&self.hash),
        })
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// 32 bytes from 64 hex digits.
pub fn unhex(text: &str) -> Option<ChainHash> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut hash = [0; 32];
    for (byte, pair) in hash.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(hash)
}

/// A hash read back from the store, refused when it is not 32 bytes.
pub fn stored_hash(table: &'static str, seq: u64, bytes: &[u8]) -> Result<ChainHash> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("record {seq}: a hash of {} bytes", bytes.len()),
    })
}

/// A record the log must reach and agree with: a checkpoint's, or the last one this
/// daemon knows it appended. `source` says which, in words.
#[derive(Debug, Clone)]
pub struct Anchor {
    pub seq: u64,
    pub hash: ChainHash,
    pub source: String,
}

/// Reads the whole log in order and checks that each record is where its number says,
/// holds its own number, and hashes to its stored hash from the one before; and that the
/// log reaches every anchor and agrees with it. Names the first record that does not.
#[cfg(test)]
pub fn verify(reader: &impl Reader, anchors: &[Anchor]) -> Result<AuditVerified> {
    verify_from(reader, None, anchors)
}

/// [`verify`], from `start` when the records up to it were pruned: the first record kept
/// must be the one after it, and follow from its hash.
pub fn verify_from(
    reader: &impl Reader,
    start: Option<&Anchor>,
    anchors: &[Anchor],
) -> Result<AuditVerified> {
    let mut previous = start.map_or(GENESIS, |start| start.hash);
    let mut first = None;
    let mut last: Option<u64> = start.map(|start| start.seq);
    let broken = 'walk: loop {
        let page = reader.audit_after(last.unwrap_or(0), 4096)?;
        if page.is_empty() {
            break None;
        }
        for sealed in page {
            let expected = last.map_or(1, |last| last + 1);
            if let Some(problem) = fault(&sealed, expected, &previous, anchors) {
                break 'walk Some(AuditBreak {
                    seq: expected.min(sealed.seq),
                    problem,
                });
            }
            first.get_or_insert(sealed.seq);
            last = Some(sealed.seq);
            previous = sealed.hash;
        }
    };
    let end = last.unwrap_or(0);
    let broken = broken.or_else(|| {
        anchors
            .iter()
            .filter(|anchor| anchor.seq > end)
            .max_by_key(|anchor| anchor.seq)
            .map(|anchor| AuditBreak {
                seq: end + 1,
                problem: format!(
                    "the log ends at record {end}, but {} covers records up to {}: records {} to {} were cut off",
                    anchor.source,
                    anchor.seq,
                    end + 1,
                    anchor.seq
                ),
            })
    });
    Ok(AuditVerified {
        first,
        last,
        checked_against: anchors
            .iter()
            .map(|anchor| format!("{} (record {})", anchor.source, anchor.seq))
            .collect(),
        broken,
    })
}

/// What is wrong with `sealed`, found where record `expected` should be after the record
/// whose hash is `previous`.
fn fault(
    sealed: &Sealed,
    expected: u64,
    previous: &ChainHash,
    anchors: &[Anchor],
) -> Option<String> {
    if sealed.seq > expected {
        let missing = if sealed.seq == expected + 1 {
            format!("record {expected} is missing")
        } else {
            format!("records {expected} to {} are missing", sealed.seq - 1)
        };
        return Some(format!("{missing}: it was removed"));
    }
    match serde_json::from_str::<AuditEntry>(&sealed.text) {
        Ok(entry) if entry.seq != sealed.seq => {
            return Some(format!(
                "record {} holds the text of record {}: records were moved or swapped",
                sealed.seq, entry.seq
            ))
        }
        Ok(_) => {}
        Err(err) => {
            return Some(format!(
                "record {}'s text is not a record ({err})",
                sealed.seq
            ))
        }
    }
    if link(previous, &sealed.text) != sealed.hash {
        return Some(format!(
            "record {} does not hash to its stored hash from the record before it: it was changed, or the record before it was",
            sealed.seq
        ));
    }
    anchors
        .iter()
        .find(|anchor| anchor.seq == sealed.seq && anchor.hash != sealed.hash)
        .map(|anchor| {
            format!(
                "record {} differs from {}: the log up to it was rewritten",
                sealed.seq, anchor.source
            )
        })
}
