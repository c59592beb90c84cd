//! What the gateway tells operators: Prometheus metrics ([`metrics`], with their histograms in
//! `histogram.rs`) in the text format ([`prometheus`]).

mod histogram;
pub mod metrics;
pub mod prometheus;
