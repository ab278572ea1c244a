//! From a parsed request to the rule that serves it: reads on a snapshot, changes through
//! the writer. One small [`Serve`] impl per method; [`Request::visit`] is the dispatch
//! table, derived from the wire's method declarations, so a method without a handler does
//! not compile. A handler is served with its method's [`HandlerContext`]: a read's has no
//! writer ([`ReadContext`]), so a method declared `read` that tried to change the store
//! would not compile either.
//!
//! What serving a request gives is its [`Answer`]: the method's result, encoded for the
//! reply's line, with the organization it names and the feed it may start. (The wire
//! calls the object a client reads a `Response`; the line the daemon writes is a
//! [`crate::reply::Reply`].)

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use compartmentctl::wire::{
    methods, AuthzAnswer, AuthzCheckParams, Check, Decision, Handle, MemberList, Method,
    MetricsText, Pong, Request, Role, RoleInfo, RoleList, Visit, WhoAmI,
};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::backup::{self, Backup};
use crate::context::{Context, ReadContext, Scope, WriteContext};
use crate::events::{self, Feed};
use crate::rules::authz::{self, Subject};
use crate::rules::identity::Actor;
use crate::rules::{
    accounts, audit, identity, invitations, lifecycle, members, orgs, Caller, RuleError, Unbound,
};
use crate::store::{Millis, Reader, StoreError};
use crate::token::Token;

/// What the handler of method `M` is served with, as its declaration says: a
/// [`ReadContext`] for a method declared `read` or `routine`, a [`WriteContext`] (the whole
/// [`Context`]) for `write`.
pub type HandlerContext<'a, M> = Scope<'a, <M as Method>::Access>;

/// How the daemon serves one method: its params in, its typed result or a rule's refusal
/// out. A read's handler takes a [`ReadContext`], a change's a [`WriteContext`]; written
/// with the other, it does not compile.
pub trait Serve: Method {
    fn serve(
        ctx: HandlerContext<'_, Self>,
        caller: Caller,
        params: Self::Params,
    ) -> impl Future<Output = Result<Self::Result, RuleError>> + Send;

    /// The answer carrying the result, and the organization it names (for the log).
    /// By default JSON text made through a `serde_json::Value`, whose object keys are
    /// sorted; a method whose results are large (`user.list`) keeps its result as it is, to
    /// be written once, straight into the reply's line.
    fn encode(result: Self::Result) -> Result<Answer, RuleError> {
        through_a_value(&result)
    }

    /// Serves and encodes: the request's answer. A method that does more with its
    /// connection than answer (`events.subscribe`) says so here.
    fn answer(
        ctx: HandlerContext<'_, Self>,
        caller: Caller,
        params: Self::Params,
    ) -> impl Future<Output = Result<Answer, RuleError>> + Send {
        async move { Self::encode(Self::serve(ctx, caller, params).await?) }
    }
}

/// [`Serve::encode`]'s default: the result's JSON text made through a `serde_json::Value`
/// (its object keys sorted), and the organization and person its members name.
fn through_a_value(result: &impl serde::Serialize) -> Result<Answer, RuleError> {
    let value = serde_json::to_value(result).map_err(|_| not_serialized())?;
    let org = value.get("org").and_then(Value::as_str).map(str::to_owned);
    // Whom a change was about, and the role it left them with: a result names them at
    // its top, or (`org.create`) as its first admin.
    let about = value.get("admin").unwrap_or(&value);
    let field = |name| about.get(name).and_then(Value::as_str).map(str::to_owned);
    let about = About {
        email: field("email"),
        role: field("role"),
    };
    Ok(Answer {
        result: EncodedResult::Json(
            serde_json::value::to_raw_value(&value).map_err(|_| not_serialized())?,
        ),
        org,
        about,
        takeover: None,
    })
}

/// What serving a request gives: its result ready for the reply, and the organization it
/// names.
#[derive(Debug)]
pub struct Answer {
    pub result: EncodedResult,
    pub org: Option<String>,
    /// For the request's log line: whom it was about, and their role after it.
    pub about: About,
    /// What the connection becomes once the reply is sent (`events.subscribe`,
    /// `admin.backup`).
    pub takeover: Option<Takeover>,
}

/// Whom an answer is about, as its log line names them.
#[derive(Debug, Default)]
pub struct About {
    pub email: Option<String>,
    pub role: Option<String>,
}

/// What a connection becomes once a request's answer is sent: it carries only that from
/// then on.
#[derive(Debug)]
pub enum Takeover {
    /// The change feed (`events.subscribe`).
    Feed(Feed),
    /// A backup being sent (`admin.backup`).
    Backup(Backup),
}

/// A method's result as the reply's line will hold it.
#[derive(Debug)]
pub enum EncodedResult {
    /// Its JSON text, copied into the line as it is.
    Json(Box<RawValue>),
    /// A page of members, serialized once, into the line itself.
    Members(MemberList),
    /// `authz.check`'s answer, likewise.
    Authz(AuthzAnswer),
}

