//! Registry credentials, from the Docker config file (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `auths.<registry>.auth`, or its `username` and `password`.

use std::collections::HashMap;

use anyhow::Context;
use base64::Engine as _;

/// Credentials for one registry.
#[derive(Clone)]
pub(crate) struct Credentials {
    username: String,
    password: String,
}

/// The `Authorization: Basic` value of `credentials`.
pub(crate) fn basic_header(credentials: &Credentials) -> anyhow::Result<http::HeaderValue> {
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", credentials.username, credentials.password));
    format!("Basic {encoded}")
        .parse()
        .context("credentials that fit in a header")
}

/// Registry credentials from the Docker config file, by registry.
pub(crate) fn docker_credentials() -> anyhow::Result<HashMap<String, Credentials>> {
    let path = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => std::path::PathBuf::from(dir).join("config.json"),
        None => match std::env::var_os("HOME") {
            Some(home) => std::path::PathBuf::from(home).join(".docker/config.json"),
            None => return Ok(HashMap::new()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    parse_docker_config(&text).with_context(|| format!("reading {}", path.display()))
}

/// The credentials of a Docker config file's `auths`, by registry.
fn parse_docker_config(text: &str) -> anyhow::Result<HashMap<String, Credentials>> {
    let config: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
    let mut credentials = HashMap::new();
    let Some(auths) = config["auths"].as_object() else {
        return Ok(credentials);
    };
    for (registry, entry) in auths {
        let registry = registry
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_ascii_lowercase();
        let pair = if let Some(auth) = entry["auth"].as_str() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .with_context(|| format!("auths.{registry}.auth is not base64"))?;
            let decoded = String::from_utf8(decoded)
                .with_context(|| format!("auths.{registry}.auth is not text"))?;
            decoded
                .split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        } else {
            entry["username"]
                .as_str()
                .zip(entry["password"].as_str())
                .map(|(u, p)| (u.to_string(), p.to_string()))
        };
        if let Some((username, password)) = pair {
            credentials.insert(registry, Credentials { username, password });
        }
    }
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config() {
        let auth = base64::engine::general_purpose::STANDARD.encode("me:secret");
        let text = format!(
            r#"{{"auths": {{"https://ghcr.io": {{"auth": "{auth}"}}, "localhost:5000": {{"username": "u", "password": "p"}}}}}}"#
        );
        let credentials = parse_docker_config(&text).expect("parses");
        assert_eq!(credentials["ghcr.io"].username, "me");
        assert_eq!(credentials["ghcr.io"].password, "secret");
        assert_eq!(credentials["localhost:5000"].password, "p");
    }
}
