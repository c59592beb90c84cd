//! The OpenFaaS management API (`/system/*`): routing, query and body parsing, status codes. The
//! work itself is in [`crate::control`] (every write a [`Change`]); the JSON shapes in
//! [`wasmgate_openfaas::types`]; refusals become statuses in [`crate::http::error`].

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, StreamBody};

use crate::control::{self, Change, Functions, Origin, PutMode, SecretChange};
use crate::http::body::{BoxError, GatewayBody};
use crate::http::error::ApiError;
use wasmgate_openfaas::digest::Digest;
use wasmgate_openfaas::names::{self, DEFAULT_NAMESPACE, FunctionRef};
use wasmgate_openfaas::types::{
    DeleteFunctionRequest, FunctionDeployment, Info, LogMessage, Namespace, PrometheusAlert,
    ProviderInfo, ProviderVersion, ScaleServiceRequest, Secret, VersionInfo,
};

/// Largest JSON body the management API reads.
pub const MAX_JSON_BYTES: usize = 1024 * 1024;
/// The `instance` of every log line: one gateway process serves every replica.
const INSTANCE: &str = "wasmgate";

/// What the API needs from the gateway.
#[derive(Debug, Clone)]
pub struct Api {
    /// The functions.
    pub functions: Arc<Functions>,
    /// Largest artifact upload.
    pub max_artifact_bytes: usize,
    /// Becomes `true` when the gateway shuts down; ends log followers.
    pub shutdown: tokio_util::sync::CancellationToken,
}

type Reply = Result<Response<GatewayBody>, ApiError>;