impl EncodedResult {
    /// About how many bytes the result takes in the line, to size the line once.
    pub fn len_hint(&self) -> usize {
        /// About one member's object in a page: an e-mail, a role, a status, a date.
        const MEMBER_BYTES: usize = 128;
        /// About one decision: its members' names and a sentence.
        const DECISION_BYTES: usize = 384;
        match self {
            EncodedResult::Json(text) => text.get().len(),
            EncodedResult::Members(list) => (list.members.len() + 1) * MEMBER_BYTES,
            EncodedResult::Authz(AuthzAnswer::One(_)) => DECISION_BYTES,
            EncodedResult::Authz(AuthzAnswer::Many { decisions }) => {
                decisions.len() * DECISION_BYTES
            }
        }
    }
}

impl serde::Serialize for EncodedResult {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            EncodedResult::Json(text) => text.serialize(serializer),
            EncodedResult::Members(list) => list.serialize(serializer),
            EncodedResult::Authz(answer) => answer.serialize(serializer),
        }
    }
}

fn not_serialized() -> RuleError {
    RuleError::Internal("a result did not serialize")
}

/// Serves one request for `caller`, whose binding is checked against its Unix user as NSS
/// names it now (cached a few seconds at most).
pub async fn dispatch(
    ctx: &Context,
    caller: Caller,
    request: Request,
) -> Result<Answer, RuleError> {
    let caller = ctx.identify(caller).await;
    let asked = audit::Asked::of(&request);
    if request.writes() {
        if let Err(refused) = ctx.admission.admit(&caller) {
            ctx.record_refusal(&caller, &asked, &refused).await;
            return Err(refused);
        }
    }
    let result = request
        .visit(Dispatch {
            ctx,
            caller: caller.clone(),
        })
        .await;
    if let Err(RuleError::Unauthenticated {
        why: Unbound::UserChanged { recorded, now },
        ..
    }) = &result
    {
        ctx.audit_stale_binding(&caller, recorded.clone(), now.clone())
            .await;
    }
    if let Err(refused) = &result {
        ctx.record_refusal(&caller, &asked, refused).await;
    }
    result
}

/// The visitor that routes a request to its method's [`Serve`] impl.
struct Dispatch<'a> {
    ctx: &'a Context,
    caller: Caller,
}

/// A request being served: its answer to come.
type Answering<'a> = Pin<Box<dyn Future<Output = Result<Answer, RuleError>> + Send + 'a>>;

impl<'a> Visit for Dispatch<'a> {
    type Output = Answering<'a>;
}

impl<'a, M: Serve> Handle<M> for Dispatch<'a> {
    fn handle(self, params: M::Params) -> Answering<'a> {
        Box::pin(M::answer(Scope::new(self.ctx), self.caller, params))
    }
}

/// A new token, its issue time read from the daemon's clock.
fn new_token(ctx: &Context) -> Result<Token, RuleError> {
    Token::generate(ctx.clock.now()).map_err(|err| {
        tracing::error!(error = %err, "the OS random source failed");
        RuleError::Internal("no randomness for a token")
    })
}

