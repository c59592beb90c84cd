//! What the gateway tells operators: Prometheus metrics ([`metrics`], with their histograms in
//! `histogram.rs`) in the text format ([`prometheus`]), with the event connectors' counts
//! ([`connectors`]), and whether the node is ready to take traffic ([`readiness`], `/readyz`).

pub mod connectors;
mod histogram;
pub mod metrics;
pub mod prometheus;
pub mod readiness;
