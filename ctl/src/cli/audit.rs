//! `audit list` and `audit export`: every page of the audit log that matches, printed as it
//! arrives, and with `--follow` the records appended after, as they come.

use std::io::{self, Write};
use std::time::Duration;

use compartmentctl::args::{ExportFormat, OutputFormat};
use compartmentctl::wire::{methods, AuditListParams, AuditRecordView, MAX_AUDIT_PAGE};
use compartmentctl::Client;

use super::exit::Failure;
use super::output;

/// How often `--follow` asks for what was appended: the log has no feed of its own, and a
/// second is as soon as a person watching needs.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// How the records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `audit list`: a line a record.
    Text,
    /// `audit list --output json`: one `{"records":[…]}` object.
    Json,
    /// `audit list --output jsonl`, `audit export`: a record a line, with its hash.
    Jsonl,
    /// `audit export --format csv`: a header row, then a row a record.
    Csv,
}

/// What `audit list` or `audit export` prints, and whether it follows the log.
#[derive(Debug, Clone, Copy)]
pub struct Listing {
    pub shape: Shape,
    pub follow: bool,
}

impl Listing {
    /// `audit list` with `--output` and `--follow`: one JSON object cannot be followed.
    pub fn list(output: OutputFormat, follow: bool) -> Result<Listing, Failure> {
        let shape = match output {
            OutputFormat::Text => Shape::Text,
            OutputFormat::Json if follow => {
                return Err(Failure::usage(
                    "--follow prints records as they come, which one JSON object cannot hold",
                    "follow with --output jsonl: one record a line",
                ))
            }
            OutputFormat::Json => Shape::Json,
            OutputFormat::Jsonl => Shape::Jsonl,
        };
        Ok(Listing { shape, follow })
    }

    /// `audit export --format`.
    pub fn export(format: ExportFormat) -> Listing {
        let shape = match format {
            ExportFormat::Jsonl => Shape::Jsonl,
            ExportFormat::Csv => Shape::Csv,
        };
        Listing {
            shape,
            follow: false,
        }
    }
}

/// The CSV columns, in order.
const CSV_HEADER: [&str; 18] = [
    "seq",
    "at",
    "actor_kind",
    "actor_email",
    "actor_uid",
    "actor_user",
    "actor_pid",
    "event",
    "org",
    "target_type",
    "target_id",
    "before_role",
    "before_status",
    "after_role",
    "after_status",
    "outcome",
    "detail",
    "hash",
];

/// Asks for page after page until the log ends, writing each; following, asks again every
/// [`FOLLOW_EVERY`] for what was appended, until interrupted or the daemon goes.
pub fn list(
    client: &mut Client,
    mut params: AuditListParams,
    listing: Listing,
) -> Result<(), Failure> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let written = (|| {
        params.limit = Some(MAX_AUDIT_PAGE);
        let mut first = true;
        match listing.shape {
            Shape::Json => out.write_all(b"{\"records\":[")?,
            Shape::Csv => out.write_all(&csv_row(CSV_HEADER.map(str::to_owned))?)?,
            Shape::Text | Shape::Jsonl => {}
        }
        loop {
            let page = client.call_method::<methods::AuditList>(params.clone())?;
            for record in &page.records {
                match listing.shape {
                    Shape::Text => out.write_all(output::audit_line(record).as_bytes())?,
                    Shape::Jsonl => out.write_all(output::json(record)?.as_bytes())?,
                    Shape::Json => {
                        if !first {
                            out.write_all(b",")?;
                        }
                        serde_json::to_writer(&mut out, record)?;
                    }
                    Shape::Csv => out.write_all(&csv_row(csv_fields(record))?)?,
                }
                first = false;
            }
            match (page.next, listing.follow) {
                (Some(next), _) => params.after = Some(next),
                (None, false) => break,
                (None, true) => {
                    // Shown as soon as they are read, then the records appended since.
                    out.flush()?;
                    if page.tail.is_some() {
                        params.after = page.tail;
                    }
                    std::thread::sleep(FOLLOW_EVERY);
                }
            }
        }
        if listing.shape == Shape::Json {
            out.write_all(b"]}\n")?;
        }
        out.flush()?;
        Ok(())
    })();
    match written {
        Err(Failure::Output(err)) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// A record's CSV cells, in [`CSV_HEADER`]'s order.
fn csv_fields(record: &AuditRecordView) -> [String; 18] {
    let entry = &record.entry;
    let text = |value: Option<&str>| value.map(spreadsheet_safe).unwrap_or_default();
    let number = |value: Option<String>| value.unwrap_or_default();
    let role = |state: Option<&compartmentctl::wire::AuditState>| {
        state
            .and_then(|state| state.role)
            .map(|role| role.to_string())
            .unwrap_or_default()
    };
    let status = |state: Option<&compartmentctl::wire::AuditState>| {
        text(state.map(|state| state.status.as_str()))
    };
    [
        entry.seq.to_string(),
        text(Some(&entry.at)),
        text(Some(&entry.actor.kind)),
        text(entry.actor.email.as_deref()),
        number(entry.actor.uid.map(|uid| uid.to_string())),
        text(entry.actor.user.as_deref()),
        number(entry.actor.pid.map(|pid| pid.to_string())),
        text(Some(&entry.event)),
        text(entry.org.as_deref()),
        text(entry.target.as_ref().map(|target| target.kind.as_str())),
        text(entry.target.as_ref().map(|target| target.id.as_str())),
        role(entry.before.as_ref()),
        status(entry.before.as_ref()),
        role(entry.after.as_ref()),
        status(entry.after.as_ref()),
        text(Some(&entry.outcome)),
        text(entry.detail.as_deref()),
        record.hash.clone(),
    ]
}

/// A cell a spreadsheet will not run as a formula: one that begins with `=`, `+`, `-`, `@`,
/// a tab or a carriage return gets a `'` before it (as OWASP advises against CSV
/// injection). The records' own text, which `audit verify` checks, is in the jsonl export.
fn spreadsheet_safe(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_owned(),
    }
}

