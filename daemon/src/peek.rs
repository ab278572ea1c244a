//! A connection's read half that leaves what it has read in the socket until the answer to
//! it is sent: [`PeekingRead`].
//!
//! Taking a request's bytes out of a Unix socket frees the client's send buffer, and the
//! kernel then wakes whoever sleeps on the client's socket (`unix_write_space`): the client
//! itself, asleep in `recv` waiting for the answer, woken for nothing. Profiled at 16
//! connections, that wake-up took a fifth of the daemon's CPU. Read with `MSG_PEEK`
//! instead, the bytes stay in the socket until the answer is out and has woken the client;
//! [`PeekingRead::consume`] then takes them out (measured with `compartment-bench
//! --reads-only`: about half the daemon's CPU per `authz.check` at 16 connections, and
//! nearly twice the rate).
//!
//! That same `recv` has room for what follows. A client woken by the answer has often sent
//! its next request by then (it may run before the daemon does, on the same CPU): it is
//! taken out with the last one's bytes and handed out next, without a peek of its own, so
//! a request costs little more than the one `recv` and one `send` of an echo server.
//! Measured at 16 connections: 1.4 `recv`s per `authz.check` instead of 2.9 (a peek right
//! after the answer found nothing seven times in eight), and a fifth less of the daemon's
//! CPU.
//!
//! Three variants were measured and dropped: taking the bytes out only once
//! [`PEEK_AT_MOST`] wait, and marking the socket drained after a short peek, both of which
//! left the daemon waiting in `epoll` for a request that a read right after the answer
//! would have found; and clearing tokio's readiness when the taking `recv` came back short
//! (inside `try_io`), which saved 0.2 `recv` per request and no CPU that could be told from
//! noise, and stalled a client that sent an out-of-band byte (a `recv` stops short at its
//! mark with bytes still behind it, which no new edge would announce).
//!
//! Bytes peeked are never handed out twice: the reader remembers how many it has handed
//! out, and hands out only what follows them. So that a peek never copies much twice, once
//! more than [`PEEK_AT_MOST`] bytes wait to be taken out (a client pipelining its requests),
//! or when a peek finds nothing new (a line still coming, or the end of the stream), they
//! are taken out and the socket read as usual.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use nix::sys::socket::{recv, MsgFlags};
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::net::unix::OwnedReadHalf;

/// The most bytes peeked and not yet taken out of the socket.
pub const PEEK_AT_MOST: usize = 4096;

/// A read half whose reads peek, and whose bytes are taken out of the socket by
/// [`PeekingRead::consume`] (or by a later read, when they pile up).
#[derive(Debug)]
pub struct PeekingRead {
    half: OwnedReadHalf,
    /// Bytes handed out but still in the socket.
    peeked: usize,
    /// Where bytes are peeked again, or taken out, to be dropped.
    scratch: Vec<u8>,
    /// Bytes taken out of the socket with those consumed, not yet handed out (from
    /// `ahead_from` on).
    ahead: Vec<u8>,
    ahead_from: usize,
}

impl PeekingRead {
    pub fn new(half: OwnedReadHalf) -> PeekingRead {
        PeekingRead {
            half,
            peeked: 0,
            scratch: Vec::new(),
            ahead: Vec::new(),
            ahead_from: 0,
        }
    }

