//! Callbacks: a final call's response POSTed to its `X-Callback-Url` with the callback headers,
//! retried with backoff until delivered or given up, at most [`CALLBACKS_IN_FLIGHT`] at once. A
//! restart resumes the deliveries a previous process left pending.
//!
//! Each delivery is a task of its own, owned by the shutdown signal: when it comes, a delivery that
//! waits (for its turn, or between two attempts) ends and stays pending for the next start; an
//! attempt under way finishes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use wasmgate_openfaas::headers;
use wasmgate_openfaas::retry::backoff;

use super::config::QueueConfig;
use super::counts::{self, Counts};
use super::store::{CallStore, CallbackState, Outcome, PendingCallback};
use super::writer::Writer;
use crate::observe::traces::{self, Traces};

/// Callbacks being delivered at once.
const CALLBACKS_IN_FLIGHT: usize = 64;
/// How long one callback delivery may take.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait between two deliveries.
const CALLBACK_MAX_WAIT: Duration = Duration::from_secs(60);
/// Undelivered callbacks resumed at start-up, at most.
const RESUME_AT_MOST: usize = 100_000;

/// Delivers callbacks; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Callbacks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Deliveries of one callback at most.
    attempts: u32,
    /// The first wait between two deliveries.
    min_wait: Duration,
    in_flight: Semaphore,
    client: wasmgate_net::HttpClient,
    writer: Writer,
    counts: Arc<Mutex<Counts>>,
    stopping: CancellationToken,
    /// When tracing is on: each delivery is a `callback` span, the child of the context the call
    /// stored (the `traceparent` among its kept headers).
    traces: Option<Traces>,
}

impl Callbacks {
    /// Deliveries with `config`'s attempts and waits, recorded through `writer`, until `stopping`.
    pub(super) fn new(
        config: &QueueConfig,
        writer: Writer,
        counts: Arc<Mutex<Counts>>,
        stopping: CancellationToken,
        traces: Option<Traces>,
    ) -> Callbacks {
        Callbacks {
            inner: Arc::new(Inner {
                attempts: config.callback_attempts,
                min_wait: config.callback_min_wait,
                in_flight: Semaphore::new(CALLBACKS_IN_FLIGHT),
                client: wasmgate_net::http_client(Duration::from_secs(10)),
                writer,
                counts,
                stopping,
                traces,
            }),
        }
    }

    /// Starts delivering `callback` on a task of its own.
    pub(super) fn spawn(&self, callback: PendingCallback) {
        let callbacks = self.clone();
        tokio::spawn(async move { callbacks.deliver(callback).await });
    }

    /// Starts delivering the callbacks `store` holds as pending (a previous process stopped
    /// before it delivered them).
    pub(super) async fn resume(&self, store: &dyn CallStore) {
        let pending = match store.pending_callbacks(RESUME_AT_MOST).await {
            Ok(pending) => pending,
            Err(_) => {
                tracing::error!("could not read the undelivered callbacks");
                return;
            }
        };
        if !pending.is_empty() {
            tracing::info!(callbacks = pending.len(), "resuming undelivered callbacks");
        }
        for callback in pending {
            self.spawn(callback);
        }
    }

