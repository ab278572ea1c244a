//! `admin.backup` on the daemon's side: the header from one snapshot, then that snapshot's
//! every row, a page at a time, as `backup.records` notifications on the connection that
//! asked, and a `backup.end` with what was sent.

use compartmentctl::wire::{
    BackupCounts, BackupEnd, BackupFailed, BackupHeader, BACKUP_END_METHOD, BACKUP_FAILED_METHOD,
    BACKUP_FORMAT, BACKUP_RECORDS_METHOD, BACKUP_VERSION, JSONRPC,
};
use tokio::net::unix::OwnedWriteHalf;
use tokio_util::sync::CancellationToken;

use super::lines::{AuditLine, Line};
use crate::clock::{rfc3339, Millis};
use crate::events::{notification, Daemon};
use crate::limits::Limits;
use crate::rules::{Caller, RuleError};
use crate::sending::{send, Ending};
use crate::store::{Export, Reader, Snapshot, StoreError, TokenHash, CURRENT_SCHEMA_VERSION};

/// The most records read from the snapshot at a time: a few hundred kilobytes of lines.
pub const BACKUP_PAGE: usize = 1000;

/// A backup being sent: the snapshot it is read from, held until the last page is sent.
pub struct Backup {
    snapshot: Snapshot,
    counts: BackupCounts,
}

impl std::fmt::Debug for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backup")
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

/// Authorizes a backup for `caller` (superusers only), then takes the snapshot it is read
/// from (`snapshot`) and reads its header, taken `now`: the backup to send and the answer.
pub fn begin(
    caller: &Caller,
    snapshot: impl FnOnce() -> Result<Snapshot, StoreError>,
    now: Millis,
) -> Result<(Backup, BackupHeader), RuleError> {
    caller.require_superuser("taking a backup")?;
    let snapshot = snapshot()?;
    let counts = snapshot.counts()?;
    let header = BackupHeader {
        format: BACKUP_FORMAT.to_owned(),
        version: BACKUP_VERSION,
        schema: CURRENT_SCHEMA_VERSION,
        taken_at: rfc3339(now),
        store: snapshot.engine().to_owned(),
        last_event: snapshot.last_event_seq()?,
        counts,
    };
    Ok((Backup { snapshot, counts }, header))
}

/// Where the next page starts: the table, and the key of the last row sent from it.
#[derive(Debug, Clone)]
enum Cursor {
    Orgs(Option<String>),
    Accounts(Option<String>),
    Bindings(Option<u32>),
    Memberships(Option<(String, String)>),
    Tokens(Option<TokenHash>),
    CurrentOrgs(Option<u32>),
    Audit(u64),
    Events(u64),
    FeedEntries(Option<(String, u64)>),
    Done,
}

/// The next page of at most [`BACKUP_PAGE`] lines from `cursor`, and where the one after
/// starts; an empty page only at the end.
fn next_page(snapshot: &Snapshot, mut cursor: Cursor) -> Result<(Vec<Line>, Cursor), StoreError> {
    loop {
        let (lines, next) = page_of(snapshot, cursor)?;
        if !lines.is_empty() || matches!(next, Cursor::Done) {
            return Ok((lines, next));
        }
        cursor = next;
    }
}

