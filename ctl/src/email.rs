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
    fn message_names_the_input() {
        let err = Email::parse("nope").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"nope\" is not a valid e-mail address: it must contain exactly one @"
        );
    }
}
