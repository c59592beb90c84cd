//! OCI references, `registry[:port]/repository[:tag][@sha256:...]`: which `image` values are one,
//! their parsing and checks, and the URL of their repository.

use anyhow::{Context, bail};

/// A parsed OCI reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`.
    pub registry: String,
    /// `path/to/repo`.
    pub repository: String,
    /// The tag, when given (`latest` when neither tag nor digest is).
    pub tag: Option<String>,
    /// `sha256:<hex>`, when given.
    pub digest: Option<String>,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl Reference {
    /// Whether `image` is meant as an OCI reference (and not a path or an uploaded digest).
    pub fn looks_like(image: &str) -> bool {
        if image.starts_with("sha256:")
            || image.ends_with(".wasm")
            || image.starts_with('/')
            || image.starts_with("./")
            || image.starts_with("../")
        {
            return false;
        }
        let image = image.strip_prefix("oci://").unwrap_or(image);
        match image.split_once('/') {
            Some((host, rest)) => {
                !rest.is_empty()
                    && (host.contains('.') || host.contains(':') || host == "localhost")
            }
            None => false,
        }
    }

    /// Parses `registry/repository[:tag][@sha256:hex]` (an `oci://` prefix is allowed).
    pub fn parse(text: &str) -> anyhow::Result<Reference> {
        let text = text.trim();
        let text = text.strip_prefix("oci://").unwrap_or(text);
        if !Reference::looks_like(text) {
            bail!("{text:?} is not an OCI reference (registry/repository[:tag][@sha256:...])");
        }
        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) => {
                let hex = digest.strip_prefix("sha256:").unwrap_or("");
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!("{text:?}: the digest must be sha256:<64 hex digits>");
                }
                (name, Some(digest.to_ascii_lowercase()))
            }
            None => (text, None),
        };
        let (registry, path) = name.split_once('/').context("no repository")?;
        // A tag is after the last ':' of the path (the registry may have a ':port' of its own).
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) => (repository, Some(tag.to_string())),
            None => (path, None),
        };
        let valid_repository = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'.' | b'_' | b'-')
                    })
            });
        if !valid_repository {
            bail!(
                "{text:?}: the repository must be lowercase letters, digits, '.', '_', '-' and '/'"
            );
        }
        if let Some(tag) = &tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !valid {
                bail!("{text:?}: invalid tag {tag:?}");
            }
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag,
        };
        Ok(Reference {
            registry: registry.to_ascii_lowercase(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// What to ask the registry for: the digest when given, else the tag.
    pub(crate) fn target(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The repository's URL on its registry: `http` for local and listed insecure registries
    /// (see the crate documentation), else `https`.
    pub(crate) fn base_url(&self) -> String {
        let host = self.registry.split(':').next().unwrap_or_default();
        let insecure = matches!(host, "localhost" | "127.0.0.1" | "[::1]")
            || std::env::var("WASMGATE_INSECURE_REGISTRIES").is_ok_and(|list| {
                list.split(',')
                    .map(str::trim)
                    .any(|entry| entry == self.registry || entry == host)
            });
        let scheme = if insecure { "http" } else { "https" };
        format!("{scheme}://{}/v2/{}", self.registry, self.repository)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = Reference::parse("localhost:5000/team/greeter:v1").expect("parses");
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "team/greeter");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.to_string(), "localhost:5000/team/greeter:v1");
        let r = Reference::parse("ghcr.io/acme/fn").expect("parses");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let digest = format!("sha256:{}", "a".repeat(64));
        let r =
            Reference::parse(&format!("oci://registry.example.com/fn@{digest}")).expect("parses");
        assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(r.tag, None);
        for not in [
            "guests/functions/target/hello.wasm",
            "/abs/path",
            "./x",
            "sha256:abc",
            "hello",
            "dir/file",
        ] {
            assert!(!Reference::looks_like(not), "{not}");
        }
        for bad in [
            "localhost:5000/UPPER:v1",
            "localhost:5000/fn:bad tag",
            "localhost:5000/fn@sha256:12",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
