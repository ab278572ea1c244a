//! `rpc.discover`: the protocol as an OpenRPC document (the JSON-RPC counterpart of
//! OpenAPI), derived from the method declarations and their types, so that generic
//! JSON-RPC tooling and generated clients know every method, its params and its result.

use schemars::generate::SchemaSettings;
use schemars::Schema;
use serde_json::{json, Map, Value};

/// The OpenRPC version the document follows.
pub const OPENRPC_VERSION: &str = "1.3.2";

/// One method, as the declarations give it.
pub(crate) struct Described {
    pub name: &'static str,
    pub summary: &'static str,
    pub writes: bool,
    pub params: Schema,
    pub result: Schema,
}

/// The OpenRPC document of every method but `rpc.discover` itself (which OpenRPC reserves
/// and implies), each with its params by name and its result, their schemas inline.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft07();
    settings.inline_subschemas = true;
    let mut generator = settings.into_generator();
    let methods: Vec<Value> = super::describe_methods(&mut generator)
        .into_iter()
        .filter(|method| method.name != super::DISCOVER)
        .map(|method| {
            json!({
                "name": method.name,
                "summary": method.summary,
                "paramStructure": "by-name",
                "params": params(method.params),
                "result": {"name": "result", "schema": bare(method.result)},
                "x-writes": method.writes,
            })
        })
        .collect();
    json!({
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": "compartmentd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Organizations, members, roles, invitations and access checks of one Compartment host, as JSON-RPC 2.0 over a local Unix socket, one JSON value per line. Who calls is taken from the socket's peer credentials. Errors carry a stable data.kind.",
        },
        "methods": methods,
    })
}

/// A schema without the `$schema` and `title` of a root schema, its formats standard.
fn bare(schema: Schema) -> Value {
    let mut value = schema.to_value();
    if let Value::Object(map) = &mut value {
        map.remove("$schema");
        map.remove("title");
    }
    standard_formats(&mut value);
    value
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
fn params(schema: Schema) -> Vec<Value> {
    let value = bare(schema);
    let forms: Vec<&Value> = match value.get("oneOf").and_then(Value::as_array) {
        Some(forms) => forms.iter().collect(),
        None => vec![&value],
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
