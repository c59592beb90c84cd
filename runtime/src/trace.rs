//! Traces: the spans the runtime makes for a request that the host traces, and the W3C trace
//! context it puts on what the guest receives and sends.
//!
//! The host opts a request in by putting a [`Trace`] (its tracer and the span the request belongs
//! to) in the request's `http` extensions. A request without one makes no span, formats no header
//! and costs one extension lookup: tracing off is free here. With one, the runtime makes, under it:
//!
//! - `load {function}` when the request has to load the function (attribute
//!   `wasmgate.load.source`: `disk_cache`, `compile`, or `shared` when it waited for another
//!   request's load);
//! - `handle {function}` from the request reaching the guest to the last byte of its response body
//!   (`faas.name`, `faas.coldstart`, `http.response.status_code`; an error status with the reason
//!   when the guest traps, times out, runs out of memory or is refused), with `instantiate` under
//!   it when the request gets a new instance;
//! - under `handle`, a `call {function}` span (kind client) for each call to another function in
//!   process, whose own `handle` span is its child, and a `{METHOD}` span (kind client) for each
//!   outbound request, which carries that span's `traceparent`.
//!
//! The guest sees the `handle` span as its parent in its request's `traceparent` and `tracestate`.
//! The runtime knows only the OpenTelemetry API: the host brings the SDK, the sampler and the
//! exporter.

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};

/// The W3C header that carries the trace id, the parent span id and the sampled flag.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header that carries vendors' trace state along with `traceparent`.
pub const TRACESTATE: &str = "tracestate";

/// The trace a request belongs to: the tracer that makes its spans and the context (the span) new
/// spans are children of. Cheap to clone; clones share the span.
#[derive(Clone)]
pub struct Trace {
    tracer: Arc<BoxedTracer>,
    context: Context,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace")
            .field("span", self.context.span().span_context())
            .finish_non_exhaustive()
    }
}

impl Trace {
    /// New spans of `tracer` will be children of the span in `context`.
    pub fn new(tracer: Arc<BoxedTracer>, context: Context) -> Trace {
        Trace { tracer, context }
    }

    /// The context, whose span is this trace's current span.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// A span started now as a child of this one; the returned trace's current span is the new one.
    pub fn child(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> Trace {
        let builder = SpanBuilder::from_name(name)
            .with_kind(kind)
            .with_attributes(attributes);
        let span = self.tracer.build_with_context(builder, &self.context);
        Trace {
            tracer: self.tracer.clone(),
            context: self.context.with_span(span),
        }
    }

    /// Sets an attribute on the current span.
    pub fn set_attribute(&self, attribute: KeyValue) {
        self.context.span().set_attribute(attribute);
    }

    /// Marks the current span as failed, for `reason`.
    pub fn fail(&self, reason: impl Into<Cow<'static, str>>) {
        self.context.span().set_status(Status::error(reason));
    }

    /// Ends the current span (later changes to it are ignored).
    pub fn end(&self) {
        self.context.span().end();
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        self.context.span().span_context().trace_id().to_string()
    }

    /// The current span as a `traceparent` value: `00-{trace id}-{span id}-{flags}`.
    pub fn traceparent(&self) -> HeaderValue {
        let span = self.context.span();
        let context = span.span_context();
        let text = format!(
            "00-{}-{}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8()
        );
        HeaderValue::from_str(&text).expect("hex digits and dashes are a valid header value")
    }

    /// Replaces `traceparent` and `tracestate` in `headers` with the current span's.
    pub fn set_headers(&self, headers: &mut HeaderMap) {
        headers.insert(TRACEPARENT, self.traceparent());
        let state = self.context.span().span_context().trace_state().header();
        match HeaderValue::from_str(&state) {
            Ok(value) if !state.is_empty() => {
                headers.insert(TRACESTATE, value);
            }
            _ => {
                headers.remove(TRACESTATE);
            }
        }
    }
}

/// Ends its span when dropped, however the work it covers ends.
#[derive(Debug)]
pub(crate) struct SpanGuard(pub(crate) Trace);

impl Drop for SpanGuard {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// `http.response.status_code`, the attribute for an answer's status.
pub(crate) fn status_code(status: http::StatusCode) -> KeyValue {
    KeyValue::new("http.response.status_code", i64::from(status.as_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceFlags, TraceId, TraceState, noop::NoopTracer,
    };

    fn remote(state: TraceState) -> Trace {
        let context = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"),
            SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
            TraceFlags::SAMPLED,
            true,
            state,
        );
        let tracer = Arc::new(BoxedTracer::new(Box::new(NoopTracer::new())));
        Trace::new(tracer, Context::new().with_remote_span_context(context))
    }

    #[test]
    fn headers_carry_the_span_and_its_state() {
        let trace = remote(TraceState::from_key_value([("vendor", "v1")]).expect("state"));
        let mut headers = HeaderMap::new();
        headers.insert(TRACESTATE, HeaderValue::from_static("stale=1"));
        trace.set_headers(&mut headers);
        assert_eq!(
            headers[TRACEPARENT],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(headers[TRACESTATE], "vendor=v1");
        assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn an_empty_state_removes_a_stale_one() {
        let trace = remote(TraceState::default());
        let mut headers = HeaderMap::new();
        headers.insert(TRACESTATE, HeaderValue::from_static("stale=1"));
        trace.set_headers(&mut headers);
        assert!(!headers.contains_key(TRACESTATE));
    }
}
