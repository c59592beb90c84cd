//! The client of the OCI distribution API: resolving a reference to its manifest (through an
//! index), downloading the component layer (following blob redirects), uploading blobs and the
//! manifest, and answering a registry's authentication challenge (basic, or a bearer token from
//! its token service).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use sha2::{Digest as _, Sha256};

use crate::credentials::{Credentials, basic_header, docker_credentials};
use crate::reference::Reference;

/// The media type of a component layer (CNCF Wasm OCI artifact layout).
pub const WASM_LAYER: &str = "application/wasm";
/// The media type of the config of a Wasm artifact.
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// How long one registry request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest manifest or token answer read.
const MAX_SMALL_BODY: usize = 4 * 1024 * 1024;

/// A component pulled from a registry.
#[derive(Debug)]
pub struct Pulled {
    /// The digest of the manifest the reference resolved to.
    pub manifest_digest: String,
    /// The digest of the component layer (also the digest of `bytes`).
    pub layer_digest: String,
    /// The component.
    pub bytes: Vec<u8>,
}

/// A client of OCI registries.
pub struct RegistryClient {
    client: wasmgate_net::HttpClient,
    credentials: HashMap<String, Credentials>,
    /// Bearer tokens by registry and scope.
    tokens: tokio::sync::Mutex<HashMap<(String, String), String>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("registries_with_credentials", &self.credentials.len())
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client with the credentials of the Docker config file, if there is one.
    pub fn new() -> anyhow::Result<RegistryClient> {
        Ok(RegistryClient {
            client: wasmgate_net::http_client(Duration::from_secs(15)),
            credentials: docker_credentials()?,
            tokens: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Resolves `reference` and downloads its component, at most `max_bytes`, unless `cached` has the
    /// layer (looked up by its digest, `sha256:<hex>`).
    pub async fn pull(
        &self,
        reference: &Reference,
        max_bytes: usize,
        cached: impl Fn(&str) -> Option<Vec<u8>>,
    ) -> anyhow::Result<Pulled> {
        let scope = format!("repository:{}:pull", reference.repository);
        let accept = format!("{OCI_MANIFEST}, {OCI_INDEX}");
        let url = format!("{}/manifests/{}", reference.base_url(), reference.target());
        let (mut manifest_digest, mut manifest) =
            self.manifest(reference, &url, &accept, &scope).await?;
        if manifest.get("mediaType").and_then(|m| m.as_str()) == Some(OCI_INDEX)
            || manifest.get("manifests").is_some()
        {
            // An index: take the entry for Wasm.
            let entry = manifest["manifests"]
                .as_array()
                .and_then(|entries| {
                    entries.iter().find(|entry| {
                        entry["platform"]["architecture"] == "wasm"
                            || entry["platform"]["os"]
                                .as_str()
                                .is_some_and(|os| os.starts_with("wasi"))
                    })
                })
                .with_context(|| format!("{reference} is an index with no Wasm entry"))?;
            let digest = entry["digest"]
                .as_str()
                .context("an index entry without a digest")?
                .to_string();
            let url = format!("{}/manifests/{digest}", reference.base_url());
            (manifest_digest, manifest) =
                self.manifest(reference, &url, OCI_MANIFEST, &scope).await?;
        }
        if let Some(wanted) = &reference.digest
            && manifest_digest != *wanted
            && reference.tag.is_none()
        {
            bail!("{reference}: the registry sent manifest {manifest_digest}, not {wanted}");
        }
        let layers = manifest["layers"]
            .as_array()
            .with_context(|| format!("{reference}: the manifest has no layers"))?;
        let wasm_layers: Vec<&serde_json::Value> = layers
            .iter()
            .filter(|layer| {
                matches!(
                    layer["mediaType"].as_str(),
                    Some(WASM_LAYER | "application/vnd.wasm.content.layer.v1+wasm")
                )
            })
            .collect();
        let [layer] = wasm_layers.as_slice() else {
            bail!(
                "{reference} is not a Wasm component artifact: it needs exactly one {WASM_LAYER} layer, it has {}",
                wasm_layers.len()
            );
        };
        let layer_digest = layer["digest"]
            .as_str()
            .context("a layer without a digest")?
            .to_string();
        if let Some(size) = layer["size"].as_u64()
            && size > max_bytes as u64
        {
            bail!("{reference}: the component is {size} bytes, over the {max_bytes} byte limit");
        }
        let bytes = match cached(&layer_digest) {
            Some(bytes) => bytes,
            None => {
                self.blob(reference, &layer_digest, &scope, max_bytes)
                    .await?
            }
        };
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if actual != layer_digest {
            bail!("{reference}: the layer's content is {actual}, not its digest {layer_digest}");
        }
        Ok(Pulled {
            manifest_digest,
            layer_digest,
            bytes,
        })
    }

    /// Publishes `wasm` at `reference` (its tag); returns the manifest's digest.
    pub async fn push(&self, reference: &Reference, wasm: Vec<u8>) -> anyhow::Result<String> {
        let scope = format!("repository:{}:pull,push", reference.repository);
        let layer_digest = format!("sha256:{}", hex::encode(Sha256::digest(&wasm)));
        let created = wasmgate_openfaas::time::format_rfc3339(std::time::SystemTime::now(), false);
        let config = serde_json::json!({
            "created": created,
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [layer_digest],
            "component": {"exports": ["wasi:http/incoming-handler"]},
        })
        .to_string()
        .into_bytes();
        let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
        let layer_size = wasm.len();
        let config_size = config.len();
        self.upload_blob(reference, &scope, &config_digest, config)
            .await?;
        self.upload_blob(reference, &scope, &layer_digest, wasm)
            .await?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": WASM_LAYER,
            "config": {"mediaType": WASM_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": WASM_LAYER, "digest": layer_digest, "size": layer_size}],
        })
        .to_string()
        .into_bytes();
        let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
        let tag = reference.tag.clone().unwrap_or_else(|| "latest".into());
        let url = format!("{}/manifests/{tag}", reference.base_url());
        let response = self
            .send(reference, &scope, || {
                Request::put(&url)
                    .header(header::CONTENT_TYPE, OCI_MANIFEST)
                    .body(Full::new(Bytes::from(manifest.clone())))
            })
            .await?;
        expect_status(
            &response,
            &[StatusCode::CREATED, StatusCode::OK],
            "storing the manifest",
        )?;
        Ok(manifest_digest)
    }

    async fn upload_blob(
        &self,
        reference: &Reference,
        scope: &str,
        digest: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<()> {
        let base = reference.base_url();
        let head = self
            .send(reference, scope, || {
                Request::head(format!("{base}/blobs/{digest}")).body(Full::new(Bytes::new()))
            })
            .await?;
        if head.status() == StatusCode::OK {
            return Ok(());
        }
        let start = self
            .send(reference, scope, || {
                Request::post(format!("{base}/blobs/uploads/")).body(Full::new(Bytes::new()))
            })
            .await?;
        expect_status(&start, &[StatusCode::ACCEPTED], "starting an upload")?;
        let location = start
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .context("the registry gave no upload location")?;
        let location = absolute(&reference.base_url(), location);
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let body = Bytes::from(bytes);
        let done = self
            .send(reference, scope, || {
                Request::put(&url)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(Full::new(body.clone()))
            })
            .await?;
        expect_status(&done, &[StatusCode::CREATED], "uploading a blob")
    }

    async fn manifest(
        &self,
        reference: &Reference,
        url: &str,
        accept: &str,
        scope: &str,
    ) -> anyhow::Result<(String, serde_json::Value)> {
        let response = self
            .send(reference, scope, || {
                Request::get(url)
                    .header(header::ACCEPT, accept)
                    .body(Full::new(Bytes::new()))
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            bail!("{reference} was not found in its registry");
        }
        expect_status(&response, &[StatusCode::OK], "reading the manifest")?;
        let body = read_limited(response, MAX_SMALL_BODY).await?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        let manifest = serde_json::from_slice(&body)
            .with_context(|| format!("{reference}: the manifest is not JSON"))?;
        Ok((digest, manifest))
    }

    async fn blob(
        &self,
        reference: &Reference,
        digest: &str,
        scope: &str,
        max_bytes: usize,
    ) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}/blobs/{digest}", reference.base_url());
        let mut response = self
            .send(reference, scope, || {
                Request::get(&url).body(Full::new(Bytes::new()))
            })
            .await?;
        let mut hops = 0;
        while response.status().is_redirection() {
            hops += 1;
            if hops > 5 {
                bail!("{reference}: too many redirects for {digest}");
            }
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .context("a redirect without a location")?;
            let next = absolute(&url, location);
            // Object storage gets no registry credentials.
            let request = Request::get(&next)
                .body(Full::new(Bytes::new()))
                .context("building a request")?;
            response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request))
                .await
                .context("the blob download timed out")?
                .map_err(|e| anyhow::anyhow!("{}", wasmgate_net::error_chain(&e)))?;
        }
        expect_status(&response, &[StatusCode::OK], "downloading the component")?;
        read_limited(response, max_bytes).await
    }

