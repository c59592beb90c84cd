//! Content digests: `sha256:<hex>`, as users, registries and the state directory write them.

use sha2::{Digest as _, Sha256};

/// The SHA-256 digest of an artifact, which is also its name in the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest(String);

impl Digest {
    /// Computes the SHA-256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(hex::encode(Sha256::digest(bytes)))
    }

    /// Parses `sha256:<64 hex digits>` (either case), as users and registries write digests;
    /// returns `None` for anything else. The result is always lowercase.
    pub fn parse(text: &str) -> Option<Digest> {
        let hex = text.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Digest(hex.to_ascii_lowercase()))
    }

    /// The digest as 64 lowercase hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    /// Formats as `sha256:<hex>`, the form [`Digest::parse`] accepts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_parse_and_format() {
        let hex = "ab".repeat(32);
        let cases: &[(String, Option<&str>)] = &[
            (format!("sha256:{hex}"), Some(hex.as_str())),
            (format!("sha256:{}", hex.to_uppercase()), Some(hex.as_str())),
            (format!("sha512:{hex}"), None),
            (hex.clone(), None),
            (format!("sha256:{}", &hex[..63]), None),
            (format!("sha256:{hex}0"), None),
            (format!("sha256:{}g", &hex[..63]), None),
            (String::new(), None),
        ];
        for (text, want) in cases {
            let got = Digest::parse(text);
            assert_eq!(got.as_ref().map(Digest::hex), *want, "parsing {text:?}");
            if let Some(digest) = got {
                assert_eq!(digest.to_string(), format!("sha256:{hex}"));
            }
        }
        let empty = Digest::of(b"");
        let known = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(empty.hex(), known);
        assert_eq!(Digest::parse(&empty.to_string()), Some(empty));
    }
}
