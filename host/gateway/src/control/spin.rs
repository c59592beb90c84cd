//! Spin apps: a `spin.toml` (read by `wasmgate_spin`) deployed as one function whose components
//! are the runtime's parts of it (`wasmgate_runtime`'s `app.rs`), routed as Spin routes.
//!
//! A deployment is a Spin app when it carries the manifest annotation (`wasmgate_spin::deployment`
//! says how an app travels in a deployment). Its `service` is the app's `[application] name`. Once validated, the stored deployment's sources are the components'
//! digests, so the record names every artifact it needs (restart, collector, cluster).
//!
//! Each component's spec is the deployment's (limits, `envVars`, secrets, annotations) with the
//! component's own `environment`, `allowed_outbound_hosts`, variables, key-value stores and static
//! files (`spin_files.rs`). `SpinRouter` (`spin_router.rs`) routes the app's requests and its
//! components' calls to each other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use wasmgate_openfaas::digest::Digest;
use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::types::{FunctionDeployment, FunctionRecord};
use wasmgate_runtime::{FunctionSpec, WasmSource};
use wasmgate_spin::App;
use wasmgate_spin::deployment::{
    ANNOTATION_FILES, ANNOTATION_MANIFEST, ANNOTATION_SOURCES, format_sources, parse_sources,
};

use super::change::{Origin, PutMode};
use super::error::Error;
use super::registry::Functions;
use super::replication::Replicated;
use super::spec;
use crate::storage::state::StateError;

pub use super::spin_router::SpinClient;
use super::spin_router::{CallRights, SpinRouter};

/// Whether a deployment is a Spin app's.
pub(super) fn is_spin(deployment: &FunctionDeployment) -> bool {
    manifest_text(deployment).is_some()
}

fn annotation<'a>(deployment: &'a FunctionDeployment, name: &str) -> Option<&'a str> {
    deployment
        .settings
        .annotations
        .as_ref()
        .and_then(|a| a.get(name))
        .map(String::as_str)
}

fn manifest_text(deployment: &FunctionDeployment) -> Option<&str> {
    annotation(deployment, ANNOTATION_MANIFEST)
}

/// A Spin app's deployment, read: the app, each component's image, and the image of the files
/// archive of each component that has `files`.
struct SpinDeployment {
    app: App,
    sources: BTreeMap<String, String>,
    files: BTreeMap<String, String>,
}

fn read(deployment: &FunctionDeployment) -> Result<SpinDeployment, Error> {
    let text = manifest_text(deployment)
        .ok_or_else(|| Error::invalid(format!("annotation {ANNOTATION_MANIFEST} is missing")))?;
    let app = App::parse(text)
        .map_err(|e| Error::invalid(format!("annotation {ANNOTATION_MANIFEST}: {e}")))?;
    if app.name != deployment.service {
        return Err(Error::invalid(format!(
            "the Spin app is named {:?} ([application] name) but the deployment's service is {:?}; \
             a Spin app is deployed as the function of its name",
            app.name, deployment.service
        )));
    }
    let sources = parse_sources(annotation(deployment, ANNOTATION_SOURCES).unwrap_or_default())
        .map_err(|e| Error::invalid(format!("annotation {ANNOTATION_SOURCES}: {e}")))?;
    for component in app.components.keys() {
        if !sources.contains_key(component) {
            return Err(Error::invalid(format!(
                "annotation {ANNOTATION_SOURCES}: no image for component {component}"
            )));
        }
    }
    if let Some(extra) = sources.keys().find(|c| !app.components.contains_key(*c)) {
        return Err(Error::invalid(format!(
            "annotation {ANNOTATION_SOURCES}: the manifest has no component {extra}"
        )));
    }
    let files = parse_sources(annotation(deployment, ANNOTATION_FILES).unwrap_or_default())
        .map_err(|e| Error::invalid(format!("annotation {ANNOTATION_FILES}: {e}")))?;
    for (name, component) in &app.components {
        match (component.files.is_empty(), files.contains_key(name)) {
            (false, false) => {
                return Err(Error::invalid(format!(
                    "component.{name}.files: annotation {ANNOTATION_FILES} names no archive of \
                     its files (wasmgate deploy -f spin.toml uploads them)"
                )));
            }
            (true, true) => {
                return Err(Error::invalid(format!(
                    "annotation {ANNOTATION_FILES}: component {name} has no files in the manifest"
                )));
            }
            _ => {}
        }
    }
    if let Some(extra) = files.keys().find(|c| !app.components.contains_key(*c)) {
        return Err(Error::invalid(format!(
            "annotation {ANNOTATION_FILES}: the manifest has no component {extra}"
        )));
    }
    Ok(SpinDeployment {
        app,
        sources,
        files,
    })
}

