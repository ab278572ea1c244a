//! What a method is: its name, params, result, kind, permission and shapes, as one trait
//! ([`Method`]), and the macro that turns the list of declarations in `wire/mod.rs` into
//! the [`Request`](super::Request) enum, its parser, its visitor and
//! [`DECLARATIONS`](super::DECLARATIONS).

use std::fmt;

use serde::de::{DeserializeOwned, Visitor};
use serde::{Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::{ErrorKind, Permission, Request, RpcError};

/// One method of the protocol, declared once in `wire/mod.rs`. The marker types in
/// [`methods`](super::methods) implement it; the daemon's handlers and the CLI's renderers
/// are implemented per marker type, so a method without either does not compile.
pub trait Method: 'static {
    /// The wire name, `noun.verb`.
    const NAME: &'static str;
    /// Whether the method reads a snapshot (logged at info or, `routine`, at debug) or
    /// changes the store through the single writer.
    const KIND: Kind;
    /// The permission of the caller's role that the method's rule requires, when it asks
    /// one (then [`Gated::NEEDS`] too).
    const PERMISSION: Option<Permission>;
    /// The shapes of the params objects the method reads: each the member names of one
    /// form (most params have one form; `authz.check` has two). None for a method without
    /// params.
    const SHAPES: &'static [&'static [&'static str]];
    /// The error kinds the method's own rule may answer with, as declared; with those every
    /// method may, [`errors_of`] lists them all.
    const ERRORS: &'static [ErrorKind];
    /// [`Reads`] or [`Writes`], as [`Method::KIND`] says: the daemon serves a method whose
    /// access is [`Reads`] with a context that has no writer.
    type Access: Access;
    type Params: Params;
    type Result: Serialize + DeserializeOwned + fmt::Debug + Send + 'static;

    /// The request carrying `params`.
    fn request(params: Self::Params) -> Request;
}

/// A method whose rule lets a caller past only when their role in the organization holds
/// [`Gated::NEEDS`]; declared `needs Permission` in `wire/mod.rs`. The rule reads the
/// permission from here, so the declaration and the rule cannot disagree.
pub trait Gated: Method {
    /// The permission, as [`Method::PERMISSION`] holds it too.
    const NEEDS: Permission;
}

/// What a method does with the store, as declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads a snapshot; its successes are logged at info.
    Read,
    /// A read that tells a caller only about itself or the protocol, or that services ask
    /// thousands of times a second: its successes are logged at debug.
    Routine,
    /// Changes the store, through the single writer.
    Write,
}

impl Kind {
    /// Whether the method changes the store.
    pub const fn writes(self) -> bool {
        matches!(self, Kind::Write)
    }
}

/// Whether a method's handler may reach the writer, as a type: [`Reads`] for the kinds
/// that read, [`Writes`] for those that change the store. Implemented by those two only.
pub trait Access: sealed::Sealed + Send + Sync + 'static {
    /// Whether the methods of this access change the store.
    const WRITES: bool;
}

/// The access of a method declared `read` or `routine`: served on a snapshot.
#[derive(Debug)]
pub enum Reads {}

/// The access of a method declared `write`: served through the writer.
#[derive(Debug)]
pub enum Writes {}

impl Access for Reads {
    const WRITES: bool = false;
}

impl Access for Writes {
    const WRITES: bool = true;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Reads {}
    impl Sealed for super::Writes {}
}

/// One method's declaration as data, for what goes through every method (the tests, the
/// documentation): what [`Method`] says of it, without its types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declaration {
    pub name: &'static str,
    pub kind: Kind,
    pub permission: Option<Permission>,
    pub shapes: &'static [&'static [&'static str]],
    /// The error kinds its own rule may answer with, as declared.
    pub errors: &'static [ErrorKind],
}

impl Declaration {
    /// Every error kind the method may answer with: those declared, and those of every
    /// method of its kind ([`errors_of`]).
    pub fn errors(&self) -> Vec<ErrorKind> {
        errors_of(self.kind, self.errors)
    }
}

