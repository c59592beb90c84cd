//! Spin apps: a `spin.toml` (read by `wasmgate_spin`) deployed as one function whose components
//! are the runtime's parts of it (`wasmgate_runtime`'s `app.rs`), routed as Spin routes.
//!
//! A deployment is a Spin app when it carries the manifest annotation (`wasmgate_spin::deployment`
//! says how an app travels in a deployment). Its `service` is the app's `[application] name`. Once validated, the stored deployment's sources are the components'
//! digests, so the record names every artifact it needs (restart, collector, cluster).
//!
//! Each component's spec is the deployment's (limits, `envVars`, secrets, annotations) with the
//! component's own `environment`, `allowed_outbound_hosts`, variables and key-value stores.
//! [`SpinRouter`] routes the app's requests and its components' calls to each other.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderName, HeaderValue};
use wasmgate_openfaas::digest::Digest;
use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::types::{FunctionDeployment, FunctionRecord};
use wasmgate_runtime::{CallRoute, FunctionSpec, HostPattern, Router, WasmSource};
use wasmgate_spin::deployment::{
    ANNOTATION_MANIFEST, ANNOTATION_SOURCES, format_sources, parse_sources,
};
use wasmgate_spin::{App, OutboundHost, RouteMatch, SERVICE_CHAINING_DOMAIN};

use super::change::{Origin, PutMode};
use super::error::Error;
use super::registry::Functions;
use super::replication::Replicated;
use super::spec;
use crate::storage::state::StateError;

/// The client of a request to a Spin app, which the gateway puts in the request's extensions for
/// the `spin-full-url` and `spin-client-addr` headers.
#[derive(Debug, Clone)]
pub struct SpinClient {
    /// The URL the client asked for, as it asked (`http://host/function/app/path?query`).
    pub full_url: String,
    /// Its address.
    pub peer: Option<SocketAddr>,
}

/// The client address Spin gives a request from another component.
const CHAINED_CLIENT_ADDR: &str = "0.0.0.0:0";

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

/// A Spin app's deployment, read: the app and each component's image.
struct SpinDeployment {
    app: App,
    sources: BTreeMap<String, String>,
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
    Ok(SpinDeployment { app, sources })
}

/// The digests of every component a record uses: a Spin app's, or the one of a plain function.
pub(crate) fn record_digests(record: &FunctionRecord) -> Vec<String> {
    if !is_spin(&record.deployment) {
        return vec![record.digest.clone()];
    }
    let sources = annotation(&record.deployment, ANNOTATION_SOURCES).unwrap_or_default();
    parse_sources(sources)
        .map(|sources| sources.into_values().collect())
        .unwrap_or_else(|_| vec![record.digest.clone()])
}

/// The secrets a Spin app's variables read (none for a plain function).
pub(super) fn variable_secrets(deployment: &FunctionDeployment) -> Vec<String> {
    manifest_text(deployment)
        .and_then(|text| App::parse(text).ok())
        .map(|app| wasmgate_spin::variables::secret_names(&app.variables))
        .unwrap_or_default()
}

/// What a component's `allowed_outbound_hosts` lets it call.
#[derive(Debug, Clone, Default)]
struct CallRights {
    self_requests: bool,
    every_component: bool,
    components: Vec<String>,
}

impl CallRights {
    fn of(component: &wasmgate_spin::Component) -> (CallRights, Vec<HostPattern>) {
        let mut rights = CallRights::default();
        let mut hosts = Vec::new();
        for text in &component.allowed_outbound_hosts {
            // Checked when the manifest was read; a host the runtime's syntax refuses allows nothing.
            match OutboundHost::parse(text) {
                Ok(OutboundHost::SelfRequests) => rights.self_requests = true,
                Ok(OutboundHost::Components(None)) => rights.every_component = true,
                Ok(OutboundHost::Components(Some(name))) => rights.components.push(name),
                Ok(OutboundHost::Host(pattern)) => {
                    if let Ok(pattern) = HostPattern::parse(&pattern) {
                        hosts.push(pattern);
                    }
                }
                Ok(OutboundHost::OtherScheme) | Err(_) => {}
            }
        }
        (rights, hosts)
    }

    fn may_call(&self, component: &str) -> bool {
        self.every_component || self.components.iter().any(|c| c == component)
    }
}

/// Routes a Spin app's requests (the runtime's [`Router`]).
#[derive(Debug)]
pub(crate) struct SpinRouter {
    router: wasmgate_spin::Router,
    rights: BTreeMap<String, CallRights>,
}

