//! From a parsed request to the rule that serves it: reads on a snapshot, changes through
//! the writer. One small [`Serve`] impl per method; [`Request::visit`] is the dispatch
//! table, derived from the wire's method declarations, so a method without a handler does
//! not compile.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use compartmentctl::wire::{
    methods, Handle, Method, Pong, Request, Role, RoleInfo, RoleList, Visit,
};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::rules::{identity, invitations, members, orgs, Caller, Policy, RuleError};
use crate::store::Store;
use crate::token::Token;
use crate::writer::Writer;

/// What every request handler shares.
pub struct Context {
    pub store: Arc<Store>,
    pub writer: Writer,
    pub clock: Arc<dyn Clock>,
    pub policy: Arc<Policy>,
    /// The uid the daemon runs as: a superuser, like uid 0.
    pub daemon_uid: u32,
    /// Wakes the sweeper when an invitation that may expire sooner is written.
    pub sweeper_wake: Arc<Notify>,
}

impl Context {
    /// The caller of a connection, from its peer credentials.
    pub fn caller(&self, uid: u32, gid: u32, pid: Option<i32>) -> Caller {
        Caller {
            uid,
            gid,
            pid,
            superuser: uid == 0 || uid == self.daemon_uid,
        }
    }
}

/// How the daemon serves one method: its params in, its typed result or a rule's refusal
/// out.
pub trait Serve: Method {
    fn serve(
        ctx: &Context,
        caller: Caller,
        params: Self::Params,
    ) -> impl Future<Output = Result<Self::Result, RuleError>> + Send;
}

/// Serves one request for `caller`.
pub async fn dispatch(ctx: &Context, caller: Caller, request: Request) -> Result<Value, RuleError> {
    request.visit(Dispatch { ctx, caller }).await
}

/// The visitor that routes a request to its method's [`Serve`] impl.
struct Dispatch<'a> {
    ctx: &'a Context,
    caller: Caller,
}

type Served<'a> = Pin<Box<dyn Future<Output = Result<Value, RuleError>> + Send + 'a>>;

impl<'a> Visit for Dispatch<'a> {
    type Output = Served<'a>;
}

impl<'a, M: Serve> Handle<M> for Dispatch<'a> {
    fn handle(self, params: M::Params) -> Served<'a> {
        Box::pin(async move { to_value(M::serve(self.ctx, self.caller, params).await?) })
    }
}

fn to_value(result: impl Serialize) -> Result<Value, RuleError> {
    serde_json::to_value(result).map_err(|_| RuleError::Internal("a result did not serialize"))
}

fn new_token() -> Result<Token, RuleError> {
    Token::generate().map_err(|err| {
        tracing::error!(error = %err, "the OS random source failed");
        RuleError::Internal("no randomness for a token")
    })
}

impl Serve for methods::Ping {
    async fn serve(_: &Context, _: Caller, _: Self::Params) -> Result<Pong, RuleError> {
        Ok(Pong {
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }
}

impl Serve for methods::RoleList {
    async fn serve(_: &Context, _: Caller, _: Self::Params) -> Result<RoleList, RuleError> {
        Ok(RoleList {
            roles: Role::ALL
                .into_iter()
                .map(|name| RoleInfo {
                    name,
                    description: name.description().to_owned(),
                })
                .collect(),
        })
    }
}

impl Serve for methods::Whoami {
    async fn serve(
        ctx: &Context,
        caller: Caller,
        _: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        let snapshot = ctx.store.read()?;
        identity::whoami(&snapshot, caller, ctx.clock.now())
    }
}

impl Serve for methods::OrgList {
    async fn serve(
        ctx: &Context,
        caller: Caller,
        _: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        orgs::list(&ctx.store.read()?, caller)
    }
}

impl Serve for methods::UserList {
    async fn serve(
        ctx: &Context,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        let snapshot = ctx.store.read()?;
        members::list(&snapshot, caller, params.org.as_deref(), ctx.clock.now())
    }
}

impl Serve for methods::OrgCreate {
    async fn serve(
        ctx: &Context,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        let token = new_token()?;
        let policy = ctx.policy.clone();
        let created = ctx
            .writer
            .write(move |txn, now| orgs::create(txn, caller, &params, &token, &policy, now))
            .await?;
        ctx.sweeper_wake.notify_one();
        Ok(created)
    }
}

impl Serve for methods::OrgUse {
    async fn serve(
        ctx: &Context,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        ctx.writer
            .write(move |txn, _| orgs::use_org(txn, caller, &params.name))
            .await
    }
}

impl Serve for methods::UserInvite {
    async fn serve(
        ctx: &Context,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        let token = new_token()?;
        let policy = ctx.policy.clone();
        let invitation = ctx
            .writer
            .write(move |txn, now| invitations::invite(txn, caller, &params, &token, &policy, now))
            .await?;
        ctx.sweeper_wake.notify_one();
        Ok(invitation)
    }
}

impl Serve for methods::UserRemove {
    async fn serve(
        ctx: &Context,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        ctx.writer
            .write(move |txn, now| members::remove(txn, caller, &params, now))
            .await
    }
}

impl Serve for methods::RoleGrant {
    async fn serve(
        ctx: &Context,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        ctx.writer
            .write(move |txn, now| members::grant(txn, caller, &params, now))
            .await
    }
}

impl Serve for methods::AccountActivate {
    async fn serve(
        ctx: &Context,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        ctx.writer
            .write(move |txn, now| invitations::activate(txn, caller, &params.token, now))
            .await
    }
}
