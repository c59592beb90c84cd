//! The async queue on NATS JetStream (cluster mode): every node takes calls from one shared queue.
//!
//! - **Calls** are messages of the work-queue stream `WASMGATE_CALLS`, subject
//!   `wasmgate.calls.<name.namespace>`, message id = call id (JetStream drops a duplicate within its
//!   two-minute window; the status bucket catches later ones).
//! - **Taking calls**: one durable pull consumer per function, shared by every node (work-queue
//!   streams need consumers whose filters do not overlap; one per function also keeps the
//!   per-function bound of each node exact). A node fetches what it has room for.
//! - **While a call runs** its node acknowledges progress every [`PROGRESS_EVERY`], so a long call is
//!   never handed to another node; if the node dies, the message is redelivered after [`ACK_WAIT`]
//!   to any node (at least once).
//! - **Retries** are negative acknowledgements with a delay; the delivery count is the attempt count.
//!   A call that ends failed is also published to `WASMGATE_DEAD` (`wasmgate.dead.<function>`), the
//!   dead-letter stream, with its last status.
//! - **Callbacks**: the message stays unacknowledged (progress continues) until its callback is
//!   delivered or given up, so a node dying before that lets another node run the call and call back.
//! - **Status and cancel** live in the key-value bucket `wasmgate-calls` (one record per call,
//!   expiring after [`STATUS_TTL`]); cancel is a compare-and-set from `queued` to `cancelled`, and a
//!   node that then receives the call drops it.
//!
//! Every [`CallStore`] method is a future that awaits JetStream on the caller's task; nothing here
//! blocks a thread. The task that keeps a held call alive is owned by its [`Held`] entry: it stops
//! when the call is released, or when the store is dropped.
//!
//! Over 600 lines: one `CallStore` over JetStream (stream, consumers, progress acks, delayed naks,
//! dead letters, status records); no smaller part of it stands alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, AckKind, consumer, kv, stream};
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::cluster::retrying;

use crate::queue::{
    Call, CallState, CallStatus, CallStore, CallbackState, CancelOutcome, Depth, NewCall, Outcome,
    PendingCallback, now_ms,
};

/// The stream of queued calls.
pub const CALLS_STREAM: &str = "WASMGATE_CALLS";
/// The stream of calls that ended failed.
pub const DEAD_STREAM: &str = "WASMGATE_DEAD";
/// The bucket of call status records.
pub const STATUS_BUCKET: &str = "wasmgate-calls";
/// How long a node may hold a call without a sign of life before JetStream gives it to another.
pub const ACK_WAIT: Duration = Duration::from_secs(10);
/// How often a node running a call says it is still on it.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// How long a call's status is kept after its last change.
pub const STATUS_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest a fetch of calls may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const CALLS_SUBJECT: &str = "wasmgate.calls";
const DEAD_SUBJECT: &str = "wasmgate.dead";
/// Failed calls kept in the dead-letter stream.
const DEAD_KEEP: i64 = 100_000;
/// Bytes the dead-letter stream keeps at most (each message carries the call's body); past it, and
/// past [`DEAD_MAX_AGE`], the oldest go first.
pub const DEAD_MAX_BYTES: i64 = 1 << 30;
/// How long a failed call stays in the dead-letter stream.
pub const DEAD_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Bytes the call-status bucket keeps at most; past it the oldest records go first (their age is
/// bounded by [`STATUS_TTL`] too).
pub const STATUS_MAX_BYTES: i64 = 256 << 20;

/// A call as it travels in a message.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    id: String,
    function: String,
    called_as: String,
    method: String,
    path: String,
    query: Option<String>,
    /// `name`, base64 value.
    headers: Vec<(String, String)>,
    /// base64
    body: String,
    callback_url: Option<String>,
    start_time: String,
    queued_at: u64,
}

impl Wire {
    fn from_call(call: &NewCall) -> Wire {
        let b64 = base64::engine::general_purpose::STANDARD;
        Wire {
            id: call.id.clone(),
            function: call.function.clone(),
            called_as: call.called_as.clone(),
            method: call.method.clone(),
            path: call.path.clone(),
            query: call.query.clone(),
            headers: call
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), b64.encode(v)))
                .collect(),
            body: b64.encode(&call.body),
            callback_url: call.callback_url.clone(),
            start_time: call.start_time.clone(),
            queued_at: call.queued_at,
        }
    }

    fn into_call(self) -> anyhow::Result<NewCall> {
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(NewCall {
            id: self.id,
            function: self.function,
            called_as: self.called_as,
            method: self.method,
            path: self.path,
            query: self.query,
            headers: self
                .headers
                .into_iter()
                .map(|(n, v)| Ok((n, b64.decode(v)?)))
                .collect::<Result<_, base64::DecodeError>>()?,
            body: b64.decode(self.body)?,
            callback_url: self.callback_url,
            start_time: self.start_time,
            queued_at: self.queued_at,
        })
    }
}

