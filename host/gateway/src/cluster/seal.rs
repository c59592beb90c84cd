//! Secret values at rest in the cluster: sealed with ChaCha20-Poly1305 (ring's AEAD, already in the
//! tree for TLS) under a key every node reads from `--secrets-key-file`, so the `wasmgate-secrets`
//! bucket never holds a value in the clear.
//!
//! A sealed value is `wgsealed1.<key id>.<base64 of nonce and ciphertext>`: the key id (the first 8
//! hex digits of the key's SHA-256) says which key sealed it, and the bucket key (`namespace.name`)
//! is bound in as associated data, so a value copied under another name does not open.
//!
//! **Key rotation.** The file holds one key per line (64 hex digits; `#` starts a comment). The first
//! seals; every key opens. To rotate: put the new key first and keep the old one after it, on every
//! node; restart them; write every secret again (`wasmgate secret update` or `faas-cli secret update`),
//! which seals it with the new key; then remove the old key and restart again.

use std::path::Path;

use base64::Engine as _;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest as _, Sha256};

/// What starts every sealed value.
const PREFIX: &str = "wgsealed1.";

/// The keys of `--secrets-key-file`: the first seals, all open.
pub struct Keyring {
    keys: Vec<(String, LessSafeKey)>,
    random: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("ids", &ids).finish()
    }
}

impl Keyring {
    /// Reads the keys from `path`: one per line, 64 hex digits (32 bytes), `#` comments.
    pub fn read(path: &Path) -> anyhow::Result<Keyring> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading the secrets key file {}: {e}", path.display()))?;
        Keyring::parse(&text)
            .map_err(|e| anyhow::anyhow!("the secrets key file {}: {e}", path.display()))
    }

    /// The keys of a key file's text.
    pub fn parse(text: &str) -> Result<Keyring, String> {
        let mut keys = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let bytes = hex::decode(line)
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| {
                    format!(
                        "line {} is not a key: write 64 hex digits (32 random bytes, for example \
                         from `openssl rand -hex 32`)",
                        number + 1
                    )
                })?;
            let id = hex::encode(&Sha256::digest(&bytes)[..4]);
            let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
                .map_err(|_| "a key ring refused".to_string())?;
            keys.push((id, LessSafeKey::new(key)));
        }
        if keys.is_empty() {
            return Err("it holds no key".to_string());
        }
        Ok(Keyring {
            keys,
            random: SystemRandom::new(),
        })
    }

    /// `value` sealed for the bucket key `name`.
    pub fn seal(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, String> {
        let (id, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| "no randomness for a nonce".to_string())?;
        let mut sealed = value.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(name.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| "sealing failed".to_string())?;
        let mut body = nonce.to_vec();
        body.extend_from_slice(&sealed);
        let encoded = base64::engine::general_purpose::STANDARD.encode(body);
        Ok(format!("{PREFIX}{id}.{encoded}").into_bytes())
    }

    /// The value that `sealed` holds for the bucket key `name`, or why it cannot be had.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(sealed).unwrap_or_default();
        let Some(rest) = text.strip_prefix(PREFIX) else {
            return Err(format!(
                "the cluster holds the secret {name} unsealed (written by a node without \
                 --secrets-key-file); write it again from a node with the key"
            ));
        };
        let (id, encoded) = rest
            .split_once('.')
            .ok_or_else(|| format!("the sealed secret {name} is damaged"))?;
        let Some((_, key)) = self.keys.iter().find(|(ours, _)| ours == id) else {
            return Err(format!(
                "the secret {name} is sealed with key {id}, which this node's --secrets-key-file \
                 does not hold"
            ));
        };
        let mut body = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| format!("the sealed secret {name} is damaged"))?;
        if body.len() < NONCE_LEN {
            return Err(format!("the sealed secret {name} is damaged"));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&body[..NONCE_LEN]);
        let opened = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut body[NONCE_LEN..],
            )
            .map_err(|_| {
                format!("the sealed secret {name} does not open with key {id}: damaged or moved")
            })?;
        Ok(opened.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const TWO: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_name() {
        let ring = Keyring::parse(&format!("# the cluster's key\n{ONE}\n")).expect("a key");
        let sealed = ring.seal("team.api-key", b"s3cret").expect("sealed");
        let text = String::from_utf8(sealed.clone()).expect("text");
        assert!(text.starts_with("wgsealed1."), "{text}");
        assert!(!text.contains("s3cret"));
        assert_ne!(
            sealed,
            ring.seal("team.api-key", b"s3cret").expect("sealed"),
            "a fresh nonce"
        );
        assert_eq!(ring.open("team.api-key", &sealed), Ok(b"s3cret".to_vec()));
        let moved = ring
            .open("team.other", &sealed)
            .expect_err("bound to its name");
        assert!(moved.contains("does not open"), "{moved}");
        let other = Keyring::parse(TWO).expect("a key");
        let wrong = other
            .open("team.api-key", &sealed)
            .expect_err("another key");
        assert!(
            wrong.contains("which this node's --secrets-key-file does not hold"),
            "{wrong}"
        );
        let clear = ring.open("team.api-key", b"s3cret").expect_err("unsealed");
        assert!(clear.contains("unsealed"), "{clear}");
        let mut damaged = sealed.clone();
        let last = damaged.len() - 2;
        damaged[last] = if damaged[last] == b'A' { b'B' } else { b'A' };
        assert!(ring.open("team.api-key", &damaged).is_err());
    }

    #[test]
    fn rotation_seals_with_the_first_key_and_opens_with_any() {
        let old = Keyring::parse(ONE).expect("a key");
        let sealed_old = old.seal("a.b", b"v1").expect("sealed");
        let both = Keyring::parse(&format!("{TWO}\n{ONE}\n")).expect("two keys");
        assert_eq!(both.open("a.b", &sealed_old), Ok(b"v1".to_vec()));
        let sealed_new = both.seal("a.b", b"v2").expect("sealed");
        let new = Keyring::parse(TWO).expect("a key");
        assert_eq!(new.open("a.b", &sealed_new), Ok(b"v2".to_vec()));
        assert!(old.open("a.b", &sealed_new).is_err());
    }

    #[test]
    fn a_bad_key_file_says_which_line() {
        assert_eq!(
            Keyring::parse("\n# nothing\n").expect_err("no key"),
            "it holds no key"
        );
        let short = Keyring::parse(&format!("{ONE}\nabcd\n")).expect_err("a short key");
        assert!(short.starts_with("line 2 is not a key"), "{short}");
    }
}
