//! Errors on the wire: the stable kinds (`data.kind`), their JSON-RPC codes, and the
//! error object every refusal carries.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{MAX_LINE, METHODS};

/// The stable, machine-readable reason of an error (`data.kind`). New kinds may appear;
/// a client reads an unknown one as [`ErrorKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Malformed JSON, a bad envelope, missing or wrongly typed params, invalid values.
    BadRequest,
    UnknownMethod,
    /// The caller's uid is bound to no account.
    Unauthenticated,
    Forbidden,
    NotFound,
    AlreadyExists,
    AlreadyMember,
    AlreadyInvited,
    LastAdmin,
    RoleAboveOwn,
    InvalidToken,
    TokenExpired,
    TokenUsed,
    /// The thing to delete still holds what only `force` removes with it.
    NotEmpty,
    /// The caller is blocked in the organization; the message carries the reason.
    Blocked,
    /// No organization was named and none could be chosen.
    OrgRequired,
    FrameTooLong,
    Busy,
    /// The daemon cannot complete the change now (for example its disk is full).
    Unavailable,
    Internal,
    /// Never sent by the daemon: the CLI could not reach it. `--output json` reports an
    /// unreachable daemon with this kind, so scripts read one error shape for every failure.
    Unreachable,
    #[serde(other)]
    Other,
}

impl ErrorKind {
    /// Every kind, in the order of the enum.
    pub const ALL: [ErrorKind; 22] = [
        ErrorKind::BadRequest,
        ErrorKind::UnknownMethod,
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::AlreadyMember,
        ErrorKind::AlreadyInvited,
        ErrorKind::LastAdmin,
        ErrorKind::RoleAboveOwn,
        ErrorKind::InvalidToken,
        ErrorKind::TokenExpired,
        ErrorKind::TokenUsed,
        ErrorKind::NotEmpty,
        ErrorKind::Blocked,
        ErrorKind::OrgRequired,
        ErrorKind::FrameTooLong,
        ErrorKind::Busy,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
        ErrorKind::Unreachable,
        ErrorKind::Other,
    ];

