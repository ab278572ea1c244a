//! The CLI's half of each method: how its result reads as text. [`Request::visit`] derives
//! the call-and-print step from these impls, so a method without one does not compile.

use compartmentctl::args::OutputFormat;
use compartmentctl::wire::{methods, AuthzAnswer, Handle, Method, Request, Visit};
use compartmentctl::Client;

use std::borrow::Cow;

use super::escape::escaped_lines;
use super::exit::{Exit, Failure};
use super::output;

/// How a method's result is printed for people; `--output json` prints the result object
/// itself.
pub trait Render: Method {
    fn text(result: &Self::Result) -> String;

    /// The exit code of a call that got this result: 0, but for an answer that is a no.
    fn exit(_result: &Self::Result) -> Exit {
        Exit::Ok
    }
}

/// Makes the call and renders its typed result; the request's method decides the type.
/// Returns what to print and the exit code.
pub fn call(
    client: &mut Client,
    request: Request,
    format: OutputFormat,
) -> Result<(String, Exit), Failure> {
    request.visit(CallAndRender { client, format })
}

struct CallAndRender<'a> {
    client: &'a mut Client,
    format: OutputFormat,
}

impl Visit for CallAndRender<'_> {
    type Output = Result<(String, Exit), Failure>;
}

impl<M: Render> Handle<M> for CallAndRender<'_> {
    fn handle(self, params: M::Params) -> Result<(String, Exit), Failure> {
        let result = self.client.call_method::<M>(params)?;
        let text = match self.format {
            // Each method's text escapes what the daemon sent; this is the net under it, for
            // a string a future rendering forgets: nothing but a newline of ours reaches the
            // terminal as a control.
            OutputFormat::Text => {
                let text = M::text(&result);
                match escaped_lines(&text) {
                    Cow::Borrowed(_) => text,
                    Cow::Owned(safe) => safe,
                }
            }
            OutputFormat::Json | OutputFormat::Jsonl => output::json(&result)?,
        };
        Ok((text, M::exit(&result)))
    }
}

macro_rules! render_with {
    ($($method:ident => $function:path;)*) => {
        $(
            impl Render for methods::$method {
                fn text(result: &Self::Result) -> String {
                    $function(result)
                }
            }
        )*
    };
}

render_with! {
    Ping => output::pong;
    Whoami => output::whoami;
    OrgCreate => output::org_created;
    OrgList => output::org_list;
    OrgUse => output::org_used;
    UserInvite => output::invitation;
    UserList => output::member_list;
    UserRemove => output::removed;
    UserBlock => output::user_blocked;
    UserUnblock => output::user_unblocked;
    RoleGrant => output::granted;
    RoleList => output::role_list;
    RoleShow => output::role_info;
    EventsSubscribe => output::subscribed;
    AdminBackup => output::backup_header;
    RpcDiscover => output::pretty;
    AccountActivate => output::activated;
    AccountList => output::account_list;
    AccountShow => output::account_detail;
    AccountUnbind => output::unbound;
    AccountDelete => output::account_deleted;
    AccountRename => output::account_renamed;
    OrgDelete => output::org_deleted;
    OrgRename => output::org_renamed;
    OrgMapGroup => output::group_mapped;
    OrgUnmapGroup => output::group_unmapped;
    AccountBind => output::bound;
    AdminStatus => output::admin_status;
    AdminMetrics => output::metrics_text;
    AuditList => output::audit_page;
    AuditCheckpoint => output::audit_checkpoint;
}

/// `audit verify`: what was checked, and where the chain breaks; a broken log exits 1.
impl Render for methods::AuditVerify {
    fn text(verified: &Self::Result) -> String {
        output::audit_verified(verified)
    }

    fn exit(verified: &Self::Result) -> Exit {
        if verified.broken.is_some() {
            Exit::Refused
        } else {
            Exit::Ok
        }
    }
}

/// `auth can`: `yes` or `no` and why; like `kubectl auth can-i`, a no exits 4 so that a
/// script can branch on it.
impl Render for methods::AuthzCheck {
    fn text(answer: &Self::Result) -> String {
        output::authz_answer(answer)
    }

    fn exit(answer: &Self::Result) -> Exit {
        let allowed = match answer {
            AuthzAnswer::One(decision) => decision.allowed,
            AuthzAnswer::Many { decisions } => decisions.iter().all(|d| d.allowed),
        };
        if allowed {
            Exit::Ok
        } else {
            Exit::PermissionDenied
        }
    }
}
