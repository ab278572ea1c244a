//! `rpc.discover`'s OpenRPC document: it lists exactly the methods the protocol declares,
//! with their errors and the notifications they send; the requests and results the daemon
//! exchanges fit its schemas, which are as strict as the daemon; and standard tools take
//! it: the OpenRPC meta-schema (published on the npm registry as `@open-rpc/meta-schema`),
//! OpenRPC's ajv-based validator, Redocly's linter, OpenRPC's client generator (whose
//! TypeScript client must compile) and Python's `jsonschema`. `.ci/run` installs the npm
//! ones in the directory it names in `OPENRPC_META_SCHEMAS`; without it, outside CI,
//! those tests say loudly that they did not check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use compartmentctl::wire::openrpc::{document, OPENRPC_VERSION};
use compartmentctl::wire::{
    AdminStatus, AuthzAnswer, BackupCounts, BackupEnd, BackupFailed, Decision, ErrorKind, Event,
    EventKind, FeedClosed, FeedEnd, LastBatch, LastSweep, Permission, Reason, Request, Role,
    RoleInfo, StoreInfo, Subscribed, DECLARATIONS, DISCOVER, MAX_CHECKS, MAX_PAGE, METHODS,
};
use serde_json::{json, Value};

fn method(doc: &Value, name: &str) -> Value {
    doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in the document"))
        .clone()
}

/// The params of `name` as one object schema: its descriptors' names and schemas, those
/// required, and nothing else; and, when the method gives one, its whole `x-params-schema`
/// too.
fn params_schema(doc: &Value, name: &str) -> Value {
    let by_name = descriptors_schema(doc, name);
    match method(doc, name).get("x-params-schema") {
        Some(whole) => json!({"allOf": [by_name, whole]}),
        None => by_name,
    }
}

