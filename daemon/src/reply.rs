//! What a request line gets back: its [`Reply`], the line the daemon writes, holding one
//! [`Response`] or a batch's array of them. A `Response` here is the wire's JSON-RPC
//! response as the daemon writes it: its result already encoded by the request's
//! [`crate::dispatch::Answer`], and what the connection may turn into.

use compartmentctl::wire::{Id, RpcError, JSONRPC};

use crate::dispatch::{EncodedResult, Takeover};
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
    /// What the connection becomes once this response is sent.
    #[serde(skip)]
    takeover: Option<Box<Takeover>>,
}

impl Response {
    pub(crate) fn ok(id: Id, result: EncodedResult, takeover: Option<Box<Takeover>>) -> Response {
        Response {
            jsonrpc: JSONRPC,
            id,
            result: Some(result),
            error: None,
            takeover,
        }
    }

    pub(crate) fn err(id: Id, error: RpcError) -> Response {
        Response {
            jsonrpc: JSONRPC,
            id,
            result: None,
            error: Some(error),
            takeover: None,
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
    /// What a lone `events.subscribe` or `admin.backup` answered with success turns the
    /// connection into.
    pub(crate) fn take_takeover(&mut self) -> Option<Box<Takeover>> {
        match self {
            Reply::One(response) => response.takeover.take(),
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
