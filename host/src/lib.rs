//! The `wasmgate` binary's library: the gateway ([`gateway`]), its server loop ([`server`]), and the
//! command line ([`cli`]). `main.rs` only parses arguments, installs logging and calls [`run`].

pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod duration;
pub mod functions;
pub mod gateway;
pub mod http_limits;
pub mod keyvalue;
pub mod logwriter;
pub mod metrics;
pub mod names;
pub mod oci;
pub mod openfaas;
pub mod paint;
pub mod quantity;
pub mod queue;
pub mod server;
pub mod stack;
pub mod state;
pub mod templates;
pub mod time;
pub mod ui;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use wasmgate_runtime::Runtime;

use crate::api::Api;
use crate::cli::{Cli, Command, SecretAction, ServeConfig};
use crate::functions::{DeployMode, Functions};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::openfaas::{FunctionDeployment, Namespace};

/// How often idle functions that opted into scale to zero are looked at.
const IDLE_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args.into_config()?).await,
        Command::New {
            gateway,
            name,
            lang,
            wasi,
        } => templates::new_function(&gateway, &name, lang, wasi),
        Command::Build { gateway, filter } => templates::build(&gateway, &filter),
        Command::Up { gateway, filter } => {
            // As faas-cli up: build, push (the functions with an OCI image), deploy.
            templates::build(&gateway, &filter)?;
            let (stack, _) = gateway.read_stack()?;
            if stack.functions.iter().any(|(name, f)| {
                (filter.is_empty() || filter.contains(name)) && oci::Reference::looks_like(&f.image)
            }) {
                commands::push(&gateway, &filter).await?;
            }
            commands::deploy(&gateway, &filter).await
        }
        Command::Push { gateway, filter } => commands::push(&gateway, &filter).await,
        Command::Deploy { gateway, filter } => commands::deploy(&gateway, &filter).await,
        Command::List {
            gateway,
            namespace,
            json,
        } => commands::list(&gateway, namespace.as_deref(), json).await,
        Command::Describe {
            gateway,
            name,
            namespace,
            json,
        } => commands::describe(&gateway, &name, &namespace, json).await,
        Command::Invoke {
            gateway,
            name,
            method,
            headers,
            query,
            asynchronous,
            callback_url,
        } => {
            let call = commands::Call {
                name: &name,
                method: &method,
                headers: &headers,
                query: &query,
                asynchronous,
                callback_url: callback_url.as_deref(),
            };
            commands::invoke(&gateway, &call).await
        }
        Command::Remove {
            gateway,
            name,
            namespace,
        } => commands::remove(&gateway, &name, &namespace).await,
        Command::Logs {
            gateway,
            name,
            namespace,
            tail,
            since,
            follow,
        } => commands::logs(&gateway, &name, &namespace, tail, since.as_deref(), follow).await,
        Command::Secret { action } => match action {
            SecretAction::Create {
                gateway,
                name,
                from_literal,
                namespace,
            } => {
                commands::secret_create(&gateway, &name, &namespace, from_literal.as_deref()).await
            }
            SecretAction::List {
                gateway,
                namespace,
                json,
            } => commands::secret_list(&gateway, &namespace, json).await,
            SecretAction::Remove {
                gateway,
                name,
                namespace,
            } => commands::secret_remove(&gateway, &name, &namespace).await,
        },
        Command::Login {
            gateway,
            username,
            password_stdin,
            password,
        } => commands::login(&gateway, &username, password.as_deref(), password_stdin).await,
        Command::Logout { gateway } => commands::logout(&gateway),
        Command::Version { gateway, json } => commands::version(&gateway, json).await,
    }
}

/// Restores the state directory, deploys the stack file's functions, binds, prints the address, and
/// serves until SIGINT or SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    // Compiled code is kept beside the state, so a restart never recompiles what it compiled before.
    let mut runtime_config = config.runtime.clone();
    runtime_config.cache_dir = Some(config.state_dir.join("cache"));
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
    let runtime = Runtime::with_services(runtime_config, metrics.clone(), Arc::new(keyvalue))
        .context("starting the runtime")?;
    let functions = Functions::open(
        &config.state_dir,
        runtime,
        metrics.clone(),
        config.max_artifact_bytes,
    )?;

    let cluster = match &config.nats {
        Some(url) => {
            let cluster = cluster::Cluster::connect(
                url,
                config.node_name.clone(),
                config.max_artifact_bytes,
                config.nats_replicas,
            )
            .await
            .context("joining the cluster")?;
            functions.set_replicator(cluster.clone());
            cluster.start(functions.clone());
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
            functions
                .put_namespace(record, true)
                .await
                .map_err(|e| anyhow::anyhow!("creating namespace {namespace}: {}", e.message))?;
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
            .deploy(deployment, DeployMode::Upsert)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "loading function {} from {}: {}",
                    function.function,
                    function.wasm.display(),
                    e.message
                )
            })?;
    }
    functions.precompile_in_background();

    let (stopping, shutdown_watch) = tokio::sync::watch::channel(false);
    functions.sweep_idle(IDLE_SWEEP_INTERVAL, shutdown_watch.clone());
    if config.auth.is_none() {
        tracing::info!("basic auth is off for /system/* (loopback address, no credentials given)");
    }
    let api = Api {
        functions,
        max_artifact_bytes: config.max_artifact_bytes,
        shutdown: shutdown_watch,
    };
    // One queue for the whole cluster in cluster mode; else this node's own, on disk.
    let store: Arc<dyn queue::CallStore> = match &cluster {
        Some(cluster) => Arc::new(
            queue::JetStreamStore::open(
                cluster.jetstream(),
                config.queue.max_queued,
                cluster.replicas(),
            )
            .await
            .context("opening the cluster's async queue")?,
        ),
        None => Arc::new(
            queue::SqliteStore::open(&config.state_dir.join("queue.sqlite3"))
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
    let async_queue =
        queue::AsyncQueue::open(store, queue_config).context("opening the async queue")?;
    let gateway = Gateway::new(api, metrics, config.auth.clone())
        .with_http_limits(config.http_limits)
        .with_queue(async_queue.clone());
    async_queue.start(Arc::new(gateway.clone()));

    // Before the address is announced: see `shutdown_signal`.
    let signal = server::shutdown_signal().context("installing the SIGINT/SIGTERM handlers")?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;
    // One line on stdout that scripts and tests wait for.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "wasmgate listening on http://{address}")?;
    stdout.flush()?;
    drop(stdout);

    let queue_on_shutdown = async_queue.clone();
    let shutdown = async move {
        signal.await;
        // No new async calls start; those running finish while connections drain.
        queue_on_shutdown.stop();
        let _ = stopping.send(true);
    };
    let shutdown_timeout = config.server.shutdown_timeout;
    let served = server::serve(listener, gateway, config.server, shutdown).await;
    async_queue.drain(shutdown_timeout).await;
    served
}

/// An error and its causes on one line (`outer: cause: root cause`), for errors whose `Display` shows
/// only the outermost layer (hyper's, for one).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