/// The params of `name` as its by-name descriptors alone say them.
fn descriptors_schema(doc: &Value, name: &str) -> Value {
    let method = method(doc, name);
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for descriptor in method["params"].as_array().unwrap() {
        let param = descriptor["name"].as_str().unwrap();
        properties.insert(param.to_owned(), descriptor["schema"].clone());
        if descriptor["required"] == true {
            required.push(param.to_owned());
        }
    }
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

#[track_caller]
fn assert_fits(schema: &Value, instance: &Value, what: &str) {
    let validator = jsonschema::draft7::new(schema).unwrap_or_else(|err| panic!("{what}: {err}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: {instance} does not fit: {errors:?}"
    );
}

#[test]
fn the_document_lists_every_method_but_itself() {
    let doc = document();
    assert_eq!(doc["openrpc"], OPENRPC_VERSION);
    let names: Vec<&str> = doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let declared: Vec<&str> = METHODS.iter().copied().filter(|m| *m != DISCOVER).collect();
    assert_eq!(names, declared);
    assert!(METHODS.contains(&DISCOVER));
    let invite = method(&doc, "user.invite");
    assert_eq!(invite["summary"], "Invite someone with a role.");
    assert_eq!(invite["x-writes"], true);
    let required: Vec<&str> = invite["params"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["required"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(required, ["email", "role"]);
    // No format of schemars' own (`uint32`…), which ajv-based validators refuse: ranges.
    fn formats(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(format) = map.get("format").and_then(Value::as_str) {
                    found.push(format.to_owned());
                }
                map.values().for_each(|child| formats(child, found));
            }
            Value::Array(items) => items.iter().for_each(|child| formats(child, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    formats(&doc, &mut found);
    let standard = ["date-time", "email", "uri", "uuid"];
    assert!(
        found.iter().all(|f| standard.contains(&f.as_str())),
        "non-standard formats: {found:?}"
    );
    let list = method(&doc, "user.list");
    let limit = &list["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()["schema"];
    // As strict as the daemon: a page of 1 to 1,000 (MAX_PAGE), null as absent.
    let limit = &limit["anyOf"][0];
    assert_eq!(
        (&limit["minimum"], &limit["maximum"]),
        (&json!(1), &json!(MAX_PAGE)),
        "{limit}"
    );
    // OpenRPC 1.3.2: in every method, no required param follows an optional one.
    for method in doc["methods"].as_array().unwrap() {
        let params = method["params"].as_array().unwrap();
        let first_optional = params.iter().position(|p| p["required"] != true);
        if let Some(first) = first_optional {
            assert!(
                params[first..].iter().all(|p| p["required"] != true),
                "{}: a required param after an optional one: {params:?}",
                method["name"]
            );
        }
    }
    let names: Vec<&str> = invite["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names[..2],
        ["email", "role"],
        "required first, in their declared order"
    );
}

#[test]
fn requests_the_daemon_takes_fit_their_params_and_others_do_not() {
    let doc = document();
    let fits = [
        (
            "user.invite",
            json!({"org": "acme", "email": "a@example.com", "role": "deployer", "expires_in": "2h"}),
        ),
        (
            "user.list",
            json!({"limit": 1000, "after": "YQ", "status": "expired"}),
        ),
        (
            "role.grant",
            json!({"email": "a@example.com", "role": "viewer"}),
        ),
        (
            "authz.check",
            json!({"permission": "deployment.create", "org": "acme", "uid": 1001}),
        ),
        (
            "authz.check",
            json!({"checks": [{"permission": "project.read", "email": "a@example.com"}]}),
        ),
        ("events.subscribe", json!({"org": "acme", "after": 41})),
        ("whoami", json!({})),
    ];
    for (name, params) in fits {
        assert_fits(&params_schema(&doc, name), &params, name);
    }
    let misfits = [
        (
            "user.invite",
            json!({"email": "a@example.com", "role": "owner"}),
        ),
        ("user.invite", json!({"email": "a@example.com"})),
        ("authz.check", json!({"permission": "deployment.destroy"})),
        ("events.subscribe", json!({"after": -1})),
        ("whoami", json!({"as": "root"})),
    ];
    for (name, params) in misfits {
        let validator = jsonschema::draft7::new(&params_schema(&doc, name)).unwrap();
        assert!(!validator.is_valid(&params), "{name} took {params}");
    }
}

#[test]
fn results_the_daemon_sends_fit_their_schemas() {
    let doc = document();
    let decision = Decision {
        allowed: true,
        permission: Permission::DeploymentCreate,
        org: Some("acme".into()),
        uid: Some(1001),
        user: Some("alice".into()),
        email: Some("a@example.com".into()),
        role: Some(Role::Deployer),
        reason: Reason::Role,
        message: "…".into(),
    };
    let results = [
        (
            "authz.check",
            serde_json::to_value(AuthzAnswer::One(decision.clone())).unwrap(),
        ),
        (
            "authz.check",
            serde_json::to_value(AuthzAnswer::Many {
                decisions: vec![decision],
            })
            .unwrap(),
        ),
        (
            "role.show",
            serde_json::to_value(RoleInfo::of(Role::Admin)).unwrap(),
        ),
        (
            "events.subscribe",
            serde_json::to_value(Subscribed {
                org: None,
                after: 3,
                head: 9,
            })
            .unwrap(),
        ),
        ("ping", json!({"version": "0.1.0"})),
        (
            "admin.status",
            serde_json::to_value(AdminStatus {
                version: "0.1.0".into(),
                schema_version: 6,
                store: StoreInfo::Redb {
                    path: "/var/lib/compartment/compartment.redb".into(),
                },
                uptime_secs: 1,
                connections: 1,
                writer_queue: 0,
                last_batch: None,
                last_sweep: None,
                feed_head: 0,
                reachable: true,
                conflicts: None,
            })
            .unwrap(),
        ),
        (
            "admin.status",
            serde_json::to_value(AdminStatus {
                version: "0.1.0".into(),
                schema_version: 3,
                store: StoreInfo::Postgresql {
                    hosts: vec!["db1.example".into(), "/run/postgresql".into()],
                    ports: vec![5432],
                    database: Some("compartment".into()),
                    user: None,
                },
                uptime_secs: 3600,
                connections: 12,
                writer_queue: 40,
                last_batch: Some(LastBatch {
                    changes: 64,
                    at: "2026-05-01T12:00:00Z".into(),
                    commit_micros: 1800,
                }),
                last_sweep: Some(LastSweep {
                    at: "2026-05-01T12:00:00Z".into(),
                    expired: 1000,
                }),
                feed_head: 1041,
                reachable: false,
                conflicts: Some(7),
            })
            .unwrap(),
        ),
    ];
    for (name, result) in results {
        let schema = method(&doc, name)["result"]["schema"].clone();
        assert_fits(&schema, &result, name);
    }
}

/// The JSON Schema meta-schema the OpenRPC meta-schema refers to, served from a file
/// instead of over the network.
struct Local(Value);

impl jsonschema::Retrieve for Local {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        if uri.as_str().starts_with("https://meta.json-schema.tools") {
            Ok(self.0.clone())
        } else {
            Err(format!("{uri} is not a schema this test has").into())
        }
    }
}

/// The document is valid OpenRPC. `OPENRPC_META_SCHEMAS` names a directory that holds
/// `openrpc.json` (from `@open-rpc/meta-schema`) and `json-schema.json` (from
/// `@json-schema-tools/meta-schema`, which it refers to). In CI it is always there;
/// elsewhere, without it, this says loudly that it did not check.
#[test]
fn the_document_is_valid_by_the_openrpc_meta_schema() {
    let Some(dir) = std::env::var_os("OPENRPC_META_SCHEMAS") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must set OPENRPC_META_SCHEMAS (.ci/run fetches @open-rpc/meta-schema)"
        );
        eprintln!(
            "SKIPPED: OPENRPC_META_SCHEMAS is not set, so the document was not checked against \
             the OpenRPC meta-schema (.ci/run fetches it)"
        );
        return;
    };
    let read = |name: &str| -> Value {
        let path = std::path::Path::new(&dir).join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
        serde_json::from_str(&text).unwrap()
    };
    let meta = read("openrpc.json");
    assert_eq!(meta["title"], "openrpcDocument");
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .with_retriever(Local(read("json-schema.json")))
        .build(&meta)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&document())
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "not valid OpenRPC: {errors:#?}");
    // And the check can fail: a document without its methods is not OpenRPC.
    let mut broken = document();
    broken.as_object_mut().unwrap().remove("methods");
    assert!(!validator.is_valid(&broken));
}

/// The document passes `@open-rpc/schema-utils-js`'s `validateOpenRPCDocument`, the ajv-based
/// validator OpenRPC's own tools use. `.ci/run` installs it beside the meta-schemas, in
/// `OPENRPC_META_SCHEMAS`.
#[test]
fn the_document_passes_the_ajv_based_openrpc_validator() {
    let Some(dir) = std::env::var_os("OPENRPC_META_SCHEMAS") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must set OPENRPC_META_SCHEMAS (.ci/run installs @open-rpc/schema-utils-js)"
        );
        eprintln!("SKIPPED: OPENRPC_META_SCHEMAS is not set, so no ajv-based validator ran");
        return;
    };
    let dir = std::path::Path::new(&dir);
    let validate = |doc: &Value| -> (bool, String) {
        let file = dir.join("document.json");
        std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
        let out = std::process::Command::new("node")
            .current_dir(dir)
            .arg("-e")
            .arg(
                "const { validateOpenRPCDocument } = require('@open-rpc/schema-utils-js');\n\
                 const doc = JSON.parse(require('fs').readFileSync('document.json', 'utf8'));\n\
                 const result = validateOpenRPCDocument(doc);\n\
                 if (result !== true) { console.error(String(result)); process.exit(1); }",
            )
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (valid, said) = validate(&document());
    assert!(valid, "refused: {said}");
    // And it can refuse: a document without its `info` is not OpenRPC.
    let mut broken = document();
    broken.as_object_mut().unwrap().remove("info");
    let (valid, said) = validate(&broken);
    assert!(!valid, "a document without info passed the validator");
    assert!(!said.is_empty());
}

/// Every string under a `summary` or `description` key, anywhere in `value`, with its path.
fn prose(value: &Value, path: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let here = format!("{path}/{key}");
                match (key.as_str(), child) {
                    ("summary" | "description", Value::String(text)) => {
                        found.push((here, text.clone()))
                    }
                    _ => prose(child, &here, found),
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                prose(child, &format!("{path}/{i}"), found);
            }
        }
        _ => {}
    }
}

