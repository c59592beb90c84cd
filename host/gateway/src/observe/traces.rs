//! OpenTelemetry traces: what `serve` is configured with ([`TraceConfig`], from the standard
//! `OTEL_*` variables and the flags), and [`Traces`], which the gateway holds when tracing is on:
//! the tracer, the sampler, the W3C trace context propagator, the export task and its counts.
//!
//! When tracing is off the gateway holds no `Traces` and no span is made anywhere: the runtime only
//! traces a request that carries a [`Trace`] (see `wasmgate_runtime`'s `trace.rs`), and the
//! gateway adds one only when it has a `Traces`.
//!
//! The spans the gateway makes (the runtime's, under them, are listed in its crate):
//! - `{METHOD} /function/{name}` (server) for a request to a function: `http.request.method`,
//!   `http.route`, `url.path`, `http.response.status_code`, `faas.name`, `faas.invocation_id` (the
//!   call id), `faas.trigger` (`http`; `timer` for cron, `pubsub` for a topic), `faas.coldstart`;
//! - `enqueue {name}` (producer) for `POST /async-function/{name}`, whose context is stored with
//!   the call; `run {name}` (consumer, `faas.trigger` `pubsub`, `wasmgate.async.attempt`) for each
//!   attempt, a child of it; `callback {name}` (client) for each delivery of the callback, a child of
//!   the last run, whose `traceparent` the callback request carries.
//!
//! A span's status is an error, with the reason, for a 5xx, a 429, or a failure of the body.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use http::{HeaderMap, HeaderValue, Uri};
use http_body_util::BodyExt;
use opentelemetry::global::BoxedTracer;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tokio_util::sync::CancellationToken;
use wasmgate_runtime::Trace;

use crate::http::body::{BoxError, GatewayBody};
use crate::observe::otlp::{Batching, OtlpExporter, QueueProcessor, SpanCounts};
use crate::observe::prometheus;

/// The W3C header (Trace Context level 2) that names the gateway's span on a traced answer.
pub const TRACERESPONSE: &str = "traceresponse";
/// `service.name` when `OTEL_SERVICE_NAME` does not say.
pub const DEFAULT_SERVICE_NAME: &str = "wasmgate";
/// Spans waiting for export at most (`OTEL_BSP_MAX_QUEUE_SIZE`); past it, spans are dropped.
pub const DEFAULT_TRACE_QUEUE: usize = 2048;
/// Spans in one export at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
pub const DEFAULT_TRACE_BATCH: usize = 512;
/// How long a span may wait for its batch (`OTEL_BSP_SCHEDULE_DELAY`).
pub const DEFAULT_TRACE_DELAY: Duration = Duration::from_secs(5);
/// How long one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`).
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest queue accepted, so a typo cannot reserve gigabytes.
pub const MAX_TRACE_QUEUE: usize = 1 << 20;

/// Where and how spans are exported: OTLP over HTTP with protobuf.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// The collector's traces URL, `.../v1/traces`.
    pub endpoint: Uri,
    /// Sent with every export (`OTEL_EXPORTER_OTLP_HEADERS`), for a collector's credentials.
    pub headers: Vec<(String, String)>,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Which traces are recorded.
    pub sampler: SamplerSetting,
    /// Spans waiting at most; past it they are dropped and counted.
    pub max_queue: usize,
    /// Spans per export at most.
    pub max_batch: usize,
    /// How long a span may wait for its batch to fill.
    pub delay: Duration,
    /// How long one export may take.
    pub timeout: Duration,
}

impl TraceConfig {
    /// A configuration exporting to `endpoint` with every other setting at its default.
    pub fn new(endpoint: Uri) -> TraceConfig {
        TraceConfig {
            endpoint,
            headers: Vec::new(),
            service_name: DEFAULT_SERVICE_NAME.to_string(),
            sampler: SamplerSetting::ParentBasedAlwaysOn,
            max_queue: DEFAULT_TRACE_QUEUE,
            max_batch: DEFAULT_TRACE_BATCH,
            delay: DEFAULT_TRACE_DELAY,
            timeout: DEFAULT_EXPORT_TIMEOUT,
        }
    }
}