impl Api {
    /// Answers a `/system/*` request (already authorised).
    pub async fn handle<B>(&self, request: Request<B>) -> Response<GatewayBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let query = parse_query(request.uri().query());
        let route = path.strip_prefix("/system/").unwrap_or("");
        let segments: Vec<&str> = route.split('/').collect();
        let result = match (&method, segments.as_slice()) {
            (&Method::GET, ["functions"]) => self.list(&query),
            (&Method::POST, ["functions"]) => self.deploy(request, PutMode::Create).await,
            (&Method::PUT, ["functions"]) => self.deploy(request, PutMode::Update).await,
            (&Method::DELETE, ["functions"]) => self.delete(request, &query).await,
            (&Method::GET, ["function", name]) => self.describe(name, &query),
            (&Method::POST, ["scale-function", name]) => self.scale(name, request, &query).await,
            (&Method::GET, ["info"]) => json(StatusCode::OK, &info()),
            (&Method::GET, ["namespaces"]) => {
                json(StatusCode::OK, &self.functions.namespace_names())
            }
            // `/system/namespace/` (an empty name) is how the Go SDK creates one.
            (&Method::GET | &Method::POST | &Method::PUT | &Method::DELETE, ["namespace"]) => {
                self.namespace(&method, "", request).await
            }
            (&Method::GET | &Method::POST | &Method::PUT | &Method::DELETE, ["namespace", ns]) => {
                self.namespace(&method, ns, request).await
            }
            (&Method::GET, ["secrets"]) => self.list_secrets(&query),
            (&Method::POST | &Method::PUT | &Method::DELETE, ["secrets"]) => {
                self.secret(&method, request, &query).await
            }
            (&Method::GET, ["logs"]) => self.logs(&query),
            (&Method::POST, ["alert"]) => self.alert(request).await,
            (&Method::POST, ["artifacts"]) => self.upload(request).await,
            (&Method::GET | &Method::HEAD, ["artifacts", digest]) => self.artifact(digest),
            (_, route) => match allowed_methods(route) {
                Some(allow) => Err(ApiError::MethodNotAllowed {
                    reason: format!("{method} is not allowed on {path}; use {allow}"),
                    allow,
                }),
                None => Err(ApiError::NoSuchEndpoint(path.clone())),
            },
        };
        result.unwrap_or_else(|error| error.response())
    }

    fn list(&self, query: &HashMap<String, String>) -> Reply {
        let namespace = namespace_of(query, None)?;
        if !self.functions.namespace_exists(&namespace) {
            return Err(ApiError::BadRequest(format!(
                "namespace {namespace} does not exist"
            )));
        }
        json(StatusCode::OK, &self.functions.list(&namespace))
    }

    async fn deploy<B>(&self, request: Request<B>, mode: PutMode) -> Reply
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let query = parse_query(request.uri().query());
        let mut deployment: FunctionDeployment = read_json(request.into_body()).await?;
        if deployment.namespace.as_deref().is_none_or(str::is_empty) {
            deployment.namespace = query.get("namespace").cloned();
        }
        self.functions
            .apply(Change::deploy(deployment, mode), Origin::Local)
            .await?;
        Ok(empty(StatusCode::ACCEPTED))
    }

    async fn delete<B>(&self, request: Request<B>, query: &HashMap<String, String>) -> Reply
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let body: DeleteFunctionRequest = read_json(request.into_body()).await?;
        let namespace = namespace_of(query, body.namespace.as_deref())?;
        let function = FunctionRef::new(&body.function_name, Some(&namespace))?;
        self.functions
            .apply(Change::Remove { function }, Origin::Local)
            .await?;
        Ok(empty(StatusCode::ACCEPTED))
    }

    fn describe(&self, name: &str, query: &HashMap<String, String>) -> Reply {
        let namespace = namespace_of(query, None)?;
        let status = FunctionRef::new(name, Some(&namespace))
            .ok()
            .and_then(|f| self.functions.status(&f));
        match status {
            Some(status) => json(StatusCode::OK, &status),
            // OpenFaaS answers an unknown function with 404 and an empty body.
            None => Ok(empty(StatusCode::NOT_FOUND)),
        }
    }

    async fn scale<B>(
        &self,
        name: &str,
        request: Request<B>,
        query: &HashMap<String, String>,
    ) -> Reply
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let body: ScaleServiceRequest = read_json(request.into_body()).await?;
        let namespace = namespace_of(query, body.namespace.as_deref())?;
        let function = FunctionRef::new(name, Some(&namespace))?;
        let replicas = body.replicas;
        self.functions
            .apply(Change::Scale { function, replicas }, Origin::Local)
            .await?;
        Ok(empty(StatusCode::ACCEPTED))
    }

    /// `/system/namespace/{name}`. The name is the path's, or the body's when the path has none
    /// ([`names::namespace_of_call`]).
    async fn namespace<B>(&self, method: &Method, path_name: &str, request: Request<B>) -> Reply
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if *method == Method::GET {
            let name = names::namespace_of_call(path_name, "")?;
            return match self.functions.namespace(name) {
                Some(namespace) => json(StatusCode::OK, &namespace),
                None => Err(control::Error::NotFound(format!("namespace {name}")).into()),
            };
        }
        let bytes = read_body(request.into_body(), MAX_JSON_BYTES).await?;
        let mut namespace: Namespace = if bytes.iter().all(u8::is_ascii_whitespace) {
            Namespace::default()
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?
        };
        namespace.name = names::namespace_of_call(path_name, &namespace.name)?.to_string();
        let (change, status) = match *method {
            Method::POST => (
                Change::PutNamespace {
                    namespace,
                    mode: PutMode::Create,
                },
                StatusCode::CREATED,
            ),
            Method::PUT => (
                Change::PutNamespace {
                    namespace,
                    mode: PutMode::Update,
                },
                StatusCode::ACCEPTED,
            ),
            _ => (
                Change::DeleteNamespace {
                    name: namespace.name,
                },
                StatusCode::ACCEPTED,
            ),
        };
        self.functions.apply(change, Origin::Local).await?;
        Ok(empty(status))
    }

    fn list_secrets(&self, query: &HashMap<String, String>) -> Reply {
        let namespace = namespace_of(query, None)?;
        if !self.functions.namespace_exists(&namespace) {
            return Err(ApiError::BadRequest(format!(
                "namespace {namespace} does not exist"
            )));
        }
        let secrets: Vec<Secret> = self
            .functions
            .secret_names(&namespace)?
            .into_iter()
            .map(|name| Secret {
                name,
                namespace: Some(namespace.clone()),
                ..Secret::default()
            })
            .collect();
        json(StatusCode::OK, &secrets)
    }

    async fn secret<B>(
        &self,
        method: &Method,
        request: Request<B>,
        query: &HashMap<String, String>,
    ) -> Reply
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let secret: Secret = read_json(request.into_body()).await?;
        let namespace = namespace_of(query, secret.namespace.as_deref())?;
        let value = || -> Result<Vec<u8>, ApiError> {
            match (&secret.raw_value, &secret.value) {
                (Some(raw), _) if !raw.is_empty() => base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .map_err(|e| ApiError::BadRequest(format!("rawValue is not base64: {e}"))),
                (_, Some(value)) => Ok(value.clone().into_bytes()),
                _ => Ok(Vec::new()),
            }
        };
        let change = match *method {
            Method::POST => SecretChange::Create(value()?),
            Method::PUT => SecretChange::Update(value()?),
            _ => SecretChange::Delete,
        };
        let name = secret.name.clone();
        self.functions
            .apply(
                Change::Secret {
                    namespace,
                    name,
                    change,
                },
                Origin::Local,
            )
            .await?;
        Ok(empty(StatusCode::ACCEPTED))
    }

    fn logs(&self, query: &HashMap<String, String>) -> Reply {
        let unprocessable = ApiError::Unprocessable;
        let name = query
            .get("name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| unprocessable("name is required".into()))?;
        let namespace = namespace_of(query, None).map_err(|e| unprocessable(e.to_string()))?;
        let function =
            FunctionRef::new(name, Some(&namespace)).map_err(|e| unprocessable(e.to_string()))?;
        let tail =
            match query.get("tail").map(String::as_str) {
                None | Some("") | Some("-1") => None,
                Some(n) => Some(n.parse::<usize>().map_err(|_| {
                    unprocessable(format!("tail must be a whole number, not {n:?}"))
                })?),
            };
        let follow = match query.get("follow").map(String::as_str) {
            None | Some("") | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(unprocessable(format!(
                    "follow must be true or false, not {other:?}"
                )));
            }
        };
        let since = match query.get("since").filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(wasmgate_openfaas::time::parse_rfc3339(s).ok_or_else(|| {
                unprocessable(format!("since must be an RFC 3339 time, not {s:?}"))
            })?),
        };
        if !self.functions.exists(&function) {
            return Err(control::Error::NotFound(format!("function {function}")).into());
        }
        let Some(logs) = self.functions.runtime().logs(&function.key()) else {
            return Err(control::Error::NotFound(format!("function {function}")).into());
        };

        // Subscribe before taking the snapshot so no line falls between them.
        let follower = follow.then(|| logs.follow());
        let mut recent = logs.recent();
        if let Some(since) = since {
            recent.retain(|line| line.timestamp >= since);
        }
        if let Some(tail) = tail {
            let skip = recent.len().saturating_sub(tail);
            recent.drain(..skip);
        }
        let last_seen = recent.last().map(|l| l.timestamp);
        let (name, namespace) = (function.name.clone(), function.namespace.clone());
        let render = move |line: &wasmgate_runtime::logs::LogLine| -> Bytes {
            let message = LogMessage {
                name: &name,
                namespace: &namespace,
                instance: INSTANCE,
                timestamp: wasmgate_openfaas::time::format_rfc3339(line.timestamp, true),
                text: &line.text,
                trace_id: line.trace_id.as_deref(),
            };
            let mut json = serde_json::to_vec(&message).unwrap_or_default();
            json.push(b'\n');
            Bytes::from(json)
        };
        let snapshot: Vec<Bytes> = recent.iter().map(&render).collect();
        let initial = futures::stream::iter(
            snapshot
                .into_iter()
                .map(|b| Ok::<_, BoxError>(http_body::Frame::data(b))),
        );
        let body: GatewayBody = match follower {
            None => StreamBody::new(initial).boxed_unsync(),
            Some(receiver) => {
                let shutdown = self.shutdown.clone();
                let live = futures::stream::unfold(
                    (receiver, shutdown, render),
                    move |(mut receiver, shutdown, render)| async move {
                        loop {
                            if shutdown.is_cancelled() {
                                return None;
                            }
                            tokio::select! {
                                line = receiver.recv() => match line {
                                    Ok(line) if last_seen.is_some_and(|seen| line.timestamp <= seen) => continue,
                                    Ok(line) => {
                                        let frame = http_body::Frame::data(render(&line));
                                        return Some((Ok::<_, BoxError>(frame), (receiver, shutdown, render)));
                                    }
                                    // A slow reader missed some lines; go on with the newest.
                                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                                },
                                () = shutdown.cancelled() => return None,
                            }
                        }
                    },
                );
                StreamBody::new(futures::StreamExt::chain(initial, live)).boxed_unsync()
            }
        };
        let mut response = Response::new(body);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-ndjson"),
        );
        Ok(response)
    }

    /// `POST /system/alert`, the AlertManager webhook through which OpenFaaS scales functions on
    /// their alerts. Accepted and otherwise a no-op: every request here gets an instance of its own,
    /// so there are no replicas to add. The body is checked as OpenFaaS checks it (an AlertManager
    /// payload; anything else is 400), so a misconfigured webhook is noticed.
    async fn alert<B>(&self, request: Request<B>) -> Reply
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let alert: PrometheusAlert = read_json(request.into_body()).await?;
        tracing::debug!(
            status = %alert.status,
            alerts = alert.alerts.len(),
            "an AlertManager alert: nothing to scale, every request gets its own instance"
        );
        Ok(empty(StatusCode::OK))
    }

    /// `GET /system/artifacts/sha256:<hex>`: 200 when the component is stored (so a client can skip
    /// uploading it), 404 when not.
    fn artifact(&self, digest: &str) -> Reply {
        let parsed = Digest::parse(digest).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{digest:?} is not a digest such as sha256:<64 hex digits>"
            ))
        })?;
        if !self.functions.has_artifact(&parsed) {
            return Err(ApiError::NoSuchArtifact(digest.to_string()));
        }
        json(
            StatusCode::OK,
            &serde_json::json!({ "digest": parsed.to_string() }),
        )
    }

    async fn upload<B>(&self, request: Request<B>) -> Reply
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let files = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case(wasmgate_spin::files::MEDIA_TYPE)
            });
        let bytes = read_body(request.into_body(), self.max_artifact_bytes).await?;
        if files {
            // A Spin component's static files (`wasmgate_spin::files`).
            let (digest, count) = self.functions.upload_files(bytes.to_vec()).await?;
            return json(
                StatusCode::CREATED,
                &serde_json::json!({ "digest": digest.to_string(), "files": count }),
            );
        }
        let (digest, world) = self.functions.upload(bytes.to_vec()).await?;
        json(
            StatusCode::CREATED,
            &serde_json::json!({ "digest": digest.to_string(), "world": world.as_str() }),
        )
    }
}