/// The digests of every component a record uses: a Spin app's, or the one of a plain function.
pub(crate) fn record_digests(record: &FunctionRecord) -> Vec<String> {
    if !is_spin(&record.deployment) {
        return vec![record.digest.clone()];
    }
    let sources = annotation(&record.deployment, ANNOTATION_SOURCES).unwrap_or_default();
    let files = annotation(&record.deployment, ANNOTATION_FILES).unwrap_or_default();
    let mut digests: Vec<String> = parse_sources(sources)
        .map(|sources| sources.into_values().collect())
        .unwrap_or_else(|_| vec![record.digest.clone()]);
    digests.extend(
        parse_sources(files)
            .into_iter()
            .flat_map(BTreeMap::into_values),
    );
    digests
}

/// The components of a Spin app's deployment as its status shows them (`None` for a plain
/// function), with their routes in manifest order.
fn components(
    deployment: &FunctionDeployment,
) -> Option<Vec<wasmgate_openfaas::types::ComponentStatus>> {
    let SpinDeployment {
        app,
        sources,
        files,
    } = read(deployment).ok()?;
    Some(
        app.components
            .keys()
            .map(|name| {
                let triggers = app.triggers.iter().filter(|t| &t.component == name);
                let (private, public): (Vec<_>, Vec<_>) =
                    triggers.partition(|t| t.route == wasmgate_spin::RouteSpec::Private);
                wasmgate_openfaas::types::ComponentStatus {
                    name: name.clone(),
                    digest: sources.get(name).cloned().unwrap_or_default(),
                    routes: public.iter().map(|t| t.route.to_string()).collect(),
                    private: !private.is_empty(),
                    files: files.get(name).cloned(),
                }
            })
            .collect(),
    )
}

/// The secrets a Spin app's variables read (none for a plain function).
pub(super) fn variable_secrets(deployment: &FunctionDeployment) -> Vec<String> {
    manifest_text(deployment)
        .and_then(|text| App::parse(text).ok())
        .map(|app| wasmgate_spin::variables::secret_names(&app.variables))
        .unwrap_or_default()
}

impl Functions {
    /// The components of a Spin app's deployment as its status shows them (`None` for a plain
    /// function).
    pub(super) fn spin_components(
        &self,
        deployment: &FunctionDeployment,
    ) -> Option<Vec<wasmgate_openfaas::types::ComponentStatus>> {
        components(deployment)
    }