/// A call's status record in the bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    function: String,
    state: String,
    status_code: Option<u16>,
    attempts: u32,
    max_attempts: Option<u32>,
    queued_at: u64,
    started_at: Option<u64>,
    finished_at: Option<u64>,
    due_at: u64,
    duration_ms: Option<u64>,
    error: Option<String>,
    callback_url: Option<String>,
    callback_state: Option<String>,
    callback_attempts: u32,
    body_bytes: u64,
}

/// A call this node holds: its message (to acknowledge) and the task that keeps it alive, which
/// ends with it.
struct Held {
    message: Arc<jetstream::Message>,
    progress: tokio::task::JoinHandle<()>,
    call: NewCall,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.progress.abort();
    }
}

/// The JetStream [`CallStore`].
pub struct JetStreamStore {
    js: jetstream::Context,
    calls: stream::Stream,
    status: kv::Store,
    consumers: Mutex<HashMap<String, consumer::PullConsumer>>,
    held: Mutex<HashMap<String, Held>>,
}

impl std::fmt::Debug for JetStreamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamStore").finish_non_exhaustive()
    }
}

/// Sets the stream `name`'s byte bound (and its age bound, when given) where they differ, with the
/// oldest messages discarded past them.
async fn bound_stream(
    js: &jetstream::Context,
    name: &str,
    max_bytes: i64,
    max_age: Option<Duration>,
) -> anyhow::Result<()> {
    let mut stream = js
        .get_stream(name)
        .await
        .with_context(|| format!("opening the stream {name}"))?;
    let mut config = stream
        .info()
        .await
        .with_context(|| format!("reading the stream {name}"))?
        .config
        .clone();
    let want_age = max_age.unwrap_or(config.max_age);
    if config.max_bytes == max_bytes
        && config.max_age == want_age
        && config.discard == stream::DiscardPolicy::Old
    {
        return Ok(());
    }
    config.max_bytes = max_bytes;
    config.max_age = want_age;
    config.discard = stream::DiscardPolicy::Old;
    js.update_stream(&config)
        .await
        .with_context(|| format!("bounding the stream {name}"))?;
    Ok(())
}