/// The samplers of `OTEL_TRACES_SAMPLER`, with `OTEL_TRACES_SAMPLER_ARG`'s ratio where they take one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerSetting {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio`: this fraction of traces, by trace id.
    TraceIdRatio(f64),
    /// `parentbased_always_on` (the default): as the caller decided, else all.
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`: as the caller decided, else none.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`: as the caller decided, else this fraction.
    ParentBasedTraceIdRatio(f64),
}

impl SamplerSetting {
    /// Parses `OTEL_TRACES_SAMPLER` and its argument (a ratio from 0 to 1, default 1).
    pub fn parse(name: &str, arg: Option<&str>) -> Result<SamplerSetting, String> {
        let ratio = || -> Result<f64, String> {
            match arg.map(str::trim).filter(|a| !a.is_empty()) {
                None => Ok(1.0),
                Some(text) => match text.parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                    _ => Err(format!(
                        "the sampler's ratio must be a number from 0 to 1, not {text:?}"
                    )),
                },
            }
        };
        Ok(match name.trim() {
            "always_on" => SamplerSetting::AlwaysOn,
            "always_off" => SamplerSetting::AlwaysOff,
            "traceidratio" => SamplerSetting::TraceIdRatio(ratio()?),
            "" | "parentbased_always_on" => SamplerSetting::ParentBasedAlwaysOn,
            "parentbased_always_off" => SamplerSetting::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => SamplerSetting::ParentBasedTraceIdRatio(ratio()?),
            other => {
                return Err(format!(
                    "unknown sampler {other:?}: use always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
                ));
            }
        })
    }

    fn sampler(self) -> Sampler {
        match self {
            SamplerSetting::AlwaysOn => Sampler::AlwaysOn,
            SamplerSetting::AlwaysOff => Sampler::AlwaysOff,
            SamplerSetting::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            SamplerSetting::ParentBasedAlwaysOn => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
            }
            SamplerSetting::ParentBasedAlwaysOff => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOff))
            }
            SamplerSetting::ParentBasedTraceIdRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }
}

/// The traces URL: `traces` as it is (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), else `base`
/// (`OTEL_EXPORTER_OTLP_ENDPOINT`) with `/v1/traces` appended, as the OTLP exporter specification
/// says; `None` when neither is set (tracing off). Only `http` and `https` URLs.
pub fn traces_endpoint(base: Option<&str>, traces: Option<&str>) -> Result<Option<Uri>, String> {
    let (text, what) = match (
        traces.map(str::trim).filter(|t| !t.is_empty()),
        base.map(str::trim).filter(|b| !b.is_empty()),
    ) {
        (Some(traces), _) => (traces.to_string(), "the OTLP traces endpoint"),
        (None, Some(base)) => (
            format!("{}/v1/traces", base.trim_end_matches('/')),
            "the OTLP endpoint",
        ),
        (None, None) => return Ok(None),
    };
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("{what} {text:?} is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(Some(uri)),
        _ => Err(format!(
            "{what} {text:?} must be an absolute http:// or https:// URL"
        )),
    }
}

/// Parses `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs separated by commas, values
/// percent-decoded (W3C baggage format, as the specification says).
pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!(
                "OTLP header {pair:?} is not key=value (the list is key=value,key=value)"
            ));
        };
        let key = key.trim();
        let value = percent_decode(value.trim())
            .ok_or_else(|| format!("OTLP header {key:?} has an invalid %-escape"))?;
        if http::HeaderName::from_bytes(key.as_bytes()).is_err()
            || HeaderValue::from_str(&value).is_err()
        {
            return Err(format!("OTLP header {key:?} is not a valid HTTP header"));
        }
        headers.push((key.to_string(), value));
    }
    Ok(headers)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// How a request to a function was triggered, when not by a client: set by the connectors and