/// Each summary is one whole sentence, with a description where the doc comment says
/// more; nothing written for Rust readers (intra-doc links, paths, `None`, notes on the
/// order of variants) is in any summary or description of the document.
#[test]
fn summaries_are_sentences_and_no_rust_leaks_in() {
    let doc = document();
    for method in doc["methods"].as_array().unwrap() {
        let name = method["name"].as_str().unwrap();
        let summary = method["summary"].as_str().unwrap();
        assert!(
            summary.starts_with(|c: char| c.is_ascii_uppercase()) && summary.ends_with('.'),
            "{name}: {summary:?} is not a sentence (^[A-Z].*\\.$)"
        );
        assert!(
            !summary.contains("](") && !summary.contains("::") && !summary.contains('\n'),
            "{name}: {summary:?}"
        );
        // One sentence: no full stop inside it but the last.
        assert!(
            !summary[..summary.len() - 1].contains(". "),
            "{name}: {summary:?} is more than one sentence"
        );
        if let Some(description) = method.get("description") {
            let description = description.as_str().unwrap();
            assert!(
                !description.is_empty() && description.ends_with('.'),
                "{name}: {description:?}"
            );
        }
    }
    // Methods whose doc comment says more than the summary have it as their description.
    let subscribe = method(&doc, "events.subscribe");
    assert!(subscribe["description"]
        .as_str()
        .unwrap()
        .contains("`events.closed`"));
    assert!(method(&doc, "authz.check")["description"]
        .as_str()
        .unwrap()
        .contains("at most one"));
    assert!(method(&doc, "ping").get("description").is_none());
    let mut found = Vec::new();
    prose(&doc, "", &mut found);
    assert!(found.len() > 100, "{}", found.len());
    for (path, text) in found {
        for rust in [
            "](", "[`", "::", "`None`", "`Some", "variant", "Vec<", "Option<",
        ] {
            assert!(!text.contains(rust), "{path}: {rust:?} in {text:?}");
        }
    }
}

