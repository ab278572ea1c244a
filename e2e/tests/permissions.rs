//! The permission table of DESIGN §2–§4 as code: every method × caller kind × target run
//! against one real daemon, each outcome (`ok` or the error's `data.kind`) checked, and
//! every mismatch listed at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt;

use compartment_e2e::{
    parse_invitation_lines, parse_invite, root_test, Daemon, DaemonOptions, Database, Out,
    TestUser, ROOT,
};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Who calls, and where

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// uid 0.
    Superuser,
    /// Active members of `acme`, each its own Unix user.
    Admin,
    Deployer,
    Readonly,
    Viewer,
    /// An active admin of `beta` only.
    Outsider,
    /// A Unix user bound to no account.
    Unbound,
}

use Caller::*;

const CALLERS: [Caller; 7] = [
    Superuser, Admin, Deployer, Readonly, Viewer, Outsider, Unbound,
];

impl Caller {
    /// The caller's uid: root's, or that of the Unix user `cpt-<name>`.
    fn uid(self) -> u32 {
        match self {
            Superuser => ROOT,
            _ => TestUser::get(&format!("cpt-{}", self.name())).uid,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Superuser => "superuser",
            Admin => "admin",
            Deployer => "deployer",
            Readonly => "readonly",
            Viewer => "viewer",
            Outsider => "outsider",
            Unbound => "unbound",
        }
    }
}

/// A member of both organizations with the viewer role, whose role the `role.grant` rows
/// set to viewer again: a grant every granter may make, so it tests only authorization.
const GRANTEE_USER: &str = "cpt-grantee";
const GRANTEE: &str = "grantee@example.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `acme`: the organization of admin, deployer, readonly and viewer.
    Own,
    /// `beta`: the outsider's organization, which acme's members cannot see.
    Other,
    /// `nope`: no such organization.
    Missing,
}

use Target::*;

const TARGETS: [Target; 3] = [Own, Other, Missing];

impl Target {
    fn org(self) -> &'static str {
        match self {
            Own => "acme",
            Other => "beta",
            Missing => "nope",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Own => "own",
            Other => "other",
            Missing => "missing",
        }
    }
}

// ---------------------------------------------------------------------------------------
// The table

const OK: &str = "ok";
const UNAUTH: &str = "unauthenticated";
const FORBIDDEN: &str = "forbidden";
const NOT_FOUND: &str = "not_found";
const EXISTS: &str = "already_exists";
const INVALID_TOKEN: &str = "invalid_token";

/// Every method, in the order of the table.
const METHODS: [&str; 11] = [
    "ping",
    "whoami",
    "role.list",
    "org.list",
    "org.use",
    "org.create",
    "user.list",
    "user.invite",
    "user.remove",
    "role.grant",
    "account.activate",
];

