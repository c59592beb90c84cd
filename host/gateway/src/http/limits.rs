//! Limits on what a client sends and how slowly it may send or read it.
//!
//! - Request bodies: at most [`HttpLimits::max_request_body`] bytes. A `Content-Length` above it is
//!   answered 413 before the function runs; a body that grows past it while streaming ends with an
//!   error for the guest, and the request answers 413 unless the guest answered something itself.
//! - Slow senders: a request body that stops arriving for [`HttpLimits::read_timeout`] ends with an
//!   error (408). Headers have their own timeout in the server (hyper's header read timeout).
//! - Slow readers: see [`WriteTimeout`], which closes a connection whose client stops reading.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The largest request body accepted when nothing else is said.
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 64 * 1024 * 1024;
/// How long a request body may stop arriving before the request fails.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may stop reading a response before its connection is closed.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bytes of request line and headers.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// The most header fields in one request.
pub const DEFAULT_MAX_HEADERS: usize = 100;

/// Limits on request bodies.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// See [`DEFAULT_MAX_REQUEST_BODY`].
    pub max_request_body: u64,
    /// See [`DEFAULT_READ_TIMEOUT`].
    pub read_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }
}

/// Which limit a request body hit, if any; shared between the body and the gateway.
#[derive(Debug, Clone, Default)]
pub struct Tripped(Arc<AtomicU8>);

/// A limit a request body hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// It was larger than the maximum.
    TooLarge,
    /// It stopped arriving for longer than the read timeout.
    TooSlow,
}

impl Tripped {
    fn set(&self, limit: BodyLimit) {
        let value = match limit {
            BodyLimit::TooLarge => 1,
            BodyLimit::TooSlow => 2,
        };
        self.0.store(value, Ordering::Release);
    }

    /// The limit hit, if one was.
    pub fn get(&self) -> Option<BodyLimit> {
        match self.0.load(Ordering::Acquire) {
            1 => Some(BodyLimit::TooLarge),
            2 => Some(BodyLimit::TooSlow),
            _ => None,
        }
    }
}

/// Why a request body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyLimitError {
    /// It was larger than allowed.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
    /// Nothing arrived for too long.
    #[error("the request body stopped arriving for {0:?}")]
    TooSlow(Duration),
    /// The connection failed.
    #[error("reading the request body: {0}")]
    Read(crate::http::body::BoxError),
}

/// A request body held to [`HttpLimits`].
#[derive(Debug)]
pub struct LimitedBody<B> {
    inner: B,
    limits: HttpLimits,
    seen: u64,
    /// Armed while waiting for the next frame.
    idle: Option<Pin<Box<Sleep>>>,
    tripped: Tripped,
}

impl<B> LimitedBody<B> {
    /// Wraps `inner`; `tripped` learns which limit ended it, if any.
    pub fn new(inner: B, limits: HttpLimits, tripped: Tripped) -> Self {
        LimitedBody {
            inner,
            limits,
            seen: 0,
            idle: None,
            tripped,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<crate::http::body::BoxError>,
{
    type Data = Bytes;
    type Error = BodyLimitError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyLimitError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle = None;
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.limits.max_request_body {
                        this.tripped.set(BodyLimit::TooLarge);
                        return Poll::Ready(Some(Err(BodyLimitError::TooLarge(
                            this.limits.max_request_body,
                        ))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                Poll::Ready(Some(Err(BodyLimitError::Read(error.into()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let timeout = this.limits.read_timeout;
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if idle.as_mut().poll(cx).is_ready() {
                    this.tripped.set(BodyLimit::TooSlow);
                    return Poll::Ready(Some(Err(BodyLimitError::TooSlow(timeout))));
                }
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

/// A connection whose writes fail when the client has not taken any bytes for `timeout`: a client that
/// stops reading cannot hold a connection, a function instance and its buffers for ever.
#[derive(Debug)]
pub struct WriteTimeout<S> {
    inner: S,
    timeout: Duration,
    /// Armed when a write or flush first waits; disarmed by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteTimeout<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        WriteTimeout {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// Called when the inner write is pending: fails once the client has not read for `timeout`.
    fn check_stall(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {timeout:?}"),
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.check_stall(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.check_stall(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.check_stall(cx).map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
