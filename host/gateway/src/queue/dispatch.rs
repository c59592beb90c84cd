//! The dispatcher: one task that takes due calls from the store, round-robin over functions, while
//! fewer than the gateway-wide limit run and fewer than the per-function limit run for that
//! function, and runs each on a task of its own through the [`Invoker`]. When a call ends it is
//! either queued again for a retry (its status is in the function's retry codes and attempts are
//! left) or final: stored, and handed to the callbacks when it has a URL.
//!
//! The dispatcher stops on the shutdown signal; the calls it started run to their end, and
//! [`AsyncQueue::drain`](super::AsyncQueue::drain) waits for them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::Response;
use http_body_util::BodyExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wasmgate_openfaas::retry::RetryPolicy;

use super::callbacks::Callbacks;
use super::config::QueueConfig;
use super::counts::{self, Counts};
use super::store::{
    Call, CallState, CallStore, Finished, Outcome, PendingCallback, StoredResponse, now_ms,
};
use super::writer::Writer;
use crate::http::body::GatewayBody;
use crate::observe::traces::TRACERESPONSE;
use wasmgate_runtime::{TRACEPARENT, TRACESTATE};

/// The dispatcher looks at the store at least this often, whatever it was told.
const DISPATCH_IDLE: Duration = Duration::from_secs(1);
/// Finished calls between two prunes of the history.
const PRUNE_EVERY: u64 = 500;

/// What the queue needs from the gateway: running a call, and a function's retry policy.
pub trait Invoker: Send + Sync + 'static {
    /// Runs the call through the synchronous route's path.
    fn invoke(&self, call: &Call) -> BoxFuture<'static, Response<GatewayBody>>;
    /// The retry policy of `function` (`name.namespace`) now, or the default when it is gone.
    fn retry_policy(&self, function: &str) -> RetryPolicy;
}

/// Everything the dispatcher and the calls it runs share.
pub(super) struct Dispatcher {
    pub(super) store: Arc<dyn CallStore>,
    pub(super) config: QueueConfig,
    pub(super) counts: Arc<Mutex<Counts>>,
    pub(super) writer: Writer,
    pub(super) callbacks: Callbacks,
    /// Told when a call is queued or ends: look at the store again.
    pub(super) wake: Arc<Notify>,
    /// Told when a call ends, for the drain.
    pub(super) ended: Arc<Notify>,
    pub(super) stopping: CancellationToken,
    pub(super) invoker: Arc<dyn Invoker>,
}

impl Dispatcher {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        counts::lock(&self.counts)
    }

    /// Takes and starts calls until the shutdown signal.
    pub(super) async fn run(self: Arc<Self>) {
        let config = &self.config;
        let mut turn = 0usize;
        loop {
            let woken = self.wake.notified();
            if self.stopping.is_cancelled() {
                return;
            }
            if self.store.shared() {
                // Other nodes queue calls too: the store knows what waits.
                if let Ok(depths) = self.store.depths().await {
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
                    let calls = match self.store.claim(function.clone(), now_ms(), take).await {
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
                        tokio::spawn(self.clone().run_call(call));
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
            if short && let Ok(Some(due)) = self.store.next_due().await {
                let now = now_ms();
                if due > now {
                    wait = wait.min(Duration::from_millis(due - now));
                }
            }
            tokio::select! {
                biased;
                () = self.stopping.cancelled() => return,
                _ = tokio::time::timeout(wait, woken) => {}
            }
        }
    }

    /// Runs one call to its end: a retry queued, or its final state stored (and its callback
    /// started).
    async fn run_call(self: Arc<Self>, call: Call) {
        let started = Instant::now();
        let id = call.call.id.clone();
        let function = call.call.function.clone();
        let response = self.invoker.invoke(&call).await;
        let (parts, body) = response.into_parts();
        let status = parts.status.as_u16();
        // Read the whole response (the function runs until its body ends), keeping at most the
        // limit when a callback needs it.
        let keep = if call.call.callback_url.is_some() {
            self.config.max_response
        } else {
            0
        };
        let (body, cut, body_error) = read_bounded(body, keep).await;
        let duration = started.elapsed();
        let policy = self.invoker.retry_policy(&function);
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
            if !self.writer.record(outcome).await {
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
            callback_trace_context(&mut headers, &call.call.headers);
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
            let saved_ok = self.writer.record(outcome).await;
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
                self.writer.prune(self.config.keep_finished).await;
            }
            if let (Some(url), Some(response), true) =
                (&call.call.callback_url, finished.response, saved_ok)
            {
                self.callbacks.spawn(PendingCallback {
                    id: id.clone(),
                    url: url.clone(),
                    called_as: call.call.called_as.clone(),
                    status,
                    attempts: call.attempts,
                    max_attempts: policy.attempts,
                    duration_ms: finished.duration_ms,
                    deliveries: 0,
                    response,
                });
            }
        }
        self.wake.notify_one();
        self.ended.notify_waiters();
    }
}

/// Makes the trace context among a finished call's kept headers the one its callback continues:
/// the last attempt's span (the gateway's `traceresponse`, when tracing is on), else the context
/// the call was queued with (passed on as the client sent it). The function's own trace headers
/// are not the callback's.
fn callback_trace_context(kept: &mut Vec<(String, Vec<u8>)>, queued: &[(String, Vec<u8>)]) {
    let last_run = kept
        .iter()
        .find(|(name, _)| name == TRACERESPONSE)
        .map(|(_, value)| value.clone());
    kept.retain(|(name, _)| name != TRACEPARENT && name != TRACESTATE && name != TRACERESPONSE);
    let from_queue = |wanted: &str| {
        queued
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value.clone())
    };
    if let Some(parent) = last_run.or_else(|| from_queue(TRACEPARENT)) {
        kept.push((TRACEPARENT.to_string(), parent));
        if let Some(state) = from_queue(TRACESTATE) {
            kept.push((TRACESTATE.to_string(), state));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn the_callback_continues_the_last_run_else_the_queued_context() {
        let queued = pairs(&[("traceparent", "00-t-queued-01"), ("tracestate", "v=1")]);
        // Traced: the last run's span (its `traceresponse`), the queued state; the function's own
        // trace headers are dropped.
        let mut kept = pairs(&[
            ("content-type", "text/plain"),
            ("traceparent", "00-t-function-01"),
            ("traceresponse", "00-t-run-01"),
        ]);
        callback_trace_context(&mut kept, &queued);
        assert_eq!(
            kept,
            pairs(&[
                ("content-type", "text/plain"),
                ("traceparent", "00-t-run-01"),
                ("tracestate", "v=1"),
            ])
        );
        // Not traced: the context the client queued the call with, passed on.
        let mut kept = pairs(&[("content-type", "text/plain")]);
        callback_trace_context(&mut kept, &queued);
        assert_eq!(
            kept,
            pairs(&[
                ("content-type", "text/plain"),
                ("traceparent", "00-t-queued-01"),
                ("tracestate", "v=1"),
            ])
        );
        // No context at all: none is made up.
        let mut kept = pairs(&[("content-type", "text/plain")]);
        callback_trace_context(&mut kept, &[]);
        assert_eq!(kept, pairs(&[("content-type", "text/plain")]));
    }
}
