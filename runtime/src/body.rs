//! The body of a function's response, streamed as the guest writes it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::limits::InflightPermit;
use crate::trace::SpanGuard;

/// The rest of a guest's run after it answered: writing its body and returning from `handle`.
/// Its outcome only matters before it answers: a failure after that is logged where it happens.
pub(crate) type GuestRun = Pin<Box<dyn Future<Output = Result<(), crate::Error>> + Send>>;

/// A response body that yields the guest's writes as they happen, never holding the whole body.
///
/// A guest that is still running when its response arrives (it has a body to write) is driven from
/// here, by whoever reads the body: the guest writes a chunk, the reader takes it, on the same thread
/// and without a task or a wake-up of its own. When the body ends before the guest returns, the rest
/// of its run moves to a task; when the reader drops the body (the client left), the guest is dropped
/// with it and its instance ends.
pub struct ResponseBody {
    inner: Inner,
    guest: Option<Running>,
    /// Set when the guest failed after answering: the body must end with an error, not cleanly, so
    /// the client can tell a cut body from a whole one (hyper then closes the connection instead of
    /// writing the last chunk).
    failed: Option<String>,
    /// Keeps the request counted in flight while its body streams, when no guest run holds it.
    permit: Option<InflightPermit>,
    /// A traced request's `handle` span: ended with the last byte (failed, if the body fails), or
    /// when the reader drops the body.
    span: Option<SpanGuard>,
}

/// The body as the guest's world of `wasi:http` produces it. An enum rather than a box, so a 0.2
/// body is polled as directly as before 0.3 existed.
pub(crate) enum Inner {
    /// Fed by a 0.2 guest's `outgoing-body` writes.
    P2(HyperOutgoingBody),
    /// Read from a 0.3 guest's body stream (and its trailers future).
    P3(WasiBody),
}

impl Inner {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self {
            Inner::P2(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|e| BodyError(format!("{e:?}"))),
            Inner::P3(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|e| BodyError(format!("{e:?}"))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inner::P2(body) => body.is_end_stream(),
            Inner::P3(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inner::P2(body) => body.size_hint(),
            Inner::P3(body) => body.size_hint(),
        }
    }
}

/// A guest still writing its body, and when its time runs out.
struct Running {
    /// The rest of its run, driven from here; `None` when another task drives it (an instance
    /// shared by concurrent requests), and only the deadline is this body's to enforce.
    run: Option<GuestRun>,
    deadline: Instant,
    limit: Duration,
    /// Armed on the first poll that finds the guest still running.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl ResponseBody {
    /// `guest`: the rest of the guest's run, the instant its time limit ends, and that limit.
    pub(crate) fn new(inner: Inner, guest: Option<(GuestRun, Instant, Duration)>) -> Self {
        ResponseBody {
            inner,
            failed: None,
            guest: guest.map(|(run, deadline, limit)| Running {
                run: Some(run),
                deadline,
                limit,
                timer: None,
            }),
            permit: None,
            span: None,
        }
    }

    /// The same body, ending `span` when it ends.
    pub(crate) fn traced(mut self, span: SpanGuard) -> Self {
        self.span = Some(span);
        self
    }

    /// A body written by a guest that another task drives (a shared instance): cut at `deadline`,
    /// and counted in flight (`permit`) until it is dropped.
    pub(crate) fn detached(
        inner: Inner,
        deadline: Instant,
        limit: Duration,
        permit: InflightPermit,
    ) -> Self {
        ResponseBody {
            inner,
            failed: None,
            guest: Some(Running {
                run: None,
                deadline,
                limit,
                timer: None,
            }),
            permit: Some(permit),
            span: None,
        }
    }
}

/// The guest's response body ended with an error (it trapped, or wrote more than it declared).
#[derive(Debug, thiserror::Error)]
#[error("the function's response body failed: {0}")]
pub struct BodyError(String);

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = self.as_mut().poll_guest_frame(cx);
        if self.span.is_some() {
            match &frame {
                Poll::Ready(None) => self.span = None,
                Poll::Ready(Some(Err(error))) => {
                    if let Some(span) = self.span.take() {
                        span.0.fail(error.0.clone());
                    }
                }
                _ => {}
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl ResponseBody {
    /// The next frame: the guest driven first, its deadline enforced, a failure after it answered
    /// turned into the body's error.
    fn poll_guest_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        // Let the guest write first, so that what it writes in this step is read in this step.
        if let Some(running) = this.guest.as_mut() {
            let finished = match running.run.as_mut() {
                Some(run) => match run.as_mut().poll(cx) {
                    Poll::Ready(outcome) => {
                        if let Err(error) = outcome {
                            this.failed = Some(error.to_string());
                        }
                        true
                    }
                    Poll::Pending => false,
                },
                None => false,
            };
            if finished {
                this.guest = None;
            } else {
                let deadline = running.deadline;
                let timer = running
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                if timer.as_mut().poll(cx).is_ready() {
                    // Out of time while streaming: the guest and its instance end here; the client
                    // sees the body end with an error (a cut connection), as the head is already sent.
                    let limit = running.limit;
                    this.guest = None;
                    tracing::warn!(?limit, "function timed out while writing its response body");
                    return Poll::Ready(Some(Err(BodyError(format!(
                        "the function timed out after {limit:?}"
                    )))));
                }
            }
        }
        let frame = self.inner.poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.permit = None;
        }
        if let Poll::Ready(None) = frame
            && let Some(failure) = self.failed.take()
        {
            return Poll::Ready(Some(Err(BodyError(failure))));
        }
        if let Poll::Ready(None) = frame
            && let Some(Running {
                run: Some(run),
                deadline,
                ..
            }) = self.guest.take()
        {
            // The body is complete; the guest may still have work after it (or be about to return).
            // Its instance is released when that work ends, or at its deadline, whatever the reader
            // does next.
            tokio::spawn(async move {
                let _ = tokio::time::timeout_at(deadline.into(), run).await;
            });
        }
        frame
    }
}
