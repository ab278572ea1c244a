//! Glances: the few rows one decision reads about one uid in one organization, read in one
//! statement, and that statement shared by every decision waiting for one.
//!
//! `authz.check` is the question services ask thousands of times a second. Answered from a
//! read-only transaction, it costs PostgreSQL a `BEGIN`, a statement per row it reads and a
//! `ROLLBACK`, each a round trip. A glance costs a share of one statement: the decisions
//! asked while a glance statement runs wait for the next, which reads all their rows at
//! once (`unnest` of their uids and organizations). Each statement begins after every
//! question it answers was asked, and a statement sees one moment, so a glance is as exact
//! as a snapshot taken when the question came: a member removed through any daemon, the
//! removal answered, is refused by the next question (DESIGN §8, across hosts).
//!
//! The glances remember what their last statement read, and the moment it was read at:
//! the server's start and its snapshot (`pg_current_snapshot()`: the transactions finished
//! and those running). When every question waiting was answered before, and the last
//! statement found the moment of the one before it, the next reads the moment alone, which
//! costs PostgreSQL what `SELECT 1` does, a third of the glance statement. The same moment
//! sees the same rows, so the answers remembered are exact; another moment and the rows
//! are read again. Any transaction that commits anywhere in the cluster changes the
//! snapshot, and a restarted or another server its start. A database that changes often
//! thus has its rows read at once, not its moment first.
//!
//! A glance knows only its rows. A read beyond them is answered
//! [`StoreError::BeyondGlance`], and the decision is made again on a snapshot
//! (`Glance` in `store/engine.rs`): the caller names no organization and has chosen none
//! with `org use`, or asks about someone by address.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use deadpool_postgres::Pool;
use tokio::sync::oneshot;
use tokio_postgres::Row;

use super::columns::{binding, membership, org, prefixed, BINDING, MEMBERSHIP, ORG};
use super::follow::Shared;
use super::pending::Pending;
use crate::store::{
    AccountRecord, BindingRecord, ChainHash, EventRecord, MemberRow, MembershipRecord, Millis,
    OrgRecord, Reader, Result, Sealed, StoreError, TokenHash, TokenRecord,
};

/// Glance statements running at once, each on a connection of the glances' own pool. A
/// question asked while they all run waits for the next, which answers every question
/// waiting: the fewer at once, the more each answers, and a statement for seven costs
/// PostgreSQL little more than one for one. Measured with 16 connections asking: one at a
/// time answered 6.6 questions a statement and 36,000 checks a second; two, 3.4 and 31,000;
/// four, 2.5 and 26,000.
pub(super) const AT_ONCE: usize = 1;

/// How many times a glance refused for a dead connection is tried again.
const RETRIES: usize = 3;

/// The most questions one statement answers.
const BATCH: usize = 512;

/// The most answers remembered: past it, all are forgotten, and read again when asked. Any
/// local uid may ask about any organization name, so this bounds what asking costs the
/// daemon's memory (a remembered answer holds a few hundred bytes): about a megabyte.
/// Services that ask about more at once have their rows read, as before anything was
/// remembered.
pub(super) const KNOWN: usize = 4_096;

/// What one decision reads, as one moment of the database had it.
#[derive(Debug, Clone)]
pub struct Glance {
    uid: u32,
    binding: Option<BindingRecord>,
    current_org: Option<String>,
    /// The organization named, else the uid's current one, with its row and the bound
    /// account's membership there.
    org: Option<InOrg>,
}

#[derive(Debug, Clone)]
struct InOrg {
    name: String,
    record: Option<OrgRecord>,
    membership: Option<MembershipRecord>,
}

/// The glances of one store. No task of its own: the asker of a question that finds fewer
/// than [`AT_ONCE`] statements running sends one itself, for its question and every one
/// waiting, and answers them; when it is done, the first waiting (if any) is handed the
/// turn and does the same. A question asked alone thus costs no hop between tasks.
pub(super) struct Glances {
    pool: Pool,
    shared: Arc<Shared>,
    turns: Arc<Mutex<Turns>>,
    /// Boxed: the store is held by value beside redb's, which is smaller.
    known: Box<Mutex<Known>>,
    /// Questions answered from what was remembered.
    remembered: AtomicU64,
}

