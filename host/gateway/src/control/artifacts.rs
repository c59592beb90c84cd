//! Components: where a deploy's `image` is read from (an uploaded artifact by digest, from this node
//! or, in a cluster, another; an OCI reference, pulled; or a `.wasm` path), uploads, and the
//! content-addressed artifact store they land in. Artifacts are not registry changes: storing the same
//! bytes twice changes nothing, so they take no write lock and need no `Change`.

use std::path::PathBuf;

use wasmgate_openfaas::digest::Digest;
use wasmgate_openfaas::image;
use wasmgate_runtime::{WasmSource, World};

use super::error::Error;
use super::registry::Functions;

/// Largest component accepted by upload or from a path, when nothing else is said.
pub const DEFAULT_MAX_ARTIFACT_BYTES: usize = 64 * 1024 * 1024;

impl Functions {
    /// Reads a component from `image`: an uploaded artifact (`sha256:...`), an OCI reference, or a
    /// `.wasm` path. The digest is known for the first two. The `:latest` faas-cli appends to an
    /// image without a tag changes neither what kind of image it is nor, on a path, the file
    /// ([`wasmgate_openfaas::image`]); any other tag on a path is refused.
    pub(super) async fn resolve_image(
        &self,
        image: &str,
    ) -> Result<(Vec<u8>, Option<Digest>), Error> {
        if image.starts_with("sha256:") {
            let digest = Digest::parse(image).ok_or_else(|| {
                Error::invalid(format!("image {image:?} is not a valid sha256 digest"))
            })?;
            let bytes = match self.state.read_artifact(&digest)? {
                Some(bytes) => Some(bytes),
                // Uploaded to another node of the cluster.
                None => self.artifact_from_cluster(&digest).await?,
            };
            let bytes = bytes.ok_or_else(|| {
                Error::invalid(format!(
                    "no artifact {digest} was uploaded; upload it with POST /system/artifacts first"
                ))
            })?;
            return Ok((bytes, Some(digest)));
        }
        if wasmgate_oci::Reference::looks_like(image::without_cli_tag(image)) {
            return self.pull(image).await;
        }
        let path =
            PathBuf::from(image::path_of(image).map_err(|e| Error::InvalidInput(e.to_string()))?);
        let max = self.max_artifact_bytes;
        let read = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
            let metadata = std::fs::metadata(&path).map_err(|e| {
                // faas-cli sends a stack file's relative path as it is, and the gateway, not the
                // client, reads it: say from where.
                let from = match std::env::current_dir() {
                    Ok(dir) if path.is_relative() => format!(
                        " (a relative path is read from the gateway's working directory, {})",
                        dir.display()
                    ),
                    _ => String::new(),
                };
                format!("cannot read {}: {e}{from}", path.display())
            })?;
            if metadata.len() > max as u64 {
                return Err(format!(
                    "{} is larger than the {max} byte limit",
                    path.display()
                ));
            }
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        })
        .await
        .map_err(|e| Error::internal("reading the image", e))?;
        Ok((read.map_err(Error::InvalidInput)?, None))
    }

    /// The component `digest` from another node of the cluster, stored here once verified; `None`
    /// outside a cluster or when no node has it.
    async fn artifact_from_cluster(&self, digest: &Digest) -> Result<Option<Vec<u8>>, Error> {
        let Some(replicator) = self.replicator.get() else {
            return Ok(None);
        };
        let context = "reading the cluster's artifacts";
        let bytes = replicator
            .artifact_get(digest.to_string())
            .await
            .map_err(|e| Error::internal(context, format!("{e:#}")))?;
        if let Some(bytes) = &bytes {
            if Digest::of(bytes) != *digest {
                return Err(Error::internal(
                    context,
                    format!("the object store's {digest} does not match its digest"),
                ));
            }
            self.store_artifact(bytes.clone()).await?;
        }
        Ok(bytes)
    }

    /// Resolves an OCI reference to its component: the manifest is read each time (a tag may have
    /// moved), the layer is downloaded only when no artifact has its digest yet.
    async fn pull(&self, image: &str) -> Result<(Vec<u8>, Option<Digest>), Error> {
        let reference = wasmgate_oci::Reference::parse(image)
            .map_err(|e| Error::invalid(format!("image {image:?}: {e:#}")))?;
        let client = match self.registries.get() {
            Some(client) => client,
            None => {
                let client = wasmgate_oci::RegistryClient::new().map_err(|e| {
                    Error::internal("reading registry credentials", format!("{e:#}"))
                })?;
                self.registries.get_or_init(|| client)
            }
        };
        let state = self.state.clone();
        let pulled = client
            .pull(&reference, self.max_artifact_bytes, |layer| {
                let digest = Digest::parse(layer)?;
                state.read_artifact(&digest).ok().flatten()
            })
            .await
            .map_err(|e| Error::invalid(format!("pulling {reference}: {e:#}")))?;
        tracing::info!(image = %reference, manifest = %pulled.manifest_digest,
            layer = %pulled.layer_digest, "resolved an OCI image");
        let digest = Digest::parse(&pulled.layer_digest)
            .ok_or_else(|| Error::invalid(format!("{reference}: unusable layer digest")))?;
        if !self.state.has_artifact(&digest) {
            self.runtime
                .validate(pulled.bytes.clone(), Some(digest.hex()))
                .await
                .map_err(Error::compiling)?;
            self.store_artifact(pulled.bytes.clone()).await?;
        }
        Ok((pulled.bytes, Some(digest)))
    }

    /// Whether an uploaded component with this digest is stored.
    pub fn has_artifact(&self, digest: &Digest) -> bool {
        self.state.has_artifact(digest)
    }

    /// Validates and stores an uploaded component; identical bytes are stored once. In a cluster it
    /// is shared with the other nodes, since a deploy of its digest may reach any of them. Returns
    /// its digest and the world of `wasi:http` it exports.
    pub async fn upload(&self, bytes: Vec<u8>) -> Result<(Digest, World), Error> {
        if bytes.is_empty() {
            return Err(Error::invalid(
                "the body is empty; send the .wasm component as the request body",
            ));
        }
        let world = self
            .runtime
            .validate(bytes.clone(), Some(Digest::of(&bytes).hex()))
            .await
            .map_err(Error::compiling)?;
        let digest = self.store_artifact(bytes.clone()).await?;
        if let Some(replicator) = self.replicator.get() {
            replicator
                .artifact_put(digest.to_string(), bytes)
                .await
                .map_err(|e| {
                    Error::internal("sharing the artifact with the cluster", format!("{e:#}"))
                })?;
        }
        Ok((digest, world))
    }

    /// Stores a component (fsynced, on the blocking pool). One another node published is verified
    /// against its digest by the caller.
    pub async fn store_artifact(&self, bytes: Vec<u8>) -> Result<Digest, Error> {
        let state = self.state.clone();
        let (digest, _) = tokio::task::spawn_blocking(move || state.put_artifact(&bytes))
            .await
            .map_err(|e| Error::internal("storing the artifact", e))??;
        Ok(digest)
    }

    /// The runtime's way to read a function's component when it loads: from the artifact store, by
    /// digest (which also names its compiled code in the cache).
    pub(super) fn source(&self, digest: Digest) -> WasmSource {
        let state = self.state.clone();
        let key = digest.hex().to_string();
        WasmSource::new(move || match state.read_artifact(&digest) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(format!(
                "artifact {digest} is missing from the state directory"
            )),
            Err(error) => Err(format!("{error:#}")),
        })
        .with_cache_key(&key)
    }
}
