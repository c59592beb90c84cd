//! Getting spans out: a bounded queue between the requests that end spans and one export task, and
//! the HTTP client the OTLP exporter sends with.
//!
//! The SDK's own batch processor is not used for two reasons: it keeps its drop count to itself
//! (an operator must see spans lost, in `/metrics`), and it drives the exporter from a thread of its
//! own with a blocking executor, where an async client built on tokio has no reactor. Here a span
//! that ends is handed over with a `try_send` (never a wait: a full queue drops the span and counts
//! it), and the export task, on tokio, sends batches one at a time, each within its timeout; a batch
//! the collector did not take is dropped and counted too. Nothing a request does waits for the
//! collector.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry::Context;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
    sender: mpsc::Sender<SpanData>,
    counts: Arc<SpanCounts>,
}

impl QueueProcessor {
    /// A processor whose spans `exporter` sends, on a task that runs until `stop` and then sends
    /// what is queued (within one export timeout). The returned handle ends with that task.
    pub(crate) fn start<E: SpanExporter + 'static>(
        exporter: E,
        batching: Batching,
        counts: Arc<SpanCounts>,
        stop: CancellationToken,
    ) -> (QueueProcessor, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(batching.max_queue.max(1));
        let task = tokio::spawn(export_loop(
            exporter,
            receiver,
            batching,
            counts.clone(),
            stop,
        ));
        (QueueProcessor { sender, counts }, task)
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if self.sender.try_send(span).is_err() {
            self.counts
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
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
async fn export_loop<E: SpanExporter>(
    exporter: E,
    mut receiver: mpsc::Receiver<SpanData>,
    batching: Batching,
    counts: Arc<SpanCounts>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(batching.max_batch);
    let mut failing = false;
    loop {
        let received = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            n = receiver.recv_many(&mut batch, batching.max_batch) => n,
        };
        if received == 0 {
            break;
        }
        // Let the batch fill for at most `delay` after its first span.
        let until = tokio::time::Instant::now() + batching.delay;
        let mut stopping = false;
        while batch.len() < batching.max_batch {
            let room = batching.max_batch - batch.len();
            tokio::select! {
                biased;
                () = stop.cancelled() => {
                    stopping = true;
                    break;
                }
                () = tokio::time::sleep_until(until) => break,
                n = receiver.recv_many(&mut batch, room) => if n == 0 { break },
            }
        }
        export(
            &exporter,
            &mut batch,
            batching.timeout,
            &counts,
            &mut failing,
        )
        .await;
        if stopping {
            break;
        }
    }
    // What is queued at the end goes out in one last round, bounded by one export timeout.
    let last = async {
        loop {
            while batch.len() < batching.max_batch {
                match receiver.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
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
    let _ = exporter.shutdown();
}

/// Exports `batch` (emptying it) within `timeout`, counting its spans as exported or dropped. The
/// first failure of a run of them is logged, and the recovery.
async fn export<E: SpanExporter>(
    exporter: &E,
    batch: &mut Vec<SpanData>,
    timeout: Duration,
    counts: &SpanCounts,
    failing: &mut bool,
) {
    let spans = std::mem::take(batch);
    let n = spans.len() as u64;
    let outcome = match tokio::time::timeout(timeout, exporter.export(spans)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
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

/// The OTLP exporter's HTTP client: the host's own pooled hyper client (rustls, for `https`
/// collectors), each request and the read of its answer within `timeout`.
#[derive(Debug, Clone)]
pub(crate) struct ExportClient {
    client: wasmgate_net::HttpClient,
    timeout: Duration,
}

impl ExportClient {
    pub(crate) fn new(timeout: Duration) -> ExportClient {
        ExportClient {
            client: wasmgate_net::http_client(timeout),
            timeout,
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let request = request.map(Full::new);
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, HttpError>(http::Response::from_parts(parts, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("the collector did not answer within {:?}", self.timeout).into()),
        }
    }
}