    /// Takes what was handed out of the socket: once the answer to it is sent. The same
    /// `recv` has room for what follows, which a client woken by the answer has often sent
    /// by then: it is kept, to be handed out next.
    pub fn consume(&mut self) -> io::Result<()> {
        let fd = self.half.as_ref().as_raw_fd();
        while self.peeked > 0 {
            let peeked = self.peeked;
            // Past the bound, only what was peeked; the last of it, with room after.
            let room = if peeked > PEEK_AT_MOST {
                PEEK_AT_MOST
            } else {
                peeked + PEEK_AT_MOST
            };
            // The bytes are in the socket already: this never waits.
            match recv(fd, self.scratch(room), MsgFlags::MSG_DONTWAIT) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the bytes peeked were gone from the socket",
                    ))
                }
                Ok(taken) => {
                    if taken > peeked {
                        self.ahead.clear();
                        self.ahead.extend_from_slice(&self.scratch[peeked..taken]);
                        self.ahead_from = 0;
                    }
                    self.peeked -= taken.min(peeked);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
        Ok(())
    }

    /// The first `len` bytes of the scratch space, grown (never shrunk, so never filled
    /// again) as needed.
    fn scratch(&mut self, len: usize) -> &mut [u8] {
        if self.scratch.len() < len {
            self.scratch.resize(len, 0);
        }
        &mut self.scratch[..len]
    }

    /// Hands out bytes taken out ahead, if there are any: whether it did.
    fn hand_out_ahead(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let ahead = &self.ahead[self.ahead_from..];
        if ahead.is_empty() {
            return false;
        }
        let n = ahead.len().min(buf.remaining());
        buf.put_slice(&ahead[..n]);
        self.ahead_from += n;
        true
    }

    /// Peeks bytes that follow those handed out into `buf`: how many, or `None` when there
    /// are none yet (or the stream has ended).
    fn poll_peek(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<Option<usize>>> {
        let stream = self.half.as_ref();
        let fd = stream.as_raw_fd();
        let want = self.peeked + buf.remaining().min(PEEK_AT_MOST);
        if self.scratch.len() < want {
            self.scratch.resize(want, 0);
        }
        loop {
            ready!(stream.poll_read_ready(cx))?;
            let scratch = &mut self.scratch[..want];
            match stream.try_io(Interest::READABLE, || {
                recv(fd, scratch, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT)
                    .map_err(io::Error::from)
            }) {
                Ok(seen) if seen > self.peeked => {
                    buf.put_slice(&self.scratch[self.peeked..seen]);
                    let new = seen - self.peeked;
                    self.peeked = seen;
                    return Poll::Ready(Ok(Some(new)));
                }
                Ok(_) => return Poll::Ready(Ok(None)),
                // The readiness was stale: `try_io` cleared it; wait for the next.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncRead for PeekingRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.hand_out_ahead(buf) {
            return Poll::Ready(Ok(()));
        }
        if this.peeked < PEEK_AT_MOST {
            if let Some(_new) = ready!(this.poll_peek(cx, buf))? {
                return Poll::Ready(Ok(()));
            }
        }
        // Too much peeked, or nothing new: what was peeked comes out, and the socket is
        // read as usual (which waits for more, or tells of the end).
        this.consume()?;
        if this.hand_out_ahead(buf) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.half).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// How many bytes wait in the socket of `reader`, not yet taken out.
    fn waiting(reader: &PeekingRead) -> usize {
        let fd = reader.half.as_ref().as_raw_fd();
        let mut buf = [0u8; 64 * 1024];
        recv(fd, &mut buf, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT).unwrap_or(0)
    }

    #[test]
    fn bytes_read_stay_in_the_socket_until_consumed_and_are_never_read_twice() {
        runtime().block_on(async {
            let (mut client, server) = UnixStream::pair().unwrap();
            let (read_half, _write_half) = server.into_split();
            let mut reader = PeekingRead::new(read_half);
            client.write_all(b"ab\n").await.unwrap();
            let mut buf = [0u8; 16];
            let n = reader.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"ab\n");
            assert_eq!(
                waiting(&reader),
                3,
                "read bytes were taken out before the answer"
            );
            client.write_all(b"cd\n").await.unwrap();
            let n = reader.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"cd\n", "bytes handed out twice");
            reader.consume().unwrap();
            assert_eq!(waiting(&reader), 0);
            // Nothing new: the read waits for more, then hands out only that.
            let more = tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                client.write_all(b"ef").await.unwrap();
                client
            });
            let n = reader.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"ef");
            // The end of the stream, once everything has been read.
            drop(more.await.unwrap());
            assert_eq!(reader.read(&mut buf).await.unwrap(), 0);
        });
    }

    /// A `recv` stops short at the mark of an out-of-band byte, with bytes behind it: the
    /// reader still reads past it (the byte itself is not in the stream), and takes out the
    /// next request with the last one's bytes when it is there.
    #[test]
    fn reads_go_past_an_out_of_band_mark_and_take_what_follows_along() {
        use nix::sys::socket::send;
        runtime().block_on(async {
            let (client, server) = UnixStream::pair().unwrap();
            let (read_half, _write_half) = server.into_split();
            let mut reader = PeekingRead::new(read_half);
            let fd = client.as_raw_fd();
            send(fd, b"ab", MsgFlags::empty()).unwrap();
            send(fd, b"!", MsgFlags::MSG_OOB).unwrap();
            send(fd, b"c\nde\n", MsgFlags::empty()).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while !got.ends_with(b"de\n") {
                let n = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf))
                    .await
                    .expect("the reader stalled at the out-of-band mark")
                    .unwrap();
                got.extend_from_slice(&buf[..n]);
                reader.consume().unwrap();
            }
            assert_eq!(got, b"abc\nde\n");
            // A line peeked, answered, and the next already sent: one `recv` takes both out,
            // and the next is handed out from what was taken.
            send(fd, b"fg\n", MsgFlags::empty()).unwrap();
            let n = reader.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"fg\n");
            send(fd, b"hi\n", MsgFlags::empty()).unwrap();
            reader.consume().unwrap();
            assert_eq!(waiting(&reader), 0, "what followed was left in the socket");
            let n = reader.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"hi\n");
            drop(client);
            assert_eq!(reader.read(&mut buf).await.unwrap(), 0);
        });
    }

    #[test]
    fn no_more_than_the_bound_waits_in_the_socket() {
        runtime().block_on(async {
            let (mut client, server) = UnixStream::pair().unwrap();
            let (read_half, _write_half) = server.into_split();
            let mut reader = PeekingRead::new(read_half);
            let sent: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
            client.write_all(&sent).await.unwrap();
            drop(client);
            let mut got = Vec::new();
            let mut buf = [0u8; 1000];
            loop {
                let n = reader.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                // What was handed out and not taken out is bounded.
                assert!(reader.peeked <= PEEK_AT_MOST + buf.len());
                let ahead = reader.ahead.len() - reader.ahead_from;
                assert_eq!(
                    waiting(&reader),
                    sent.len() - got.len() + reader.peeked - ahead
                );
            }
            assert_eq!(got, sent);
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 1024,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Whatever the writes, the reads' sizes and when the bytes are consumed, the
        /// bytes read are those written, each once, in order.
        #[test]
        fn the_bytes_read_are_those_written_once_in_order(
            writes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..3000), 1..12),
            reads in proptest::collection::vec((1usize..5000, any::<bool>()), 1..40),
        ) {
            let got = runtime().block_on(async {
                let (mut client, server) = UnixStream::pair().unwrap();
                let (read_half, _write_half) = server.into_split();
                let mut reader = PeekingRead::new(read_half);
                let sent = writes.concat();
                let writer = tokio::spawn(async move {
                    for chunk in &writes {
                        client.write_all(chunk).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                });
                let mut got = Vec::new();
                for (size, consume) in reads.iter().cycle() {
                    if got.len() == sent.len() {
                        break;
                    }
                    let mut buf = vec![0u8; *size];
                    let n = reader.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                    if *consume {
                        reader.consume().unwrap();
                    }
                }
                writer.await.unwrap();
                (got, sent)
            });
            prop_assert_eq!(got.0, got.1);
        }
    }
}
