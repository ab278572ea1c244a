//! `rpc.discover`: the protocol as an OpenRPC document (the JSON-RPC counterpart of
//! OpenAPI), derived from the method declarations and their types, so that generic
//! JSON-RPC tooling and generated clients know every method, its params, its result and
//! the errors it may answer with.
//!
//! OpenRPC 1.3.2 has no place for the notifications a method turns its connection into,
//! nor for a rule that binds params together: a method that sends notifications lists them
//! in `x-notifications` (each its name, description and params' schema), and one whose
//! params take more than one form, or forbid some together, gives their whole schema in
//! `x-params-schema` beside the by-name descriptors.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::{
    BackupEnd, BackupFailed, BackupRecords, ErrorKind, Event, FeedClosed, BACKUP_END_METHOD,
    BACKUP_FAILED_METHOD, BACKUP_RECORDS_METHOD, EVENT_METHOD, FEED_CLOSED_METHOD, MAX_BATCH,
    MAX_LINE,
};

/// The OpenRPC version the document follows.
pub const OPENRPC_VERSION: &str = "1.3.2";

/// One method, as the declarations give it.
pub(crate) struct Described {
    pub name: &'static str,
    /// Its summary, one sentence, and its description, if its doc comment says more.
    pub doc: (String, Option<String>),
    pub writes: bool,
    /// Every error kind it may answer with.
    pub errors: Vec<ErrorKind>,
    pub params: Schema,
    pub result: Schema,
}

/// What the document says of the protocol as a whole.
fn description() -> String {
    format!("Organizations, members, roles, invitations and access checks of one Compartment host, as JSON-RPC 2.0 over a local Unix socket, one JSON value per line (a request, or a batch of up to {MAX_BATCH} in an array), at most {} KiB a request line. Who calls is taken from the socket's peer credentials.\n\nEvery error carries a stable `data.kind` (and perhaps a `data.hint`); each method lists those it may answer with. Besides those: a line that is not JSON is answered `bad_request` with code -32700, and one that is no request `bad_request` with code -32600, both with a null id; a method not listed here `unknown_method` (-32601); a longer line `frame_too_long` (-32013), after which the connection is closed; and a connection beyond the daemon's limits is answered `busy` (-32014) and closed.\n\nTwo methods turn their connection into a stream of JSON-RPC notifications (requests without an id) once they have answered: `events.subscribe` and `admin.backup`. Each lists the notifications it sends in `x-notifications`, with the schema of their params; the connection then answers no other request. A method whose params take several forms, or forbid some together, gives their whole schema in `x-params-schema`.", MAX_LINE / 1024)
}

/// The OpenRPC document of every method but `rpc.discover` itself (which OpenRPC reserves
/// and implies), each with its params by name, its result and its errors, their schemas
/// inline.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft07();
    settings.inline_subschemas = true;
    let mut generator = settings.into_generator();
    let methods: Vec<Value> = super::describe_methods(&mut generator)
        .into_iter()
        .filter(|method| method.name != super::DISCOVER)
        .map(|method| {
            let (summary, description) = method.doc;
            let params_schema = bare(method.params);
            let mut object = Map::new();
            object.insert("name".into(), method.name.into());
            object.insert("summary".into(), summary.into());
            if let Some(description) = description {
                object.insert("description".into(), description.into());
            }
            object.insert("paramStructure".into(), "by-name".into());
            object.insert("params".into(), params(&params_schema).into());
            object.insert(
                "result".into(),
                json!({"name": "result", "schema": bare(method.result)}),
            );
            let errors = method.errors.iter().map(|kind| error(*kind)).collect();
            object.insert("errors".into(), Value::Array(errors));
            object.insert("x-writes".into(), method.writes.into());
            if !by_name_says_it_all(&params_schema) {
                object.insert("x-params-schema".into(), params_schema);
            }
            if let Some(notifications) = notifications(method.name, &mut generator) {
                object.insert("x-notifications".into(), notifications);
            }
            Value::Object(object)
        })
        .collect();
    json!({
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": "compartmentd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": description(),
            "license": {
                "name": env!("CARGO_PKG_LICENSE"),
                "url": "https://www.apache.org/licenses/LICENSE-2.0",
            },
        },
        "methods": methods,
    })
}

/// The OpenRPC error object of `kind`: its code, what it means, and its stable `kind` as
/// the error's `data` carries it.
fn error(kind: ErrorKind) -> Value {
    json!({
        "code": kind.code(),
        "message": kind.meaning(),
        "data": {"kind": kind.as_str()},
    })
}

/// The notifications `method` turns its connection into, once it has answered.
fn notifications(method: &str, generator: &mut SchemaGenerator) -> Option<Value> {
    let list = match method {
        "events.subscribe" => vec![
            notification::<Event>(
                generator,
                EVENT_METHOD,
                "One change, in the order of `seq`; a subscriber that reconnects with the last `seq` it handled as `after` misses nothing.",
            ),
            notification::<FeedClosed>(
                generator,
                FEED_CLOSED_METHOD,
                "The last notification of a feed the daemon ends, saying why (`cause`, `reason`) and after which change to subscribe again (`after`).",
            ),
        ],
        "admin.backup" => vec![
            notification::<BackupRecords<'static>>(
                generator,
                BACKUP_RECORDS_METHOD,
                "A page of the backup's records, in the order of the file, each an object with its `kind`.",
            ),
            notification::<BackupEnd>(
                generator,
                BACKUP_END_METHOD,
                "The last notification of a backup sent whole: the counts of what was sent, also the file's last line.",
            ),
            notification::<BackupFailed>(
                generator,
                BACKUP_FAILED_METHOD,
                "The last notification of a backup the daemon could not finish, saying why.",
            ),
        ],
        _ => return None,
    };
    Some(Value::Array(list))
}

