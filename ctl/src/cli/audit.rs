//! `audit list`: every page of the audit log that matches, printed as it arrives.

use std::io::{self, Write};

use compartmentctl::args::OutputFormat;
use compartmentctl::wire::{methods, AuditListParams, MAX_AUDIT_PAGE};
use compartmentctl::Client;

use super::exit::Failure;
use super::output;

/// Asks for page after page until the log ends, writing each: a line a record as text or
/// `jsonl`, one `{"records":[…]}` object for `json`.
pub fn list(
    client: &mut Client,
    mut params: AuditListParams,
    format: OutputFormat,
) -> Result<(), Failure> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let written = (|| {
        params.limit = Some(MAX_AUDIT_PAGE);
        let mut first = true;
        if format == OutputFormat::Json {
            out.write_all(b"{\"records\":[")?;
        }
        loop {
            let page = client.call_method::<methods::AuditList>(params.clone())?;
            for record in &page.records {
                match format {
                    OutputFormat::Text => out.write_all(output::audit_line(record).as_bytes())?,
                    OutputFormat::Jsonl => out.write_all(output::json(record)?.as_bytes())?,
                    OutputFormat::Json => {
                        if !first {
                            out.write_all(b",")?;
                        }
                        serde_json::to_writer(&mut out, record)?;
                    }
                }
                first = false;
            }
            match page.next {
                Some(next) => params.after = Some(next),
                None => break,
            }
        }
        if format == OutputFormat::Json {
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
