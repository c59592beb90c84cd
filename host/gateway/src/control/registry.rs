//! The registry: [`Functions`], what it holds (the records of the deployed functions and the
//! namespaces, in memory and in the state directory, and the runtime that serves them), how it is
//! restored at start-up, and what it answers without changing anything. Changes go through
//! `apply.rs`; each noun's own rules are in `deploy.rs`, `namespaces.rs`, `secrets.rs` and
//! `artifacts.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, DirBuilder, DirBuilderExt};
use wasmgate_openfaas::digest::Digest;
use wasmgate_openfaas::names::{DEFAULT_NAMESPACE, FunctionRef};
use wasmgate_openfaas::triggers::{ANNOTATION_TOPIC, TriggerSpec, Triggers};
use wasmgate_openfaas::types::{FunctionDeployment, FunctionRecord, FunctionStatus, Namespace};
use wasmgate_runtime::{FunctionSpec, Runtime};

use super::error::Error;
use super::peers::Peers;
use super::replication::Replicator;
use super::spec;
use crate::observe::metrics::Metrics;
use crate::storage::spin_files::SpinFiles;
use crate::storage::state::StateDir;

/// Where, inside the state directory, each function's own secrets directory is assembled.
const RUN_SECRETS: &str = "run/secrets";
/// Where, inside the state directory, Spin components' static files are unpacked.
const SPIN_FILES: &str = "spin-files";