/// The error kinds of a method of `kind` that declares `declared`: `bad_request` (its
/// params) and `internal` (a failure inside) for every method, `busy` and `unavailable`
/// for a change too (too many changes from one user, a conflict; a disk nearly full, the
/// daemon stopping), then those declared, each once, in the order of their codes.
pub fn errors_of(kind: Kind, declared: &[ErrorKind]) -> Vec<ErrorKind> {
    let mut all = vec![ErrorKind::BadRequest, ErrorKind::Internal];
    if kind.writes() {
        all.extend([ErrorKind::Busy, ErrorKind::Unavailable]);
    }
    for kind in declared {
        if !all.contains(kind) {
            all.push(*kind);
        }
    }
    all.sort_by_key(|kind| (kind.code() > -32100, kind.code().unsigned_abs()));
    all
}

/// A method's documentation, as its doc comment's lines give it: the first paragraph, one
/// sentence, is its summary; the paragraphs after it, if any, its description.
pub(crate) fn summary_and_description(lines: &[&str]) -> (String, Option<String>) {
    let mut paragraphs: Vec<String> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in lines.iter().map(|line| line.trim()) {
        if line.is_empty() {
            if !current.is_empty() {
                paragraphs.push(current.join(" "));
                current.clear();
            }
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        paragraphs.push(current.join(" "));
    }
    let mut paragraphs = paragraphs.into_iter();
    let summary = paragraphs.next().unwrap_or_default();
    let rest: Vec<String> = paragraphs.collect();
    (summary, (!rest.is_empty()).then(|| rest.join("\n\n")))
}

/// A method's params object.
pub trait Params:
    Serialize + DeserializeOwned + fmt::Debug + Clone + PartialEq + Send + Sync + 'static
{
    /// The organization the params name, if they name one (for logs; the rules resolve the
    /// caller's current organization when none is named).
    fn org(&self) -> Option<&str> {
        None
    }

    /// Reads the params straight from the JSON text of an object, or `None` when the text
    /// is not right for them (the caller then reads it again through a `Value` to say what
    /// is wrong). Each params type refuses members it does not know, so a text read here
    /// reads the same through a `Value`.
    fn from_text(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// Reads the params from an object being parsed, in the envelope's own pass (see
    /// [`decode`](super::decode)): what [`Params::from_text`] would read of the object's
    /// text, or an error, after which the line is read again the long way. By default the
    /// params' own `Deserialize`.
    fn read<'de, D: Deserializer<'de>>(object: D) -> Result<Self, D::Error> {
        Self::deserialize(object)
    }
}

/// The request of method `M` with its params read from an object being parsed; an error
/// when what is there is no object (an array, `null`), which only the long way reads right.
pub(super) fn read_params<'de, M: Method, D: Deserializer<'de>>(
    params: D,
) -> Result<Request, D::Error> {
    M::Params::read(ObjectOnly(params)).map(M::request)
}

/// A deserializer that reads an object, and refuses anything else (serde_json would read
/// a struct from an array too, by position, where the params' rules want an object).
struct ObjectOnly<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// Something that does one thing with any request: serve it (the daemon), send and render
/// it (the CLI). [`Request::visit`] calls the [`Handle`] impl of the request's method.
pub trait Visit {
    type Output;
}

/// What a [`Visit`] does with method `M`'s params.
pub trait Handle<M: Method>: Visit {
    fn handle(self, params: M::Params) -> Self::Output;
}

/// Reads a method's params from their JSON text as sent: absent and `null` read as `{}`,
/// anything but an object is refused, and serde's complaint becomes an `invalid_params`
/// error naming the method.
pub(super) fn parse_params<M: Method>(params: Option<&RawValue>) -> Result<Request, RpcError> {
    let text = match params.map(RawValue::get) {
        None => "{}",
        // JSON-RPC 2.0: params, when there, is an object or an array. An empty array, which
        // many clients send for a method without params, is no params.
        Some("null") => {
            return Err(RpcError::invalid_params(
                M::NAME,
                "params must be an object, or left out (null is neither)".to_owned(),
            ))
        }
        Some(text) if is_empty_array(text) => "{}",
        Some(text) if text.starts_with('{') => text,
        Some(text) => {
            // What a `Value` cannot hold (`1e400`) is said first, as it always was.
            let message = match serde_json::from_str::<Value>(text) {
                Ok(_) => "params must be an object".to_owned(),
                Err(err) => err.to_string(),
            };
            return Err(RpcError::invalid_params(M::NAME, message));
        }
    };
    if let Some(params) = M::Params::from_text(text) {
        return Ok(M::request(params));
    }
    // Read again through a `Value`, whose reading is the contract: the same words for each
    // mistake, a member named twice read as its last, a number `Value` cannot hold (such as
    // `1e400`) refused wherever it is.
    serde_json::from_str::<Value>(text)
        .and_then(serde_json::from_value::<M::Params>)
        .map(M::request)
        .map_err(|err| RpcError::invalid_params(M::NAME, err.to_string()))
}

/// Whether `text` is `[]`, white space inside allowed.
fn is_empty_array(text: &str) -> bool {
    text.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|inside| inside.trim().is_empty())
}

/// The reading [`parse_params`] must agree with: params through a `serde_json::Value`.
#[cfg(test)]
pub(super) fn parse_value<M: Method>(params: Option<Value>) -> Result<Request, RpcError> {
    let value = match params {
        None => Value::Object(Default::default()),
        Some(Value::Null) => {
            return Err(RpcError::invalid_params(
                M::NAME,
                "params must be an object, or left out (null is neither)".to_owned(),
            ))
        }
        Some(Value::Array(items)) if items.is_empty() => Value::Object(Default::default()),
        Some(value @ Value::Object(_)) => value,
        Some(_) => {
            return Err(RpcError::invalid_params(
                M::NAME,
                "params must be an object".to_owned(),
            ))
        }
    };
    serde_json::from_value::<M::Params>(value)
        .map(M::request)
        .map_err(|err| RpcError::invalid_params(M::NAME, err.to_string()))
}

/// Declares the protocol's methods; invoked once, in `wire/mod.rs`. Each line is
///
/// ```text
/// Variant[(ParamsType)] = "noun.verb" => ResultType, read|routine|write,
///     needs Permission|none, shapes [[members of one form], …],
///     errors [ErrorKind, …];
/// ```
///
/// `routine` is a read that tells a caller only about itself or the protocol, or that
/// services ask thousands of times a second, whose successes the daemon logs at debug
/// rather than info. `needs` names the [`Permission`] of the caller's role that the
/// method's rule requires (`none` when its rule asks no role's permission: a question about
/// oneself, a superuser's act). `shapes` lists the member names of each form its params
/// take (`[]` without params); a test holds them against the params' JSON Schema. `errors`
/// names the [`ErrorKind`]s the method's rule may answer with, beyond those every method
/// of its kind may ([`errors_of`]: `bad_request` and `internal`, and for a change `busy`
/// and `unavailable`); `rpc.discover` lists them all for each method. Its doc comment's
/// first paragraph, one sentence, is its summary there, the paragraphs after it its
/// description. A method
/// without a params type takes [`NoParams`](super::NoParams) and its `Request` variant
/// carries no data. From that one list come: a marker type per method in `wire::methods`
/// implementing [`Method`] (and [`Gated`] when it needs a permission), the [`Request`]
/// enum, [`METHODS`](super::METHODS), [`DECLARATIONS`](super::DECLARATIONS), and
/// `Request::parse`, `method`, `kind`, `org`, `params` and `visit`.
macro_rules! declare_methods {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident $(($params:ty))? = $name:literal => $result:ty, $kind:ident,
            needs $permission:ident, shapes [$([$($member:literal),* $(,)?]),* $(,)?],
            errors [$($error:ident),* $(,)?];
    )*) => {
        /// One marker type per method, implementing [`Method`](super::Method).
        pub mod methods {
            $(
                $(#[doc = $doc])*
                #[derive(Debug)]
                pub enum $variant {}
            )*
        }

        /// Each method as `rpc.discover` describes it, in declaration order: its name, its
        /// documentation's summary and description, whether it writes, the error kinds it
        /// may answer with, and its params' and result's JSON Schemas, made by `generator`.
        pub(crate) fn describe_methods(
            generator: &mut schemars::SchemaGenerator,
        ) -> Vec<$crate::wire::openrpc::Described> {
            vec![$(
                $crate::wire::openrpc::Described {
                    name: $name,
                    doc: $crate::wire::method::summary_and_description(&[$($doc),*]),
                    writes: declare_methods!(@kind $kind).writes(),
                    errors: $crate::wire::method::errors_of(
                        declare_methods!(@kind $kind),
                        <methods::$variant as $crate::wire::Method>::ERRORS,
                    ),
                    params: generator.root_schema_for::<declare_methods!(@params_type [$($params)?])>(),
                    result: generator.root_schema_for::<$result>(),
                },
            )*]
        }

        // Outside `methods`, so that a result type named like a marker (`OrgList`) means
        // the result.
        $(
            impl $crate::wire::Method for methods::$variant {
                const NAME: &'static str = $name;
                const KIND: $crate::wire::Kind = declare_methods!(@kind $kind);
                const PERMISSION: Option<$crate::wire::Permission> =
                    declare_methods!(@permission $permission);
                const SHAPES: &'static [&'static [&'static str]] = &[$(&[$($member),*]),*];
                const ERRORS: &'static [$crate::wire::ErrorKind] =
                    &[$($crate::wire::ErrorKind::$error),*];
                type Access = declare_methods!(@access $kind);
                type Params = declare_methods!(@params_type [$($params)?]);
                type Result = $result;

                fn request(params: Self::Params) -> $crate::wire::Request {
                    declare_methods!(@wrap $variant [$($params)?] params)
                }
            }

            declare_methods!(@gated $variant $permission);

            // The access type agrees with the kind, whatever the rules of `@access` become.
            const _: () = assert!(
                <<methods::$variant as $crate::wire::Method>::Access as $crate::wire::Access>::WRITES
                    == <methods::$variant as $crate::wire::Method>::KIND.writes()
            );
        )*

        /// Every method's declaration, in declaration order.
        pub const DECLARATIONS: &[$crate::wire::Declaration] = &[$(
            $crate::wire::Declaration {
                name: $name,
                kind: <methods::$variant as $crate::wire::Method>::KIND,
                permission: <methods::$variant as $crate::wire::Method>::PERMISSION,
                shapes: <methods::$variant as $crate::wire::Method>::SHAPES,
                errors: <methods::$variant as $crate::wire::Method>::ERRORS,
            },
        )*];

        /// Every method name, in declaration order, for error hints and documentation.
        pub const METHODS: &[&str] = &[$($name),*];

        /// A request, parsed once; the daemon serves it through [`Request::visit`].
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Request {
            $(
                $(#[doc = $doc])*
                $variant $(($params))?,
            )*
        }

        impl Request {
            /// What the request's method does with the store, as declared.
            pub fn kind(&self) -> $crate::wire::Kind {
                match self {
                    $(Request::$variant { .. } => <methods::$variant as $crate::wire::Method>::KIND,)*
                }
            }

            /// Whether the method is declared `routine`: a read whose successes are logged
            /// at debug, so that the journal holds changes, refusals and reads of others'
            /// data rather than every routine question.
            pub fn routine(&self) -> bool {
                self.kind() == $crate::wire::Kind::Routine
            }

            /// The wire name of the request's method.
            pub fn method(&self) -> &'static str {
                match self {
                    $(Request::$variant { .. } => $name,)*
                }
            }

            /// Whether the request's method changes the store.
            pub fn writes(&self) -> bool {
                self.kind().writes()
            }

            /// The organization the request names, if it names one.
            pub fn org(&self) -> Option<&str> {
                match self {
                    $(
                        declare_methods!(@pattern $variant [$($params)?] params) =>
                            $crate::wire::Params::org(declare_methods!(@params_ref [$($params)?] params)),
                    )*
                }
            }

            /// Builds the request for `method` from its params, with a `bad_request` or
            /// `unknown_method` error a client can act on.
            pub fn parse(method: &str, params: Option<&serde_json::value::RawValue>) -> Result<Request, $crate::wire::RpcError> {
                match method {
                    $($name => $crate::wire::method::parse_params::<methods::$variant>(params),)*
                    _ => Err($crate::wire::RpcError::unknown_method(method)),
                }
            }

            /// Reads the params of `method` from an object being parsed (the envelope's one
            /// pass): `None` for a method the protocol does not have, whose params are
            /// skipped.
            pub(crate) fn read<'de, D: serde::Deserializer<'de>>(method: &str, params: D) -> Result<Option<Request>, D::Error> {
                match method {
                    $($name => $crate::wire::method::read_params::<methods::$variant, D>(params).map(Some),)*
                    _ => <serde::de::IgnoredAny as serde::Deserialize>::deserialize(params).map(|_| None),
                }
            }

            /// [`Request::parse`] through a `Value`: what it must agree with.
            #[cfg(test)]
            pub(crate) fn parse_value(method: &str, params: Option<serde_json::Value>) -> Result<Request, $crate::wire::RpcError> {
                match method {
                    $($name => $crate::wire::method::parse_value::<methods::$variant>(params),)*
                    _ => Err($crate::wire::RpcError::unknown_method(method)),
                }
            }

            /// The params object as sent on the wire.
            pub fn params(&self) -> serde_json::Value {
                let value = match self {
                    $(
                        declare_methods!(@pattern $variant [$($params)?] params) =>
                            serde_json::to_value(declare_methods!(@params_ref [$($params)?] params)),
                    )*
                };
                // Params are plain structs of strings, which always serialize.
                value.unwrap_or_default()
            }

            /// Serializes the params object as it is, with no `Value` in between.
            pub fn serialize_params<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(
                        declare_methods!(@pattern $variant [$($params)?] params) =>
                            serde::Serialize::serialize(declare_methods!(@params_ref [$($params)?] params), serializer),
                    )*
                }
            }

            /// Hands the request's params to `visitor`'s handler for its method. The bound
            /// lists every method, so a visitor that misses one does not compile.
            pub fn visit<V>(self, visitor: V) -> V::Output
            where
                V: $crate::wire::Visit $(+ $crate::wire::Handle<methods::$variant>)*,
            {
                match self {
                    $(
                        declare_methods!(@pattern $variant [$($params)?] params) =>
                            <V as $crate::wire::Handle<methods::$variant>>::handle(
                                visitor,
                                declare_methods!(@params_value [$($params)?] params),
                            ),
                    )*
                }
            }
        }
    };

    (@kind read) => { $crate::wire::Kind::Read };
    (@kind routine) => { $crate::wire::Kind::Routine };
    (@kind write) => { $crate::wire::Kind::Write };
    (@access read) => { $crate::wire::Reads };
    (@access routine) => { $crate::wire::Reads };
    (@access write) => { $crate::wire::Writes };
    (@permission none) => { None };
    (@permission $permission:ident) => { Some($crate::wire::Permission::$permission) };
    (@gated $variant:ident none) => {};
    (@gated $variant:ident $permission:ident) => {
        impl $crate::wire::Gated for methods::$variant {
            const NEEDS: $crate::wire::Permission = $crate::wire::Permission::$permission;
        }
    };
    (@params_type []) => { $crate::wire::NoParams };
    (@params_type [$params:ty]) => { $params };
    (@wrap $variant:ident [] $p:ident) => {{
        let $crate::wire::NoParams {} = $p;
        $crate::wire::Request::$variant
    }};
    (@wrap $variant:ident [$params:ty] $p:ident) => { $crate::wire::Request::$variant($p) };
    (@pattern $variant:ident [] $p:ident) => { Request::$variant };
    (@pattern $variant:ident [$params:ty] $p:ident) => { Request::$variant($p) };
    (@params_ref [] $p:ident) => { &$crate::wire::method::NO_PARAMS };
    (@params_ref [$params:ty] $p:ident) => { $p };
    (@params_value [] $p:ident) => { $crate::wire::NoParams {} };
    (@params_value [$params:ty] $p:ident) => { $p };
}

pub(super) use declare_methods;

/// The params of every method that takes none, borrowed for the life of the program.
pub(super) static NO_PARAMS: super::NoParams = super::NoParams {};
