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
//! Tasks and their owners: the dispatcher and the callback deliveries stop on the queue's shutdown
//! signal (a child of the gateway's [`CancellationToken`], also cancelled by [`AsyncQueue::stop`]);
//! the calls running then finish, and [`AsyncQueue::drain`] waits for them; the writer ends when the
//! last handle to the queue is dropped, after their outcomes.
//!
//! Over 600 lines, to be split: admission, the writer, the dispatcher, retries, callbacks and the
//! metrics lines share the queue's one lock and counts; issue 15 splits them by noun.

mod sqlite;
mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use sqlite::SqliteStore;
pub(crate) use store::now_ms;
pub use store::{
    Call, CallState, CallStatus, CallStore, CallbackState, CancelOutcome, Depth, Finished, NewCall,
    Outcome, PendingCallback, StoredResponse,
};

use crate::http::body::GatewayBody;
use wasmgate_openfaas::headers;
use wasmgate_openfaas::retry::{RetryPolicy, backoff};

/// Async calls running at once, gateway-wide, unless configured (`--async-concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 64;
/// Async calls of one function running at once (`--async-function-concurrency`).
pub const DEFAULT_PER_FUNCTION: usize = 16;
/// Async calls waiting at most (`--async-max-queued`).
pub const DEFAULT_MAX_QUEUED: u64 = 100_000;
/// Bytes of waiting request bodies at most (`--async-max-queued-bytes`).
pub const DEFAULT_MAX_QUEUED_BYTES: u64 = 1024 * 1024 * 1024;
/// The largest async request body, and the most of a response kept for its callback
/// (`--async-max-body`).
pub const DEFAULT_MAX_BODY: u64 = 16 * 1024 * 1024;
/// Finished calls kept for the status API (`--async-keep-finished`).
pub const DEFAULT_KEEP_FINISHED: u64 = 100_000;

/// Writes that arrive together share one commit; at most this many.
const WRITE_BATCH: usize = 256;
/// Writes waiting for the writer (senders wait past it).
const WRITE_BACKLOG: usize = 4096;
/// Callbacks being delivered at once.
const CALLBACKS_IN_FLIGHT: usize = 64;
/// How long one callback delivery may take.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(30);
/// The dispatcher looks at the store at least this often, whatever it was told.
const DISPATCH_IDLE: Duration = Duration::from_secs(1);
/// Finished calls between two prunes of the history.
const PRUNE_EVERY: u64 = 500;

/// The limits of the queue.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Calls running at once, gateway-wide.
    pub concurrency: usize,
    /// Calls of one function running at once.
    pub per_function: usize,
    /// Calls waiting at most (429 past it).
    pub max_queued: u64,
    /// Bytes of waiting bodies at most (429 past it).
    pub max_queued_bytes: u64,
    /// The largest request body accepted (413 past it).
    pub max_body: u64,
    /// The most of a response kept for its callback; the rest is cut.
    pub max_response: usize,
    /// Final calls kept for the status API.
    pub keep_finished: u64,
    /// Deliveries of one callback at most.
    pub callback_attempts: u32,
    /// The first wait between two deliveries.
    pub callback_min_wait: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            concurrency: DEFAULT_CONCURRENCY,
            per_function: DEFAULT_PER_FUNCTION,
            max_queued: DEFAULT_MAX_QUEUED,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_body: DEFAULT_MAX_BODY,
            max_response: DEFAULT_MAX_BODY as usize,
            keep_finished: DEFAULT_KEEP_FINISHED,
            callback_attempts: 8,
            callback_min_wait: Duration::from_secs(1),
        }
    }
}

/// What the queue needs from the gateway: running a call, and a function's retry policy.
pub trait Invoker: Send + Sync + 'static {
    /// Runs the call through the synchronous route's path.
    fn invoke(&self, call: &Call) -> BoxFuture<'static, Response<GatewayBody>>;
    /// The retry policy of `function` (`name.namespace`) now, or the default when it is gone.
    fn retry_policy(&self, function: &str) -> RetryPolicy;
}

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

/// Counts kept in memory so admission, dispatch and metrics need no query.
#[derive(Debug, Default)]
struct Counts {
    queued: HashMap<String, Depth>,
    running: HashMap<String, u64>,
    queued_calls: u64,
    queued_bytes: u64,
    running_calls: u64,
    finished_since_prune: u64,
    /// Counters for `/metrics`, per function.
    enqueued_total: HashMap<String, u64>,
    finished_total: HashMap<(String, &'static str), u64>,
    retries_total: HashMap<String, u64>,
    callbacks_total: HashMap<&'static str, u64>,
}

impl Counts {
    fn add_queued(&mut self, function: &str, bytes: u64) {
        let depth = self.queued.entry(function.to_string()).or_default();
        depth.calls += 1;
        depth.bytes += bytes;
        self.queued_calls += 1;
        self.queued_bytes += bytes;
    }

