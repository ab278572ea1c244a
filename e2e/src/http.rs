//! Plain HTTP/1.1 on the loopback, for the activation page and node_exporter: a free port
//! to serve on, and one GET with its answer split into head and body.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A port on 127.0.0.1 nothing listens on right now.
pub fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe on the loopback");
    probe.local_addr().expect("the probe's address").port()
}

/// One GET of `path` on 127.0.0.1:`port` (`Connection: close`): the status line and
/// headers, lowercased, and the body; `None` when nothing answers within 10 s.
pub fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    Some((head.to_lowercase(), body.to_owned()))
}
