//! What the async queue keeps durably, and the [`CallStore`] contract of the stores that keep it: the
//! calls, their states and outcomes, the responses kept for callbacks, and the status API's view.
//!
//! The queue holds an `Arc<dyn CallStore>`: [`App::build`](crate::App::build) picks the SQLite store
//! ([`SqliteStore`](super::SqliteStore), one node) or the JetStream one
//! ([`JetStreamStore`](crate::cluster::calls::JetStreamStore), cluster mode) when it starts, so the
//! trait must be object safe. Its methods therefore return a [`BoxFuture`] rather than being
//! `async fn`s (which a trait object cannot hold): one allocation per store call, next to a commit
//! that waits for the disk or a round trip to NATS, and writes arrive batched. The alternatives
//! cost more where it shows: a queue generic over its store would carry the type parameter into
//! `Gateway` and `App`, and an enum of the two stores would make the queue name the cluster.
//!
//! Arguments are owned, so a store can move them where it does the work (the SQLite store hands
//! them to a blocking thread) without copying request bodies.

use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;

/// A call as accepted by `POST /async-function/...`.
#[derive(Debug, Clone)]
pub struct NewCall {
    /// The call id (`X-Call-Id`), unique.
    pub id: String,
    /// The function's key, `name.namespace`.
    pub function: String,
    /// The name as the client wrote it in the URL (for `X-Function-Name`).
    pub called_as: String,
    /// The request's method.
    pub method: String,
    /// The path after the function's name (`/` when none).
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Every request header, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole request body.
    pub body: Vec<u8>,
    /// Where to POST the result, if anywhere.
    pub callback_url: Option<String>,
    /// `X-Start-Time` of the request that queued it (Unix nanoseconds, as text).
    pub start_time: String,
    /// When it was accepted, in Unix milliseconds.
    pub queued_at: u64,
}

/// A call taken from the queue to run now.
#[derive(Debug, Clone)]
pub struct Call {
    /// What was queued.
    pub call: NewCall,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Waiting to run (first time, or for a retry).
    Queued,
    /// Running now.
    Running,
    /// Finished with a status below 400.
    Succeeded,
    /// Finished with another status, retries exhausted or not retried.
    Failed,
    /// Cancelled before it started.
    Cancelled,
}

impl CallState {
    /// The name used in the database and the status API.
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Queued => "queued",
            CallState::Running => "running",
            CallState::Succeeded => "succeeded",
            CallState::Failed => "failed",
            CallState::Cancelled => "cancelled",
        }
    }

    /// The state named `text` (as [`CallState::as_str`] writes it).
    pub(crate) fn parse(text: &str) -> CallState {
        match text {
            "queued" => CallState::Queued,
            "running" => CallState::Running,
            "succeeded" => CallState::Succeeded,
            "cancelled" => CallState::Cancelled,
            _ => CallState::Failed,
        }
    }
}

/// Delivery of a call's callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackState {
    /// Not delivered yet.
    Pending,
    /// The callback URL answered 2xx.
    Delivered,
    /// Given up: attempts exhausted, or the receiver refused it for good.
    Failed,
}

impl CallbackState {
    /// The name used in the database and the status API.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackState::Pending => "pending",
            CallbackState::Delivered => "delivered",
            CallbackState::Failed => "failed",
        }
    }

    /// The state named `text` (as [`CallbackState::as_str`] writes it).
    pub(crate) fn parse(text: &str) -> CallbackState {
        match text {
            "pending" => CallbackState::Pending,
            "delivered" => CallbackState::Delivered,
            _ => CallbackState::Failed,
        }
    }
}

/// How a call's last attempt ended, when it is final.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The function's status (or the gateway's, when it could not run it).
    pub status: u16,
    /// Attempts made.
    pub attempts: u32,
    /// The most attempts its retry policy allowed.
    pub max_attempts: u32,
    /// How long the last attempt took.
    pub duration_ms: u64,
    /// When it ended, Unix milliseconds.
    pub finished_at: u64,
    /// What went wrong, for the status API.
    pub error: Option<String>,
    /// The response, kept only until its callback is delivered.
    pub response: Option<StoredResponse>,
}

impl Finished {
    /// The final state this outcome puts a call in.
    pub fn state(&self) -> CallState {
        if self.status < 400 {
            CallState::Succeeded
        } else {
            CallState::Failed
        }
    }
}

/// What happened to a running call or a callback, for [`CallStore::record`].
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The call waits for a retry at `due`.
    Retry {
        /// The call.
        id: String,
        /// When it may run again, Unix milliseconds.
        due: u64,
        /// The status of the attempt that failed.
        status: u16,
        /// Its retry policy's maximum.
        max_attempts: u32,
        /// What went wrong.
        error: Option<String>,
    },
    /// The call is final (its response kept when a callback is pending).
    Finish {
        /// The call.
        id: String,
        /// How it ended.
        finished: Finished,
    },
    /// A callback was delivered or given up; either drops the stored response.
    Callback {
        /// The call.
        id: String,
        /// Where its delivery is.
        state: CallbackState,
        /// Deliveries tried.
        deliveries: u32,
    },
}

