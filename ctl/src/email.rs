//! The one definition of an e-mail address, shared by the daemon and the CLI.

use std::fmt;

/// Longest address accepted, in bytes (the SMTP path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// A validated e-mail address: trimmed and lower-cased, so that comparison is by equality.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Email(String);

/// Why a string is not an e-mail address; its `Display` is one sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEmail {
    input: String,
    reason: &'static str,
}

impl fmt::Display for InvalidEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a valid e-mail address: {}",
            self.input, self.reason
        )
    }
}

impl std::error::Error for InvalidEmail {}

impl Email {
    /// Parses `input` as DESIGN §2 defines an account key: trimmed, compared
    /// case-insensitively, at most 254 bytes, exactly one `@`, a dot inside the domain.
    pub fn parse(input: &str) -> Result<Email, InvalidEmail> {
        let fail = |reason| InvalidEmail {
            input: truncate_for_display(input),
            reason,
        };
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(fail("it is empty"));
        }
        if trimmed.len() > MAX_EMAIL_LEN {
            return Err(fail("it is longer than 254 bytes"));
        }
        if trimmed.chars().any(is_invisible) {
            return Err(fail(
                "it contains invisible or direction-changing characters",
            ));
        }
        if trimmed
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ','))
        {
            return Err(fail("it contains spaces, control characters or quotes"));
        }
        let mut parts = trimmed.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(fail("it must contain exactly one @"));
        };
        if local.is_empty() {
            return Err(fail("nothing comes before the @"));
        }
        let labels_ok = domain.split('.').all(|label| !label.is_empty());
        if !domain.contains('.') || !labels_ok {
            return Err(fail(
                "the domain after the @ needs a dot, as in example.com",
            ));
        }
        Ok(Email(trimmed.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Characters that print as nothing or reorder what follows: Unicode's format characters
/// (category Cf: bidi controls, zero-width joiners and spaces, the soft hyphen, the byte
/// order mark, tags) and the other blanks and selectors that render invisibly. Two
/// addresses that look the same to an admin must be the same account, and a listed address
/// must read as it is stored.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        // Category Cf, as of Unicode 15.
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
            // Invisible but not Cf: the combining grapheme joiner, Hangul and Khmer fillers,
            // the Braille blank, variation selectors.
            | '\u{034F}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FFA0}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

/// Keeps an echoed bad input short enough to read in one error line.
fn truncate_for_display(input: &str) -> String {
    const MAX: usize = 80;
    if input.len() <= MAX {
        return input.to_owned();
    }
    let mut end = MAX;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &input[..end])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn normalizes_case_and_whitespace() {
        let email = Email::parse("  Deploy@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "deploy@example.com");
    }

    #[test]
    fn rejects_what_design_rejects() {
        for (input, reason) in [
            ("", "it is empty"),
            ("no-at.example.com", "it must contain exactly one @"),
            ("a@b@example.com", "it must contain exactly one @"),
            ("@example.com", "nothing comes before the @"),
            (
                "a@localhost",
                "the domain after the @ needs a dot, as in example.com",
            ),
            (
                "a@example.",
                "the domain after the @ needs a dot, as in example.com",
            ),
            (
                "a b@example.com",
                "it contains spaces, control characters or quotes",
            ),
        ] {
            let err = Email::parse(input).unwrap_err();
            assert_eq!(err.reason, reason, "input {input:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(
            Email::parse(&long).unwrap_err().reason,
            "it is longer than 254 bytes"
        );
    }

    #[test]
    fn rejects_invisible_and_direction_changing_characters() {
        let hidden = [
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}', // embeddings, overrides
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}', // isolates
            '\u{200E}',
            '\u{200F}',
            '\u{061C}', // marks
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}', // zero-width
            '\u{00AD}',
            '\u{2062}',
            '\u{180E}',
            '\u{E0041}',
            '\u{E0001}', // other Cf
            '\u{FE0F}',
            '\u{E0100}',
            '\u{034F}',
            '\u{3164}',
            '\u{2800}', // other blanks
        ];
        for c in hidden {
            for input in [
                format!("adm{c}in@example.com"),
                format!("{c}admin@example.com"),
                format!("admin@exa{c}mple.com"),
                format!("admin@example.com{c}"),
            ] {
                let err = Email::parse(&input).unwrap_err();
                assert_eq!(
                    err.reason, "it contains invisible or direction-changing characters",
                    "U+{:04X} in {input:?}",
                    c as u32
                );
            }
        }
        // The message shows the character escaped, so it cannot reorder the line it is in.
        let err = Email::parse("evil\u{202E}moc.elpmaxe@admin").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"evil\\u{202e}moc.elpmaxe@admin\" is not a valid e-mail address: \
             it contains invisible or direction-changing characters"
        );
        // Visible non-ASCII letters are still addresses.
        assert_eq!(
            Email::parse("José@Exämple.com").unwrap().as_str(),
            "josé@exämple.com"
        );
    }

    #[test]
    fn message_names_the_input() {
        let err = Email::parse("nope").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"nope\" is not a valid e-mail address: it must contain exactly one @"
        );
    }
}
