//! The wire protocol (DESIGN §5): JSON-RPC 2.0, one JSON object per line, at most
//! [`MAX_LINE`] bytes a line. Every method's params and result are typed here; the daemon
//! and the client both use these types, so they cannot disagree.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only protocol version spoken.
pub const JSONRPC: &str = "2.0";
/// The longest request line, newline excluded.
pub const MAX_LINE: usize = 64 * 1024;
/// The longest response line a client accepts: responses such as a large `user list`
/// outgrow the request limit.
pub const MAX_RESPONSE_LINE: usize = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Roles and statuses

/// A role in an organization. The order is the hierarchy: `Viewer < Readonly < Deployer <
/// Admin`, and each role holds every permission of those below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Role {
    Viewer,
    Readonly,
    Deployer,
    Admin,
}

impl Role {
    /// Highest first, as people read the hierarchy.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Deployer, Role::Readonly, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Readonly => "readonly",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }

    /// What the role may do, in the words of the documentation page.
    pub fn description(self) -> &'static str {
        match self {
            Role::Admin => {
                "Full access: manage users, configure SSO, change organization settings, deploy and manage all projects"
            }
            Role::Deployer => {
                "Deploy and manage projects and services; cannot manage users, SSO, or organization settings"
            }
            Role::Readonly => {
                "View projects and deployments; cannot see sensitive variable values or make changes"
            }
            Role::Viewer => "Read-only access with a narrower scope than readonly",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a role: roles are admin, deployer, readonly and viewer",
            self.0
        )
    }
}

impl std::error::Error for UnknownRole {}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.chars().take(40).collect()))
    }
}

impl TryFrom<String> for Role {
    type Error = UnknownRole;

    fn try_from(s: String) -> Result<Role, UnknownRole> {
        s.parse()
    }
}

/// A membership's status as `user list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// The account has been activated.
    Active,
    /// Waiting for activation.
    Invited,
    /// The invitation lapsed; the row stays until removed or invited again.
    Expired,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Active => "active",
            MemberStatus::Invited => "invited",
            MemberStatus::Expired => "expired",
        }
    }
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An account's status: `pending` until its first activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Pending,
    Active,
}

// ---------------------------------------------------------------------------------------
// Requests

/// Params of a method that takes none: absent, `null` and `{}` are all accepted.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Params naming the organization to act in; without `org` the daemon resolves the
/// caller's current organization (DESIGN §2).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgCreateParams {
    pub name: String,
    /// E-mail of the organization's first admin.
    pub admin: String,
    /// The only Unix user who may redeem the first admin's activation URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_unix_user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgUseParams {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserInviteParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    pub email: String,
    pub role: Role,
    /// Lifetime of the activation URL in humantime form (`2h`, `7days`); the daemon's
    /// `--invitation-ttl` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
    /// Issue a new token for a pending invitation, revoking the old one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resend: bool,
    /// The only Unix user who may redeem the activation URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRemoveParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleGrantParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    pub email: String,
    pub role: Role,
}

/// Params naming one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountParams {
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountBindParams {
    pub email: String,
    /// The Unix user to bind the account to.
    pub unix_user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateParams {
    /// The token, or the whole activation URL.
    pub token: String,
}

/// A request, parsed once; the daemon dispatches on it with one small function per arm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Ping,
    Whoami,
    OrgCreate(OrgCreateParams),
    OrgList,
    OrgUse(OrgUseParams),
    UserInvite(UserInviteParams),
    UserList(OrgParams),
    UserRemove(UserRemoveParams),
    RoleGrant(RoleGrantParams),
    RoleList,
    AccountActivate(ActivateParams),
    AccountList,
    AccountShow(AccountParams),
    AccountUnbind(AccountParams),
    AccountBind(AccountBindParams),
}

/// Every method name, for error hints and documentation.
pub const METHODS: [&str; 15] = [
    "ping",
    "whoami",
    "org.create",
    "org.list",
    "org.use",
    "user.invite",
    "user.list",
    "user.remove",
    "role.grant",
    "role.list",
    "account.activate",
    "account.list",
    "account.show",
    "account.unbind",
    "account.bind",
];

