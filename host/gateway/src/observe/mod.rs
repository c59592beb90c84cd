//! What the gateway tells operators: Prometheus metrics ([`metrics`]).

pub mod metrics;
