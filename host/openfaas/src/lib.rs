//! The OpenFaaS gateway contract, as wasmgate speaks it, with no I/O: what the gateway and the
//! command-line client both need to agree on.
//!
//! - [`names`]: function names and namespaces (`figlet.openfaas-fn`);
//! - [`types`]: the JSON of the management API, field for field;
//! - [`image`]: a deployment's `image` as faas-cli sends it (the `:latest` it appends);
//! - [`headers`]: the invocation, async and callback headers, and the hop-by-hop ones;
//! - [`settings`]: the labels, annotations and `envVars` wasmgate reads, and their parsing;
//! - [`retry`]: the `com.openfaas.retry.*` annotations and the backoff they describe;
//! - [`triggers`]: the event connectors' annotations (`topic`, `schedule`, `async`): cron schedules and NATS subjects;
//! - units: [`duration`] (Go durations), [`quantity`] (Kubernetes memory), [`time`] (RFC 3339);
//! - [`digest`]: `sha256:<hex>` content digests.

#![deny(missing_docs)]

pub mod digest;
pub mod duration;
pub mod headers;
pub mod image;
pub mod names;
pub mod quantity;
pub mod retry;
pub mod settings;
pub mod time;
pub mod triggers;
pub mod types;
