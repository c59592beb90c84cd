//! HTTPS: the certificate chain and private key (PEM files), the rustls acceptor, and the reload of a
//! changed certificate without a restart.
//!
//! 1. [`Tls::load`] reads both files, checks that the key belongs to the certificate, and builds the
//!    rustls server configuration (ALPN `h2`, then `http/1.1`; the ring provider). A bad file is an
//!    error that names it, so `serve` refuses to start.
//! 2. The acceptor resolves the certificate on each handshake from one slot ([`CertSlot`]); a
//!    connection already open keeps the certificate it was made with.
//! 3. [`Tls::watch`] starts the watcher: every [`TlsConfig::reload_interval`] it looks at both files
//!    (size, modification time, inode: one `stat` each, on the blocking pool). When either changed it
//!    reads and checks them again; a good pair replaces the one in the slot, a bad one (unreadable, not
//!    PEM, a key of another certificate, half of a pair being replaced) keeps the old certificate and
//!    logs why, once per change. Writing the certificate and then the key is therefore fine: the
//!    mismatch in between is logged and the next look finds the pair. Kubernetes' secret volumes,
//!    which swap a symbolic link, change the inode and are seen the same way. The watcher stops on the
//!    gateway's shutdown token.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

/// How often the certificate and key files are looked at for a change.
pub const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// The largest certificate or key file read: a chain is a few KiB; anything this large is not one.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Where the certificate and key are, and how often to look for a new one.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// The certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// See [`DEFAULT_TLS_RELOAD_INTERVAL`].
    pub reload_interval: Duration,
}

/// The loaded certificate, the acceptor that serves it, and what the watcher needs.
#[derive(Clone)]
pub struct Tls {
    config: TlsConfig,
    slot: Arc<CertSlot>,
    acceptor: TlsAcceptor,
    /// The files as they were when the certificate in the slot was read.
    loaded_as: Option<(Stamp, Stamp)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads and checks the certificate and key; fails naming the file and what is wrong with it.
    pub fn load(config: TlsConfig) -> anyhow::Result<Tls> {
        if config.reload_interval.is_zero() {
            bail!("the TLS reload interval must be more than zero");
        }
        let provider = Arc::new(ring::default_provider());
        // Taken before reading, so a change made while reading is seen by the first look.
        let loaded_as = stamps(&config);
        let key = read_pair(&config, &provider)?;
        let slot = Arc::new(CertSlot {
            current: RwLock::new(Arc::new(key)),
        });
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("configuring TLS")?
            .with_no_client_auth()
            .with_cert_resolver(slot.clone());
        // HTTP/2 first: gRPC clients need it, browsers and curl prefer it.
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            config,
            slot,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            loaded_as,
        })
    }

    /// The acceptor for new connections; it serves whatever certificate is current.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Starts the watcher (see the module documentation); it ends when `stop` is cancelled.
    pub fn watch(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let watcher = Watcher {
            config: self.config.clone(),
            slot: self.slot.clone(),
            provider: Arc::new(ring::default_provider()),
            seen: self.loaded_as,
        };
        tokio::spawn(watcher.run(stop))
    }
}

/// The certificate handed to each new handshake; the watcher replaces it.
#[derive(Debug)]
struct CertSlot {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertSlot {
    fn get(&self) -> Arc<CertifiedKey> {
        // A poisoned lock still holds a whole `Arc`: the writer only assigns.
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, key: CertifiedKey) {
        let key = Arc::new(key);
        match self.current.write() {
            Ok(mut current) => *current = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// What a `stat` says of a file: enough to notice a rewrite, a replacement or a swapped link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    device: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    // `metadata` follows links, so a swapped link shows as another inode.
    let metadata = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: metadata.len(),
        modified: metadata.modified().ok(),
        device: metadata.dev(),
        inode: metadata.ino(),
    })
}

fn stamps(config: &TlsConfig) -> Option<(Stamp, Stamp)> {
    Some((stamp(&config.cert)?, stamp(&config.key)?))
}

/// Looks at the files on an interval and replaces the certificate when they hold a new good pair.
struct Watcher {
    config: TlsConfig,
    slot: Arc<CertSlot>,
    provider: Arc<CryptoProvider>,
    /// The files as last looked at; `None` when one could not be read.
    seen: Option<(Stamp, Stamp)>,
}

impl Watcher {
    async fn run(mut self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.config.reload_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; the files were read just now.
        ticks.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let config = self.config.clone();
            let provider = self.provider.clone();
            let seen = self.seen;
            // `stat` and reading files block: on the blocking pool, never on a worker thread.
            let looked = tokio::task::spawn_blocking(move || {
                let now = stamps(&config);
                if now == seen {
                    return (now, None);
                }
                (now, Some(read_pair(&config, &provider)))
            })
            .await;
            let Ok((now, read)) = looked else {
                tracing::warn!(
                    "the TLS certificate check panicked; keeping the current certificate"
                );
                continue;
            };
            self.seen = now;
            match read {
                None => {}
                Some(Ok(key)) => {
                    if key.cert == self.slot.get().cert {
                        continue;
                    }
                    self.slot.set(key);
                    tracing::info!(
                        cert = %self.config.cert.display(),
                        key = %self.config.key.display(),
                        "TLS certificate reloaded; new connections get it"
                    );
                }
                Some(Err(error)) => {
                    let error = format!("{error:#}");
                    tracing::warn!(
                        %error,
                        "keeping the current TLS certificate: the new one cannot be used"
                    );
                }
            }
        }
    }
}

/// Reads the chain and the key, and checks that they belong together.
fn read_pair(config: &TlsConfig, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let cert_pem = read_bounded(&config.cert)?;
    let key_pem = read_bounded(&config.key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: not a PEM certificate chain: {e}",
                config.cert.display()
            )
        })?;
    if chain.is_empty() {
        bail!("{}: no CERTIFICATE block", config.cert.display());
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| anyhow::anyhow!("{}: not a PEM private key: {e}", config.key.display()))?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .with_context(|| format!("{}: unsupported private key", config.key.display()))?;
    let key = CertifiedKey::new(chain, signer);
    key.keys_match().with_context(|| {
        format!(
            "the key in {} is not the key of the certificate in {}",
            config.key.display(),
            config.cert.display()
        )
    })?;
    Ok(key)
}

fn read_bounded(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        bail!(
            "{}: larger than {MAX_PEM_BYTES} bytes, not a certificate or key",
            path.display()
        );
    }
    Ok(bytes)
}