impl Serve for methods::Ping {
    async fn serve(_: ReadContext<'_>, _: Caller, _: Self::Params) -> Result<Pong, RuleError> {
        Ok(Pong {
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }
}

impl Serve for methods::RoleList {
    async fn serve(_: ReadContext<'_>, _: Caller, _: Self::Params) -> Result<RoleList, RuleError> {
        Ok(RoleList {
            roles: Role::ALL.into_iter().map(RoleInfo::of).collect(),
        })
    }
}

impl Serve for methods::RoleShow {
    async fn serve(
        _: ReadContext<'_>,
        _: Caller,
        params: Self::Params,
    ) -> Result<RoleInfo, RuleError> {
        Ok(RoleInfo::of(params.role))
    }
}

impl Serve for methods::AuthzCheck {
    async fn serve(
        ctx: ReadContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<AuthzAnswer, RuleError> {
        let checks = match params {
            // The question services ask thousands of times a second: answered as it is,
            // with nothing to share.
            AuthzCheckParams::One(check) => {
                let service = check.names_subject() && ctx.is_service(&caller).await;
                // The rows a decision about a uid reads, at a glance; a decision that reads
                // more (no organization named or chosen, a subject named by address) is
                // made again on a snapshot.
                let uid = check.uid.unwrap_or(caller.uid);
                let glance = ctx.glance(uid, check.org.as_deref()).await?;
                let now = ctx.now();
                let decision = match decide(ctx, &caller, &check, service, &glance, now).await {
                    Err(RuleError::Store(StoreError::BeyondGlance)) => {
                        let snapshot = ctx.snapshot()?;
                        decide(ctx, &caller, &check, service, &snapshot, ctx.now()).await?
                    }
                    decision => decision?,
                };
                return Ok(AuthzAnswer::One(decision));
            }
            AuthzCheckParams::Many(checks) => checks,
        };
        // Identical checks are answered once: a batch of a thousand copies costs what one
        // does, so repeating a question cannot magnify how long its answer takes. `first`
        // says, for each check, which distinct check answers it.
        let mut distinct: Vec<&Check> = Vec::new();
        // foldhash (randomly seeded, as the standard hasher is) rather than SipHash: hashing
        // a thousand checks with SipHash was a tenth of a batch's time.
        let mut seen: HashMap<&Check, usize, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(checks.len(), Default::default());
        let first: Vec<usize> = checks
            .iter()
            .map(|check| {
                *seen.entry(check).or_insert_with(|| {
                    distinct.push(check);
                    distinct.len() - 1
                })
            })
            .collect();
        // Whether the caller is a service matters only to checks about someone else.
        let service =
            distinct.iter().any(|check| check.names_subject()) && ctx.is_service(&caller).await;
        let snapshot = ctx.snapshot()?;
        let now = ctx.now();
        // Who each subject is, resolved and authenticated once for all the checks about
        // it (a batch is mostly one subject's questions about many permissions and orgs),
        // and how it stands in each organization, read once for all the checks there.
        type SubjectKey<'a> = (Option<u32>, Option<&'a str>, Option<&'a str>);
        type Known = (Subject, Option<Result<Actor, Unbound>>, authz::Standings);
        let mut subjects: HashMap<SubjectKey<'_>, Known, foldhash::fast::RandomState> =
            HashMap::default();
        let mut answers = Vec::with_capacity(distinct.len());
        for check in &distinct {
            let key = (check.uid, check.user.as_deref(), check.email.as_deref());
            let (subject, authenticated, standings) = match subjects.entry(key) {
                std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
                std::collections::hash_map::Entry::Vacant(vacant) => {
                    let subject = ctx.subject(&caller, check, service, &snapshot).await?;
                    let authenticated = authz::authenticate(&snapshot, &subject)?;
                    vacant.insert((subject, authenticated, authz::Standings::default()))
                }
            };
            answers.push(authz::decide_as(
                &snapshot,
                subject,
                authenticated,
                check.permission,
                check.org.as_deref(),
                Some(standings),
                now,
            )?);
        }
        // Each answer to as many checks as asked it: moved when asked once, as most are.
        if answers.len() == first.len() {
            return Ok(AuthzAnswer::Many { decisions: answers });
        }
        let mut decisions = Vec::with_capacity(first.len());
        for index in first {
            let answer = answers
                .get(index)
                .ok_or(RuleError::Internal("a check without its answer"))?;
            decisions.push(answer.clone());
        }
        Ok(AuthzAnswer::Many { decisions })
    }

    /// Kept as it is, to be written once, straight into the reply's line (services ask
    /// thousands of times a second): the same text as through a `Value`, as a decision's
    /// members are declared in the order a `Value` would sort them.
    fn encode(answer: AuthzAnswer) -> Result<Answer, RuleError> {
        let org = match &answer {
            AuthzAnswer::One(decision) => decision.org.clone(),
            AuthzAnswer::Many { .. } => None,
        };
        Ok(Answer {
            result: EncodedResult::Authz(answer),
            org,
            about: About::default(),
            takeover: None,
        })
    }
}

/// `check` by `caller` decided on `reader` at `now`.
async fn decide(
    ctx: ReadContext<'_>,
    caller: &Caller,
    check: &Check,
    service: bool,
    reader: &impl Reader,
    now: Millis,
) -> Result<Decision, RuleError> {
    let subject = ctx.subject(caller, check, service, reader).await?;
    authz::decide(
        reader,
        &subject,
        check.permission,
        check.org.as_deref(),
        now,
    )
}

impl Serve for methods::EventsSubscribe {
    async fn serve(
        ctx: ReadContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        let snapshot = ctx.snapshot()?;
        Ok(events::subscribe(&ctx, &caller, &params, &snapshot)
            .await?
            .1)
    }

    /// The answer, and the feed the connection becomes once it is sent.
    async fn answer(
        ctx: ReadContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Answer, RuleError> {
        let snapshot = ctx.snapshot()?;
        let (feed, subscribed) = events::subscribe(&ctx, &caller, &params, &snapshot).await?;
        let mut answer = Self::encode(subscribed)?;
        answer.takeover = Some(Takeover::Feed(feed));
        Ok(answer)
    }
}

impl Serve for methods::AdminBackup {
    async fn serve(
        ctx: ReadContext<'_>,
        caller: Caller,
        _: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        Ok(backup::begin(&caller, || ctx.snapshot(), ctx.now())?.1)
    }

    /// The header, and the backup the connection sends once it is answered.
    async fn answer(
        ctx: ReadContext<'_>,
        caller: Caller,
        _: Self::Params,
    ) -> Result<Answer, RuleError> {
        let (backup, header) = backup::begin(&caller, || ctx.snapshot(), ctx.now())?;
        let mut answer = Self::encode(header)?;
        answer.takeover = Some(Takeover::Backup(backup));
        Ok(answer)
    }
}

impl Serve for methods::RpcDiscover {
    async fn serve(_: ReadContext<'_>, _: Caller, _: Self::Params) -> Result<Value, RuleError> {
        static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
        Ok(DOCUMENT
            .get_or_init(compartmentctl::wire::openrpc::document)
            .clone())
    }
}

impl Serve for methods::Whoami {
    async fn serve(
        ctx: ReadContext<'_>,
        caller: Caller,
        _: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        let snapshot = ctx.snapshot_for(&caller, None)?;
        identity::whoami(&snapshot, &caller, ctx.now())
    }

    /// Straight from the struct, its members in the order it declares them: through a
    /// `Value` (a map per object, a string per permission, each freed after) it was half
    /// the instructions of a `whoami`. It names no organization and nobody for the log.
    fn encode(who: WhoAmI) -> Result<Answer, RuleError> {
        Ok(Answer {
            result: EncodedResult::Json(
                serde_json::value::to_raw_value(&who).map_err(|_| not_serialized())?,
            ),
            org: None,
            about: About::default(),
            takeover: None,
        })
    }
}

impl Serve for methods::OrgList {
    async fn serve(
        ctx: ReadContext<'_>,
        caller: Caller,
        _: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        orgs::list(&ctx.snapshot()?, &caller, ctx.now())
    }
}

impl Serve for methods::UserList {
    async fn serve(
        ctx: ReadContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        let snapshot = ctx.snapshot_for(&caller, params.org.as_deref())?;
        let (mut list, bound) = members::list_page_bound(&snapshot, &caller, &params, ctx.now())?;
        drop(snapshot);
        ctx.group_users(&mut list).await;
        ctx.mark_stale_bindings(&mut list, bound).await;
        Ok(list)
    }

    /// Up to a thousand members: kept as they are until the reply's line is written, never
    /// built as a `Value` or as text of their own.
    fn encode(list: MemberList) -> Result<Answer, RuleError> {
        Ok(Answer {
            org: Some(list.org.clone()),
            result: EncodedResult::Members(list),
            about: About::default(),
            takeover: None,
        })
    }
}

impl Serve for methods::OrgCreate {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        let named = ctx.named_user(params.admin_unix_user.as_deref()).await?;
        let token = new_token(&ctx)?;
        let policy = ctx.policy.clone();
        let created = ctx
            .writer
            .write_as(caller.uid, move |txn, now| {
                orgs::create(txn, &caller, &params, named.clone(), &token, &policy, now)
            })
            .await?;
        tell_sweeper(&ctx.sweeper_wake, &created.admin);
        Ok(created)
    }
}

impl Serve for methods::OrgRename {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        ctx.writer
            .write_as(caller.uid, move |txn, now| {
                orgs::rename(txn, &caller, &params, now)
            })
            .await
    }
}

impl Serve for methods::OrgMapGroup {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        // Who asks is judged before the host is asked about the group.
        caller.require_superuser("mapping Unix groups")?;
        let group = ctx.unix_group(&params.group).await?;
        ctx.writer
            .write_as(caller.uid, move |txn, now| {
                orgs::map_group(txn, &caller, &params, group.clone(), now)
            })
            .await
    }
}

impl Serve for methods::OrgUnmapGroup {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        ctx.writer
            .write_as(caller.uid, move |txn, now| {
                orgs::unmap_group(txn, &caller, &params, now)
            })
            .await
    }
}