/// `GET /system/info`.
fn info() -> Info {
    let sha = option_env!("WASMGATE_GIT_SHA")
        .unwrap_or("unknown")
        .to_string();
    let release = env!("CARGO_PKG_VERSION").to_string();
    Info {
        provider: ProviderInfo {
            provider: "wasmgate".into(),
            orchestration: "wasm".into(),
            version: ProviderVersion {
                sha: sha.clone(),
                release: release.clone(),
            },
        },
        version: VersionInfo {
            commit_message: String::new(),
            sha,
            release,
        },
        arch: std::env::consts::ARCH.into(),
    }
}

/// The methods each `/system/*` route serves, for the `Allow` of its 405; `None` for no such route.
/// Every method listed here has an arm in [`Api::handle`] (the gateway tests check both ways).
fn allowed_methods(route: &[&str]) -> Option<&'static str> {
    Some(match route {
        ["functions"] | ["secrets"] | ["namespace"] | ["namespace", _] => "GET, POST, PUT, DELETE",
        ["function", _] | ["info"] | ["namespaces"] | ["logs"] => "GET",
        ["scale-function", _] | ["alert"] | ["artifacts"] => "POST",
        ["artifacts", _] => "GET, HEAD",
        _ => return None,
    })
}

/// The namespace of a call: `?namespace=` first, then the body's, then the default.
fn namespace_of(query: &HashMap<String, String>, body: Option<&str>) -> Result<String, ApiError> {
    let namespace = query
        .get("namespace")
        .map(String::as_str)
        .filter(|n| !n.is_empty())
        .or(body.filter(|n| !n.is_empty()))
        .unwrap_or(DEFAULT_NAMESPACE);
    FunctionRef::new("x", Some(namespace))?;
    Ok(namespace.to_string())
}

fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(percent_decode(key), percent_decode(value));
    }
    map
}

/// Decodes `%XX` and `+` in a query component; invalid escapes are kept as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a body of at most `limit` bytes; more is 413.
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::TooLarge(limit))
        }
        Err(error) => Err(ApiError::BadRequest(format!("reading the body: {error}"))),
    }
}

async fn read_json<T: serde::de::DeserializeOwned, B>(body: B) -> Result<T, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let bytes = read_body(body, MAX_JSON_BYTES).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Reply {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApiError::Control(control::Error::internal("encoding JSON", e)))?;
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn empty(status: StatusCode) -> Response<GatewayBody> {
    let mut response = Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded() {
        let q = parse_query(Some(
            "name=hello&namespace=openfaas-fn&since=2026-01-01T00%3A00%3A00Z&x=a+b&flag&bad=%zz&end=%4",
        ));
        assert_eq!(q["name"], "hello");
        assert_eq!(q["since"], "2026-01-01T00:00:00Z");
        assert_eq!(q["x"], "a b");
        assert_eq!(q["flag"], "");
        assert_eq!(q["bad"], "%zz");
        assert_eq!(q["end"], "%4");
    }
}
