//! Fuzzes `decode_request`: any bytes get a request or an error of a documented kind and
//! code, and the error reply serializes; a decoded request re-encodes to itself.

#![no_main]

use compartment_fuzz::{check_decode_error, check_reply};
use compartmentctl::wire::{decode_request, RequestEnvelope, Response};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|line: &[u8]| {
    let (id, result) = decode_request(line);
    assert!(
        matches!(id, Value::Null | Value::Number(_) | Value::String(_)),
        "answered with id {id}"
    );
    match result {
        Err(error) => {
            check_decode_error(&error);
            check_reply(&Response::err(id, error));
        }
        Ok(request) => {
            assert!(!id.is_null(), "a request decoded without an id");
            let again =
                serde_json::to_vec(&RequestEnvelope::new(7, &request)).expect("a request encodes");
            let (again_id, again_request) = decode_request(&again);
            assert_eq!(again_id, Value::from(7));
            assert_eq!(again_request.as_ref().ok(), Some(&request), "round trip");
        }
    }
});
