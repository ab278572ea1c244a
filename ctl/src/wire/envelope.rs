//! The JSON-RPC 2.0 envelope: ids, requests, notifications, batches and responses, and
//! decoding a request line into the calls it holds. What comes back for a request is a
//! [`Response`], as a client decodes it: its id and the method's result, or an error.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::{Request, RpcError, JSONRPC};

/// The most requests one batch may hold. A longer batch is refused whole with one error, so
/// that a line cannot queue unbounded work or an unbounded response.
pub const MAX_BATCH: usize = 100;

/// A request id as it was sent: the raw JSON text of a number, a string or `null`. Kept as
/// text, not as a number, so that any id (a 30-digit integer, `1e400`, an escaped string)
/// is echoed byte for byte, as JSON-RPC 2.0 requires.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Id(Box<RawValue>);

impl Id {
    /// The id of a response to a line whose own id could not be read.
    pub fn null() -> Id {
        Id(RawValue::NULL.to_owned())
    }

    pub fn is_null(&self) -> bool {
        self.0.get() == "null"
    }

    /// The id's JSON text, exactly as received.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }

    /// Reads a raw member as an id: a number, a string or `null`; anything else is not an
    /// id.
    fn from_member(raw: &RawValue) -> Option<Id> {
        match raw.get().as_bytes().first() {
            Some(b'"' | b'-' | b'0'..=b'9' | b'n') => Some(Id(raw.to_owned())),
            _ => None,
        }
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Id) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for Id {}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.0.get())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

impl From<u64> for Id {
    fn from(id: u64) -> Id {
        Id::from(Value::from(id))
    }
}

impl From<&str> for Id {
    fn from(id: &str) -> Id {
        Id::from(Value::from(id))
    }
}

/// A `Value` id: numbers, strings and `null` keep their text; other values (which are not
/// ids) become `null`.
impl From<Value> for Id {
    fn from(id: Value) -> Id {
        match id {
            Value::Null | Value::Number(_) | Value::String(_) => {
                serde_json::value::to_raw_value(&id).map_or_else(|_| Id::null(), Id)
            }
            _ => Id::null(),
        }
    }
}

/// Compares with an id as a `Value`, for callers that build ids with `json!`.
impl PartialEq<Value> for Id {
    fn eq(&self, other: &Value) -> bool {
        serde_json::from_str::<Value>(self.0.get()).is_ok_and(|id| id == *other)
    }
}

impl PartialEq<u64> for Id {
    fn eq(&self, other: &u64) -> bool {
        self.0.get() == other.to_string()
    }
}

/// A request as a client sends it. (To read requests, use [`decode`], which tells an `"id":
/// null` from an absent id; this struct reads both as `None`.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub jsonrpc: String,
    /// `None` makes the request a notification: run, never answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

impl RequestEnvelope {
    pub fn new(id: impl Into<Id>, request: &Request) -> RequestEnvelope {
        RequestEnvelope {
            jsonrpc: JSONRPC.to_owned(),
            id: Some(id.into()),
            method: request.method().to_owned(),
            params: Some(request.params()),
        }
    }

    /// The request as a notification: the daemon runs it and sends nothing back.
    pub fn notification(request: &Request) -> RequestEnvelope {
        RequestEnvelope {
            id: None,
            ..RequestEnvelope::new(0, request)
        }
    }
}

/// A response: exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub jsonrpc: String,
    pub id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    pub fn ok(id: impl Into<Id>, result: Value) -> Response {
        Response {
            jsonrpc: JSONRPC.to_owned(),
            id: id.into(),
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: impl Into<Id>, error: RpcError) -> Response {
        Response {
            jsonrpc: JSONRPC.to_owned(),
            id: id.into(),
            result: None,
            error: Some(error),
        }
    }
}

/// One request object of a line, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The id to answer with; `None` for a notification, which is never answered (not even
    /// when it fails). A request object too broken to tell gets `null`.
    pub id: Option<Id>,
    pub request: Result<Request, RpcError>,
}

