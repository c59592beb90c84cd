//! The idle sweeper: every interval, it unloads the functions that opted into scale to zero
//! (`com.openfaas.scale.zero: true`) and sat idle longer than their
//! `com.openfaas.scale.zero-duration` (`spec.rs`). Unloading drops compiled code from memory only; the
//! record stays, and the next request loads it again.

use std::sync::Arc;
use std::time::Duration;

use super::registry::Functions;
use super::spec;

impl Functions {
    /// Unloads, every `interval`, the functions that opted into scale to zero and sat idle longer
    /// than their `com.openfaas.scale.zero-duration`. Stops when `stop` is cancelled.
    pub fn sweep_idle(
        self: &Arc<Self>,
        interval: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let functions = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = ticker.tick() => functions.unload_idle(),
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    fn unload_idle(&self) {
        let candidates: Vec<(String, Duration)> = self
            .read_records()
            .iter()
            .filter_map(|(key, record)| {
                spec::scale_zero_after(&record.deployment).map(|d| (key.clone(), d))
            })
            .collect();
        for (key, after) in candidates {
            let idle = self.runtime.idle_for(&key).unwrap_or_default();
            if idle >= after && self.runtime.unload(&key) {
                tracing::info!(function = %key, idle = ?idle, "scaled to zero after being idle");
            }
        }
        self.metrics
            .set_functions_loaded(self.runtime.loaded_count() as u64);
    }
}