/// A function's response kept for its callback.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    /// The response headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The response body (cut at the gateway's limit).
    pub body: Vec<u8>,
}

/// A callback still to deliver.
#[derive(Debug, Clone)]
pub struct PendingCallback {
    /// The call.
    pub id: String,
    /// Where to.
    pub url: String,
    /// `X-Function-Name`.
    pub called_as: String,
    /// The function's status.
    pub status: u16,
    /// Attempts of the call.
    pub attempts: u32,
    /// Its retry policy's maximum.
    pub max_attempts: u32,
    /// The last attempt's duration.
    pub duration_ms: u64,
    /// Deliveries tried so far.
    pub deliveries: u32,
    /// The stored response.
    pub response: StoredResponse,
}

/// Everything the status API shows about a call.
#[derive(Debug, Clone)]
pub struct CallStatus {
    /// The call id.
    pub id: String,
    /// `name.namespace`.
    pub function: String,
    /// Where it is.
    pub state: CallState,
    /// The last attempt's status, if any ended.
    pub status_code: Option<u16>,
    /// Attempts so far.
    pub attempts: u32,
    /// The retry policy's maximum, once known.
    pub max_attempts: Option<u32>,
    /// Unix milliseconds.
    pub queued_at: u64,
    /// The last attempt's start, Unix milliseconds.
    pub started_at: Option<u64>,
    /// Unix milliseconds.
    pub finished_at: Option<u64>,
    /// When a queued call may run, Unix milliseconds.
    pub due_at: u64,
    /// The last attempt's duration.
    pub duration_ms: Option<u64>,
    /// What went wrong.
    pub error: Option<String>,
    /// The callback URL.
    pub callback_url: Option<String>,
    /// Its delivery.
    pub callback_state: Option<CallbackState>,
    /// Deliveries tried.
    pub callback_attempts: u32,
}

/// What `cancel` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Cancelled; it was queued for this function with a body of this many bytes.
    Cancelled {
        /// `name.namespace`.
        function: String,
        /// Its body size.
        bytes: u64,
    },
    /// Too late (or nothing to do): it is in this state.
    NotQueued(CallState),
    /// No such call.
    NotFound,
}

/// Queued calls of one function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Depth {
    /// Calls waiting.
    pub calls: u64,
    /// Their bodies' bytes.
    pub bytes: u64,
}

/// Now, in Unix milliseconds: the unit of every time a store keeps.
pub(crate) fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// Durable storage of async calls. Every method returns a future that does not block the thread
/// that polls it: a store whose work blocks (SQLite) runs it on tokio's blocking pool.
///
/// The embedded SQLite store implements it; in cluster mode NATS JetStream does.
pub trait CallStore: Send + Sync + std::fmt::Debug + 'static {
    /// Whether other nodes take calls from this store too (then the queue's depth is read from it,
    /// not counted locally).
    fn shared(&self) -> bool {
        false
    }
    /// Stores new calls in one durable commit; for each, whether it was new (an id seen before is
    /// not queued twice).
    fn enqueue(&self, calls: Vec<NewCall>) -> BoxFuture<'_, anyhow::Result<Vec<bool>>>;
    /// Takes up to `limit` of `function`'s calls due by `now`, oldest first, and marks them running.
    fn claim(
        &self,
        function: String,
        now: u64,
        limit: usize,
    ) -> BoxFuture<'_, anyhow::Result<Vec<Call>>>;
    /// When the earliest queued call becomes due.
    fn next_due(&self) -> BoxFuture<'_, anyhow::Result<Option<u64>>>;
    /// Records what happened to running calls and callbacks, in one commit.
    fn record(&self, outcomes: Vec<Outcome>) -> BoxFuture<'_, anyhow::Result<()>>;
    /// Callbacks not delivered yet (after a restart), at most `limit`.
    fn pending_callbacks(
        &self,
        limit: usize,
    ) -> BoxFuture<'_, anyhow::Result<Vec<PendingCallback>>>;
    /// A call's status.
    fn status(&self, id: String) -> BoxFuture<'_, anyhow::Result<Option<CallStatus>>>;
    /// Cancels a queued call.
    fn cancel(&self, id: String, now: u64) -> BoxFuture<'_, anyhow::Result<CancelOutcome>>;
    /// At start-up: calls left running by a previous process (it crashed or was killed) are queued
    /// again, due now. Returns how many.
    fn recover(&self, now: u64) -> BoxFuture<'_, anyhow::Result<u64>>;
    /// Queued calls per function.
    fn depths(&self) -> BoxFuture<'_, anyhow::Result<Vec<(String, Depth)>>>;
    /// Deletes the oldest finished calls beyond `keep` (never one with a callback pending).
    fn prune(&self, keep: u64) -> BoxFuture<'_, anyhow::Result<u64>>;
}