impl Call {
    fn refused(id: Option<Id>, error: RpcError) -> Call {
        Call {
            id: Some(id.unwrap_or_else(Id::null)),
            request: Err(error),
        }
    }
}

/// What a request line holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// One request object, or a line that is no request at all (not JSON, an empty or
    /// oversized batch), which is answered with one error.
    Single(Call),
    /// A batch of 1 to [`MAX_BATCH`] elements, in the order sent; answered with one array
    /// of the responses to those that are not notifications, or nothing when all are.
    Batch(Vec<Call>),
}

/// Decodes one request line.
pub fn decode(line: &[u8]) -> Incoming {
    // The usual line, one request object, read in one pass (see `OnePass`). Any other line,
    // or one that does not read so, is read again below, which says why.
    if let Ok(text) = std::str::from_utf8(line) {
        let json_whitespace = [' ', '\t', '\n', '\r'];
        if text.trim_start_matches(json_whitespace).starts_with('{') {
            if let Ok(OnePass(call)) = serde_json::from_str::<OnePass>(text) {
                return Incoming::Single(call);
            }
        }
    }
    decode_the_long_way(line)
}

/// Decodes any line: raw text first, then what it holds.
pub(super) fn decode_the_long_way(line: &[u8]) -> Incoming {
    // Borrowed raw text: the whole line is checked as JSON here (nesting depth included),
    // but nothing is converted until the envelope has been looked at.
    let raw: &RawValue = match serde_json::from_slice(line) {
        Ok(raw) => raw,
        Err(err) => return Incoming::Single(Call::refused(None, RpcError::parse_error(&err))),
    };
    if !raw.get().starts_with('[') {
        return Incoming::Single(decode_call(raw));
    }
    let elements: Vec<&RawValue> = match serde_json::from_str(raw.get()) {
        Ok(elements) => elements,
        Err(err) => return Incoming::Single(Call::refused(None, RpcError::parse_error(&err))),
    };
    if elements.is_empty() {
        return Incoming::Single(Call::refused(
            None,
            RpcError::invalid_request("an empty batch holds no request"),
        ));
    }
    if elements.len() > MAX_BATCH {
        return Incoming::Single(Call::refused(
            None,
            RpcError::invalid_request(&format!(
                "a batch holds at most {MAX_BATCH} requests, this one {}",
                elements.len()
            )),
        ));
    }
    Incoming::Batch(elements.into_iter().map(decode_call).collect())
}

/// Decodes a line that must hold one request object (a batch is refused): the id to answer
/// with (`None` for a notification) and the request or the error to send back.
pub fn decode_request(line: &[u8]) -> (Option<Id>, Result<Request, RpcError>) {
    match decode(line) {
        Incoming::Single(call) => (call.id, call.request),
        Incoming::Batch(_) => (
            Some(Id::null()),
            Err(RpcError::invalid_request(
                "a batch where one request was expected",
            )),
        ),
    }
}

/// A request object read in one pass, as clients write it: the envelope's members, and
/// the params read straight into the method's type when `method` comes before them,
/// without their text being looked at twice. Anything unusual fails this reading (an
/// escaped name, a member named twice, an envelope member that is not right, params the
/// method's type refuses), and the line is then read the long way, which says what is
/// wrong: so whatever this reading gives, the long way gives too.
pub(super) struct OnePass(pub(super) Call);

/// What [`OnePass`] read of `params`.
enum ParamsRead<'a> {
    /// The request, read in the pass; `None` for an unknown method.
    Request(Option<Request>),
    /// The raw text, when `params` came before `method`.
    Raw(&'a RawValue),
}

impl<'de> Deserialize<'de> for OnePass {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<OnePass, D::Error> {
        deserializer.deserialize_map(OnePassVisitor)
    }
}

struct OnePassVisitor;

