//! Asynchronous invocations: `POST /async-function/{name}`, a durable queue, workers, retries,
//! callbacks, status and cancel.
//!
//! - **Accept.** A call is stored (one commit shared by the calls that arrive together, on disk before
//!   the 202) and then answered 202 with `X-Call-Id` and `X-Start-Time`. The queue is bounded in calls
//!   and bytes; past either bound the answer is 429 and nothing is stored.
//! - **Run.** One dispatcher takes due calls, round-robin over functions, while fewer than the
//!   gateway-wide limit run and fewer than the per-function limit run for that function. Each runs
//!   through the same path as `/function/{name}` (method, path, query, headers, body as queued).
//! - **Retry.** A status in the function's retry codes (default 408, 429, 500, 502, 503, 504) is
//!   retried after an exponential backoff with jitter, up to its attempts
//!   (`com.openfaas.retry.*` annotations); then the call is kept as failed.
//! - **At least once, never because it runs long.** A running call is owned by this process; there is
//!   no lease to expire. Calls still running when the process dies are queued again when it starts.
//! - **Callback.** When `X-Callback-Url` was given, the response is stored with the final state and
//!   POSTed there, retried with backoff, until delivered or given up; a restart resumes deliveries.
//! - **Bounded history.** Final calls are kept (without their bodies) up to a count, oldest pruned.
//!
//! By noun: this file is admission (the bounds, enqueue, status, cancel) and the queue's handle
//! ([`AsyncQueue`]: open, start, stop, drain); `config.rs` the limits, `store.rs` what is stored and
//! the [`CallStore`] contract, `sqlite.rs` the one-node store, `writer.rs` the task that batches
//! commits, `dispatch.rs` the dispatcher and the run of one call, `callbacks.rs` their delivery,
//! `counts.rs` the numbers kept in memory and their `/metrics` lines.
//!
//! Tasks and their owners: the dispatcher and the callback deliveries stop on the queue's shutdown
//! signal (a child of the gateway's [`CancellationToken`], also cancelled by [`AsyncQueue::stop`]);
//! the calls running then finish, and [`AsyncQueue::drain`] waits for them; the writer ends when the
//! last handle to the queue is dropped, after their outcomes.

mod callbacks;
mod config;
mod counts;
mod dispatch;
mod sqlite;
mod store;
mod writer;

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::{
    DEFAULT_CONCURRENCY, DEFAULT_KEEP_FINISHED, DEFAULT_MAX_BODY, DEFAULT_MAX_QUEUED,
    DEFAULT_MAX_QUEUED_BYTES, DEFAULT_PER_FUNCTION, QueueConfig,
};
pub use dispatch::Invoker;
pub use sqlite::SqliteStore;
pub(crate) use store::now_ms;
pub use store::{
    Call, CallState, CallStatus, CallStore, CallbackState, CancelOutcome, Depth, Finished, NewCall,
    Outcome, PendingCallback, StoredResponse,
};

use crate::observe::traces::Traces;
use callbacks::Callbacks;
use counts::Counts;
use dispatch::Dispatcher;
use writer::Writer;

/// Why a call was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The queue holds as many calls or bytes as it may.
    #[error("the async queue is full ({0}); try again later")]
    Full(String),
    /// The store failed.
    #[error("the async queue could not store the call: {0}")]
    Store(String),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    Stopping,
}

struct Inner {
    store: Arc<dyn CallStore>,
    config: QueueConfig,
    counts: Arc<Mutex<Counts>>,
    writer: Writer,
    callbacks: Callbacks,
    /// Wakes the dispatcher: a call was queued or ended.
    wake: Arc<Notify>,
    /// A call ended (for [`AsyncQueue::drain`]).
    ended: Arc<Notify>,
    /// No call is taken or started once cancelled.
    stopping: CancellationToken,
}