    /// Sends the request `make` builds, answering a registry's authentication challenge once.
    async fn send(
        &self,
        reference: &Reference,
        scope: &str,
        make: impl Fn() -> http::Result<Request<Full<Bytes>>>,
    ) -> anyhow::Result<Response<hyper::body::Incoming>> {
        let key = (reference.registry.clone(), scope.to_string());
        let cached = self.tokens.lock().await.get(&key).cloned();
        let credentials = self.credentials.get(&reference.registry).cloned();
        let first = self
            .attempt(&make, cached.as_deref(), credentials.as_ref(), false)
            .await?;
        if first.status() != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        let challenge = first
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if let Some(params) = challenge.strip_prefix("Bearer ") {
            let token = self
                .token(reference, params, scope, credentials.as_ref())
                .await?;
            self.tokens.lock().await.insert(key, token.clone());
            return self.attempt(&make, Some(&token), None, false).await;
        }
        match credentials {
            Some(credentials) => self.attempt(&make, None, Some(&credentials), true).await,
            None => bail!(
                "{} asks for credentials and the Docker config file has none for it (docker login {})",
                reference.registry,
                reference.registry
            ),
        }
    }

    async fn attempt(
        &self,
        make: &impl Fn() -> http::Result<Request<Full<Bytes>>>,
        token: Option<&str>,
        credentials: Option<&Credentials>,
        basic: bool,
    ) -> anyhow::Result<Response<hyper::body::Incoming>> {
        let mut request = make().context("building a registry request")?;
        if let Some(token) = token {
            request.headers_mut().insert(
                header::AUTHORIZATION,
                format!("Bearer {token}")
                    .parse()
                    .context("a token header")?,
            );
        } else if let (true, Some(credentials)) = (basic, credentials) {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, basic_header(credentials)?);
        }
        tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request))
            .await
            .context("the registry did not answer in time")?
            .map_err(|e| anyhow::anyhow!("{}", wasmgate_net::error_chain(&e)))
    }

    /// A bearer token from the realm of a `WWW-Authenticate: Bearer ...` challenge.
    async fn token(
        &self,
        reference: &Reference,
        params: &str,
        scope: &str,
        credentials: Option<&Credentials>,
    ) -> anyhow::Result<String> {
        let params = challenge_params(params);
        let realm = params.get("realm").with_context(|| {
            format!("{}: a bearer challenge without a realm", reference.registry)
        })?;
        let mut url = format!("{realm}?scope={}", query_escape(scope));
        if let Some(service) = params.get("service") {
            url.push_str(&format!("&service={}", query_escape(service)));
        }
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(&url)
            .body(Full::new(Bytes::new()))
            .context("building the token request")?;
        if let Some(credentials) = credentials {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, basic_header(credentials)?);
        }
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request))
            .await
            .context("the token service did not answer in time")?
            .map_err(|e| anyhow::anyhow!("{}", wasmgate_net::error_chain(&e)))?;
        expect_status(&response, &[StatusCode::OK], "getting a registry token")?;
        let body = read_limited(response, MAX_SMALL_BODY).await?;
        let answer: serde_json::Value =
            serde_json::from_slice(&body).context("the token answer is not JSON")?;
        answer["token"]
            .as_str()
            .or_else(|| answer["access_token"].as_str())
            .map(str::to_string)
            .context("the token answer has no token")
    }
}

