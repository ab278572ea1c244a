//! The wire protocol (DESIGN §5): JSON-RPC 2.0, one JSON value per line, at most
//! [`MAX_LINE`] bytes a line. Every method is declared once, below, with its params and
//! result types; the daemon and the client both use these types, so they cannot disagree.
//!
//! # Layout
//!
//! - `envelope`: ids, requests, notifications, batches, responses; decoding a line. What a
//!   client reads back for a request is a [`Response`], holding the method's result.
//! - `error`: the stable error kinds and the error object.
//! - `method`: the [`Method`] trait and the macro that derives everything from the list
//!   below.
//! - `openrpc`: `rpc.discover`'s OpenRPC document, derived from the same list.
//! - one file per noun for params and results: `meta` (`ping`), `org`, `user`, `role`
//!   (with [`Role`] itself), `account` (with `whoami`), `authz` (`authz.check`), `events`
//!   (`events.subscribe` and the feed's notifications), `admin` (`admin.status`,
//!   `admin.backup` and its notifications); `status`
//!   for statuses; `permission` for the permission keys and DESIGN §3's table.
//!
//! # Adding a method
//!
//! Declare it in the `declare_methods!` list below: `read`, `routine` (a read logged at
//! debug when it succeeds) or `write`; `needs` the permission its rule requires (or
//! `none`); the `shapes` of its params (their member names, each form's; `[]` without
//! params); the `errors` its rule may answer with (beyond those every method may). Its
//! doc comment's first paragraph, one sentence, is its summary in `rpc.discover`. Its
//! params and result types live in its noun's file, the params implementing [`Params`].
//! Implement the daemon's `Serve` for its marker type `methods::Name`
//! (daemon/src/dispatch.rs) and the CLI's `Render` (ctl/src/cli/render.rs). Nothing else
//! lists methods: a missing handler, renderer, permission or shape does not compile, and
//! shapes that are not the params' forms fail a test. CONTRIBUTING.md walks through it.

mod account;
mod admin;
mod audit;
mod authz;
mod envelope;
mod error;
mod events;
mod meta;
pub(crate) mod method;
pub mod openrpc;
mod org;
mod permission;
mod role;
mod status;
mod user;

pub use account::*;
pub use admin::*;
pub use audit::*;
pub use authz::*;
pub use envelope::*;
pub use error::*;
pub use events::*;
pub use meta::*;
pub use method::{
    errors_of, Access, Declaration, Gated, Handle, Kind, Method, Params, Reads, Visit, Writes,
};
pub use org::*;
pub use permission::*;
pub use role::*;
pub use status::*;
pub use user::*;

use method::declare_methods;

/// Reads a value that is written as its name (a role, a permission key, a kind of event)
/// through its own `FromStr`, borrowed where the format lends it, so that a wrong name gets
/// the type's own sentence; `expecting` says what was wanted.
pub(crate) fn deserialize_by_name<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    struct ByName<T>(std::marker::PhantomData<T>, &'static str);

    impl<T: std::str::FromStr> serde::de::Visitor<'_> for ByName<T>
    where
        T::Err: std::fmt::Display,
    {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.1)
        }

        fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<T, E> {
            name.parse().map_err(E::custom)
        }
    }

    deserializer.deserialize_str(ByName(std::marker::PhantomData, expecting))
}

/// The only protocol version spoken.
pub const JSONRPC: &str = "2.0";
/// The longest request line, newline excluded.
pub const MAX_LINE: usize = 64 * 1024;
/// The longest response line a client accepts: responses such as a large `user list`
/// outgrow the request limit.
pub const MAX_RESPONSE_LINE: usize = 16 * 1024 * 1024;

