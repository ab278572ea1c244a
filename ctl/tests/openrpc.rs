//! `rpc.discover`'s OpenRPC document: it lists exactly the methods the protocol declares,
//! the requests and results the daemon exchanges fit its schemas, and it is a valid OpenRPC
//! document by the OpenRPC meta-schema (published on the npm registry as
//! `@open-rpc/meta-schema`; `.ci/run` fetches it and names its file in
//! `OPENRPC_META_SCHEMA`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use compartmentctl::wire::openrpc::{document, OPENRPC_VERSION};
use compartmentctl::wire::{
    AdminStatus, AuthzAnswer, Decision, LastBatch, LastSweep, Permission, Reason, Role, RoleInfo,
    StoreInfo, Subscribed, DISCOVER, METHODS,
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
/// required, and nothing else.
fn params_schema(doc: &Value, name: &str) -> Value {
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
    // As strict as the daemon: a page of 1 to 1,000.
    assert_eq!(
        (&limit["minimum"], &limit["maximum"]),
        (&json!(1), &json!(1000)),
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
