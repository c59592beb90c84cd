//! What [`serve`](crate::serve) needs, validated: the command line builds it, the gateway reads it.

use std::net::SocketAddr;
use std::path::PathBuf;

use wasmgate_openfaas::types::ResolvedFunction;
use wasmgate_runtime::RuntimeConfig;

use crate::http::auth::Credentials;
use crate::http::limits::HttpLimits;
use crate::http::server::ServerConfig;
use crate::observe::traces::TraceConfig;
use crate::queue::QueueConfig;

/// Everything `serve` needs, validated.
#[derive(Debug)]
pub struct ServeConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The functions to load, each with its component path.
    pub functions: Vec<ResolvedFunction>,
    /// The runtime's settings.
    pub runtime: RuntimeConfig,
    /// The server's settings.
    pub server: ServerConfig,
    /// Limits on request bodies.
    pub http_limits: HttpLimits,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Basic auth for /system/*, if on.
    pub auth: Option<Credentials>,
    /// Largest component accepted.
    pub max_artifact_bytes: usize,
    /// The async queue's limits.
    pub queue: QueueConfig,
    /// NATS servers of the cluster, if any (comma-separated URLs).
    pub nats: Option<String>,
    /// Copies of each stream and bucket on the NATS servers.
    pub nats_replicas: usize,
    /// How long joining the cluster at start may take before the build fails.
    pub nats_connect_timeout: std::time::Duration,
    /// How long a component no function references is kept (see `control/collector.rs`).
    pub artifact_grace: std::time::Duration,
    /// The keys that seal secret values in the cluster (see `cluster/seal.rs`).
    pub secrets_key_file: Option<std::path::PathBuf>,
    /// This node's name in the cluster.
    pub node_name: String,
    /// Where spans go, when tracing is on (see `observe/traces.rs`).
    pub traces: Option<TraceConfig>,
}
