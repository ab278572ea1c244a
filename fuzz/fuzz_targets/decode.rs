//! Fuzzes `decode`: any bytes get, for each request object of the line (one, or a batch's
//! elements), a request or an error of a documented kind and code whose reply serializes;
//! a decoded request re-encodes to itself.

#![no_main]

use compartment_fuzz::{check_decode_error, check_reply};
use compartmentctl::wire::{
    decode, decode_request, Call, Id, Incoming, RequestEnvelope, Response, MAX_BATCH,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let calls = match decode(line) {
        Incoming::Single(call) => vec![call],
        Incoming::Batch(calls) => {
            assert!(
                (1..=MAX_BATCH).contains(&calls.len()),
                "a batch of {}",
                calls.len()
            );
            calls
        }
    };
    for Call { id, request } in calls {
        match request {
            Err(error) => {
                check_decode_error(&error);
                check_reply(&Response::err(id.unwrap_or_else(Id::null), error));
            }
            Ok(request) => {
                let again = serde_json::to_vec(&RequestEnvelope::new(7, &request))
                    .expect("a request encodes");
                let (again_id, again_request) = decode_request(&again);
                assert_eq!(again_id, Some(Id::from(7)));
                assert_eq!(again_request.as_ref().ok(), Some(&request), "round trip");
            }
        }
    }
});