/// What the glances read, all at one moment of the database.
#[derive(Default)]
struct Known {
    moment: Option<String>,
    glances: HashMap<Question, Glance>,
    /// Whether the last statement found the moment of the one before.
    steady: bool,
}

#[derive(Default)]
struct Turns {
    /// Statements running, or turns handed to an asker and not yet given back.
    leading: usize,
    waiting: VecDeque<Ask>,
}

#[derive(PartialEq, Eq, Hash, Clone)]
struct Question {
    uid: u32,
    org: Option<String>,
}

/// A question waiting, and how to tell its asker the answer, or that it is its turn.
struct Ask {
    question: Question,
    told: oneshot::Sender<Told>,
}

enum Told {
    /// Boxed: a glance holds a membership and its terms, several times a turn's size.
    Answer(Box<Result<Glance>>),
    /// Send the statement for `own` (the receiver's question) and the turn's questions.
    Lead { own: Question, turn: Turn },
}

/// A turn to send a statement, with the questions it answers besides its holder's. However
/// it ends (answered, or dropped with a request cancelled midway, or in a message its
/// receiver dropped unread), it is passed on: the questions it did not answer wait again,
/// first, and the first waiting is handed the turn; none waiting, it is given back.
struct Turn {
    turns: Arc<Mutex<Turns>>,
    unanswered: Vec<Ask>,
    /// False once passed on by other means, so that dropping it does nothing.
    live: bool,
}

impl Glances {
    pub(super) fn new(pool: Pool, shared: Arc<Shared>) -> Glances {
        Glances {
            pool,
            shared,
            turns: Arc::default(),
            known: Box::default(),
            remembered: AtomicU64::new(0),
        }
    }

    /// What a decision about `uid` in `org` (else its current organization) reads, as the
    /// database has it after this call.
    pub(super) async fn glance(&self, uid: u32, org: Option<&str>) -> Result<Glance> {
        let question = Question {
            uid,
            org: org.map(str::to_owned),
        };
        // Either a turn, with the questions waiting, or a place among them.
        let heard = {
            let mut turns = lock(&self.turns);
            if turns.leading < AT_ONCE {
                turns.leading += 1;
                let unanswered = take_batch(&mut turns.waiting);
                Err((question, self.turn(unanswered)))
            } else {
                let (told, heard) = oneshot::channel();
                turns.waiting.push_back(Ask { question, told });
                Ok(heard)
            }
        };
        let heard = match heard {
            Ok(heard) => heard,
            Err((own, turn)) => return self.lead(own, turn).await,
        };
        match heard.await {
            Ok(Told::Answer(answer)) => *answer,
            Ok(Told::Lead { own, turn }) => self.lead(own, turn).await,
            // A question waiting is answered or handed a turn, unless the store is dropped.
            Err(_) => Err(StoreError::Unreachable("the store is closing".into())),
        }
    }

    /// How many questions were answered from what was remembered, and how many answers
    /// are remembered now.
    #[cfg(test)]
    pub(super) fn remembered(&self) -> (u64, usize) {
        (
            self.remembered.load(Ordering::Relaxed),
            lock(&self.known).glances.len(),
        )
    }

    fn turn(&self, unanswered: Vec<Ask>) -> Turn {
        Turn {
            turns: self.turns.clone(),
            unanswered,
            live: true,
        }
    }

