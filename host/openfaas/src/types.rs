//! The JSON of the OpenFaaS management API, field for field, and a function to deploy as a stack
//! file names it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::names::FunctionRef;

/// Where a function finds its secrets, one file per secret, as OpenFaaS mounts them.
pub const SECRETS_GUEST_PATH: &str = "/var/openfaas/secrets";

/// `limits` and `requests` of a deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Kubernetes memory quantity (`128Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Kubernetes CPU quantity (`500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
}

/// The body of deploy (POST) and update (PUT) on `/system/functions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeployment {
    /// The function's name.
    pub service: String,
    /// Where the component comes from: `sha256:<hex>` of an uploaded artifact, or a `.wasm` path.
    pub image: String,
    /// Its namespace; `openfaas-fn` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Everything else of the deployment, reported back unchanged in [`FunctionStatus`].
    #[serde(flatten)]
    pub settings: FunctionSettings,
}

/// The fields a deployment and a status share, field for field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionSettings {
    /// OpenFaaS's process to run; kept and reported, meaningless for a component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_process: Option<String>,
    /// The function's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<BTreeMap<String, String>>,
    /// Placement constraints; kept and reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Vec<String>>,
    /// Secrets the function may read at `/var/openfaas/secrets/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<String>>,
    /// Labels (scaling settings among them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Resources>,
    /// Requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Resources>,
    /// Kept and reported; a component never has a writable root anyway.
    #[serde(default)]
    pub read_only_root_filesystem: bool,
}

/// `usage` in a FunctionStatus.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// CPU in use; not measured per function here.
    pub cpu: f64,
    /// Memory in use by the function's instances.
    pub total_memory_bytes: f64,
}

/// An item of `GET /system/functions` and the answer of `GET /system/function/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    /// Name.
    pub name: String,
    /// The image as deployed.
    pub image: String,
    /// Namespace, always set.
    pub namespace: String,
    /// As deployed.
    #[serde(flatten)]
    pub settings: FunctionSettings,
    /// Invocations since the gateway started.
    pub invocation_count: u64,
    /// 0 when scaled to zero (compiled code unloaded), else the requested count.
    pub replicas: u64,
    /// Replicas ready to serve without compiling: equal to `replicas` when loaded.
    pub available_replicas: u64,
    /// When the function was first deployed (RFC 3339).
    pub created_at: String,
    /// The world of `wasi:http` its component exports: `wasi:http@0.2` or `wasi:http@0.3` (a
    /// wasmgate field; OpenFaaS clients ignore it). Absent while unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<String>,
    /// What runs the function: its route, and its schedule and topics when the connectors'
    /// annotations give them (a wasmgate field; OpenFaaS clients ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers: Option<crate::triggers::Triggers>,
    /// The components of a Spin app, each with its routes (a wasmgate field; OpenFaaS clients
    /// ignore it). Absent for a plain function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<ComponentStatus>>,
    /// Resource usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One component of a Spin app in its function's status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Its name (`[component.NAME]`).
    pub name: String,
    /// Its component's digest (`sha256:...`).
    pub digest: String,
    /// The routes that reach it from outside, as the manifest writes them (`/api/...`).
    pub routes: Vec<String>,
    /// Whether it has a private route (reached only from the app's components).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
    /// The digest of the archive of its static files, when it has `files`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<String>,
}

/// `DELETE /system/functions` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteFunctionRequest {
    /// The function to remove.
    pub function_name: String,
    /// Its namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `POST /system/scale-function/{name}` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleServiceRequest {
    /// The function (the path's name wins when they differ).
    #[serde(default)]
    pub service_name: Option<String>,
    /// Desired replicas: 0 scales to zero.
    pub replicas: u64,
    /// Its namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `POST /system/alert` body: what Prometheus AlertManager sends its webhook, as far as OpenFaaS
/// reads it (unknown fields are ignored, missing ones are empty, as Go's decoder has them).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PrometheusAlert {
    /// `firing` or `resolved`.
    #[serde(default)]
    pub status: String,
    /// The AlertManager receiver that sent it.
    #[serde(default)]
    pub receiver: String,
    /// The alerts, one per function.
    #[serde(default)]
    pub alerts: Vec<PrometheusInnerAlert>,
}

/// One alert of a [`PrometheusAlert`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PrometheusInnerAlert {
    /// `firing` or `resolved`.
    #[serde(default)]
    pub status: String,
    /// Its labels.
    #[serde(default)]
    pub labels: PrometheusAlertLabels,
}

/// The labels OpenFaaS reads from an alert.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PrometheusAlertLabels {
    /// The alert's name (`APIHighInvocationRate`).
    #[serde(default)]
    pub alertname: String,
    /// The function it is about (`name` or `name.namespace`).
    #[serde(default)]
    pub function_name: String,
}

