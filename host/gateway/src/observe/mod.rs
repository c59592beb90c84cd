//! What the gateway tells operators: Prometheus metrics ([`metrics`]) in the text format
//! ([`prometheus`]).

pub mod metrics;
pub mod prometheus;
