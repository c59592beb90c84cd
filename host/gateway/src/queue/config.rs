//! The queue's limits ([`QueueConfig`]) and their defaults, which the command line's flags show.

use std::time::Duration;

/// Async calls running at once, gateway-wide, unless configured (`--async-concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 64;
/// Async calls of one function running at once (`--async-function-concurrency`).
pub const DEFAULT_PER_FUNCTION: usize = 16;
/// Async calls waiting at most (`--async-max-queued`).
pub const DEFAULT_MAX_QUEUED: u64 = 100_000;
/// Bytes of waiting request bodies at most (`--async-max-queued-bytes`).
pub const DEFAULT_MAX_QUEUED_BYTES: u64 = 1024 * 1024 * 1024;
/// The largest async request body, and the most of a response kept for its callback
/// (`--async-max-body`).
pub const DEFAULT_MAX_BODY: u64 = 16 * 1024 * 1024;
/// Finished calls kept for the status API (`--async-keep-finished`).
pub const DEFAULT_KEEP_FINISHED: u64 = 100_000;

/// The limits of the queue.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Calls running at once, gateway-wide.
    pub concurrency: usize,
    /// Calls of one function running at once.
    pub per_function: usize,
    /// Calls waiting at most (429 past it).
    pub max_queued: u64,
    /// Bytes of waiting bodies at most (429 past it).
    pub max_queued_bytes: u64,
    /// The largest request body accepted (413 past it).
    pub max_body: u64,
    /// The most of a response kept for its callback; the rest is cut.
    pub max_response: usize,
    /// Final calls kept for the status API.
    pub keep_finished: u64,
    /// Deliveries of one callback at most.
    pub callback_attempts: u32,
    /// The first wait between two deliveries.
    pub callback_min_wait: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            concurrency: DEFAULT_CONCURRENCY,
            per_function: DEFAULT_PER_FUNCTION,
            max_queued: DEFAULT_MAX_QUEUED,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_body: DEFAULT_MAX_BODY,
            max_response: DEFAULT_MAX_BODY as usize,
            keep_finished: DEFAULT_KEEP_FINISHED,
            callback_attempts: 8,
            callback_min_wait: Duration::from_secs(1),
        }
    }
}