/// A secret in the API. `value` (text) or `rawValue` (base64) on writes; only `name` and
/// `namespace` on reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// Name.
    pub name: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The value as text.
    #[serde(default, skip_serializing)]
    pub value: Option<String>,
    /// The value as base64.
    #[serde(default, skip_serializing)]
    pub raw_value: Option<String>,
}

/// A namespace in the API and in the state directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `GET /system/info`.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    /// The provider.
    pub provider: ProviderInfo,
    /// The gateway's version.
    pub version: VersionInfo,
    /// CPU architecture.
    pub arch: String,
}

/// `provider` of [`Info`].
#[derive(Debug, Clone, Serialize)]
pub struct ProviderInfo {
    /// Provider name.
    pub provider: String,
    /// Orchestration.
    pub orchestration: String,
    /// Version; faas-cli needs it non-null.
    pub version: ProviderVersion,
}

/// `provider.version` of [`Info`].
#[derive(Debug, Clone, Serialize)]
pub struct ProviderVersion {
    /// Commit.
    pub sha: String,
    /// Release.
    pub release: String,
}

/// `version` of [`Info`].
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    /// Commit message.
    pub commit_message: String,
    /// Commit.
    pub sha: String,
    /// Release.
    pub release: String,
}

/// A line of `GET /system/logs`.
#[derive(Debug, Clone, Serialize)]
pub struct LogMessage<'a> {
    /// Function name.
    pub name: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// The replica; wasmgate names the gateway.
    pub instance: &'a str,
    /// RFC 3339 with nanoseconds.
    pub timestamp: String,
    /// The line.
    pub text: &'a str,
    /// The trace of the request that wrote it, when it was traced (a wasmgate addition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<&'a str>,
}

/// What wasmgate persists for a function: the deployment as received plus what it resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionRecord {
    /// The deployment, namespace filled in.
    pub deployment: FunctionDeployment,
    /// Digest of the component in the artifact store (`sha256:<hex>`).
    pub digest: String,
    /// First deployment time, RFC 3339.
    pub created_at: String,
    /// Requested replicas; 0 = scaled to zero.
    pub replicas: u64,
    /// The world of `wasi:http` its component exports (`wasi:http@0.2` or `wasi:http@0.3`), found
    /// when it was validated; absent in records written before wasmgate knew two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<String>,
}

/// A function to deploy as a stack file (or `serve --function`) names it, resolved: its validated name,
/// the path of its component, and its OCI reference if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedFunction {
    /// Name and namespace.
    pub function: FunctionRef,
    /// The component file: `image` when it is a path; for an OCI `image`, where `build` puts the
    /// component of the function's `handler` and `lang` (empty when it has neither).
    pub wasm: PathBuf,
    /// `image`, when it is an OCI reference.
    pub oci: Option<String>,
    /// What the deployment carries besides name and image: `envVars`, `secrets`, `labels`,
    /// `annotations`, `limits` (each `None` when the stack file leaves it out).
    pub settings: FunctionSettings,
    /// Archives the gateway stores before deploying it, which its annotations name by digest: the
    /// static files of a Spin app's components (`serve -f spin.toml`).
    pub archives: Vec<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faas_cli_deployments_parse() {
        let body = r#"{"service":"figlet","image":"sha256:ab","namespace":"openfaas-fn","envProcess":"figlet",
            "envVars":{"a":"b"},"labels":{},"annotations":{},"secrets":null,"limits":{"memory":"128Mi"},
            "readOnlyRootFilesystem":true,"unknownField":1}"#;
        let d: FunctionDeployment = serde_json::from_str(body).expect("parses");
        assert_eq!(d.service, "figlet");
        assert_eq!(
            d.settings
                .env_vars
                .as_ref()
                .and_then(|e| e.get("a"))
                .map(String::as_str),
            Some("b")
        );
        assert_eq!(
            d.settings.limits.and_then(|l| l.memory).as_deref(),
            Some("128Mi")
        );
        assert!(d.settings.read_only_root_filesystem);
        assert!(d.settings.secrets.is_none());
    }

    #[test]
    fn statuses_use_openfaas_names() {
        let status = FunctionStatus {
            name: "f".into(),
            namespace: "openfaas-fn".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            available_replicas: 1,
            ..FunctionStatus::default()
        };
        let json = serde_json::to_value(&status).expect("serialises");
        for key in [
            "name",
            "image",
            "namespace",
            "invocationCount",
            "replicas",
            "availableReplicas",
            "createdAt",
        ] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
        let secret = Secret {
            name: "s".into(),
            value: Some("v".into()),
            ..Secret::default()
        };
        let json = serde_json::to_string(&secret).expect("serialises");
        assert!(!json.contains("\"v\""), "values are never returned: {json}");
    }
}