impl<'de> Visitor<'de> for OnePassVisitor {
    type Value = OnePass;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OnePass, A::Error> {
        let mut jsonrpc = false;
        let mut id: Option<Id> = None;
        let mut method: Option<&'de str> = None;
        let mut params: Option<ParamsRead<'de>> = None;
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "jsonrpc" if !jsonrpc => {
                    if map.next_value::<&'de str>()? != JSONRPC {
                        return Err(A::Error::custom("not JSON-RPC 2.0"));
                    }
                    jsonrpc = true;
                }
                "id" if id.is_none() => {
                    let raw = map.next_value::<&'de RawValue>()?;
                    id = Some(Id::from_member(raw).ok_or_else(|| A::Error::custom("no id"))?);
                }
                "method" if method.is_none() => method = Some(map.next_value()?),
                "params" if params.is_none() => {
                    params = Some(match method {
                        Some(method) => ParamsRead::Request(map.next_value_seed(ParamsOf(method))?),
                        None => ParamsRead::Raw(map.next_value()?),
                    })
                }
                "jsonrpc" | "id" | "method" | "params" => {
                    return Err(A::Error::custom("a member named twice"))
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let (true, Some(method)) = (jsonrpc, method) else {
            return Err(A::Error::custom("no jsonrpc or method"));
        };
        let request = match params {
            Some(ParamsRead::Request(Some(request))) => Ok(request),
            Some(ParamsRead::Raw(raw)) => Request::parse(method, Some(raw)),
            // No params, or an unknown method's (its error, whatever they hold).
            Some(ParamsRead::Request(None)) | None => Request::parse(method, None),
        };
        Ok(OnePass(Call { id, request }))
    }
}

/// Reads `params` as the params of method `.0`.
struct ParamsOf<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for ParamsOf<'_> {
    type Value = Option<Request>;

    fn deserialize<D: Deserializer<'de>>(self, params: D) -> Result<Option<Request>, D::Error> {
        Request::read(self.0, params)
    }
}

/// The members of a request object the envelope reads, each as its raw text (`"id": null`
/// reads as `Some`, an absent id as `None`); any other member is ignored.
#[derive(Deserialize)]
struct Members<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
}

/// A member that is there, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

impl<'a> Members<'a> {
    /// Reads a request object's members, or `None` when it is no object.
    fn of(raw: &'a RawValue) -> Option<Members<'a>> {
        // Straight into the struct, the usual case. (Only an object: the struct would also
        // read an array, by position.)
        if raw.get().starts_with('{') {
            if let Ok(members) = serde_json::from_str::<Members>(raw.get()) {
                return Some(members);
            }
        }
        // A member named twice (the struct refuses it; the last one counts, as JSON parsers
        // commonly read it), or no object at all.
        let mut all = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()).ok()?;
        Some(Members {
            jsonrpc: all.remove("jsonrpc"),
            id: all.remove("id"),
            method: all.remove("method"),
            params: all.remove("params"),
        })
    }

    /// The call these members make.
    fn call(self) -> Call {
        let id = match self.id {
            None => None,
            Some(raw_id) => match Id::from_member(raw_id) {
                Some(id) => Some(id),
                None => {
                    return Call::refused(
                        None,
                        RpcError::invalid_request("\"id\" must be a number, a string or null"),
                    )
                }
            },
        };
        if self.jsonrpc.and_then(string).as_deref() != Some(JSONRPC) {
            return Call::refused(id, RpcError::invalid_request("\"jsonrpc\" must be \"2.0\""));
        }
        let Some(method) = self.method.and_then(string) else {
            return Call::refused(id, RpcError::invalid_request("\"method\" must be a string"));
        };
        Call {
            id,
            request: Request::parse(&method, self.params),
        }
    }
}

/// A JSON string's text, borrowed when it has no escapes; `None` for any other value.
fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<&str>(raw.get())
        .map(Cow::Borrowed)
        .or_else(|_| serde_json::from_str::<String>(raw.get()).map(Cow::Owned))
        .ok()
}

/// Decodes one request object.
fn decode_call(raw: &RawValue) -> Call {
    match Members::of(raw) {
        Some(members) => members.call(),
        None => Call::refused(
            None,
            RpcError::invalid_request("a request must be a JSON object"),
        ),
    }
}
