//! `authz.check`: may this user do this in that organization? Asked by `compartment auth
//! can` about oneself, and by the host's services about anyone.

use serde::{Deserialize, Serialize};

use super::{Params, Permission, Role};

/// The most checks one `authz.check` call carries.
pub const MAX_CHECKS: usize = 1000;

/// One question: may the subject do `permission` in `org`? The subject is the caller unless
/// one of `uid`, `user` or `email` names someone (at most one of them, as its JSON Schema
/// says too).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("not" = {"anyOf": [
    {"required": ["uid", "user"], "properties": {"uid": {"not": {"type": "null"}}, "user": {"not": {"type": "null"}}}},
    {"required": ["uid", "email"], "properties": {"uid": {"not": {"type": "null"}}, "email": {"not": {"type": "null"}}}},
    {"required": ["user", "email"], "properties": {"user": {"not": {"type": "null"}}, "email": {"not": {"type": "null"}}}},
]}))]
pub struct Check {
    pub permission: Permission,
    /// The organization; when absent, the subject's current one, as for their own commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// A uid, such as the peer of a connection the asking service accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// A Unix user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// An account's e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl Check {
    /// Whether the check names a subject other than the caller (who it is is still to be
    /// resolved: a uid, user or address may turn out to be the caller's own).
    pub fn names_subject(&self) -> bool {
        self.uid.is_some() || self.user.is_some() || self.email.is_some()
    }

    /// Whether the check names its subject by at most one of `uid`, `user` and `email`.
    fn names_one_subject_at_most(&self) -> bool {
        let named = [
            self.uid.is_some(),
            self.user.is_some(),
            self.email.is_some(),
        ];
        named.into_iter().filter(|named| *named).count() <= 1
    }
}

/// `authz.check`'s params: one [`Check`], or `{"checks": [...]}` for many in one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthzCheckParams {
    One(Check),
    Many(Vec<Check>),
}

impl Params for AuthzCheckParams {
    fn org(&self) -> Option<&str> {
        match self {
            AuthzCheckParams::One(check) => check.org.as_deref(),
            AuthzCheckParams::Many(_) => None,
        }
    }

    /// Either form straight from the text: one check, the form services ask thousands of
    /// times a second, or `{"checks": [...]}` (which a [`Check`] refuses as an unknown
    /// member), without a `Value` between, which cost a batch of a thousand a fifth of its
    /// time. Whatever either form's rules refuse goes through the reading that tells the
    /// two forms apart, which says what is wrong.
    fn from_text(text: &str) -> Option<AuthzCheckParams> {
        let params = match serde_json::from_str::<Check>(text) {
            Ok(check) => AuthzCheckParams::One(check),
            Err(_) => {
                let many = serde_json::from_str::<ManyChecks>(text).ok()?;
                if many.checks.is_empty() || many.checks.len() > MAX_CHECKS {
                    return None;
                }
                AuthzCheckParams::Many(many.checks)
            }
        };
        let checks = match &params {
            AuthzCheckParams::One(check) => std::slice::from_ref(check),
            AuthzCheckParams::Many(checks) => checks.as_slice(),
        };
        checks
            .iter()
            .all(Check::names_one_subject_at_most)
            .then_some(params)
    }

    /// Either form in the envelope's pass, as [`AuthzCheckParams::from_text`] reads it
    /// from the text: a batch of a thousand checks is not read twice.
    fn read<'de, D: serde::Deserializer<'de>>(object: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let members = EitherForm::deserialize(object)?;
        let params = match members {
            EitherForm {
                checks: Some(checks),
                permission: None,
                org: None,
                uid: None,
                user: None,
                email: None,
            } if (1..=MAX_CHECKS).contains(&checks.len()) => AuthzCheckParams::Many(checks),
            EitherForm {
                checks: None,
                permission: Some(permission),
                org,
                uid,
                user,
                email,
            } => AuthzCheckParams::One(Check {
                permission,
                org: org.flatten(),
                uid: uid.flatten(),
                user: user.flatten(),
                email: email.flatten(),
            }),
            _ => return Err(D::Error::custom("neither form")),
        };
        let checks = match &params {
            AuthzCheckParams::One(check) => std::slice::from_ref(check),
            AuthzCheckParams::Many(checks) => checks.as_slice(),
        };
        if !checks.iter().all(Check::names_one_subject_at_most) {
            return Err(D::Error::custom("more than one subject"));
        }
        Ok(params)
    }
}

