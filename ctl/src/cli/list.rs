//! `user list`: follows `user.list`'s cursor and prints members as pages arrive, holding
//! one page at a time whatever the organization's size.

use std::borrow::Cow;
use std::io::{self, Write};

use compartmentctl::args::OutputFormat;
use compartmentctl::wire::{
    GroupMembers, MemberPage, MemberView, Request, Text, UserListParams, MAX_PAGE,
};
use compartmentctl::Client;

use super::escape::escaped;
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
/// ask for no more members than the window still needs, and at most [`MAX_PAGE`]: a
/// whole list is read a thousand members a page. The next page is asked for as soon as
/// this one's `next` is known, before this one is printed, so that the daemon reads it
/// while the client prints; at most one request is ever in flight. For a whole list, that
/// is before this page is even decoded: the daemon sends `next` ahead of the members
/// ([`cursor_ahead`]).
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
    let limit = |seen: u64| {
        let wanted = end.map_or(u64::from(MAX_PAGE), |end| end.saturating_sub(seen));
        u32::try_from(wanted).unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE)
    };
    params.limit = Some(limit(seen));
    let mut in_flight = Some(client.send(&Request::UserList(params.clone()))?);
    // One answer line at a time; the page borrows its text from it.
    let mut line = Vec::new();
    while let Some(id) = in_flight.take() {
        client.receive_line(&mut line)?;
        // A whole list wants every page there is: the next one is asked for at once.
        let ahead = if end.is_none() {
            cursor_ahead(&line)
        } else {
            None
        };
        if let Some(next) = &ahead {
            params.after = Some(next.clone());
            params.limit = Some(limit(seen));
            in_flight = Some(client.send(&Request::UserList(params.clone()))?);
        }
        let page: MemberPage<'_> = Client::result_of(&line, id, "user.list")?;
        // Only the members inside the window are printed.
        let count = page.members.len();
        let index = |at: u64| usize::try_from(at.saturating_sub(seen)).unwrap_or(usize::MAX);
        let from = index(window.skip).min(count);
        let to = end.map_or(count, |end| index(end).min(count)).max(from);
        seen += count as u64;
        if let (None, Some(next)) = (&ahead, &page.next) {
            if end.is_none_or(|end| seen < end) {
                params.after = Some(next.as_str().to_owned());
                params.limit = Some(limit(seen));
                in_flight = Some(client.send(&Request::UserList(params.clone()))?);
            }
        }
        let shown = page.members.get(from..to).unwrap_or(&[]);
        if printer.groups.is_empty() {
            printer.groups = page.groups;
        }
        printer.page(page.org.as_str(), shown, out)?;
    }
    // A page past the end says so, rather than print a lone header.
    if let (false, Some(per_page)) = (printer.started, window.take) {
        if window.skip > 0 {
            let page = window.skip / per_page.max(1) + 1;
            let pages = seen.div_ceil(per_page.max(1));
            let org = printer.org.take().unwrap_or_default();
            let noun = if seen == 1 { "member" } else { "members" };
            return Err(Failure::Usage {
                message: format!(
                    "page {page} is past the end: {} has {seen} {noun}, {pages} pages of {per_page}",
                    escaped(&org)
                ),
                hint: match pages {
                    0 => "it has no members yet".to_owned(),
                    last => format!("the last page is {last} (--page {last})"),
                },
            });
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
    /// The Unix groups mapped to a role, from the first page: shown after the members.
    groups: Vec<GroupMembers>,
}

impl Printer {
    fn new(format: OutputFormat) -> Printer {
        Printer {
            format,
            widths: output::MEMBER_HEADER.map(|cell| cell.chars().count()),
            started: false,
            any: false,
            org: None,
            groups: Vec::new(),
        }
    }

    fn page(
        &mut self,
        org: &str,
        members: &[MemberView<'_>],
        out: &mut impl Write,
    ) -> Result<(), Failure> {
        // Nothing is printed before the first member shown (pages skipped to reach
        // --page print nothing), so the header's widths are those of the first rows.
        if members.is_empty() {
            self.org.get_or_insert_with(|| org.to_owned());
            return Ok(());
        }
        let mut text = Vec::new();
        match self.format {
            OutputFormat::Text => {
                let rows: Vec<[Cow<'_, str>; 5]> = members.iter().map(member_row).collect();
                output::widen(&mut self.widths, &rows);
                let mut table = String::new();
                if !self.started {
                    output::push_row(&mut table, &output::MEMBER_HEADER, &self.widths);
                }
                for row in &rows {
                    output::push_row(&mut table, row, &self.widths);
                }
                text = table.into_bytes();
            }
            OutputFormat::Json => {
                if !self.started {
                    open_document(&mut text, org)?;
                }
                for member in members {
                    if self.any {
                        text.push(b',');
                    }
                    serde_json::to_writer(&mut text, member)?;
                    self.any = true;
                }
            }
            OutputFormat::Jsonl => {
                for member in members {
                    serde_json::to_writer(&mut text, member)?;
                    text.push(b'\n');
                }
            }
        }
        self.started = true;
        // Each page reaches the reader as soon as it is printed.
        out.write_all(&text)?;
        out.flush()?;
        Ok(())
    }

    /// Closes the output: a lone header or an empty document when no member was shown,
    /// then the JSON document's brackets.
    fn finish(&mut self, out: &mut impl Write) -> Result<(), Failure> {
        if !self.started {
            let org = self.org.take().unwrap_or_default();
            let mut text = Vec::new();
            match self.format {
                OutputFormat::Text => {
                    let mut header = String::new();
                    output::push_row(&mut header, &output::MEMBER_HEADER, &self.widths);
                    text = header.into_bytes();
                }
                OutputFormat::Json => open_document(&mut text, &org)?,
                OutputFormat::Jsonl => {}
            }
            self.started = true;
            out.write_all(&text)?;
        }
        match self.format {
            OutputFormat::Json if self.groups.is_empty() => out.write_all(b"]}\n")?,
            OutputFormat::Json => {
                out.write_all(b"],\"groups\":")?;
                serde_json::to_writer(&mut *out, &self.groups)?;
                out.write_all(b"}\n")?;
            }
            OutputFormat::Text if !self.groups.is_empty() => {
                out.write_all(output::group_members(&self.groups).as_bytes())?;
            }
            // A line per member: the groups are not members (`--output json` shows them).
            OutputFormat::Text | OutputFormat::Jsonl => {}
        }
        Ok(())
    }
}

/// Opens `--output json`'s document: `{"org":…,"members":[`, closed by [`Printer::finish`].
fn open_document(text: &mut Vec<u8>, org: &str) -> Result<(), Failure> {
    text.extend_from_slice(b"{\"org\":");
    serde_json::to_writer(&mut *text, org)?;
    text.extend_from_slice(b",\"members\":[");
    Ok(())
}

/// One member as `user list`'s table cells, as `output::member_row` makes them: escaped,
/// and borrowed from the page unless escaping changed them or an end was written out, so
/// no copy for a row of plain text.
fn member_row<'a>(member: &'a MemberView<'_>) -> [Cow<'a, str>; 5] {
    [
        escaped(member.email.as_str()),
        Cow::Borrowed(member.role.as_str()),
        Cow::Borrowed(output::member_status(
            member.status,
            member.blocked.as_ref(),
            member.binding_stale,
        )),
        escaped(member.unix_user.as_ref().map_or("-", |user| user.as_str())),
        output::member_expires(
            member.status,
            member.expires_at.as_ref().map(Text::as_str),
            member.blocked.as_ref(),
            member.access_until.as_ref().map(Text::as_str),
            member.elevation.as_ref(),
        ),
    ]
}

/// The `next` of a `user.list` answer line, read from the start of its result, before its
/// members, when the daemon put it there; `None` otherwise (an error, the last page, or a
/// daemon that sends `next` last), and the page's own `next` is used once it is decoded.
/// Reading stops at `next` or at the members, whichever comes first: serde has no other
/// way to leave a document half read than an error, which is what stops it.
fn cursor_ahead(line: &[u8]) -> Option<String> {
    let mut found = None;
    let mut reader = serde_json::Deserializer::from_slice(line);
    let _stopped = serde::de::DeserializeSeed::deserialize(
        Ahead {
            found: &mut found,
            in_result: false,
        },
        &mut reader,
    );
    found
}

/// Reads an answer's members in order up to `result`, then the result's up to `next`.
struct Ahead<'a> {
    found: &'a mut Option<String>,
    in_result: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for Ahead<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Ahead<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON-RPC answer")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::{Error, IgnoredAny};
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match (self.in_result, key.as_ref()) {
                (false, "result") => {
                    return map.next_value_seed(Ahead {
                        found: self.found,
                        in_result: true,
                    });
                }
                (true, "next") => {
                    *self.found = map.next_value()?;
                    return Err(A::Error::custom("the cursor is read"));
                }
                (true, "members") => return Err(A::Error::custom("the members came first")),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::io::{BufRead, BufReader, Write as _};
    use std::os::unix::net::UnixListener;

    use compartmentctl::wire::{Member, MemberList, MemberStatus, Role};
    use serde_json::Value;

    use super::*;

    /// `n` invited members, `m0000@example.com` on.
    fn list_of(n: usize) -> MemberList {
        MemberList {
            org: "acme".into(),
            members: (0..n)
                .map(|i| Member {
                    email: format!("m{i:04}@example.com"),
                    role: Role::Viewer,
                    status: MemberStatus::Invited,
                    expires_at: Some("2026-05-01T12:00:00Z".into()),
                    unix_user: None,
                    blocked: None,
                    access_until: None,
                    elevation: None,
                    binding_stale: Default::default(),
                })
                .collect(),
            next: None,
            groups: Default::default(),
        }
    }

    /// Runs `stream` against a stand-in daemon that pages `list` (its cursor is the index
    /// of the next member), its answers' keys sorted (`next` after the members, as an
    /// older daemon sent them); returns what was printed and the `limit` of every request,
    /// in order.
    fn run(list: &MemberList, window: Window, format: OutputFormat) -> (String, Vec<u64>) {
        run_with(list, window, format, Keys::Sorted)
    }

    /// How the stand-in daemon orders an answer's keys.
    #[derive(Clone, Copy)]
    enum Keys {
        Sorted,
        /// As the daemon writes a page today: `jsonrpc`, `id`, `result`, and in the result
        /// `org`, `next`, `members`.
        AsTheDaemon,
    }

    /// An answer written as the daemon writes it: its members in declaration order.
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        jsonrpc: &'static str,
        id: &'a Value,
        result: &'a MemberList,
    }

    fn run_with(
        list: &MemberList,
        window: Window,
        format: OutputFormat,
        keys: Keys,
    ) -> (String, Vec<u64>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        let listener = UnixListener::bind(&path).unwrap();
        let served = list.clone();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut limits = Vec::new();
            for line in BufReader::new(stream).lines() {
                let request: Value = serde_json::from_str(&line.unwrap()).unwrap();
                let params = &request["params"];
                let limit = params["limit"].as_u64().unwrap();
                limits.push(limit);
                let from: usize = params["after"].as_str().map_or(0, |a| a.parse().unwrap());
                let to = (from + limit as usize).min(served.members.len());
                let page = MemberList {
                    members: served.members[from..to].to_vec(),
                    next: (to < served.members.len()).then(|| to.to_string()),
                    ..served.clone()
                };
                let reply = match keys {
                    Keys::Sorted => serde_json::json!({
                        "jsonrpc": "2.0",
                        "id": request["id"],
                        "result": serde_json::to_value(&page).unwrap(),
                    })
                    .to_string(),
                    Keys::AsTheDaemon => serde_json::to_string(&Answer {
                        jsonrpc: "2.0",
                        id: &request["id"],
                        result: &page,
                    })
                    .unwrap(),
                };
                writer.write_all(format!("{reply}\n").as_bytes()).unwrap();
            }
            limits
        });
        let mut client = Client::connect(&path).unwrap();
        let params = UserListParams {
            org: Some("acme".into()),
            ..UserListParams::default()
        };
        let mut out = Vec::new();
        stream(&mut client, params, window, format, &mut out).unwrap();
        drop(client);
        (String::from_utf8(out).unwrap(), server.join().unwrap())
    }

    const ALL: Window = Window {
        skip: 0,
        take: None,
    };

    #[test]
    fn a_whole_list_is_asked_for_a_thousand_at_a_time() {
        let list = list_of(2_500);
        for keys in [Keys::Sorted, Keys::AsTheDaemon] {
            let (text, limits) = run_with(&list, ALL, OutputFormat::Text, keys);
            assert_eq!(limits, [1_000, 1_000, 1_000]);
            assert_eq!(text, output::member_list(&list));
        }
    }

    /// The streamed table's cells are `output::member_row`'s: a block, an elevation and an
    /// end of access read the same either way, and a member without them as before.
    #[test]
    fn streamed_rows_show_blocks_and_ends_as_a_whole_list_does() {
        use compartmentctl::wire::{MemberBlock, MemberElevation};
        let mut list = list_of(4);
        for member in &mut list.members[..3] {
            member.status = MemberStatus::Active;
            member.expires_at = None;
        }
        list.members[0].blocked = Some(MemberBlock {
            reason: "laptop \u{202e}lost".into(),
            by: "uid 0".into(),
            at: "2026-05-01T12:00:00Z".into(),
            until: Some("2026-06-01T00:00:00Z".into()),
        });
        list.members[0].access_until = Some("2026-05-20T00:00:00Z".into());
        list.members[1].elevation = Some(MemberElevation {
            until: "2026-05-02T\u{1b}[2J".into(),
            fallback: Role::Deployer,
        });
        list.members[2].access_until = Some("2026-07-01T00:00:00Z".into());
        let (text, _) = run(&list, ALL, OutputFormat::Text);
        assert_eq!(text, output::member_list(&list));
        assert_eq!(
            text,
            "EMAIL              ROLE    STATUS   UNIX USER  EXPIRES\n\
             m0000@example.com  viewer  blocked  -          2026-05-20T00:00:00Z (access ends), \
             2026-06-01T00:00:00Z (block ends)\n\
             m0001@example.com  viewer  active   -          2026-05-02T\\u{1b}[2J (then deployer)\n\
             m0002@example.com  viewer  active   -          2026-07-01T00:00:00Z (access ends)\n\
             m0003@example.com  viewer  invited  -          2026-05-01T12:00:00Z\n"
        );
    }

    /// The next page's cursor is read from the head of an answer, before its members, when
    /// the daemon sends it there; from nothing else.
    #[test]
    fn the_cursor_is_read_ahead_of_the_members_only() {
        let page = MemberList {
            next: Some("MTAwMA".into()),
            ..list_of(3)
        };
        let id = Value::from(7);
        let as_sent = serde_json::to_string(&Answer {
            jsonrpc: "2.0",
            id: &id,
            result: &page,
        })
        .unwrap();
        assert!(
            as_sent.find("\"next\"") < as_sent.find("\"members\""),
            "{as_sent}"
        );
        assert_eq!(cursor_ahead(as_sent.as_bytes()).as_deref(), Some("MTAwMA"));
        let escaped =
            br#"{"jsonrpc":"2.0","id":1,"result":{"org":"a","next":"a\u0062c","members":[]}}"#;
        assert_eq!(cursor_ahead(escaped).as_deref(), Some("abc"));
        for line in [
            // `next` after the members: read with the page, not ahead of it.
            br#"{"jsonrpc":"2.0","id":1,"result":{"org":"a","members":[],"next":"x"}}"#.as_slice(),
            // The last page, an error, and what is not an answer.
            br#"{"jsonrpc":"2.0","id":1,"result":{"org":"a","members":[]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"m","data":{"next":"x"}}}"#,
            br#"{"next":"x"}"#,
            b"[1,2]",
            b"not json",
        ] {
            assert_eq!(cursor_ahead(line), None, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn a_window_asks_for_what_it_still_needs() {
        let list = list_of(2_500);
        let (text, limits) = run(&list, Window::of(Some(3), Some(2)), OutputFormat::Text);
        assert_eq!(limits, [6]);
        let shown = MemberList {
            members: list.members[4..6].to_vec(),
            ..list.clone()
        };
        assert_eq!(text, output::member_list(&shown));
        let (_, limits) = run(&list, Window::of(Some(2), Some(1_200)), OutputFormat::Text);
        assert_eq!(limits, [1_000, 1_000, 400]);
    }

    #[test]
    fn json_and_json_lines_print_the_list_as_the_library_reads_it() {
        let list = list_of(2_100);
        let (json, _) = run(&list, ALL, OutputFormat::Json);
        assert_eq!(json, serde_json::to_string(&list).unwrap() + "\n");
        let (jsonl, _) = run(&list, ALL, OutputFormat::Jsonl);
        let expected: String = list
            .members
            .iter()
            .map(|m| serde_json::to_string(m).unwrap() + "\n")
            .collect();
        assert_eq!(jsonl, expected);
        let (empty, limits) = run(&list_of(0), ALL, OutputFormat::Json);
        assert_eq!(limits, [1_000]);
        assert_eq!(empty, "{\"org\":\"acme\",\"members\":[]}\n");
    }
}
