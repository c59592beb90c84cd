//! What the gateway tells operators: Prometheus metrics ([`metrics`], with their histograms in
//! `histogram.rs`) in the text format ([`prometheus`]), and whether the node is ready to take
//! traffic ([`readiness`], `/readyz`).

mod histogram;
pub mod metrics;
pub mod prometheus;
pub mod readiness;
