//! The body of a function's response, streamed as the guest writes it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

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
    inner: HyperOutgoingBody,
    guest: Option<Running>,
    /// Set when the guest failed after answering: the body must end with an error, not cleanly, so
    /// the client can tell a cut body from a whole one (hyper then closes the connection instead of
    /// writing the last chunk).
    failed: Option<String>,
}

/// A guest still writing its body, and when its time runs out.
struct Running {
    run: GuestRun,
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
    pub(crate) fn new(
        inner: HyperOutgoingBody,
        guest: Option<(GuestRun, Instant, Duration)>,
    ) -> Self {
        ResponseBody {
            inner,
            failed: None,
            guest: guest.map(|(run, deadline, limit)| Running {
                run,
                deadline,
                limit,
                timer: None,
            }),
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
        // Let the guest write first, so that what it writes in this step is read in this step.
        if let Some(running) = self.guest.as_mut() {
            if let Poll::Ready(outcome) = running.run.as_mut().poll(cx) {
                self.guest = None;
                if let Err(error) = outcome {
                    self.failed = Some(error.to_string());
                }
            } else {
                let deadline = running.deadline;
                let timer = running
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                if timer.as_mut().poll(cx).is_ready() {
                    // Out of time while streaming: the guest and its instance end here; the client
                    // sees the body end with an error (a cut connection), as the head is already sent.
                    let limit = running.limit;
                    self.guest = None;
                    tracing::warn!(?limit, "function timed out while writing its response body");
                    return Poll::Ready(Some(Err(BodyError(format!(
                        "the function timed out after {limit:?}"
                    )))));
                }
            }
        }
        let frame = Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(|e| BodyError(format!("{e:?}")));
        if let Poll::Ready(None) = frame
            && let Some(failure) = self.failed.take()
        {
            return Poll::Ready(Some(Err(BodyError(failure))));
        }
        if let Poll::Ready(None) = frame
            && let Some(running) = self.guest.take()
        {
            // The body is complete; the guest may still have work after it (or be about to return).
            // Its instance is released when that work ends, or at its deadline, whatever the reader
            // does next.
            tokio::spawn(async move {
                let _ = tokio::time::timeout_at(running.deadline.into(), running.run).await;
            });
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
