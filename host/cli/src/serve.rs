//! `wasmgate serve`'s flags ([`ServeArgs`]) and their validation into a [`ServeConfig`]: clap types
//! stop here. Each flag's default comes from the constant of the crate that owns the setting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::ValueEnum;
use wasmgate_runtime::{
    Allocator, DEFAULT_LOADED_MEMORY_BUDGET, DEFAULT_MAX_INSTANCES, DEFAULT_MAX_MEMORY_BYTES,
    DEFAULT_MAX_TIMEOUT, DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, RuntimeConfig,
};

use wasmgate_gateway::ServeConfig;
use wasmgate_gateway::cluster::DEFAULT_NATS_CONNECT_TIMEOUT;
use wasmgate_gateway::control::{DEFAULT_ARTIFACT_GRACE, DEFAULT_MAX_ARTIFACT_BYTES};
use wasmgate_gateway::http::auth::Credentials;
use wasmgate_gateway::http::limits::{
    DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADERS, DEFAULT_MAX_REQUEST_BODY, DEFAULT_READ_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT, HttpLimits,
};
use wasmgate_gateway::http::server::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SHUTDOWN_TIMEOUT, ServerConfig,
};
use wasmgate_gateway::http::tls::{DEFAULT_TLS_RELOAD_INTERVAL, TlsConfig};
use wasmgate_gateway::queue::{self, QueueConfig};
use wasmgate_openfaas::digest::Digest;
use wasmgate_openfaas::duration::{format_duration, parse_duration};
use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::quantity::{format_memory, parse_memory};
use wasmgate_openfaas::types::ResolvedFunction;

use crate::stack::Stack;

/// The stack file `serve` reads when none is named and one exists in the current folder.
pub const DEFAULT_STACK_FILE: &str = "stack.yml";

