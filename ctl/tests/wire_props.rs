//! Property tests of the wire decoder: `decode` never panics, and answers every line,
//! whatever its bytes, as JSON-RPC 2.0 says: a request that round-trips, a notification
//! that gets no reply, a batch whose elements are each answered so, or a well-formed error
//! reply with the request's id exactly.
//!
//! Inputs: arbitrary bytes (invalid UTF-8 included), arbitrary JSON values (arrays are
//! batches), request-shaped objects with mutated methods, ids of every JSON type and any
//! size, params right, wrong, partial or padded, batches of those, and valid request lines
//! with bytes flipped, cut or inserted.
//!
//! `PROPTEST_CASES=100000 cargo test -p compartmentctl --test wire_props` searches deeper
//! than the 512 cases a strategy gets in CI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use compartmentctl::wire::{
    decode, decode_request, Call, ErrorKind, Id, Incoming, Request, RequestEnvelope, Response,
    RpcError, MAX_BATCH, METHODS,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::de::IgnoredAny;
use serde_json::{json, Map, Value};

/// Fails the test case with a message when `cond` is false.
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($fmt)+)));
        }
    };
}

// ---------------------------------------------------------------------------------------
// What every answer must be

/// What the specification says one element (a line's value, or one of its batch) gets:
/// the id to answer with (`None`: a notification, never answered) and the JSON-RPC code
/// the envelope alone decides (`None` when it names a known method, which then decodes or
/// fails on its params with -32602).
fn element_model(element: &Value) -> (Option<Value>, Option<i64>) {
    let Value::Object(object) = element else {
        return (Some(Value::Null), Some(-32600));
    };
    let id = match object.get("id") {
        None => None,
        Some(id @ (Value::Number(_) | Value::String(_) | Value::Null)) => Some(id.clone()),
        Some(_) => return (Some(Value::Null), Some(-32600)),
    };
    // A request object too broken to run is answered even without an id.
    let answered = Some(id.clone().unwrap_or(Value::Null));
    if object.get("jsonrpc") != Some(&json!("2.0")) {
        return (answered, Some(-32600));
    }
    match object.get("method") {
        Some(Value::String(method)) if METHODS.contains(&method.as_str()) => (id, None),
        Some(Value::String(_)) => (id, Some(-32601)),
        _ => (answered, Some(-32600)),
    }
}

/// An id as the JSON value it reads as.
fn id_value(id: &Id) -> Value {
    serde_json::from_str(id.as_json()).unwrap_or(Value::Null)
}

/// Ids compare by value; a float may come back one unit in the last place away, as
/// serde_json parses floats fast rather than exactly (the decoder itself keeps the text).
fn same_id(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs())
        }
        _ => a == b,
    }
}

fn single(incoming: Incoming) -> Result<Call, TestCaseError> {
    match incoming {
        Incoming::Single(call) => Ok(call),
        Incoming::Batch(calls) => Err(TestCaseError::fail(format!(
            "a batch of {} where one answer was due",
            calls.len()
        ))),
    }
}

/// Decodes `line` and checks every answer against the specification.
fn check_line(line: &[u8]) -> Result<(), TestCaseError> {
    let incoming = decode(line);
    let value = match serde_json::from_slice::<Value>(line) {
        Ok(value) => value,
        // Valid JSON that `Value` cannot hold (a number such as 1e400): the decoder keeps
        // ids as text, so it may read such a line; whatever it says must be well formed.
        Err(_) if serde_json::from_slice::<IgnoredAny>(line).is_ok() => {
            let calls = match incoming {
                Incoming::Single(call) => vec![call],
                Incoming::Batch(calls) => calls,
            };
            for call in calls {
                if let (Some(id), Err(error)) = (call.id, call.request) {
                    check_error(line, &id, error, None)?;
                }
            }
            return Ok(());
        }
        Err(_) => {
            let call = single(incoming)?;
            check!(
                call.id == Some(Id::null()),
                "not JSON, answered with id {:?}",
                call.id
            );
            return match call.request {
                Err(error) => check_error(line, &Id::null(), error, Some(-32700)),
                Ok(request) => Err(TestCaseError::fail(format!(
                    "not JSON, decoded {request:?}"
                ))),
            };
        }
    };
    match value {
        Value::Array(elements) if !elements.is_empty() && elements.len() <= MAX_BATCH => {
            let Incoming::Batch(calls) = incoming else {
                return Err(TestCaseError::fail("a batch answered as one".to_owned()));
            };
            check!(
                calls.len() == elements.len(),
                "{} calls for {} elements",
                calls.len(),
                elements.len()
            );
            for (element, call) in elements.iter().zip(calls) {
                check_call(line, element, call)?;
            }
            Ok(())
        }
        Value::Array(elements) => {
            let call = single(incoming)?;
            check!(
                call.id == Some(Id::null()),
                "batch refused with id {:?}",
                call.id
            );
            match call.request {
                Err(error) => check_error(line, &Id::null(), error, Some(-32600)),
                Ok(request) => Err(TestCaseError::fail(format!(
                    "a batch of {} decoded as {request:?}",
                    elements.len()
                ))),
            }
        }
        element => check_call(line, &element, single(incoming)?),
    }
}