impl Serve for methods::OrgDelete {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        ctx.writer
            .write_as(caller.uid, move |txn, now| {
                orgs::delete(txn, &caller, &params, now)
            })
            .await
    }
}

impl Serve for methods::OrgUse {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        ctx.writer
            .write_as(caller.uid, move |txn, now| {
                orgs::use_org(txn, &caller, &params.name, now)
            })
            .await
    }
}

impl Serve for methods::UserInvite {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        let named = ctx.named_user(params.unix_user.as_deref()).await?;
        let token = new_token(&ctx)?;
        let policy = ctx.policy.clone();
        let (about, org) = (params.email.clone(), params.org.clone());
        let access_until = params.access_until.is_some();
        let invitation = ctx
            .writer
            .write_about(caller.uid, &about, org.as_deref(), move |txn, now| {
                invitations::invite(txn, &caller, &params, named.clone(), &token, &policy, now)
            })
            .await?;
        if access_until {
            ctx.sweeper_wake.now();
        } else {
            tell_sweeper(&ctx.sweeper_wake, &invitation);
        }
        Ok(invitation)
    }
}

/// Tells the sweeper when `invitation` expires (an account that already existed was made a
/// member at once: nothing falls due).
fn tell_sweeper(wake: &crate::sweeper::Wake, invitation: &compartmentctl::wire::Invitation) {
    let Some(expires_at) = &invitation.expires_at else {
        return;
    };
    // Whole seconds, so at or before the expiry itself: the sweeper wakes no later.
    match humantime::parse_rfc3339(expires_at)
        .ok()
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|since| crate::store::Millis::try_from(since.as_millis()).ok())
    {
        Some(at) => wake.due_at(at),
        None => wake.now(),
    }
}

impl Serve for methods::UserRemove {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        let (about, org) = (params.email.clone(), params.org.clone());
        ctx.writer
            .write_about(caller.uid, &about, org.as_deref(), move |txn, now| {
                members::remove(txn, &caller, &params, now)
            })
            .await
    }
}

