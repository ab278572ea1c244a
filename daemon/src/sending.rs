//! Writing to a connection: a line sent within the write timeout (and, once the daemon is
//! stopping, within a short grace), a value serialized into a line, and why a connection
//! ended. Shared by the request loop, its replies and the change feed. What is written
//! here is a line, whatever it holds: a [`crate::reply::Reply`], a refusal, a feed's event.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio_util::sync::CancellationToken;

use crate::limits::Limits;

/// Once the daemon is stopping, how long a line already being written may still take.
const STOP_WRITE_GRACE: Duration = Duration::from_millis(500);

/// Why a connection ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    ClientLeft,
    Stopping,
    LineTooLong,
    LineTimeout,
    Idle,
    ReadFailed,
    WriteFailed,
    WriteTimeout,
    /// The daemon ended a feed, telling the subscriber why.
    FeedClosed,
    /// The daemon sent a backup to its end (`backup.end`), or said why it stopped.
    BackupEnded,
}

pub(crate) fn encode(value: &impl serde::Serialize) -> Vec<u8> {
    encode_into(Vec::new(), value)
}

/// [`encode`] into `line`, whose capacity is kept: a reply whose size is known (a page of
/// members) is written without regrowing its buffer.
pub(crate) fn encode_into(mut line: Vec<u8>, value: &impl serde::Serialize) -> Vec<u8> {
    // A line's value is plain data; should it ever fail to encode, the client gets an empty
    // line rather than the connection task a panic.
    if serde_json::to_writer(&mut line, value).is_err() {
        line.clear();
    }
    line.push(b'\n');
    line
}

/// Writes one line within the write timeout, and once the daemon is stopping within
/// [`STOP_WRITE_GRACE`]: a client that does not read loses its connection, never holds a
/// task (or the daemon's exit) hostage.
pub(crate) async fn send(
    write_half: &mut OwnedWriteHalf,
    line: &[u8],
    limits: &Limits,
    stop: &CancellationToken,
) -> Result<(), Ending> {
    // Most lines fit the socket's buffer at once: written so, they need no timer and no
    // watch on the stop. (Only a write that cannot finish now waits, within the limits.)
    let line = match write_half.try_write(line) {
        Ok(written) if written == line.len() => return Ok(()),
        Ok(written) => line.get(written..).unwrap_or_default(),
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => line,
        Err(_) => return Err(Ending::WriteFailed),
    };
    let stopping = async {
        stop.cancelled().await;
        tokio::time::sleep(STOP_WRITE_GRACE).await;
    };
    tokio::select! {
        written = tokio::time::timeout(limits.write_timeout, write_half.write_all(line)) => match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ending::WriteFailed),
            Err(_) => Err(Ending::WriteTimeout),
        },
        () = stopping => Err(Ending::Stopping),
    }
}