    /// What the kind means, in one sentence, as `rpc.discover` describes it (the error's
    /// own `message` says what happened).
    pub fn meaning(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "The request or its params are not right: malformed JSON, a bad envelope, a missing or wrongly typed param, an invalid value.",
            ErrorKind::UnknownMethod => "No method by that name.",
            ErrorKind::Unauthenticated => "The caller's uid is bound to no account, or its binding no longer holds.",
            ErrorKind::Forbidden => "The caller may not do this: a role too low, not a superuser or a service, access ended, or another Unix user's to do.",
            ErrorKind::NotFound => "No such organization, member, account, Unix user or group, or none the caller may see.",
            ErrorKind::AlreadyExists => "An organization or account by that name already exists.",
            ErrorKind::AlreadyMember => "The account is already a member of the organization.",
            ErrorKind::AlreadyInvited => "The address already has an invitation pending there.",
            ErrorKind::LastAdmin => "The change would leave the organization without an active admin.",
            ErrorKind::RoleAboveOwn => "The role given, or the member's role, is above the caller's own.",
            ErrorKind::InvalidToken => "No such activation token, or it was revoked.",
            ErrorKind::TokenExpired => "The activation token has expired.",
            ErrorKind::TokenUsed => "The activation token has already been redeemed.",
            ErrorKind::NotEmpty => "What is to be deleted still holds what only force removes with it.",
            ErrorKind::Blocked => "The caller is blocked in the organization; the message carries the reason.",
            ErrorKind::OrgRequired => "No organization was named and none could be chosen.",
            ErrorKind::FrameTooLong => "The request line is longer than the daemon reads; the connection is closed.",
            ErrorKind::Busy => "The daemon or the caller is over a limit, or the change conflicted with another; try again later.",
            ErrorKind::Unavailable => "The daemon cannot do it now: its store is out of reach, its disk nearly full, or it is stopping.",
            ErrorKind::Internal => "A failure inside the daemon, logged there.",
            ErrorKind::Unreachable => "The client could not reach the daemon (never sent by the daemon).",
            ErrorKind::Other => "A kind this client does not know yet.",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::UnknownMethod => "unknown_method",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::AlreadyMember => "already_member",
            ErrorKind::AlreadyInvited => "already_invited",
            ErrorKind::LastAdmin => "last_admin",
            ErrorKind::RoleAboveOwn => "role_above_own",
            ErrorKind::InvalidToken => "invalid_token",
            ErrorKind::TokenExpired => "token_expired",
            ErrorKind::TokenUsed => "token_used",
            ErrorKind::NotEmpty => "not_empty",
            ErrorKind::Blocked => "blocked",
            ErrorKind::OrgRequired => "org_required",
            ErrorKind::FrameTooLong => "frame_too_long",
            ErrorKind::Busy => "busy",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Other => "other",
        }
    }

    /// The JSON-RPC `code`: the standard codes where JSON-RPC has one, else one per kind
    /// in the server range.
    pub fn code(self) -> i64 {
        match self {
            ErrorKind::BadRequest => -32602,
            ErrorKind::UnknownMethod => -32601,
            ErrorKind::Internal => -32603,
            ErrorKind::Unauthenticated => -32001,
            ErrorKind::Forbidden => -32002,
            ErrorKind::LastAdmin => -32003,
            ErrorKind::RoleAboveOwn => -32004,
            ErrorKind::NotFound => -32005,
            ErrorKind::AlreadyExists => -32006,
            ErrorKind::AlreadyMember => -32007,
            ErrorKind::AlreadyInvited => -32008,
            ErrorKind::InvalidToken => -32009,
            ErrorKind::TokenExpired => -32010,
            ErrorKind::TokenUsed => -32011,
            ErrorKind::OrgRequired => -32012,
            ErrorKind::FrameTooLong => -32013,
            ErrorKind::Busy => -32014,
            ErrorKind::Unavailable => -32015,
            ErrorKind::Unreachable => -32016,
            ErrorKind::NotEmpty => -32017,
            ErrorKind::Blocked => -32018,
            ErrorKind::Other => -32000,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorData {
    pub kind: ErrorKind,
    /// What to do about it, when there is something to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// A JSON-RPC error object: one human sentence in `message`, the stable kind and an
/// optional hint in `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: ErrorData,
}

impl RpcError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> RpcError {
        RpcError {
            code: kind.code(),
            message: message.into(),
            data: ErrorData { kind, hint: None },
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> RpcError {
        self.data.hint = Some(hint.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.data.kind
    }

    pub fn hint(&self) -> Option<&str> {
        self.data.hint.as_deref()
    }

    pub fn parse_error(err: &serde_json::Error) -> RpcError {
        let mut error = RpcError::new(
            ErrorKind::BadRequest,
            format!("the request is not valid JSON: {err}"),
        )
        .with_hint("send one JSON-RPC 2.0 object per line");
        error.code = -32700;
        error
    }

    pub fn invalid_request(message: &str) -> RpcError {
        let mut error = RpcError::new(ErrorKind::BadRequest, format!("invalid request: {message}"))
            .with_hint(r#"a request looks like {"jsonrpc":"2.0","id":1,"method":"whoami"}"#);
        error.code = -32600;
        error
    }

    pub fn invalid_params(method: &str, message: String) -> RpcError {
        RpcError::new(
            ErrorKind::BadRequest,
            format!("invalid params for {method}: {message}"),
        )
    }

    pub fn unknown_method(method: &str) -> RpcError {
        let shown: String = method.chars().take(64).collect();
        RpcError::new(
            ErrorKind::UnknownMethod,
            format!("unknown method {shown:?}"),
        )
        .with_hint(format!("methods are {}", METHODS.join(", ")))
    }

    pub fn frame_too_long() -> RpcError {
        RpcError::new(
            ErrorKind::FrameTooLong,
            format!("request line longer than {MAX_LINE} bytes; closing the connection"),
        )
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RpcError {}