impl Serve for methods::RoleGrant {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        let (about, org) = (params.email.clone(), params.org.clone());
        let granted = ctx
            .writer
            .write_about(caller.uid, &about, org.as_deref(), move |txn, now| {
                members::grant(txn, &caller, &params, now)
            })
            .await?;
        if granted.until.is_some() {
            ctx.sweeper_wake.now();
        }
        Ok(granted)
    }
}

impl Serve for methods::UserBlock {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        let (about, org) = (params.email.clone(), params.org.clone());
        let blocked = ctx
            .writer
            .write_about(caller.uid, &about, org.as_deref(), move |txn, now| {
                lifecycle::block(txn, &caller, &params, now)
            })
            .await?;
        if blocked.block.until.is_some() {
            ctx.sweeper_wake.now();
        }
        Ok(blocked)
    }
}

impl Serve for methods::UserUnblock {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        let (about, org) = (params.email.clone(), params.org.clone());
        ctx.writer
            .write_about(caller.uid, &about, org.as_deref(), move |txn, now| {
                lifecycle::unblock(txn, &caller, &params, now)
            })
            .await
    }
}

impl Serve for methods::AccountActivate {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        ctx.writer
            .write_as(caller.uid, move |txn, now| {
                invitations::activate(txn, &caller, &params.token, now)
            })
            .await
    }
}

impl Serve for methods::AccountList {
    async fn serve(
        ctx: ReadContext<'_>,
        caller: Caller,
        _: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        let snapshot = ctx.snapshot()?;
        accounts::list(&snapshot, &caller, ctx.users(), ctx.now())
    }
}

impl Serve for methods::AccountShow {
    async fn serve(
        ctx: ReadContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        let snapshot = ctx.snapshot()?;
        accounts::show(&snapshot, &caller, ctx.users(), &params.email, ctx.now())
    }
}

impl Serve for methods::AccountUnbind {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        ctx.writer
            .write_as(caller.uid, move |txn, now| {
                accounts::unbind(txn, &caller, &params.email, now)
            })
            .await
    }
}

impl Serve for methods::AccountRename {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        ctx.writer
            .write_as(caller.uid, move |txn, now| {
                accounts::rename(txn, &caller, &params, now)
            })
            .await
    }
}

impl Serve for methods::AccountDelete {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        ctx.writer
            .write_as(caller.uid, move |txn, now| {
                accounts::delete(txn, &caller, &params, now)
            })
            .await
    }
}

impl Serve for methods::AuditList {
    async fn serve(
        ctx: ReadContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        audit::list_page(&ctx.snapshot()?, &caller, &params, ctx.now())
    }
}

impl Serve for methods::AuditVerify {
    async fn serve(
        ctx: ReadContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        caller.require_superuser("verifying the audit log")?;
        let keeper = ctx.audit();
        // What the daemon committed or saw before this snapshot was taken: the log must
        // still hold it, however its newest records were cut and its checkpoints removed.
        if let Some((seq, hash)) = ctx.last_sealed() {
            keeper.saw(seq, hash);
        }
        let known = keeper.known();
        let snapshot = ctx.snapshot()?;
        if let Some((seq, hash)) = snapshot.audit_head()? {
            keeper.saw(seq, hash);
        }
        // The whole log is read: off the runtime's workers, which go on serving others.
        let keeper = keeper.clone();
        tokio::task::spawn_blocking(move || {
            audit::verify(&snapshot, &caller, &params, &keeper.signer, known)
        })
        .await
        .map_err(|_| RuleError::Internal("verifying the audit log failed"))?
    }
}

impl Serve for methods::AuditCheckpoint {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        _: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        caller.require_superuser("signing a checkpoint of the audit log")?;
        let keeper = ctx.audit.clone();
        let signed = ctx
            .writer
            .write_as(caller.uid, move |txn, now| {
                audit::checkpoint(txn, &caller, &keeper.signer, now)
            })
            .await?;
        if let Some(hash) = crate::store::chain::unhex(&signed.hash) {
            ctx.audit.saw(signed.seq, hash);
        }
        Ok(signed)
    }
}

impl Serve for methods::AccountBind {
    async fn serve(
        ctx: WriteContext<'_>,
        caller: Caller,
        params: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        // Refused before NSS is asked, so nobody else learns what it would say.
        caller.require_superuser("binding accounts")?;
        let user = ctx.unix_user(&params.unix_user).await?;
        ctx.writer
            .write_as(caller.uid, move |txn, now| {
                accounts::bind(txn, &caller, &params, &user, now)
            })
            .await
    }
}

impl Serve for methods::AdminStatus {
    async fn serve(
        ctx: ReadContext<'_>,
        caller: Caller,
        _: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        caller.require_superuser("reading the daemon's status")?;
        Ok(ctx.status())
    }
}

