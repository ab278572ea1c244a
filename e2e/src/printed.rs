//! What the CLI prints: the invitation lines and the member table exactly as the
//! documentation page shows them, parsed and checked.

use base64::Engine as _;

use crate::process::Out;
use crate::time::parse_rfc3339;

/// How every activation URL begins.
pub const URL_PREFIX: &str = "https://your-compartment-host/activate?token=";
/// The three lines `user invite` prints for a new account, parsed and checked.
#[derive(Debug, Clone)]
pub struct InvitationLines {
    pub email: String,
    pub role: String,
    pub url: String,
    pub token: String,
    pub expires_at: String,
    /// `expires_at` as seconds since the epoch.
    pub expires_at_unix: i64,
}

/// Checks the documentation page's three invitation lines exactly:
/// `Invited <email> as <role>.`, `Activation URL: https://your-compartment-host/activate?token=<token>`
/// (the token 32 bytes in unpadded base64url) and `Invitation expires at: <RFC 3339 UTC>`.
#[track_caller]
pub fn parse_invitation_lines(lines: &[&str], email: &str, role: &str) -> InvitationLines {
    assert_eq!(
        lines.len(),
        3,
        "three invitation lines expected: {lines:#?}"
    );
    assert_eq!(
        lines[0],
        format!("Invited {email} as {role}."),
        "{lines:#?}"
    );
    let url = lines[1]
        .strip_prefix("Activation URL: ")
        .unwrap_or_else(|| panic!("second line is not `Activation URL: …`: {lines:#?}"));
    let token = url
        .strip_prefix(URL_PREFIX)
        .unwrap_or_else(|| panic!("the URL does not start with {URL_PREFIX}: {url}"));
    assert_token_shape(token);
    let expires_at = lines[2]
        .strip_prefix("Invitation expires at: ")
        .unwrap_or_else(|| panic!("third line is not `Invitation expires at: …`: {lines:#?}"));
    let expires_at_unix = parse_rfc3339(expires_at).unwrap_or_else(|| {
        panic!("expiry is not RFC 3339 like 2026-05-01T12:00:00Z: {expires_at}")
    });
    InvitationLines {
        email: email.to_owned(),
        role: role.to_owned(),
        url: url.to_owned(),
        token: token.to_owned(),
        expires_at: expires_at.to_owned(),
        expires_at_unix,
    }
}

/// [`parse_invitation_lines`] on a whole successful `user invite` run.
#[track_caller]
pub fn parse_invite(out: &Out, email: &str, role: &str) -> InvitationLines {
    out.assert_success();
    parse_invitation_lines(&out.stdout_lines(), email, role)
}

/// A token is 32 random bytes in base64url without padding (43 characters).
#[track_caller]
pub fn assert_token_shape(token: &str) {
    let bytes = token_bytes(token);
    assert_eq!(bytes.len(), 32, "a token is 32 random bytes: {token}");
}

/// The raw bytes a token encodes.
#[track_caller]
pub fn token_bytes(token: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .unwrap_or_else(|err| panic!("the token is not unpadded base64url ({err}): {token}"))
}

/// The text of `user list`: rows of email, role, status, Unix user (`-` for none) and
/// expiry (`-` for none).
pub fn member_table(rows: &[[&str; 5]]) -> String {
    text_table(["EMAIL", "ROLE", "STATUS", "UNIX USER", "EXPIRES"], rows)
}

/// The text of `account list`: rows of email, status, Unix user, uid and what the binding
/// was made through, `-` for any of them missing.
pub fn account_table(rows: &[[&str; 5]]) -> String {
    text_table(
        ["EMAIL", "STATUS", "UNIX USER", "UID", "BOUND THROUGH"],
        rows,
    )
}

/// A table as the CLI prints one: a header and rows, columns separated by two spaces and
/// padded to the widest cell, no trailing spaces.
pub fn text_table<const N: usize>(header: [&str; N], rows: &[[&str; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < N {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_table_aligns_without_trailing_spaces() {
        assert_eq!(
            member_table(&[["a@example.com", "admin", "active", "cpt-a", "-"]]),
            "EMAIL          ROLE   STATUS  UNIX USER  EXPIRES\n\
             a@example.com  admin  active  cpt-a      -\n"
        );
    }
}
