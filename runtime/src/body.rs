//! The body of a function's response, streamed as the guest writes it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A response body that yields the guest's writes as they happen, never holding the whole body.
pub struct ResponseBody {
    inner: HyperOutgoingBody,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl ResponseBody {
    pub(crate) fn new(inner: HyperOutgoingBody) -> Self {
        ResponseBody { inner }
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
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(|e| BodyError(format!("{e:?}")))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