    /// Sends the statement for `own` and the turn's questions, answers those, and passes
    /// the turn on.
    async fn lead(&self, own: Question, mut turn: Turn) -> Result<Glance> {
        let questions: Vec<&Question> = std::iter::once(&own)
            .chain(turn.unanswered.iter().map(|ask| &ask.question))
            .collect();
        let read = self.read(&questions).await;
        let others = std::mem::take(&mut turn.unanswered);
        drop(turn);
        match read {
            Ok(glances) => {
                let mut glances = glances.into_iter();
                let own = glances.next();
                for (ask, glance) in others.into_iter().zip(glances) {
                    // An asker gone is not answered.
                    let _ = ask.told.send(Told::Answer(Box::new(Ok(glance))));
                }
                own.ok_or_else(|| corrupt("no row for a question".into()))
            }
            Err(err) => {
                for ask in others {
                    // PostgreSQL out of reach is everyone's answer; another failure each
                    // decision meets again on a snapshot of its own, and reports.
                    let told = match &err {
                        StoreError::Unreachable(why) => StoreError::Unreachable(why.clone()),
                        err if err.is_unreachable() => StoreError::Unreachable(err.to_string()),
                        _ => StoreError::BeyondGlance,
                    };
                    let _ = ask.told.send(Told::Answer(Box::new(Err(told))));
                }
                Err(err)
            }
        }
    }

    /// The rows of each of `questions`, in order, read in one statement; or, when every
    /// one was read before and nothing changed since the last statement, the moment alone
    /// is read, and the rows remembered answer if it is still theirs.
    async fn read(&self, questions: &[&Question]) -> Result<Vec<Glance>> {
        if !self.shared.ready.load(Ordering::Acquire) {
            return Err(StoreError::Unreachable(
                "PostgreSQL has not been reached since the daemon started".into(),
            ));
        }
        let remembered = {
            let known = lock(&self.known);
            let answers: Option<Vec<Glance>> = match (&known.moment, known.steady) {
                (Some(_), true) => questions
                    .iter()
                    .map(|asked| known.glances.get(*asked).cloned())
                    .collect(),
                _ => None,
            };
            answers.zip(known.moment.clone())
        };
        if let Some((answers, moment)) = remembered {
            let row = self.query(MOMENT, &[]).await?;
            let now: String = row
                .first()
                .ok_or_else(|| corrupt("no moment".into()))?
                .try_get("moment")?;
            if now == moment {
                self.remembered
                    .fetch_add(answers.len() as u64, Ordering::Relaxed);
                return Ok(answers);
            }
        }
        let uids: Vec<i64> = questions.iter().map(|asked| i64::from(asked.uid)).collect();
        let orgs: Vec<Option<&str>> = questions.iter().map(|asked| asked.org.as_deref()).collect();
        let rows = self.query(sql(), &[&uids, &orgs]).await?;
        if rows.len() != questions.len() {
            return Err(corrupt(format!(
                "{} rows for {} questions",
                rows.len(),
                questions.len()
            )));
        }
        let glances = questions
            .iter()
            .zip(&rows)
            .map(|(asked, row)| glance(asked.uid, row))
            .collect::<Result<Vec<_>>>()?;
        let now: Option<String> = rows.first().map(|row| row.try_get("moment")).transpose()?;
        let mut known = lock(&self.known);
        // Steady: the moment the last statement saw, still. Else the next statement reads
        // the rows again rather than the moment first, since a database that changes
        // often would make that two round trips a question.
        known.steady = now.is_some() && known.moment == now;
        if !known.steady || known.glances.len() + glances.len() > KNOWN {
            known.glances.clear();
            known.moment = now;
        }
        for (asked, glance) in questions.iter().zip(&glances) {
            known.glances.insert((*asked).clone(), glance.clone());
        }
        Ok(glances)
    }

    /// The rows `sql` answers with `params`, on the glances' connection.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        // A connection of the pool may have died with the server it talked to, unknown to
        // the pool: the statement fails, nothing was done, and it is tried again (a
        // connection that fails twice, first with the server's farewell, then closed, is
        // not handed out a third time).
        let mut attempts = 0;
        loop {
            let client = self
                .pool
                .get()
                .await
                .map_err(|err| StoreError::Unreachable(err.to_string()))?;
            let rows = async {
                let statement = client.prepare_cached(sql).await?;
                client.query(&statement, params).await
            }
            .await
            .map_err(StoreError::from);
            match rows {
                Err(err) if err.is_unreachable() && attempts < RETRIES => {
                    attempts += 1;
                }
                rows => return rows,
            }
        }
    }
}

