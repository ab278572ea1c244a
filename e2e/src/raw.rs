//! The raw protocol: a connection that writes any bytes and reads response lines with a
//! timeout, so that no test can hang on a daemon that does not answer.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// How long a raw connection waits for a response line.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A raw connection to the socket: write any bytes, read response lines with a timeout.
pub struct RawConn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl RawConn {
    #[track_caller]
    pub fn connect(socket: &Path) -> RawConn {
        let stream = UnixStream::connect(socket)
            .unwrap_or_else(|err| panic!("connect to {}: {err}", socket.display()));
        RawConn::from_stream(stream, READ_TIMEOUT)
    }

    /// A raw connection opened by `uid` (with its primary group), for the wire as another
    /// Unix user sees it; needs root. The daemon reads the peer's credentials when the
    /// connection is made, so only the connecting thread takes `uid`: a thread of its own
    /// that changes its effective ids with the raw system calls, which on Linux change
    /// that thread's credentials alone (glibc's `seteuid` would change every thread of the
    /// test process, and its parallel tests with it), connects, and ends.
    #[track_caller]
    pub fn connect_as(socket: &Path, uid: u32) -> RawConn {
        RawConn::connect_as_group(socket, uid, crate::primary_gid(uid).unwrap_or(uid))
    }

    /// [`RawConn::connect_as`] with `gid` as the process's gid, whatever the user database
    /// says: as a setgid program or `sg` runs.
    #[track_caller]
    pub fn connect_as_group(socket: &Path, uid: u32, gid: u32) -> RawConn {
        use nix::libc::{syscall, SYS_setresgid, SYS_setresuid};
        let stream = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    const KEEP: nix::libc::c_long = -1;
                    // SAFETY: plain system calls on this thread's own credentials; the
                    // thread ends right after, whatever they did.
                    let changed = unsafe {
                        syscall(SYS_setresgid, KEEP, nix::libc::c_long::from(gid), KEEP) == 0
                            && syscall(SYS_setresuid, KEEP, nix::libc::c_long::from(uid), KEEP) == 0
                    };
                    assert!(
                        changed,
                        "cannot take uid {uid}: {}",
                        io::Error::last_os_error()
                    );
                    UnixStream::connect(socket)
                })
                .join()
        });
        let stream = match stream {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => panic!("connect to {} as uid {uid}: {err}", socket.display()),
            Err(_) => panic!("the thread connecting as uid {uid} panicked"),
        };
        RawConn::from_stream(stream, READ_TIMEOUT)
    }

    pub(crate) fn from_stream(stream: UnixStream, timeout: Duration) -> RawConn {
        stream
            .set_read_timeout(Some(timeout))
            .expect("set a read timeout");
        stream
            .set_write_timeout(Some(timeout))
            .expect("set a write timeout");
        let writer = stream.try_clone().expect("clone the stream");
        RawConn {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Another handle on the writing side, for writing from another thread.
    pub fn writer(&self) -> UnixStream {
        self.writer.try_clone().expect("clone the stream")
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).expect("write to the socket");
    }

    /// Sends `line` and a newline.
    #[track_caller]
    pub fn send_line(&mut self, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        self.send(&bytes);
    }

    /// The next line without its newline; `Ok(None)` when the daemon closed the connection
    /// (end of file, or a reset because it closed with our bytes unread).
    pub fn try_read_line(&mut self) -> io::Result<Option<String>> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => Ok(None),
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Ok(Some(String::from_utf8_lossy(&line).into_owned()))
            }
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The next line; panics on a timeout or a closed connection.
    #[track_caller]
    pub fn read_line(&mut self) -> String {
        match self.try_read_line() {
            Ok(Some(line)) => line,
            Ok(None) => panic!("compartmentd closed the connection instead of answering"),
            Err(err) => panic!("no response line within {READ_TIMEOUT:?}: {err}"),
        }
    }

    /// The next line as JSON.
    #[track_caller]
    pub fn read_json(&mut self) -> Value {
        let line = self.read_line();
        serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("response is not JSON ({err}): {line}"))
    }

    /// Sends one line and reads one JSON response.
    #[track_caller]
    pub fn call(&mut self, line: &str) -> Value {
        self.send_line(line);
        self.read_json()
    }

    /// True when the daemon has closed the connection: the next read ends (EOF or reset)
    /// rather than timing out or returning data.
    #[track_caller]
    pub fn is_closed(&mut self) -> bool {
        match self.try_read_line() {
            Ok(None) => true,
            Ok(Some(line)) => panic!("expected the connection to be closed, got the line {line}"),
            Err(err) => panic!("expected the connection to be closed, the read failed: {err}"),
        }
    }
}