/// Arguments of `wasmgate serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port; the bound address is printed on stdout.
    #[arg(long, env = "WASMGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// A faas-cli stack file whose functions to load; each `image` is a path to a `.wasm` component,
    /// relative to the file. Without this flag and without --function, ./stack.yml is read if it exists.
    #[arg(
        short = 'f',
        long = "file",
        visible_alias = "yaml",
        env = "WASMGATE_STACK"
    )]
    pub file: Option<PathBuf>,

    /// A function to load besides those of the stack file, as NAME=PATH (NAME may be name.namespace).
    /// Repeat for more.
    #[arg(long = "function", value_name = "NAME=PATH")]
    pub functions: Vec<String>,

    /// How long requests in flight may take to finish after SIGINT or SIGTERM (e.g. 30s, 1m).
    #[arg(long, default_value = format_duration(DEFAULT_SHUTDOWN_TIMEOUT), value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Connections served at once.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Instances that may run at once (one per request in flight); sizes the instance pool.
    #[arg(long, default_value_t = DEFAULT_MAX_INSTANCES)]
    pub max_instances: u32,

    /// Requests served at once by the whole gateway; past it a request gets 429 at once
    /// [default: --max-instances]. Per function, `max_inflight` in envVars.
    #[arg(long)]
    pub max_inflight: Option<u32>,

    /// Linear memory a function may use when its deployment sets no `limits.memory` (e.g. 64Mi)
    /// [default: 128Mi, or --max-memory if lower].
    #[arg(long, value_parser = parse_memory)]
    pub default_memory: Option<u64>,

    /// The largest `limits.memory` a deployment may ask for; also the size of a memory slot of the
    /// pool (address space, not memory).
    #[arg(long, default_value = format_memory(DEFAULT_MAX_MEMORY_BYTES), value_parser = parse_memory)]
    pub max_memory: u64,

    /// Time one request may take when its function sets no `exec_timeout` in envVars (e.g. 30s)
    /// [default: 60s, or --max-timeout if lower].
    #[arg(long, value_parser = parse_duration)]
    pub default_timeout: Option<Duration>,

    /// The largest `exec_timeout` a deployment may ask for.
    #[arg(long, default_value = format_duration(DEFAULT_MAX_TIMEOUT), value_parser = parse_duration)]
    pub max_timeout: Duration,

    /// Largest request body (e.g. 64Mi); past it, 413.
    #[arg(long, default_value = format_memory(DEFAULT_MAX_REQUEST_BODY), value_parser = parse_memory)]
    pub max_request_body: u64,

    /// Cluster mode: share functions and the async queue with the other nodes through NATS
    /// JetStream (e.g. nats://nats:4222; several servers comma-separated). Without it, the node keeps
    /// everything in its state directory alone.
    #[arg(long, env = "WASMGATE_NATS")]
    pub nats: Option<String>,

    /// Copies of each JetStream stream and bucket wasmgate creates (3 on a three-server NATS
    /// cluster, so one server can fail).
    #[arg(long, env = "WASMGATE_NATS_REPLICAS", default_value_t = 1)]
    pub nats_replicas: usize,

    /// How long joining the cluster at start may take (connecting, logging in, creating the
    /// buckets); past it the gateway exits, naming the last error NATS gave.
    #[arg(long, env = "WASMGATE_NATS_CONNECT_TIMEOUT", default_value = format_duration(DEFAULT_NATS_CONNECT_TIMEOUT), value_parser = parse_duration)]
    pub nats_connect_timeout: Duration,

    /// Cluster mode: the keys that seal secret values in JetStream, one per line (64 hex digits,
    /// e.g. from `openssl rand -hex 32`); the first seals, all open. Without it no secret is shared.
    #[arg(long, env = "WASMGATE_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,

    /// This node's name in the cluster [default: the host name].
    #[arg(long, env = "WASMGATE_NODE_NAME")]
    pub node_name: Option<String>,

    /// Async calls running at once, gateway-wide.
    #[arg(long, default_value_t = queue::DEFAULT_CONCURRENCY)]
    pub async_concurrency: usize,

    /// Async calls of one function running at once.
    #[arg(long, default_value_t = queue::DEFAULT_PER_FUNCTION)]
    pub async_function_concurrency: usize,

    /// Async calls waiting at most; past it, 429.
    #[arg(long, default_value_t = queue::DEFAULT_MAX_QUEUED)]
    pub async_max_queued: u64,

    /// Bytes of waiting async request bodies at most (e.g. 1Gi); past it, 429.
    #[arg(long, default_value = format_memory(queue::DEFAULT_MAX_QUEUED_BYTES), value_parser = parse_memory)]
    pub async_max_queued_bytes: u64,

    /// Largest async request body (e.g. 16Mi); past it, 413. Also kept: the response, for its
    /// callback, up to this size.
    #[arg(long, default_value = format_memory(queue::DEFAULT_MAX_BODY), value_parser = parse_memory)]
    pub async_max_body: u64,

    /// Finished async calls kept for `GET /system/async/{call-id}`; the oldest are deleted.
    #[arg(long, default_value_t = queue::DEFAULT_KEEP_FINISHED)]
    pub async_keep_finished: u64,

    /// Largest request line plus headers (at least 8Ki); past it, 431.
    #[arg(long, default_value = format_memory(DEFAULT_MAX_HEADER_BYTES as u64), value_parser = parse_memory)]
    pub max_header_bytes: u64,

    /// Most header fields in one request; past it, 431.
    #[arg(long, default_value_t = DEFAULT_MAX_HEADERS)]
    pub max_headers: usize,

    /// How long a client may take to send a request's headers (the connection is closed past it).
    #[arg(long, default_value = format_duration(DEFAULT_HEADER_READ_TIMEOUT), value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// How long a request body may stop arriving (408 past it).
    #[arg(long, default_value = format_duration(DEFAULT_READ_TIMEOUT), value_parser = parse_duration)]
    pub read_timeout: Duration,

    /// How long a client may stop reading a response before its connection is closed.
    #[arg(long, default_value = format_duration(DEFAULT_WRITE_TIMEOUT), value_parser = parse_duration)]
    pub write_timeout: Duration,

    /// Requests one HTTP/2 connection may have open at once (announced to the client).
    #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENT_STREAMS)]
    pub max_concurrent_streams: u32,

    /// Serve HTTPS (HTTP/2 and HTTP/1.1, by ALPN) with this certificate chain (PEM, leaf first).
    /// A changed file is read again without a restart (see --tls-reload-interval).
    #[arg(
        long,
        env = "WASMGATE_TLS_CERT",
        requires = "tls_key",
        value_name = "FILE"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "WASMGATE_TLS_KEY",
        requires = "tls_cert",
        value_name = "FILE"
    )]
    pub tls_key: Option<PathBuf>,

    /// How often --tls-cert and --tls-key are looked at for a change (one stat each); a new pair
    /// that cannot be used is logged and the current certificate kept.
    #[arg(long, env = "WASMGATE_TLS_RELOAD_INTERVAL", default_value = format_duration(DEFAULT_TLS_RELOAD_INTERVAL), value_parser = parse_duration)]
    pub tls_reload_interval: Duration,

    /// Refuse to start without --tls-cert and --tls-key (for example where basic auth must never
    /// cross the network in the clear).
    #[arg(long, env = "WASMGATE_REQUIRE_TLS")]
    pub require_tls: bool,

    /// How instances get memory: a pool reserved at start-up (fast), on demand, or pooling when the
    /// address space allows it.
    #[arg(long, value_enum, default_value_t = AllocatorArg::Auto)]
    pub allocator: AllocatorArg,

    /// Where functions, secrets, namespaces and uploaded components are kept
    /// [default: $XDG_STATE_HOME/wasmgate, else ~/.local/state/wasmgate].
    #[arg(long, env = "WASMGATE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Where compiled code is kept, one file per component and engine build [default: the state
    /// directory's cache/]. Gateways of the same build may share one: files are written whole and
    /// renamed into place.
    #[arg(long, env = "WASMGATE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// How long a component no function references is kept before it is removed (with its compiled
    /// code, and from the cluster's object store): long enough for an upload to be deployed.
    #[arg(long, env = "WASMGATE_ARTIFACT_GRACE", default_value = format_duration(DEFAULT_ARTIFACT_GRACE), value_parser = parse_duration)]
    pub artifact_grace: Duration,

    /// A folder with the files basic-auth-user and basic-auth-password (as OpenFaaS mounts them);
    /// turns basic auth on for /system/*.
    #[arg(long, env = "WASMGATE_BASIC_AUTH_DIR")]
    pub basic_auth_dir: Option<PathBuf>,

    /// Basic auth user for /system/* (with WASMGATE_BASIC_AUTH_PASSWORD).
    #[arg(
        long,
        env = "WASMGATE_BASIC_AUTH_USER",
        requires = "basic_auth_password"
    )]
    pub basic_auth_user: Option<String>,

    /// Basic auth password (prefer the environment variable: flags show in `ps`).
    #[arg(
        long,
        env = "WASMGATE_BASIC_AUTH_PASSWORD",
        hide_env_values = true,
        requires = "basic_auth_user"
    )]
    pub basic_auth_password: Option<String>,

    /// Serve /system/* without authentication on a non-loopback address (never do this on a network
    /// you do not control). On loopback addresses auth is off unless credentials are given.
    #[arg(long)]
    pub no_auth: bool,

    /// Memory, in MiB, that loaded functions may take; past it the least recently used are unloaded
    /// and load again (from the disk cache) on their next request.
    #[arg(long, default_value_t = DEFAULT_LOADED_MEMORY_BUDGET / (1024 * 1024))]
    pub loaded_memory_budget_mib: u64,

    /// Unload any function idle this long (e.g. 15m); it loads again on its next request. Per
    /// function, the label com.openfaas.scale.zero-duration does the same.
    #[arg(long, value_parser = parse_duration)]
    pub unload_idle_after: Option<Duration>,

    /// Largest component accepted by upload or deploy, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_ARTIFACT_BYTES)]
    pub max_artifact_bytes: usize,

    /// Tracing: OTLP export, sampling, the export queue's bound.
    #[command(flatten)]
    pub traces: crate::otel::TraceArgs,
}

