//! What a request line gets back: its [`Reply`], the line the daemon writes, holding one
//! [`Response`] or a batch's array of them. A `Response` here is the wire's JSON-RPC
//! response as the daemon writes it: its result already encoded by the request's
//! [`crate::dispatch::Answer`], and the feed the connection may turn into.

use compartmentctl::wire::{Id, RpcError, JSONRPC};

use crate::dispatch::EncodedResult;
use crate::events::Feed;
use crate::sending::encode_into;

/// A [`compartmentctl::wire::Response`] as the daemon sends it: the same members in the
/// same order, its result an [`EncodedResult`] written into the line as it is.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Response {
    jsonrpc: &'static str,
    id: Id,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<EncodedResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<RpcError>,
    /// The feed the connection becomes once this response is sent.
    #[serde(skip)]
    feed: Option<Box<Feed>>,
}

impl Response {
    pub(crate) fn ok(id: Id, result: EncodedResult, feed: Option<Box<Feed>>) -> Response {
        Response {
            jsonrpc: JSONRPC,
            id,
            result: Some(result),
            error: None,
            feed,
        }
    }

    pub(crate) fn err(id: Id, error: RpcError) -> Response {
        Response {
            jsonrpc: JSONRPC,
            id,
            result: None,
            error: Some(error),
            feed: None,
        }
    }

    /// About the length of the result's text, if any.
    pub(crate) fn result_len(&self) -> usize {
        self.result.as_ref().map_or(0, EncodedResult::len_hint)
    }
}

/// What a line is replied with: one response, or the array of a batch's responses.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub(crate) enum Reply {
    One(Response),
    Batch(Vec<Response>),
}

impl Reply {
    /// The feed a lone `events.subscribe` answered with success turns the connection into.
    pub(crate) fn take_feed(&mut self) -> Option<Box<Feed>> {
        match self {
            Reply::One(response) => response.feed.take(),
            Reply::Batch(_) => None,
        }
    }

    /// The reply's line, newline included.
    pub(crate) fn line(&self) -> Vec<u8> {
        let results = match self {
            Reply::One(response) => response.result_len(),
            Reply::Batch(responses) => responses.iter().map(Response::result_len).sum(),
        };
        // The envelopes around the results are small next to a page of members.
        encode_into(Vec::with_capacity(results + 256), self)
    }
}
