//! What a request line gets back: a `Reply` (one answer, or a batch's answers) as the line
//! the daemon writes. The wire calls one answer a `Response`; here each `Answer` is a
//! response whose result is already encoded, and which may turn the connection into a
//! feed.

use compartmentctl::wire::{Id, RpcError, JSONRPC};

use crate::dispatch::Body;
use crate::events::Feed;
use crate::sending::encode_into;

/// A [`compartmentctl::wire::Response`] as the daemon sends it: the same members in the same order, its result
/// a [`Body`] written into the line as it is.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Answer {
    jsonrpc: &'static str,
    id: Id,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Body>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<RpcError>,
    /// The feed the connection becomes once this answer is sent.
    #[serde(skip)]
    feed: Option<Box<Feed>>,
}

impl Answer {
    pub(crate) fn ok(id: Id, result: Body, feed: Option<Box<Feed>>) -> Answer {
        Answer {
            jsonrpc: JSONRPC,
            id,
            result: Some(result),
            error: None,
            feed,
        }
    }

    pub(crate) fn err(id: Id, error: RpcError) -> Answer {
        Answer {
            jsonrpc: JSONRPC,
            id,
            result: None,
            error: Some(error),
            feed: None,
        }
    }

    /// About the length of the result's text, if any.
    pub(crate) fn text_len(&self) -> usize {
        self.result.as_ref().map_or(0, Body::len_hint)
    }
}

/// What a line is answered with: one response, or the array of a batch's responses.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub(crate) enum Reply {
    One(Answer),
    Batch(Vec<Answer>),
}

impl Reply {
    /// The feed a lone `events.subscribe` answered with success turns the connection into.
    pub(crate) fn take_feed(&mut self) -> Option<Box<Feed>> {
        match self {
            Reply::One(answer) => answer.feed.take(),
            Reply::Batch(_) => None,
        }
    }

    /// The reply's line, newline included.
    pub(crate) fn line(&self) -> Vec<u8> {
        let results = match self {
            Reply::One(answer) => answer.text_len(),
            Reply::Batch(answers) => answers.iter().map(Answer::text_len).sum(),
        };
        // The envelopes around the results are small next to a page of members.
        encode_into(Vec::with_capacity(results + 256), self)
    }
}