/// A notification `name` with params of type `T`.
fn notification<T: JsonSchema>(
    generator: &mut SchemaGenerator,
    name: &str,
    description: &str,
) -> Value {
    json!({
        "name": name,
        "description": description,
        "params": bare(generator.root_schema_for::<T>()),
    })
}

/// Whether the by-name descriptors of an object schema say all it does: its properties,
/// which of them are required, and no others. Forms (`oneOf`) or rules that bind params
/// together (`not`, `anyOf`, `allOf`, dependencies) they cannot say.
fn by_name_says_it_all(schema: &Value) -> bool {
    schema.as_object().is_none_or(|map| {
        map.keys().all(|key| {
            matches!(
                key.as_str(),
                "type" | "properties" | "required" | "additionalProperties" | "description"
            )
        })
    })
}

/// A schema without the `$schema` and `title` of a root schema, its formats standard, its
/// nullable values alternatives.
fn bare(schema: Schema) -> Value {
    let mut value = schema.to_value();
    if let Value::Object(map) = &mut value {
        map.remove("$schema");
        map.remove("title");
    }
    standard_formats(&mut value);
    nullable_as_alternatives(&mut value);
    value
}

/// A value that may be null is written by schemars as `"type": [T, "null"]`; OpenRPC's
/// tools prefer alternatives, and `@open-rpc/generator` names a type written so one way
/// where it declares it and another where a method uses it, so that the client it makes
/// does not compile. Each becomes `"anyOf": [{"type": T, …}, {"type": "null"}]`, the
/// keywords about the value in the first alternative, its description beside them.
fn nullable_as_alternatives(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(nullable_as_alternatives);
            let Some(Value::Array(types)) = map.get("type") else {
                return;
            };
            let others: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
            if others.len() == types.len() {
                return;
            }
            let mut value_schema = Map::new();
            let mut outer = Map::new();
            for (key, schema) in std::mem::take(map) {
                match key.as_str() {
                    "type" => {
                        let others = match <[Value; 1]>::try_from(others.clone()) {
                            Ok([one]) => one,
                            Err(others) => Value::Array(others),
                        };
                        value_schema.insert(key, others);
                    }
                    "description" | "default" | "title" | "examples" => {
                        outer.insert(key, schema);
                    }
                    "enum" => {
                        let names = schema
                            .as_array()
                            .map(|names| names.iter().filter(|n| !n.is_null()).cloned().collect())
                            .unwrap_or_default();
                        value_schema.insert(key, Value::Array(names));
                    }
                    _ => {
                        value_schema.insert(key, schema);
                    }
                }
            }
            outer.insert(
                "anyOf".into(),
                json!([Value::Object(value_schema), {"type": "null"}]),
            );
            *map = outer;
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_as_alternatives),
        _ => {}
    }
}

/// The number formats schemars writes for Rust's integer types (`uint32`, …) are no
/// JSON Schema formats, and validators built on ajv refuse a whole document for one: each
/// is replaced by the range it stands for, where the schema sets none stricter.
fn standard_formats(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let range = match map.get("format").and_then(Value::as_str) {
                Some("uint8") => Some((json!(0), json!(u8::MAX))),
                Some("uint16") => Some((json!(0), json!(u16::MAX))),
                Some("uint32") => Some((json!(0), json!(u32::MAX))),
                Some("uint64" | "uint") => Some((json!(0), json!(u64::MAX))),
                Some("int8") => Some((json!(i8::MIN), json!(i8::MAX))),
                Some("int16") => Some((json!(i16::MIN), json!(i16::MAX))),
                Some("int32") => Some((json!(i32::MIN), json!(i32::MAX))),
                Some("int64" | "int") => Some((json!(i64::MIN), json!(i64::MAX))),
                Some("float" | "double") => Some((Value::Null, Value::Null)),
                _ => None,
            };
            if let Some((minimum, maximum)) = range {
                map.remove("format");
                if !minimum.is_null() {
                    map.entry("minimum").or_insert(minimum);
                    map.entry("maximum").or_insert(maximum);
                }
            }
            for child in map.values_mut() {
                standard_formats(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(standard_formats),
        _ => {}
    }
}

/// The params of an object schema as OpenRPC's by-name content descriptors. A schema of
/// several forms (`oneOf`, as `authz.check` takes) gives each name any form has, none of
/// them required on its own.
fn params(value: &Value) -> Vec<Value> {
    let forms: Vec<&Value> = match value.get("oneOf").and_then(Value::as_array) {
        Some(forms) => forms.iter().collect(),
        None => vec![value],
    };
    let several = forms.len() > 1;
    let mut descriptors: Vec<Value> = Vec::new();
    for form in forms {
        let required: Vec<&str> = form
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let empty = Map::new();
        let properties = form
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for (name, schema) in properties {
            if descriptors.iter().any(|d| d["name"] == *name) {
                continue;
            }
            descriptors.push(json!({
                "name": name,
                "required": !several && required.contains(&name.as_str()),
                "schema": schema,
            }));
        }
    }
    // OpenRPC 1.3.2: the required params come before the optional ones (a stable sort
    // keeps each group in the declared order).
    descriptors.sort_by_key(|descriptor| descriptor["required"] != Value::Bool(true));
    descriptors
}