/// What each kind of error is to the document: answered by some method, or by the
/// connection whatever the method (then `info.description` says so), or never sent by the
/// daemon. A new kind must be placed here.
fn place(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::BadRequest
        | ErrorKind::Unauthenticated
        | ErrorKind::Forbidden
        | ErrorKind::NotFound
        | ErrorKind::AlreadyExists
        | ErrorKind::AlreadyMember
        | ErrorKind::AlreadyInvited
        | ErrorKind::LastAdmin
        | ErrorKind::RoleAboveOwn
        | ErrorKind::InvalidToken
        | ErrorKind::TokenExpired
        | ErrorKind::TokenUsed
        | ErrorKind::NotEmpty
        | ErrorKind::Blocked
        | ErrorKind::OrgRequired
        | ErrorKind::Busy
        | ErrorKind::Unavailable
        | ErrorKind::Internal => "method",
        ErrorKind::UnknownMethod | ErrorKind::FrameTooLong => "connection",
        ErrorKind::Unreachable | ErrorKind::Other => "never sent",
    }
}

/// The kinds `name` declares in the document.
fn declared_errors(doc: &Value, name: &str) -> Vec<ErrorKind> {
    method(doc, name)["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} declares no errors"))
        .iter()
        .map(|error| serde_json::from_value(error["data"]["kind"].clone()).unwrap())
        .collect()
}

/// Each method declares the errors it may answer with, as OpenRPC error objects whose
/// code is their kind's; every kind a method may answer with is declared by some method;
/// and the declarations agree with what the rules are known to do: a gated method may be
/// refused as a role too low (`forbidden`) and for what resolving its organization may say,
/// a superuser's act may be refused (`forbidden`), a change may be `busy` or
/// `unavailable`, and every method may be a `bad_request` or fail `internal`ly.
#[test]
fn every_method_declares_its_errors() {
    let doc = document();
    let mut declared_somewhere = Vec::new();
    for method in doc["methods"].as_array().unwrap() {
        let name = method["name"].as_str().unwrap();
        for error in method["errors"].as_array().unwrap() {
            let kind: ErrorKind = serde_json::from_value(error["data"]["kind"].clone()).unwrap();
            assert_ne!(kind, ErrorKind::Other, "{name}: {error}");
            assert_eq!(error["code"], kind.code(), "{name}: {error}");
            assert_eq!(error["message"], kind.meaning(), "{name}: {error}");
            assert_eq!(error["data"], json!({"kind": kind.as_str()}), "{name}");
            assert_eq!(place(kind), "method", "{name} declares {kind}");
            declared_somewhere.push(kind);
        }
        let kinds = declared_errors(&doc, name);
        let mut once = kinds.clone();
        once.dedup();
        assert_eq!(once, kinds, "{name}: a kind declared twice");
    }
    for kind in ErrorKind::ALL {
        assert_eq!(ErrorKind::ALL.iter().filter(|k| **k == kind).count(), 1);
        match place(kind) {
            "method" => assert!(
                declared_somewhere.contains(&kind),
                "no method declares {kind}"
            ),
            "connection" => assert!(
                doc["info"]["description"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("`{kind}` ({})", kind.code())),
                "info.description does not say when {kind} is answered"
            ),
            _ => assert!(!declared_somewhere.contains(&kind)),
        }
    }
    for declared in DECLARATIONS.iter().filter(|d| d.name != DISCOVER) {
        let name = declared.name;
        let kinds = declared_errors(&doc, name);
        assert_eq!(kinds, declared.errors(), "{name}");
        let must = |expected: &[ErrorKind], why: &str| {
            for kind in expected {
                assert!(kinds.contains(kind), "{name} must declare {kind}: {why}");
            }
        };
        must(
            &[ErrorKind::BadRequest, ErrorKind::Internal],
            "every method may",
        );
        if declared.kind.writes() {
            must(
                &[ErrorKind::Busy, ErrorKind::Unavailable],
                "every change may",
            );
        }
        if declared.permission.is_some() {
            must(
                &[
                    ErrorKind::Forbidden,
                    ErrorKind::Unauthenticated,
                    ErrorKind::NotFound,
                    ErrorKind::Blocked,
                    ErrorKind::OrgRequired,
                ],
                "its rule requires a permission in an organization, maybe the current one",
            );
        }
        let said = format!(
            "{} {}",
            method(&doc, name)["summary"],
            method(&doc, name)["description"]
        );
        if said.contains("superuser") {
            must(&[ErrorKind::Forbidden], "only some callers may");
        }
        if method(&doc, name)["params"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "token")
        {
            must(
                &[
                    ErrorKind::InvalidToken,
                    ErrorKind::TokenExpired,
                    ErrorKind::TokenUsed,
                ],
                "it redeems a token",
            );
        }
    }
    // The methods that ask nothing of the store or of the caller can only be malformed.
    for name in ["ping", "role.list", "role.show"] {
        assert_eq!(
            declared_errors(&doc, name),
            [ErrorKind::BadRequest, ErrorKind::Internal],
            "{name}"
        );
    }
}