/// `--allocator` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AllocatorArg {
    /// Pooling when possible, else on demand.
    Auto,
    /// Pooling or fail.
    Pooling,
    /// On demand.
    OnDemand,
}

impl ServeArgs {
    /// Reads the stack file, parses `--function`, and checks that no function is named twice.
    pub fn into_config(self) -> anyhow::Result<ServeConfig> {
        // Like faas-cli, ./stack.yml is the default, but only when nothing else says what to serve.
        let stack_file = match self.file {
            Some(file) => Some(file),
            None if self.functions.is_empty() => {
                Some(PathBuf::from(DEFAULT_STACK_FILE)).filter(|f| f.exists())
            }
            None => None,
        };
        let mut functions = Vec::new();
        if let Some(file) = stack_file
            .as_ref()
            .filter(|f| wasmgate_spin::deployment::is_manifest_path(f))
        {
            functions.push(spin_function(file)?);
        } else if let Some(file) = stack_file {
            let stack = Stack::read(&file)?;
            let base = file.parent().map(PathBuf::from).unwrap_or_default();
            functions.extend(
                stack
                    .resolve(&base)
                    .with_context(|| format!("in {}", file.display()))?,
            );
        }
        for arg in &self.functions {
            functions.push(parse_function_arg(arg)?);
        }
        let mut keys: Vec<String> = functions.iter().map(|f| f.function.key()).collect();
        keys.sort();
        if let Some(pair) = keys.windows(2).find(|pair| pair[0] == pair[1]) {
            bail!("function {} is defined twice", pair[0]);
        }
        if self.max_connections == 0 {
            bail!("--max-connections must be at least 1");
        }
        if self.max_concurrent_streams == 0 {
            bail!("--max-concurrent-streams must be at least 1");
        }
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => {
                if self.tls_reload_interval.is_zero() {
                    bail!("--tls-reload-interval must be more than zero");
                }
                Some(TlsConfig {
                    cert,
                    key,
                    reload_interval: self.tls_reload_interval,
                })
            }
            _ if self.require_tls => bail!(
                "--require-tls: refusing to serve plain HTTP on {}; give a certificate and its key \
                 with --tls-cert and --tls-key (WASMGATE_TLS_CERT, WASMGATE_TLS_KEY)",
                self.listen
            ),
            _ => None,
        };
        let auth = match (
            &self.basic_auth_dir,
            &self.basic_auth_user,
            &self.basic_auth_password,
        ) {
            (Some(dir), _, _) => Some(Credentials::from_dir(dir).context("--basic-auth-dir")?),
            (None, Some(user), Some(password)) => Some(Credentials::new(user, password)?),
            _ => None,
        };
        if auth.is_none() && !self.listen.ip().is_loopback() && !self.no_auth {
            bail!(
                "refusing to serve /system/* on {} without credentials: set --basic-auth-dir (or \
                 WASMGATE_BASIC_AUTH_USER and WASMGATE_BASIC_AUTH_PASSWORD), or pass --no-auth",
                self.listen
            );
        }
        if self.max_memory < 64 * 1024 {
            bail!("--max-memory must be at least one WebAssembly page (64Ki)");
        }
        let default_memory = match self.default_memory {
            Some(bytes) if bytes > self.max_memory => bail!(
                "--default-memory {} is above --max-memory {}",
                format_memory(bytes),
                format_memory(self.max_memory)
            ),
            Some(bytes) if bytes < 64 * 1024 => {
                bail!("--default-memory must be at least one WebAssembly page (64Ki)")
            }
            Some(bytes) => bytes,
            None => DEFAULT_MEMORY_BYTES.min(self.max_memory),
        };
        if self.max_timeout.is_zero() {
            bail!("--max-timeout must be more than zero");
        }
        let default_timeout = match self.default_timeout {
            Some(timeout) if timeout > self.max_timeout => bail!(
                "--default-timeout {timeout:?} is above --max-timeout {:?}",
                self.max_timeout
            ),
            Some(timeout) if timeout.is_zero() => bail!("--default-timeout must be more than zero"),
            Some(timeout) => timeout,
            None => DEFAULT_TIMEOUT.min(self.max_timeout),
        };
        if self.max_header_bytes < 8192 {
            bail!("--max-header-bytes must be at least 8Ki (hyper's smallest read buffer)");
        }
        for (flag, value) in [
            ("--header-read-timeout", self.header_read_timeout),
            ("--read-timeout", self.read_timeout),
            ("--write-timeout", self.write_timeout),
        ] {
            if value.is_zero() {
                bail!("{flag} must be more than zero");
            }
        }
        if self.max_inflight == Some(0) {
            bail!("--max-inflight must be at least 1");
        }
        let traces = self.traces.into_config()?;
        let state_dir = match self.state_dir {
            Some(dir) => dir,
            None => default_state_dir()?,
        };
        Ok(ServeConfig {
            listen: self.listen,
            functions,
            runtime: RuntimeConfig {
                max_instances: self.max_instances,
                max_inflight: self.max_inflight,
                default_memory_bytes: default_memory,
                max_memory_bytes: self.max_memory,
                default_timeout,
                max_timeout: self.max_timeout,
                loaded_memory_budget: self.loaded_memory_budget_mib.saturating_mul(1024 * 1024),
                unload_idle_after: self.unload_idle_after,
                allocator: match self.allocator {
                    AllocatorArg::Auto => Allocator::Auto,
                    AllocatorArg::Pooling => Allocator::Pooling,
                    AllocatorArg::OnDemand => Allocator::OnDemand,
                },
                cache_dir: self.cache_dir,
                ..RuntimeConfig::default()
            },
            http_limits: HttpLimits {
                max_request_body: self.max_request_body,
                read_timeout: self.read_timeout,
            },
            server: ServerConfig {
                shutdown_timeout: self.shutdown_timeout,
                max_connections: self.max_connections,
                header_read_timeout: self.header_read_timeout,
                max_header_bytes: usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX),
                max_headers: self.max_headers,
                write_timeout: self.write_timeout,
                max_concurrent_streams: self.max_concurrent_streams,
                tls,
            },
            state_dir,
            auth,
            max_artifact_bytes: self.max_artifact_bytes,
            nats: self.nats,
            nats_replicas: self.nats_replicas.clamp(1, 5),
            nats_connect_timeout: self.nats_connect_timeout,
            artifact_grace: self.artifact_grace,
            secrets_key_file: self.secrets_key_file,
            node_name: self
                .node_name
                .or_else(|| {
                    std::fs::read_to_string("/etc/hostname")
                        .ok()
                        .map(|h| h.trim().to_string())
                })
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| format!("node-{}", std::process::id())),
            queue: QueueConfig {
                concurrency: self.async_concurrency.max(1),
                per_function: self.async_function_concurrency.max(1),
                max_queued: self.async_max_queued,
                max_queued_bytes: self.async_max_queued_bytes,
                max_body: self.async_max_body,
                max_response: usize::try_from(self.async_max_body).unwrap_or(usize::MAX),
                keep_finished: self.async_keep_finished,
                ..QueueConfig::default()
            },
            traces,
        })
    }
}