    /// POSTs a call's response to its callback URL until delivered or given up.
    async fn deliver(self, mut callback: PendingCallback) {
        let inner = &self.inner;
        // Left pending when the gateway stops first: the next start delivers it.
        let _permit = tokio::select! {
            biased;
            permit = inner.in_flight.acquire() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = inner.stopping.cancelled() => return,
        };
        let state = loop {
            callback.deliveries += 1;
            let outcome = self.post(&callback).await;
            let permanent = match &outcome {
                Ok(status) if status.is_success() => break CallbackState::Delivered,
                Ok(status) => {
                    !(status.is_server_error()
                        || *status == StatusCode::REQUEST_TIMEOUT
                        || *status == StatusCode::TOO_MANY_REQUESTS)
                }
                Err(_) => false,
            };
            let reason = match &outcome {
                Ok(status) => format!("status {status}"),
                Err(e) => e.clone(),
            };
            if permanent || callback.deliveries >= inner.attempts {
                tracing::warn!(call_id = %callback.id, url = %callback.url, reason = %reason,
                    deliveries = callback.deliveries, "giving up on a callback");
                break CallbackState::Failed;
            }
            let wait = backoff(inner.min_wait, CALLBACK_MAX_WAIT, callback.deliveries);
            tracing::info!(call_id = %callback.id, reason = %reason, wait = ?wait,
                "callback failed; it will be retried");
            tokio::select! {
                biased;
                // Left pending: the next start delivers it.
                () = inner.stopping.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        };
        {
            let mut counts = counts::lock(&inner.counts);
            *counts.callbacks_total.entry(state.as_str()).or_default() += 1;
        }
        let outcome = Outcome::Callback {
            id: callback.id.clone(),
            state,
            deliveries: callback.deliveries,
        };
        if !inner.writer.record(outcome).await {
            tracing::error!(call_id = %callback.id, "could not record a callback's delivery");
        }
    }

    /// One delivery: the callback's status, or why there was none.
    async fn post(&self, callback: &PendingCallback) -> Result<StatusCode, String> {
        let mut request = Request::post(&callback.url);
        for (name, value) in &callback.response.headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) else {
                continue;
            };
            if is_hop_or_length(&name) {
                continue;
            }
            request = request.header(name, value);
        }
        let seconds = format!("{:.6}", callback.duration_ms as f64 / 1000.0);
        request = request
            .header(headers::X_CALL_ID, callback.id.as_str())
            .header(headers::X_FUNCTION_STATUS, callback.status.to_string())
            .header(headers::X_FUNCTION_NAME, callback.called_as.as_str())
            .header(headers::X_DURATION_SECONDS, seconds);
        if callback.attempts > 1 {
            request = request
                .header(headers::X_RETRY, (callback.attempts - 1).to_string())
                .header(
                    headers::X_RETRY_MAX,
                    (callback.max_attempts.saturating_sub(1)).to_string(),
                );
        }
        let mut request = request
            .body(Full::new(Bytes::from(callback.response.body.clone())))
            .map_err(|e| format!("building the callback: {e}"))?;
        let span = self.inner.traces.as_ref().map(|traces| {
            let parent = traces.extract(request.headers());
            let span = traces.span(
                parent,
                format!("callback {}", callback.called_as),
                opentelemetry::trace::SpanKind::Client,
                vec![
                    opentelemetry::KeyValue::new("http.request.method", "POST"),
                    opentelemetry::KeyValue::new("faas.invocation_id", callback.id.clone()),
                    opentelemetry::KeyValue::new(
                        "wasmgate.callback.delivery",
                        i64::from(callback.deliveries),
                    ),
                ],
            );
            span.set_headers(request.headers_mut());
            span
        });
        let outcome = self.send(request).await;
        if let Some(span) = span {
            match &outcome {
                Ok(status) => traces::end_with_status(&span, *status, None),
                Err(reason) => span.fail(reason.clone()),
            }
            span.end();
        }
        outcome
    }

    /// Sends one callback request and reads (and drops) the answer.
    async fn send(&self, request: Request<Full<Bytes>>) -> Result<StatusCode, String> {
        match tokio::time::timeout(CALLBACK_TIMEOUT, self.inner.client.request(request)).await {
            Err(_) => Err(format!("no answer within {CALLBACK_TIMEOUT:?}")),
            Ok(Err(e)) => Err(wasmgate_net::error_chain(&e)),
            Ok(Ok(response)) => {
                let status = response.status();
                // Read (and drop) the answer so the connection can be reused.
                let _ = tokio::time::timeout(
                    CALLBACK_TIMEOUT,
                    http_body_util::Limited::new(response.into_body(), 64 * 1024).collect(),
                )
                .await;
                Ok(status)
            }
        }
    }
}

/// Headers a callback does not copy from the function's answer: hop-by-hop ones, and those the
/// callback request sets itself.
fn is_hop_or_length(name: &HeaderName) -> bool {
    headers::HOP_BY_HOP.contains(name)
        || name == http::header::CONTENT_LENGTH
        || name == http::header::HOST
}
