//! The command line's side of the OpenFaaS API: which gateway to talk to, the credentials saved by
//! `login`, and one HTTP client. Only OpenFaaS routes are used, so these commands work against any
//! OpenFaaS gateway too.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full};

/// The gateway when nothing else names one, as faas-cli assumes.
pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:8080";

/// Picks the gateway the way faas-cli does: `--gateway`, then `provider.gateway` of the stack file,
/// then `$OPENFAAS_URL`, then [`DEFAULT_GATEWAY`]. A trailing slash is dropped.
pub fn resolve_gateway(
    flag: Option<&str>,
    stack_gateway: Option<&str>,
    env: Option<&str>,
) -> String {
    let chosen = [flag, stack_gateway, env]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|g| !g.is_empty())
        .unwrap_or(DEFAULT_GATEWAY);
    chosen.trim_end_matches('/').to_string()
}

/// Basic-auth credentials for one gateway.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Login {
    /// The user.
    pub user: String,
    /// The password.
    pub password: String,
}

/// Where `login` keeps credentials: `$XDG_CONFIG_HOME/wasmgate/credentials.json`, else
/// `~/.config/wasmgate/credentials.json`. The file is readable by its owner only.
pub fn credentials_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".config"),
            None => bail!("neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep credentials"),
        },
    };
    Ok(base.join("wasmgate").join("credentials.json"))
}

type Saved = std::collections::BTreeMap<String, Login>;

fn read_saved(path: &Path) -> anyhow::Result<Saved> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("reading saved credentials from {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_saved(path: &Path, saved: &Saved) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let dir = path.parent().context("the credentials path has a folder")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("writing {}", temporary.display()))?;
    // A file that existed with wider permissions keeps them on open; narrow them explicitly.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(&serde_json::to_vec_pretty(saved)?)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The credentials saved for `gateway`, if any.
pub fn saved_login(gateway: &str) -> anyhow::Result<Option<Login>> {
    Ok(read_saved(&credentials_path()?)?.remove(gateway))
}

/// Saves (or with `None`, forgets) the credentials of `gateway`. Returns whether any were there before.
pub fn save_login(gateway: &str, login: Option<Login>) -> anyhow::Result<bool> {
    let path = credentials_path()?;
    let mut saved = read_saved(&path)?;
    let had = match login {
        Some(login) => saved.insert(gateway.to_string(), login).is_some(),
        None => saved.remove(gateway).is_some(),
    };
    write_saved(&path, &saved)?;
    Ok(had)
}

/// An answer from the gateway.
#[derive(Debug)]
pub struct Reply {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: http::HeaderMap,
    /// Its whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text, trimmed.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_string()
    }
}

/// Talks to one gateway, with its saved credentials when it has some.
pub struct ApiClient {
    /// The gateway's base URL, without a trailing slash.
    pub gateway: String,
    login: Option<Login>,
    client: wasmgate_net::HttpClient,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client for `gateway`, using `login` for `/system/*`.
    pub fn new(gateway: &str, login: Option<Login>) -> anyhow::Result<Self> {
        let uri: http::Uri = gateway
            .parse()
            .with_context(|| format!("the gateway {gateway:?} is not a URL"))?;
        if uri.scheme().is_none() || uri.authority().is_none() {
            bail!("the gateway {gateway:?} must be a URL such as http://127.0.0.1:8080");
        }
        Ok(ApiClient {
            gateway: gateway.to_string(),
            login,
            client: wasmgate_net::http_client(std::time::Duration::from_secs(10)),
        })
    }

    /// Sends a request to `path` (with its query) and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(String, String)],
    ) -> anyhow::Result<Reply> {
        let response = self.start(method, path, body, headers).await?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .with_context(|| format!("reading the answer from {}", self.gateway))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends a request and returns as soon as the head arrives; the body streams.
    pub async fn start(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(String, String)],
    ) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
        let url = format!("{}{path}", self.gateway);
        let mut request = http::Request::builder().method(method).uri(&url);
        if let Some(login) = &self.login
            && path.starts_with("/system/")
        {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", login.user, login.password));
            request = request.header(header::AUTHORIZATION, format!("Basic {token}"));
        }
        for (name, value) in headers {
            let value = HeaderValue::from_str(value)
                .with_context(|| format!("header {name}: the value is not valid in a header"))?;
            request = request.header(name.as_str(), value);
        }
        if body.is_some()
            && !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .with_context(|| format!("building a request to {url}"))?;
        self.client.request(request).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the gateway at {}: {}",
                self.gateway,
                wasmgate_net::error_chain(&e)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_picked_as_faas_cli_does() {
        let pick = |flag, stack, env| resolve_gateway(flag, stack, env);
        assert_eq!(
            pick(Some("http://a:1/"), Some("http://b:2"), Some("http://c:3")),
            "http://a:1"
        );
        assert_eq!(
            pick(None, Some("http://b:2"), Some("http://c:3")),
            "http://b:2"
        );
        assert_eq!(pick(None, None, Some("http://c:3")), "http://c:3");
        assert_eq!(pick(None, Some(" "), None), DEFAULT_GATEWAY);
    }
}