/// Whether the daemon takes `params` for `method`: the wire's own parser, which the daemon
/// runs on every request.
fn daemon_takes(method: &str, params: &Value) -> bool {
    let raw = serde_json::value::to_raw_value(params).unwrap();
    Request::parse(method, Some(&raw)).is_ok()
}

/// `authz.check`'s params schema says what the daemon takes, neither more nor less: one
/// check or `checks`, 1 to 1,000 of them, each naming its subject by at most one of `uid`,
/// `user` and `email` (a null one names nobody), `permission` required.
#[test]
fn authz_check_params_are_as_strict_as_the_daemon() {
    let doc = document();
    let schema = params_schema(&doc, "authz.check");
    let validator = jsonschema::draft7::new(&schema).unwrap();
    let check = |subject: Value| {
        let mut check = json!({"permission": "project.read", "org": "acme"});
        for (key, value) in subject.as_object().unwrap() {
            check[key] = value.clone();
        }
        check
    };
    let many = |n: usize, one: Value| json!({"checks": vec![one; n]});
    let cases = [
        (check(json!({})), true),
        (check(json!({"uid": 1001})), true),
        (check(json!({"user": "alice"})), true),
        (check(json!({"email": "a@example.com"})), true),
        (check(json!({"uid": 1001, "user": null})), true),
        (
            check(json!({"uid": null, "user": null, "email": null})),
            true,
        ),
        (check(json!({"uid": 1001, "user": "alice"})), false),
        (check(json!({"uid": 1001, "email": "a@example.com"})), false),
        (
            check(json!({"user": "alice", "email": "a@example.com"})),
            false,
        ),
        (
            check(json!({"uid": 1, "user": "alice", "email": "a@example.com"})),
            false,
        ),
        (json!({"org": "acme", "uid": 1001}), false),
        (json!({}), false),
        (check(json!({"group": "staff"})), false),
        (many(1, check(json!({"uid": 1001}))), true),
        (
            many(MAX_CHECKS, check(json!({"email": "a@example.com"}))),
            true,
        ),
        (many(0, check(json!({}))), false),
        (many(MAX_CHECKS + 1, check(json!({}))), false),
        (many(2, check(json!({"uid": 1001, "user": "alice"}))), false),
        (
            json!({"checks": [check(json!({}))], "permission": "project.read"}),
            false,
        ),
        (json!({"checks": null}), false),
        (json!({"checks": [{"org": "acme"}]}), false),
    ];
    for (params, takes) in cases {
        assert_eq!(
            daemon_takes("authz.check", &params),
            takes,
            "the daemon's reading of {params}"
        );
        assert_eq!(
            validator.is_valid(&params),
            takes,
            "the schema's reading of {params}"
        );
    }
    // The one-subject rule is in each check's schema, so it holds in `checks` too, and the
    // forms in `x-params-schema`, beside descriptors none of which is required on its own.
    let whole = &method(&doc, "authz.check")["x-params-schema"];
    assert_eq!(whole["oneOf"].as_array().unwrap().len(), 2, "{whole}");
    assert!(method(&doc, "user.invite").get("x-params-schema").is_none());
}