/// The members of either form, each as there or not (`null` is there): a [`Check`]'s, or
/// `checks`, which only [`AuthzCheckParams::read`] tells apart.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EitherForm {
    #[serde(default, deserialize_with = "there")]
    permission: Option<Permission>,
    #[serde(default, deserialize_with = "there")]
    org: Option<Option<String>>,
    #[serde(default, deserialize_with = "there")]
    uid: Option<Option<u32>>,
    #[serde(default, deserialize_with = "there")]
    user: Option<Option<String>>,
    #[serde(default, deserialize_with = "there")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "there")]
    checks: Option<Vec<Check>>,
}

/// A member that is there, whatever its value.
fn there<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ManyChecks {
    #[schemars(length(min = 1, max = 1000))]
    checks: Vec<Check>,
}

/// One check's fields, or `checks`: the two forms as one object schema, whose rules the
/// daemon enforces (one form or the other, at most one subject).
impl schemars::JsonSchema for AuthzCheckParams {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AuthzCheckParams".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let one = generator.subschema_for::<Check>();
        let many = generator.subschema_for::<ManyChecks>();
        schemars::json_schema!({ "oneOf": [one, many] })
    }
}

impl Serialize for AuthzCheckParams {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AuthzCheckParams::One(check) => check.serialize(serializer),
            AuthzCheckParams::Many(checks) => ManyChecks {
                checks: checks.clone(),
            }
            .serialize(serializer),
        }
    }
}

/// Reads `{"checks": [...]}` as many checks and anything else as one, so that either
/// form's mistakes are reported in that form's words.
impl<'de> Deserialize<'de> for AuthzCheckParams {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(deserializer)?;
        let params = if value.get("checks").is_some() {
            let many = ManyChecks::deserialize(value).map_err(D::Error::custom)?;
            if many.checks.is_empty() || many.checks.len() > MAX_CHECKS {
                return Err(D::Error::custom(format!(
                    "checks must hold 1 to {MAX_CHECKS} checks"
                )));
            }
            AuthzCheckParams::Many(many.checks)
        } else {
            AuthzCheckParams::One(Check::deserialize(value).map_err(D::Error::custom)?)
        };
        let checks = match &params {
            AuthzCheckParams::One(check) => std::slice::from_ref(check),
            AuthzCheckParams::Many(checks) => checks.as_slice(),
        };
        if !checks.iter().all(Check::names_one_subject_at_most) {
            return Err(D::Error::custom(
                "name the subject by one of uid, user and email, not several",
            ));
        }
        Ok(params)
    }
}

/// Why the answer is what it is, for programs; the decision's `message` says it for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Allowed: root or the daemon's own user, admin power in every organization.
    Superuser,
    /// Allowed: the subject's role in the organization holds the permission.
    Role,
    /// Allowed: a Unix group of the subject's is mapped there to a role that holds it
    /// (`org map-group`), higher than any membership gives.
    Group,
    /// The subject's role there does not hold it.
    RoleTooLow,
    /// The subject has no membership there (none, or removed), or no such organization.
    NotMember,
    /// Invited, not yet activated.
    InvitationPending,
    /// The invitation lapsed.
    InvitationExpired,
    /// The membership was activated for another uid, which alone acts through it.
    OtherUid,
    /// The member is blocked there; the message carries the admin's reason.
    Blocked,
    /// The member's access there ended (`user invite --access-until`).
    AccessEnded,
    /// The uid is not bound to an account.
    Unbound,
    /// The uid's binding no longer holds: its user was deleted or the uid reused.
    BindingStale,
    /// No Unix user by that name or uid.
    NoSuchUser,
    /// No account with that address, or it has never been activated.
    NoAccount,
    /// A reason this client does not know yet.
    #[serde(other)]
    Other,
}

impl Reason {
    /// Its name on the wire, as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Superuser => "superuser",
            Reason::Role => "role",
            Reason::Group => "group",
            Reason::RoleTooLow => "role_too_low",
            Reason::NotMember => "not_member",
            Reason::InvitationPending => "invitation_pending",
            Reason::InvitationExpired => "invitation_expired",
            Reason::OtherUid => "other_uid",
            Reason::Blocked => "blocked",
            Reason::AccessEnded => "access_ended",
            Reason::Unbound => "unbound",
            Reason::BindingStale => "binding_stale",
            Reason::NoSuchUser => "no_such_user",
            Reason::NoAccount => "no_account",
            Reason::Other => "other",
        }
    }
}