declare_methods! {
    /// Say whether the daemon is up, and its version.
    Ping = "ping" => Pong, routine, needs none, shapes [],
        errors [];
    /// Say who the daemon thinks the caller is.
    ///
    /// Open to everyone, bound or not: the caller's uid, account, memberships and what it
    /// may do in its current organization.
    Whoami = "whoami" => WhoAmI, routine, needs none, shapes [],
        errors [Unavailable];
    /// Create an organization and invite its first admin (superuser).
    OrgCreate(OrgCreateParams) = "org.create" => OrgCreated, write, needs none,
        shapes [["name", "admin", "admin_unix_user", "expires_in"]],
        errors [Unauthenticated, Forbidden, NotFound, AlreadyExists];
    /// List the caller's organizations.
    OrgList = "org.list" => OrgList, routine, needs none, shapes [],
        errors [Unauthenticated, Unavailable];
    /// Choose the caller's current organization.
    OrgUse(OrgUseParams) = "org.use" => OrgUsed, write, needs none, shapes [["name"]],
        errors [Unauthenticated, NotFound, Blocked, Forbidden];
    /// Delete an organization (superuser).
    ///
    /// Refused while it has members, unless forced.
    OrgDelete(OrgDeleteParams) = "org.delete" => OrgDeleted, write, needs none,
        shapes [["name", "force"]],
        errors [Unauthenticated, Forbidden, NotFound, NotEmpty];
    /// Rename an organization (superuser).
    ///
    /// Its members, invitations, feed and audit log follow.
    OrgRename(OrgRenameParams) = "org.rename" => OrgRenamed, write, needs none,
        shapes [["name", "new_name"]],
        errors [Unauthenticated, Forbidden, NotFound, AlreadyExists];
    /// Map a Unix group to a role in an organization (superuser).
    ///
    /// The group's users act there with that role, without an invitation.
    OrgMapGroup(OrgMapGroupParams) = "org.map_group" => GroupMapped, write, needs none,
        shapes [["name", "group", "role"]],
        errors [Unauthenticated, Forbidden, NotFound];
    /// End a Unix group's mapping (superuser).
    OrgUnmapGroup(OrgUnmapGroupParams) = "org.unmap_group" => GroupUnmapped, write,
        needs none, shapes [["name", "group"]],
        errors [Unauthenticated, Forbidden, NotFound];
    /// Invite someone with a role.
    UserInvite(UserInviteParams) = "user.invite" => Invitation, write,
        needs OrganizationUserInvite,
        shapes [["org", "email", "role", "expires_in", "resend", "unix_user", "access_until"]],
        errors [Unauthenticated, Forbidden, NotFound, OrgRequired, Blocked, RoleAboveOwn,
                AlreadyMember, AlreadyInvited];
    /// List one page of an organization's members, by e-mail, from an opaque cursor.
    UserList(UserListParams) = "user.list" => MemberList, read, needs OrganizationMemberList,
        shapes [["org", "limit", "after", "status"]],
        errors [Unauthenticated, Forbidden, NotFound, OrgRequired, Blocked, Unavailable];
    /// Remove a member or revoke an invitation.
    UserRemove(UserRemoveParams) = "user.remove" => Removed, write,
        needs OrganizationUserRemove, shapes [["org", "email"]],
        errors [Unauthenticated, Forbidden, NotFound, OrgRequired, Blocked, RoleAboveOwn,
                LastAdmin];
    /// Block a member, with a reason and perhaps an end.
    ///
    /// They act nowhere in the organization until unblocked.
    UserBlock(UserBlockParams) = "user.block" => UserBlocked, write,
        needs OrganizationUserBlock, shapes [["org", "email", "reason", "until"]],
        errors [Unauthenticated, Forbidden, NotFound, OrgRequired, Blocked, RoleAboveOwn,
                LastAdmin];
    /// Lift a member's block.
    UserUnblock(UserUnblockParams) = "user.unblock" => UserUnblocked, write,
        needs OrganizationUserBlock, shapes [["org", "email"]],
        errors [Unauthenticated, Forbidden, NotFound, OrgRequired, Blocked, RoleAboveOwn];
    /// Give a member a role, up to the caller's own, perhaps only until a time.
    RoleGrant(RoleGrantParams) = "role.grant" => Granted, write, needs OrganizationRoleGrant,
        shapes [["org", "email", "role", "until"]],
        errors [Unauthenticated, Forbidden, NotFound, OrgRequired, Blocked, RoleAboveOwn,
                LastAdmin];
    /// List the roles and what each may do.
    RoleList = "role.list" => RoleList, routine, needs none, shapes [],
        errors [];
    /// Show one role and its permissions.
    RoleShow(RoleShowParams) = "role.show" => RoleInfo, routine, needs none,
        shapes [["role"]],
        errors [];
    /// Redeem an activation token, binding the caller's uid to the account.
    AccountActivate(ActivateParams) = "account.activate" => Activated, write, needs none,
        shapes [["token"]],
        errors [Unauthenticated, Forbidden, InvalidToken, TokenExpired, TokenUsed];
    /// List every account with its binding (superuser).
    AccountList = "account.list" => AccountList, read, needs none, shapes [],
        errors [Forbidden, Unavailable];
    /// Show one account, its binding and memberships (superuser).
    AccountShow(AccountParams) = "account.show" => AccountDetail, read, needs none,
        shapes [["email"]],
        errors [Forbidden, NotFound, Unavailable];
    /// Free an account from its Unix user (superuser, break-glass).
    AccountUnbind(AccountParams) = "account.unbind" => AccountBinding, write, needs none,
        shapes [["email"]],
        errors [Forbidden, NotFound];
    /// Delete an account that is a member nowhere, unbinding its Unix user (superuser).
    ///
    /// With `force`, its memberships go with it.
    AccountDelete(AccountDeleteParams) = "account.delete" => AccountDeleted, write,
        needs none, shapes [["email", "force"]],
        errors [Forbidden, NotFound, NotEmpty, LastAdmin];
    /// Change an account's e-mail (superuser).
    ///
    /// Its binding, memberships and invitations follow.
    AccountRename(AccountRenameParams) = "account.rename" => AccountRenamed, write,
        needs none, shapes [["email", "new_email"]],
        errors [Forbidden, NotFound, AlreadyExists];
    /// Bind an account to a Unix user on a superuser's word.
    AccountBind(AccountBindParams) = "account.bind" => AccountBinding, write, needs none,
        shapes [["email", "unix_user", "carry_all"]],
        errors [Forbidden, NotFound];
    /// Decide whether a user may do something in an organization, by the rules at this
    /// instant.
    ///
    /// The caller asks about itself; services and superusers about anyone, named by one of
    /// `uid`, `user` and `email` (at most one). One check, or up to 1,000 as `checks`.
    AuthzCheck(AuthzCheckParams) = "authz.check" => AuthzAnswer, routine, needs none,
        shapes [["permission", "org", "uid", "user", "email"], ["checks"]],
        errors [Forbidden, OrgRequired, Unavailable];
    /// Turn the connection into a feed of membership changes.
    ///
    /// For superusers, services, and an organization's admins for their organization.
    /// After the answer, the connection carries only `event` notifications, and a last
    /// `events.closed` when the daemon ends the feed.
    EventsSubscribe(EventsSubscribeParams) = "events.subscribe" => Subscribed, read,
        needs OrganizationAuditRead, shapes [["org", "after"]],
        errors [Unauthenticated, Forbidden, NotFound, OrgRequired, Blocked, Busy,
                Unavailable];
    /// List one page of the audit log, oldest first, filtered.
    ///
    /// For superusers, and an organization's admins for their organization.
    AuditList(AuditListParams) = "audit.list" => AuditPage, read, needs OrganizationAuditRead,
        shapes [["org", "limit", "after", "from", "to", "event", "actor", "target_type",
                 "outcome"]],
        errors [Unauthenticated, Forbidden, NotFound, OrgRequired, Blocked, Unavailable];
    /// Check the audit log's chain from its first record, and against a checkpoint kept
    /// elsewhere (superuser).
    AuditVerify(AuditVerifyParams) = "audit.verify" => AuditVerified, read, needs none,
        shapes [["checkpoint"]],
        errors [Forbidden, Unavailable];
    /// Sign a checkpoint of the audit log's last record, to keep elsewhere (superuser).
    AuditCheckpoint = "audit.checkpoint" => AuditCheckpoint, write, needs none, shapes [],
        errors [Forbidden];
    /// Report the daemon's version, store, uptime, connections, writer, sweeper and feed
    /// (superuser).
    AdminStatus = "admin.status" => AdminStatus, read, needs none, shapes [],
        errors [Forbidden];
    /// Report the daemon's metrics in Prometheus' text format (superuser).
    ///
    /// The same text `--metrics-textfile` writes for node_exporter's textfile collector:
    /// requests by method and outcome with their latency, connections, the writer, the
    /// sweeper, the change feed and the store.
    AdminMetrics = "admin.metrics" => MetricsText, read, needs none, shapes [],
        errors [Forbidden];
    /// Send the whole store from one snapshot (superuser).
    ///
    /// The answer is the backup's header; then the connection carries only the records,
    /// a page at a time as `backup.records` notifications, and a last `backup.end` (or
    /// `backup.failed`).
    AdminBackup = "admin.backup" => BackupHeader, read, needs none, shapes [],
        errors [Forbidden, Unavailable];
    /// Describe this protocol as an OpenRPC document.
    RpcDiscover = "rpc.discover" => serde_json::Value, routine, needs none, shapes [],
        errors [];
}

