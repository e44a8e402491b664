//! The byte pipe: a TCP router's connection joined to its server's, and a WebSocket's two
//! connections once upgraded. Bytes are copied both ways through one buffer per direction
//! (taken from a per-thread pool, [`PipeConfig::buffer`] bytes each). A FIN in one direction
//! is passed on as a FIN (a half-close: `shutdown(SHUT_WR)`) and the other direction goes on,
//! so a client that sends its request and closes its half still gets the whole answer. The
//! pipe ends when both directions have ended, on an error, or after [`PipeConfig::idle`] with
//! no byte moving either way (HAProxy's `timeout tunnel`).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How a pipe copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeConfig {
    /// Bytes of each direction's buffer (`[tcp] buffer`, default 16 KiB).
    pub buffer: usize,
    /// Ends the pipe after this long without a byte either way (`timeouts.tunnel`, default 1h).
    pub idle: Duration,
}

impl PipeConfig {
    pub const DEFAULT_BUFFER: usize = 16 * 1024;
    pub const DEFAULT_IDLE: Duration = Duration::from_secs(3600);
}

impl Default for PipeConfig {
    fn default() -> Self {
        PipeConfig {
            buffer: Self::DEFAULT_BUFFER,
            idle: Self::DEFAULT_IDLE,
        }
    }
}

/// Why a pipe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed their halves.
    Closed,
    /// No byte moved for the idle timeout.
    Idle,
    /// Reading from or writing to the client failed (a reset, most often).
    ClientError,
    /// Reading from or writing to the server failed.
    ServerError,
    /// Tether is stopping and the drain period passed.
    Shutdown,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::Idle => "idle timeout",
            End::ClientError => "client error",
            End::ServerError => "server error",
            End::Shutdown => "shutdown",
        }
    }
}

/// What went through a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piped {
    /// Bytes from the client to the server.
    pub up: u64,
    /// Bytes from the server to the client.
    pub down: u64,
    pub end: End,
}

/// Buffers kept per thread for the next pipe.
const KEPT: usize = 32;

thread_local! {
    static SPARE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take_buffer(size: usize) -> Box<[u8]> {
    SPARE
        .with_borrow_mut(|s| s.pop().filter(|b| b.len() == size))
        .unwrap_or_else(|| vec![0; size].into_boxed_slice())
}

fn put_back(buf: Box<[u8]>) {
    SPARE.with_borrow_mut(|s| {
        if s.len() < KEPT {
            s.push(buf);
        }
    });
}

/// One direction: read into the buffer, write it all out, pass the end on.
struct Half {
    buf: Box<[u8]>,
    /// Written up to `pos` of the `len` bytes read.
    pos: usize,
    len: usize,
    eof: bool,
    done: bool,
    /// The writer has bytes it may hold back (a TLS stream): flush before waiting to read.
    unflushed: bool,
    bytes: u64,
}

/// Which side failed.
enum Fault {
    Reader,
    Writer,
}

impl Half {
    fn new(size: usize) -> Half {
        Half {
            buf: take_buffer(size),
            pos: 0,
            len: 0,
            eof: false,
            done: false,
            unflushed: false,
            bytes: 0,
        }
    }

    /// Copy until nothing more can move now; `moved` is set when a byte did.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
        moved: &mut bool,
    ) -> Poll<Result<(), Fault>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if self.pos == self.len && !self.eof {
                let mut rb = ReadBuf::new(&mut self.buf);
                match r.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            self.eof = true;
                        } else {
                            (self.pos, self.len) = (0, n);
                            *moved = true;
                        }
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(Fault::Reader)),
                    Poll::Pending => {
                        if self.unflushed {
                            ready!(w.as_mut().poll_flush(cx)).map_err(|_| Fault::Writer)?;
                            self.unflushed = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.pos < self.len {
                match ready!(w.as_mut().poll_write(cx, &self.buf[self.pos..self.len])) {
                    Ok(0) | Err(_) => return Poll::Ready(Err(Fault::Writer)),
                    Ok(n) => {
                        self.pos += n;
                        self.bytes += n as u64;
                        self.unflushed = true;
                        *moved = true;
                    }
                }
            }
            if self.eof && self.pos == self.len {
                // The reader's FIN, passed on: the other direction goes on.
                ready!(w.as_mut().poll_shutdown(cx)).map_err(|_| Fault::Writer)?;
                self.done = true;
            }
        }
    }
}

/// Copy between `client` and `server` both ways until both have closed, one fails, no byte
/// moves for `cfg.idle`, or `stop` resolves ([`End::Shutdown`]). `tally` is told the bytes
/// written each way as they go (up, down), so that counters move while a long connection lives.
pub async fn pipe<C, S, F, T>(
    client: &mut C,
    server: &mut S,
    cfg: PipeConfig,
    stop: F,
    tally: T,
) -> Piped
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
    F: Future<Output = ()>,
    T: FnMut(u64, u64) + Unpin,
{
    let stop = std::pin::pin!(stop);
    let mut p = Pipe {
        stop,
        tally,
        client,
        server,
        up: Half::new(cfg.buffer),
        down: Half::new(cfg.buffer),
        idle: cfg.idle,
        last: Instant::now(),
        timer: Box::pin(tokio::time::sleep(cfg.idle)),
    };
    let end = (&mut p).await;
    let piped = Piped {
        up: p.up.bytes,
        down: p.down.bytes,
        end,
    };
    put_back(std::mem::take(&mut p.up.buf));
    put_back(std::mem::take(&mut p.down.buf));
    piped
}

