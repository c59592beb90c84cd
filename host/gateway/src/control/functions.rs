//! The deployed functions: their records in the state directory, their code in the runtime, and the
//! rules that keep both in step. Deploy, update and remove are serialised; each validates first,
//! persists (fsynced) second, and switches the runtime last, so an acknowledged change survives a
//! crash and a refused one leaves nothing behind.
//!
//! Over 600 lines, to be split: the registry still does its eight jobs here (records, namespaces,
//! secrets and their folder, image resolution, deployment to spec, the idle sweeper, replication);
//! issue 15 splits it. Its errors are typed already (`error.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, DirBuilder, DirBuilderExt, OpenOptions, OpenOptionsExt};
use wasmgate_runtime::{FunctionSpec, GuestDir, HostPattern, Limits, Runtime, WasmSource, World};

use wasmgate_openfaas::quantity::{format_memory, parse_memory};

use super::error::Error;
use crate::observe::metrics::Metrics;
use crate::storage::state::{StateDir, StateError};
use wasmgate_openfaas::digest::Digest;
use wasmgate_openfaas::duration::parse_duration;
use wasmgate_openfaas::names::{DEFAULT_NAMESPACE, FunctionRef};
use wasmgate_openfaas::types::{
    FunctionDeployment, FunctionRecord, FunctionStatus, Namespace, SECRETS_GUEST_PATH,
};

/// Largest component accepted by upload or from a path, when nothing else is said.
pub const DEFAULT_MAX_ARTIFACT_BYTES: usize = 64 * 1024 * 1024;
/// OpenFaaS's default idle time before scale to zero, for functions that opt in without a duration.
pub const DEFAULT_SCALE_ZERO_DURATION: Duration = Duration::from_secs(15 * 60);
const LABEL_SCALE_ZERO: &str = "com.openfaas.scale.zero";
const LABEL_SCALE_ZERO_DURATION: &str = "com.openfaas.scale.zero-duration";
const LABEL_SCALE_MIN: &str = "com.openfaas.scale.min";
/// Opt-in instance reuse: the number of requests one instance may serve (see `FunctionSpec`).
pub const ANNOTATION_INSTANCE_REUSE: &str = "com.wasmgate.instance-reuse";
/// Opt-in concurrency on a reused instance of a wasi:http 0.3 function: how many requests it may
/// serve at the same time (see `FunctionSpec::max_instance_concurrency`).
pub const ANNOTATION_INSTANCE_CONCURRENCY: &str = "com.wasmgate.instance-concurrency";
/// Hosts a function's outbound HTTP may reach, comma-separated (`api.example.com, *.internal:8443`).
pub const ANNOTATION_ALLOWED_HOSTS: &str = "com.wasmgate.allowed-hosts";
/// Annotation: key-value buckets the function may open besides `default`, comma-separated.
pub const ANNOTATION_KEYVALUE_BUCKETS: &str = "com.wasmgate.keyvalue.buckets";
/// Annotation prefix: `com.wasmgate.config.KEY: VALUE` is `KEY` in the function's `wasi:config`.
pub const ANNOTATION_CONFIG_PREFIX: &str = "com.wasmgate.config.";
/// Where, inside the state directory, each function's own secrets directory is assembled.
const RUN_SECRETS: &str = "run/secrets";

/// Whether a deploy creates (POST) or updates (PUT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployMode {
    /// POST: the function must not exist.
    Create,
    /// PUT: the function must exist.
    Update,
    /// From a stack file at start-up: create or update.
    Upsert,
}

/// The functions, namespaces and secrets of the gateway.
pub struct Functions {
    runtime: Runtime,
    state: Arc<StateDir>,
    metrics: Arc<Metrics>,
    /// `<state>/run`, opened once; per-function secret directories are built inside it.
    run: Dir,
    /// The host path of `<state>/run/secrets`, which the runtime preopens for guests.
    run_secrets_path: PathBuf,
    records: RwLock<BTreeMap<String, FunctionRecord>>,
    namespaces: RwLock<BTreeMap<String, Namespace>>,
    /// Serialises every change, so records, secrets directories and the runtime move together.
    writes: tokio::sync::Mutex<()>,
    max_artifact_bytes: usize,
    /// The OCI registry client, made on the first pull (it reads the Docker config file).
    registries: std::sync::OnceLock<wasmgate_oci::RegistryClient>,
    /// Where deploys and removals made here are published for other nodes (cluster mode).
    replicator: std::sync::OnceLock<Arc<dyn Replicator>>,
    /// Live nodes of the cluster, from their heartbeats (cluster mode): every node serves every
    /// function, so each is a replica.
    live_nodes: std::sync::OnceLock<Arc<std::sync::atomic::AtomicU64>>,
}

/// Publishes the changes made on this node so that other nodes apply them (see `cluster.rs`).
pub trait Replicator: Send + Sync + 'static {
    /// A function was deployed here: its record, and its component (stored by digest).
    fn function_put(
        &self,
        record: FunctionRecord,
        wasm: Vec<u8>,
    ) -> futures::future::BoxFuture<'static, anyhow::Result<()>>;
    /// A function (`name.namespace`) was removed here.
    fn function_removed(
        &self,
        key: String,
    ) -> futures::future::BoxFuture<'static, anyhow::Result<()>>;
    /// A namespace was created or updated here.
    fn namespace_put(
        &self,
        namespace: Namespace,
    ) -> futures::future::BoxFuture<'static, anyhow::Result<()>>;
    /// A namespace was deleted here.
    fn namespace_removed(
        &self,
        name: String,
    ) -> futures::future::BoxFuture<'static, anyhow::Result<()>>;
    /// A component was uploaded here (`digest` is `sha256:<hex>`).
    fn artifact_put(
        &self,
        digest: String,
        wasm: Vec<u8>,
    ) -> futures::future::BoxFuture<'static, anyhow::Result<()>>;
    /// A component some node has (`None` when no node has it).
    fn artifact_get(
        &self,
        digest: String,
    ) -> futures::future::BoxFuture<'static, anyhow::Result<Option<Vec<u8>>>>;
    /// A secret was set (`Some`) or deleted (`None`) here.
    fn secret_changed(
        &self,
        namespace: String,
        name: String,
        value: Option<Vec<u8>>,
    ) -> futures::future::BoxFuture<'static, anyhow::Result<()>>;
}