/// The async queue; cheap to clone.
#[derive(Clone)]
pub struct AsyncQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AsyncQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncQueue")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl AsyncQueue {
    /// Opens the queue over `store`: calls a previous process left running are queued again, and
    /// the writer starts. Nothing runs until [`AsyncQueue::start`]; nothing is taken or started
    /// once `stopping` is cancelled. With `traces`, each callback delivery is a span.
    pub async fn open(
        store: Arc<dyn CallStore>,
        config: QueueConfig,
        stopping: CancellationToken,
        traces: Option<Traces>,
    ) -> anyhow::Result<AsyncQueue> {
        let recovered = store.recover(now_ms()).await?;
        if recovered > 0 {
            tracing::warn!(
                calls = recovered,
                "async calls were running when the gateway stopped; they run again"
            );
        }
        let mut counts = Counts::default();
        // A shared store's depth changes with every node: the dispatcher reads it each round.
        let depths = if store.shared() {
            Vec::new()
        } else {
            store.depths().await?
        };
        for (function, depth) in depths {
            counts.queued_calls += depth.calls;
            counts.queued_bytes += depth.bytes;
            counts.queued.insert(function, depth);
        }
        if counts.queued_calls > 0 {
            tracing::info!(
                calls = counts.queued_calls,
                "async calls restored from the queue"
            );
        }
        let counts = Arc::new(Mutex::new(counts));
        let writer = Writer::start(store.clone());
        let callbacks = Callbacks::new(
            &config,
            writer.clone(),
            counts.clone(),
            stopping.clone(),
            traces,
        );
        Ok(AsyncQueue {
            inner: Arc::new(Inner {
                store,
                config,
                counts,
                writer,
                callbacks,
                wake: Arc::new(Notify::new()),
                ended: Arc::new(Notify::new()),
                stopping,
            }),
        })
    }

    /// The limits.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// Starts the dispatcher (and resumes undelivered callbacks), running calls with `invoker`.
    pub fn start(&self, invoker: Arc<dyn Invoker>) {
        let inner = &self.inner;
        let dispatcher = Arc::new(Dispatcher {
            store: inner.store.clone(),
            config: inner.config.clone(),
            counts: inner.counts.clone(),
            writer: inner.writer.clone(),
            callbacks: inner.callbacks.clone(),
            wake: inner.wake.clone(),
            ended: inner.ended.clone(),
            stopping: inner.stopping.clone(),
            invoker,
        });
        tokio::spawn(dispatcher.run());
        let (store, callbacks, stopping) = (
            inner.store.clone(),
            inner.callbacks.clone(),
            inner.stopping.clone(),
        );
        tokio::spawn(async move {
            tokio::select! {
                () = stopping.cancelled() => {}
                () = callbacks.resume(store.as_ref()) => {}
            }
        });
    }

    /// Stops taking calls; those running finish on their own (or run again after a restart).
    pub fn stop(&self) {
        self.inner.stopping.cancel();
    }

    /// Waits up to `timeout` for running calls to finish after [`AsyncQueue::stop`].
    pub async fn drain(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ended = self.inner.ended.notified();
            if self.lock().running_calls == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                let running = self.lock().running_calls;
                tracing::warn!(
                    calls = running,
                    "async calls still running at shutdown; they run again after a restart"
                );
                return;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        counts::lock(&self.inner.counts)
    }

    /// Stores a call durably; `Ok(false)` when a call with its id was already queued.
    pub async fn enqueue(&self, call: NewCall) -> Result<bool, EnqueueError> {
        if self.inner.stopping.is_cancelled() {
            return Err(EnqueueError::Stopping);
        }
        let bytes = call.body.len() as u64;
        {
            // Reserve room first, so concurrent calls cannot all pass the check.
            let mut counts = self.lock();
            let config = &self.inner.config;
            if counts.queued_calls >= config.max_queued {
                return Err(EnqueueError::Full(format!("{} calls", config.max_queued)));
            }
            if counts.queued_bytes + bytes > config.max_queued_bytes {
                return Err(EnqueueError::Full(format!(
                    "{} bytes of bodies",
                    config.max_queued_bytes
                )));
            }
            counts.add_queued(&call.function, bytes);
        }
        let function = call.function.clone();
        let result = self
            .inner
            .writer
            .enqueue(call)
            .await
            .map_err(EnqueueError::Store);
        let mut counts = self.lock();
        match result {
            Ok(true) => {
                *counts.enqueued_total.entry(function).or_default() += 1;
                drop(counts);
                self.inner.wake.notify_one();
                Ok(true)
            }
            other => {
                counts.remove_queued(&function, bytes);
                other
            }
        }
    }

    /// The status of a call.
    pub async fn status(&self, id: String) -> anyhow::Result<Option<CallStatus>> {
        self.inner.store.status(id).await
    }

    /// Cancels a call that has not started.
    pub async fn cancel(&self, id: String) -> anyhow::Result<CancelOutcome> {
        let outcome = self.inner.store.cancel(id, now_ms()).await?;
        if let CancelOutcome::Cancelled { function, bytes } = &outcome {
            let mut counts = self.lock();
            counts.remove_queued(function, *bytes);
            *counts
                .finished_total
                .entry((function.clone(), CallState::Cancelled.as_str()))
                .or_default() += 1;
        }
        Ok(outcome)
    }

    /// Queued and running calls of `function`.
    pub fn depth(&self, function: &str) -> (u64, u64) {
        let counts = self.lock();
        (
            counts.queued.get(function).map_or(0, |d| d.calls),
            counts.running_of(function),
        )
    }

    /// The queue's lines for `/metrics`.
    pub fn render_metrics(&self, out: &mut String) {
        self.lock().render(out);
    }
}

/// The JSON of `GET /system/async/{call-id}`. Times are RFC 3339; absent ones are left out.
pub fn status_json(status: &CallStatus) -> serde_json::Value {
    let time = |ms: u64| {
        wasmgate_openfaas::time::format_rfc3339(UNIX_EPOCH + Duration::from_millis(ms), false)
    };
    let mut json = serde_json::json!({
        "callId": status.id,
        "function": status.function,
        "status": status.state.as_str(),
        "attempts": status.attempts,
        "queuedAt": time(status.queued_at),
    });
    let object = json.as_object_mut().expect("a JSON object");
    let mut set = |key: &str, value: serde_json::Value| {
        object.insert(key.to_string(), value);
    };
    if let Some(code) = status.status_code {
        set("statusCode", code.into());
    }
    if let Some(max) = status.max_attempts {
        set("maxAttempts", max.into());
    }
    if let Some(started) = status.started_at {
        set("startedAt", time(started).into());
    }
    if let Some(finished) = status.finished_at {
        set("finishedAt", time(finished).into());
    }
    if status.state == CallState::Queued {
        set("nextAttemptAt", time(status.due_at).into());
    }
    if let Some(ms) = status.duration_ms {
        set("durationSeconds", (ms as f64 / 1000.0).into());
    }
    if let Some(error) = &status.error {
        set("error", error.clone().into());
    }
    if let Some(url) = &status.callback_url {
        set(
            "callback",
            serde_json::json!({
                "url": url,
                "status": status.callback_state.map_or("waiting", CallbackState::as_str),
                "attempts": status.callback_attempts,
            }),
        );
    }
    json
}