/// A glance's answer that does not make sense: `detail` says how.
pub(super) fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt {
        table: "glance",
        detail,
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        let mut turns = lock(&self.turns);
        for ask in self.unanswered.drain(..).rev() {
            turns.waiting.push_front(ask);
        }
        while let Some(next) = turns.waiting.pop_front() {
            let turn = Turn {
                turns: self.turns.clone(),
                unanswered: take_batch(&mut turns.waiting),
                live: true,
            };
            let own = next.question;
            match next.told.send(Told::Lead { own, turn }) {
                Ok(()) => return,
                // Its asker is gone: the turn's questions wait for the one after it.
                Err(Told::Lead { mut turn, .. }) => {
                    turn.live = false;
                    for ask in turn.unanswered.drain(..).rev() {
                        turns.waiting.push_front(ask);
                    }
                }
                Err(Told::Answer(_)) => {}
            }
        }
        turns.leading -= 1;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// At most a statement's worth of the questions waiting, first come first.
fn take_batch(waiting: &mut VecDeque<Ask>) -> Vec<Ask> {
    let count = waiting.len().min(BATCH - 1);
    waiting.drain(..count).collect()
}

/// The moment of the database: the server's start, and its snapshot (the transactions
/// finished, and those running). Equal moments see the same rows.
const MOMENT: &str =
    "SELECT pg_postmaster_start_time()::text || ' ' || pg_current_snapshot()::text AS moment";

/// The statement of glances: the rows of the decisions about the uids `$1` each in the
/// organization beside it in `$2` (else its current one), a row per question in the order
/// asked, each with the moment it was read at; each table's columns named as its own reads
/// name them, so that its row is parsed as they parse it.
pub(super) fn sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT asked.n, ({MOMENT}) AS moment,
                    b.uid IS NOT NULL AS bound, {BINDING_COLUMNS},
                    current.org AS current_org, here.name AS here,
                    o.name IS NOT NULL AS org_exists, {ORG_COLUMNS},
                    m.role IS NOT NULL AS member, {MEMBERSHIP_COLUMNS}
             FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS asked (uid, org, n)
             LEFT JOIN bindings b ON b.uid = asked.uid
             LEFT JOIN current_org current ON current.uid = asked.uid
             CROSS JOIN LATERAL (SELECT coalesce(asked.org, current.org) AS name) here
             LEFT JOIN orgs o ON o.name = here.name
             LEFT JOIN memberships m ON m.org = here.name AND m.email = b.email
             ORDER BY asked.n",
            BINDING_COLUMNS = prefixed("b", BINDING),
            ORG_COLUMNS = prefixed("o", ORG),
            MEMBERSHIP_COLUMNS = prefixed("m", MEMBERSHIP),
        )
    })
}

/// The glance at `uid` a row of [`sql`] holds.
pub(super) fn glance(uid: u32, row: &Row) -> Result<Glance> {
    let binding = match row.try_get("bound")? {
        true => Some(binding(row)?),
        false => None,
    };
    let org = match row.try_get::<_, Option<String>>("here")? {
        Some(name) => Some(InOrg {
            name,
            record: match row.try_get("org_exists")? {
                true => Some(org(row)?),
                false => None,
            },
            membership: match row.try_get("member")? {
                true => Some(membership(row)?),
                false => None,
            },
        }),
        None => None,
    };
    Ok(Glance {
        uid,
        binding,
        current_org: row.try_get("current_org")?,
        org,
    })
}

impl Glance {
    /// Tells a transaction that read the glance in its snapshot what it holds.
    pub(super) fn teach(self, pending: &mut Pending) {
        pending.bindings.learn(self.uid, self.binding.clone());
        pending.current_org.learn(self.uid, self.current_org);
        if let Some(here) = self.org {
            pending.orgs.learn(here.name.clone(), here.record);
            if let Some(binding) = self.binding {
                pending
                    .memberships
                    .learn((here.name, binding.email), here.membership);
            }
        }
    }