impl JetStreamStore {
    /// Makes sure the streams and the bucket exist; `max_queued` bounds the calls stream.
    pub async fn open(
        js: jetstream::Context,
        max_queued: u64,
        replicas: usize,
    ) -> anyhow::Result<JetStreamStore> {
        let calls = retrying("creating the calls stream", || async {
            js.get_or_create_stream(stream::Config {
                name: CALLS_STREAM.to_string(),
                description: Some("wasmgate async calls".into()),
                subjects: vec![format!("{CALLS_SUBJECT}.>")],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                max_messages: i64::try_from(max_queued).unwrap_or(i64::MAX),
                discard: stream::DiscardPolicy::New,
                duplicate_window: Duration::from_secs(120),
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .context("creating the calls stream")
        })
        .await?;
        retrying("creating the dead-letter stream", || async {
            js.get_or_create_stream(stream::Config {
                name: DEAD_STREAM.to_string(),
                description: Some("wasmgate async calls that ended failed".into()),
                subjects: vec![format!("{DEAD_SUBJECT}.>")],
                storage: stream::StorageType::File,
                max_messages: DEAD_KEEP,
                max_bytes: DEAD_MAX_BYTES,
                max_age: DEAD_MAX_AGE,
                discard: stream::DiscardPolicy::Old,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .context("creating the dead-letter stream")
        })
        .await?;
        let status = retrying("creating the call status bucket", || {
            crate::cluster::key_value_with(
                &js,
                STATUS_BUCKET,
                "wasmgate async call status",
                STATUS_TTL,
                stream::StorageType::File,
                replicas,
            )
        })
        .await?;
        // Streams made by an older gateway lack some of these bounds: set them.
        retrying("bounding the dead-letter stream", || {
            bound_stream(&js, DEAD_STREAM, DEAD_MAX_BYTES, Some(DEAD_MAX_AGE))
        })
        .await?;
        let status_stream = format!("KV_{STATUS_BUCKET}");
        retrying("bounding the call status bucket", || {
            bound_stream(&js, &status_stream, STATUS_MAX_BYTES, None)
        })
        .await?;
        Ok(JetStreamStore {
            js,
            calls,
            status,
            consumers: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        })
    }

    async fn consumer(&self, function: &str) -> anyhow::Result<consumer::PullConsumer> {
        if let Some(consumer) = self
            .consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(function)
        {
            return Ok(consumer.clone());
        }
        let name = format!(
            "calls-{}",
            &hex::encode(Sha256::digest(function.as_bytes()))[..16]
        );
        let consumer: consumer::PullConsumer = self
            .calls
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: format!("{CALLS_SUBJECT}.{function}"),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("the consumer of {function}"))?;
        self.consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(function.to_string(), consumer.clone());
        Ok(consumer)
    }

    async fn record(&self, id: &str) -> anyhow::Result<Option<(Record, u64)>> {
        match self.status.entry(id).await? {
            Some(entry) if entry.operation == kv::Operation::Put => Ok(Some((
                serde_json::from_slice(&entry.value)?,
                entry.revision,
            ))),
            _ => Ok(None),
        }
    }

    async fn write(&self, id: &str, record: &Record) -> anyhow::Result<()> {
        self.status
            .put(id, Bytes::from(serde_json::to_vec(record)?))
            .await?;
        Ok(())
    }

    /// Changes a call's record with `change`, which may see the current one.
    async fn update(&self, id: &str, change: impl Fn(&mut Record)) -> anyhow::Result<()> {
        if let Some((mut record, _)) = self.record(id).await? {
            change(&mut record);
            self.write(id, &record).await?;
        }
        Ok(())
    }

    fn release(&self, id: &str) -> Option<Held> {
        let held = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)?;
        held.progress.abort();
        Some(held)
    }

    /// Fetches up to `limit` of `function`'s calls, holds each (status `running`, progress acks) and
    /// adds it to `taken` at once, so a fetch that stops half-way (an error, or the caller's
    /// timeout) loses none of the calls it holds.
    async fn take(
        &self,
        function: &str,
        now: u64,
        limit: usize,
        taken: &mut Vec<Call>,
    ) -> anyhow::Result<()> {
        let consumer = self.consumer(function).await?;
        let mut batch = consumer
            .fetch()
            .max_messages(limit)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .context("fetching calls")?;
        while let Some(message) = batch.next().await {
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, "fetching a call failed");
                    break;
                }
            };
            let attempts = message
                .info()
                .map(|info| u32::try_from(info.delivered).unwrap_or(u32::MAX))
                .unwrap_or(1);
            let wire: Wire = match serde_json::from_slice(&message.payload) {
                Ok(wire) => wire,
                Err(error) => {
                    tracing::error!(%error, "an unreadable call; dropped");
                    let _ = message.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            let call = wire.into_call()?;
            let record = self.record(&call.id).await?;
            if let Some((record, _)) = &record
                && record.state == "cancelled"
            {
                let _ = message.ack().await;
                continue;
            }
            let mut record = match record {
                Some((record, _)) => record,
                None => new_record(&call),
            };
            record.state = "running".into();
            record.attempts = attempts;
            record.started_at = Some(now);
            self.write(&call.id, &record).await?;
            let message = Arc::new(message);
            let alive = message.clone();
            let progress = tokio::spawn(async move {
                let mut tick = tokio::time::interval(PROGRESS_EVERY);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if alive.ack_with(AckKind::Progress).await.is_err() {
                        tracing::warn!("could not tell JetStream a call is still running");
                    }
                }
            });
            self.held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    call.id.clone(),
                    Held {
                        message,
                        progress,
                        call: call.clone(),
                    },
                );
            taken.push(Call { call, attempts });
        }
        Ok(())
    }

    async fn apply(&self, outcome: &Outcome) -> anyhow::Result<()> {
        match outcome {
            Outcome::Retry {
                id,
                due,
                status,
                max_attempts,
                error,
            } => {
                let delay = Duration::from_millis(due.saturating_sub(now_ms()));
                self.update(id, |r| {
                    r.state = "queued".into();
                    r.status_code = Some(*status);
                    r.max_attempts = Some(*max_attempts);
                    r.due_at = *due;
                    r.error = error.clone();
                })
                .await?;
                if let Some(held) = self.release(id) {
                    held.message
                        .ack_with(AckKind::Nak(Some(delay)))
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
            }
            Outcome::Finish { id, finished } => {
                let state = finished.state();
                self.update(id, |r| {
                    r.state = state.as_str().into();
                    r.status_code = Some(finished.status);
                    r.attempts = finished.attempts;
                    r.max_attempts = Some(finished.max_attempts);
                    r.duration_ms = Some(finished.duration_ms);
                    r.finished_at = Some(finished.finished_at);
                    r.error = finished.error.clone();
                    if r.callback_url.is_some() {
                        r.callback_state = Some(CallbackState::Pending.as_str().into());
                    }
                })
                .await?;
                if state == CallState::Failed {
                    let held = self
                        .held
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(id)
                        .map(|h| h.call.clone());
                    if let Some(call) = held {
                        let dead = serde_json::json!({
                            "call": Wire::from_call(&call),
                            "statusCode": finished.status,
                            "attempts": finished.attempts,
                            "error": finished.error,
                        });
                        self.js
                            .publish(
                                format!("{DEAD_SUBJECT}.{}", call.function),
                                Bytes::from(dead.to_string()),
                            )
                            .await?
                            .await?;
                    }
                }
                // With a callback to deliver, the message stays held until it is delivered.
                if finished.response.is_none()
                    && let Some(held) = self.release(id)
                {
                    held.message
                        .ack()
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
            }
            Outcome::Callback {
                id,
                state,
                deliveries,
            } => {
                self.update(id, |r| {
                    r.callback_state = Some(state.as_str().into());
                    r.callback_attempts = *deliveries;
                })
                .await?;
                if let Some(held) = self.release(id) {
                    held.message
                        .ack()
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
            }
        }
        Ok(())
    }
    /// Publishes calls; for each, whether it was new. A call whose id was seen before (its status
    /// is kept) is not published again; JetStream drops a repeat within its duplicate window.
    async fn publish(&self, calls: &[NewCall]) -> anyhow::Result<Vec<bool>> {
        let mut acks = Vec::with_capacity(calls.len());
        for call in calls {
            if self.record(&call.id).await?.is_some() {
                acks.push(None);
                continue;
            }
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", call.id.as_str());
            let ack = self
                .js
                .publish_with_headers(
                    format!("{CALLS_SUBJECT}.{}", call.function),
                    headers,
                    Bytes::from(serde_json::to_vec(&Wire::from_call(call))?),
                )
                .await
                .context("queueing the call")?;
            acks.push(Some((ack, call)));
        }
        let mut new = Vec::with_capacity(acks.len());
        for ack in acks {
            new.push(match ack {
                None => false,
                Some((ack, call)) => {
                    let fresh = !ack.await.context("storing the call")?.duplicate;
                    if fresh {
                        self.write(&call.id, &new_record(call)).await?;
                    }
                    fresh
                }
            });
        }
        Ok(new)
    }
}

fn new_record(call: &NewCall) -> Record {
    Record {
        function: call.function.clone(),
        state: "queued".into(),
        status_code: None,
        attempts: 0,
        max_attempts: None,
        queued_at: call.queued_at,
        started_at: None,
        finished_at: None,
        due_at: call.queued_at,
        duration_ms: None,
        error: None,
        callback_url: call.callback_url.clone(),
        callback_state: None,
        callback_attempts: 0,
        body_bytes: call.body.len() as u64,
    }
}

impl CallStore for JetStreamStore {
    fn shared(&self) -> bool {
        true
    }

    fn enqueue(&self, calls: Vec<NewCall>) -> BoxFuture<'_, anyhow::Result<Vec<bool>>> {
        Box::pin(async move { retrying("queueing calls", || self.publish(&calls)).await })
    }

    fn claim(
        &self,
        function: String,
        now: u64,
        limit: usize,
    ) -> BoxFuture<'_, anyhow::Result<Vec<Call>>> {
        // A fetch sent while the NATS cluster elects a leader may never be answered: give up on it
        // rather than stall the queue. A message fetched but not yet held comes back after the ack
        // wait; the calls already held (progress acks keep them here) are returned, to run here.
        Box::pin(async move {
            let mut taken = Vec::new();
            let fetched =
                tokio::time::timeout(FETCH_TIMEOUT, self.take(&function, now, limit, &mut taken))
                    .await;
            match fetched {
                Ok(Ok(())) => Ok(taken),
                Ok(Err(error)) if taken.is_empty() => Err(error),
                Ok(Err(error)) => {
                    tracing::warn!(function = %function, error = %format!("{error:#}"),
                        calls = taken.len(), "fetching calls failed half-way; running those taken");
                    Ok(taken)
                }
                Err(_) => {
                    tracing::warn!(function = %function, calls = taken.len(),
                        "fetching calls timed out; trying again");
                    Ok(taken)
                }
            }
        })
    }

    fn next_due(&self) -> BoxFuture<'_, anyhow::Result<Option<u64>>> {
        // JetStream redelivers a delayed call itself.
        Box::pin(async { Ok(None) })
    }

    fn record(&self, outcomes: Vec<Outcome>) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            for outcome in &outcomes {
                retrying("recording an outcome", || self.apply(outcome)).await?;
            }
            Ok(())
        })
    }

    fn pending_callbacks(
        &self,
        _limit: usize,
    ) -> BoxFuture<'_, anyhow::Result<Vec<PendingCallback>>> {
        // A callback not delivered leaves its call unacknowledged: JetStream runs it again.
        Box::pin(async { Ok(Vec::new()) })
    }

    fn status(&self, id: String) -> BoxFuture<'_, anyhow::Result<Option<CallStatus>>> {
        Box::pin(async move {
            let record = retrying("reading a call's status", || self.record(&id)).await?;
            Ok(record.map(|(r, _)| CallStatus {
                id,
                function: r.function,
                state: CallState::parse(&r.state),
                status_code: r.status_code,
                attempts: r.attempts,
                max_attempts: r.max_attempts,
                queued_at: r.queued_at,
                started_at: r.started_at,
                finished_at: r.finished_at,
                due_at: r.due_at,
                duration_ms: r.duration_ms,
                error: r.error,
                callback_url: r.callback_url,
                callback_state: r.callback_state.as_deref().map(CallbackState::parse),
                callback_attempts: r.callback_attempts,
            }))
        })
    }

    fn cancel(&self, id: String, now: u64) -> BoxFuture<'_, anyhow::Result<CancelOutcome>> {
        Box::pin(async move {
            let Some((mut record, revision)) = self.record(&id).await? else {
                return Ok(CancelOutcome::NotFound);
            };
            if record.state != "queued" {
                return Ok(CancelOutcome::NotQueued(CallState::parse(&record.state)));
            }
            record.state = "cancelled".into();
            record.finished_at = Some(now);
            let value = Bytes::from(serde_json::to_vec(&record)?);
            match self.status.update(&id, value, revision).await {
                Ok(_) => Ok(CancelOutcome::Cancelled {
                    function: record.function,
                    bytes: record.body_bytes,
                }),
                // Taken meanwhile.
                Err(_) => {
                    let state = self
                        .record(&id)
                        .await?
                        .map_or(CallState::Running, |(r, _)| CallState::parse(&r.state));
                    Ok(CancelOutcome::NotQueued(state))
                }
            }
        })
    }

    fn recover(&self, _now: u64) -> BoxFuture<'_, anyhow::Result<u64>> {
        // Calls held by a node that stopped come back by themselves after the ack wait.
        Box::pin(async { Ok(0) })
    }

    fn depths(&self) -> BoxFuture<'_, anyhow::Result<Vec<(String, Depth)>>> {
        Box::pin(async move {
            let stream = self.calls.clone();
            let mut subjects = stream
                .info_with_subjects(format!("{CALLS_SUBJECT}.>"))
                .await
                .context("reading the queue's depth")?;
            let mut depths = Vec::new();
            while let Some(entry) = subjects.next().await {
                let (subject, count) = entry.context("reading the queue's depth")?;
                if let Some(function) = subject.strip_prefix(&format!("{CALLS_SUBJECT}.")) {
                    depths.push((
                        function.to_string(),
                        Depth {
                            calls: count as u64,
                            bytes: 0,
                        },
                    ));
                }
            }
            Ok(depths)
        })
    }

    fn prune(&self, _keep: u64) -> BoxFuture<'_, anyhow::Result<u64>> {
        // Status records expire on their own (STATUS_TTL).
        Box::pin(async { Ok(0) })
    }
}