impl Request {
    pub fn method(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Whoami => "whoami",
            Request::OrgCreate(_) => "org.create",
            Request::OrgList => "org.list",
            Request::OrgUse(_) => "org.use",
            Request::UserInvite(_) => "user.invite",
            Request::UserList(_) => "user.list",
            Request::UserRemove(_) => "user.remove",
            Request::RoleGrant(_) => "role.grant",
            Request::RoleList => "role.list",
            Request::AccountActivate(_) => "account.activate",
            Request::AccountList => "account.list",
            Request::AccountShow(_) => "account.show",
            Request::AccountUnbind(_) => "account.unbind",
            Request::AccountBind(_) => "account.bind",
        }
    }

    /// The organization the request names, if it names one.
    pub fn org(&self) -> Option<&str> {
        match self {
            Request::OrgCreate(p) => Some(&p.name),
            Request::OrgUse(p) => Some(&p.name),
            Request::UserInvite(p) => p.org.as_deref(),
            Request::UserList(p) => p.org.as_deref(),
            Request::UserRemove(p) => p.org.as_deref(),
            Request::RoleGrant(p) => p.org.as_deref(),
            Request::Ping
            | Request::Whoami
            | Request::OrgList
            | Request::RoleList
            | Request::AccountActivate(_)
            | Request::AccountList
            | Request::AccountShow(_)
            | Request::AccountUnbind(_)
            | Request::AccountBind(_) => None,
        }
    }

    /// Builds the request for `method` from its params, with a `bad_request` or
    /// `unknown_method` error a client can act on.
    pub fn parse(method: &str, params: Option<Value>) -> Result<Request, RpcError> {
        fn typed<T: DeserializeOwned>(method: &str, params: Option<Value>) -> Result<T, RpcError> {
            let value = match params {
                None | Some(Value::Null) => Value::Object(Default::default()),
                Some(value @ Value::Object(_)) => value,
                Some(_) => {
                    return Err(RpcError::invalid_params(
                        method,
                        "params must be an object".to_owned(),
                    ))
                }
            };
            serde_json::from_value(value)
                .map_err(|err| RpcError::invalid_params(method, err.to_string()))
        }
        Ok(match method {
            "ping" => typed::<NoParams>(method, params).map(|_| Request::Ping)?,
            "whoami" => typed::<NoParams>(method, params).map(|_| Request::Whoami)?,
            "org.create" => Request::OrgCreate(typed(method, params)?),
            "org.list" => typed::<NoParams>(method, params).map(|_| Request::OrgList)?,
            "org.use" => Request::OrgUse(typed(method, params)?),
            "user.invite" => Request::UserInvite(typed(method, params)?),
            "user.list" => Request::UserList(typed(method, params)?),
            "user.remove" => Request::UserRemove(typed(method, params)?),
            "role.grant" => Request::RoleGrant(typed(method, params)?),
            "role.list" => typed::<NoParams>(method, params).map(|_| Request::RoleList)?,
            "account.activate" => Request::AccountActivate(typed(method, params)?),
            "account.list" => typed::<NoParams>(method, params).map(|_| Request::AccountList)?,
            "account.show" => Request::AccountShow(typed(method, params)?),
            "account.unbind" => Request::AccountUnbind(typed(method, params)?),
            "account.bind" => Request::AccountBind(typed(method, params)?),
            _ => return Err(RpcError::unknown_method(method)),
        })
    }

    /// The params object as sent on the wire.
    pub fn params(&self) -> Value {
        let value = match self {
            Request::Ping
            | Request::Whoami
            | Request::OrgList
            | Request::RoleList
            | Request::AccountList => return Value::Object(Default::default()),
            Request::OrgCreate(p) => serde_json::to_value(p),
            Request::OrgUse(p) => serde_json::to_value(p),
            Request::UserInvite(p) => serde_json::to_value(p),
            Request::UserList(p) => serde_json::to_value(p),
            Request::UserRemove(p) => serde_json::to_value(p),
            Request::RoleGrant(p) => serde_json::to_value(p),
            Request::AccountActivate(p) => serde_json::to_value(p),
            Request::AccountShow(p) | Request::AccountUnbind(p) => serde_json::to_value(p),
            Request::AccountBind(p) => serde_json::to_value(p),
        };
        // Plain structs of strings always serialize.
        value.unwrap_or_default()
    }
}

/// The envelope of a request line, before its method is looked at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub jsonrpc: String,
    pub id: Value,
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

impl RequestEnvelope {
    pub fn new(id: u64, request: &Request) -> RequestEnvelope {
        RequestEnvelope {
            jsonrpc: JSONRPC.to_owned(),
            id: Value::from(id),
            method: request.method().to_owned(),
            params: Some(request.params()),
        }
    }
}