/// What DESIGN §2–§4 says each call must answer, for the targets own (acme), other (beta)
/// and missing (nope), in that order. How each method reads its target (see [`request`]):
///
/// - `ping`, `whoami`, `role.list`, `org.list` take no organization: the target is ignored
///   and the row is run three times, so the table stays complete.
/// - `org.use <org>`; `user.list`, `user.invite`, `user.remove`, `role.grant` with
///   `--org <org>`.
/// - `org.create <name>`: own creates `acme` and other `beta` again (both exist); missing
///   creates a fresh name that exists nowhere (a different one per row, so that a
///   superuser's success never makes `nope` exist for later rows).
/// - `user.invite` a fresh address as viewer; `user.remove` a fresh viewer invited by root
///   just before the row; `role.grant viewer` to grantee@example.com, an active viewer of
///   acme and beta.
/// - `account.activate` of a token nobody was issued: own sends a well-formed bare token,
///   other a whole activation URL, missing a string that is not token-shaped at all.
///
/// The checks run in this order: (1) an unbound uid may only `ping`, `whoami`,
/// `role.list` and `account.activate`, else `unauthenticated`; (2) an organization that
/// does not exist or that the caller is not an active member of is `not_found`
/// (superusers see every organization); (3) the role (`user.list` readonly+, `role.grant`
/// deployer+, `user.invite`/`user.remove` admin; superusers act as admin), else
/// `forbidden`; (4) the request itself. `org.create` is for superusers only.
#[rustfmt::skip]
const TABLE: &[(&str, Caller, [&str; 3])] = &[
    //  method            caller        own            other          missing
    ("ping",             Superuser, [OK,            OK,            OK           ]),
    ("ping",             Admin,     [OK,            OK,            OK           ]),
    ("ping",             Deployer,  [OK,            OK,            OK           ]),
    ("ping",             Readonly,  [OK,            OK,            OK           ]),
    ("ping",             Viewer,    [OK,            OK,            OK           ]),
    ("ping",             Outsider,  [OK,            OK,            OK           ]),
    ("ping",             Unbound,   [OK,            OK,            OK           ]),

    ("whoami",           Superuser, [OK,            OK,            OK           ]),
    ("whoami",           Admin,     [OK,            OK,            OK           ]),
    ("whoami",           Deployer,  [OK,            OK,            OK           ]),
    ("whoami",           Readonly,  [OK,            OK,            OK           ]),
    ("whoami",           Viewer,    [OK,            OK,            OK           ]),
    ("whoami",           Outsider,  [OK,            OK,            OK           ]),
    ("whoami",           Unbound,   [OK,            OK,            OK           ]),

    ("role.list",        Superuser, [OK,            OK,            OK           ]),
    ("role.list",        Admin,     [OK,            OK,            OK           ]),
    ("role.list",        Deployer,  [OK,            OK,            OK           ]),
    ("role.list",        Readonly,  [OK,            OK,            OK           ]),
    ("role.list",        Viewer,    [OK,            OK,            OK           ]),
    ("role.list",        Outsider,  [OK,            OK,            OK           ]),
    ("role.list",        Unbound,   [OK,            OK,            OK           ]),

    ("org.list",         Superuser, [OK,            OK,            OK           ]),
    ("org.list",         Admin,     [OK,            OK,            OK           ]),
    ("org.list",         Deployer,  [OK,            OK,            OK           ]),
    ("org.list",         Readonly,  [OK,            OK,            OK           ]),
    ("org.list",         Viewer,    [OK,            OK,            OK           ]),
    ("org.list",         Outsider,  [OK,            OK,            OK           ]),
    ("org.list",         Unbound,   [UNAUTH,        UNAUTH,        UNAUTH       ]),

    ("org.use",          Superuser, [OK,            OK,            NOT_FOUND    ]),
    ("org.use",          Admin,     [OK,            NOT_FOUND,     NOT_FOUND    ]),
    ("org.use",          Deployer,  [OK,            NOT_FOUND,     NOT_FOUND    ]),
    ("org.use",          Readonly,  [OK,            NOT_FOUND,     NOT_FOUND    ]),
    ("org.use",          Viewer,    [OK,            NOT_FOUND,     NOT_FOUND    ]),
    ("org.use",          Outsider,  [NOT_FOUND,     OK,            NOT_FOUND    ]),
    ("org.use",          Unbound,   [UNAUTH,        UNAUTH,        UNAUTH       ]),

    ("org.create",       Superuser, [EXISTS,        EXISTS,        OK           ]),
    ("org.create",       Admin,     [FORBIDDEN,     FORBIDDEN,     FORBIDDEN    ]),
    ("org.create",       Deployer,  [FORBIDDEN,     FORBIDDEN,     FORBIDDEN    ]),
    ("org.create",       Readonly,  [FORBIDDEN,     FORBIDDEN,     FORBIDDEN    ]),
    ("org.create",       Viewer,    [FORBIDDEN,     FORBIDDEN,     FORBIDDEN    ]),
    ("org.create",       Outsider,  [FORBIDDEN,     FORBIDDEN,     FORBIDDEN    ]),
    ("org.create",       Unbound,   [UNAUTH,        UNAUTH,        UNAUTH       ]),

    ("user.list",        Superuser, [OK,            OK,            NOT_FOUND    ]),
    ("user.list",        Admin,     [OK,            NOT_FOUND,     NOT_FOUND    ]),
    ("user.list",        Deployer,  [OK,            NOT_FOUND,     NOT_FOUND    ]),
    ("user.list",        Readonly,  [OK,            NOT_FOUND,     NOT_FOUND    ]),
    ("user.list",        Viewer,    [FORBIDDEN,     NOT_FOUND,     NOT_FOUND    ]),
    ("user.list",        Outsider,  [NOT_FOUND,     OK,            NOT_FOUND    ]),
    ("user.list",        Unbound,   [UNAUTH,        UNAUTH,        UNAUTH       ]),

    ("user.invite",      Superuser, [OK,            OK,            NOT_FOUND    ]),
    ("user.invite",      Admin,     [OK,            NOT_FOUND,     NOT_FOUND    ]),
    ("user.invite",      Deployer,  [FORBIDDEN,     NOT_FOUND,     NOT_FOUND    ]),
    ("user.invite",      Readonly,  [FORBIDDEN,     NOT_FOUND,     NOT_FOUND    ]),
    ("user.invite",      Viewer,    [FORBIDDEN,     NOT_FOUND,     NOT_FOUND    ]),
    ("user.invite",      Outsider,  [NOT_FOUND,     OK,            NOT_FOUND    ]),
    ("user.invite",      Unbound,   [UNAUTH,        UNAUTH,        UNAUTH       ]),

    ("user.remove",      Superuser, [OK,            OK,            NOT_FOUND    ]),
    ("user.remove",      Admin,     [OK,            NOT_FOUND,     NOT_FOUND    ]),
    ("user.remove",      Deployer,  [FORBIDDEN,     NOT_FOUND,     NOT_FOUND    ]),
    ("user.remove",      Readonly,  [FORBIDDEN,     NOT_FOUND,     NOT_FOUND    ]),
    ("user.remove",      Viewer,    [FORBIDDEN,     NOT_FOUND,     NOT_FOUND    ]),
    ("user.remove",      Outsider,  [NOT_FOUND,     OK,            NOT_FOUND    ]),
    ("user.remove",      Unbound,   [UNAUTH,        UNAUTH,        UNAUTH       ]),

    ("role.grant",       Superuser, [OK,            OK,            NOT_FOUND    ]),
    ("role.grant",       Admin,     [OK,            NOT_FOUND,     NOT_FOUND    ]),
    ("role.grant",       Deployer,  [OK,            NOT_FOUND,     NOT_FOUND    ]),
    ("role.grant",       Readonly,  [FORBIDDEN,     NOT_FOUND,     NOT_FOUND    ]),
    ("role.grant",       Viewer,    [FORBIDDEN,     NOT_FOUND,     NOT_FOUND    ]),
    ("role.grant",       Outsider,  [NOT_FOUND,     OK,            NOT_FOUND    ]),
    ("role.grant",       Unbound,   [UNAUTH,        UNAUTH,        UNAUTH       ]),

    ("account.activate", Superuser, [INVALID_TOKEN, INVALID_TOKEN, INVALID_TOKEN]),
    ("account.activate", Admin,     [INVALID_TOKEN, INVALID_TOKEN, INVALID_TOKEN]),
    ("account.activate", Deployer,  [INVALID_TOKEN, INVALID_TOKEN, INVALID_TOKEN]),
    ("account.activate", Readonly,  [INVALID_TOKEN, INVALID_TOKEN, INVALID_TOKEN]),
    ("account.activate", Viewer,    [INVALID_TOKEN, INVALID_TOKEN, INVALID_TOKEN]),
    ("account.activate", Outsider,  [INVALID_TOKEN, INVALID_TOKEN, INVALID_TOKEN]),
    ("account.activate", Unbound,   [INVALID_TOKEN, INVALID_TOKEN, INVALID_TOKEN]),
];

