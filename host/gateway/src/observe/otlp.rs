//! Getting spans out: a bounded queue between the requests that end spans and one export task, and
//! the OTLP/HTTP exporter it sends with (protobuf, encoded by `otlp_proto.rs`, over the host's own
//! hyper client).
//!
//! A span is encoded as it ends, on the thread that ended it (see `otlp_proto::EncodedSpan`).
//! The SDK's own batch processor is not used for two reasons: it keeps its drop count to itself
//! (an operator must see spans lost, in `/metrics`), and it drives the exporter from a thread of its
//! own with a blocking executor, where an async client built on tokio has no reactor. Here a span
//! that ends is handed over with a `try_send` (never a wait: a full queue drops the span and counts
//! it), and the export task, on tokio, sends batches one at a time, each within its timeout; a batch
//! the collector did not take is dropped and counted too. Nothing a request does waits for the
//! collector.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::otlp_proto::EncodedSpan;

/// The most of a collector's answer that is read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What happened to the spans that ended, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct SpanCounts {
    /// Taken by the collector.
    pub(crate) exported: AtomicU64,
    /// Dropped because the queue was full.
    pub(crate) dropped_queue_full: AtomicU64,
    /// Dropped because their export failed (collector gone, slow or refusing).
    pub(crate) dropped_export_failed: AtomicU64,
}

/// How the export task batches and waits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batching {
    /// Spans waiting at most; past it, spans are dropped.
    pub(crate) max_queue: usize,
    /// Spans in one export at most.
    pub(crate) max_batch: usize,
    /// How long a span may wait for its batch to fill.
    pub(crate) delay: Duration,
    /// How long one export may take.
    pub(crate) timeout: Duration,
}

/// The span processor: hands each ended span to the export task through a bounded queue.
#[derive(Debug)]
pub(crate) struct QueueProcessor {
    sender: mpsc::Sender<EncodedSpan>,
    counts: Arc<SpanCounts>,
    wake: Arc<Wake>,
    /// The queue's bound, and the spans that make a full batch.
    max_queue: usize,
    max_batch: usize,
}

/// How a span that ends wakes the export task: only when the task waits for a first span, or when
/// the span fills a batch. Waking the task for every span (it then polled the queue and went back
/// to wait) was most of what exporting cost at every request sampled.
#[derive(Debug, Default)]
struct Wake {
    /// The export task found the queue empty and waits for a span.
    idle: AtomicBool,
    notify: Notify,
}

impl QueueProcessor {
    /// A processor whose spans `exporter` sends, on a task that runs until `stop` and then sends
    /// what is queued (within one export timeout). The returned handle ends with that task.
    pub(crate) fn start(
        exporter: OtlpExporter,
        batching: Batching,
        counts: Arc<SpanCounts>,
        stop: CancellationToken,
    ) -> (QueueProcessor, tokio::task::JoinHandle<()>) {
        let max_queue = batching.max_queue.max(1);
        let (sender, receiver) = mpsc::channel(max_queue);
        let wake = Arc::new(Wake::default());
        let task = tokio::spawn(export_loop(
            exporter,
            receiver,
            batching,
            counts.clone(),
            wake.clone(),
            stop,
        ));
        let processor = QueueProcessor {
            sender,
            counts,
            wake,
            max_queue,
            max_batch: batching.max_batch.clamp(1, max_queue),
        };
        (processor, task)
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        // A full queue drops the span before the work of encoding it.
        let Ok(permit) = self.sender.try_reserve() else {
            self.counts
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        permit.send(EncodedSpan::new(span));
        // Pairs with the export task's fence between marking itself idle and looking again.
        fence(Ordering::SeqCst);
        let wake = &self.wake;
        if wake.idle.load(Ordering::Relaxed) {
            if wake.idle.swap(false, Ordering::AcqRel) {
                wake.notify.notify_one();
            }
        } else if self.max_queue - self.sender.capacity() == self.max_batch {
            wake.notify.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        // The export task sends on its own schedule; nothing waits for it.
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        // The export task stops on its token and sends what is queued then.
        Ok(())
    }
}

/// Takes spans off the queue and exports them in batches until `stop`, then exports what is left.
/// A batch goes out when it is full, or `delay` after the task saw its first span.
async fn export_loop(
    exporter: OtlpExporter,
    mut receiver: mpsc::Receiver<EncodedSpan>,
    batching: Batching,
    counts: Arc<SpanCounts>,
    wake: Arc<Wake>,
    stop: CancellationToken,
) {
    let max_batch = batching.max_batch.clamp(1, batching.max_queue.max(1));
    let mut batch = Vec::with_capacity(max_batch);
    let mut failing = false;
    'run: loop {
        if receiver.is_empty() {
            wake.idle.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            // A span sent before `idle` was seen is seen here.
            if receiver.is_empty() {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break 'run,
                    () = wake.notify.notified() => {}
                }
            }
            wake.idle.store(false, Ordering::SeqCst);
            if receiver.is_closed() && receiver.is_empty() {
                break;
            }
        }
        // The first span is here: its batch fills for at most `delay`.
        if receiver.len() < max_batch {
            let until = tokio::time::Instant::now() + batching.delay;
            tokio::select! {
                biased;
                () = stop.cancelled() => break 'run,
                () = tokio::time::sleep_until(until) => {}
                () = wake.notify.notified() => {}
            }
        }
        // Every full batch queued, then what is left.
        while fill(&mut receiver, &mut batch, max_batch) {
            export(
                &exporter,
                &mut batch,
                batching.timeout,
                &counts,
                &mut failing,
            )
            .await;
            if receiver.len() < max_batch || stop.is_cancelled() {
                break;
            }
        }
    }
    // What is queued at the end goes out in one last round, bounded by one export timeout.
    let last = async {
        while fill(&mut receiver, &mut batch, max_batch) {
            export(
                &exporter,
                &mut batch,
                batching.timeout,
                &counts,
                &mut failing,
            )
            .await;
        }
    };
    if tokio::time::timeout(batching.timeout, last).await.is_err() {
        tracing::warn!("spans still queued at shutdown were not exported in time");
    }
}