/// Checks one decoded element against the model.
fn check_call(line: &[u8], element: &Value, call: Call) -> Result<(), TestCaseError> {
    let (expected_id, code) = element_model(element);
    match (&call.id, &expected_id) {
        (None, None) => {}
        (Some(id), Some(expected)) => check!(
            same_id(&id_value(id), expected),
            "answered with id {id}, the request's id is {expected}"
        ),
        _ => {
            return Err(TestCaseError::fail(format!(
                "answered with id {:?}, expected {expected_id:?} for {element}",
                call.id
            )))
        }
    }
    match call.request {
        Err(error) => {
            let id = call.id.unwrap_or_else(Id::null);
            check_error(line, &id, error, Some(code.unwrap_or(-32602)))
        }
        Ok(request) => {
            check!(
                code.is_none(),
                "decoded {request:?}, expected error {code:?}"
            );
            check_request(element, &request)
        }
    }
}

/// Checks an error: a documented kind with the code the model expects (any decoder code
/// when `expected_code` is `None`), and a reply that is one line of JSON-RPC carrying `id`
/// and reading back into the same error.
fn check_error(
    line: &[u8],
    id: &Id,
    error: RpcError,
    expected_code: Option<i64>,
) -> Result<(), TestCaseError> {
    let kind = error.kind();
    check!(
        matches!(kind, ErrorKind::BadRequest | ErrorKind::UnknownMethod),
        "undocumented kind {kind}"
    );
    check!(
        matches!(error.code, -32700 | -32600 | -32601 | -32602),
        "code {} is no decoder code",
        error.code
    );
    if let Some(expected_code) = expected_code {
        check!(
            error.code == expected_code,
            "code {} ({kind}: {}), expected {expected_code}",
            error.code,
            error.message
        );
    }
    let expected_kind = if error.code == -32601 {
        ErrorKind::UnknownMethod
    } else {
        ErrorKind::BadRequest
    };
    check!(
        kind == expected_kind,
        "code {} with kind {kind}",
        error.code
    );
    check!(!error.message.is_empty(), "an empty message");

    let response = Response::err(id.clone(), error.clone());
    let text = serde_json::to_string(&response).unwrap();
    check!(!text.contains('\n'), "a reply spans lines: {text}");
    check!(
        text.len() <= 2 * line.len() + 4096,
        "a {}-byte line got a {}-byte reply",
        line.len(),
        text.len()
    );
    check!(
        text.contains(&format!(r#""id":{}"#, id.as_json())),
        "the reply does not carry the id {id} as sent: {text}"
    );
    let back: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !back.is_null() {
        check!(
            back["jsonrpc"] == "2.0",
            "reply without jsonrpc 2.0: {text}"
        );
        check!(back.get("result").is_none(), "an error reply with a result");
        check!(
            back["error"]["code"] == error.code,
            "reply code {}",
            back["error"]["code"]
        );
        check!(
            back["error"]["data"]["kind"] == kind.as_str(),
            "reply kind {} for {kind}",
            back["error"]["data"]["kind"]
        );
        check!(
            back["error"]["message"] == error.message.as_str(),
            "reply message differs"
        );
    }
    // A client reads the reply back into the same error and id.
    let parsed: Response = serde_json::from_str(&text).unwrap();
    check!(
        parsed.error.as_ref() == Some(&error),
        "reply reads back as {:?}",
        parsed.error
    );
    check!(parsed.id == *id, "reply id reads back as {}", parsed.id);
    Ok(())
}

fn check_request(element: &Value, request: &Request) -> Result<(), TestCaseError> {
    check!(
        element["method"] == request.method(),
        "sent {}, decoded {}",
        element["method"],
        request.method()
    );
    let again = serde_json::to_vec(&RequestEnvelope::new(1, request)).unwrap();
    check!(!again.contains(&b'\n'), "an encoded request spans lines");
    let (again_id, again_request) = decode_request(&again);
    check!(
        again_id == Some(Id::from(1)),
        "re-encoded id came back as {again_id:?}"
    );
    match again_request {
        Ok(again_request) => check!(
            &again_request == request,
            "round trip changed {request:?} into {again_request:?}"
        ),
        Err(error) => {
            return Err(TestCaseError::fail(format!(
                "{request:?} re-encoded as {} does not decode: {error:?}",
                String::from_utf8_lossy(&again)
            )))
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Inputs

/// Keys that make a random object look like a request, and every params field name.
const KEYS: [&str; 21] = [
    "jsonrpc",
    "id",
    "method",
    "params",
    "org",
    "email",
    "role",
    "expires_in",
    "resend",
    "name",
    "admin",
    "token",
    "limit",
    "after",
    "status",
    "reason",
    "until",
    "access_until",
    "new_name",
    "new_email",
    "group",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(KEYS.to_vec()).prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-3i64..3).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        ".{0,16}".prop_map(Value::String),
        proptest::sample::select(METHODS.to_vec()).prop_map(Value::from),
        Just(json!("2.0")),
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A method name: a real one, one bent out of shape, or anything.
fn method() -> impl Strategy<Value = Value> {
    let real = proptest::sample::select(METHODS.to_vec());
    prop_oneof![
        12 => real.clone().prop_map(Value::from),
        1 => real.clone().prop_map(|m| Value::from(m.to_uppercase())),
        1 => (real.clone(), ".{0,2}").prop_map(|(m, s)| Value::from(format!("{m}{s}"))),
        1 => (real.clone(), any::<proptest::sample::Index>())
            .prop_map(|(m, i)| Value::from(&m[..i.index(m.len())])),
        1 => real.prop_map(|m| Value::from(format!(" {m}"))),
        1 => ".{0,20}".prop_map(Value::from),
        1 => json_value(),
    ]
}

/// An id of every JSON type.
fn id() -> impl Strategy<Value = Value> {
    prop_oneof![
        10 => number(),
        5 => ".{0,16}".prop_map(Value::from),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => json_value(),
    ]
}

/// A value of the right type for a params field, most of the time.
fn field_value(name: &'static str) -> BoxedStrategy<Value> {
    let right: BoxedStrategy<Value> = match name {
        "role" => prop_oneof![
            8 => proptest::sample::select(vec!["admin", "deployer", "readonly", "viewer"])
                .prop_map(Value::from),
            1 => ".{0,10}".prop_map(Value::from),
        ]
        .boxed(),
        "resend" => any::<bool>().prop_map(Value::Bool).boxed(),
        "email" | "admin" | "new_email" => prop_oneof![
            Just(json!("a@example.com")),
            "[a-zA-Z]{1,6}@[a-z]{1,6}\\.[a-z]{2,3}".prop_map(Value::from),
            ".{0,20}".prop_map(Value::from),
        ]
        .boxed(),
        "org" => prop_oneof![
            Just(json!("acme")),
            Just(Value::Null),
            ".{0,12}".prop_map(Value::from)
        ]
        .boxed(),
        "expires_in" => prop_oneof![
            proptest::sample::select(vec!["2h", "7days", "0s", "31days", "soon"])
                .prop_map(Value::from),
            Just(Value::Null),
        ]
        .boxed(),
        "limit" => prop_oneof![
            (0u32..=1001).prop_map(Value::from),
            Just(json!(u32::MAX)),
            Just(json!(4_294_967_296u64)),
            Just(json!(-1)),
            Just(json!(1.5)),
            Just(Value::Null),
        ]
        .boxed(),
        "after" => prop_oneof![
            "[A-Za-z0-9_-]{0,40}".prop_map(Value::from),
            Just(Value::Null),
        ]
        .boxed(),
        "status" => prop_oneof![
            proptest::sample::select(vec!["invited", "active", "expired", "pending", "Active"])
                .prop_map(Value::from),
            Just(Value::Null),
        ]
        .boxed(),
        "until" | "access_until" => prop_oneof![
            proptest::sample::select(vec![
                "8h",
                "30days",
                "0s",
                "2026-12-14T00:00:00Z",
                "2026-12-14",
                "soon",
            ])
            .prop_map(Value::from),
            Just(Value::Null),
        ]
        .boxed(),
        "reason" => prop_oneof![
            Just(json!("laptop lost")),
            Just(json!("")),
            ".{0,40}".prop_map(Value::from),
            "x{490,510}".prop_map(Value::from),
        ]
        .boxed(),
        "token" => prop_oneof![
            "[A-Za-z0-9_-]{43}".prop_map(Value::from),
            "https://h/activate\\?token=[A-Za-z0-9_-]{0,50}".prop_map(Value::from),
            ".{0,50}".prop_map(Value::from),
        ]
        .boxed(),
        _ => ".{0,12}".prop_map(Value::from).boxed(),
    };
    prop_oneof![12 => right, 1 => json_value()].boxed()
}

/// The params fields of a method: (name, required).
fn fields_of(method: &str) -> &'static [(&'static str, bool)] {
    match method {
        "org.create" => &[
            ("name", true),
            ("admin", true),
            ("admin_unix_user", false),
            ("expires_in", false),
        ],
        "org.use" => &[("name", true)],
        "org.delete" => &[("name", true), ("force", false)],
        "org.rename" => &[("name", true), ("new_name", true)],
        "org.map_group" => &[("name", true), ("group", true), ("role", true)],
        "org.unmap_group" => &[("name", true), ("group", true)],
        "user.invite" => &[
            ("org", false),
            ("email", true),
            ("role", true),
            ("expires_in", false),
            ("resend", false),
            ("unix_user", false),
            ("access_until", false),
        ],
        "user.list" => &[
            ("org", false),
            ("limit", false),
            ("after", false),
            ("status", false),
        ],
        "user.remove" | "user.unblock" => &[("org", false), ("email", true)],
        "user.block" => &[
            ("org", false),
            ("email", true),
            ("reason", true),
            ("until", false),
        ],
        "role.grant" => &[
            ("org", false),
            ("email", true),
            ("role", true),
            ("until", false),
        ],
        "account.activate" => &[("token", true)],
        "account.show" | "account.unbind" => &[("email", true)],
        "account.bind" => &[("email", true), ("unix_user", true)],
        "account.delete" => &[("email", true), ("force", false)],
        "account.rename" => &[("email", true), ("new_email", true)],
        "audit.list" => &[
            ("org", false),
            ("limit", false),
            ("after", false),
            ("from", false),
            ("to", false),
            ("event", false),
            ("actor", false),
            ("target_type", false),
            ("outcome", false),
        ],
        "audit.verify" => &[("checkpoint", false)],
        _ => &[],
    }
}

/// Params for `method`: its own fields, each present most of the time (optional ones half
/// of it) with a value mostly of the right type; now and then a field of another method
/// or an unknown one; or not an object at all.
fn params_for(method: &Value) -> BoxedStrategy<Option<Value>> {
    let own = fields_of(method.as_str().unwrap_or_default());
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = own
        .iter()
        .map(|&(name, required)| {
            let p = if required { 0.9 } else { 0.5 };
            proptest::option::weighted(p, field_value(name).prop_map(move |v| (name.to_owned(), v)))
                .boxed()
        })
        .collect();
    let stranger = prop_oneof![
        proptest::sample::select(KEYS[4..].to_vec()).prop_map(str::to_owned),
        ".{1,8}",
    ];
    let object = (
        fields,
        proptest::option::weighted(0.1, (stranger, json_value())),
    )
        .prop_map(|(fields, extra)| {
            let mut map: Map<String, Value> = fields.into_iter().flatten().collect();
            if let Some((k, v)) = extra {
                map.entry(k).or_insert(v);
            }
            Value::Object(map)
        });
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => Just(Some(json!({}))),
        10 => object.prop_map(Some),
        1 => json_value().prop_map(Some),
    ]
    .boxed()
}

/// A request-shaped object: each envelope member usually right, sometimes wrong or
/// missing, sometimes with company.
fn request_object() -> impl Strategy<Value = Value> {
    let jsonrpc = prop_oneof![
        20 => Just(Some(json!("2.0"))),
        1 => Just(None),
        1 => prop_oneof![Just(json!("1.0")), Just(json!(2.0)), json_value()].prop_map(Some),
    ];
    let id = prop_oneof![19 => id().prop_map(Some), 1 => Just(None)];
    let method = prop_oneof![19 => method().prop_map(Some), 1 => Just(None)];
    let method_and_params = method.prop_flat_map(|method| {
        let params = params_for(method.as_ref().unwrap_or(&Value::Null));
        (Just(method), params)
    });
    let extra = proptest::option::weighted(0.1, (key(), json_value()));
    (jsonrpc, id, method_and_params, extra).prop_map(|(jsonrpc, id, (method, params), extra)| {
        let mut object = Map::new();
        if let Some((k, v)) = extra {
            object.insert(k, v);
        }
        for (key, value) in [
            ("jsonrpc", jsonrpc),
            ("id", id),
            ("method", method),
            ("params", params),
        ] {
            if let Some(value) = value {
                object.insert(key.to_owned(), value);
            }
        }
        Value::Object(object)
    })
}

/// One way of damaging a line.
#[derive(Debug, Clone)]
enum Damage {
    Cut(proptest::sample::Index),
    Flip(proptest::sample::Index, u8),
    Insert(proptest::sample::Index, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<proptest::sample::Index>().prop_map(Damage::Cut),
        (any::<proptest::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Flip(i, b)),
        (
            any::<proptest::sample::Index>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 1..4),
                proptest::sample::select(vec![
                    b"\"".to_vec(),
                    b"\\".to_vec(),
                    b"{".to_vec(),
                    b"}".to_vec(),
                    b",".to_vec(),
                    b"\\u0000".to_vec(),
                    b"\\ud800".to_vec(),
                    b"\xff".to_vec(),
                ]),
            ]
        )
            .prop_map(|(i, bytes)| Damage::Insert(i, bytes)),
    ]
}

