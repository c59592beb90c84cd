//! What the queue knows without asking its store: calls waiting and running, per function and in
//! all, and the counters of `/metrics`. Admission, the dispatcher and the callbacks share one
//! [`Counts`] behind one lock, so admission and dispatch need no query.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::store::Depth;
use crate::observe::prometheus;

/// The queue's numbers (see the module documentation); zero when the queue opens, then restored
/// from the store's depths.
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub(super) queued: HashMap<String, Depth>,
    pub(super) running: HashMap<String, u64>,
    pub(super) queued_calls: u64,
    pub(super) queued_bytes: u64,
    pub(super) running_calls: u64,
    pub(super) finished_since_prune: u64,
    /// Counters for `/metrics`, per function.
    pub(super) enqueued_total: HashMap<String, u64>,
    pub(super) finished_total: HashMap<(String, &'static str), u64>,
    pub(super) retries_total: HashMap<String, u64>,
    pub(super) callbacks_total: HashMap<&'static str, u64>,
}

/// Takes the lock of `counts` (a panic while it was held leaves numbers that are still usable).
pub(super) fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Counts {
    pub(super) fn add_queued(&mut self, function: &str, bytes: u64) {
        let depth = self.queued.entry(function.to_string()).or_default();
        depth.calls += 1;
        depth.bytes += bytes;
        self.queued_calls += 1;
        self.queued_bytes += bytes;
    }

    pub(super) fn remove_queued(&mut self, function: &str, bytes: u64) {
        if let Some(depth) = self.queued.get_mut(function) {
            depth.calls = depth.calls.saturating_sub(1);
            depth.bytes = depth.bytes.saturating_sub(bytes);
        }
        self.queued_calls = self.queued_calls.saturating_sub(1);
        self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
    }

    pub(super) fn running_of(&self, function: &str) -> u64 {
        self.running.get(function).copied().unwrap_or(0)
    }

    pub(super) fn end_running(&mut self, function: &str) {
        if let Some(running) = self.running.get_mut(function) {
            *running = running.saturating_sub(1);
        }
        self.running_calls = self.running_calls.saturating_sub(1);
    }

    /// The queue's lines for `/metrics`.
    pub(super) fn render(&self, out: &mut String) {
        let mut gauge = |name: &str, help: &str, values: Vec<(String, u64)>| {
            prometheus::header(out, name, "gauge", help);
            for (function, value) in values {
                prometheus::sample(out, name, &format!("function_name=\"{function}\""), value);
            }
        };
        let mut queued: Vec<_> = self
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
        let mut running: Vec<_> = self.running.iter().map(|(f, n)| (f.clone(), *n)).collect();
        running.sort();
        gauge(
            "wasmgate_async_running",
            "Async calls running now.",
            running,
        );
        let name = "wasmgate_async_queue_bytes";
        let help = "Bytes of request bodies waiting in the async queue.";
        prometheus::header(out, name, "gauge", help);
        prometheus::sample(out, name, "", self.queued_bytes);
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
            self.enqueued_total
                .iter()
                .map(|(f, n)| (format!("function_name=\"{f}\""), *n))
                .collect(),
        );
        counter(
            "wasmgate_async_finished_total",
            "Async calls that reached a final state.",
            self.finished_total
                .iter()
                .map(|((f, s), n)| (format!("function_name=\"{f}\",state=\"{s}\""), *n))
                .collect(),
        );
        counter(
            "wasmgate_async_retries_total",
            "Async calls queued again for a retry.",
            self.retries_total
                .iter()
                .map(|(f, n)| (format!("function_name=\"{f}\""), *n))
                .collect(),
        );
        counter(
            "wasmgate_async_callbacks_total",
            "Callbacks delivered or given up.",
            self.callbacks_total
                .iter()
                .map(|(s, n)| (format!("result=\"{s}\""), *n))
                .collect(),
        );
    }
}