/// Moves queued spans into `batch` until it holds `max_batch`; whether it holds any.
fn fill(
    receiver: &mut mpsc::Receiver<EncodedSpan>,
    batch: &mut Vec<EncodedSpan>,
    max_batch: usize,
) -> bool {
    while batch.len() < max_batch {
        match receiver.try_recv() {
            Ok(span) => batch.push(span),
            Err(_) => break,
        }
    }
    !batch.is_empty()
}

/// Exports `batch` (emptying it) within `timeout`, counting its spans as exported or dropped. The
/// first failure of a run of them is logged, and the recovery.
async fn export(
    exporter: &OtlpExporter,
    batch: &mut Vec<EncodedSpan>,
    timeout: Duration,
    counts: &SpanCounts,
    failing: &mut bool,
) {
    let spans = std::mem::take(batch);
    let n = spans.len() as u64;
    let outcome = match tokio::time::timeout(timeout, exporter.export(spans)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    };
    match outcome {
        Ok(()) => {
            counts.exported.fetch_add(n, Ordering::Relaxed);
            if std::mem::take(failing) {
                tracing::info!("exporting spans works again");
            }
        }
        Err(reason) => {
            counts.dropped_export_failed.fetch_add(n, Ordering::Relaxed);
            if !std::mem::replace(failing, true) {
                tracing::warn!(%reason, spans = n, "exporting spans failed; they are dropped (counted in wasmgate_trace_spans_dropped_total)");
            }
        }
    }
}

/// The OTLP/HTTP exporter: each batch encoded as one `ExportTraceServiceRequest` and posted to the
/// collector's traces URL with the configured headers, through the host's pooled hyper client
/// (rustls, for `https` collectors), the request and the read of its answer within `timeout`. A
/// status other than 2xx fails the export.
#[derive(Debug)]
pub(crate) struct OtlpExporter {
    client: wasmgate_net::HttpClient,
    endpoint: http::Uri,
    headers: http::HeaderMap,
    timeout: Duration,
    /// The encoded `Resource` message, and its schema URL.
    resource: Vec<u8>,
    schema_url: Option<String>,
}

impl OtlpExporter {
    /// An exporter to `endpoint` (the full traces URL), sending `headers` with each export.
    pub(crate) fn new(
        endpoint: http::Uri,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> anyhow::Result<OtlpExporter> {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            let name = http::HeaderName::try_from(name.as_str())
                .map_err(|e| anyhow::anyhow!("OTLP header name {name:?}: {e}"))?;
            let value = http::HeaderValue::try_from(value.as_str())
                .map_err(|e| anyhow::anyhow!("OTLP header {name}'s value: {e}"))?;
            map.append(name, value);
        }
        Ok(OtlpExporter {
            client: wasmgate_net::http_client(timeout),
            endpoint,
            headers: map,
            timeout,
            resource: Vec::new(),
            schema_url: None,
        })
    }

    async fn send(&self, body: Vec<u8>) -> Result<(), String> {
        let mut request = http::Request::post(self.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        for (name, value) in &self.headers {
            request.headers_mut().append(name, value.clone());
        }
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            // Read (at most a bound of) the answer, so the connection can serve the next export.
            let _ = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the collector answered {status}"))
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!(
                "the collector did not answer within {:?}",
                self.timeout
            )),
        }
    }
}

impl OtlpExporter {
    /// Sends `batch` as one export.
    async fn export(&self, batch: Vec<EncodedSpan>) -> Result<(), String> {
        let body =
            super::otlp_proto::export_request(&self.resource, self.schema_url.as_deref(), &batch);
        drop(batch);
        self.send(body).await
    }

    /// The resource every export names (`service.name`, ...).
    pub(crate) fn set_resource(&mut self, resource: &Resource) {
        self.resource = super::otlp_proto::resource(resource);
        self.schema_url = resource.schema_url().map(str::to_string);
    }
}