/// Where a change comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A client of this node: published to the other nodes after it is applied.
    Local,
    /// Another node: applied only (its component is already in the artifact store).
    Remote,
}

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Functions").finish_non_exhaustive()
    }
}

impl Functions {
    /// Opens the state directory and registers every function recorded there. Functions are loaded
    /// lazily: the gateway serves at once, and a background task warms those with replicas > 0.
    pub fn open(
        state_path: &Path,
        runtime: Runtime,
        metrics: Arc<Metrics>,
        max_artifact_bytes: usize,
    ) -> anyhow::Result<Arc<Self>> {
        use anyhow::Context;
        let state = Arc::new(
            StateDir::open(state_path)
                .with_context(|| format!("opening state directory {}", state_path.display()))?,
        );
        let root = Dir::open_ambient_dir(state_path, ambient_authority())
            .with_context(|| format!("opening {}", state_path.display()))?;
        // Derived data: rebuilt from the records at every start.
        let _ = root.remove_dir_all("run");
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        root.create_dir_with(RUN_SECRETS, &builder)
            .context("creating run/secrets")?;
        let run = root.open_dir("run").context("opening run/")?;

        let (namespaces, problems) = state
            .load_namespaces::<Namespace>()
            .context("reading namespaces")?;
        for problem in problems {
            tracing::warn!(path = %problem.path, reason = %problem.reason, "skipped a damaged namespace record");
        }
        let mut namespaces: BTreeMap<String, Namespace> = namespaces.into_iter().collect();
        namespaces
            .entry(DEFAULT_NAMESPACE.to_string())
            .or_insert_with(|| Namespace {
                name: DEFAULT_NAMESPACE.to_string(),
                ..Namespace::default()
            });

        let functions = Arc::new(Functions {
            runtime,
            state,
            metrics,
            run,
            run_secrets_path: state_path.join(RUN_SECRETS),
            records: RwLock::new(BTreeMap::new()),
            namespaces: RwLock::new(namespaces),
            writes: tokio::sync::Mutex::new(()),
            max_artifact_bytes,
            registries: std::sync::OnceLock::new(),
            replicator: std::sync::OnceLock::new(),
            live_nodes: std::sync::OnceLock::new(),
        });

        let (records, problems) = functions
            .state
            .load_functions::<FunctionRecord>()
            .context("reading functions")?;
        for problem in problems {
            tracing::warn!(path = %problem.path, reason = %problem.reason, "skipped a damaged function record");
        }
        for (namespace, name, record) in records {
            let function = match FunctionRef::new(&name, Some(&namespace)) {
                Ok(function) => function,
                Err(error) => {
                    tracing::warn!(%error, "skipped a function record with an invalid name");
                    continue;
                }
            };
            let Some(digest) = Digest::parse(&record.digest) else {
                tracing::warn!(function = %function, digest = %record.digest, "skipped a function record with an invalid digest");
                continue;
            };
            if !functions.state.has_artifact(&digest) {
                tracing::warn!(function = %function, %digest, "skipped a function whose artifact is missing");
                continue;
            }
            let spec = match functions.spec(&function, &record.deployment) {
                Ok(spec) => spec,
                Err(error) => {
                    tracing::warn!(function = %function, %error, "skipped a function whose secrets cannot be prepared");
                    continue;
                }
            };
            functions
                .runtime
                .register(&function.key(), functions.source(digest), spec);
            functions
                .metrics
                .set_replicas(&function.key(), record.replicas);
            functions.write_records().insert(function.key(), record);
        }
        functions.metrics.set_functions_loaded(0);
        tracing::info!(functions = functions.read_records().len(), "state restored");
        Ok(functions)
    }

    /// The runtime that serves the functions.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Compiles, in the background, every function whose code is not in the disk cache yet (an
    /// artifact restored from another machine, or after a wasmtime upgrade). Nothing is loaded: each
    /// function loads on its first request, from the disk cache.
    pub fn precompile_in_background(self: &Arc<Self>) {
        let functions = self.clone();
        tokio::spawn(async move {
            let keys: Vec<String> = functions.read_records().keys().cloned().collect();
            let mut compiled = 0;
            for key in keys {
                match functions.runtime.precompile(&key).await {
                    Ok(true) => compiled += 1,
                    Ok(false) => {}
                    Err(error) => tracing::warn!(function = %key, %error, "could not precompile"),
                }
            }
            if compiled > 0 {
                tracing::info!(
                    compiled,
                    "precompiled functions missing from the code cache"
                );
            }
        });
    }