    fn in_org(&self, name: &str) -> Result<&InOrg> {
        self.org
            .as_ref()
            .filter(|here| here.name == name)
            .ok_or(StoreError::BeyondGlance)
    }
}

/// Reads of the glance's rows; any other is [`StoreError::BeyondGlance`].
impl Reader for Glance {
    fn org(&self, name: &str) -> Result<Option<OrgRecord>> {
        Ok(self.in_org(name)?.record.clone())
    }

    fn binding(&self, uid: u32) -> Result<Option<BindingRecord>> {
        match uid == self.uid {
            true => Ok(self.binding.clone()),
            false => Err(StoreError::BeyondGlance),
        }
    }

    fn current_org(&self, uid: u32) -> Result<Option<String>> {
        match uid == self.uid {
            true => Ok(self.current_org.clone()),
            false => Err(StoreError::BeyondGlance),
        }
    }

    fn orgs_of_groups(&self, _: &[u32]) -> Result<Vec<String>> {
        Err(StoreError::BeyondGlance)
    }

    fn membership(&self, org: &str, email: &str) -> Result<Option<MembershipRecord>> {
        let here = self.in_org(org)?;
        match &self.binding {
            Some(binding) if binding.email == email => Ok(here.membership.clone()),
            _ => Err(StoreError::BeyondGlance),
        }
    }

    fn org_names(&self) -> Result<Vec<String>> {
        Err(StoreError::BeyondGlance)
    }

    fn account(&self, _: &str) -> Result<Option<AccountRecord>> {
        Err(StoreError::BeyondGlance)
    }

    fn accounts(&self) -> Result<Vec<(String, AccountRecord)>> {
        Err(StoreError::BeyondGlance)
    }

    fn members(&self, _: &str) -> Result<Vec<(String, MembershipRecord)>> {
        Err(StoreError::BeyondGlance)
    }

    fn members_after(
        &self,
        _: &str,
        _: Option<&str>,
        _: usize,
    ) -> Result<Vec<(String, MemberRow)>> {
        Err(StoreError::BeyondGlance)
    }

    fn active_admins(&self, _: &str, _: usize) -> Result<usize> {
        Err(StoreError::BeyondGlance)
    }

    fn orgs_of(&self, _: &str) -> Result<Vec<String>> {
        Err(StoreError::BeyondGlance)
    }

    fn token(&self, _: &TokenHash) -> Result<Option<TokenRecord>> {
        Err(StoreError::BeyondGlance)
    }

    fn next_due(&self) -> Result<Option<Millis>> {
        Err(StoreError::BeyondGlance)
    }

    fn due_memberships_up_to(&self, _: Millis, _: usize) -> Result<Vec<(String, String)>> {
        Err(StoreError::BeyondGlance)
    }

    fn audit_after(&self, _: u64, _: usize) -> Result<Vec<Sealed>> {
        Err(StoreError::BeyondGlance)
    }

    fn org_audit_after(&self, _: &str, _: u64, _: usize) -> Result<Vec<Sealed>> {
        Err(StoreError::BeyondGlance)
    }

    fn audit_head(&self) -> Result<Option<(u64, ChainHash)>> {
        Err(StoreError::BeyondGlance)
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>> {
        Err(StoreError::BeyondGlance)
    }

    fn checkpoint_at(&self, _: u64) -> Result<Option<String>> {
        Err(StoreError::BeyondGlance)
    }

    fn events_after(&self, _: u64, _: usize) -> Result<Vec<(u64, EventRecord)>> {
        Err(StoreError::BeyondGlance)
    }

    fn org_events_after(&self, _: &str, _: u64, _: usize) -> Result<Vec<(u64, EventRecord)>> {
        Err(StoreError::BeyondGlance)
    }

    fn spent_tokens_due(&self, _: Millis, _: usize) -> Result<Vec<TokenHash>> {
        Err(StoreError::BeyondGlance)
    }

    fn next_spent_token_due(&self) -> Result<Option<Millis>> {
        Err(StoreError::BeyondGlance)
    }

    fn last_event_seq(&self) -> Result<u64> {
        Err(StoreError::BeyondGlance)
    }
}
