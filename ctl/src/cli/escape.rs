//! Text from the daemon or the command line, made safe to print on a terminal (DESIGN §8:
//! whoever holds a Unix user name or an organization name must not control another user's
//! terminal). Every character that could act on the terminal or on how the line reads is
//! shown as Rust writes it in a string literal (`\u{202e}`, `\n`), so that it is seen, not
//! obeyed: control characters (C0, DEL and C1: escape sequences that set the clipboard or
//! the window title, clear the screen, or start a new line), format characters (Unicode's
//! category Cf: the bidi controls that reorder what follows, zero-width spaces and joiners,
//! the byte-order mark) and the line and paragraph separators.
//!
//! Everything else is printed as it is, backslashes too: `DOMAIN\alice` is a user name
//! winbind hands out. `--output json` is not escaped here: serde writes JSON strings, and a
//! script reads them as such.

use std::borrow::Cow;
use std::fmt::Write;

use unicode_general_category::{get_general_category, GeneralCategory};

/// `text` with every character that could act on a terminal escaped; borrowed when there
/// is none, as with nearly every e-mail address and user name.
pub fn escaped(text: &str) -> Cow<'_, str> {
    escaped_but(text, None)
}

/// [`escaped`] for text of several lines that this program wrote itself (a usage error of
/// clap's, an indented JSON document): its newlines stay, every other character that could
/// act on a terminal is escaped.
pub fn escaped_lines(text: &str) -> Cow<'_, str> {
    escaped_but(text, Some('\n'))
}

fn escaped_but(text: &str, kept: Option<char>) -> Cow<'_, str> {
    let acts = |c: char| acts_on_terminal(c) && Some(c) != kept;
    // Printable ASCII (and a kept newline) is by far the usual text: one pass over its bytes.
    let plain = text
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) || (b == b'\n' && kept == Some('\n')));
    if plain || !text.chars().any(acts) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !acts(c) {
            out.push(c);
            continue;
        }
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            // Writing to a String cannot fail.
            _ => {
                let _ = write!(out, "{}", c.escape_unicode());
            }
        }
    }
    Cow::Owned(out)
}

/// Whether `c` is escaped: a control character (C0, DEL, C1), a format character
/// (category Cf, the bidi controls among them), or a line or paragraph separator.
pub fn acts_on_terminal(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    c.is_control()
        || matches!(
            get_general_category(c),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> String {
        escaped(text).into_owned()
    }

    #[test]
    fn plain_text_is_borrowed_and_unchanged() {
        for text in [
            "admin@example.com",
            "",
            "DOMAIN\\alice",
            "José Müller",
            "名前",
            "a b~{}",
            "emoji 🦀",
        ] {
            assert!(
                matches!(escaped(text), Cow::Borrowed(t) if t == text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn c0_controls_and_del_are_escaped() {
        // OSC 52 (write the clipboard), OSC 0 (the window title), clear the screen.
        assert_eq!(
            shown("\u{1b}]52;c;ZXZpbA==\u{7}"),
            "\\u{1b}]52;c;ZXZpbA==\\u{7}"
        );
        assert_eq!(shown("\u{1b}]0;pwned\u{7}"), "\\u{1b}]0;pwned\\u{7}");
        assert_eq!(shown("\u{1b}[2J\u{1b}[H"), "\\u{1b}[2J\\u{1b}[H");
        assert_eq!(shown("a\tb\nc\rd"), "a\\tb\\nc\\rd");
        assert_eq!(shown("\0\u{8}\u{1f}\u{7f}"), "\\u{0}\\u{8}\\u{1f}\\u{7f}");
    }

    #[test]
    fn c1_controls_are_escaped() {
        // CSI and OSC as single C1 characters, and NEL, a newline on some terminals.
        assert_eq!(shown("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(shown("\u{9d}0;t\u{9c}"), "\\u{9d}0;t\\u{9c}");
        assert_eq!(shown("a\u{85}b\u{80}\u{9f}"), "a\\u{85}b\\u{80}\\u{9f}");
    }

    #[test]
    fn bidi_controls_are_escaped() {
        assert_eq!(shown("evil\u{202e}moc.elpmaxe"), "evil\\u{202e}moc.elpmaxe");
        let bidi = [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{61c}',
        ];
        for c in bidi {
            assert_eq!(shown(&format!("x{c}y")), format!("x\\u{{{:x}}}y", c as u32));
        }
    }

    #[test]
    fn other_format_characters_and_separators_are_escaped() {
        for (c, text) in [
            ('\u{200b}', "\\u{200b}"),
            ('\u{200c}', "\\u{200c}"),
            ('\u{200d}', "\\u{200d}"),
            ('\u{feff}', "\\u{feff}"),
            ('\u{2060}', "\\u{2060}"),
            ('\u{2064}', "\\u{2064}"),
            ('\u{ad}', "\\u{ad}"),
            ('\u{e0041}', "\\u{e0041}"),
            ('\u{2028}', "\\u{2028}"),
            ('\u{2029}', "\\u{2029}"),
        ] {
            assert_eq!(shown(&c.to_string()), text, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn what_is_printed_is_ascii_where_anything_was_escaped_and_escaping_twice_changes_nothing() {
        let hostile = "\u{1b}]52;c;eA==\u{7}\u{202e}名\u{200b}\u{85}";
        let once = shown(hostile);
        assert_eq!(once, "\\u{1b}]52;c;eA==\\u{7}\\u{202e}名\\u{200b}\\u{85}");
        assert!(!once.chars().any(acts_on_terminal));
        assert_eq!(shown(&once), once);
    }

    #[test]
    fn lines_keep_their_newlines_only() {
        assert_eq!(
            escaped_lines("error: bad value '\u{1b}[2J'\n\nUsage: x\r\n"),
            "error: bad value '\\u{1b}[2J'\n\nUsage: x\\r\n"
        );
        assert!(matches!(escaped_lines("a\nb\n"), Cow::Borrowed(_)));
    }
}
