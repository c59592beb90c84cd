//! What the gateway tells operators: Prometheus metrics ([`metrics`], with their histograms in
//! `histogram.rs`) in the text format ([`prometheus`]), with the event connectors' counts
//! ([`connectors`]), whether the node is ready to take traffic ([`readiness`], `/readyz`), and
//! OpenTelemetry traces ([`traces`], exported by `otlp.rs`, encoded by `otlp_proto.rs`).

pub mod connectors;
mod histogram;
pub mod metrics;
mod otlp;
mod otlp_proto;
pub mod prometheus;
pub mod readiness;
pub mod traces;