struct Pipe<'a, C: ?Sized, S: ?Sized, F, T> {
    stop: Pin<&'a mut F>,
    tally: T,
    client: &'a mut C,
    server: &'a mut S,
    up: Half,
    down: Half,
    idle: Duration,
    /// When a byte last moved: the timer is moved on from it only when it fires, so that a
    /// busy pipe does not touch the timer wheel on every read.
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<C, S, F, T> Future for &mut Pipe<'_, C, S, F, T>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
    F: Future<Output = ()>,
    T: FnMut(u64, u64) + Unpin,
{
    type Output = End;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let p = &mut **self.get_mut();
        let before = (p.up.bytes, p.down.bytes);
        let end = p.step(cx);
        if (p.up.bytes, p.down.bytes) != before {
            (p.tally)(p.up.bytes - before.0, p.down.bytes - before.1);
        }
        match end {
            Some(e) => Poll::Ready(e),
            None => Poll::Pending,
        }
    }
}

impl<C, S, F, T> Pipe<'_, C, S, F, T>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
    F: Future<Output = ()>,
{
    /// Move what can move now; the end, if this is it.
    fn step(&mut self, cx: &mut Context<'_>) -> Option<End> {
        let mut moved = false;
        let up = self.up.poll_copy(
            cx,
            Pin::new(&mut *self.client),
            Pin::new(&mut *self.server),
            &mut moved,
        );
        if let Poll::Ready(Err(f)) = up {
            return Some(match f {
                Fault::Reader => End::ClientError,
                Fault::Writer => End::ServerError,
            });
        }
        let down = self.down.poll_copy(
            cx,
            Pin::new(&mut *self.server),
            Pin::new(&mut *self.client),
            &mut moved,
        );
        if let Poll::Ready(Err(f)) = down {
            return Some(match f {
                Fault::Reader => End::ServerError,
                Fault::Writer => End::ClientError,
            });
        }
        if up.is_ready() && down.is_ready() {
            return Some(End::Closed);
        }
        if self.stop.as_mut().poll(cx).is_ready() {
            return Some(End::Shutdown);
        }
        let now = Instant::now();
        if moved {
            self.last = now;
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            let due = self.last + self.idle;
            if due <= now {
                return Some(End::Idle);
            }
            self.timer.as_mut().reset(due);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Two connected sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn a_half_close_is_passed_on_and_the_answer_still_comes() {
        // client <-> [c_in | pipe | s_out] <-> server
        let (mut client, mut c_in) = pair().await;
        let (mut s_out, mut server) = pair().await;
        let tallied = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64, 0u32)));
        let t = tallied.clone();
        let piping = tokio::spawn(async move {
            let tally = move |up, down| {
                let mut t = t.lock().unwrap();
                *t = (t.0 + up, t.1 + down, t.2 + 1);
            };
            pipe(
                &mut c_in,
                &mut s_out,
                PipeConfig::default(),
                std::future::pending(),
                tally,
            )
            .await
        });
        client.write_all(b"question").await.unwrap();
        client.shutdown().await.unwrap();
        let mut q = Vec::new();
        server.read_to_end(&mut q).await.unwrap();
        assert_eq!(
            q, b"question",
            "the server saw the request and then the FIN"
        );
        // The server answers after the client's FIN: the other half is still open.
        let answer = vec![b'a'; 300_000];
        server.write_all(&answer).await.unwrap();
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), answer.len());
        let piped = piping.await.unwrap();
        assert_eq!(
            piped,
            Piped {
                up: 8,
                down: 300_000,
                end: End::Closed
            }
        );
        let (up, down, calls) = *tallied.lock().unwrap();
        assert_eq!((up, down), (8, 300_000), "told as the bytes went");
        assert!(calls > 1, "told more than once, at the end");
    }

    #[tokio::test]
    async fn a_quiet_pipe_ends_after_the_idle_timeout_and_a_busy_one_does_not() {
        let (mut client, mut c_in) = pair().await;
        let (mut s_out, mut server) = pair().await;
        let idle = Duration::from_millis(300);
        let cfg = PipeConfig { buffer: 1024, idle };
        let piping = tokio::spawn(async move {
            pipe(
                &mut c_in,
                &mut s_out,
                cfg,
                std::future::pending(),
                |_, _| {},
            )
            .await
        });
        // A byte every half of the timeout keeps it open past the timeout.
        let start = Instant::now();
        for _ in 0..4 {
            tokio::time::sleep(idle / 2).await;
            client.write_all(b"x").await.unwrap();
            let mut b = [0; 1];
            server.read_exact(&mut b).await.unwrap();
        }
        assert!(!piping.is_finished(), "ended while bytes moved");
        let quiet = Instant::now();
        let piped = piping.await.unwrap();
        assert_eq!(piped.end, End::Idle);
        assert_eq!(piped.up, 4);
        assert!(start.elapsed() >= idle * 2 && quiet.elapsed() >= idle * 9 / 10);
    }

    #[tokio::test]
    async fn a_reset_server_ends_the_pipe_as_a_server_error() {
        let (mut client, mut c_in) = pair().await;
        let (mut s_out, server) = pair().await;
        let piping = tokio::spawn(async move {
            pipe(
                &mut c_in,
                &mut s_out,
                PipeConfig::default(),
                std::future::pending(),
                |_, _| {},
            )
            .await
        });
        // SO_LINGER 0: the close is a reset.
        socket2::SockRef::from(&server)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(server);
        let piped = piping.await.unwrap();
        assert_eq!(piped.end, End::ServerError);
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest).await;
    }
}