    /// Unloads, every `interval`, the functions that opted into scale to zero and sat idle longer
    /// than their `com.openfaas.scale.zero-duration`. Stops when `stop` is cancelled.
    pub fn sweep_idle(
        self: &Arc<Self>,
        interval: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let functions = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = ticker.tick() => functions.unload_idle(),
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    fn unload_idle(&self) {
        let candidates: Vec<(String, Duration)> = self
            .read_records()
            .iter()
            .filter_map(|(key, record)| {
                scale_zero_after(&record.deployment).map(|d| (key.clone(), d))
            })
            .collect();
        for (key, after) in candidates {
            let idle = self.runtime.idle_for(&key).unwrap_or_default();
            if idle >= after && self.runtime.unload(&key) {
                tracing::info!(function = %key, idle = ?idle, "scaled to zero after being idle");
            }
        }
        self.metrics
            .set_functions_loaded(self.runtime.loaded_count() as u64);
    }

    /// Reads a component from `image`: an uploaded artifact (`sha256:...`) or a `.wasm` path.
    async fn resolve_image(&self, image: &str) -> Result<(Vec<u8>, Option<Digest>), Error> {
        if image.starts_with("sha256:") {
            let digest = Digest::parse(image).ok_or_else(|| {
                Error::invalid(format!("image {image:?} is not a valid sha256 digest"))
            })?;
            let bytes = match self.state.read_artifact(&digest)? {
                Some(bytes) => Some(bytes),
                // Uploaded to another node of the cluster.
                None => match self.replicator.get() {
                    Some(replicator) => {
                        let bytes =
                            replicator
                                .artifact_get(digest.to_string())
                                .await
                                .map_err(|e| {
                                    Error::internal(
                                        "reading the cluster's artifacts",
                                        format!("{e:#}"),
                                    )
                                })?;
                        if let Some(bytes) = &bytes {
                            if Digest::of(bytes) != digest {
                                return Err(Error::internal(
                                    "reading the cluster's artifacts",
                                    format!(
                                        "the object store's {digest} does not match its digest"
                                    ),
                                ));
                            }
                            self.store_artifact(bytes.clone()).await?;
                        }
                        bytes
                    }
                    None => None,
                },
            };
            let bytes = bytes.ok_or_else(|| {
                Error::invalid(format!(
                    "no artifact {digest} was uploaded; upload it with POST /system/artifacts first"
                ))
            })?;
            return Ok((bytes, Some(digest)));
        }
        if wasmgate_oci::Reference::looks_like(image) {
            return self.pull(image).await;
        }
        let path = PathBuf::from(image);
        let max = self.max_artifact_bytes;
        let read = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
            let metadata = std::fs::metadata(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if metadata.len() > max as u64 {
                return Err(format!(
                    "{} is larger than the {max} byte limit",
                    path.display()
                ));
            }
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        })
        .await
        .map_err(|e| Error::internal("reading the image", e))?;
        Ok((read.map_err(Error::InvalidInput)?, None))
    }

    /// Resolves an OCI reference to its component: the manifest is read each time (a tag may have
    /// moved), the layer is downloaded only when no artifact has its digest yet.
    async fn pull(&self, image: &str) -> Result<(Vec<u8>, Option<Digest>), Error> {
        let reference = wasmgate_oci::Reference::parse(image)
            .map_err(|e| Error::invalid(format!("image {image:?}: {e:#}")))?;
        let client = match self.registries.get() {
            Some(client) => client,
            None => {
                let client = wasmgate_oci::RegistryClient::new().map_err(|e| {
                    Error::internal("reading registry credentials", format!("{e:#}"))
                })?;
                self.registries.get_or_init(|| client)
            }
        };
        let state = self.state.clone();
        let pulled = client
            .pull(&reference, self.max_artifact_bytes, |layer| {
                let digest = Digest::parse(layer)?;
                state.read_artifact(&digest).ok().flatten()
            })
            .await
            .map_err(|e| Error::invalid(format!("pulling {reference}: {e:#}")))?;
        tracing::info!(image = %reference, manifest = %pulled.manifest_digest,
            layer = %pulled.layer_digest, "resolved an OCI image");
        let digest = Digest::parse(&pulled.layer_digest)
            .ok_or_else(|| Error::invalid(format!("{reference}: unusable layer digest")))?;
        if !self.state.has_artifact(&digest) {
            self.runtime
                .validate(pulled.bytes.clone(), Some(digest.hex()))
                .await
                .map_err(Error::compiling)?;
            let state = self.state.clone();
            let bytes = pulled.bytes.clone();
            tokio::task::spawn_blocking(move || state.put_artifact(&bytes))
                .await
                .map_err(|e| Error::internal("storing the artifact", e))??;
        }
        Ok((pulled.bytes, Some(digest)))
    }

    /// Whether an uploaded component with this digest is stored.
    pub fn has_artifact(&self, digest: &Digest) -> bool {
        self.state.has_artifact(digest)
    }

    /// Validates and stores an uploaded component; identical bytes are stored once. Returns its
    /// digest and the world of `wasi:http` it exports.
    pub async fn upload(&self, bytes: Vec<u8>) -> Result<(Digest, World), Error> {
        if bytes.is_empty() {
            return Err(Error::invalid(
                "the body is empty; send the .wasm component as the request body",
            ));
        }
        let world = self
            .runtime
            .validate(bytes.clone(), Some(Digest::of(&bytes).hex()))
            .await
            .map_err(Error::compiling)?;
        let state = self.state.clone();
        let stored = bytes.clone();
        let (digest, _) = tokio::task::spawn_blocking(move || state.put_artifact(&stored))
            .await
            .map_err(|e| Error::internal("storing the artifact", e))??;
        // In a cluster, a deploy of this digest may reach another node.
        if let Some(replicator) = self.replicator.get() {
            replicator
                .artifact_put(digest.to_string(), bytes)
                .await
                .map_err(|e| {
                    Error::internal("sharing the artifact with the cluster", format!("{e:#}"))
                })?;
        }
        Ok((digest, world))
    }

    /// Deploys or updates a function. Validates everything before anything is stored.
    pub async fn deploy(
        &self,
        deployment: FunctionDeployment,
        mode: DeployMode,
    ) -> Result<(), Error> {
        self.deploy_from(deployment, mode, Origin::Local, None)
            .await
    }

    /// Counts replicas as the cluster's live nodes (kept up to date in `count`) from now on.
    pub fn set_live_nodes(&self, count: Arc<std::sync::atomic::AtomicU64>) {
        let _ = self.live_nodes.set(count);
    }

    /// Publishes this node's changes through `replicator` from now on (cluster mode).
    pub fn set_replicator(&self, replicator: Arc<dyn Replicator>) {
        let _ = self.replicator.set(replicator);
    }