/// `$XDG_STATE_HOME/wasmgate`, else `~/.local/state/wasmgate`.
fn default_state_dir() -> anyhow::Result<PathBuf> {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(state).join("wasmgate"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/state/wasmgate")),
        None => bail!("no --state-dir given and neither XDG_STATE_HOME nor HOME is set"),
    }
}

/// The Spin app of the manifest `file` as a function to deploy: its components are read by the
/// gateway from their paths, relative to the manifest's folder.
fn spin_function(file: &std::path::Path) -> anyhow::Result<ResolvedFunction> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let app = wasmgate_spin::App::parse(&text).with_context(|| format!("{}", file.display()))?;
    let base = file.parent().map(PathBuf::from).unwrap_or_default();
    let base = std::path::absolute(&base).unwrap_or(base);
    let mut sources = std::collections::BTreeMap::new();
    let mut files = std::collections::BTreeMap::new();
    let mut archives = Vec::new();
    for (name, component) in &app.components {
        let source = base.join(&component.source).display().to_string();
        sources.insert(name.clone(), source);
        if let Some(archive) = crate::spin_files::archive(&base, name, component)? {
            files.insert(name.clone(), Digest::of(&archive).to_string());
            archives.push(archive);
        }
    }
    Ok(ResolvedFunction {
        function: wasmgate_openfaas::names::FunctionRef::new(&app.name, None)
            .with_context(|| format!("{}: [application] name", file.display()))?,
        wasm: file.to_path_buf(),
        oci: None,
        settings: wasmgate_openfaas::types::FunctionSettings {
            annotations: Some(wasmgate_spin::deployment::annotations(
                &text, &sources, &files,
            )),
            ..Default::default()
        },
        archives,
    })
}