fn apply(mut line: Vec<u8>, damage: &[Damage]) -> Vec<u8> {
    for d in damage {
        match d {
            Damage::Cut(i) => line.truncate(i.index(line.len() + 1)),
            Damage::Flip(i, b) if !line.is_empty() => {
                let at = i.index(line.len());
                line[at] = *b;
            }
            Damage::Flip(..) => {}
            Damage::Insert(i, bytes) => {
                let at = i.index(line.len() + 1);
                line.splice(at..at, bytes.iter().copied());
            }
        }
    }
    line
}

fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig {
        // A failure prints its minimal input; no regression files beside the tests.
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes_get_a_well_formed_answer(
        line in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        check_line(&line)?;
    }

    #[test]
    fn arbitrary_json_gets_a_well_formed_answer(value in json_value()) {
        check_line(&serde_json::to_vec(&value).unwrap())?;
    }

    #[test]
    fn arbitrary_json_as_params_gets_a_well_formed_answer(
        method in proptest::sample::select(METHODS.to_vec()),
        params in json_value(),
    ) {
        let line = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        check_line(&serde_json::to_vec(&line).unwrap())?;
    }

    #[test]
    fn request_shaped_objects_decode_or_get_a_well_formed_answer(value in request_object()) {
        check_line(&serde_json::to_vec(&value).unwrap())?;
    }

    #[test]
    fn batches_get_an_answer_per_element(
        elements in proptest::collection::vec(
            prop_oneof![4 => request_object(), 1 => json_value()],
            0..8,
        ),
    ) {
        check_line(&serde_json::to_vec(&Value::Array(elements)).unwrap())?;
    }

    #[test]
    fn integer_ids_of_any_size_are_echoed_exactly(id in "-?[1-9][0-9]{0,60}|0") {
        let line = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
        let call = single(decode(line.as_bytes()))?;
        prop_assert_eq!(call.id.as_ref().map(Id::as_json), Some(id.as_str()));
        let reply = serde_json::to_string(&Response::ok(call.id.unwrap(), json!({}))).unwrap();
        prop_assert_eq!(reply, format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#));
    }

    #[test]
    fn damaged_requests_get_a_well_formed_answer(
        value in request_object(),
        damage in proptest::collection::vec(damage(), 1..4),
    ) {
        check_line(&apply(serde_json::to_vec(&value).unwrap(), &damage))?;
    }
}

#[test]
fn every_method_round_trips_through_the_checks() {
    let lines = [
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":"x","method":"whoami","params":[]}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"org.create","params":{"name":"acme","admin":"a@example.com","admin_unix_user":"alice","expires_in":"2h"}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"org.list","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"org.use","params":{"name":"acme"}}"#,
        r#"{"jsonrpc":"2.0","id":5,"method":"user.invite","params":{"org":"acme","email":"d@example.com","role":"deployer","expires_in":"2h","resend":true,"unix_user":"bob","access_until":"30days"}}"#,
        r#"{"jsonrpc":"2.0","id":6,"method":"user.list","params":{"org":"acme","limit":1000,"after":"YUBleGFtcGxlLmNvbQ","status":"expired"}}"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"user.remove","params":{"email":"d@example.com"}}"#,
        r#"{"jsonrpc":"2.0","id":8,"method":"role.grant","params":{"org":null,"email":"d@example.com","role":"admin","until":"2026-12-14T08:00:00Z"}}"#,
        r#"{"jsonrpc":"2.0","id":9,"method":"role.list"}"#,
        r#"{"jsonrpc":"2.0","id":10,"method":"account.activate","params":{"token":"https://h/activate?token=abc"}}"#,
        r#"{"jsonrpc":"2.0","id":11,"method":"account.list"}"#,
        r#"{"jsonrpc":"2.0","id":12,"method":"account.show","params":{"email":"d@example.com"}}"#,
        r#"{"jsonrpc":"2.0","id":13,"method":"account.unbind","params":{"email":"d@example.com"}}"#,
        r#"{"jsonrpc":"2.0","id":14,"method":"account.bind","params":{"email":"d@example.com","unix_user":"alice"}}"#,
        r#"{"jsonrpc":"2.0","id":15,"method":"role.show","params":{"role":"deployer"}}"#,
        r#"{"jsonrpc":"2.0","id":16,"method":"authz.check","params":{"checks":[{"permission":"deployment.create","org":"acme","uid":1001},{"permission":"project.read","email":"d@example.com"}]}}"#,
        r#"{"jsonrpc":"2.0","id":17,"method":"events.subscribe","params":{"org":"acme","after":41}}"#,
        r#"{"jsonrpc":"2.0","id":18,"method":"admin.status"}"#,
        r#"{"jsonrpc":"2.0","id":19,"method":"admin.backup","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":20,"method":"rpc.discover"}"#,
        r#"{"jsonrpc":"2.0","id":21,"method":"account.delete","params":{"email":"d@example.com","force":true}}"#,
        r#"{"jsonrpc":"2.0","id":22,"method":"audit.list","params":{"org":"acme","limit":10,"after":"4","from":"2h","to":"2026-12-07","event":"organization.user.","actor":"alice","target_type":"account","outcome":"refused"}}"#,
        r#"{"jsonrpc":"2.0","id":23,"method":"audit.verify","params":{"checkpoint":"note"}}"#,
        r#"{"jsonrpc":"2.0","id":24,"method":"audit.checkpoint"}"#,
        r#"{"jsonrpc":"2.0","id":25,"method":"org.delete","params":{"name":"acme","force":true}}"#,
        r#"{"jsonrpc":"2.0","id":26,"method":"user.block","params":{"org":"acme","email":"d@example.com","reason":"laptop lost","until":"3days"}}"#,
        r#"{"jsonrpc":"2.0","id":27,"method":"user.unblock","params":{"email":"d@example.com"}}"#,
        r#"{"jsonrpc":"2.0","id":28,"method":"org.rename","params":{"name":"acme","new_name":"acme-corp"}}"#,
        r#"{"jsonrpc":"2.0","id":29,"method":"account.rename","params":{"email":"d@example.com","new_email":"e@example.com"}}"#,
        r#"{"jsonrpc":"2.0","id":30,"method":"org.map_group","params":{"name":"acme","group":"ops","role":"deployer"}}"#,
        r#"{"jsonrpc":"2.0","id":31,"method":"org.unmap_group","params":{"name":"acme","group":"2001"}}"#,
        r#"{"jsonrpc":"2.0","id":32,"method":"admin.metrics"}"#,
    ];
    assert_eq!(lines.len(), METHODS.len());
    for line in lines {
        let (_, result) = decode_request(line.as_bytes());
        assert!(result.is_ok(), "{line}: {result:?}");
        check_line(line.as_bytes())
            .map_err(|e| format!("{line}: {e}"))
            .unwrap();
    }
}

#[test]
fn deep_nesting_is_a_parse_error_not_a_stack_overflow() {
    for depth in [127, 128, 129, 10_000, 100_000] {
        for (open, close) in [("[", "]"), (r#"{"a":"#, "}")] {
            let line = format!("{}{}", open.repeat(depth), close.repeat(depth));
            check_line(line.as_bytes())
                .map_err(|e| format!("depth {depth}: {e}"))
                .unwrap();
            let params = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"org.use","params":{{"name":{}1{}}}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            check_line(params.as_bytes())
                .map_err(|e| format!("params at depth {depth}: {e}"))
                .unwrap();
        }
    }
}