/// the queue in the request's extensions (a client cannot set it), read for `faas.trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// A cron schedule.
    Timer,
    /// A message on a topic.
    PubSub,
    /// An attempt of a queued call (the first is 1).
    Async { attempt: u32 },
}

/// Tracing, on: the tracer, the propagator and the export task. Cheap to clone; the
/// [`App`](crate::App) that starts it stops it.
#[derive(Debug, Clone)]
pub struct Traces {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tracer: Arc<BoxedTracer>,
    propagator: TraceContextPropagator,
    counts: Arc<SpanCounts>,
    /// Kept so the tracer's pipeline lives as long as the gateway.
    _provider: SdkTracerProvider,
    /// Stops the export task, which then sends what is queued.
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Traces {
    /// Starts the export task and the tracer. Must run inside the tokio runtime.
    pub(crate) fn start(config: &TraceConfig) -> anyhow::Result<Traces> {
        let mut exporter =
            OtlpExporter::new(config.endpoint.clone(), &config.headers, config.timeout)
                .context("setting up the OTLP exporter")?;
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        exporter.set_resource(&resource);
        let counts = Arc::new(SpanCounts::default());
        let stop = CancellationToken::new();
        let (processor, task) = QueueProcessor::start(
            exporter,
            Batching {
                max_queue: config.max_queue,
                max_batch: config.max_batch.clamp(1, config.max_queue.max(1)),
                delay: config.delay,
                timeout: config.timeout,
            },
            counts.clone(),
            stop.clone(),
        );
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(config.sampler.sampler())
            .with_resource(resource)
            .build();
        let tracer = BoxedTracer::new(Box::new(provider.tracer("wasmgate")));
        tracing::info!(endpoint = %config.endpoint, sampler = ?config.sampler, "exporting traces");
        Ok(Traces {
            inner: Arc::new(Inner {
                tracer: Arc::new(tracer),
                propagator: TraceContextPropagator::new(),
                counts,
                _provider: provider,
                stop,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// The context a request's `traceparent` and `tracestate` continue (empty without them, or
    /// when they are malformed: a new trace starts).
    pub(crate) fn extract(&self, headers: &HeaderMap) -> Context {
        self.inner
            .propagator
            .extract(&opentelemetry_http::HeaderExtractor(headers))
    }

    /// A span started now under `parent`.
    pub(crate) fn span(
        &self,
        parent: Context,
        name: String,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> Trace {
        Trace::new(self.inner.tracer.clone(), parent).child(name, kind, attributes)
    }

    /// Stops the export task, which sends what is queued (within one export timeout), and waits
    /// for it.
    pub(crate) async fn shutdown(&self) {
        self.inner.stop.cancel();
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// The `/metrics` lines of the export.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        let counts = &self.inner.counts;
        prometheus::header(
            out,
            "wasmgate_trace_spans_exported_total",
            "counter",
            "Spans the OTLP collector accepted.",
        );
        prometheus::sample(
            out,
            "wasmgate_trace_spans_exported_total",
            "",
            counts.exported.load(Ordering::Relaxed),
        );
        prometheus::header(
            out,
            "wasmgate_trace_spans_dropped_total",
            "counter",
            "Spans dropped: the export queue was full, or their export failed.",
        );
        prometheus::sample(
            out,
            "wasmgate_trace_spans_dropped_total",
            "reason=\"queue_full\"",
            counts.dropped_queue_full.load(Ordering::Relaxed),
        );
        prometheus::sample(
            out,
            "wasmgate_trace_spans_dropped_total",
            "reason=\"export_failed\"",
            counts.dropped_export_failed.load(Ordering::Relaxed),
        );
    }
}

/// The span status for an answer: an error, with `reason`, for a 5xx or a 429.
pub(crate) fn end_with_status(span: &Trace, status: http::StatusCode, reason: Option<&str>) {
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status.as_u16()),
    ));
    if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
        span.fail(
            reason
                .map(str::to_string)
                .unwrap_or_else(|| format!("status {status}")),
        );
    }
}

/// A response body that ends `span` with its last byte (failing it if the body fails), or when
/// it is dropped: the gateway's span covers the whole answer, as the guest's `handle` span does.
pub(crate) fn end_with_body(body: GatewayBody, span: Trace) -> GatewayBody {
    TracedBody {
        inner: body,
        span: Some(span),
    }
    .boxed_unsync()
}

struct TracedBody {
    inner: GatewayBody,
    span: Option<Trace>,
}

impl http_body::Body for TracedBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &frame {
            std::task::Poll::Ready(None) => {
                if let Some(span) = self.span.take() {
                    span.end();
                }
            }
            std::task::Poll::Ready(Some(Err(error))) => {
                if let Some(span) = self.span.take() {
                    span.fail(error.to_string());
                    span.end();
                }
            }
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TracedBody {
    fn drop(&mut self) {
        if let Some(span) = self.span.take() {
            span.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_parse_as_the_specification_names_them() {
        let cases: [(&str, Option<&str>, Result<SamplerSetting, ()>); 9] = [
            ("always_on", None, Ok(SamplerSetting::AlwaysOn)),
            ("always_off", Some("0.3"), Ok(SamplerSetting::AlwaysOff)),
            (
                "traceidratio",
                Some("0.25"),
                Ok(SamplerSetting::TraceIdRatio(0.25)),
            ),
            ("traceidratio", None, Ok(SamplerSetting::TraceIdRatio(1.0))),
            ("", None, Ok(SamplerSetting::ParentBasedAlwaysOn)),
            (
                "parentbased_traceidratio",
                Some(" 0 "),
                Ok(SamplerSetting::ParentBasedTraceIdRatio(0.0)),
            ),
            ("traceidratio", Some("1.5"), Err(())),
            ("traceidratio", Some("half"), Err(())),
            ("jaeger_remote", None, Err(())),
        ];
        for (name, arg, expected) in cases {
            let got = SamplerSetting::parse(name, arg).map_err(|_| ());
            assert_eq!(got, expected, "{name} {arg:?}");
        }
    }

    #[test]
    fn the_traces_endpoint_follows_the_specification() {
        let url = |base: Option<&str>, traces: Option<&str>| {
            traces_endpoint(base, traces).map(|u| u.map(|u| u.to_string()))
        };
        assert_eq!(url(None, None), Ok(None));
        assert_eq!(url(Some(" "), None), Ok(None));
        assert_eq!(
            url(Some("http://collector:4318"), None),
            Ok(Some("http://collector:4318/v1/traces".into()))
        );
        assert_eq!(
            url(Some("http://collector:4318/otlp/"), None),
            Ok(Some("http://collector:4318/otlp/v1/traces".into()))
        );
        assert_eq!(
            url(Some("http://ignored"), Some("https://c/custom")),
            Ok(Some("https://c/custom".into()))
        );
        assert!(url(Some("collector:4318"), None).is_err());
        assert!(url(None, Some("grpc://c:4317")).is_err());
    }

    #[test]
    fn headers_are_key_value_pairs_percent_decoded() {
        assert_eq!(
            parse_headers("api-key=abc%20def, x-tenant = t1,"),
            Ok(vec![
                ("api-key".to_string(), "abc def".to_string()),
                ("x-tenant".to_string(), "t1".to_string()),
            ])
        );
        assert_eq!(parse_headers(""), Ok(vec![]));
        assert!(parse_headers("novalue").is_err());
        assert!(parse_headers("bad key=1").is_err());
        assert!(parse_headers("k=%zz").is_err());
    }
}
