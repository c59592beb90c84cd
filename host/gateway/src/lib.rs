//! The wasmgate gateway as a library: an OpenFaaS-compatible server that runs each function as a
//! WebAssembly component on [`wasmgate_runtime`]. [`serve`] builds it from a [`ServeConfig`] and serves
//! until SIGINT or SIGTERM.
//!
//! By noun: [`http`] (router, invocation, management API, portal, limits, accept loop), [`control`]
//! (the function registry), [`queue`] (async calls), [`storage`] (state directory, key-value),
//! [`cluster`] (NATS replication and the cluster's call store), [`connectors`] (cron schedules and
//! NATS topics), [`observe`] (metrics).

#![deny(missing_docs)]

pub mod cluster;
pub mod config;
pub mod connectors;
pub mod control;
pub mod http;
pub mod observe;
pub mod queue;
pub mod storage;

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};
use wasmgate_openfaas::types::{FunctionDeployment, Namespace};
use wasmgate_runtime::Runtime;

pub use crate::config::ServeConfig;
use crate::control::{Change, Functions, Origin, PutMode};
use crate::http::api::Api;
use crate::http::body::{BoxError, GatewayBody};
use crate::http::gateway::Gateway;
use crate::http::server::{self, ServerConfig};
use crate::http::tls::Tls;
use crate::observe::metrics::Metrics;
use crate::observe::readiness::Readiness;
use crate::observe::traces::Traces;
use crate::queue::AsyncQueue;
use crate::storage::{keyvalue, sqlite_dbs};

