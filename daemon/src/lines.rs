//! Request lines off a connection: the framing of tokio-util's `AnyDelimiterCodec` with
//! one delimiter, `\n`, whose end is found with `memchr`. (That codec tests each byte
//! against its list of delimiters, which took a twentieth of the work of answering a short
//! request.) A property test holds the two to the same frames and errors.

use tokio_util::bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{AnyDelimiterCodecError, Decoder};

/// Lines of at most `max_length` bytes (the newline not counted), without their newline; a
/// longer one is an error, after which the codec skips to the next newline. At the end of
/// the stream, bytes after the last newline are a last line.
#[derive(Debug, Clone)]
pub struct LineCodec {
    max_length: usize,
    /// Where in the buffer to go on looking for a newline: the bytes before have none.
    next_index: usize,
    /// Skipping the rest of a line over the limit.
    is_discarding: bool,
}

impl LineCodec {
    pub fn new(max_length: usize) -> LineCodec {
        LineCodec {
            max_length,
            next_index: 0,
            is_discarding: false,
        }
    }
}

impl Decoder for LineCodec {
    type Item = Bytes;
    type Error = AnyDelimiterCodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, AnyDelimiterCodecError> {
        loop {
            let read_to = self.max_length.saturating_add(1).min(buf.len());
            let newline = buf
                .get(self.next_index..read_to)
                .and_then(|unread| memchr::memchr(b'\n', unread))
                .map(|offset| offset + self.next_index);
            match (self.is_discarding, newline) {
                (true, Some(at)) => {
                    buf.advance(at + 1);
                    self.is_discarding = false;
                    self.next_index = 0;
                }
                (true, None) => {
                    buf.advance(read_to);
                    self.next_index = 0;
                    if buf.is_empty() {
                        return Ok(None);
                    }
                }
                (false, Some(at)) => {
                    self.next_index = 0;
                    let mut line = buf.split_to(at + 1);
                    line.truncate(at);
                    return Ok(Some(line.freeze()));
                }
                (false, None) if buf.len() > self.max_length => {
                    self.is_discarding = true;
                    return Err(AnyDelimiterCodecError::MaxChunkLengthExceeded);
                }
                (false, None) => {
                    self.next_index = read_to;
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, AnyDelimiterCodecError> {
        if let Some(line) = self.decode(buf)? {
            return Ok(Some(line));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        self.next_index = 0;
        Ok(Some(buf.split_to(buf.len()).freeze()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use tokio_util::codec::AnyDelimiterCodec;

    use super::*;

    /// What a codec makes of `chunks` arriving one after the other, then the end: each
    /// call's result, as text.
    fn frames<D>(mut codec: D, chunks: &[Vec<u8>]) -> Vec<String>
    where
        D: Decoder<Item = Bytes, Error = AnyDelimiterCodecError>,
    {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut record = |result: Result<Option<Bytes>, AnyDelimiterCodecError>| match result {
            Ok(Some(line)) => {
                out.push(format!("line {:?}", line));
                true
            }
            Ok(None) => false,
            Err(err) => {
                out.push(format!("error {err:?}"));
                true
            }
        };
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while record(codec.decode(&mut buf)) {}
        }
        while record(codec.decode_eof(&mut buf)) {}
        out.push(format!("left {:?}", buf));
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 2048,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// The same lines, errors and leftovers as `AnyDelimiterCodec` with `\n`, however
        /// the bytes arrive and whatever the limit.
        #[test]
        fn frames_as_any_delimiter_codec_does(
            max_length in 0usize..24,
            chunks in proptest::collection::vec(
                proptest::collection::vec(prop_oneof![4 => b'a'..=b'c', 1 => Just(b'\n'), 1 => Just(b',')], 0..40),
                0..8,
            ),
        ) {
            let theirs = AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), b"\n".to_vec(), max_length);
            prop_assert_eq!(frames(LineCodec::new(max_length), &chunks), frames(theirs, &chunks));
        }
    }

    #[test]
    fn a_line_over_the_limit_is_an_error_then_skipped() {
        let got = frames(
            LineCodec::new(3),
            &[b"abc\nabcd".to_vec(), b"e\nxy".to_vec()],
        );
        assert_eq!(
            got,
            [
                "line b\"abc\"",
                "error MaxChunkLengthExceeded",
                "line b\"xy\"",
                "left b\"\"",
            ]
        );
    }
}