    /// Applies a function record published by another node, unless this node has it already. Its
    /// artifact must be in the artifact store (see [`Functions::store_artifact`]); a namespace it
    /// names is created here if missing.
    pub async fn apply_remote(&self, record: FunctionRecord) -> Result<bool, Error> {
        let function = FunctionRef::new(
            &record.deployment.service,
            record.deployment.namespace.as_deref(),
        )
        .map_err(|e| Error::invalid(e.to_string()))?;
        if let Some(local) = self.read_records().get(&function.key())
            && local.digest == record.digest
            && serde_json::to_value(&local.deployment).ok()
                == serde_json::to_value(&record.deployment).ok()
        {
            return Ok(false);
        }
        if !self.namespace_exists(&function.namespace) {
            let namespace = Namespace {
                name: function.namespace.clone(),
                ..Namespace::default()
            };
            // Another change may have created it meanwhile.
            let _ = self.put_namespace(namespace, true).await;
        }
        let digest = Digest::parse(&record.digest).ok_or_else(|| {
            Error::invalid(format!("a record with a bad digest {:?}", record.digest))
        })?;
        self.deploy_from(
            record.deployment,
            DeployMode::Upsert,
            Origin::Remote,
            Some(digest),
        )
        .await?;
        Ok(true)
    }

