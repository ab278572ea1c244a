//! Activation tokens: 32 bytes, base64url (43 characters); the store keeps a key derived
//! from them, never the text.
//!
//! A token's first 6 bytes are the time it was issued (milliseconds, big-endian) and the
//! other 26 come from the OS's random source (208 bits: the secret). Its key in the store
//! is those 6 bytes followed by the first 26 bytes of the text's SHA-256, so tokens issued
//! together sit together in the store's tree: a commit of 256 invitations rewrites a page or
//! two of the token table, not 256 random ones. The key reveals nothing a holder of the
//! database could redeem (the hash is one-way), and the time in the text tells its holder
//! no more than the e-mail that carried it.
//!
//! Tokens issued before this layout are keyed by the SHA-256 of their text
//! ([`legacy_key`]); activation looks for both.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::store::{Millis, TokenHash};

/// The bytes of a token that carry the issue time.
const TIME_BYTES: usize = 6;
/// The characters of the text that encode them exactly (6 bytes = 48 bits = 8 × 6).
const TIME_CHARS: usize = 8;

/// A freshly issued token. Its text leaves the daemon once, in the reply to the inviter,
/// and is never logged or stored; `Debug` hides it.
pub struct Token(String);

impl Token {
    /// A new token issued at `now`, its secret drawn from the OS's random source.
    pub fn generate(now: Millis) -> std::io::Result<Token> {
        let mut bytes = [0u8; 32];
        bytes[..TIME_BYTES].copy_from_slice(&now.to_be_bytes()[8 - TIME_BYTES..]);
        getrandom::fill(&mut bytes[TIME_BYTES..])
            .map_err(|err| std::io::Error::other(err.to_string()))?;
        Ok(Token(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A token with known text, for tests.
    pub fn from_text(text: &str) -> Token {
        Token(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token's key in the store.
    pub fn key(&self) -> TokenHash {
        key_of(&self.0)
    }
}

/// The store key of a token's text (see the module's documentation); a text that is not
/// base64url gets the legacy key, which no issued token has.
pub fn key_of(text: &str) -> TokenHash {
    let mut time = [0u8; TIME_BYTES];
    let decoded = text
        .get(..TIME_CHARS)
        .and_then(|prefix| URL_SAFE_NO_PAD.decode_slice(prefix, &mut time).ok());
    if decoded != Some(TIME_BYTES) {
        return legacy_key(text);
    }
    let digest = Sha256::digest(text.as_bytes());
    let mut key = [0u8; 32];
    key[..TIME_BYTES].copy_from_slice(&time);
    key[TIME_BYTES..].copy_from_slice(&digest[..32 - TIME_BYTES]);
    TokenHash(key)
}

/// The key of a token issued before keys began with the issue time: its text's SHA-256.
pub fn legacy_key(text: &str) -> TokenHash {
    TokenHash(Sha256::digest(text.as_bytes()).into())
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// True when `text` could be a token this daemon issued: 43 base64url characters.
pub fn looks_like_token(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_43_base64url_characters_and_differ() {
        let a = Token::generate(1).unwrap();
        let b = Token::generate(1).unwrap();
        assert!(looks_like_token(a.as_str()), "{}", a.as_str());
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(a.key(), key_of(a.as_str()));
        assert_eq!(format!("{a:?}"), "Token(…)");
    }

    /// Keys start with the issue time, so later tokens sort after earlier ones; the rest is
    /// the text's hash, not the text.
    #[test]
    fn keys_are_ordered_by_issue_time_and_hold_no_secret() {
        let now: Millis = 1_777_636_800_123;
        let early = Token::generate(now).unwrap();
        let late = Token::generate(now + 1).unwrap();
        assert!(early.key().0 < late.key().0);
        assert_eq!(early.key().0[..6], now.to_be_bytes()[2..]);
        let digest: [u8; 32] = Sha256::digest(early.as_str().as_bytes()).into();
        assert_eq!(early.key().0[6..], digest[..26]);
        let secret = &URL_SAFE_NO_PAD.decode(early.as_str()).unwrap()[6..];
        assert!(!early
            .key()
            .0
            .windows(8)
            .any(|w| secret.windows(8).any(|s| s == w)));
        assert_eq!(legacy_key(early.as_str()), TokenHash(digest));
        assert_eq!(key_of("not base64!"), legacy_key("not base64!"));
    }
}