fn parse_function_arg(arg: &str) -> anyhow::Result<ResolvedFunction> {
    let Some((name, path)) = arg.split_once('=') else {
        bail!("--function {arg:?}: expected NAME=PATH");
    };
    if path.is_empty() {
        bail!("--function {arg:?}: the path is empty");
    }
    let function = FunctionRef::parse(name).with_context(|| format!("--function {arg:?}"))?;
    Ok(ResolvedFunction {
        function,
        wasm: PathBuf::from(path),
        oci: wasmgate_oci::Reference::looks_like(path).then(|| path.to_string()),
        settings: Default::default(),
        archives: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn function_args() {
        let f = parse_function_arg("hello=/x/hello.wasm").expect("valid");
        assert_eq!(f.function.key(), "hello.openfaas-fn");
        assert_eq!(f.wasm, PathBuf::from("/x/hello.wasm"));
        assert_eq!(
            parse_function_arg("hi.team=a.wasm")
                .expect("valid")
                .function
                .key(),
            "hi.team"
        );
        for bad in ["hello", "hello=", "bad name=x.wasm", "=x.wasm"] {
            assert!(parse_function_arg(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn duplicate_functions_are_refused() {
        let cli = Cli::try_parse_from([
            "wasmgate",
            "serve",
            "-f",
            "/nonexistent-but-unused",
            "--function",
            "a=x.wasm",
        ]);
        assert!(cli.is_ok());
        let Command::Serve(args) = Cli::try_parse_from([
            "wasmgate",
            "serve",
            "--function",
            "a=x.wasm",
            "--function",
            "a.openfaas-fn=y.wasm",
        ])
        .expect("parses")
        .command
        else {
            panic!("serve parses as serve");
        };
        let err = args.into_config().expect_err("duplicate");
        assert!(err.to_string().contains("defined twice"), "{err:#}");
    }
}