    fn remove_queued(&mut self, function: &str, bytes: u64) {
        if let Some(depth) = self.queued.get_mut(function) {
            depth.calls = depth.calls.saturating_sub(1);
            depth.bytes = depth.bytes.saturating_sub(bytes);
        }
        self.queued_calls = self.queued_calls.saturating_sub(1);
        self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
    }

    fn running_of(&self, function: &str) -> u64 {
        self.running.get(function).copied().unwrap_or(0)
    }

    fn end_running(&mut self, function: &str) {
        if let Some(running) = self.running.get_mut(function) {
            *running = running.saturating_sub(1);
        }
        self.running_calls = self.running_calls.saturating_sub(1);
    }
}

/// Work for the writer task.
enum Job {
    /// Store a new call; answer whether it was new.
    Enqueue {
        call: NewCall,
        done: oneshot::Sender<Result<bool, EnqueueError>>,
    },
    /// Record an outcome; answer whether it was stored.
    Record {
        outcome: Outcome,
        done: oneshot::Sender<bool>,
    },
    /// Delete the oldest finished calls beyond `keep`; nobody waits for it.
    Prune { keep: u64 },
}

struct Inner {
    store: Arc<dyn CallStore>,
    config: QueueConfig,
    counts: Mutex<Counts>,
    writer: mpsc::Sender<Job>,
    wake: Notify,
    /// No call is taken or started once cancelled.
    stopping: CancellationToken,
    stopped: Notify,
    callbacks: Semaphore,
    client: wasmgate_net::HttpClient,
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
    /// once `stopping` is cancelled.
    pub async fn open(
        store: Arc<dyn CallStore>,
        config: QueueConfig,
        stopping: CancellationToken,
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
        let (writer, requests) = mpsc::channel(WRITE_BACKLOG);
        // The writer holds the store, not the queue: it ends when the last handle is dropped.
        tokio::spawn(write_loop(store.clone(), requests));
        let inner = Arc::new(Inner {
            store,
            config,
            counts: Mutex::new(counts),
            writer,
            wake: Notify::new(),
            stopping,
            stopped: Notify::new(),
            callbacks: Semaphore::new(CALLBACKS_IN_FLIGHT),
            client: wasmgate_net::http_client(Duration::from_secs(10)),
        });
        Ok(AsyncQueue { inner })
    }

