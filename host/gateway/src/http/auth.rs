//! Basic auth for `/system/*`, as OpenFaaS does it: credentials from the files `basic-auth-user` and
//! `basic-auth-password` (whitespace trimmed), compared in constant time.

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use http::HeaderMap;

/// The one user allowed to manage the gateway.
#[derive(Clone)]
pub struct Credentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Credentials given directly; both must be non-empty.
    pub fn new(user: &str, password: &str) -> anyhow::Result<Self> {
        let (user, password) = (user.trim(), password.trim());
        if user.is_empty() || password.is_empty() {
            bail!("basic auth needs a non-empty user and password");
        }
        Ok(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    /// Reads `basic-auth-user` and `basic-auth-password` from `dir`.
    pub fn from_dir(dir: &Path) -> anyhow::Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        };
        Credentials::new(&read("basic-auth-user")?, &read("basic-auth-password")?)
    }

    /// Whether the request's `Authorization` header carries these credentials.
    pub fn check(&self, headers: &HeaderMap) -> bool {
        let Some(encoded) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Basic ")
                    .or_else(|| v.strip_prefix("basic "))
            })
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        let user_ok = constant_time_eq(&decoded[..colon], self.user.as_bytes());
        let password_ok = constant_time_eq(&decoded[colon + 1..], self.password.as_bytes());
        user_ok & password_ok
    }
}

/// Compares without stopping at the first difference, so the time taken does not tell an attacker
/// how much of a guess was right. (The length of the secret may still show; it is not the secret.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.parse().expect("header"));
        headers
    }

    #[test]
    fn checks_basic_credentials() {
        let creds = Credentials::new("admin\n", " s3cret ").expect("valid");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cases = [
            (format!("Basic {}", b64("admin:s3cret")), true),
            (format!("Basic {}", b64("admin:s3cre")), false),
            (format!("Basic {}", b64("admin:s3cret!")), false),
            (format!("Basic {}", b64("root:s3cret")), false),
            (format!("Basic {}", b64("admins3cret")), false),
            ("Bearer ".to_string(), false),
            ("Basic !!!".to_string(), false),
        ];
        for (value, expected) in cases {
            assert_eq!(creds.check(&header(&value)), expected, "{value}");
        }
        assert!(!creds.check(&HeaderMap::new()));
        assert!(Credentials::new("", "x").is_err());
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
