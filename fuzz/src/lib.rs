//! What the fuzz targets assert about every answer: a decoder error is of a documented
//! kind and code, and every reply serializes to one line of JSON-RPC that reads back.

use compartmentctl::wire::{ErrorKind, Response, RpcError};
use serde_json::Value;

/// Checks a decoder error: `bad_request` with -32700 (not JSON), -32600 (not a request) or
/// -32602 (bad params), or `unknown_method` with -32601.
pub fn check_decode_error(error: &RpcError) {
    let allowed = match error.kind() {
        ErrorKind::BadRequest => matches!(error.code, -32700 | -32600 | -32602),
        ErrorKind::UnknownMethod => error.code == -32601,
        _ => false,
    };
    assert!(
        allowed,
        "decode error of kind {} with code {}",
        error.kind(),
        error.code
    );
    assert!(!error.message.is_empty(), "an error without a message");
}

/// Serializes `response` as the daemon sends it and checks that it is one line of
/// JSON-RPC 2.0 carrying `id` that reads back into the same response.
pub fn check_reply(response: &Response) {
    let line = serde_json::to_string(response).expect("a reply serializes");
    assert!(!line.contains('\n'), "a reply spans lines: {line}");
    let value: Value = serde_json::from_str(&line).expect("a reply is JSON");
    assert_eq!(value["jsonrpc"], "2.0", "{line}");
    assert!(
        value.get("result").is_some() != value.get("error").is_some(),
        "a reply needs exactly one of result and error: {line}"
    );
    if let Some(error) = &response.error {
        assert_eq!(
            value["error"]["data"]["kind"],
            error.kind().as_str(),
            "{line}"
        );
        assert_eq!(value["error"]["code"], error.code, "{line}");
    }
    let back: Response = serde_json::from_str(&line).expect("a reply reads back");
    assert_eq!(back.error, response.error, "{line}");
}