/// The answer to one check: what the rules decide at this instant.
//
// Its members are declared in alphabetical order, the order every result's members take
// on the wire; the daemon writes this one straight from the struct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Decision {
    pub allowed: bool,
    /// The subject's account, as far as it resolved.
    pub email: Option<String>,
    /// The reason in one sentence.
    pub message: String,
    /// The organization the answer is about, when one was named or could be chosen.
    pub org: Option<String>,
    pub permission: Permission,
    pub reason: Reason,
    /// The subject's role in the organization, if it acts there.
    pub role: Option<Role>,
    /// The subject's uid and Unix user, as far as they resolved.
    pub uid: Option<u32>,
    pub user: Option<String>,
}

/// `authz.check`'s result, in the form its params took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum AuthzAnswer {
    Many { decisions: Vec<Decision> },
    One(Decision),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleShowParams {
    pub role: Role,
}

impl Params for RoleShowParams {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    fn params(value: serde_json::Value) -> Result<AuthzCheckParams, String> {
        serde_json::from_value(value).map_err(|err| err.to_string())
    }

    #[test]
    fn each_reason_is_named_as_serde_names_it() {
        let reasons = [
            Reason::Superuser,
            Reason::Role,
            Reason::Group,
            Reason::RoleTooLow,
            Reason::NotMember,
            Reason::InvitationPending,
            Reason::InvitationExpired,
            Reason::OtherUid,
            Reason::Blocked,
            Reason::AccessEnded,
            Reason::Unbound,
            Reason::BindingStale,
            Reason::NoSuchUser,
            Reason::NoAccount,
            Reason::Other,
        ];
        for reason in reasons {
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                json!(reason.as_str()),
                "{reason:?}"
            );
        }
    }

    #[test]
    fn one_check_or_many() {
        let one =
            params(json!({"permission": "deployment.create", "org": "acme", "uid": 1001})).unwrap();
        assert_eq!(
            one,
            AuthzCheckParams::One(Check {
                permission: Permission::DeploymentCreate,
                org: Some("acme".into()),
                uid: Some(1001),
                user: None,
                email: None,
            })
        );
        let many = params(json!({"checks": [
            {"permission": "project.read"},
            {"permission": "variable.write", "email": "a@example.com", "org": "acme"},
        ]}))
        .unwrap();
        let AuthzCheckParams::Many(checks) = &many else {
            panic!("{many:?}")
        };
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[1].email.as_deref(), Some("a@example.com"));
        // Both forms write back as they read.
        for form in [one, many] {
            let text = serde_json::to_value(&form).unwrap();
            assert_eq!(params(text).unwrap(), form);
        }
    }

    #[test]
    fn bad_checks_say_what_is_wrong() {
        let cases = [
            (json!({}), "missing field `permission`"),
            (
                json!({"permission": "root"}),
                "\"root\" is not a permission",
            ),
            (
                json!({"permission": "project.read", "group": "x"}),
                "unknown field `group`",
            ),
            (json!({"checks": []}), "checks must hold 1 to 1000 checks"),
            (
                json!({"checks": [{"permission": "project.read"}], "org": "a"}),
                "unknown field `org`",
            ),
            (
                json!({"permission": "project.read", "uid": 1, "user": "alice"}),
                "name the subject by one of uid, user and email, not several",
            ),
            (
                json!({"checks": [{"permission": "project.read", "uid": 1, "email": "a@b.c"}]}),
                "not several",
            ),
        ];
        for (value, want) in cases {
            let err = params(value.clone()).unwrap_err();
            assert!(err.contains(want), "{value}: {err}");
        }
        let too_many = vec![json!({"permission": "project.read"}); MAX_CHECKS + 1];
        assert!(params(json!({ "checks": too_many })).is_err());
    }

    #[test]
    fn answers_read_back_in_either_form_and_unknown_reasons_read_as_other() {
        let decision = Decision {
            allowed: false,
            permission: Permission::VariableValueRead,
            org: Some("acme".into()),
            uid: Some(1001),
            user: Some("alice".into()),
            email: Some("a@example.com".into()),
            role: Some(Role::Readonly),
            reason: Reason::RoleTooLow,
            message: "…".into(),
        };
        for answer in [
            AuthzAnswer::One(decision.clone()),
            AuthzAnswer::Many {
                decisions: vec![decision.clone(), decision.clone()],
            },
        ] {
            let text = serde_json::to_string(&answer).unwrap();
            assert_eq!(serde_json::from_str::<AuthzAnswer>(&text).unwrap(), answer);
        }
        let mut value = serde_json::to_value(&decision).unwrap();
        value["reason"] = json!("blocked_until_tuesday");
        let read: Decision = serde_json::from_value(value).unwrap();
        assert_eq!(read.reason, Reason::Other);
    }
}