impl SpinRouter {
    fn new(app: &App) -> SpinRouter {
        SpinRouter {
            router: app.router(),
            rights: app
                .components
                .iter()
                .map(|(name, component)| (name.clone(), CallRights::of(component).0))
                .collect(),
        }
    }
}

/// Sets the `spin-*` headers of `found` on a request, over any the client sent.
fn set_headers(head: &mut http::request::Parts, found: &RouteMatch, full_url: &str, client: &str) {
    for (name, value) in found.headers(full_url, client) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            head.headers.insert(HeaderName::from_static(name), value);
        }
    }
}

impl Router for SpinRouter {
    fn route(&self, head: &mut http::request::Parts) -> Option<String> {
        let found = self.router.route(head.uri.path())?;
        let (full_url, client) = match head.extensions.get::<SpinClient>() {
            Some(client) => (
                client.full_url.clone(),
                client
                    .peer
                    .map_or_else(|| CHAINED_CLIENT_ADDR.to_string(), |p| p.to_string()),
            ),
            // From another function, in process.
            None => (head.uri.to_string(), CHAINED_CLIENT_ADDR.to_string()),
        };
        set_headers(head, &found, &full_url, &client);
        Some(found.component)
    }

    fn route_call(&self, from: &str, head: &mut http::request::Parts) -> CallRoute {
        let rights = self.rights.get(from).cloned().unwrap_or_default();
        let host = head.uri.host().unwrap_or_default().to_ascii_lowercase();
        if let Some(target) = host
            .strip_suffix(SERVICE_CHAINING_DOMAIN)
            .and_then(|h| h.strip_suffix('.'))
        {
            if !rights.may_call(target) {
                return CallRoute::Denied(format!(
                    "component {from} may not call {target}: its allowed_outbound_hosts does not \
                     list http://{target}.{SERVICE_CHAINING_DOMAIN} (or http://*.{SERVICE_CHAINING_DOMAIN})"
                ));
            }
            if !self.rights.contains_key(target) {
                return CallRoute::NoRoute(format!("the app has no component {target}"));
            }
            let found = wasmgate_spin::Router::chained(target, head.uri.path());
            let full_url = head.uri.to_string();
            head.headers.remove(http::header::HOST);
            set_headers(head, &found, &full_url, CHAINED_CLIENT_ADDR);
            return CallRoute::Part(found.component);
        }
        // A self-request: a relative URL (no host), or Spin's `http://self.alt`.
        if host.is_empty() || host == "self.alt" {
            if !rights.self_requests {
                return CallRoute::Denied(format!(
                    "component {from} may not make self-requests: its allowed_outbound_hosts does \
                     not list http://self"
                ));
            }
            let Some(found) = self.router.route(head.uri.path()) else {
                return CallRoute::NoRoute(format!("no route matches {}", head.uri.path()));
            };
            let full_url = head.uri.to_string();
            set_headers(head, &found, &full_url, CHAINED_CLIENT_ADDR);
            return CallRoute::Part(found.component);
        }
        CallRoute::NotMine
    }
}

