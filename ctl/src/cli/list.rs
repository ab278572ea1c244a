//! `user list`: follows `user.list`'s cursor and prints members as pages arrive, holding
//! one page at a time whatever the organization's size.

use std::io::{self, Write};

use compartmentctl::args::OutputFormat;
use compartmentctl::wire::{Member, MemberList, Request, UserListParams, MAX_PAGE};
use compartmentctl::Client;

use super::exit::Failure;
use super::output;

/// Which members to print: all of them, or one page of `per_page` after skipping the
/// pages before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Members to pass over before printing.
    pub skip: u64,
    /// Members to print at most; `None` for all the rest.
    pub take: Option<u64>,
}

/// `--per-page` when only `--page` is given.
pub const DEFAULT_PER_PAGE: u32 = 100;

impl Window {
    /// The window `--page`/`--per-page` select; neither means every member.
    pub fn of(page: Option<u32>, per_page: Option<u32>) -> Window {
        if page.is_none() && per_page.is_none() {
            return Window {
                skip: 0,
                take: None,
            };
        }
        let per_page = u64::from(per_page.unwrap_or(DEFAULT_PER_PAGE));
        let page = u64::from(page.unwrap_or(1).max(1));
        Window {
            skip: (page - 1) * per_page,
            take: Some(per_page),
        }
    }
}

/// Lists members into stdout. A reader that went away (`| head`) is a normal end.
pub fn members(
    client: &mut Client,
    params: UserListParams,
    window: Window,
    format: OutputFormat,
) -> Result<(), Failure> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match stream(client, params, window, format, &mut out) {
        Err(Failure::Output(err)) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// Fetches pages and writes each as it arrives; the whole list is never in memory. Pages
/// ask for no more members than the window still needs, and at most [`MAX_PAGE`].
pub fn stream(
    client: &mut Client,
    mut params: UserListParams,
    window: Window,
    format: OutputFormat,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let mut printer = Printer::new(format);
    let mut seen: u64 = 0;
    let end = window.take.map(|take| window.skip.saturating_add(take));
    loop {
        let wanted = end.map_or(u64::from(MAX_PAGE), |end| end.saturating_sub(seen));
        params.limit = Some(u32::try_from(wanted).unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE));
        let page: MemberList = client.call(&Request::UserList(params.clone()))?;
        // Only the members inside the window are printed.
        let count = page.members.len();
        let index = |at: u64| usize::try_from(at.saturating_sub(seen)).unwrap_or(usize::MAX);
        let from = index(window.skip).min(count);
        let to = end.map_or(count, |end| index(end).min(count)).max(from);
        let shown = page.members.get(from..to).unwrap_or(&[]);
        printer.page(&page.org, shown, out)?;
        seen += count as u64;
        match page.next {
            Some(next) if end.is_none_or(|end| seen < end) => params.after = Some(next),
            _ => break,
        }
    }
    printer.finish(out)?;
    out.flush()?;
    Ok(())
}

/// Writes pages in one output format, carrying what later pages need: the table's column
/// widths, whether the JSON document has been opened and whether a member came before.
struct Printer {
    format: OutputFormat,
    /// Column widths so far; they only grow, so every row of a page lines up with the
    /// header unless a cell is wider than any before it.
    widths: [usize; 5],
    /// Whether anything has been printed.
    started: bool,
    /// Whether a JSON member has been printed, so the next needs a comma.
    any: bool,
    /// The organization the daemon named, for a document that no member opened.
    org: Option<String>,
}

impl Printer {
    fn new(format: OutputFormat) -> Printer {
        Printer {
            format,
            widths: output::MEMBER_HEADER.map(|cell| cell.chars().count()),
            started: false,
            any: false,
            org: None,
        }
    }

    fn page(&mut self, org: &str, members: &[Member], out: &mut impl Write) -> Result<(), Failure> {
        // Nothing is printed before the first member shown (pages skipped to reach
        // --page print nothing), so the header's widths are those of the first rows.
        if members.is_empty() {
            self.org.get_or_insert_with(|| org.to_owned());
            return Ok(());
        }
        let mut text = String::new();
        match self.format {
            OutputFormat::Text => {
                let rows: Vec<[String; 5]> = members.iter().map(output::member_row).collect();
                output::widen(&mut self.widths, &rows);
                if !self.started {
                    output::push_row(
                        &mut text,
                        &output::MEMBER_HEADER.map(str::to_owned),
                        &self.widths,
                    );
                }
                for row in &rows {
                    output::push_row(&mut text, row, &self.widths);
                }
            }
            OutputFormat::Json => {
                if !self.started {
                    text.push_str("{\"org\":");
                    text.push_str(&serde_json::to_string(org)?);
                    text.push_str(",\"members\":[");
                }
                for member in members {
                    if self.any {
                        text.push(',');
                    }
                    text.push_str(&serde_json::to_string(member)?);
                    self.any = true;
                }
            }
            OutputFormat::Jsonl => {
                for member in members {
                    text.push_str(&output::json(member)?);
                }
            }
        }
        self.started = true;
        // Each page reaches the reader as soon as it is printed.
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }

    /// Closes the output: a lone header or an empty document when no member was shown,
    /// then the JSON document's brackets.
    fn finish(&mut self, out: &mut impl Write) -> Result<(), Failure> {
        if !self.started {
            let org = self.org.take().unwrap_or_default();
            let mut text = String::new();
            match self.format {
                OutputFormat::Text => output::push_row(
                    &mut text,
                    &output::MEMBER_HEADER.map(str::to_owned),
                    &self.widths,
                ),
                OutputFormat::Json => {
                    text = format!("{{\"org\":{},\"members\":[", serde_json::to_string(&org)?);
                }
                OutputFormat::Jsonl => {}
            }
            self.started = true;
            out.write_all(text.as_bytes())?;
        }
        if self.format == OutputFormat::Json {
            out.write_all(b"]}\n")?;
        }
        Ok(())
    }
}
