//! Connection deadlines: no client holds a connection (a task, a socket, an
//! upload's lock) by being slow or silent.
//!
//! - **Header**: a request's line and headers must arrive within
//!   `header_secs` of its first byte.
//! - **Idle**: with no request in progress, a connection is closed after
//!   `idle_secs` without a byte; a response whose client stops reading is
//!   abandoned after `idle_secs` without progress.
//! - **Body**: in every window of `body_secs`, a request body must bring at
//!   least one byte and `body_min_rate` bytes per second on average; else
//!   the request fails and the connection is closed (`Connection: close`).
//!
//! [`TimedIo`] wraps the socket (header and idle deadlines), [`TimedBody`]
//! wraps each request body, and [`InFlight`] (held by the response body
//! until hyper has written it) tells the socket whether a request is in
//! progress. All three share one [`ConnState`].

use crate::config::TimeoutsConfig;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The deadlines, as durations.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    header: Duration,
    idle: Duration,
    body_window: Duration,
    body_min_rate: u64,
}

impl From<&TimeoutsConfig> for Timeouts {
    fn from(c: &TimeoutsConfig) -> Self {
        Timeouts {
            header: Duration::from_secs(c.header_secs),
            idle: Duration::from_secs(c.idle_secs),
            body_window: Duration::from_secs(c.body_secs),
            body_min_rate: c.body_min_rate,
        }
    }
}

/// What the socket, the requests and the responses of one connection share.
#[derive(Debug)]
pub struct ConnState {
    timeouts: Timeouts,
    inner: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Requests whose response is not fully written yet.
    in_flight: usize,
    /// First byte of a request head read while none was in flight.
    head_started: Option<Instant>,
    /// Last byte read or written (or last response finished).
    last_activity: Instant,
    /// A request body timed out: the connection must close.
    doomed: bool,
    /// The socket's reader, woken when the last request finishes.
    reader: Option<Waker>,
}

impl ConnState {
    /// State of a new connection.
    pub fn new(timeouts: Timeouts) -> Arc<ConnState> {
        Arc::new(ConnState {
            timeouts,
            inner: Mutex::new(State {
                in_flight: 0,
                head_started: None,
                last_activity: Instant::now(),
                doomed: false,
                reader: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request's head is complete: it is in progress until the returned
    /// guard is dropped (with the response body).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        let mut s = self.lock();
        s.in_flight += 1;
        s.head_started = None;
        InFlight(self.clone())
    }

    /// Whether a request body timed out on this connection.
    pub fn doomed(&self) -> bool {
        self.lock().doomed
    }

    fn read_progress(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        s.last_activity = now;
        if s.in_flight == 0 && s.head_started.is_none() {
            s.head_started = Some(now);
        }
    }

    fn write_progress(&self) {
        self.lock().last_activity = Instant::now();
    }

    /// When a pending read must give up (`None`: a request is in progress;
    /// its body has its own deadline), and why.
    fn read_deadline(&self, waker: &Waker) -> Option<(Instant, &'static str)> {
        let mut s = self.lock();
        if s.in_flight > 0 {
            s.reader = Some(waker.clone());
            return None;
        }
        Some(match s.head_started {
            Some(t) => (
                t + self.timeouts.header,
                "request head not received in time",
            ),
            None => (s.last_activity + self.timeouts.idle, "idle connection"),
        })
    }

    fn write_deadline(&self) -> Instant {
        self.lock().last_activity + self.timeouts.idle
    }
}

/// A request in progress; dropping it (with the response body, once hyper
/// has written it) lets the idle deadline run again.
#[derive(Debug)]
pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.last_activity = Instant::now();
            s.head_started = None;
            if let Some(w) = s.reader.take() {
                w.wake();
            }
        }
    }
}

fn timed_out(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, why.to_string())
}

/// A socket with the header and idle deadlines.
pub struct TimedIo<T> {
    io: T,
    state: Arc<ConnState>,
    read_sleep: Pin<Box<Sleep>>,
    write_sleep: Pin<Box<Sleep>>,
}