/// The functions, namespaces and secrets of the gateway. Deploy, update and remove are serialised;
/// each validates first, persists (fsynced) second, and switches the runtime last, so an
/// acknowledged change survives a crash and a refused one leaves nothing behind.
pub struct Functions {
    pub(super) runtime: Runtime,
    pub(super) state: Arc<StateDir>,
    pub(super) metrics: Arc<Metrics>,
    /// `<state>/run`, opened once; per-function secret directories are built inside it.
    pub(super) run: Dir,
    /// The host path of `<state>/run/secrets`, which the runtime preopens for guests.
    run_secrets_path: PathBuf,
    /// Spin components' static files, unpacked (`<state>/spin-files`).
    pub(super) spin_files: Arc<SpinFiles>,
    records: RwLock<BTreeMap<String, FunctionRecord>>,
    namespaces: RwLock<BTreeMap<String, Namespace>>,
    /// Serialises every change, so records, secrets directories and the runtime move together.
    pub(super) writes: tokio::sync::Mutex<()>,
    pub(super) max_artifact_bytes: usize,
    /// The OCI registry client, made on the first pull (it reads the Docker config file).
    pub(super) registries: OnceLock<wasmgate_oci::RegistryClient>,
    /// Where changes made here are published for other nodes (cluster mode).
    pub(super) replicator: OnceLock<Arc<dyn Replicator>>,
    /// The other nodes of the cluster, from their heartbeats (cluster mode), for replica counts.
    peers: OnceLock<Arc<Peers>>,
    /// Counts the changes applied (`apply.rs` sends after each), so that the connectors look at
    /// the functions' triggers again; a watch keeps only the last value, so it never grows.
    pub(super) changes: tokio::sync::watch::Sender<u64>,
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
            spin_files: Arc::new(SpinFiles::new(state_path.join(SPIN_FILES))),
            records: RwLock::new(BTreeMap::new()),
            namespaces: RwLock::new(namespaces),
            writes: tokio::sync::Mutex::new(()),
            max_artifact_bytes,
            registries: OnceLock::new(),
            replicator: OnceLock::new(),
            peers: OnceLock::new(),
            changes: tokio::sync::watch::Sender::new(0),
        });

        functions.spin_files.clear_leftovers();
        let (records, problems) = functions
            .state
            .load_functions::<FunctionRecord>()
            .context("reading functions")?;
        for problem in problems {
            tracing::warn!(path = %problem.path, reason = %problem.reason, "skipped a damaged function record");
        }
        for (namespace, name, record) in records {
            functions.restore(&namespace, &name, record);
        }
        functions.metrics.set_functions_loaded(0);
        tracing::info!(functions = functions.read_records().len(), "state restored");
        Ok(functions)
    }

    /// Registers one recorded function at start-up, or says in the log why it cannot.
    fn restore(&self, namespace: &str, name: &str, record: FunctionRecord) {
        let function = match FunctionRef::new(name, Some(namespace)) {
            Ok(function) => function,
            Err(error) => {
                tracing::warn!(%error, "skipped a function record with an invalid name");
                return;
            }
        };
        let Some(digest) = Digest::parse(&record.digest) else {
            tracing::warn!(function = %function, digest = %record.digest, "skipped a function record with an invalid digest");
            return;
        };
        if !self.state.has_artifact(&digest) {
            tracing::warn!(function = %function, %digest, "skipped a function whose artifact is missing");
            return;
        }
        if let Err(error) = self.build_secrets_dir(&function, &record.deployment) {
            tracing::warn!(function = %function, %error, "skipped a function whose secrets cannot be prepared");
            return;
        }
        match self.restore_spin(&function, &record.deployment) {
            Ok(false) => {}
            Ok(true) => {
                self.metrics.set_replicas(&function.key(), record.replicas);
                self.write_records().insert(function.key(), record);
                return;
            }
            Err(error) => {
                tracing::warn!(function = %function, %error, "skipped a Spin app that cannot be restored");
                return;
            }
        }
        let spec = self.spec(&function, &record.deployment);
        self.runtime
            .register(&function.key(), self.source(digest), spec);
        self.metrics.set_replicas(&function.key(), record.replicas);
        self.write_records().insert(function.key(), record);
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

    /// The runtime that serves the functions.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Counts replicas across the cluster's nodes, as `peers` (kept up to date by the heartbeat)
    /// tells, from now on.
    pub fn set_peers(&self, peers: Arc<Peers>) {
        let _ = self.peers.set(peers);
    }

    /// The functions that can sleep (`peers.rs`) and are awake on this node: what its heartbeat
    /// tells the other nodes.
    pub fn awake_sleepers(&self) -> Vec<String> {
        self.read_records()
            .iter()
            .filter(|(key, record)| {
                can_sleep(record) && self.runtime.is_loaded(key).unwrap_or(false)
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Publishes this node's changes through `replicator` from now on (cluster mode).
    pub fn set_replicator(&self, replicator: Arc<dyn Replicator>) {
        let _ = self.replicator.set(replicator);
    }

    // Functions.

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

    /// Told after every change applied (deploys, updates and removals, made here or by another
    /// node): the connectors follow the triggers with it.
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The functions that a connector runs (a schedule or topics in their annotations), by key.
    /// A record whose annotations no longer parse is left out, with a warning.
    pub fn triggered(&self) -> Vec<(FunctionRef, TriggerSpec)> {
        let records = self.read_records();
        let mut triggered = Vec::new();
        for (key, record) in records.iter() {
            let annotations = record.deployment.settings.annotations.as_ref();
            if !annotations.is_some_and(|a| a.contains_key(ANNOTATION_TOPIC)) {
                continue;
            }
            let Ok(function) = FunctionRef::parse(key) else {
                continue;
            };
            match TriggerSpec::from_annotations(annotations) {
                Ok(spec) if !spec.is_empty() => triggered.push((function, spec)),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(function = %key, %error, "no connector runs this function: its annotations do not parse")
                }
            }
        }
        triggered
    }

    /// Whether the function is deployed.
    pub fn exists(&self, function: &FunctionRef) -> bool {
        self.read_records().contains_key(&function.key())
    }

    /// The replicas a function has, as the list, `describe` and `gateway_service_count` all report
    /// them. One node: 1 (or its `scale.min`) while its code is loaded, 0 once scaled to zero until
    /// its next request loads it. Cluster mode (`peers.rs`): a function that can sleep has the nodes
    /// where it is awake, this one included; any other has every live node.
    fn replicas(&self, key: &str, record: &FunctionRecord) -> u64 {
        let awake_here = self.runtime.is_loaded(key).unwrap_or(false);
        match self.peers.get() {
            Some(peers) if can_sleep(record) => u64::from(awake_here) + peers.awake_elsewhere(key),
            Some(peers) => peers.live(),
            None if awake_here => record.replicas.max(1),
            None => 0,
        }
    }

    /// Sets `gateway_service_count` of every function to [`Functions::replicas`], for a scrape.
    pub fn refresh_replica_metrics(&self) {
        for (key, record) in self.read_records().iter() {
            self.metrics.set_replicas(key, self.replicas(key, record));
        }
    }

    fn to_status(&self, key: &str, record: FunctionRecord) -> FunctionStatus {
        let replicas = self.replicas(key, &record);
        let world = record
            .world
            .or_else(|| self.runtime.world(key).map(|w| w.as_str().to_string()));
        let d = record.deployment;
        let components = self.spin_components(&d);
        let triggers = FunctionRef::parse(key)
            .ok()
            .map(|function| Triggers::of(&function, d.settings.annotations.as_ref()));
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
            triggers,
            components,
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

    // Secrets.

    /// Secret names of a namespace.
    pub fn secret_names(&self, namespace: &str) -> Result<Vec<String>, Error> {
        Ok(self.state.list_secrets(namespace)?)
    }

    // Shared by the changes.

    /// The spec of a function (`spec.rs`), with the place of its secrets directory and the values
    /// of its secrets; the directory itself is built by `build_secrets_dir`.
    pub(super) fn spec(
        &self,
        function: &FunctionRef,
        deployment: &FunctionDeployment,
    ) -> FunctionSpec {
        let secrets_dir = self
            .run_secrets_path
            .join(&function.namespace)
            .join(&function.name);
        spec::function_spec(
            function,
            deployment,
            self.runtime.config(),
            &secrets_dir,
            |secret| {
                self.state
                    .read_secret(&function.namespace, secret)
                    .ok()
                    .flatten()
            },
        )
    }

    pub(super) fn read_records(&self) -> RwLockReadGuard<'_, BTreeMap<String, FunctionRecord>> {
        self.records.read().unwrap_or_else(|p| p.into_inner())
    }
    pub(super) fn write_records(&self) -> RwLockWriteGuard<'_, BTreeMap<String, FunctionRecord>> {
        self.records.write().unwrap_or_else(|p| p.into_inner())
    }
    fn read_namespaces(&self) -> RwLockReadGuard<'_, BTreeMap<String, Namespace>> {
        self.namespaces.read().unwrap_or_else(|p| p.into_inner())
    }
    pub(super) fn write_namespaces(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Namespace>> {
        self.namespaces.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether a function can sleep (`peers.rs`): it opted into scale to zero, or was scaled to 0.
fn can_sleep(record: &FunctionRecord) -> bool {
    record.replicas == 0 || spec::scale_zero_after(&record.deployment).is_some()
}
