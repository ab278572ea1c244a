//! A blocking client: one connection, requests answered in order.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::peer::{Trust, UntrustedServer};
use crate::wire::{
    methods, AuthzCheckParams, BackupEnd, BackupFailed, BackupHeader, BackupRecords, Check,
    Decision, Event, EventsSubscribeParams, FeedClosed, Method, NoParams, Request, RpcError,
    Subscribed, BACKUP_END_METHOD, BACKUP_FAILED_METHOD, BACKUP_RECORDS_METHOD, EVENT_METHOD,
    FEED_CLOSED_METHOD, JSONRPC, MAX_RESPONSE_LINE,
};

/// Why a call did not produce a result.
#[derive(Debug)]
pub enum ClientError {
    /// The daemon's socket could not be reached.
    Connect { path: PathBuf, source: io::Error },
    /// The connection broke mid-call.
    Io(io::Error),
    /// The daemon answered something that is not a response to this call.
    Protocol(String),
    /// The daemon refused the request.
    Rpc(RpcError),
    /// The client would not talk: the server behind the socket is not one it trusts.
    Untrusted(UntrustedServer),
    /// The client would not talk: no socket path can be made.
    Refused(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { path, source } => {
                write!(
                    f,
                    "cannot reach compartmentd at {}: {source}",
                    path.display()
                )
            }
            ClientError::Io(err) => write!(f, "connection to compartmentd failed: {err}"),
            ClientError::Protocol(msg) => write!(f, "unexpected answer from compartmentd: {msg}"),
            ClientError::Rpc(err) => f.write_str(&err.message),
            ClientError::Untrusted(err) => err.fmt(f),
            ClientError::Refused(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for ClientError {}

/// How much of the daemon's answers is read at a time: a page of `user list` (about
/// 120 KiB) in a read or two rather than in fifteen of the default 8 KiB.
const READ_BUFFER: usize = 128 * 1024;

/// What a feed brings: a change, or the daemon's word that the feed ended and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    /// Boxed: an event is several times the size of the feed's end.
    Event(Box<Event>),
    /// The last item: resubscribe with its `after` to go on from where it stopped.
    Closed(FeedClosed),
}

/// A connection that [`Client::subscribe`] turned into a feed.
pub struct Subscription {
    client: Client,
    /// The daemon's answer to the subscription.
    pub subscribed: Subscribed,
}

impl Subscription {
    /// The next item, waiting for it.
    pub fn next_item(&mut self) -> Result<FeedItem, ClientError> {
        #[derive(Deserialize)]
        struct Notification<'a> {
            method: &'a str,
            #[serde(borrow)]
            params: &'a RawValue,
        }
        let mut line = Vec::new();
        self.client.receive_line(&mut line)?;
        let notification: Notification<'_> =
            serde_json::from_slice(&line).map_err(|err| ClientError::Protocol(err.to_string()))?;
        let protocol = |err: serde_json::Error| ClientError::Protocol(err.to_string());
        match notification.method {
            EVENT_METHOD => serde_json::from_str(notification.params.get())
                .map(|event| FeedItem::Event(Box::new(event)))
                .map_err(protocol),
            FEED_CLOSED_METHOD => serde_json::from_str(notification.params.get())
                .map(FeedItem::Closed)
                .map_err(protocol),
            other => Err(ClientError::Protocol(format!(
                "a feed sent a notification {other:?}"
            ))),
        }
    }
}

/// What a backup brings after its header.
#[derive(Debug)]
pub enum BackupItem<'a> {
    /// A page of record lines, each a JSON object, to be written as they are.
    Records(Vec<&'a RawValue>),
    /// The last item of a whole backup: its end line, with the counts sent.
    End(BackupEnd),
    /// The last item of a backup the daemon could not finish.
    Failed(BackupFailed),
}

/// A connection that [`Client::backup`] turned into a backup being received.
pub struct BackupStream {
    client: Client,
    line: Vec<u8>,
    /// The daemon's answer: the backup's header.
    pub header: BackupHeader,
}

impl BackupStream {
    /// The next item, waiting for it; its records borrow this stream's buffer.
    pub fn next_item(&mut self) -> Result<BackupItem<'_>, ClientError> {
        #[derive(Deserialize)]
        struct Notification<'a> {
            method: &'a str,
            #[serde(borrow)]
            params: &'a RawValue,
        }
        self.client.receive_line(&mut self.line)?;
        let protocol = |err: serde_json::Error| ClientError::Protocol(err.to_string());
        let notification: Notification<'_> =
            serde_json::from_slice(&self.line).map_err(protocol)?;
        match notification.method {
            BACKUP_RECORDS_METHOD => {
                serde_json::from_str::<BackupRecords<'_>>(notification.params.get())
                    .map(|page| BackupItem::Records(page.records))
                    .map_err(protocol)
            }
            BACKUP_END_METHOD => serde_json::from_str(notification.params.get())
                .map(BackupItem::End)
                .map_err(protocol),
            BACKUP_FAILED_METHOD => serde_json::from_str(notification.params.get())
                .map(BackupItem::Failed)
                .map_err(protocol),
            other => Err(ClientError::Protocol(format!(
                "a backup sent a notification {other:?}"
            ))),
        }
    }
}