/// For every method, params the daemon takes fit the schema and params it refuses do not,
/// over a set of requests right and wrong. The daemon reads params with the wire's parser;
/// a few values it reads are refused by the rule after (a page `limit` of 0 or over
/// 1,000), marked `rule` here: the schema refuses those too.
#[test]
fn every_methods_params_schema_reads_as_the_daemon_does() {
    let doc = document();
    let (takes, refuses, rule) = ("takes", "refuses", "rule");
    let cases = [
        ("ping", json!({}), takes),
        ("ping", json!({"x": 1}), refuses),
        ("whoami", json!({}), takes),
        (
            "org.create",
            json!({"name": "acme", "admin": "a@example.com"}),
            takes,
        ),
        ("org.create", json!({"name": "acme"}), refuses),
        (
            "org.create",
            json!({"name": "acme", "admin": "a@example.com", "admin_unix_user": null}),
            takes,
        ),
        ("org.delete", json!({"name": "acme", "force": true}), takes),
        (
            "org.delete",
            json!({"name": "acme", "force": "yes"}),
            refuses,
        ),
        ("user.list", json!({"limit": 0}), rule),
        ("user.list", json!({"limit": 1}), takes),
        ("user.list", json!({"limit": MAX_PAGE}), takes),
        ("user.list", json!({"limit": MAX_PAGE + 1}), rule),
        ("user.list", json!({"limit": null, "status": null}), takes),
        ("user.list", json!({"status": "gone"}), refuses),
        (
            "role.grant",
            json!({"email": "a@example.com", "role": "admin"}),
            takes,
        ),
        (
            "role.grant",
            json!({"email": "a@example.com", "role": "Admin"}),
            refuses,
        ),
        ("role.show", json!({"role": "viewer"}), takes),
        ("role.show", json!({}), refuses),
        ("account.activate", json!({"token": "abc"}), takes),
        ("account.activate", json!({"token": 7}), refuses),
        ("events.subscribe", json!({"after": 0}), takes),
        ("events.subscribe", json!({"after": -1}), refuses),
        ("events.subscribe", json!({"after": 1.5}), refuses),
        (
            "audit.list",
            json!({"limit": 1000, "outcome": "refused"}),
            takes,
        ),
        ("audit.list", json!({"limit": 1001}), rule),
        ("audit.verify", json!({"checkpoint": null}), takes),
        ("admin.backup", json!({"all": true}), refuses),
    ];
    for (name, params, daemon) in cases {
        let validator = jsonschema::draft7::new(&params_schema(&doc, name)).unwrap();
        assert_eq!(
            daemon_takes(name, &params),
            daemon != refuses,
            "{name} {params}: the wire's parser"
        );
        assert_eq!(
            validator.is_valid(&params),
            daemon == takes,
            "{name} {params}: the schema and the daemon disagree"
        );
    }
}

/// The notifications of the feed and of a backup are described, each with its params'
/// schema, in the method that starts them, and what they carry fits those schemas.
#[test]
fn notifications_are_described_with_their_params() {
    let doc = document();
    assert!(doc["info"]["description"]
        .as_str()
        .unwrap()
        .contains("x-notifications"));
    let notifications = |name: &str| -> Vec<(String, Value)> {
        method(&doc, name)["x-notifications"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no x-notifications"))
            .iter()
            .map(|n| {
                assert!(n["description"].as_str().unwrap().ends_with('.'), "{n}");
                (n["name"].as_str().unwrap().to_owned(), n["params"].clone())
            })
            .collect()
    };
    let feed = notifications("events.subscribe");
    let backup = notifications("admin.backup");
    let names = |list: &[(String, Value)]| list.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&feed), ["event", "events.closed"]);
    assert_eq!(
        names(&backup),
        ["backup.records", "backup.end", "backup.failed"]
    );
    let with_notifications: Vec<&str> = doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m.get("x-notifications").is_some())
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(with_notifications, ["events.subscribe", "admin.backup"]);
    let event = Event {
        seq: 42,
        at: "2026-05-01T12:00:03Z".into(),
        kind: EventKind::MemberBlocked,
        org: Some("acme".into()),
        email: "a@example.com".into(),
        role: Some(Role::Deployer),
        previous_role: None,
        status: None,
        uid: Some(1001),
        actor: None,
        until: Some("2026-06-01T00:00:00Z".into()),
        reason: Some("left".into()),
        previous_org: None,
        previous_email: None,
    };
    let sent = [
        (&feed[0].1, serde_json::to_value(&event).unwrap()),
        (
            &feed[1].1,
            serde_json::to_value(FeedClosed {
                after: 42,
                cause: FeedEnd::Behind,
                reason: "too far behind".into(),
            })
            .unwrap(),
        ),
        (
            &backup[0].1,
            json!({"records": [{"kind": "org", "name": "acme"}]}),
        ),
        (
            &backup[1].1,
            serde_json::to_value(BackupEnd::of(BackupCounts::default())).unwrap(),
        ),
        (
            &backup[2].1,
            serde_json::to_value(BackupFailed {
                reason: "the store went away".into(),
            })
            .unwrap(),
        ),
    ];
    for (schema, params) in sent {
        assert_fits(schema, &params, "a notification's params");
    }
    // And they are not lax: an event without its sequence number does not fit.
    let validator = jsonschema::draft7::new(&feed[0].1).unwrap();
    assert!(!validator.is_valid(&json!({"kind": "member.added", "email": "a@b.c"})));
}