impl Serve for methods::AdminMetrics {
    async fn serve(
        ctx: ReadContext<'_>,
        caller: Caller,
        _: Self::Params,
    ) -> Result<Self::Result, RuleError> {
        caller.require_superuser("reading the daemon's metrics")?;
        Ok(MetricsText {
            content_type: crate::metrics::CONTENT_TYPE.to_owned(),
            text: ctx.metrics_text(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    /// `whoami`'s answer, written straight from its struct, holds what the default
    /// encoding (through a `Value`) gives, and names the same organization and person for
    /// the log: none.
    #[test]
    fn whoami_is_encoded_as_through_a_value() {
        use compartmentctl::wire::OrgMembership;
        use compartmentctl::wire::{AccountInfo, AccountStatus, MemberBlock, MemberStatus};
        let member = |org: &str| OrgMembership {
            org: org.to_owned(),
            role: Role::Deployer,
            status: MemberStatus::Active,
            usable: None,
            blocked: None,
            group: None,
        };
        let everything = WhoAmI {
            uid: 1001,
            gid: 1001,
            pid: Some(42),
            superuser: false,
            unix_user: Some("alice \"the\" admin".to_owned()),
            binding_problem: Some("the user was deleted".to_owned()),
            account: Some(AccountInfo {
                email: "alice@example.com".to_owned(),
                status: AccountStatus::Active,
            }),
            current_org: Some("acme".to_owned()),
            memberships: vec![
                member("acme"),
                OrgMembership {
                    usable: Some(false),
                    blocked: Some(MemberBlock {
                        reason: "laptop stolen\n".to_owned(),
                        by: "admin@example.com".to_owned(),
                        at: "2026-12-07T10:00:00Z".to_owned(),
                        until: Some("2026-12-09T10:00:00Z".to_owned()),
                    }),
                    group: Some("ops".to_owned()),
                    ..member("beta")
                },
            ],
            permissions: Permission::ALL.to_vec(),
        };
        let nothing = WhoAmI {
            uid: 0,
            gid: 0,
            pid: None,
            superuser: true,
            unix_user: None,
            binding_problem: None,
            account: None,
            current_org: None,
            memberships: Vec::new(),
            permissions: Vec::new(),
        };
        for who in [everything, nothing] {
            let direct = <methods::Whoami as Serve>::encode(who.clone()).unwrap();
            let by_default = through_a_value(&who).unwrap();
            let text = |answer: &Answer| match &answer.result {
                EncodedResult::Json(text) => serde_json::from_str::<Value>(text.get()).unwrap(),
                other => panic!("{other:?}"),
            };
            assert_eq!(text(&direct), text(&by_default), "{who:?}");
            assert_eq!(text(&direct), serde_json::to_value(&who).unwrap());
            assert_eq!(direct.org, by_default.org);
            assert_eq!(direct.about.email, by_default.about.email);
            assert_eq!(direct.about.role, by_default.about.role);
        }
    }

    use compartmentctl::wire::{Decision, Permission, Reason, Role};

    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::clock::Clock;
    use crate::store::Store;
    use crate::users::CallerNames;
    use crate::writer::Writer;

    fn text(answer: &Answer) -> String {
        serde_json::to_string(&answer.result).unwrap()
    }

    /// `authz.check`'s answers, written straight from the struct, read exactly as every
    /// other result does through a `Value` (members sorted): no client sees a difference.
    #[test]
    fn authz_answers_are_written_as_through_a_value() {
        let allowed = Decision {
            allowed: true,
            email: Some("deploy@example.com".into()),
            message: "deploy@example.com is deployer in acme".into(),
            org: Some("acme".into()),
            permission: Permission::DeploymentCreate,
            reason: Reason::Role,
            role: Some(Role::Deployer),
            uid: Some(1001),
            user: Some("deploy".into()),
        };
        let refused = Decision {
            allowed: false,
            email: None,
            message: "uid 7 has no Unix user".into(),
            org: None,
            permission: Permission::ProjectRead,
            reason: Reason::NoSuchUser,
            role: None,
            uid: Some(7),
            user: None,
        };
        let answers = [
            AuthzAnswer::One(allowed.clone()),
            AuthzAnswer::One(refused.clone()),
            AuthzAnswer::Many {
                decisions: vec![allowed, refused],
            },
        ];
        for answer in answers {
            let through_a_value =
                serde_json::value::to_raw_value(&serde_json::to_value(&answer).unwrap()).unwrap();
            let org = match &answer {
                AuthzAnswer::One(decision) => decision.org.clone(),
                AuthzAnswer::Many { .. } => None,
            };
            let encoded = <methods::AuthzCheck as Serve>::encode(answer).unwrap();
            assert!(matches!(encoded.result, EncodedResult::Authz(_)));
            assert_eq!(text(&encoded), through_a_value.get());
            assert_eq!(encoded.org, org);
        }
    }

    /// A context on a temporary store, with the users of `users`, uid 999 as the daemon's,
    /// and `service_group`.
    fn context(
        users: Arc<crate::users::FakeUsers>,
        service_group: Option<u32>,
    ) -> (Context, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::FakeClock::new(1_777_636_800_000));
        let (writer, _thread) = Writer::spawn(store.clone(), clock.clone()).unwrap();
        let writer_metrics = writer.metrics();
        let ctx = Context {
            store: crate::store::ReadSide::new(store),
            writer,
            clock,
            policy: Arc::new(crate::rules::tests::policy()),
            daemon_uid: 999,
            sweeper_wake: Arc::default(),
            users,
            service_group,
            caller_names: CallerNames::default(),
            stale_audited: Mutex::default(),
            replays: events::Replays::new(4, 32),
            admission: crate::admission::Admission::new(
                &crate::limits::Limits::default(),
                Some(dir.path().to_owned()),
            ),
            started: std::time::Instant::now(),
            slots: crate::limits::Slots::new(crate::limits::Limits::default()),
            last_sweep: Arc::default(),
            audit: Arc::new(crate::checkpoint::Keeper::new(
                crate::checkpoint::Signer::from_secret(&[1; 32], "test/compartment-audit".into()),
                std::time::Duration::from_secs(3600),
            )),
            refusals: Arc::new(crate::refusals::Refusals::new(
                &crate::limits::Limits::default(),
            )),
            metrics: Arc::new(crate::metrics::Metrics::new(writer_metrics, true)),
        };
        (ctx, dir)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    /// acme, its admin `alice` (uid 1001) active.
    async fn acme(ctx: &Context) -> Caller {
        let root = ctx.identify_at_connect(ctx.caller(0, 0, None)).await;
        let created = dispatch(
            ctx,
            root,
            Request::OrgCreate(compartmentctl::wire::OrgCreateParams {
                name: "acme".into(),
                admin: "alice@example.com".into(),
                admin_unix_user: None,
                expires_in: Default::default(),
            }),
        )
        .await
        .unwrap();
        let created: compartmentctl::wire::OrgCreated =
            serde_json::from_str(&text(&created)).unwrap();
        let alice = ctx.identify_at_connect(ctx.caller(1001, 1001, None)).await;
        dispatch(
            ctx,
            alice.clone(),
            Request::AccountActivate(compartmentctl::wire::ActivateParams {
                token: created.admin.activation_url.unwrap(),
            }),
        )
        .await
        .unwrap();
        alice
    }

    fn check(permission: Permission) -> Check {
        Check {
            permission,
            org: Some("acme".into()),
            uid: None,
            user: None,
            email: None,
        }
    }

    async fn ask(
        ctx: &Context,
        caller: &Caller,
        checks: Vec<Check>,
    ) -> Result<Vec<Decision>, RuleError> {
        let answered = dispatch(
            ctx,
            caller.clone(),
            Request::AuthzCheck(AuthzCheckParams::Many(checks)),
        )
        .await?;
        let answer: Value = serde_json::from_str(&text(&answered)).unwrap();
        Ok(serde_json::from_value(answer["decisions"].clone()).unwrap())
    }

    /// A check naming the caller's own user asks NSS nothing: the caller is who it names.
    #[test]
    fn a_check_by_the_callers_own_name_asks_nss_nothing() {
        let users = crate::users::FakeUsers::new(&[(1001, "alice"), (1002, "bob")]);
        let (ctx, _dir) = context(users.clone(), None);
        runtime().block_on(async {
            let alice = acme(&ctx).await;
            let before = users.lookups();
            let mut by_name = check(Permission::ProjectRead);
            by_name.user = Some("alice".into());
            let decisions = ask(&ctx, &alice, vec![by_name]).await.unwrap();
            assert!(decisions[0].allowed, "{decisions:?}");
            assert_eq!(decisions[0].email.as_deref(), Some("alice@example.com"));
            assert_eq!(users.lookups(), before, "NSS was asked");
            // Someone else's name is still refused to a non-service, before any lookup.
            let mut other = check(Permission::ProjectRead);
            other.user = Some("bob".into());
            let err = ask(&ctx, &alice, vec![other]).await.unwrap_err();
            assert_eq!(err.kind(), compartmentctl::wire::ErrorKind::Forbidden);
            assert!(matches!(err, RuleError::NotAService), "{err:?}");
            assert_eq!(users.lookups(), before, "NSS was asked");
        });
    }

    /// A batch reads how its subject stands in an organization once for all the checks
    /// there: every answer is still the one that check gets alone, whatever organization
    /// each names (one, none, one that does not exist) and in whatever order.
    #[test]
    fn a_batch_answers_each_check_as_it_is_answered_alone() {
        let users = crate::users::FakeUsers::new(&[(1001, "alice"), (1002, "bob")]);
        let (ctx, _dir) = context(users, None);
        runtime().block_on(async {
            let alice = acme(&ctx).await;
            let mut checks = Vec::new();
            for (i, permission) in Permission::ALL.iter().enumerate() {
                for org in [Some("acme"), None, Some("nowhere")] {
                    let mut asked = check(*permission);
                    asked.org = org.map(str::to_owned);
                    checks.push(asked);
                }
                // Alice again, named by her uid: a subject of its own to the batch.
                if i % 3 == 0 {
                    let mut by_uid = check(*permission);
                    by_uid.uid = Some(1001);
                    checks.push(by_uid);
                }
            }
            let batched = ask(&ctx, &alice, checks.clone()).await.unwrap();
            assert_eq!(batched.len(), checks.len());
            for (asked, answered) in checks.into_iter().zip(batched) {
                let alone = dispatch(
                    &ctx,
                    alice.clone(),
                    Request::AuthzCheck(AuthzCheckParams::One(asked.clone())),
                )
                .await;
                let alone: Decision = match alone {
                    Ok(answer) => serde_json::from_str(&text(&answer)).unwrap(),
                    Err(err) => panic!("{asked:?}: {err:?}"),
                };
                assert_eq!(answered, alone, "{asked:?}");
            }
        });
    }

    /// A thousand copies of a question cost what one does, and every copy gets its answer,
    /// in order.
    #[test]
    fn identical_checks_are_answered_once() {
        let users = crate::users::FakeUsers::new(&[(1001, "alice"), (1002, "bob")]);
        let (ctx, _dir) = context(users.clone(), None);
        runtime().block_on(async {
            let alice = acme(&ctx).await;
            let root = ctx.identify_at_connect(ctx.caller(0, 0, None)).await;
            let mut about_bob = check(Permission::ProjectRead);
            about_bob.uid = Some(1002);
            let before = users.lookups();
            let decisions = ask(&ctx, &root, vec![about_bob.clone(); 1000])
                .await
                .unwrap();
            assert_eq!(decisions.len(), 1000);
            assert!(decisions.iter().all(|d| *d == decisions[0]));
            assert_eq!(decisions[0].uid, Some(1002));
            // bob's name, asked once (the fake table caches nothing).
            assert_eq!(users.lookups() - before, 1);
            // Mixed: each copy answered where it stands.
            let mut about_alice = check(Permission::OrganizationUserInvite);
            about_alice.uid = Some(1001);
            let mixed = vec![about_bob.clone(), about_alice.clone(), about_bob];
            let decisions = ask(&ctx, &root, mixed).await.unwrap();
            let uids: Vec<_> = decisions.iter().map(|d| (d.uid, d.allowed)).collect();
            assert_eq!(
                uids,
                [(Some(1002), false), (Some(1001), true), (Some(1002), false)]
            );
            let _ = alice;
        });
    }

    /// The peer's gid grants nothing: only the user database's groups make a service, and
    /// a user moved out of the group is no service at its next request.
    #[test]
    fn a_service_is_what_the_user_database_says() {
        const SERVICES: u32 = 5000;
        let users = crate::users::FakeUsers::new(&[(1001, "alice"), (1003, "svc")]);
        let (ctx, _dir) = context(users.clone(), Some(SERVICES));
        runtime().block_on(async {
            acme(&ctx).await;
            let mut about_alice = check(Permission::ProjectRead);
            about_alice.uid = Some(1001);
            // Running with the service group's gid (setgid, `sg`): not a service.
            let setgid = ctx
                .identify_at_connect(ctx.caller(1003, SERVICES, None))
                .await;
            let err = ask(&ctx, &setgid, vec![about_alice.clone()])
                .await
                .unwrap_err();
            assert!(matches!(err, RuleError::NotAService), "{err:?}");
            // Its passwd entry's primary group: a service, whatever gid it runs with.
            users.set_primary_group(1003, SERVICES);
            let plain = ctx.identify_at_connect(ctx.caller(1003, 1003, None)).await;
            let decisions = ask(&ctx, &plain, vec![about_alice.clone()]).await.unwrap();
            assert!(decisions[0].allowed, "{decisions:?}");
            assert!(ctx.is_service(&setgid).await);
            // `usermod -g` moves it out: the same open connection is no service.
            users.set_primary_group(1003, 1003);
            assert!(!ctx.is_service(&plain).await);
            let err = ask(&ctx, &plain, vec![about_alice.clone()])
                .await
                .unwrap_err();
            assert!(matches!(err, RuleError::NotAService), "{err:?}");
            // Listed in the group: a service again.
            users.add_to_group("svc", SERVICES);
            assert!(ctx.is_service(&plain).await);
        });
    }

    /// A uid handed to a new user is the new user from its first connection on, even while
    /// answers about others still hold the old name.
    #[test]
    fn a_connection_asks_who_its_caller_is_uncached() {
        let users = crate::users::FakeUsers::new(&[(1001, "alice")]);
        let (ctx, _dir) = context(users.clone(), None);
        runtime().block_on(async {
            let alice = acme(&ctx).await;
            let who = dispatch(&ctx, alice.clone(), Request::Whoami)
                .await
                .unwrap();
            assert!(text(&who).contains("alice@example.com"), "{}", text(&who));
            users.set(1001, Some("mallory"));
            let mallory = ctx.identify_at_connect(ctx.caller(1001, 1001, None)).await;
            assert_eq!(mallory.user.as_deref(), Some("mallory"));
            let err = dispatch(&ctx, mallory, Request::OrgList).await.unwrap_err();
            assert_eq!(err.kind(), compartmentctl::wire::ErrorKind::Unauthenticated);
            // alice's connection, opened before: the same uid, now named anew.
            let err = dispatch(&ctx, alice, Request::OrgList).await.unwrap_err();
            assert_eq!(err.kind(), compartmentctl::wire::ErrorKind::Unauthenticated);
        });
    }
}
