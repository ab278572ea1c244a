//! A blocking client: one connection, requests answered in order.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::wire::{Method, Request, RequestEnvelope, Response, RpcError, MAX_RESPONSE_LINE};

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
    /// The client would not talk: the server behind the socket is not trusted, or no
    /// socket path can be made.
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
            ClientError::Refused(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for ClientError {}

/// A connection to `compartmentd`.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
        // Nothing is sent before the server is known to be one to trust.
        crate::peer::check(&stream, path).map_err(|err| ClientError::Refused(err.to_string()))?;
        let writer = stream.try_clone().map_err(ClientError::Io)?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
        })
    }

    /// Calls method `M` with `params`, typed at both ends by the method's declaration.
    pub fn call_method<M: Method>(&mut self, params: M::Params) -> Result<M::Result, ClientError> {
        self.call(&M::request(params))
    }

    /// Sends `request` and decodes its result as `T`.
    pub fn call<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = serde_json::to_vec(&RequestEnvelope::new(id, request))
            .map_err(|err| ClientError::Protocol(err.to_string()))?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(ClientError::Io)?;

        let response = self.read_response()?;
        // An error the daemon ties to no request comes with id null (`busy` over a
        // connection cap, `frame_too_long`, an unreadable line): on a connection that has
        // one call in flight, it is this call's answer.
        if response.id.is_null() {
            if let Some(error) = response.error {
                return Err(ClientError::Rpc(error));
            }
        }
        if response.id != id {
            return Err(ClientError::Protocol(format!(
                "answer for id {} to request {id}",
                response.id
            )));
        }
        match (response.result, response.error) {
            (_, Some(error)) => Err(ClientError::Rpc(error)),
            (Some(result), None) => serde_json::from_value(result)
                .map_err(|err| ClientError::Protocol(format!("{}: {err}", request.method()))),
            (None, None) => Err(ClientError::Protocol("neither result nor error".into())),
        }
    }

    fn read_response(&mut self) -> Result<Response, ClientError> {
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_RESPONSE_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
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
        serde_json::from_slice(&line).map_err(|err| ClientError::Protocol(err.to_string()))
    }
}