/// The directory `.ci/run` installs the npm tools in, or `None` (saying so loudly) outside
/// CI without it.
fn npm_tools(what: &str) -> Option<PathBuf> {
    match std::env::var_os("OPENRPC_META_SCHEMAS") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set OPENRPC_META_SCHEMAS (.ci/run installs {what})"
            );
            eprintln!("SKIPPED: OPENRPC_META_SCHEMAS is not set, so {what} did not run");
            None
        }
    }
}

/// Runs `command`, returning whether it succeeded and what it printed.
fn run(command: &mut Command) -> (bool, String) {
    let out = command
        .output()
        .unwrap_or_else(|err| panic!("{command:?}: {err}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Redocly's `lint` (recommended rules, which for OpenRPC include the spec's own: no
/// required param after an optional one, no param named twice) finds neither error nor
/// warning in the document.
#[test]
fn the_document_passes_redocly_lint() {
    let Some(dir) = npm_tools("@redocly/cli") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let lint = |doc: &Value| -> Value {
        let file = work.path().join("openrpc.json");
        std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        let out = Command::new("node")
            .arg(dir.join("node_modules/@redocly/cli/bin/cli.js"))
            .args(["lint", "--format=json", "--max-problems=1000"])
            .arg(&file)
            .env("REDOCLY_TELEMETRY", "off")
            .env("REDOCLY_SUPPRESS_NOTIFICATIONS", "true")
            .current_dir(work.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&stdout).unwrap_or_else(|err| {
            panic!(
                "redocly lint printed no report ({err}): {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    let report = lint(&document());
    assert_eq!(
        (&report["totals"]["errors"], &report["totals"]["warnings"]),
        (&json!(0), &json!(0)),
        "redocly lint {}: {:#}",
        report["version"],
        report["problems"]
    );
    // And it lints it as OpenRPC: a required param after an optional one is an error of
    // OpenRPC's own rules.
    let mut broken = document();
    let params = broken["methods"][0]["params"].as_array_mut().unwrap();
    params.push(json!({"name": "a", "required": false, "schema": {}}));
    params.push(json!({"name": "b", "required": true, "schema": {}}));
    let report = lint(&broken);
    let rules: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ruleId"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"spec-no-required-params-after-optional"),
        "{report:#}"
    );
}

/// A TypeScript client generated from the document by `@open-rpc/generator` compiles
/// (`tsc --noEmit`, with the client's own dependencies as the generator's template pins
/// them, which `.ci/run` installs in `client/` beside the tools).
///
/// The generator writes a method named with a dot (`org.list`) as a class member of that
/// name, which is no TypeScript (open-rpc/generator#619): those members, and only those,
/// are quoted before compiling. Everything taken from the document (the types of every
/// param and result, the method signatures) is compiled as generated.
#[test]
fn a_typescript_client_generated_from_the_document_compiles() {
    let Some(dir) = npm_tools("@open-rpc/generator and TypeScript") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("openrpc.json");
    std::fs::write(&file, serde_json::to_vec(&document()).unwrap()).unwrap();
    let (generated, said) = run(Command::new("node")
        .arg(dir.join("node_modules/@open-rpc/generator/build/cli.js"))
        .args([
            "generate",
            "-t",
            "client",
            "-l",
            "typescript",
            "-n",
            "compartmentd",
        ])
        .arg("-d")
        .arg(&file)
        .arg("-o")
        .arg(work.path().join("out"))
        .current_dir(work.path()));
    assert!(generated, "the generator failed: {said}");
    // It complains of nothing in the document (it warns of `type` arrays, for one).
    assert!(!said.contains("advisable"), "the generator warned: {said}");
    let client = work.path().join("out/client/typescript");
    let index = client.join("src/index.ts");
    let source = std::fs::read_to_string(&index).unwrap();
    let mut quoted = 0;
    let source: Vec<String> = source
        .lines()
        .map(|line| {
            let member = line
                .strip_prefix("  public ")
                .and_then(|rest| rest.split_once(": "))
                .filter(|(name, _)| METHODS.contains(name) && name.contains('.'));
            match member {
                Some((name, rest)) => {
                    quoted += 1;
                    format!("  public \"{name}\": {rest}")
                }
                None => line.to_owned(),
            }
        })
        .collect();
    assert!(quoted <= METHODS.len());
    std::fs::write(&index, source.join("\n")).unwrap();
    std::os::unix::fs::symlink(dir.join("client/node_modules"), client.join("node_modules"))
        .unwrap();
    let (compiled, said) = run(Command::new("node")
        .arg(dir.join("client/node_modules/typescript/bin/tsc"))
        .args(["--noEmit", "-p"])
        .arg(&client)
        .current_dir(&client));
    assert!(compiled, "the generated client does not compile: {said}");
    // Every method is in it, with its summary.
    let source = source.join("\n");
    for method in document()["methods"].as_array().unwrap() {
        assert!(
            source.contains(&format!(
                "this.request(\"{}\"",
                method["name"].as_str().unwrap()
            )),
            "{}",
            method["name"]
        );
    }
}

/// Debian's Python: the one python3-jsonschema installs into, whatever other `python3` is
/// first on the PATH.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// Python's `jsonschema` (Debian's python3-jsonschema), a second validator apart from the
/// one the other tests use: every schema in the document is a valid draft-07 schema, and
/// requests and results right and wrong read the same by it.
#[test]
fn pythons_jsonschema_reads_the_schemas_alike() {
    let python = Command::new(DEBIAN_PYTHON)
        .args(["-c", "import jsonschema"])
        .output();
    if !python.is_ok_and(|out| out.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have /usr/bin/python3 with jsonschema (.ci/run installs python3-jsonschema)"
        );
        eprintln!(
            "SKIPPED: /usr/bin/python3 cannot import jsonschema, so it did not check the schemas"
        );
        return;
    }
    let doc = document();
    let mut schemas: Vec<Value> = Vec::new();
    for method in doc["methods"].as_array().unwrap() {
        let name = method["name"].as_str().unwrap();
        schemas.push(params_schema(&doc, name));
        schemas.push(method["result"]["schema"].clone());
        for notification in method
            .get("x-notifications")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            schemas.push(notification["params"].clone());
        }
    }
    let two_subjects = json!({"permission": "project.read", "uid": 1, "user": "alice"});
    let one_subject = json!({"permission": "project.read", "uid": 1, "user": null});
    let cases = [
        ("authz.check", one_subject, true),
        ("authz.check", two_subjects.clone(), false),
        ("authz.check", json!({"checks": [two_subjects]}), false),
        (
            "user.invite",
            json!({"email": "a@example.com", "role": "viewer", "org": null}),
            true,
        ),
        ("user.invite", json!({"email": "a@example.com"}), false),
        ("user.list", json!({"limit": 1000}), true),
        ("events.subscribe", json!({"after": 3}), true),
    ];
    let checks: Vec<Value> = cases
        .iter()
        .map(|(name, params, fits)| {
            assert_eq!(daemon_takes(name, params), *fits, "{name} {params}");
            json!({"what": format!("{name} {params}"), "schema": params_schema(&doc, name), "instance": params, "valid": fits})
        })
        .collect();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("cases.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&json!({"schemas": schemas, "checks": checks})).unwrap(),
    )
    .unwrap();
    let (ok, said) = run(Command::new(DEBIAN_PYTHON)
        .arg("-c")
        .arg(PYTHON_CHECK)
        .arg(&file));
    assert!(ok, "python's jsonschema disagrees: {said}");
    assert!(said.contains("checked"), "{said}");
}

/// Reads the cases and checks them with `jsonschema`'s draft-07 validator.
const PYTHON_CHECK: &str = r#"
import json, sys
import jsonschema
cases = json.load(open(sys.argv[1]))
for schema in cases["schemas"]:
    jsonschema.Draft7Validator.check_schema(schema)
wrong = []
for case in cases["checks"]:
    valid = jsonschema.Draft7Validator(case["schema"]).is_valid(case["instance"])
    if valid != case["valid"]:
        wrong.append(case["what"])
if wrong:
    sys.exit("read otherwise: " + "; ".join(wrong))
print("checked %d schemas and %d cases" % (len(cases["schemas"]), len(cases["checks"])))
"#;