/// One page of the table `cursor` names: its lines, and the cursor after them (the next
/// table's start once this one has no more).
fn page_of(snapshot: &Snapshot, cursor: Cursor) -> Result<(Vec<Line>, Cursor), StoreError> {
    /// `next` when the page was full (the table may hold more), else `then`.
    fn after<T>(page: &[T], next: impl FnOnce(&T) -> Cursor, then: Cursor) -> Cursor {
        match page.last() {
            Some(last) if page.len() >= BACKUP_PAGE => next(last),
            _ => then,
        }
    }
    Ok(match cursor {
        Cursor::Orgs(from) => {
            let page = snapshot.orgs_after(from.as_deref(), BACKUP_PAGE)?;
            let next = after(
                &page,
                |(name, _)| Cursor::Orgs(Some(name.clone())),
                Cursor::Accounts(None),
            );
            let lines = page
                .into_iter()
                .map(|(name, record)| Line::Org { name, record });
            (lines.collect(), next)
        }
        Cursor::Accounts(from) => {
            let page = snapshot.accounts_after(from.as_deref(), BACKUP_PAGE)?;
            let next = after(
                &page,
                |(email, _)| Cursor::Accounts(Some(email.clone())),
                Cursor::Bindings(None),
            );
            let lines = page
                .into_iter()
                .map(|(email, record)| Line::Account { email, record });
            (lines.collect(), next)
        }
        Cursor::Bindings(from) => {
            let page = snapshot.bindings_after(from, BACKUP_PAGE)?;
            let next = after(
                &page,
                |(uid, _)| Cursor::Bindings(Some(*uid)),
                Cursor::Memberships(None),
            );
            let lines = page
                .into_iter()
                .map(|(uid, record)| Line::Binding { uid, record });
            (lines.collect(), next)
        }
        Cursor::Memberships(from) => {
            let key = from
                .as_ref()
                .map(|(org, email)| (org.as_str(), email.as_str()));
            let page = snapshot.memberships_after(key, BACKUP_PAGE)?;
            let next = after(
                &page,
                |(org, email, _)| Cursor::Memberships(Some((org.clone(), email.clone()))),
                Cursor::Tokens(None),
            );
            let lines = page
                .into_iter()
                .map(|(org, email, record)| Line::Membership { org, email, record });
            (lines.collect(), next)
        }
        Cursor::Tokens(from) => {
            let page = snapshot.tokens_after(from.as_ref(), BACKUP_PAGE)?;
            let next = after(
                &page,
                |(key, _)| Cursor::Tokens(Some(*key)),
                Cursor::CurrentOrgs(None),
            );
            let lines = page
                .into_iter()
                .map(|(key, record)| Line::Token { key, record });
            (lines.collect(), next)
        }
        Cursor::CurrentOrgs(from) => {
            let page = snapshot.current_orgs_after(from, BACKUP_PAGE)?;
            let next = after(
                &page,
                |(uid, _)| Cursor::CurrentOrgs(Some(*uid)),
                Cursor::Audit(0),
            );
            let lines = page
                .into_iter()
                .map(|(uid, org)| Line::CurrentOrg { uid, org });
            (lines.collect(), next)
        }
        Cursor::Audit(from) => {
            let page = snapshot.audit_after(from, BACKUP_PAGE)?;
            let next = after(&page, |sealed| Cursor::Audit(sealed.seq), Cursor::Events(0));
            let lines = page.into_iter().map(|sealed| Line::Audit {
                seq: sealed.seq,
                body: AuditLine::of(sealed),
            });
            (lines.collect(), next)
        }
        Cursor::Events(from) => {
            let page = snapshot.events_after(from, BACKUP_PAGE)?;
            let next = after(
                &page,
                |(seq, _)| Cursor::Events(*seq),
                Cursor::FeedEntries(None),
            );
            let lines = page.into_iter().map(|(seq, record)| Line::Event {
                seq,
                record: record.into(),
            });
            (lines.collect(), next)
        }
        Cursor::FeedEntries(from) => {
            let key = from.as_ref().map(|(org, seq)| (org.as_str(), *seq));
            let page = snapshot.feed_entries_after(key, BACKUP_PAGE)?;
            let next = after(
                &page,
                |(org, seq)| Cursor::FeedEntries(Some((org.clone(), *seq))),
                Cursor::Done,
            );
            let lines = page
                .into_iter()
                .map(|(org, seq)| Line::FeedEntry { org, seq });
            (lines.collect(), next)
        }
        Cursor::Done => (Vec::new(), Cursor::Done),
    })
}

/// Every line of `snapshot`, in the order a backup sends them (for tests).
#[cfg(test)]
pub(super) fn all_lines(snapshot: &Snapshot) -> Result<Vec<Line>, StoreError> {
    let mut all = Vec::new();
    let mut cursor = Cursor::Orgs(None);
    loop {
        let (lines, next) = next_page(snapshot, cursor)?;
        if lines.is_empty() {
            return Ok(all);
        }
        all.extend(lines);
        cursor = next;
    }
}

/// About the most bytes of records one `backup.records` notification carries: a page of a
/// thousand ordinary records is a third of it. A record is never split, so a notification
/// may pass it by one record (under the 64 KiB a request line, and so any text in a record,
/// is bounded by), far below the 16 MiB line a client reads.
const RECORDS_BYTES: usize = 1 << 20;

/// The `backup.records` notifications of `lines`, one after the other: as few as fit in
/// [`RECORDS_BYTES`] each. Each record is written by serde; only the notification's frame
/// around them is written here, so that a page is encoded once.
fn records_lines(lines: &[Line]) -> Vec<u8> {
    let open = format!(
        r#"{{"jsonrpc":"{JSONRPC}","method":"{BACKUP_RECORDS_METHOD}","params":{{"records":["#
    );
    const CLOSE: &[u8] = b"]}}\n";
    let mut out = Vec::new();
    let mut begun: Option<usize> = None;
    for line in lines {
        match begun {
            None => {
                begun = Some(out.len());
                out.extend_from_slice(open.as_bytes());
            }
            Some(_) => out.push(b','),
        }
        if serde_json::to_writer(&mut out, line).is_err() {
            // Records are plain data; should one ever fail, the page is sent without it
            // and the counts at the end tell the client the backup is not whole.
            tracing::error!("a backup record did not encode");
        }
        if begun.is_some_and(|at| out.len() - at >= RECORDS_BYTES) {
            out.extend_from_slice(CLOSE);
            begun = None;
        }
    }
    if begun.is_some() {
        out.extend_from_slice(CLOSE);
    }
    out
}