/// How often idle functions that opted into scale to zero are looked at.
const IDLE_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The gateway, built: state restored, functions registered, the queue (and in cluster mode the
/// cluster) running. It answers requests with [`App::handle`], without a socket, or on a listener with
/// [`App::serve`].
pub struct App {
    /// Routes every request.
    gateway: Gateway,
    /// Async calls; stopped and drained when serving ends.
    queue: AsyncQueue,
    /// Connection limits, timeouts and the drain deadline of [`App::serve`].
    server: ServerConfig,
    /// The certificate served when `server.tls` names one; its watcher runs until `stopping`.
    tls: Option<Tls>,
    /// Tracing, when on: its export task runs until [`App::serve`] has drained everything (so the
    /// last requests' spans go out too), or until the `App` is dropped.
    traces: Option<Traces>,
    /// The one shutdown signal of the gateway's background tasks: log followers end, the idle
    /// sweeper, the connectors and the cluster's watches and heartbeat stop. [`App::serve`] cancels it when its
    /// shutdown comes; dropping the `App` cancels it too (through this guard).
    stopping: DropGuard,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("gateway", &self.gateway)
            .field("server", &self.server)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl App {
    /// Opens (or creates) the state directory, restores its functions and deploys `config`'s, joins
    /// the cluster when `config.nats` names one, and opens and starts the async queue.
    pub async fn build(config: ServeConfig) -> anyhow::Result<App> {
        let stopping = CancellationToken::new();
        // First: a bad certificate stops the start before anything else is opened.
        let tls = match &config.server.tls {
            Some(tls) => Some(Tls::load(tls.clone()).context("loading the TLS certificate")?),
            None => None,
        };
        // Held from here: if the build fails half-way, what it started (the cluster's watches and
        // heartbeat, the sweeper) stops with it.
        let stop_on_drop = stopping.clone().drop_guard();
        let traces = match &config.traces {
            Some(traces) => Some(Traces::start(traces).context("starting tracing")?),
            None => None,
        };
        let readiness = Readiness::new();
        let metrics = Arc::new(Metrics::new());
        // Compiled code is kept beside the state unless the configuration names a folder, so a
        // restart never recompiles what it compiled before.
        let mut runtime_config = config.runtime.clone();
        if runtime_config.cache_dir.is_none() {
            runtime_config.cache_dir = Some(config.state_dir.join("cache"));
        }
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&config.state_dir)
                .with_context(|| format!("creating {}", config.state_dir.display()))?;
        }
        let keyvalue = keyvalue::SqliteKeyValue::open(&config.state_dir.join("keyvalue.sqlite3"))
            .context("opening the key-value store")?;
        let databases = sqlite_dbs::SqliteDatabases::new(
            &config.state_dir.join("spin-sqlite"),
            sqlite_dbs::SqlLimits::default(),
        );
        let runtime = Runtime::with_stores(
            runtime_config,
            metrics.clone(),
            Arc::new(keyvalue),
            Arc::new(databases),
        )
        .context("starting the runtime")?;
        let functions = Functions::open(
            &config.state_dir,
            runtime,
            metrics.clone(),
            config.max_artifact_bytes,
        )?;

        let cluster = match &config.nats {
            Some(url) => {
                let cluster = crate::cluster::Cluster::connect(
                    url,
                    config.node_name.clone(),
                    config.max_artifact_bytes,
                    config.nats_replicas,
                    config.nats_connect_timeout,
                    match &config.secrets_key_file {
                        Some(path) => Some(Arc::new(crate::cluster::seal::Keyring::read(path)?)),
                        None => None,
                    },
                )
                .await
                .context("joining the cluster")?;
                functions.set_replicator(cluster.clone());
                cluster.start(functions.clone(), stopping.clone(), &readiness);
                Some(cluster)
            }
            None => None,
        };

        for function in &config.functions {
            let namespace = &function.function.namespace;
            if !functions.namespace_exists(namespace) {
                let record = Namespace {
                    name: namespace.clone(),
                    ..Namespace::default()
                };
                let create = Change::PutNamespace {
                    namespace: record,
                    mode: PutMode::Create,
                };
                functions
                    .apply(create, Origin::Local)
                    .await
                    .with_context(|| format!("creating namespace {namespace}"))?;
            }
            for archive in &function.archives {
                functions
                    .upload_files(archive.clone())
                    .await
                    .with_context(|| format!("storing the files of {}", function.function))?;
            }
            let deployment = FunctionDeployment {
                service: function.function.name.clone(),
                image: function
                    .oci
                    .clone()
                    .unwrap_or_else(|| function.wasm.display().to_string()),
                namespace: Some(namespace.clone()),
                settings: function.settings.clone(),
            };
            functions
                .apply(Change::deploy(deployment, PutMode::Upsert), Origin::Local)
                .await
                .with_context(|| {
                    format!(
                        "loading function {} from {}",
                        function.function,
                        function.wasm.display()
                    )
                })?;
        }
        functions.precompile_in_background();

        functions.sweep_idle(IDLE_SWEEP_INTERVAL, stopping.clone());
        functions.collect_in_background(config.artifact_grace, stopping.clone());
        if config.auth.is_none() {
            tracing::info!(
                "basic auth is off for /system/* (loopback address, no credentials given)"
            );
        }
        let api = Api {
            functions: functions.clone(),
            max_artifact_bytes: config.max_artifact_bytes,
            shutdown: stopping.clone(),
        };
        // One queue for the whole cluster in cluster mode; else this node's own, on disk.
        let store: Arc<dyn crate::queue::CallStore> = match &cluster {
            Some(cluster) => Arc::new(
                crate::cluster::calls::JetStreamStore::open(
                    cluster.jetstream(),
                    config.queue.max_queued,
                    cluster.replicas(),
                )
                .await
                .context("opening the cluster's async queue")?,
            ),
            None => Arc::new(
                crate::queue::SqliteStore::open(&config.state_dir.join("queue.sqlite3"))
                    .await
                    .context("opening the async queue")?,
            ),
        };
        let mut queue_config = config.queue.clone();
        if let Some(cluster) = &cluster {
            // A call travels in one NATS message: a larger body is refused with 413 at once.
            let limit = cluster.max_async_body();
            if queue_config.max_body > limit {
                tracing::info!(
                    limit,
                    "async request bodies are limited by the NATS server's max_payload"
                );
                queue_config.max_body = limit;
            }
        }
        // Its own signal, so `AsyncQueue::stop` stops only the queue; the gateway's stops it too.
        let async_queue = crate::queue::AsyncQueue::open(
            store,
            queue_config,
            stopping.child_token(),
            traces.clone(),
        )
        .await
        .context("opening the async queue")?;
        let gateway = Gateway::new(api, metrics.clone(), config.auth.clone())
            .with_http_limits(config.http_limits)
            .with_queue(async_queue.clone())
            .with_readiness(readiness)
            .with_traces(traces.clone())
            .with_tls(tls.is_some());
        async_queue.start(Arc::new(gateway.clone()));
        if let Some(tls) = &tls {
            // Stops with the gateway's other background tasks; the handle is not needed.
            drop(tls.watch(stopping.clone()));
        }
        crate::connectors::start(
            gateway.clone(),
            functions,
            metrics,
            cluster,
            stopping.clone(),
        );
        Ok(App {
            gateway,
            queue: async_queue,
            server: config.server,
            tls,
            traces,
            stopping: stop_on_drop,
        })
    }

    /// Answers one request, as [`App::serve`] would answer it on a connection (without a client
    /// address, so no `X-Forwarded-For` is added).
    pub async fn handle<B>(&self, request: ::http::Request<B>) -> ::http::Response<GatewayBody>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        self.gateway.handle(request, None).await
    }

    /// Serves on `listener` until `shutdown` completes; then stops taking async calls, drains the
    /// connections and the calls still running, each within the shutdown timeout.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let App {
            gateway,
            queue,
            server,
            tls,
            traces,
            stopping,
        } = self;
        let token = stopping.disarm();
        let queue_on_shutdown = queue.clone();
        let stop = token.clone();
        let shutdown = async move {
            shutdown.await;
            // No new async calls start; those running finish while connections drain.
            queue_on_shutdown.stop();
            stop.cancel();
        };
        let shutdown_timeout = server.shutdown_timeout;
        let acceptor = tls.as_ref().map(Tls::acceptor);
        let served = server::serve(listener, gateway, server, acceptor, shutdown).await;
        queue.drain(shutdown_timeout).await;
        // Also when serving failed before the shutdown came.
        token.cancel();
        if let Some(traces) = traces {
            traces.shutdown().await;
        }
        served
    }
}

/// Builds the [`App`], binds `config.listen`, prints the address, and serves until SIGINT or SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let listen = config.listen;
    let scheme = if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    if config.auth.is_some() && config.server.tls.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "basic auth over plain HTTP on a non-loopback address: passwords cross the network in the \
             clear; serve HTTPS (--tls-cert, --tls-key) or put a TLS proxy in front, and pass \
             --require-tls to refuse to start without it"
        );
    }
    let app = App::build(config).await?;
    // Before the address is announced: see `shutdown_signal`.
    let signal = server::shutdown_signal().context("installing the SIGINT/SIGTERM handlers")?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let address = listener.local_addr().context("reading the bound address")?;
    // One line on stdout that scripts and tests wait for.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "wasmgate listening on {scheme}://{address}")?;
    stdout.flush()?;
    drop(stdout);
    app.serve(listener, signal).await
}