/// Decodes one request line: the `id` to answer with (`null` when it cannot be read) and
/// the request or the error to send back.
pub fn decode_request(line: &[u8]) -> (Value, Result<Request, RpcError>) {
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(err) => return (Value::Null, Err(RpcError::parse_error(&err))),
    };
    let Value::Object(mut object) = value else {
        return (
            Value::Null,
            Err(RpcError::invalid_request("a request must be a JSON object")),
        );
    };
    let id = match object.remove("id") {
        Some(id @ (Value::Number(_) | Value::String(_))) => id,
        Some(Value::Null) | None => {
            return (
                Value::Null,
                Err(RpcError::invalid_request(
                    "a request needs an \"id\" (a number or a string)",
                )),
            )
        }
        Some(_) => {
            return (
                Value::Null,
                Err(RpcError::invalid_request(
                    "\"id\" must be a number or a string",
                )),
            )
        }
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some(JSONRPC) {
        return (
            id,
            Err(RpcError::invalid_request("\"jsonrpc\" must be \"2.0\"")),
        );
    }
    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        _ => {
            return (
                id,
                Err(RpcError::invalid_request("\"method\" must be a string")),
            )
        }
    };
    let params = object.remove("params");
    let request = Request::parse(&method, params);
    (id, request)
}

// ---------------------------------------------------------------------------------------
// Results

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The daemon's version.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub email: String,
    pub status: AccountStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgMembership {
    pub org: String,
    pub role: Role,
    pub status: MemberStatus,
    /// In `account.show`: false for an active membership pinned to a uid that no longer
    /// holds the account, through which nobody acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usable: Option<bool>,
}

/// Who the daemon thinks the caller is, from the socket's peer credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// uid 0 or the daemon's own uid: admin power in every organization.
    pub superuser: bool,
    /// The caller's Unix user, as NSS names its uid.
    #[serde(default)]
    pub unix_user: Option<String>,
    /// Why the uid's binding no longer holds (its user was deleted or the uid reused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_problem: Option<String>,
    pub account: Option<AccountInfo>,
    /// The organization commands act in when `--org` is not given, if one can be chosen.
    pub current_org: Option<String>,
    pub memberships: Vec<OrgMembership>,
}