/// Sends `backup` on the connection, a page at a time, each read and encoded on the
/// daemon's low-priority thread for replays (so that a backup slows no request), then
/// `backup.end`; or `backup.failed` when the store cannot be read. Nothing is read from the
/// client meanwhile: a request it sends waits until the backup ends with the connection.
pub(crate) async fn run_backup(
    ctx: &impl Daemon,
    backup: Backup,
    write_half: &mut OwnedWriteHalf,
    limits: &Limits,
    stop: &CancellationToken,
) -> Ending {
    let Backup { snapshot, counts } = backup;
    let mut sent = BackupCounts::default();
    let mut cursor = Cursor::Orgs(None);
    loop {
        if stop.is_cancelled() {
            return fail(write_half, "compartmentd is stopping", limits, stop).await;
        }
        let (read_from, from) = (snapshot.clone(), cursor.clone());
        let read = ctx
            .replays()
            .in_background(move || {
                next_page(&read_from, from).map(|(lines, next)| {
                    let mut counted = BackupCounts::default();
                    lines.iter().for_each(|line| line.count(&mut counted));
                    (records_lines(&lines), lines.len(), counted, next)
                })
            })
            .await;
        let (out, read_count, counted, next) = match read {
            Some(Ok(page)) => page,
            failed => {
                match failed {
                    Some(Err(err)) => {
                        tracing::error!(error = %err, "a backup cannot read the store")
                    }
                    _ => tracing::error!("reading a backup's page panicked"),
                }
                let reason = "internal error; the daemon's log has details";
                return fail(write_half, reason, limits, stop).await;
            }
        };
        if read_count == 0 {
            break;
        }
        if let Err(ending) = send(write_half, &out, limits, stop).await {
            return ending;
        }
        add(&mut sent, &counted);
        cursor = next;
    }
    if sent != counts {
        tracing::error!(
            ?sent,
            ?counts,
            "a backup read other counts than its snapshot's"
        );
        let reason = "internal error; the daemon's log has details";
        return fail(write_half, reason, limits, stop).await;
    }
    let end = notification(BACKUP_END_METHOD, &BackupEnd::of(sent));
    match send(write_half, &end, limits, stop).await {
        Ok(()) => Ending::BackupEnded,
        Err(ending) => ending,
    }
}

fn add(total: &mut BackupCounts, page: &BackupCounts) {
    total.org += page.org;
    total.account += page.account;
    total.binding += page.binding;
    total.membership += page.membership;
    total.token += page.token;
    total.current_org += page.current_org;
    total.audit += page.audit;
    total.event += page.event;
    total.feed_entry += page.feed_entry;
}

/// Ends the backup with `backup.failed`, saying why.
async fn fail(
    write_half: &mut OwnedWriteHalf,
    reason: &str,
    limits: &Limits,
    stop: &CancellationToken,
) -> Ending {
    let failed = notification(
        BACKUP_FAILED_METHOD,
        &BackupFailed {
            reason: reason.to_owned(),
        },
    );
    match send(write_half, &failed, limits, stop).await {
        Ok(()) => Ending::BackupEnded,
        Err(ending) => ending,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    /// Records whose text is large are sent in several notifications, none much past the
    /// bound, each a notification a client reads, together every record in order.
    #[test]
    fn large_records_are_sent_in_notifications_of_bounded_length() {
        let lines: Vec<Line> = (0..BACKUP_PAGE as u64)
            .map(|seq| Line::Audit {
                seq,
                body: AuditLine::Sealed {
                    record: "d".repeat(60_000),
                    hash: "00".repeat(32),
                },
            })
            .collect();
        let out = records_lines(&lines);
        let mut seqs = Vec::new();
        let mut notifications = 0;
        for text in out.split_inclusive(|byte| *byte == b'\n') {
            assert!(text.len() < RECORDS_BYTES + 65_536, "{}", text.len());
            let value: serde_json::Value = serde_json::from_slice(text).unwrap();
            assert_eq!(value["method"], BACKUP_RECORDS_METHOD);
            for record in value["params"]["records"].as_array().unwrap() {
                match serde_json::from_value::<Line>(record.clone()).unwrap() {
                    Line::Audit { seq, .. } => seqs.push(seq),
                    other => panic!("{other:?}"),
                }
            }
            notifications += 1;
        }
        assert!(notifications > 50, "{notifications}");
        assert_eq!(seqs, (0..BACKUP_PAGE as u64).collect::<Vec<_>>());
        // A page of small records is one notification; none, none.
        let small: Vec<Line> = (0..BACKUP_PAGE as u64)
            .map(|seq| Line::FeedEntry {
                org: "acme".into(),
                seq,
            })
            .collect();
        let out = records_lines(&small);
        assert_eq!(out.iter().filter(|byte| **byte == b'\n').count(), 1);
        assert_eq!(records_lines(&[]), b"");
    }
}