    /// The limits.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// Starts the dispatcher (and resumes undelivered callbacks), running calls with `invoker`.
    pub fn start(&self, invoker: Arc<dyn Invoker>) {
        let queue = self.clone();
        tokio::spawn(async move { queue.dispatch(invoker).await });
        let queue = self.clone();
        tokio::spawn(async move {
            let stopping = queue.inner.stopping.clone();
            tokio::select! {
                () = stopping.cancelled() => {}
                () = queue.resume_callbacks() => {}
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
            let stopped = self.inner.stopped.notified();
            if self.lock().running_calls == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, stopped).await.is_err() {
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
        self.inner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
        let (done, answer) = oneshot::channel();
        let result = match self.inner.writer.send(Job::Enqueue { call, done }).await {
            Ok(()) => answer
                .await
                .unwrap_or_else(|_| Err(EnqueueError::Store("the writer stopped".into()))),
            Err(_) => Err(EnqueueError::Store("the writer stopped".into())),
        };
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

    /// Records an outcome through the writer (outcomes that arrive together share a commit).
    async fn record(&self, outcome: Outcome) -> bool {
        let (done, answer) = oneshot::channel();
        if self
            .inner
            .writer
            .send(Job::Record { outcome, done })
            .await
            .is_err()
        {
            return false;
        }
        answer.await.unwrap_or(false)
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

    async fn dispatch(self, invoker: Arc<dyn Invoker>) {
        let config = self.inner.config.clone();
        let mut turn = 0usize;
        loop {
            let woken = self.inner.wake.notified();
            if self.inner.stopping.is_cancelled() {
                return;
            }
            if self.inner.store.shared() {
                // Other nodes queue calls too: the store knows what waits.
                if let Ok(depths) = self.inner.store.depths().await {
                    let mut counts = self.lock();
                    counts.queued_calls = depths.iter().map(|(_, d)| d.calls).sum();
                    counts.queued = depths.into_iter().collect();
                }
            }
            // Functions with waiting calls, in a rotating order so each gets its turn.
            let (mut functions, free) = {
                let counts = self.lock();
                let free = config
                    .concurrency
                    .saturating_sub(usize::try_from(counts.running_calls).unwrap_or(usize::MAX));
                let functions: Vec<(String, usize)> = counts
                    .queued
                    .iter()
                    .filter(|(_, depth)| depth.calls > 0)
                    .map(|(function, _)| {
                        let room = (config.per_function as u64)
                            .saturating_sub(counts.running_of(function));
                        (
                            function.clone(),
                            usize::try_from(room).unwrap_or(usize::MAX),
                        )
                    })
                    .filter(|(_, room)| *room > 0)
                    .collect();
                (functions, free)
            };
            // `more`: a function gave every call asked for, so it may have more; `short`: one had
            // fewer due calls than asked (the rest wait for a retry time).
            let (mut more, mut short, mut left) = (false, false, free);
            if free > 0 && !functions.is_empty() {
                functions.sort();
                turn = turn.wrapping_add(1);
                let shift = turn % functions.len();
                functions.rotate_left(shift);
                // A fair share per function first; what is left goes in the same order.
                let share = left.div_ceil(functions.len()).max(1);
                for (function, room) in &functions {
                    if left == 0 {
                        break;
                    }
                    let take = share.min(*room).min(left);
                    let claimed = self
                        .inner
                        .store
                        .claim(function.clone(), now_ms(), take)
                        .await;
                    let calls = match claimed {
                        Ok(calls) => calls,
                        Err(error) => {
                            tracing::error!(error = %format!("{error:#}"), "the async queue could not take calls");
                            break;
                        }
                    };
                    left -= calls.len();
                    if calls.len() == take {
                        more = true;
                    } else {
                        short = true;
                    }
                    for call in calls {
                        {
                            let mut counts = self.lock();
                            counts.remove_queued(&call.call.function, call.call.body.len() as u64);
                            *counts
                                .running
                                .entry(call.call.function.clone())
                                .or_default() += 1;
                            counts.running_calls += 1;
                        }
                        let queue = self.clone();
                        let invoker = invoker.clone();
                        tokio::spawn(async move { queue.run(invoker, call).await });
                    }
                }
            }
            if left > 0 && more {
                // Room left and calls to fill it: go round again at once.
                continue;
            }
            // Sleep until woken (a call queued or finished), or until the next retry is due when
            // some calls are waiting for one.
            let mut wait = DISPATCH_IDLE;
            if short && let Ok(Some(due)) = self.inner.store.next_due().await {
                let now = now_ms();
                if due > now {
                    wait = wait.min(Duration::from_millis(due - now));
                }
            }
            tokio::select! {
                biased;
                () = self.inner.stopping.cancelled() => return,
                _ = tokio::time::timeout(wait, woken) => {}
            }
        }
    }

    async fn run(self, invoker: Arc<dyn Invoker>, call: Call) {
        let started = Instant::now();
        let id = call.call.id.clone();
        let function = call.call.function.clone();
        let response = invoker.invoke(&call).await;
        let (parts, body) = response.into_parts();
        let status = parts.status.as_u16();
        // Read the whole response (the function runs until its body ends), keeping at most the
        // limit when a callback needs it.
        let keep = if call.call.callback_url.is_some() {
            self.inner.config.max_response
        } else {
            0
        };
        let (body, cut, body_error) = read_bounded(body, keep).await;
        let duration = started.elapsed();
        let policy = invoker.retry_policy(&function);
        let error = body_error.or_else(|| (status >= 400).then(|| format!("status {status}")));

        if policy.codes.contains(&status) && call.attempts < policy.attempts {
            let wait = policy.backoff(call.attempts);
            let due = now_ms() + u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            tracing::info!(function = %function, call_id = %id, status, attempt = call.attempts,
                of = policy.attempts, wait = ?wait, "async call will be retried");
            let outcome = Outcome::Retry {
                id: id.clone(),
                due,
                status,
                max_attempts: policy.attempts,
                error: error.clone(),
            };
            if !self.record(outcome).await {
                tracing::error!(call_id = %id, "could not queue the retry");
            }
            let mut counts = self.lock();
            counts.end_running(&function);
            counts.add_queued(&function, call.call.body.len() as u64);
            *counts.retries_total.entry(function.clone()).or_default() += 1;
        } else {
            let mut headers: Vec<(String, Vec<u8>)> = parts
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
                .collect();
            if cut {
                headers.push(("x-wasmgate-truncated".into(), b"true".to_vec()));
            }
            let finished = Finished {
                status,
                attempts: call.attempts,
                max_attempts: policy.attempts,
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                finished_at: now_ms(),
                error,
                response: call.call.callback_url.is_some().then(|| StoredResponse {
                    headers,
                    body: body.to_vec(),
                }),
            };
            let outcome = Outcome::Finish {
                id: id.clone(),
                finished: finished.clone(),
            };
            let saved_ok = self.record(outcome).await;
            if !saved_ok {
                tracing::error!(call_id = %id, "could not record the end of an async call");
            }
            let prune = {
                let mut counts = self.lock();
                counts.end_running(&function);
                let state = if status < 400 {
                    CallState::Succeeded
                } else {
                    CallState::Failed
                };
                *counts
                    .finished_total
                    .entry((function.clone(), state.as_str()))
                    .or_default() += 1;
                counts.finished_since_prune += 1;
                let prune = counts.finished_since_prune >= PRUNE_EVERY;
                if prune {
                    counts.finished_since_prune = 0;
                }
                prune
            };
            if prune {
                let keep = self.inner.config.keep_finished;
                let _ = self.inner.writer.send(Job::Prune { keep }).await;
            }
            if let (Some(url), Some(response), true) =
                (&call.call.callback_url, finished.response, saved_ok)
            {
                let pending = PendingCallback {
                    id: id.clone(),
                    url: url.clone(),
                    called_as: call.call.called_as.clone(),
                    status,
                    attempts: call.attempts,
                    max_attempts: policy.attempts,
                    duration_ms: finished.duration_ms,
                    deliveries: 0,
                    response,
                };
                let queue = self.clone();
                tokio::spawn(async move { queue.deliver(pending).await });
            }
        }
        self.inner.wake.notify_one();
        self.inner.stopped.notify_waiters();
    }

    async fn resume_callbacks(self) {
        let pending = match self.inner.store.pending_callbacks(100_000).await {
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
            let queue = self.clone();
            tokio::spawn(async move { queue.deliver(callback).await });
        }
    }

    /// POSTs a call's response to its callback URL until delivered or given up.
    async fn deliver(self, mut callback: PendingCallback) {
        // Left pending when the gateway stops first: the next start delivers it.
        let _permit = tokio::select! {
            biased;
            permit = self.inner.callbacks.acquire() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = self.inner.stopping.cancelled() => return,
        };
        let config = &self.inner.config;
        let state = loop {
            callback.deliveries += 1;
            let outcome = self.post_callback(&callback).await;
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
            if permanent || callback.deliveries >= config.callback_attempts {
                tracing::warn!(call_id = %callback.id, url = %callback.url, reason = %reason,
                    deliveries = callback.deliveries, "giving up on a callback");
                break CallbackState::Failed;
            }
            let wait = backoff(
                config.callback_min_wait,
                Duration::from_secs(60),
                callback.deliveries,
            );
            tracing::info!(call_id = %callback.id, reason = %reason, wait = ?wait,
                "callback failed; it will be retried");
            tokio::select! {
                biased;
                // Left pending: the next start delivers it.
                () = self.inner.stopping.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        };
        {
            let mut counts = self.lock();
            *counts.callbacks_total.entry(state.as_str()).or_default() += 1;
        }
        let outcome = Outcome::Callback {
            id: callback.id.clone(),
            state,
            deliveries: callback.deliveries,
        };
        if !self.record(outcome).await {
            tracing::error!(call_id = %callback.id, "could not record a callback's delivery");
        }
    }

    async fn post_callback(&self, callback: &PendingCallback) -> Result<StatusCode, String> {
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
        let request = request
            .body(Full::new(Bytes::from(callback.response.body.clone())))
            .map_err(|e| format!("building the callback: {e}"))?;
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

    /// The queue's lines for `/metrics`.
    pub fn render_metrics(&self, out: &mut String) {
        use crate::observe::prometheus;
        let counts = self.lock();
        let mut gauge = |name: &str, help: &str, values: Vec<(String, u64)>| {
            prometheus::header(out, name, "gauge", help);
            for (function, value) in values {
                prometheus::sample(out, name, &format!("function_name=\"{function}\""), value);
            }
        };
        let mut queued: Vec<_> = counts
            .queued
            .iter()
            .map(|(f, d)| (f.clone(), d.calls))
            .collect();
        queued.sort();
        gauge(
            "wasmgate_async_queue_depth",
            "Async calls waiting to run (first time or for a retry).",
            queued,
        );
        let mut running: Vec<_> = counts
            .running
            .iter()
            .map(|(f, n)| (f.clone(), *n))
            .collect();
        running.sort();
        gauge(
            "wasmgate_async_running",
            "Async calls running now.",
            running,
        );
        let name = "wasmgate_async_queue_bytes";
        let help = "Bytes of request bodies waiting in the async queue.";
        prometheus::header(out, name, "gauge", help);
        prometheus::sample(out, name, "", counts.queued_bytes);
        let mut counter = |name: &str, help: &str, mut values: Vec<(String, u64)>| {
            values.sort();
            prometheus::header(out, name, "counter", help);
            for (labels, value) in values {
                prometheus::sample(out, name, &labels, value);
            }
        };
        counter(
            "wasmgate_async_enqueued_total",
            "Async calls accepted.",
            counts
                .enqueued_total
                .iter()
                .map(|(f, n)| (format!("function_name=\"{f}\""), *n))
                .collect(),
        );
        counter(
            "wasmgate_async_finished_total",
            "Async calls that reached a final state.",
            counts
                .finished_total
                .iter()
                .map(|((f, s), n)| (format!("function_name=\"{f}\",state=\"{s}\""), *n))
                .collect(),
        );
        counter(
            "wasmgate_async_retries_total",
            "Async calls queued again for a retry.",
            counts
                .retries_total
                .iter()
                .map(|(f, n)| (format!("function_name=\"{f}\""), *n))
                .collect(),
        );
        counter(
            "wasmgate_async_callbacks_total",
            "Callbacks delivered or given up.",
            counts
                .callbacks_total
                .iter()
                .map(|(s, n)| (format!("result=\"{s}\""), *n))
                .collect(),
        );
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

/// Headers a callback does not copy from the function's answer: hop-by-hop ones, and those the
/// callback request sets itself.
fn is_hop_or_length(name: &HeaderName) -> bool {
    wasmgate_openfaas::headers::HOP_BY_HOP.contains(name)
        || name == http::header::CONTENT_LENGTH
        || name == http::header::HOST
}

/// Reads a whole body, keeping at most `keep` bytes. Returns what was kept, whether it was cut, and
/// the error the body ended with, if any.
async fn read_bounded(mut body: GatewayBody, keep: usize) -> (Bytes, bool, Option<String>) {
    let mut kept = Vec::new();
    let mut cut = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    let room = keep.saturating_sub(kept.len());
                    if data.len() > room {
                        cut = true;
                    }
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Err(error) => return (Bytes::from(kept), cut, Some(error.to_string())),
        }
    }
    (Bytes::from(kept), cut, None)
}

/// The writer task: takes jobs as they come and commits those waiting together, new calls in one
/// durable commit and outcomes in another. It holds the store, not the queue, so it ends when the
/// last handle to the queue (and with it the sender) is dropped, after the jobs sent before. It
/// does not stop on the shutdown signal: the calls still running then record their outcomes
/// through it while the queue drains.
async fn write_loop(store: Arc<dyn CallStore>, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH {
            match jobs.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut calls = Vec::new();
        let mut call_answers = Vec::new();
        let mut outcomes = Vec::new();
        let mut outcome_answers = Vec::new();
        let mut prune = None;
        for job in batch {
            match job {
                Job::Enqueue { call, done } => {
                    calls.push(call);
                    call_answers.push(done);
                }
                Job::Record { outcome, done } => {
                    outcomes.push(outcome);
                    outcome_answers.push(done);
                }
                Job::Prune { keep } => prune = Some(keep),
            }
        }
        if !calls.is_empty() {
            match store.enqueue(calls).await {
                Ok(inserted) => {
                    for (done, new) in call_answers.into_iter().zip(inserted) {
                        let _ = done.send(Ok(new));
                    }
                }
                Err(error) => {
                    let text = format!("{error:#}");
                    tracing::error!(error = %text, "the async queue could not store calls");
                    for done in call_answers {
                        let _ = done.send(Err(EnqueueError::Store(text.clone())));
                    }
                }
            }
        }
        if !outcomes.is_empty() {
            let stored = match store.record(outcomes).await {
                Ok(()) => true,
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "the async queue could not record outcomes");
                    false
                }
            };
            for done in outcome_answers {
                let _ = done.send(stored);
            }
        }
        if let Some(keep) = prune
            && let Err(error) = store.prune(keep).await
        {
            tracing::warn!(error = %format!("{error:#}"), "the async queue could not prune its history");
        }
    }
}