/// The name OpenRPC reserves for the method that describes the others.
pub const DISCOVER: &str = "rpc.discover";

/// The one of `known` that `typed` most likely meant, when one is close enough to say so
/// ("did you mean deployer?"): at most two letters off (one for a short word), case aside.
pub(crate) fn did_you_mean<'a>(
    typed: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let typed = typed.to_ascii_lowercase();
    let most = if typed.chars().count() < 6 { 1 } else { 2 };
    known
        .into_iter()
        .map(|name| (strsim::damerau_levenshtein(&typed, name), name))
        .filter(|(distance, _)| *distance <= most)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use serde_json::{json, Value};
    use std::collections::BTreeSet;

    /// The reads declared `routine` (logged at debug when they succeed) are exactly those
    /// the operations guide (docs/operations.md) names, and no change is one.
    #[test]
    fn routine_reads_are_the_ones_the_operations_guide_names() {
        let routine: Vec<&str> = DECLARATIONS
            .iter()
            .filter(|declared| declared.kind == Kind::Routine)
            .map(|declared| declared.name)
            .collect();
        let listed = "(`ping`, `whoami`, `org.list`, `role.list`, `role.show`, `authz.check`, `rpc.discover`)";
        let readme: String = include_str!("../../../docs/operations.md")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            readme.contains(listed),
            "docs/operations.md must list the routine reads as {listed}"
        );
        let shown: Vec<String> = routine.iter().map(|name| format!("`{name}`")).collect();
        assert_eq!(format!("({})", shown.join(", ")), listed);
    }

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
        let err = "deployr".parse::<Role>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"deployr\" is not a role: did you mean deployer? (roles are admin, deployer, readonly and viewer)"
        );
        let err = "deploymnt.create".parse::<Permission>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"deploymnt.create\" is not a permission: did you mean deployment.create? (compartment role show admin lists them all)"
        );
    }

    #[test]
    fn decodes_an_invite() {
        let line = br#"{"jsonrpc":"2.0","id":1,"method":"user.invite","params":{"org":"acme","email":"a@example.com","role":"deployer"}}"#;
        let (id, request) = decode_request(line);
        assert_eq!(id, Some(Id::from(1)));
        assert_eq!(
            request.unwrap(),
            Request::UserInvite(UserInviteParams {
                org: Some("acme".into()),
                email: "a@example.com".into(),
                role: Role::Deployer,
                expires_in: None,
                resend: false,
                unix_user: None,
                access_until: None,
            })
        );
    }

    #[test]
    fn bad_lines_get_bad_request_or_unknown_method() {
        let cases: [(&[u8], ErrorKind, i64); 6] = [
            (b"{not json", ErrorKind::BadRequest, -32700),
            (b"[1,2]", ErrorKind::BadRequest, -32600),
            (br#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#, ErrorKind::BadRequest, -32600),
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
    fn every_declared_method_parses_and_names_itself() {
        for name in METHODS {
            // Methods with required params refuse `{}`, but as their own bad params.
            match Request::parse(name, None) {
                Ok(request) => assert_eq!(request.method(), *name),
                Err(err) => assert_eq!(
                    (err.kind(), err.code),
                    (ErrorKind::BadRequest, -32602),
                    "{name}"
                ),
            }
        }
        assert_eq!(
            METHODS.len(),
            METHODS
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        );
    }

    /// The member names of each form a params schema takes: one form, or each of a
    /// `oneOf`'s.
    fn forms(schema: schemars::Schema) -> BTreeSet<BTreeSet<String>> {
        let value = schema.to_value();
        let forms: Vec<&Value> = match value.get("oneOf").and_then(Value::as_array) {
            Some(forms) => forms.iter().collect(),
            None => vec![&value],
        };
        forms
            .into_iter()
            .map(|form| {
                form.get("properties")
                    .and_then(Value::as_object)
                    .map(|members| members.keys().cloned().collect())
                    .unwrap_or_default()
            })
            .filter(|members: &BTreeSet<String>| !members.is_empty())
            .collect()
    }

    /// Every declared method is in each list derived from the declarations, in order, and
    /// declares its whole self: the shapes of its params are the forms of their schema,
    /// member for member (none for a method without params), so a method cannot be added
    /// without them.
    #[test]
    fn every_declared_method_is_declared_whole() {
        let names: Vec<&str> = DECLARATIONS.iter().map(|declared| declared.name).collect();
        assert_eq!(names, METHODS);
        let mut settings = schemars::generate::SchemaSettings::draft07();
        settings.inline_subschemas = true;
        let mut generator = settings.into_generator();
        let described = describe_methods(&mut generator);
        assert_eq!(described.len(), DECLARATIONS.len());
        for (declared, described) in DECLARATIONS.iter().zip(described) {
            assert_eq!(declared.name, described.name);
            assert_eq!(
                declared.kind.writes(),
                described.writes,
                "{}",
                declared.name
            );
            let shapes: BTreeSet<BTreeSet<String>> = declared
                .shapes
                .iter()
                .map(|shape| shape.iter().map(|member| (*member).to_owned()).collect())
                .collect();
            assert_eq!(
                shapes.len(),
                declared.shapes.len(),
                "{}: a shape declared twice",
                declared.name
            );
            assert_eq!(shapes, forms(described.params), "{}", declared.name);
            if let Ok(request) = Request::parse(declared.name, None) {
                assert_eq!(request.kind(), declared.kind, "{}", declared.name);
            }
        }
        let document = openrpc::document();
        let documented: Vec<&str> = document["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|method| method["name"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = names.into_iter().filter(|name| *name != DISCOVER).collect();
        assert_eq!(documented, expected);
    }

    #[test]
    fn declarations_derive_name_writes_org_and_params() {
        let invite = Request::UserInvite(UserInviteParams {
            org: Some("acme".into()),
            email: "a@example.com".into(),
            role: Role::Viewer,
            expires_in: None,
            resend: false,
            unix_user: None,
            access_until: None,
        });
        assert_eq!(invite.method(), <methods::UserInvite as Method>::NAME);
        assert!(invite.writes());
        assert_eq!(invite.org(), Some("acme"));
        assert_eq!(
            invite.params(),
            json!({"org": "acme", "email": "a@example.com", "role": "viewer"})
        );
        assert!(!Request::Whoami.writes());
        assert_eq!(Request::Whoami.org(), None);
        assert_eq!(Request::Whoami.params(), json!({}));
        let create = Request::OrgCreate(OrgCreateParams {
            name: "acme".into(),
            admin: "a@example.com".into(),
            admin_unix_user: Some("alice".into()),
            expires_in: Default::default(),
        });
        assert_eq!(create.org(), Some("acme"));
        assert_eq!(
            Request::parse(
                "org.create",
                Some(&serde_json::value::to_raw_value(&create.params()).unwrap())
            )
            .unwrap(),
            create
        );
    }

    fn single(line: &str) -> Call {
        match decode(line.as_bytes()) {
            Incoming::Single(call) => call,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn batch(line: &str) -> Vec<Call> {
        match decode(line.as_bytes()) {
            Incoming::Batch(calls) => calls,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn a_request_without_id_is_a_notification() {
        let call = single(r#"{"jsonrpc":"2.0","method":"ping"}"#);
        assert_eq!(
            call,
            Call {
                id: None,
                request: Ok(Request::Ping)
            }
        );
        // A notification that fails to decode is still not answered.
        let call = single(r#"{"jsonrpc":"2.0","method":"nope"}"#);
        assert_eq!(call.id, None);
        assert_eq!(call.request.unwrap_err().kind(), ErrorKind::UnknownMethod);
    }

    #[test]
    fn a_broken_request_object_without_id_is_answered_with_null() {
        for line in [
            r#"{"jsonrpc":"2.0","method":1}"#,
            r#"{"jsonrpc":"1.0","method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":false,"method":"ping"}"#,
            "7",
            r#""ping""#,
        ] {
            let call = single(line);
            assert_eq!(call.id, Some(Id::null()), "{line}");
            assert_eq!(call.request.unwrap_err().code, -32600, "{line}");
        }
    }

    #[test]
    fn ids_are_kept_as_sent() {
        for id in [
            "null",
            "123456789012345678901234567890",
            "-0",
            "1.50",
            "1e400",
            r#""\u0041b""#,
            r#""""#,
        ] {
            let call = single(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#));
            assert_eq!(call.request.unwrap(), Request::Ping);
            let id = call.id.unwrap();
            assert_eq!(id.as_json(), id.to_string());
            let reply = serde_json::to_string(&Response::ok(id.clone(), json!({}))).unwrap();
            assert_eq!(
                reply,
                format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#)
            );
            let back: Response = serde_json::from_str(&reply).unwrap();
            assert_eq!(back.id, id);
        }
    }

    #[test]
    fn a_batch_decodes_each_element_in_order() {
        let calls = batch(
            r#" [ {"jsonrpc":"2.0","id":1,"method":"ping"}, {"jsonrpc":"2.0","method":"whoami"},
                 1, {"jsonrpc":"2.0","id":"b","method":"nope"} ] "#,
        );
        assert_eq!(calls.len(), 4);
        assert_eq!(
            calls[0],
            Call {
                id: Some(Id::from(1)),
                request: Ok(Request::Ping)
            }
        );
        assert_eq!(
            calls[1],
            Call {
                id: None,
                request: Ok(Request::Whoami)
            }
        );
        assert_eq!(calls[2].id, Some(Id::null()));
        assert_eq!(calls[2].request.as_ref().unwrap_err().code, -32600);
        assert_eq!(calls[3].id, Some(Id::from("b")));
        assert_eq!(calls[3].request.as_ref().unwrap_err().code, -32601);
    }

    #[test]
    fn an_empty_or_oversized_batch_is_one_invalid_request() {
        let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let too_many = format!("[{}]", vec![ping; MAX_BATCH + 1].join(","));
        for line in ["[]", " [ ] ", too_many.as_str()] {
            let call = single(line);
            assert_eq!(call.id, Some(Id::null()));
            let err = call.request.unwrap_err();
            assert_eq!((err.kind(), err.code), (ErrorKind::BadRequest, -32600));
        }
        let most = format!("[{}]", vec![ping; MAX_BATCH].join(","));
        assert_eq!(batch(&most).len(), MAX_BATCH);
    }

    #[test]
    fn params_null_is_refused_and_an_empty_array_is_no_params() {
        use serde_json::value::RawValue;
        let raw = |text: &str| RawValue::from_string(text.to_owned()).unwrap();
        let err = Request::parse("whoami", Some(&raw("null"))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRequest);
        assert!(
            err.message
                .contains("params must be an object, or left out (null is neither)"),
            "{}",
            err.message
        );
        assert_eq!(
            Request::parse_value("whoami", Some(serde_json::Value::Null))
                .unwrap_err()
                .message,
            err.message
        );
        for method in ["whoami", "ping", "user.list", "org.list"] {
            for empty in ["[]", "[ ]"] {
                assert!(
                    Request::parse(method, Some(&raw(empty))).is_ok(),
                    "{method} {empty}"
                );
            }
            assert!(
                Request::parse_value(method, Some(json!([]))).is_ok(),
                "{method}"
            );
        }
        let err = Request::parse("whoami", Some(&raw("[1]"))).unwrap_err();
        assert!(
            err.message.contains("params must be an object"),
            "{}",
            err.message
        );
    }

    #[test]
    fn not_json_is_a_parse_error_answered_with_null() {
        for line in ["{", "[", "[{}", "", "   ", "{} {}"] {
            let call = single(line);
            assert_eq!(call.id, Some(Id::null()), "{line:?}");
            assert_eq!(call.request.unwrap_err().code, -32700, "{line:?}");
        }
    }

    #[test]
    fn params_out_of_serde_json_range_are_bad_params() {
        let call =
            single(r#"{"jsonrpc":"2.0","id":1,"method":"user.list","params":{"org":1e400}}"#);
        assert_eq!(call.id, Some(Id::from(1)));
        assert_eq!(call.request.unwrap_err().code, -32602);
    }

    #[test]
    fn members_named_twice_count_as_the_last_and_escaped_names_count() {
        // Read first straight into a struct, which refuses a member named twice; such an
        // object is read again, as before, the last one counting.
        let cases = [
            (
                r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
                Some(Id::from(2)),
                Ok(Request::Ping),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"nope","method":"ping"}"#,
                Some(Id::from(1)),
                Ok(Request::Ping),
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"id":3,"method":"whoami"}"#,
                Some(Id::from(3)),
                Ok(Request::Whoami),
            ),
            (
                r#"{"jsonrpc":"1.0","jsonrpc":"2.0","method":"ping"}"#,
                None,
                Ok(Request::Ping),
            ),
            (
                r#"{"\u006a.sonrpc":"x","jsonrpc":"2.0","\u0069d":7,"m\u0065thod":"p\u0069ng"}"#,
                Some(Id::from(7)),
                Ok(Request::Ping),
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"id":[1],"method":"ping"}"#,
                Some(Id::null()),
                Err(-32600),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","params":{},"method":"org.list","params":7}"#,
                Some(Id::from("x")),
                Err(-32602),
            ),
        ];
        for (line, id, request) in cases {
            let call = single(line);
            assert_eq!(call.id, id, "{line}");
            assert_eq!(call.request.map_err(|err| err.code), request, "{line}");
        }
    }

    #[test]
    fn ids_compare_with_numbers_and_values() {
        assert_eq!(Id::from(7), 7);
        assert_eq!(Id::from(7), json!(7));
        assert_eq!(Id::from("x"), json!("x"));
        assert_eq!(Id::null(), Value::Null);
        assert_ne!(Id::from(7), json!("7"));
        assert_eq!(Id::from(json!([1])), Id::null());
    }

    #[test]
    fn a_notification_envelope_has_no_id() {
        let line = serde_json::to_string(&RequestEnvelope::notification(&Request::Ping)).unwrap();
        assert_eq!(line, r#"{"jsonrpc":"2.0","method":"ping","params":{}}"#);
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

    /// Every method reads its params straight from their text exactly as it would through
    /// a `serde_json::Value` (the reading before the fast one, kept as the oracle): the same
    /// request, or the same error word for word, whatever the members, their order, their
    /// values, duplicates and escapes.
    mod params_read_as_through_a_value {
        use super::*;
        use proptest::prelude::*;

        /// Member names besides the declared ones: escaped ones, strangers.
        const STRANGERS: &[&str] = &[r"\u006frg", r"\u0065mail", "group", ""];

        /// Member names: every params field of every form, as declared, and the strangers.
        fn member_names() -> Vec<&'static str> {
            let declared = DECLARATIONS
                .iter()
                .flat_map(|declared| declared.shapes.iter().copied().flatten().copied());
            let mut keys: Vec<&'static str> = Vec::new();
            for key in declared.chain(STRANGERS.iter().copied()) {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            keys
        }

        /// Member values as JSON text: right for some field, wrong for others.
        const VALUES: &[&str] = &[
            r#""acme""#,
            r#""\u0061cme""#,
            r#""a@example.com""#,
            r#""viewer""#,
            r#""admin""#,
            r#""Admin""#,
            r#""deployment.create""#,
            r#""project.read""#,
            r#""7d""#,
            r#""2h""#,
            r#""active""#,
            r#""invited""#,
            r#""alice""#,
            "1001",
            "0",
            "-1",
            "1.5",
            "4294967296",
            "1e400",
            "null",
            "true",
            "false",
            "[]",
            "{}",
            r#""""#,
            r#"[{"permission":"project.read"}]"#,
            r#"[{"permission":"variable.write","uid":1,"email":"a@b.c"}]"#,
            r#""AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA""#,
        ];

        /// Each method with the members of each form of its params, as declared, so that
        /// objects often fit closely.
        fn shapes() -> Vec<(&'static str, &'static [&'static str])> {
            DECLARATIONS
                .iter()
                .flat_map(|declared| declared.shapes.iter().map(|shape| (declared.name, *shape)))
                .collect()
        }

        /// Values that fit the member `key`, mostly.
        fn fitting(key: &str) -> &'static [&'static str] {
            match key {
                "org" | "name" => &[r#""acme""#, r#""\u0061cme""#],
                "email" | "admin" => &[r#""a@example.com""#],
                "role" => &[r#""viewer""#, r#""admin""#, r#""Admin""#],
                "permission" => &[r#""deployment.create""#, r#""project.read""#],
                "uid" | "limit" | "after" => &["1001", "0", r#""acme""#],
                "user" | "unix_user" | "admin_unix_user" => &[r#""alice""#],
                "expires_in" => &[r#""7d""#, r#""2h""#],
                "status" => &[r#""active""#, r#""invited""#],
                "resend" | "carry_all" => &["true"],
                "token" => &[r#""AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA""#],
                "checks" => &[
                    r#"[{"permission":"project.read"}]"#,
                    r#"[{"permission":"variable.write","uid":1,"email":"a@b.c"}]"#,
                ],
                _ => VALUES,
            }
        }

        /// The member `key` with a value, mostly one that fits it.
        fn member(key: &'static str) -> impl Strategy<Value = String> {
            prop_oneof![
                3 => proptest::sample::select(fitting(key).to_vec()),
                1 => proptest::sample::select(VALUES.to_vec()),
            ]
            .prop_map(move |value| format!(r#""{key}":{value}"#))
        }

        /// An object of some of `keys`, in any order, now and then with one more member
        /// (a stranger, or one of them again).
        fn object(keys: Vec<&'static str>) -> impl Strategy<Value = String> {
            let len = keys.len();
            let some = proptest::sample::subsequence(keys, 0..=len)
                .prop_shuffle()
                .prop_flat_map(|keys| keys.into_iter().map(member).collect::<Vec<_>>());
            let stranger = proptest::sample::select(member_names()).prop_flat_map(member);
            let extra = proptest::option::weighted(0.25, stranger);
            (some, extra).prop_map(|(mut members, extra)| {
                members.extend(extra);
                format!("{{{}}}", members.join(","))
            })
        }

        /// A method with params text: mostly an object shaped for it.
        fn method_and_params() -> impl Strategy<Value = (&'static str, String)> {
            prop_oneof![
                6 => proptest::sample::select(shapes())
                    .prop_flat_map(|(method, keys)| (Just(method), object(keys.to_vec()))),
                1 => (proptest::sample::select(METHODS.to_vec()), object(member_names())),
                1 => (
                    proptest::sample::select(METHODS.to_vec()),
                    proptest::sample::select(VALUES.to_vec()).prop_map(str::to_owned),
                ),
            ]
        }

        /// What the reading through a `Value` said: its error for text a `Value` cannot
        /// hold, as the decoder said it then.
        fn through_a_value(method: &str, text: &str) -> Result<Request, RpcError> {
            match serde_json::from_str::<Value>(text) {
                Ok(value) => Request::parse_value(method, Some(value)),
                Err(err) => Err(RpcError::invalid_params(method, err.to_string())),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 2048,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn for_every_method((method, text) in method_and_params()) {
                let raw = serde_json::value::RawValue::from_string(text.clone()).unwrap();
                let parsed = Request::parse(method, Some(&raw));
                prop_assert_eq!(&parsed, &through_a_value(method, &text), "{} {}", method, text);
                // What the client writes of a request, params straight from the struct,
                // is what `params()` makes through a `Value`, and reads back the same.
                if let Ok(request) = parsed {
                    let mut written = Vec::new();
                    request
                        .serialize_params(&mut serde_json::Serializer::new(&mut written))
                        .unwrap();
                    let written = String::from_utf8(written).unwrap();
                    prop_assert_eq!(
                        serde_json::from_str::<Value>(&written).unwrap(),
                        request.params()
                    );
                    let raw = serde_json::value::RawValue::from_string(written).unwrap();
                    prop_assert_eq!(Request::parse(method, Some(&raw)), Ok(request));
                }
            }
        }

        /// A request line around `method` and `params`: its envelope's members in any
        /// order, some left out, some not right, now and then one twice or a stranger.
        fn line() -> impl Strategy<Value = String> {
            // `authz.check`'s members mixed, as its two forms' reading tells them apart.
            let authz_member = |key: &'static str| {
                let values: &'static [&'static str] = match key {
                    "checks" => &[
                        r#"[{"permission":"project.read"}]"#,
                        "[]",
                        "null",
                        r#"[{"permission":"project.read","uid":1,"user":"a"}]"#,
                    ],
                    "permission" => &[r#""deployment.create""#, "null"],
                    _ => &[r#""acme""#, "7", "null"],
                };
                proptest::sample::select(values)
                    .prop_map(move |value| format!(r#""{key}":{value}"#))
            };
            let authz = proptest::sample::subsequence(
                vec!["permission", "org", "uid", "user", "email", "checks"],
                0..=6,
            )
            .prop_shuffle()
            .prop_flat_map(move |keys| keys.into_iter().map(authz_member).collect::<Vec<_>>())
            .prop_map(|members| format!("{{{}}}", members.join(",")));
            let method = prop_oneof![
                8 => method_and_params()
                    .prop_map(|(method, params)| (format!(r#""{method}""#), params)),
                3 => authz.prop_map(|params| (r#""authz.check""#.to_owned(), params)),
                1 => Just((r#""no.such""#.to_owned(), r#"{"org":"acme"}"#.to_owned())),
            ];
            // Mostly right, as clients send them; now and then not.
            let id = prop_oneof![
                4 => proptest::sample::select(vec!["1", "\"req-1\"", "null"]),
                1 => proptest::sample::select(vec!["1e400", "{}", "18446744073709551616"]),
            ];
            let jsonrpc = prop_oneof![
                6 => Just(r#""2.0""#),
                1 => proptest::sample::select(vec![r#""1.0""#, "2", r#""2\u002e0""#]),
            ];
            let extra = proptest::sample::select(vec![
                r#""x":1"#,
                r#""method":"ping""#,
                r#""id":2"#,
                r#""params":{}"#,
                r#""jsonrpc":"2.0""#,
                r#""\u006dethod":"ping""#,
            ]);
            (
                method,
                id,
                jsonrpc,
                proptest::option::weighted(0.15, extra),
                prop_oneof![3 => Just(0u8), 1 => proptest::bits::u8::masked(0b111)],
                any::<proptest::sample::Index>(),
            )
                .prop_map(|((method, params), id, jsonrpc, extra, left_out, order)| {
                    let mut members = vec![
                        (0u8, format!(r#""jsonrpc":{jsonrpc}"#)),
                        (1, format!(r#""id":{id}"#)),
                        (2, format!(r#""method":{method}"#)),
                        (3, format!(r#""params":{params}"#)),
                    ];
                    // Now and then without a jsonrpc, an id or params (the method stays, or
                    // every line would fail alike).
                    let bit = |n: u8| match n {
                        0 => 1,
                        1 => 2,
                        3 => 4,
                        _ => 0,
                    };
                    members.retain(|(n, _)| left_out & bit(*n) == 0);
                    let mut members: Vec<String> = members.into_iter().map(|(_, m)| m).collect();
                    members.extend(extra.map(str::to_owned));
                    // Mostly as clients write them (method before params); otherwise turned.
                    let turn = order.index(members.len() * 2);
                    if turn < members.len() {
                        members.rotate_left(turn);
                    }
                    format!("{{{}}}", members.join(","))
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 4096,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// The one pass that reads the usual line gives what the long way gives, which
            /// the wire's other properties pin down.
            #[test]
            fn one_pass_reads_a_line_as_the_long_way_does(line in line()) {
                prop_assert_eq!(
                    decode(line.as_bytes()),
                    envelope::decode_the_long_way(line.as_bytes()),
                    "{}", line
                );
            }
        }

        /// The usual lines do not all fall back to the long way: the one pass reads them.
        #[test]
        fn one_pass_reads_the_usual_lines() {
            for line in [
                r#"{"jsonrpc":"2.0","id":1,"method":"authz.check","params":{"permission":"deployment.create","org":"acme","uid":0}}"#,
                r#"{"jsonrpc":"2.0","id":"a","method":"whoami"}"#,
                r#"{"method":"user.list","params":{"org":"acme"},"jsonrpc":"2.0","id":null}"#,
            ] {
                let one_pass: envelope::OnePass = serde_json::from_str(line).unwrap();
                assert_eq!(
                    Incoming::Single(one_pass.0),
                    decode(line.as_bytes()),
                    "{line}"
                );
            }
        }

        #[test]
        fn the_fast_reading_is_the_one_that_answers() {
            // A check read straight from its text, and one whose member comes twice (which
            // only the reading through a `Value` accepts, the last one counting).
            let one = r#"{"permission":"project.read","org":"acme","uid":7}"#;
            assert!(AuthzCheckParams::from_text(one).is_some());
            let twice = r#"{"permission":"project.read","org":"x","org":"acme","uid":7}"#;
            assert!(AuthzCheckParams::from_text(twice).is_none());
            let raw = serde_json::value::RawValue::from_string(twice.to_owned()).unwrap();
            assert_eq!(
                Request::parse("authz.check", Some(&raw)).unwrap().org(),
                Some("acme")
            );
            // A batch too, straight from its text; what its rules refuse goes the long way.
            let batch = r#"{"checks":[{"permission":"project.read","org":"acme"},{"permission":"project.read","org":"beta","uid":7}]}"#;
            assert!(matches!(
                AuthzCheckParams::from_text(batch),
                Some(AuthzCheckParams::Many(checks)) if checks.len() == 2
            ));
            for refused in [
                r#"{"checks":[]}"#,
                r#"{"checks":[{"permission":"project.read","uid":7,"user":"alice"}]}"#,
            ] {
                assert!(AuthzCheckParams::from_text(refused).is_none(), "{refused}");
                let raw = serde_json::value::RawValue::from_string(refused.to_owned()).unwrap();
                assert!(
                    Request::parse("authz.check", Some(&raw)).is_err(),
                    "{refused}"
                );
            }
        }
    }
}