/// The outcome of an invitation (`user.invite`, and `org.create`'s first admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub org: String,
    pub email: String,
    pub role: Role,
    /// `invited` with a URL, or `active` when the account already existed.
    pub status: MemberStatus,
    pub activation_url: Option<String>,
    /// RFC 3339, whole seconds, UTC.
    pub expires_at: Option<String>,
    /// The Unix user who already holds the account, when it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    /// The only Unix user who may redeem the activation URL: the account's holder, whose
    /// consent it asks for, or the user the inviter named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeemable_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgCreated {
    pub org: String,
    pub admin: Invitation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgEntry {
    pub name: String,
    /// The caller's role there; `None` for a superuser who is not a member.
    pub role: Option<Role>,
    pub current: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgList {
    pub orgs: Vec<OrgEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgUsed {
    pub org: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub email: String,
    pub role: Role,
    pub status: MemberStatus,
    /// When the invitation expires (or expired); `None` for active members.
    pub expires_at: Option<String>,
    /// The Unix user an active member acts as.
    #[serde(default)]
    pub unix_user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberList {
    pub org: String,
    /// Ordered by e-mail.
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub org: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granted {
    pub org: String,
    pub email: String,
    pub role: Role,
    pub previous_role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleInfo {
    pub name: Role,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleList {
    /// Highest first.
    pub roles: Vec<RoleInfo>,
}

/// An account, its binding and its memberships (`account.show`, `account.list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDetail {
    pub email: String,
    pub status: AccountStatus,
    /// The bound uid, and the user name it was bound as.
    pub uid: Option<u32>,
    pub unix_user: Option<String>,
    /// Whom the bound uid belongs to now (NSS); a name other than `unix_user`, or `None`,
    /// means the binding no longer holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid_now_belongs_to: Option<Option<String>>,
    /// RFC 3339, whole seconds, UTC.
    pub bound_at: Option<String>,
    /// Who made the binding: "a superuser", "organization acme", ….
    pub bound_through: Option<String>,
    pub memberships: Vec<OrgMembership>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountList {
    /// Ordered by e-mail.
    pub accounts: Vec<AccountDetail>,
}

/// A binding made or undone by a superuser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBinding {
    pub email: String,
    pub uid: u32,
    pub unix_user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activated {
    pub org: String,
    pub email: String,
    pub role: Role,
}

// ---------------------------------------------------------------------------------------
// Responses and errors

/// A response line: exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub jsonrpc: String,
    pub id: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    pub fn ok(id: Value, result: Value) -> Response {
        Response {
            jsonrpc: JSONRPC.to_owned(),
            id,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: Value, error: RpcError) -> Response {
        Response {
            jsonrpc: JSONRPC.to_owned(),
            id,
            result: None,
            error: Some(error),
        }
    }
}

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
    /// No organization was named and none could be chosen.
    OrgRequired,
    FrameTooLong,
    Busy,
    /// The daemon cannot complete the change now (for example its disk is full).
    Unavailable,
    Internal,
    #[serde(other)]
    Other,
}

impl ErrorKind {
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
            ErrorKind::OrgRequired => "org_required",
            ErrorKind::FrameTooLong => "frame_too_long",
            ErrorKind::Busy => "busy",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
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

/// Pulls the token out of an activation URL (`…/activate?token=…`), or returns the input
/// when it is a bare token.
pub fn token_from_url_or_token(input: &str) -> &str {
    let input = input.trim();
    match input.split_once("token=") {
        Some((_, rest)) => rest.split(['&', '#']).next().unwrap_or(rest),
        None => input,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn roles_are_ordered_by_hierarchy() {
        assert!(Role::Admin > Role::Deployer);
        assert!(Role::Deployer > Role::Readonly);
        assert!(Role::Readonly > Role::Viewer);
    }

    #[test]
    fn unknown_role_names_the_roles() {
        let err = "owner".parse::<Role>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"owner\" is not a role: roles are admin, deployer, readonly and viewer"
        );
    }

    #[test]
    fn decodes_an_invite() {
        let line = br#"{"jsonrpc":"2.0","id":1,"method":"user.invite","params":{"org":"acme","email":"a@example.com","role":"deployer"}}"#;
        let (id, request) = decode_request(line);
        assert_eq!(id, json!(1));
        assert_eq!(
            request.unwrap(),
            Request::UserInvite(UserInviteParams {
                org: Some("acme".into()),
                email: "a@example.com".into(),
                role: Role::Deployer,
                expires_in: None,
                resend: false,
                unix_user: None,
            })
        );
    }

    #[test]
    fn bad_lines_get_bad_request_or_unknown_method() {
        let cases: [(&[u8], ErrorKind, i64); 6] = [
            (b"{not json", ErrorKind::BadRequest, -32700),
            (b"[1,2]", ErrorKind::BadRequest, -32600),
            (br#"{"jsonrpc":"2.0","method":"ping"}"#, ErrorKind::BadRequest, -32600),
            (br#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#, ErrorKind::UnknownMethod, -32601),
            (br#"{"jsonrpc":"2.0","id":1,"method":"user.remove","params":{}}"#, ErrorKind::BadRequest, -32602),
            (br#"{"jsonrpc":"2.0","id":1,"method":"role.grant","params":{"email":"a@b.c","role":7}}"#, ErrorKind::BadRequest, -32602),
        ];
        for (line, kind, code) in cases {
            let (_, result) = decode_request(line);
            let err = result.unwrap_err();
            assert_eq!(
                (err.kind(), err.code),
                (kind, code),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn a_bad_role_is_a_bad_request_naming_the_roles() {
        let (_, result) = decode_request(
            br#"{"jsonrpc":"2.0","id":"x","method":"role.grant","params":{"email":"a@b.c","role":"owner"}}"#,
        );
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRequest);
        assert!(
            err.message
                .contains("roles are admin, deployer, readonly and viewer"),
            "{}",
            err.message
        );
    }

    #[test]
    fn error_serializes_as_design_shows() {
        let err = RpcError::new(ErrorKind::LastAdmin, "cannot remove the last admin of acme");
        let line = serde_json::to_string(&Response::err(json!(2), err)).unwrap();
        assert_eq!(
            line,
            r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32003,"message":"cannot remove the last admin of acme","data":{"kind":"last_admin"}}}"#
        );
    }

    #[test]
    fn unknown_kinds_read_as_other() {
        let data: ErrorData = serde_json::from_value(json!({"kind": "from_the_future"})).unwrap();
        assert_eq!(data.kind, ErrorKind::Other);
    }

    #[test]
    fn token_comes_out_of_a_url() {
        assert_eq!(
            token_from_url_or_token("https://h/activate?token=abc_-1"),
            "abc_-1"
        );
        assert_eq!(
            token_from_url_or_token("https://h/activate?token=abc&x=1"),
            "abc"
        );
        assert_eq!(token_from_url_or_token(" abc "), "abc");
    }
}