impl<T> TimedIo<T> {
    /// Wraps `io`.
    pub fn new(io: T, state: Arc<ConnState>) -> Self {
        let now = Instant::now();
        TimedIo {
            io,
            state,
            read_sleep: Box::pin(tokio::time::sleep_until(now)),
            write_sleep: Box::pin(tokio::time::sleep_until(now)),
        }
    }
}

/// Arms `sleep` for `deadline`; Ready when it has passed.
fn expired(sleep: &mut Pin<Box<Sleep>>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    if sleep.deadline() != deadline {
        sleep.as_mut().reset(deadline);
    }
    sleep.as_mut().poll(cx).is_ready()
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.state.read_progress();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.state.read_deadline(cx.waker()) {
                Some((deadline, why)) if expired(&mut this.read_sleep, deadline, cx) => {
                    Poll::Ready(Err(timed_out(why)))
                }
                _ => Poll::Pending,
            },
        }
    }
}

impl<T> TimedIo<T> {
    /// Accounts a write's outcome: progress resets the idle deadline; a
    /// write that waits past it fails ("client stopped reading").
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.state.write_progress();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let deadline = self.state.write_deadline();
                if expired(&mut self.write_sleep, deadline, cx) {
                    Poll::Ready(Err(timed_out("client stopped reading")))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after_write(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The error a too slow request body ends with.
#[derive(Debug, thiserror::Error)]
#[error(
    "request body too slow: under {min_rate} bytes/s (and at least 1 byte) per {window_secs} s"
)]
pub struct BodyTooSlow {
    min_rate: u64,
    window_secs: u64,
}

/// A request body with the body deadline. It also tells (through the flag
/// given to [`TimedBody::new`]) whether it was read to its end: a request
/// answered before its body was read leaves bytes on the connection, which
/// must then close (`Connection: close`) instead of being reused.
pub struct TimedBody<B> {
    inner: B,
    state: Arc<ConnState>,
    read_to_end: Arc<AtomicBool>,
    window_start: Instant,
    window_bytes: u64,
    sleep: Pin<Box<Sleep>>,
}

impl<B: Body> TimedBody<B> {
    /// Wraps the body of a request on the connection of `state`;
    /// `read_to_end` is set once the body has been read to its end.
    pub fn new(inner: B, state: Arc<ConnState>, read_to_end: Arc<AtomicBool>) -> Self {
        let now = Instant::now();
        let end = now + state.timeouts.body_window;
        if inner.is_end_stream() {
            read_to_end.store(true, Ordering::Release);
        }
        TimedBody {
            inner,
            state,
            read_to_end,
            window_start: now,
            window_bytes: 0,
            sleep: Box::pin(tokio::time::sleep_until(end)),
        }
    }

    /// Closes the window if it is over: an error if it was too slow.
    fn check(&mut self, now: Instant) -> Result<(), BodyTooSlow> {
        let t = self.state.timeouts;
        if now < self.window_start + t.body_window {
            return Ok(());
        }
        let need = (t.body_min_rate * t.body_window.as_secs()).max(1);
        if self.window_bytes < need {
            self.state.lock().doomed = true;
            return Err(BodyTooSlow {
                min_rate: t.body_min_rate,
                window_secs: t.body_window.as_secs(),
            });
        }
        self.window_start = now;
        self.window_bytes = 0;
        Ok(())
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.window_bytes += d.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.read_to_end.store(true, Ordering::Release);
                }
                if let Err(e) = this.check(Instant::now()) {
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.read_to_end.store(true, Ordering::Release);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let end = this.window_start + this.state.timeouts.body_window;
                if !expired(&mut this.sleep, end, cx) {
                    return Poll::Pending;
                }
                // The window is over with no frame pending: judge it, and
                // arm the timer for the next one.
                if let Err(e) = this.check(end.max(Instant::now())) {
                    return Poll::Ready(Some(Err(e.into())));
                }
                let next = this.window_start + this.state.timeouts.body_window;
                let _ = expired(&mut this.sleep, next, cx);
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request [`InFlight`] until dropped.
pub struct GuardedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> GuardedBody<B> {
    /// Keeps `in_flight` alive as long as `inner`.
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        GuardedBody {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for GuardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
