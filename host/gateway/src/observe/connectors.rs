//! What the event connectors count (`connectors/`), and its `/metrics` lines:
//!
//! - `wasmgate_connector_invocations_total{function_name, connector, outcome}`: connector
//!   invocations; `connector` is `cron` or `nats`; `outcome` is `ok` (a 2xx answer, or the 202 of
//!   a queued call), `failed` (any other answer: the function failed, was missing or over its
//!   limits), `busy` (not run: the function already had its most connector invocations in flight;
//!   cron only, a NATS message waits instead) or `late` (a tick whose node woke too late to run it).
//! - `wasmgate_cron_claims_total{function_name, result}` (cluster mode): ticks this node claimed
//!   (`won`), found claimed by another node (`lost`), or could not claim (`error`, NATS unreachable:
//!   the tick does not run here).
//! - `wasmgate_topic_subscriptions{function_name}`: subjects this node is subscribed to now.
//!
//! The series exist only for functions with triggers, which an operator deployed; a removed
//! function's gauge goes, its counters stay (as Prometheus expects of counters).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::prometheus::{escape_label, header, sample};

/// The connector counts; share it as part of [`Metrics`](super::metrics::Metrics).
#[derive(Debug, Default)]
pub struct ConnectorCounts {
    invocations: Mutex<BTreeMap<(String, &'static str, &'static str), u64>>,
    claims: Mutex<BTreeMap<(String, &'static str), u64>>,
    subscriptions: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl ConnectorCounts {
    /// One connector invocation of `function` (`name.namespace`) ended with `outcome`.
    pub fn invoked(&self, function: &str, connector: &'static str, outcome: &'static str) {
        *lock(&self.invocations)
            .entry((function.to_string(), connector, outcome))
            .or_insert(0) += 1;
    }

    /// A tick of `function` was claimed with `result` (`won`, `lost`, `error`).
    pub fn claimed(&self, function: &str, result: &'static str) {
        *lock(&self.claims)
            .entry((function.to_string(), result))
            .or_insert(0) += 1;
    }

    /// This node subscribed to one more subject for `function` (`up`), or one fewer.
    pub fn subscribed(&self, function: &str, up: bool) {
        let mut map = lock(&self.subscriptions);
        let count = map.entry(function.to_string()).or_insert(0);
        if up {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(function);
            }
        }
    }

    /// Appends the three families to `out`.
    pub fn render(&self, out: &mut String) {
        let name = "wasmgate_connector_invocations_total";
        header(
            out,
            name,
            "counter",
            "Connector invocations (cron ticks, NATS messages) by outcome.",
        );
        for ((function, connector, outcome), n) in lock(&self.invocations).iter() {
            let labels = format!(
                "function_name=\"{}\",connector=\"{connector}\",outcome=\"{outcome}\"",
                escape_label(function)
            );
            sample(out, name, &labels, n);
        }
        let name = "wasmgate_cron_claims_total";
        header(
            out,
            name,
            "counter",
            "Cron ticks this node claimed, lost to another node, or could not claim.",
        );
        for ((function, result), n) in lock(&self.claims).iter() {
            let labels = format!(
                "function_name=\"{}\",result=\"{result}\"",
                escape_label(function)
            );
            sample(out, name, &labels, n);
        }
        let name = "wasmgate_topic_subscriptions";
        header(
            out,
            name,
            "gauge",
            "NATS subjects this node is subscribed to for the function.",
        );
        for (function, n) in lock(&self.subscriptions).iter() {
            let labels = format!("function_name=\"{}\"", escape_label(function));
            sample(out, name, &labels, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_with_their_labels() {
        let counts = ConnectorCounts::default();
        counts.invoked("tick.openfaas-fn", "cron", "ok");
        counts.invoked("tick.openfaas-fn", "cron", "ok");
        counts.invoked("tick.openfaas-fn", "nats", "failed");
        counts.claimed("tick.openfaas-fn", "lost");
        counts.subscribed("tick.openfaas-fn", true);
        counts.subscribed("gone.openfaas-fn", true);
        counts.subscribed("gone.openfaas-fn", false);
        let mut out = String::new();
        counts.render(&mut out);
        for line in [
            "wasmgate_connector_invocations_total{function_name=\"tick.openfaas-fn\",connector=\"cron\",outcome=\"ok\"} 2",
            "wasmgate_connector_invocations_total{function_name=\"tick.openfaas-fn\",connector=\"nats\",outcome=\"failed\"} 1",
            "wasmgate_cron_claims_total{function_name=\"tick.openfaas-fn\",result=\"lost\"} 1",
            "wasmgate_topic_subscriptions{function_name=\"tick.openfaas-fn\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing in\n{out}");
        }
        assert!(!out.contains("gone.openfaas-fn"), "{out}");
    }
}
