//! What a request line gets back: its [`Reply`], the line the daemon writes, holding one
//! [`Response`] or a batch's array of them. A `Response` here is the wire's JSON-RPC
//! response as the daemon writes it: its result already encoded by the request's
//! [`crate::dispatch::Answer`], and what the connection may turn into.

use compartmentctl::wire::{AuthzAnswer, Decision, Id, RpcError, JSONRPC};

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
        if let Reply::One(
            response @ Response {
                id,
                result: Some(EncodedResult::Authz(answer)),
                error: None,
                ..
            },
        ) = self
        {
            return authz_line(id, answer, response.result_len());
        }
        let results = match self {
            Reply::One(response) => response.result_len(),
            Reply::Batch(responses) => responses.iter().map(Response::result_len).sum(),
        };
        // The envelopes around the results are small next to a page of members.
        encode_into(Vec::with_capacity(results + 256), self)
    }
}

/// The line of `authz.check`'s answer, written straight from its decisions: the bytes
/// serde_json writes for the same [`Response`], with no serializer between. (The decisions
/// are the read path's hot answer; serde_json escapes every string byte by byte, most of
/// what writing a decision cost.) `result_len` sizes the line, as [`Response::result_len`]
/// says.
fn authz_line(id: &Id, answer: &AuthzAnswer, result_len: usize) -> Vec<u8> {
    let mut line = Vec::with_capacity(64 + result_len);
    line.extend_from_slice(b"{\"jsonrpc\":");
    push_str(&mut line, JSONRPC);
    line.extend_from_slice(b",\"id\":");
    line.extend_from_slice(id.as_json().as_bytes());
    line.extend_from_slice(b",\"result\":");
    match answer {
        AuthzAnswer::One(decision) => push_decision(&mut line, decision),
        AuthzAnswer::Many { decisions } => {
            line.extend_from_slice(b"{\"decisions\":[");
            for (i, decision) in decisions.iter().enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                push_decision(&mut line, decision);
            }
            line.extend_from_slice(b"]}");
        }
    }
    line.extend_from_slice(b"}\n");
    line
}

/// A decision's object, its members in their declared order, as serde derives it.
fn push_decision(out: &mut Vec<u8>, decision: &Decision) {
    out.extend_from_slice(if decision.allowed {
        b"{\"allowed\":true,\"email\":"
    } else {
        b"{\"allowed\":false,\"email\":"
    });
    push_option(out, decision.email.as_deref());
    out.extend_from_slice(b",\"message\":");
    push_str(out, &decision.message);
    out.extend_from_slice(b",\"org\":");
    push_option(out, decision.org.as_deref());
    out.extend_from_slice(b",\"permission\":");
    push_str(out, decision.permission.key());
    out.extend_from_slice(b",\"reason\":");
    push_str(out, decision.reason.as_str());
    out.extend_from_slice(b",\"role\":");
    push_option(out, decision.role.map(|role| role.as_str()));
    out.extend_from_slice(b",\"uid\":");
    match decision.uid {
        Some(uid) => out.extend_from_slice(itoa::Buffer::new().format(uid).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"user\":");
    push_option(out, decision.user.as_deref());
    out.push(b'}');
}

fn push_option(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => push_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// `text` as a JSON string. One with nothing to escape (no quote, backslash or control
/// character: the daemon's sentences and names) is copied whole, found so by a scan
/// without a branch per byte; any other is left to serde_json. (A scan of eight bytes at a
/// time was tried: callgrind counted the same instructions, which go to copying.)
fn push_str(out: &mut Vec<u8>, text: &str) {
    let plain = text.bytes().fold(true, |plain, byte| {
        plain & (byte >= 0x20) & (byte != b'"') & (byte != b'\\')
    });
    if plain {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, text).is_err() {
        // Writing into a vector cannot fail; should it, the string is still a string.
        out.extend_from_slice(b"\"\"");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use compartmentctl::wire::{Permission, Reason, Role};
    use proptest::prelude::*;

    fn id(text: &str) -> Id {
        serde_json::from_str(text).unwrap()
    }

    /// The line serde_json writes for the same response.
    fn by_serde(id: &Id, answer: &AuthzAnswer) -> Vec<u8> {
        let response = Response::ok(id.clone(), EncodedResult::Authz(answer.clone()), None);
        encode_into(Vec::new(), &Reply::One(response))
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z@. ()-]{0,40}",
            any::<String>(),
            "[\"\\\\\u{0}-\u{1f}\u{7f}é€😀a]{0,12}",
        ]
    }

    prop_compose! {
        fn decision()(
            allowed in any::<bool>(),
            email in proptest::option::of(text()),
            message in text(),
            org in proptest::option::of(text()),
            permission in proptest::sample::select(Permission::ALL.to_vec()),
            reason in proptest::sample::select(vec![Reason::Superuser, Reason::Blocked, Reason::RoleTooLow, Reason::Other]),
            role in proptest::option::of(proptest::sample::select(Role::ALL.to_vec())),
            uid in proptest::option::of(any::<u32>()),
            user in proptest::option::of(text()),
        ) -> Decision {
            Decision { allowed, email, message, org, permission, reason, role, uid, user }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 1024,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Byte for byte what serde_json writes, one decision or many, whatever the id
        /// and the strings hold.
        #[test]
        fn an_authz_line_is_what_serde_writes(
            one in decision(),
            many in proptest::collection::vec(decision(), 0..4),
            id_text in prop_oneof![Just("1".to_owned()), Just("null".to_owned()), Just("\"a\\\"b\"".to_owned()), Just("1e400".to_owned()), (0u64..).prop_map(|n| n.to_string())],
        ) {
            let id = id(&id_text);
            let one = AuthzAnswer::One(one);
            prop_assert_eq!(authz_line(&id, &one, 0), by_serde(&id, &one));
            let many = AuthzAnswer::Many { decisions: many };
            prop_assert_eq!(authz_line(&id, &many, 0), by_serde(&id, &many));
        }
    }

    #[test]
    fn a_reply_with_a_decision_is_written_straight() {
        let decision = Decision {
            allowed: false,
            email: Some("dev@example.com".into()),
            message: "dev is blocked in acme: \"stolen\"\n".into(),
            org: Some("acme".into()),
            permission: Permission::ALL[0],
            reason: Reason::Blocked,
            role: Some(Role::Deployer),
            uid: Some(1002),
            user: None,
        };
        let answer = AuthzAnswer::One(decision);
        let reply = Reply::One(Response::ok(
            id("7"),
            EncodedResult::Authz(answer.clone()),
            None,
        ));
        assert_eq!(reply.line(), by_serde(&id("7"), &answer));
        assert!(String::from_utf8(reply.line())
            .unwrap()
            .contains(r#""message":"dev is blocked in acme: \"stolen\"\n""#));
    }
}