/// One CSV row, quoted where it must be, ending in a newline.
fn csv_row(cells: [String; 18]) -> Result<Vec<u8>, Failure> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let row = writer
        .write_record(&cells)
        .map_err(io::Error::other)
        .and_then(|()| {
            writer
                .into_inner()
                .map_err(|err| io::Error::other(err.to_string()))
        });
    row.map_err(Failure::Output)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use compartmentctl::wire::{AuditActor, AuditEntry, AuditState, AuditTarget, Role};

    #[test]
    fn a_record_is_a_csv_row_that_no_spreadsheet_runs() {
        let record = AuditRecordView {
            entry: AuditEntry {
                seq: 3,
                at: "2026-12-07T09:30:00.061Z".into(),
                actor: AuditActor {
                    kind: "user".into(),
                    email: Some("admin@example.com".into()),
                    uid: Some(1001),
                    user: Some("alice".into()),
                    pid: Some(4242),
                },
                event: "organization.role.grant".into(),
                org: Some("acme".into()),
                target: Some(AuditTarget {
                    kind: "account".into(),
                    id: "=cmd|' /C calc'!A0@example.com".into(),
                }),
                before: Some(AuditState {
                    role: Some(Role::Viewer),
                    status: "active".into(),
                }),
                after: Some(AuditState {
                    role: Some(Role::Deployer),
                    status: "active".into(),
                }),
                outcome: "ok".into(),
                detail: Some("viewer -> deployer, \"quoted\"\nand a second line".into()),
            },
            hash: "ab".repeat(32),
        };
        let row = String::from_utf8(csv_row(csv_fields(&record)).unwrap()).unwrap();
        assert_eq!(
            row,
            format!(
                "3,2026-12-07T09:30:00.061Z,user,admin@example.com,1001,alice,4242,\
                 organization.role.grant,acme,account,'=cmd|' /C calc'!A0@example.com,viewer,\
                 active,deployer,active,ok,\"viewer -> deployer, \"\"quoted\"\"\nand a second \
                 line\",{}\n",
                "ab".repeat(32)
            )
        );
        let header = String::from_utf8(csv_row(CSV_HEADER.map(str::to_owned)).unwrap()).unwrap();
        assert_eq!(header.split(',').count(), 18);
        assert!(header.starts_with("seq,at,actor_kind,"));
    }

    #[test]
    fn following_a_single_json_object_is_refused() {
        assert!(Listing::list(OutputFormat::Json, true).is_err());
        assert_eq!(
            Listing::list(OutputFormat::Jsonl, true).unwrap().shape,
            Shape::Jsonl
        );
        assert_eq!(Listing::export(ExportFormat::Csv).shape, Shape::Csv);
    }
}
