//! From a parsed request to the rule that serves it: reads on a snapshot, changes through
//! the writer. One small arm per method.

use std::sync::Arc;

use compartmentctl::wire::{Pong, Request, Role, RoleInfo, RoleList};
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

fn to_value(result: impl Serialize) -> Result<Value, RuleError> {
    serde_json::to_value(result).map_err(|_| RuleError::Internal("a result did not serialize"))
}

fn new_token() -> Result<Token, RuleError> {
    Token::generate().map_err(|err| {
        tracing::error!(error = %err, "the OS random source failed");
        RuleError::Internal("no randomness for a token")
    })
}

/// Serves one request for `caller`.
pub async fn dispatch(ctx: &Context, caller: Caller, request: Request) -> Result<Value, RuleError> {
    match request {
        Request::Ping => to_value(Pong {
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }),
        Request::RoleList => to_value(role_list()),
        Request::Whoami => {
            let snapshot = ctx.store.read()?;
            to_value(identity::whoami(&snapshot, caller, ctx.clock.now())?)
        }
        Request::OrgList => to_value(orgs::list(&ctx.store.read()?, caller)?),
        Request::UserList(params) => {
            let snapshot = ctx.store.read()?;
            to_value(members::list(
                &snapshot,
                caller,
                params.org.as_deref(),
                ctx.clock.now(),
            )?)
        }
        Request::OrgCreate(params) => {
            let token = new_token()?;
            let policy = ctx.policy.clone();
            let created = ctx
                .writer
                .write(move |txn, now| orgs::create(txn, caller, &params, &token, &policy, now))
                .await?;
            ctx.sweeper_wake.notify_one();
            to_value(created)
        }
        Request::OrgUse(params) => to_value(
            ctx.writer
                .write(move |txn, _| orgs::use_org(txn, caller, &params.name))
                .await?,
        ),
        Request::UserInvite(params) => {
            let token = new_token()?;
            let policy = ctx.policy.clone();
            let invitation = ctx
                .writer
                .write(move |txn, now| {
                    invitations::invite(txn, caller, &params, &token, &policy, now)
                })
                .await?;
            ctx.sweeper_wake.notify_one();
            to_value(invitation)
        }
        Request::UserRemove(params) => to_value(
            ctx.writer
                .write(move |txn, now| members::remove(txn, caller, &params, now))
                .await?,
        ),
        Request::RoleGrant(params) => to_value(
            ctx.writer
                .write(move |txn, now| members::grant(txn, caller, &params, now))
                .await?,
        ),
        Request::AccountActivate(params) => to_value(
            ctx.writer
                .write(move |txn, now| invitations::activate(txn, caller, &params.token, now))
                .await?,
        ),
    }
}

fn role_list() -> RoleList {
    RoleList {
        roles: Role::ALL
            .into_iter()
            .map(|name| RoleInfo {
                name,
                description: name.description().to_owned(),
            })
            .collect(),
    }
}