/// A request line as the client writes it: [`RequestEnvelope`](crate::wire::RequestEnvelope)'s
/// members, the params written straight from the request.
#[derive(Serialize)]
struct Outgoing<'a> {
    jsonrpc: &'static str,
    id: u64,
    method: &'static str,
    #[serde(serialize_with = "params_of")]
    params: &'a Request,
}

fn params_of<S: serde::Serializer>(request: &&Request, serializer: S) -> Result<S::Ok, S::Error> {
    request.serialize_params(serializer)
}

/// A connection to `compartmentd`.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    /// The socket it is connected at, and the uid the daemon behind it runs as.
    path: PathBuf,
    server_uid: u32,
}

impl Client {
    /// Connects to the daemon at `path`, when it runs as root or as this process's own uid
    /// ([`Trust::own`]).
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        Client::connect_trusting(path, &Trust::own())
    }

    /// Connects to the daemon at `path` when `trust` trusts the user it runs as: a client
    /// of a daemon that runs as a user of its own and listens itself (rather than through
    /// systemd's socket unit, which listens as root) names that user.
    pub fn connect_trusting(path: &Path, trust: &Trust) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
        // Nothing is sent before the server is known to be one to trust.
        let server_uid =
            crate::peer::check(&stream, path, trust).map_err(ClientError::Untrusted)?;
        let writer = stream.try_clone().map_err(ClientError::Io)?;
        Ok(Client {
            reader: BufReader::with_capacity(READ_BUFFER, stream),
            writer,
            next_id: 1,
            path: path.to_owned(),
            server_uid,
        })
    }

    /// Gives up on a read or a write that takes longer than `timeout` (completion's quick
    /// questions; a command waits for its answer as long as the daemon takes).
    pub fn set_timeout(&mut self, timeout: std::time::Duration) -> std::io::Result<()> {
        self.reader.get_ref().set_read_timeout(Some(timeout))?;
        self.writer.set_write_timeout(Some(timeout))
    }

    /// The socket this client is connected at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The uid the daemon behind the socket runs as (root's for a system daemon under
    /// systemd, whose socket unit listens as root).
    pub fn server_uid(&self) -> u32 {
        self.server_uid
    }

    /// Calls method `M` with `params`, typed at both ends by the method's declaration.
    pub fn call_method<M: Method>(&mut self, params: M::Params) -> Result<M::Result, ClientError> {
        self.call(&M::request(params))
    }

    /// Asks the daemon whether a user may do something, as its rules decide at this
    /// instant: the caller itself when `check` names nobody, anyone when the caller is a
    /// superuser or in the daemon's `--service-group`.
    ///
    /// ```no_run
    /// use compartmentctl::wire::{Check, Permission};
    /// use compartmentctl::Client;
    ///
    /// # fn main() -> Result<(), compartmentctl::ClientError> {
    /// let mut client = Client::connect("/run/compartment/compartmentd.sock".as_ref())?;
    /// // A service that accepted a connection from uid 1001, about to deploy for it:
    /// let decision = client.check(Check {
    ///     permission: Permission::DeploymentCreate,
    ///     org: Some("acme".into()),
    ///     uid: Some(1001),
    ///     user: None,
    ///     email: None,
    /// })?;
    /// if !decision.allowed {
    ///     eprintln!("refused: {}", decision.message);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn check(&mut self, check: Check) -> Result<Decision, ClientError> {
        // One check is answered with one decision: read as one, not as either form of
        // `AuthzAnswer`, which would read it twice.
        self.call(&Request::AuthzCheck(AuthzCheckParams::One(check)))
    }

    /// [`Client::check`] for many checks in one call; the decisions come in their order.
    pub fn check_many(&mut self, checks: Vec<Check>) -> Result<Vec<Decision>, ClientError> {
        #[derive(Deserialize)]
        struct Decisions {
            decisions: Vec<Decision>,
        }
        let count = checks.len();
        let Decisions { decisions } =
            self.call(&Request::AuthzCheck(AuthzCheckParams::Many(checks)))?;
        if decisions.len() != count {
            return Err(ClientError::Protocol(format!(
                "{} decisions for {count} checks",
                decisions.len()
            )));
        }
        Ok(decisions)
    }

    /// Turns this connection into a feed of membership changes (`events.subscribe`):
    /// superusers and services see every organization's, an organization's admin their
    /// organization's. With `after`, the changes since that sequence number come first;
    /// a service that reconnects with the last `seq` it handled misses nothing.
    ///
    /// ```no_run
    /// use compartmentctl::wire::EventsSubscribeParams;
    /// use compartmentctl::{Client, FeedItem};
    ///
    /// # fn main() -> Result<(), compartmentctl::ClientError> {
    /// let client = Client::connect("/run/compartment/compartmentd.sock".as_ref())?;
    /// let mut feed = client.subscribe(EventsSubscribeParams {
    ///     org: Some("acme".into()),
    ///     after: None,
    /// })?;
    /// loop {
    ///     match feed.next_item()? {
    ///         FeedItem::Event(event) => println!("{} {} {}", event.seq, event.kind, event.email),
    ///         FeedItem::Closed(closed) => {
    ///             eprintln!("feed closed: {}; resubscribe after {}", closed.reason, closed.after);
    ///             break;
    ///         }
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe(mut self, params: EventsSubscribeParams) -> Result<Subscription, ClientError> {
        let subscribed = self.call_method::<methods::EventsSubscribe>(params)?;
        Ok(Subscription {
            client: self,
            subscribed,
        })
    }

    /// Asks for a backup (`admin.backup`, superusers only): the header, then the connection
    /// carries the backup's records ([`BackupStream::next_item`]).
    pub fn backup(mut self) -> Result<BackupStream, ClientError> {
        let header = self.call_method::<methods::AdminBackup>(NoParams {})?;
        Ok(BackupStream {
            client: self,
            line: Vec::new(),
            header,
        })
    }

    /// Sends `request` and decodes its result as `T`.
    pub fn call<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T, ClientError> {
        let id = self.send(request)?;
        let mut line = Vec::new();
        self.receive_line(&mut line)?;
        Client::result_of(&line, id, request.method())
    }

    /// Sends `request` without waiting for its answer, and returns its id. The daemon
    /// answers a connection's requests in the order sent; read each answer with
    /// [`Client::receive_line`] and [`Client::result_of`]. A caller that sends its next
    /// request before handling the last answer has the daemon work on the one while it
    /// works on the other (`user list` does, page after page).
    pub fn send(&mut self, request: &Request) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = serde_json::to_vec(&Outgoing {
            jsonrpc: JSONRPC,
            id,
            method: request.method(),
            params: request,
        })
        .map_err(|err| ClientError::Protocol(err.to_string()))?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(ClientError::Io)?;
        Ok(id)
    }

    /// Reads the next answer line into `line` (cleared first), newline included.
    pub fn receive_line(&mut self, line: &mut Vec<u8>) -> Result<(), ClientError> {
        line.clear();
        let read = (&mut self.reader)
            .take(MAX_RESPONSE_LINE as u64 + 1)
            .read_until(b'\n', line)
            .map_err(ClientError::Io)?;
        if read == 0 {
            return Err(ClientError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "compartmentd closed the connection",
            )));
        }
        if line.last() != Some(&b'\n') {
            return Err(ClientError::Protocol(
                "response line too long or cut off".into(),
            ));
        }
        Ok(())
    }

    /// Decodes `line`, the answer to request `id` (of `method`, named in errors), as `T`,
    /// which may borrow from the line: the result is read straight from the line's text,
    /// never through a `serde_json::Value`.
    pub fn result_of<'a, T: Deserialize<'a>>(
        line: &'a [u8],
        id: u64,
        method: &str,
    ) -> Result<T, ClientError> {
        // The usual answer is read in one pass, its result straight as `T`. Anything else
        // (an error, an answer that does not decode) is read again in two, which tells
        // what is wrong exactly as ever.
        // The line's UTF-8 is checked once, here, rather than string by string.
        let typed = std::str::from_utf8(line)
            .ok()
            .and_then(|text| serde_json::from_str::<Typed<'a, T>>(text).ok());
        if let Some(Typed {
            id: answer_id,
            result: Some(result),
            error: None,
            ..
        }) = typed
        {
            if answer_id.get() == id.to_string() {
                return Ok(result);
            }
        }
        let answer: Answer<'a> =
            serde_json::from_slice(line).map_err(|err| ClientError::Protocol(err.to_string()))?;
        // An error the daemon ties to no request comes with id null (`busy` over a
        // connection cap, `frame_too_long`, an unreadable line): on a connection that has
        // one call in flight, it is this call's answer.
        if answer.id.get() == "null" {
            if let Some(error) = answer.error {
                return Err(ClientError::Rpc(error));
            }
        }
        if answer.id.get() != id.to_string() {
            return Err(ClientError::Protocol(format!(
                "answer for id {} to request {id}",
                answer.id.get()
            )));
        }
        match (answer.result, answer.error) {
            (_, Some(error)) => Err(ClientError::Rpc(error)),
            (Some(result), None) => serde_json::from_str(result.get())
                .map_err(|err| ClientError::Protocol(format!("{method}: {err}"))),
            (None, None) => Err(ClientError::Protocol("neither result nor error".into())),
        }
    }
}

/// A [`crate::wire::Response`] read in place: the result stays JSON text, borrowed from the
/// line, until it is decoded as the type the call expects.
#[derive(Deserialize)]
struct Answer<'a> {
    /// Required, as in a `Response`; its value is not checked.
    #[serde(rename = "jsonrpc", borrow)]
    _jsonrpc: Cow<'a, str>,
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<RpcError>,
}

/// An answer read in one pass with its result as `T`: [`Answer`] without the second parse.
#[derive(Deserialize)]
struct Typed<'a, T> {
    #[serde(rename = "jsonrpc", borrow)]
    _jsonrpc: Cow<'a, str>,
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(default = "none")]
    result: Option<T>,
    #[serde(default)]
    error: Option<RpcError>,
}

fn none<T>() -> Option<T> {
    None
}