    /// Removes a function another node removed; nothing if it is not here.
    pub async fn remove_remote(&self, function: &FunctionRef) -> Result<bool, Error> {
        match self.remove_from(function, Origin::Remote).await {
            Ok(()) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Stores a component another node published (verified against `digest` by the caller).
    pub async fn store_artifact(&self, bytes: Vec<u8>) -> Result<Digest, Error> {
        let state = self.state.clone();
        let (digest, _) = tokio::task::spawn_blocking(move || state.put_artifact(&bytes))
            .await
            .map_err(|e| Error::internal("storing the artifact", e))??;
        Ok(digest)
    }

    async fn deploy_from(
        &self,
        mut deployment: FunctionDeployment,
        mode: DeployMode,
        origin: Origin,
        remote_digest: Option<Digest>,
    ) -> Result<(), Error> {
        let function = FunctionRef::new(&deployment.service, deployment.namespace.as_deref())
            .map_err(|e| Error::invalid(e.to_string()))?;
        deployment.namespace = Some(function.namespace.clone());
        if deployment.image.trim().is_empty() {
            return Err(Error::invalid("image is required"));
        }
        let key = function.key();
        let _writes = self.writes.lock().await;

        let existing = self.read_records().get(&key).cloned();
        match (mode, &existing) {
            (DeployMode::Update, None) => {
                return Err(Error::NotFound(format!("function {function}")));
            }
            (DeployMode::Create, Some(_)) => {
                return Err(Error::invalid(format!(
                    "function {function} already exists; update it with PUT"
                )));
            }
            _ => {}
        }
        if !self.read_namespaces().contains_key(&function.namespace) {
            return Err(Error::invalid(format!(
                "namespace {} does not exist",
                function.namespace
            )));
        }
        let known_secrets = self.state.list_secrets(&function.namespace)?;
        for secret in deployment.settings.secrets.iter().flatten() {
            if !known_secrets.contains(secret) {
                return Err(Error::invalid(format!(
                    "secret {secret:?} not found in namespace {}",
                    function.namespace
                )));
            }
        }
        if let Some(value) = deployment
            .settings
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SCALE_ZERO_DURATION))
        {
            parse_duration(value)
                .map_err(|e| Error::invalid(format!("label {LABEL_SCALE_ZERO_DURATION}: {e}")))?;
        }
        instance_reuse(&deployment)?;
        instance_concurrency(&deployment)?;
        function_limits(&deployment, self.runtime.config())?;
        allowed_hosts(&deployment)?;
        keyvalue_buckets(&deployment)?;
        wasmgate_openfaas::retry::RetryPolicy::from_annotations(
            deployment.settings.annotations.as_ref(),
        )
        .map_err(|e| Error::invalid(format!("annotation {e}")))?;
        let replicas = match deployment
            .settings
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SCALE_MIN))
        {
            Some(min) => min.parse::<u64>().map_err(|_| {
                Error::invalid(format!("label {LABEL_SCALE_MIN} must be a whole number"))
            })?,
            None => existing.as_ref().map_or(1, |r| r.replicas.max(1)),
        };

        let (wasm, uploaded) = match &remote_digest {
            // Another node resolved the image; its component is here by digest.
            Some(digest) => {
                let bytes = self.state.read_artifact(digest)?.ok_or_else(|| {
                    Error::internal(
                        "applying a remote deploy",
                        format!("artifact {digest} is missing"),
                    )
                })?;
                (bytes, Some(digest.clone()))
            }
            None => self.resolve_image(&deployment.image).await?,
        };
        let digest = uploaded.unwrap_or_else(|| Digest::of(&wasm));
        let spec = self.spec_preview(&function, &deployment);
        let prepared = self
            .runtime
            .prepare(
                &key,
                wasm.clone(),
                self.source(digest.clone()),
                spec,
                replicas > 0,
            )
            .await
            .map_err(Error::compiling)?;
        let world = prepared.world();
        if world != World::P3 && instance_concurrency(&deployment)? > 1 {
            return Err(Error::invalid(format!(
                "{ANNOTATION_INSTANCE_CONCURRENCY} needs a wasi:http 0.3 component (whose handler is \
                 async); {function} exports {world}, which serves one request at a time"
            )));
        }
        tracing::info!(function = %function, %world, "component validated");

        // The function's secrets directory is derived data: assemble it before persisting, so a
        // failure here leaves no record behind.
        self.build_secrets_dir(&function, &deployment)?;

        // Valid: persist, then switch.
        let record = FunctionRecord {
            deployment,
            digest: digest.to_string(),
            created_at: existing.map(|r| r.created_at).unwrap_or_else(|| {
                wasmgate_openfaas::time::format_rfc3339(SystemTime::now(), false)
            }),
            replicas,
            world: Some(world.as_str().to_string()),
        };
        let state = self.state.clone();
        let stored = record.clone();
        let (namespace, name) = (function.namespace.clone(), function.name.clone());
        tokio::task::spawn_blocking(move || -> Result<(), StateError> {
            if !state.has_artifact(&digest) {
                state.put_artifact(&wasm)?;
            }
            state.put_function(&namespace, &name, &stored)
        })
        .await
        .map_err(|e| Error::internal("storing the function", e))??;
        self.runtime.install(prepared);
        self.metrics.set_replicas(&key, replicas);
        self.metrics
            .set_functions_loaded(self.runtime.loaded_count() as u64);
        self.write_records().insert(key, record.clone());
        tracing::info!(function = %function, ?mode, ?origin, "function deployed");
        if origin == Origin::Local
            && let Some(replicator) = self.replicator.get()
        {
            let wasm = self
                .state
                .read_artifact(
                    &Digest::parse(&record.digest)
                        .ok_or_else(|| Error::internal("publishing", "a bad digest"))?,
                )?
                .unwrap_or_default();
            replicator.function_put(record, wasm).await.map_err(|e| {
                Error::internal(
                    "publishing the deploy to the cluster (it is live on this node)",
                    format!("{e:#}"),
                )
            })?;
        }
        Ok(())
    }

    /// Removes a function.
    pub async fn remove(&self, function: &FunctionRef) -> Result<(), Error> {
        self.remove_from(function, Origin::Local).await
    }

    async fn remove_from(&self, function: &FunctionRef, origin: Origin) -> Result<(), Error> {
        let key = function.key();
        let _writes = self.writes.lock().await;
        if !self.read_records().contains_key(&key) {
            return Err(Error::NotFound(format!("function {function}")));
        }
        self.state
            .delete_function(&function.namespace, &function.name)?;
        self.runtime.remove(&key);
        let _ = self.run.remove_dir_all(self.secrets_rel(function));
        self.write_records().remove(&key);
        self.metrics.forget_function(&key);
        self.metrics
            .set_functions_loaded(self.runtime.loaded_count() as u64);
        tracing::info!(function = %function, ?origin, "function removed");
        if origin == Origin::Local
            && let Some(replicator) = self.replicator.get()
        {
            replicator.function_removed(key).await.map_err(|e| {
                Error::internal(
                    "publishing the removal to the cluster (it is gone from this node)",
                    format!("{e:#}"),
                )
            })?;
        }
        Ok(())
    }

    /// Sets replicas: 0 unloads the compiled code, more loads it (in the background).
    pub async fn scale(&self, function: &FunctionRef, replicas: u64) -> Result<(), Error> {
        let key = function.key();
        let _writes = self.writes.lock().await;
        let Some(mut record) = self.read_records().get(&key).cloned() else {
            return Err(Error::NotFound(format!("function {function}")));
        };
        record.replicas = replicas;
        self.state
            .put_function(&function.namespace, &function.name, &record)?;
        self.write_records().insert(key.clone(), record);
        self.metrics.set_replicas(&key, replicas);
        if replicas == 0 {
            self.runtime.unload(&key);
        } else {
            let runtime = self.runtime.clone();
            tokio::spawn(async move {
                if let Err(error) = runtime.warm(&key).await {
                    tracing::warn!(function = %key, %error, "could not load after scaling up");
                }
            });
        }
        self.metrics
            .set_functions_loaded(self.runtime.loaded_count() as u64);
        Ok(())
    }

    /// The status of one function.
    pub fn status(&self, function: &FunctionRef) -> Option<FunctionStatus> {
        let key = function.key();
        let record = self.read_records().get(&key).cloned()?;
        Some(self.to_status(&key, record))
    }

    /// The statuses of a namespace's functions, by name.
    pub fn list(&self, namespace: &str) -> Vec<FunctionStatus> {
        let records: Vec<(String, FunctionRecord)> = self
            .read_records()
            .iter()
            .filter(|(_, r)| r.deployment.namespace.as_deref() == Some(namespace))
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        records
            .into_iter()
            .map(|(k, r)| self.to_status(&k, r))
            .collect()
    }

    /// Whether the function is deployed.
    pub fn exists(&self, function: &FunctionRef) -> bool {
        self.read_records().contains_key(&function.key())
    }

    fn to_status(&self, key: &str, record: FunctionRecord) -> FunctionStatus {
        let replicas = match self.live_nodes.get() {
            // Cluster mode: every live node serves every function not scaled to zero.
            Some(live) if record.replicas > 0 => live.load(std::sync::atomic::Ordering::Relaxed),
            Some(_) => 0,
            None => {
                let loaded = self.runtime.is_loaded(key).unwrap_or(false);
                if loaded { record.replicas.max(1) } else { 0 }
            }
        };
        let world = record
            .world
            .or_else(|| self.runtime.world(key).map(|w| w.as_str().to_string()));
        let d = record.deployment;
        FunctionStatus {
            name: d.service,
            image: d.image,
            namespace: d.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            settings: d.settings,
            invocation_count: self.metrics.invocation_count(key),
            replicas,
            available_replicas: replicas,
            created_at: record.created_at,
            world,
            usage: None,
        }
    }

    // Namespaces.

    /// Namespace names, sorted.
    pub fn namespace_names(&self) -> Vec<String> {
        self.read_namespaces().keys().cloned().collect()
    }

    /// One namespace.
    pub fn namespace(&self, name: &str) -> Option<Namespace> {
        self.read_namespaces().get(name).cloned()
    }

    /// Whether the namespace exists.
    pub fn namespace_exists(&self, name: &str) -> bool {
        self.read_namespaces().contains_key(name)
    }

    /// Creates (`create`) or updates a namespace.
    pub async fn put_namespace(&self, namespace: Namespace, create: bool) -> Result<(), Error> {
        self.put_namespace_from(namespace, Some(create), Origin::Local)
            .await
    }

    /// Creates or updates a namespace another node published.
    pub async fn apply_remote_namespace(&self, namespace: Namespace) -> Result<(), Error> {
        if self.namespace(&namespace.name).as_ref() == Some(&namespace) {
            return Ok(());
        }
        self.put_namespace_from(namespace, None, Origin::Remote)
            .await
    }

    /// Deletes a namespace another node deleted (nothing if it is not here or not empty here).
    pub async fn remove_remote_namespace(&self, name: &str) -> Result<(), Error> {
        if !self.namespace_exists(name) {
            return Ok(());
        }
        self.delete_namespace_from(name, Origin::Remote).await
    }

    /// `create`: `Some(true)` must not exist, `Some(false)` must exist, `None` either.
    async fn put_namespace_from(
        &self,
        namespace: Namespace,
        create: Option<bool>,
        origin: Origin,
    ) -> Result<(), Error> {
        FunctionRef::new("x", Some(&namespace.name)).map_err(|e| Error::invalid(e.to_string()))?;
        let _writes = self.writes.lock().await;
        let exists = self.namespace_exists(&namespace.name);
        let create = create.unwrap_or(!exists);
        if create && exists {
            return Err(Error::Conflict(format!("namespace {}", namespace.name)));
        }
        if !create && !exists {
            return Err(Error::NotFound(format!("namespace {}", namespace.name)));
        }
        self.state.put_namespace(&namespace.name, &namespace)?;
        self.write_namespaces()
            .insert(namespace.name.clone(), namespace.clone());
        if origin == Origin::Local
            && let Some(replicator) = self.replicator.get()
        {
            replicator.namespace_put(namespace).await.map_err(|e| {
                Error::internal("publishing the namespace to the cluster", format!("{e:#}"))
            })?;
        }
        Ok(())
    }

    /// Deletes an empty namespace (never the default one).
    pub async fn delete_namespace(&self, name: &str) -> Result<(), Error> {
        self.delete_namespace_from(name, Origin::Local).await
    }

    async fn delete_namespace_from(&self, name: &str, origin: Origin) -> Result<(), Error> {
        let _writes = self.writes.lock().await;
        if !self.namespace_exists(name) {
            return Err(Error::NotFound(format!("namespace {name}")));
        }
        if name == DEFAULT_NAMESPACE {
            return Err(Error::invalid(format!(
                "the default namespace {DEFAULT_NAMESPACE} cannot be deleted"
            )));
        }
        if self
            .read_records()
            .values()
            .any(|r| r.deployment.namespace.as_deref() == Some(name))
        {
            return Err(Error::invalid(format!(
                "namespace {name} still has functions; remove them first"
            )));
        }
        self.state.delete_namespace(name)?;
        self.write_namespaces().remove(name);
        if origin == Origin::Local
            && let Some(replicator) = self.replicator.get()
        {
            replicator
                .namespace_removed(name.to_string())
                .await
                .map_err(|e| {
                    Error::internal(
                        "publishing the namespace's removal to the cluster",
                        format!("{e:#}"),
                    )
                })?;
        }
        Ok(())
    }

    // Secrets.

    /// Secret names of a namespace.
    pub fn secret_names(&self, namespace: &str) -> Result<Vec<String>, Error> {
        Ok(self.state.list_secrets(namespace)?)
    }

    /// Creates, updates or deletes a secret, then refreshes the secrets of the functions using it.
    pub async fn change_secret(
        &self,
        namespace: &str,
        name: &str,
        change: SecretChange,
    ) -> Result<(), Error> {
        self.change_secret_from(namespace, name, change, Origin::Local)
            .await
    }

    /// Sets (`Some`) or deletes (`None`) a secret as another node did; its namespace is created here
    /// if missing.
    pub async fn apply_remote_secret(
        &self,
        namespace: &str,
        name: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), Error> {
        let exists = self.state.read_secret(namespace, name)?;
        let change = match (value, exists) {
            (None, None) => return Ok(()),
            (None, Some(_)) => SecretChange::Delete,
            (Some(value), Some(current)) if value == current => return Ok(()),
            (Some(value), Some(_)) => SecretChange::Update(value),
            (Some(value), None) => SecretChange::Create(value),
        };
        if !self.namespace_exists(namespace) {
            let record = Namespace {
                name: namespace.to_string(),
                ..Namespace::default()
            };
            let _ = self.put_namespace_from(record, None, Origin::Remote).await;
        }
        self.change_secret_from(namespace, name, change, Origin::Remote)
            .await
    }

    async fn change_secret_from(
        &self,
        namespace: &str,
        name: &str,
        change: SecretChange,
        origin: Origin,
    ) -> Result<(), Error> {
        if name.is_empty() || name.contains('/') || name.contains("..") {
            return Err(Error::invalid(format!("invalid secret name {name:?}")));
        }
        if !self.namespace_exists(namespace) {
            return Err(Error::invalid(format!(
                "namespace {namespace} does not exist"
            )));
        }
        let _writes = self.writes.lock().await;
        let subject = format!("secret {name} in namespace {namespace}");
        let result = match &change {
            SecretChange::Create(value) => self.state.create_secret(namespace, name, value),
            SecretChange::Update(value) => self.state.update_secret(namespace, name, value),
            SecretChange::Delete => self.state.delete_secret(namespace, name),
        };
        match result {
            Ok(()) => {}
            Err(StateError::Exists(_)) => {
                return Err(Error::Conflict(subject));
            }
            Err(StateError::NotFound(_)) => {
                return Err(Error::NotFound(subject));
            }
            Err(other) => return Err(other.into()),
        }
        let users: Vec<(FunctionRef, FunctionDeployment)> = self
            .read_records()
            .values()
            .filter(|r| r.deployment.namespace.as_deref() == Some(namespace))
            .filter(|r| {
                r.deployment
                    .settings
                    .secrets
                    .iter()
                    .flatten()
                    .any(|s| s == name)
            })
            .filter_map(|r| {
                FunctionRef::new(&r.deployment.service, Some(namespace))
                    .ok()
                    .map(|f| (f, r.deployment.clone()))
            })
            .collect();
        if origin == Origin::Local
            && let Some(replicator) = self.replicator.get()
        {
            let value = match &change {
                SecretChange::Create(value) | SecretChange::Update(value) => Some(value.clone()),
                SecretChange::Delete => None,
            };
            replicator
                .secret_changed(namespace.to_string(), name.to_string(), value)
                .await
                .map_err(|e| {
                    Error::internal("publishing the secret to the cluster", format!("{e:#}"))
                })?;
        }
        for (function, deployment) in users {
            self.build_secrets_dir(&function, &deployment)?;
            // Its `wasi:config` values include the secret's value.
            let spec = self.spec_preview(&function, &deployment);
            if let Err(error) = self.runtime.respecify(&function.key(), spec) {
                tracing::warn!(function = %function, %error, "could not refresh the function's configuration");
            }
        }
        Ok(())
    }

    // Helpers.

    fn source(&self, digest: Digest) -> WasmSource {
        let state = self.state.clone();
        let key = digest.hex().to_string();
        WasmSource::new(move || match state.read_artifact(&digest) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(format!(
                "artifact {digest} is missing from the state directory"
            )),
            Err(error) => Err(format!("{error:#}")),
        })
        .with_cache_key(&key)
    }

    fn secrets_rel(&self, function: &FunctionRef) -> PathBuf {
        PathBuf::from("secrets")
            .join(&function.namespace)
            .join(&function.name)
    }

    /// The spec of a function; its secrets directory is named but built separately.
    fn spec_preview(
        &self,
        function: &FunctionRef,
        deployment: &FunctionDeployment,
    ) -> FunctionSpec {
        let env = deployment
            .settings
            .env_vars
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let has_secrets = deployment
            .settings
            .secrets
            .as_ref()
            .is_some_and(|s| !s.is_empty());
        FunctionSpec {
            env,
            secrets: has_secrets.then(|| GuestDir {
                host: self
                    .run_secrets_path
                    .join(&function.namespace)
                    .join(&function.name),
                guest: SECRETS_GUEST_PATH.to_string(),
            }),
            // Validated at deploy; a record that no longer parses falls back to no reuse.
            max_instance_reuse: instance_reuse(deployment).unwrap_or(0),
            max_instance_concurrency: instance_concurrency(deployment).unwrap_or(0),
            // Validated at deploy too; a record from a gateway with higher maximums gets the defaults
            // (the runtime clamps what it is given in any case).
            limits: function_limits(deployment, self.runtime.config()).unwrap_or_default(),
            // Validated at deploy; a record that no longer parses reaches nothing.
            allowed_hosts: allowed_hosts(deployment).unwrap_or_default(),
            namespace: function.namespace.clone(),
            keyvalue_buckets: keyvalue_buckets(deployment).unwrap_or_default(),
            config: self.config_values(function, deployment),
        }
    }

    /// What `wasi:config/store` answers for the function, first match wins: the secrets it lists (by
    /// name, as text), then `com.wasmgate.config.KEY` annotations, then its `envVars`.
    fn config_values(
        &self,
        function: &FunctionRef,
        deployment: &FunctionDeployment,
    ) -> Vec<(String, String)> {
        let settings = &deployment.settings;
        let mut values = Vec::new();
        for secret in settings.secrets.iter().flatten() {
            if let Ok(Some(value)) = self.state.read_secret(&function.namespace, secret) {
                values.push((secret.clone(), String::from_utf8_lossy(&value).into_owned()));
            }
        }
        for (key, value) in settings.annotations.iter().flatten() {
            if let Some(key) = key.strip_prefix(ANNOTATION_CONFIG_PREFIX) {
                values.push((key.to_string(), value.clone()));
            }
        }
        for (key, value) in settings.env_vars.iter().flatten() {
            values.push((key.clone(), value.clone()));
        }
        values
    }

    /// The spec, with its secrets directory built (start-up path).
    fn spec(
        &self,
        function: &FunctionRef,
        deployment: &FunctionDeployment,
    ) -> Result<FunctionSpec, Error> {
        self.build_secrets_dir(function, deployment)?;
        Ok(self.spec_preview(function, deployment))
    }

    /// Assembles `run/secrets/<ns>/<fn>/` with exactly the secrets the function lists, owner-only.
    fn build_secrets_dir(
        &self,
        function: &FunctionRef,
        deployment: &FunctionDeployment,
    ) -> Result<(), Error> {
        let rel = self.secrets_rel(function);
        let _ = self.run.remove_dir_all(&rel);
        let secrets: Vec<&String> = deployment.settings.secrets.iter().flatten().collect();
        if secrets.is_empty() {
            return Ok(());
        }
        let fail = |e: std::io::Error| Error::internal("preparing the function's secrets", e);
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        self.run.create_dir_with(&rel, &builder).map_err(fail)?;
        let dir = self.run.open_dir(&rel).map_err(fail)?;
        for secret in secrets {
            let value = self
                .state
                .read_secret(&function.namespace, secret)?
                .unwrap_or_default();
            let mut options = OpenOptions::new();
            options.write(true).create(true).truncate(true).mode(0o600);
            let mut file = dir.open_with(secret, &options).map_err(fail)?;
            std::io::Write::write_all(&mut file, &value).map_err(fail)?;
        }
        Ok(())
    }

    fn read_records(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, FunctionRecord>> {
        self.records.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write_records(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, FunctionRecord>> {
        self.records.write().unwrap_or_else(|p| p.into_inner())
    }
    fn read_namespaces(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Namespace>> {
        self.namespaces.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write_namespaces(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Namespace>> {
        self.namespaces.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A change to a secret.
#[derive(Debug)]
pub enum SecretChange {
    /// Create with this value; 409 if it exists.
    Create(Vec<u8>),
    /// Replace the value; 404 if absent.
    Update(Vec<u8>),
    /// Delete; 404 if absent.
    Delete,
}

/// `com.wasmgate.instance-reuse` (an annotation, or a label): how many requests one instance may serve.
fn instance_reuse(deployment: &FunctionDeployment) -> Result<u32, Error> {
    whole_number_setting(
        deployment,
        ANNOTATION_INSTANCE_REUSE,
        "requests per instance",
    )
}

/// `com.wasmgate.instance-concurrency` (an annotation, or a label): how many requests one reused
/// instance of a wasi:http 0.3 function may serve at once.
fn instance_concurrency(deployment: &FunctionDeployment) -> Result<u32, Error> {
    whole_number_setting(
        deployment,
        ANNOTATION_INSTANCE_CONCURRENCY,
        "requests served at once per instance",
    )
}

/// A whole-number setting given as an annotation or, failing that, a label; 0 when absent.
fn whole_number_setting(
    deployment: &FunctionDeployment,
    key: &str,
    unit: &str,
) -> Result<u32, Error> {
    let settings = &deployment.settings;
    let value = settings
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .or_else(|| settings.labels.as_ref().and_then(|l| l.get(key)));
    match value {
        None => Ok(0),
        Some(value) => value.trim().parse::<u32>().map_err(|_| {
            Error::invalid(format!(
                "{key} must be a whole number of {unit}, not {value:?}"
            ))
        }),
    }
}

/// `com.wasmgate.allowed-hosts` (an annotation): where the function's outbound HTTP may go.
fn allowed_hosts(deployment: &FunctionDeployment) -> Result<Vec<HostPattern>, Error> {
    match deployment
        .settings
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ALLOWED_HOSTS))
    {
        None => Ok(Vec::new()),
        Some(list) => HostPattern::parse_list(list)
            .map_err(|e| Error::invalid(format!("annotation {ANNOTATION_ALLOWED_HOSTS}: {e}"))),
    }
}

/// `com.wasmgate.keyvalue.buckets` (an annotation): buckets the function may open besides `default`.
fn keyvalue_buckets(deployment: &FunctionDeployment) -> Result<Vec<String>, Error> {
    let Some(list) = deployment
        .settings
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_KEYVALUE_BUCKETS))
    else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            let valid = name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if valid {
                Ok(name.to_string())
            } else {
                Err(Error::invalid(format!(
                    "annotation {ANNOTATION_KEYVALUE_BUCKETS}: {name:?} is not a bucket name \
                     (letters, digits, '-', '_', '.', at most 64)"
                )))
            }
        })
        .collect()
}

/// `envVars` key (as of-watchdog reads it): the time limit of one request, a Go duration.
pub const ENV_EXEC_TIMEOUT: &str = "exec_timeout";
/// `envVars` key (as of-watchdog reads it): requests of the function served at once.
pub const ENV_MAX_INFLIGHT: &str = "max_inflight";

/// The function's limits: `limits.memory`, and `exec_timeout` and `max_inflight` from `envVars`,
/// each checked against this gateway's maximums.
fn function_limits(
    deployment: &FunctionDeployment,
    config: &wasmgate_runtime::RuntimeConfig,
) -> Result<Limits, Error> {
    let settings = &deployment.settings;
    let memory_bytes = match settings.limits.as_ref().and_then(|l| l.memory.as_deref()) {
        None => None,
        Some(text) => {
            let bytes =
                parse_memory(text).map_err(|e| Error::invalid(format!("limits.memory: {e}")))?;
            if bytes > config.max_memory_bytes {
                return Err(Error::invalid(format!(
                    "limits.memory {text} is above this gateway's maximum of {} (--max-memory)",
                    format_memory(config.max_memory_bytes)
                )));
            }
            if bytes < 64 * 1024 {
                return Err(Error::invalid(format!(
                    "limits.memory {text} is less than one WebAssembly page (64Ki)"
                )));
            }
            Some(bytes)
        }
    };
    let env = settings.env_vars.as_ref();
    let timeout = match env.and_then(|e| e.get(ENV_EXEC_TIMEOUT)) {
        None => None,
        Some(text) => {
            let timeout = parse_duration(text)
                .map_err(|e| Error::invalid(format!("envVars.{ENV_EXEC_TIMEOUT}: {e}")))?;
            if timeout.is_zero() {
                return Err(Error::invalid(format!(
                    "envVars.{ENV_EXEC_TIMEOUT} must be more than zero"
                )));
            }
            if timeout > config.max_timeout {
                return Err(Error::invalid(format!(
                    "envVars.{ENV_EXEC_TIMEOUT} {text} is above this gateway's maximum of {:?} \
                     (--max-timeout)",
                    config.max_timeout
                )));
            }
            Some(timeout)
        }
    };
    let max_inflight = match env.and_then(|e| e.get(ENV_MAX_INFLIGHT)) {
        None => None,
        Some(text) => match text.trim().parse::<u32>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(Error::invalid(format!(
                    "envVars.{ENV_MAX_INFLIGHT} must be a whole number of requests above zero, \
                     not {text:?}"
                )));
            }
        },
    };
    Ok(Limits {
        memory_bytes,
        timeout,
        max_inflight,
    })
}

/// The idle time after which a function that opted into scale to zero is unloaded.
fn scale_zero_after(deployment: &FunctionDeployment) -> Option<Duration> {
    let labels = deployment.settings.labels.as_ref()?;
    if labels.get(LABEL_SCALE_ZERO).map(String::as_str) != Some("true") {
        return None;
    }
    Some(
        labels
            .get(LABEL_SCALE_ZERO_DURATION)
            .and_then(|d| parse_duration(d).ok())
            .unwrap_or(DEFAULT_SCALE_ZERO_DURATION),
    )
}
