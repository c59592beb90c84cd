//! What the gateway tells operators: Prometheus metrics ([`metrics`], with their histograms in
//! `histogram.rs`) in the text format ([`prometheus`]), with the event connectors' counts
//! ([`connectors`]).

pub mod connectors;
mod histogram;
pub mod metrics;
pub mod prometheus;