    /// The spec of each component of a Spin app, by name: the deployment's, with the component's
    /// environment, outbound hosts (their templates read with the app's variables), variables and
    /// stores. Refuses a required variable without a value, and an outbound host whose template
    /// does not give a valid entry.
    fn component_specs(
        &self,
        function: &FunctionRef,
        deployment: &FunctionDeployment,
        app: &App,
    ) -> Result<BTreeMap<String, FunctionSpec>, Error> {
        let base = self.spec(function, deployment);
        let env_vars = deployment.settings.env_vars.clone().unwrap_or_default();
        let values = wasmgate_spin::variables::resolve(
            &app.variables,
            |name| env_vars.get(name).cloned(),
            |name| {
                self.state
                    .read_secret(&function.namespace, name)
                    .ok()
                    .flatten()
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            },
        )
        .map_err(Error::invalid)?;
        let mut specs = BTreeMap::new();
        for (name, component) in &app.components {
            let mut spec = base.clone();
            spec.env.extend(
                component
                    .environment
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            let entries =
                wasmgate_spin::resolve_entries(&component.allowed_outbound_hosts, &values)
                    .map_err(|e| {
                        Error::invalid(format!("component.{name}.allowed_outbound_hosts: {e}"))
                    })?;
            let (_, hosts) = CallRights::of(&entries);
            spec.allowed_hosts.extend(hosts);
            spec.spin_variables =
                wasmgate_spin::variables::component_values(&component.variables, &values);
            spec.spin_key_value_stores = component.key_value_stores.clone();
            spec.spin_sqlite_databases = component.sqlite_databases.clone();
            specs.insert(name.clone(), spec);
        }
        Ok(specs)
    }

    /// Deploys or updates a Spin app (the write lock held): reads every component, compiles each
    /// against its spec, then persists and installs them all, or nothing.
    pub(super) async fn deploy_spin_locked(
        &self,
        mut deployment: FunctionDeployment,
        mode: PutMode,
        origin: Origin,
    ) -> Result<Replicated, Error> {
        let function = super::change::function_of(&deployment)?;
        deployment.namespace = Some(function.namespace.clone());
        let key = function.key();
        let existing = self.read_records().get(&key).cloned();
        super::change::check_mode(&function, mode, existing.is_some())?;
        self.check_deployment(&function, &deployment)?;
        let SpinDeployment {
            app,
            sources,
            files,
        } = read(&deployment)?;
        let replicas = spec::replicas(&deployment, existing.as_ref().map(|r| r.replicas))?;
        let mut specs = self.component_specs(&function, &deployment, &app)?;

        let logs = self.runtime.app_logs(&key);
        let mut parts = Vec::new();
        // Each artifact, and whether it was read from a path here (so the cluster lacks it).
        let mut artifacts = Vec::new();
        let mut file_digests = BTreeMap::new();
        for (name, image) in &files {
            let unpacked = self
                .unpack_spin_files(image)
                .await
                .map_err(|e| e.context(&format!("component {name}'s files")))?;
            if let Some(spec) = specs.get_mut(name) {
                spec.files = Some(unpacked.dir);
            }
            file_digests.insert(name.clone(), unpacked.digest.to_string());
            artifacts.push((unpacked.digest, unpacked.archive, unpacked.from_path));
        }
        let mut digests = BTreeMap::new();
        let mut world = None;
        for (name, spec) in specs {
            let image = &sources[&name];
            let (wasm, digest) = self
                .resolve_image(image)
                .await
                .map_err(|e| e.context(&format!("component {name}")))?;
            let from_path = digest.is_none();
            let digest = digest.unwrap_or_else(|| Digest::of(&wasm));
            let prepared = self
                .runtime
                .prepare_part(
                    &key,
                    &name,
                    &logs,
                    wasm.clone(),
                    self.source(digest.clone()),
                    spec,
                    replicas > 0,
                )
                .await
                .map_err(|e| Error::compiling(e).context(&format!("component {name}")))?;
            spec::check_world(&function, &deployment, prepared.world())?;
            world.get_or_insert(prepared.world());
            digests.insert(name.clone(), digest.to_string());
            artifacts.push((digest, wasm, from_path));
            parts.push((name, prepared));
        }
        tracing::info!(function = %function, components = parts.len(), "Spin app validated");
        self.build_secrets_dir(&function, &deployment)?;

        if let Some(annotations) = deployment.settings.annotations.as_mut() {
            annotations.insert(ANNOTATION_SOURCES.to_string(), format_sources(&digests));
            if !file_digests.is_empty() {
                annotations.insert(ANNOTATION_FILES.to_string(), format_sources(&file_digests));
            }
        }
        let record = FunctionRecord {
            deployment,
            digest: digests.values().next().cloned().unwrap_or_default(),
            created_at: existing.map(|r| r.created_at).unwrap_or_else(|| {
                wasmgate_openfaas::time::format_rfc3339(SystemTime::now(), false)
            }),
            replicas,
            world: world.map(|w| w.as_str().to_string()),
        };
        // What was read from a path here goes to the cluster's object store, so that the other
        // nodes, which apply the record by digest, find every artifact it names.
        if origin == Origin::Local
            && let Some(replicator) = self.replicator.get()
        {
            for (digest, bytes, _) in artifacts.iter().filter(|(_, _, from_path)| *from_path) {
                replicator
                    .artifact_put(digest.to_string(), bytes.clone())
                    .await
                    .map_err(|e| {
                        Error::internal(
                            "sharing a Spin component with the cluster",
                            format!("{e:#}"),
                        )
                    })?;
            }
        }
        let state = self.state.clone();
        let stored = record.clone();
        let (namespace, name) = (function.namespace.clone(), function.name.clone());
        tokio::task::spawn_blocking(move || -> Result<(), StateError> {
            for (digest, bytes, _) in &artifacts {
                if !state.has_artifact(digest) {
                    state.put_artifact(bytes)?;
                }
            }
            state.put_function(&namespace, &name, &stored)
        })
        .await
        .map_err(|e| Error::internal("storing the function", e))??;
        self.runtime
            .install_app(&key, parts, Arc::new(SpinRouter::new(&app)));
        self.metrics.set_replicas(&key, replicas);
        self.metrics
            .set_functions_loaded(self.runtime.loaded_count() as u64);
        self.write_records().insert(key, record.clone());
        tracing::info!(function = %function, ?mode, ?origin, "Spin app deployed");
        Ok(Replicated::FunctionPut(record))
    }

    /// Registers a recorded Spin app at start-up, without compiling; `false` for a record that is
    /// not a Spin app's.
    pub(super) fn restore_spin(
        &self,
        function: &FunctionRef,
        deployment: &FunctionDeployment,
    ) -> Result<bool, String> {
        if !is_spin(deployment) {
            return Ok(false);
        }
        let SpinDeployment {
            app,
            sources,
            files,
        } = read(deployment).map_err(|e| e.to_string())?;
        let mut specs = self
            .component_specs(function, deployment, &app)
            .map_err(|e| e.to_string())?;
        self.attach_stored_files(&mut specs, &files)?;
        let mut parts = Vec::new();
        for (name, spec) in specs {
            let digest = Digest::parse(&sources[&name])
                .ok_or_else(|| format!("component {name} has no stored digest"))?;
            if !self.state.has_artifact(&digest) {
                return Err(format!(
                    "the artifact {digest} of component {name} is missing"
                ));
            }
            let source: WasmSource = self.source(digest);
            parts.push((name, source, spec));
        }
        self.runtime
            .register_app(&function.key(), parts, Arc::new(SpinRouter::new(&app)));
        Ok(true)
    }

    /// Gives the components of a stored app the folders of their files (`files`: the digests of
    /// their archives).
    fn attach_stored_files(
        &self,
        specs: &mut BTreeMap<String, FunctionSpec>,
        files: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        for (name, image) in files {
            let digest = Digest::parse(image)
                .ok_or_else(|| format!("the files of component {name} have no stored digest"))?;
            let dir = self
                .restore_spin_files(&digest)
                .map_err(|e| format!("the files of component {name}: {e}"))?;
            if let Some(spec) = specs.get_mut(name) {
                spec.files = Some(dir);
            }
        }
        Ok(())
    }

    /// Gives a Spin app's components their specs again (a secret it reads changed).
    pub(super) fn respecify_spin(
        &self,
        function: &FunctionRef,
        deployment: &FunctionDeployment,
    ) -> Result<(), Error> {
        let SpinDeployment { app, files, .. } = read(deployment)?;
        let mut specs = self.component_specs(function, deployment, &app)?;
        self.attach_stored_files(&mut specs, &files)
            .map_err(|e| Error::internal("refreshing a Spin component", e))?;
        for (name, spec) in specs {
            let part = wasmgate_runtime::part_name(&function.key(), &name);
            self.runtime
                .respecify(&part, spec)
                .map_err(|e| Error::internal("refreshing a Spin component", e))?;
        }
        Ok(())
    }
}