/// One row of the table: a call and what it must answer.
#[derive(Debug, Clone, Copy)]
struct Row {
    method: &'static str,
    caller: Caller,
    target: Target,
    expected: &'static str,
}

/// The table, one row per method × caller × target.
fn rows() -> Vec<Row> {
    TABLE
        .iter()
        .flat_map(|&(method, caller, outcomes)| {
            TARGETS
                .into_iter()
                .zip(outcomes)
                .map(move |(target, expected)| Row {
                    method,
                    caller,
                    target,
                    expected,
                })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Running a row

/// The exit code DESIGN §7 gives an outcome.
fn exit_code_for(outcome: &str) -> i32 {
    match outcome {
        OK => 0,
        "bad_request" | "unknown_method" | "org_required" => 2,
        UNAUTH | FORBIDDEN | "role_above_own" => 4,
        NOT_FOUND => 5,
        _ => 1,
    }
}

/// A token nobody was issued: 43 base64url characters, the shape of a real one.
const UNKNOWN_TOKEN: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// The CLI arguments for a row (always `--output json`), after any setup the row needs.
/// `seq` is the row's number, for names no other row uses.
fn request(d: &Daemon, row: &Row, seq: usize) -> Vec<String> {
    let org = row.target.org();
    let mut args: Vec<String> = vec!["--output".into(), "json".into()];
    let with_org = |args: &mut Vec<String>| args.extend(["--org".into(), org.into()]);
    let rest: Vec<String> = match row.method {
        "ping" => vec!["ping".into()],
        "whoami" => vec!["whoami".into()],
        "role.list" => vec!["role".into(), "list".into()],
        "org.list" => vec!["org".into(), "list".into()],
        "org.use" => vec!["org".into(), "use".into(), org.into()],
        "org.create" => {
            let name = match row.target {
                Own | Other => org.to_owned(),
                Missing => format!("fresh-{seq}"),
            };
            vec![
                "org".into(),
                "create".into(),
                name,
                "--admin".into(),
                format!("founder-{seq}@example.com"),
            ]
        }
        "user.list" => {
            with_org(&mut args);
            vec!["user".into(), "list".into()]
        }
        "user.invite" => {
            with_org(&mut args);
            vec![
                "user".into(),
                "invite".into(),
                format!("invitee-{seq}@example.com"),
                "--role".into(),
                "viewer".into(),
            ]
        }
        "user.remove" => {
            let email = format!("leaver-{seq}@example.com");
            if row.target != Missing {
                // A fresh invited viewer for this row alone; the row removes it or not.
                d.ctl(
                    ROOT,
                    &["--org", org, "user", "invite", &email, "--role", "viewer"],
                )
                .assert_success();
            }
            with_org(&mut args);
            vec!["user".into(), "remove".into(), email]
        }
        "role.grant" => {
            with_org(&mut args);
            vec![
                "role".into(),
                "grant".into(),
                GRANTEE.into(),
                "viewer".into(),
            ]
        }
        "account.activate" => {
            let token = match row.target {
                Own => UNKNOWN_TOKEN.to_owned(),
                Other => format!("{}{UNKNOWN_TOKEN}", compartment_e2e::URL_PREFIX),
                Missing => "not-a-token".to_owned(),
            };
            vec!["activate".into(), token]
        }
        other => panic!("no request for method {other}"),
    };
    args.extend(rest);
    args
}

/// What a CLI run answered: `ok`, the `data.kind` of the JSON error object on stderr, or a
/// description of anything else.
fn outcome(out: &Out) -> String {
    if out.code == 0 {
        return OK.to_owned();
    }
    let first = out.stderr.lines().next().unwrap_or("");
    match serde_json::from_str::<Value>(first) {
        Ok(error) => match error["data"]["kind"].as_str() {
            Some(kind) => kind.to_owned(),
            None => format!("(no data.kind in {first})"),
        },
        Err(_) => format!("(exit {}, stderr {:?})", out.code, out.stderr.trim_end()),
    }
}

/// A row as run.
struct Ran {
    row: Row,
    actual: String,
    exit: i32,
    detail: String,
}

impl Ran {
    fn outcome_ok(&self) -> bool {
        self.actual == self.row.expected
    }

    /// The exit code matches the outcome as DESIGN §7 maps it.
    fn exit_ok(&self) -> bool {
        self.exit == exit_code_for(&self.actual)
    }
}

impl fmt::Display for Ran {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match (self.outcome_ok(), self.exit_ok()) {
            (true, true) => "  ",
            (false, _) => "✗ ",
            (true, false) => "✗e",
        };
        write!(
            f,
            "{mark} {:<17} {:<10} {:<8} expected {:<16} got {:<16} exit {}",
            self.row.method,
            self.row.caller.name(),
            self.row.target.name(),
            self.row.expected,
            self.actual,
            self.exit
        )
    }
}

// ---------------------------------------------------------------------------------------
// The world the table runs in

/// Root creates `org` with `email` as its first admin, who activates as `uid`.
fn org_with_admin(d: &Daemon, org: &str, email: &str, uid: u32) {
    let out = d.ctl(ROOT, &["org", "create", org, "--admin", email]);
    out.assert_success();
    let invitation = parse_invitation_lines(&out.stdout_lines()[1..], email, "admin");
    d.activate(uid, &invitation.url).assert_success();
}

/// Root invites `email` to `org` as `role`, and `uid` activates it.
fn active_member(d: &Daemon, org: &str, email: &str, role: &str, uid: u32) {
    let invitation = parse_invite(
        &d.ctl(
            ROOT,
            &["--org", org, "user", "invite", email, "--role", role],
        ),
        email,
        role,
    );
    d.activate(uid, &invitation.url).assert_success();
}

/// acme with an active admin, deployer, readonly and viewer; beta with the outsider as its
/// only admin; the grantee an active viewer of both; the unbound uid left alone.
fn set_up(d: &Daemon) {
    org_with_admin(d, "acme", "admin@example.com", Admin.uid());
    active_member(
        d,
        "acme",
        "deployer@example.com",
        "deployer",
        Deployer.uid(),
    );
    active_member(
        d,
        "acme",
        "readonly@example.com",
        "readonly",
        Readonly.uid(),
    );
    active_member(d, "acme", "viewer@example.com", "viewer", Viewer.uid());
    org_with_admin(d, "beta", "outsider@example.com", Outsider.uid());
    active_member(
        d,
        "acme",
        GRANTEE,
        "viewer",
        TestUser::get(GRANTEE_USER).uid,
    );
    // The grantee's account is active: the invitation to beta makes them a member at once.
    d.ctl(
        ROOT,
        &[
            "--org", "beta", "user", "invite", GRANTEE, "--role", "viewer",
        ],
    )
    .assert_success();

    // The callers are who the table thinks they are.
    let expected_memberships = [
        (Admin, "acme", "admin"),
        (Deployer, "acme", "deployer"),
        (Readonly, "acme", "readonly"),
        (Viewer, "acme", "viewer"),
        (Outsider, "beta", "admin"),
    ];
    for (caller, org, role) in expected_memberships {
        let out = d.ctl(caller.uid(), &["--output", "json", "whoami"]);
        out.assert_success();
        let who: Value = serde_json::from_str(&out.stdout).expect("whoami JSON");
        assert_eq!(
            who["memberships"],
            serde_json::json!([{"org": org, "role": role, "status": "active"}]),
            "{} is an active {role} of {org} only: {who}",
            caller.name()
        );
    }
    let out = d.ctl(Unbound.uid(), &["--output", "json", "whoami"]);
    out.assert_success();
    let who: Value = serde_json::from_str(&out.stdout).expect("whoami JSON");
    assert_eq!(who["account"], Value::Null, "unbound has no account: {who}");
}

#[test]
fn the_table_covers_every_method_caller_and_target_once() {
    let rows = rows();
    assert_eq!(rows.len(), METHODS.len() * CALLERS.len() * TARGETS.len());
    for method in METHODS {
        for caller in CALLERS {
            let n = TABLE
                .iter()
                .filter(|(m, c, _)| *m == method && *c == caller)
                .count();
            assert_eq!(n, 1, "{method} × {} appears {n} times", caller.name());
        }
    }
    assert!(
        TABLE.iter().all(|(m, _, _)| METHODS.contains(m)),
        "the table names a method missing from METHODS"
    );
}

root_test!(
    every_method_caller_and_target_gets_the_designed_answer,
    || {
        every_method_caller_and_target(&Daemon::start_default());
    }
);

root_test!(
    every_method_caller_and_target_gets_the_designed_answer_on_postgresql,
    || {
        let Some(database) = Database::start(
            "every_method_caller_and_target_gets_the_designed_answer_on_postgresql",
        ) else {
            return;
        };
        every_method_caller_and_target(&Daemon::start(DaemonOptions::new().postgres(&database)));
    }
);

/// Every row of the table asked of `d` as its caller, with the answer it designs.
fn every_method_caller_and_target(d: &Daemon) {
    set_up(d);

    let mut results = Vec::new();
    for (seq, row) in rows().into_iter().enumerate() {
        let mut args = request(d, &row, seq);
        // The activation URL goes on stdin, as documented (an argument would be warned
        // about on stderr, ahead of the error object).
        let input = match args.iter().position(|arg| arg == "activate") {
            Some(at) => format!("{}\n", args.remove(at + 1)),
            None => String::new(),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = d.ctl_with_stdin(row.caller.uid(), &args, &input);
        results.push(Ran {
            row,
            actual: outcome(&out),
            exit: out.code,
            detail: format!(
                "uid {} ran {:?}: exit {}, stdout {:?}, stderr {:?}",
                row.caller.uid(),
                args,
                out.code,
                out.stdout.trim_end(),
                out.stderr.trim_end()
            ),
        });
    }

    let failed: Vec<&Ran> = results
        .iter()
        .filter(|r| !r.outcome_ok() || !r.exit_ok())
        .collect();
    if !failed.is_empty() {
        let table: Vec<String> = results.iter().map(ToString::to_string).collect();
        let details: Vec<String> = failed
            .iter()
            .map(|r| {
                let why = if r.outcome_ok() {
                    format!(
                        "exit {} where DESIGN §7 gives {} exit {}",
                        r.exit,
                        r.actual,
                        exit_code_for(&r.actual)
                    )
                } else {
                    format!("expected {}, got {}", r.row.expected, r.actual)
                };
                format!("{r}\n      {why}\n      {}", r.detail)
            })
            .collect();
        panic!(
        "{} of {} rows differ from DESIGN (✗: outcome, ✗e: exit code):\n{}\n\nthe whole table:\n{}",
        failed.len(),
        results.len(),
        details.join("\n"),
        table.join("\n")
    );
    }
}

/// After authorization come the rules of the request itself (DESIGN §3 step 4), each
/// reached only by a caller who passed steps 1–3, and never by one who did not: a row per
/// rule, with the caller, the CLI arguments (`--output json` is added) and the outcome.
#[rustfmt::skip]
const REQUEST_RULES: &[(Caller, &[&str], &str)] = &[
    // The grant cap: nobody grants a role above their own.
    (Deployer,  &["--org", "acme", "role", "grant", "viewer@example.com", "admin"],    "role_above_own"),
    // The target cap: nobody changes a member whose role is above their own.
    (Deployer,  &["--org", "acme", "role", "grant", "admin@example.com", "viewer"],    "role_above_own"),
    // An unknown member is not found, once the caller may grant or remove at all.
    (Deployer,  &["--org", "acme", "role", "grant", "nobody@example.com", "viewer"],   NOT_FOUND),
    (Admin,     &["--org", "acme", "user", "remove", "nobody@example.com"],            NOT_FOUND),
    // The role is judged before the request: no cap, no member lookup for the unentitled.
    (Readonly,  &["--org", "acme", "role", "grant", "nobody@example.com", "admin"],    FORBIDDEN),
    (Deployer,  &["--org", "acme", "user", "remove", "nobody@example.com"],            FORBIDDEN),
    (Viewer,    &["--org", "acme", "user", "invite", "admin@example.com", "--role", "admin"], FORBIDDEN),
    // The organization is judged before the role and the request.
    (Outsider,  &["--org", "acme", "role", "grant", "nobody@example.com", "admin"],    NOT_FOUND),
    (Viewer,    &["--org", "nope", "user", "remove", "nobody@example.com"],            NOT_FOUND),
    // Binding is judged before the organization.
    (Unbound,   &["--org", "nope", "user", "list"],                                    UNAUTH),
    // The last admin, for every caller, superusers included.
    (Admin,     &["--org", "acme", "user", "remove", "admin@example.com"],             "last_admin"),
    (Admin,     &["--org", "acme", "role", "grant", "admin@example.com", "deployer"],  "last_admin"),
    (Superuser, &["--org", "acme", "user", "remove", "admin@example.com"],             "last_admin"),
    (Superuser, &["--org", "beta", "role", "grant", "outsider@example.com", "viewer"], "last_admin"),
    (Outsider,  &["--org", "beta", "user", "remove", "outsider@example.com"],          "last_admin"),
    // Already a member; an organization that exists.
    (Admin,     &["--org", "acme", "user", "invite", "deployer@example.com", "--role", "viewer"], "already_member"),
    (Superuser, &["org", "create", "beta", "--admin", "someone@example.com"],          EXISTS),
];

root_test!(the_request_rules_apply_only_after_authorization, || {
    let d = Daemon::start_default();
    set_up(&d);

    let mut failed = Vec::new();
    for &(caller, args, expected) in REQUEST_RULES {
        let mut full = vec!["--output", "json"];
        full.extend_from_slice(args);
        let out = d.ctl(caller.uid(), &full);
        let actual = outcome(&out);
        if actual != expected || out.code != exit_code_for(&actual) {
            failed.push(format!(
                "{} {args:?}: expected {expected} (exit {}), got {actual} (exit {}); stderr {:?}",
                caller.name(),
                exit_code_for(expected),
                out.code,
                out.stderr.trim_end()
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} request-rule rows differ from DESIGN:\n{}",
        failed.len(),
        REQUEST_RULES.len(),
        failed.join("\n")
    );
});