impl Functions {
    /// The spec of each component of a Spin app, by name: the deployment's, with the component's
    /// environment, outbound hosts, variables and stores. Refuses a required variable without a
    /// value.
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
        Ok(app
            .components
            .iter()
            .map(|(name, component)| {
                let mut spec = base.clone();
                spec.env.extend(
                    component
                        .environment
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
                let (_, hosts) = CallRights::of(component);
                spec.allowed_hosts.extend(hosts);
                spec.spin_variables =
                    wasmgate_spin::variables::component_values(&component.variables, &values);
                spec.spin_key_value_stores = component.key_value_stores.clone();
                spec.spin_sqlite_databases = component.sqlite_databases.clone();
                (name.clone(), spec)
            })
            .collect())
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
        let SpinDeployment { app, sources } = read(&deployment)?;
        let replicas = spec::replicas(&deployment, existing.as_ref().map(|r| r.replicas))?;
        let specs = self.component_specs(&function, &deployment, &app)?;

        let logs = self.runtime.app_logs(&key);
        let mut parts = Vec::new();
        let mut artifacts = Vec::new();
        let mut digests = BTreeMap::new();
        let mut world = None;
        for (name, spec) in specs {
            let image = &sources[&name];
            let (wasm, digest) = self
                .resolve_image(image)
                .await
                .map_err(|e| e.context(&format!("component {name}")))?;
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
            artifacts.push((digest, wasm));
            parts.push((name, prepared));
        }
        tracing::info!(function = %function, components = parts.len(), "Spin app validated");
        self.build_secrets_dir(&function, &deployment)?;

        if let Some(annotations) = deployment.settings.annotations.as_mut() {
            annotations.insert(ANNOTATION_SOURCES.to_string(), format_sources(&digests));
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
        let state = self.state.clone();
        let stored = record.clone();
        let (namespace, name) = (function.namespace.clone(), function.name.clone());
        tokio::task::spawn_blocking(move || -> Result<(), StateError> {
            for (digest, wasm) in &artifacts {
                if !state.has_artifact(digest) {
                    state.put_artifact(wasm)?;
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
        let SpinDeployment { app, sources } = read(deployment).map_err(|e| e.to_string())?;
        let specs = self
            .component_specs(function, deployment, &app)
            .map_err(|e| e.to_string())?;
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

    /// Gives a Spin app's components their specs again (a secret it reads changed).
    pub(super) fn respecify_spin(
        &self,
        function: &FunctionRef,
        deployment: &FunctionDeployment,
    ) -> Result<(), Error> {
        let SpinDeployment { app, .. } = read(deployment)?;
        for (name, spec) in self.component_specs(function, deployment, &app)? {
            let part = wasmgate_runtime::part_name(&function.key(), &name);
            self.runtime
                .respecify(&part, spec)
                .map_err(|e| Error::internal("refreshing a Spin component", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "shop"
[[trigger.http]]
route = "/..."
component = "front"
[[trigger.http]]
route = { private = true }
component = "back"
[component.front]
source = "front.wasm"
allowed_outbound_hosts = ["http://back.spin.internal", "http://self", "https://api.example.com"]
[component.back]
source = "back.wasm"
"#;

    fn head(uri: &str) -> http::request::Parts {
        http::Request::get(uri)
            .body(())
            .expect("valid")
            .into_parts()
            .0
    }

    #[test]
    fn requests_are_routed_with_spins_headers() {
        let router = SpinRouter::new(&App::parse(APP).expect("valid"));
        let mut request = head("http://gw/cart?x=1");
        request.extensions.insert(SpinClient {
            full_url: "http://gw/function/shop/cart?x=1".into(),
            peer: Some("10.0.0.1:5000".parse().expect("an address")),
        });
        assert_eq!(router.route(&mut request).as_deref(), Some("front"));
        let header = |r: &http::request::Parts, name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        assert_eq!(
            header(&request, "spin-full-url").as_deref(),
            Some("http://gw/function/shop/cart?x=1")
        );
        assert_eq!(header(&request, "spin-path-info").as_deref(), Some("/cart"));
        assert_eq!(
            header(&request, "spin-client-addr").as_deref(),
            Some("10.0.0.1:5000")
        );
    }

    #[test]
    fn calls_between_components_follow_allowed_outbound_hosts() {
        let router = SpinRouter::new(&App::parse(APP).expect("valid"));
        let mut chained = head("http://back.spin.internal/inner");
        assert_eq!(
            router.route_call("front", &mut chained),
            CallRoute::Part("back".into())
        );
        assert_eq!(
            chained.headers.get("spin-path-info").map(|v| v.as_bytes()),
            Some(&b"/inner"[..])
        );
        let mut back_to_front = head("http://front.spin.internal/");
        assert!(matches!(
            router.route_call("back", &mut back_to_front),
            CallRoute::Denied(_)
        ));
        let mut own = head("http://self.alt/x");
        assert_eq!(
            router.route_call("front", &mut own),
            CallRoute::Part("front".into())
        );
        let mut from_back = head("http://self.alt/x");
        assert!(matches!(
            router.route_call("back", &mut from_back),
            CallRoute::Denied(_)
        ));
        let mut outside = head("https://api.example.com/");
        assert_eq!(router.route_call("front", &mut outside), CallRoute::NotMine);
        let mut nobody = head("http://nobody.spin.internal/");
        assert!(matches!(
            SpinRouter::new(
                &App::parse(&APP.replace("http://back.spin.internal", "http://*.spin.internal"))
                    .expect("valid")
            )
            .route_call("front", &mut nobody),
            CallRoute::NoRoute(_)
        ));
    }
}