fn expect_status(
    response: &Response<hyper::body::Incoming>,
    wanted: &[StatusCode],
    doing: &str,
) -> anyhow::Result<()> {
    if wanted.contains(&response.status()) {
        Ok(())
    } else {
        bail!("{doing}: the registry answered {}", response.status())
    }
}

async fn read_limited(
    response: Response<hyper::body::Incoming>,
    max: usize,
) -> anyhow::Result<Vec<u8>> {
    let body = tokio::time::timeout(
        REQUEST_TIMEOUT,
        Limited::new(response.into_body(), max).collect(),
    )
    .await
    .context("the registry stopped sending")?
    .map_err(|e| anyhow::anyhow!("reading from the registry: {e}"))?;
    Ok(body.to_bytes().to_vec())
}

/// `location` made absolute against `base` (registries may answer with a path).
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let origin_end = base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(base.len());
    format!("{}{location}", &base[..origin_end])
}

/// `key="value"` pairs of an authentication challenge.
fn challenge_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((value, next)) => (value.to_string(), next),
                None => (quoted.to_string(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((value, next)) => (value.trim().to_string(), next),
                None => (after.trim().to_string(), ""),
            }
        };
        params.insert(key, value);
        rest = next.trim_start_matches(',').trim();
    }
    params
}

fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_locations() {
        let params = challenge_params(
            r#"realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a:pull""#,
        );
        assert_eq!(params["realm"], "https://auth.example.com/token");
        assert_eq!(params["service"], "registry.example.com");
        assert_eq!(
            absolute(
                "http://127.0.0.1:5000/v2/fn",
                "/v2/fn/blobs/uploads/x?state=1"
            ),
            "http://127.0.0.1:5000/v2/fn/blobs/uploads/x?state=1"
        );
        assert_eq!(absolute("http://a/v2", "https://b/c"), "https://b/c");
    }
}
