//! The static files of Spin components (`files` in `spin.toml`): each component's files arrive as
//! one archive (`wasmgate_spin::files`), uploaded like a component (`POST /system/artifacts` with
//! `Content-Type: application/x-tar`) or read from a path, named in the deployment by the
//! annotation `com.wasmgate.spin.files`. The archive is kept in the artifact store by its digest (so
//! the collector and the cluster see it as they see components), unpacked once into
//! `<state>/spin-files/<hex>/` (`storage/spin_files.rs`) and preopened read-only at `/`.

use std::path::PathBuf;

use wasmgate_openfaas::digest::Digest;
use wasmgate_runtime::GuestDir;

use super::error::Error;
use super::registry::Functions;

/// Where the guest sees a component's files: at the root, as in Spin.
const GUEST_ROOT: &str = "/";

/// A component's files, read and unpacked for a deploy.
pub(super) struct Unpacked {
    pub(super) archive: Vec<u8>,
    pub(super) digest: Digest,
    /// Read from a path (not an upload): the cluster does not have it yet.
    pub(super) from_path: bool,
    pub(super) dir: GuestDir,
}

impl Functions {
    /// Validates and stores an uploaded files archive; identical bytes are stored once. In a
    /// cluster it is shared with the other nodes, as a component is. Returns its digest and how
    /// many files it holds.
    pub async fn upload_files(&self, archive: Vec<u8>) -> Result<(Digest, usize), Error> {
        // The API's body is bounded as it is read; `serve -f` packs the archive itself.
        if archive.len() > self.max_artifact_bytes {
            return Err(Error::invalid(format!(
                "the files archive is {} bytes, more than the {} byte limit (--max-artifact-bytes)",
                archive.len(),
                self.max_artifact_bytes
            )));
        }
        let count = wasmgate_spin::files::read_archive(&archive)
            .map_err(|e| Error::invalid(e.to_string()))?
            .len();
        let digest = self.store_artifact(archive.clone()).await?;
        if let Some(replicator) = self.replicator.get() {
            replicator
                .artifact_put(digest.to_string(), archive)
                .await
                .map_err(|e| {
                    Error::internal(
                        "sharing the files archive with the cluster",
                        format!("{e:#}"),
                    )
                })?;
        }
        Ok((digest, count))
    }

    /// Reads the files archive `image` (an uploaded digest or a path, as a component's image),
    /// checks it and unpacks it.
    pub(super) async fn unpack_spin_files(&self, image: &str) -> Result<Unpacked, Error> {
        if wasmgate_oci::Reference::looks_like(image) && !image.starts_with("sha256:") {
            return Err(Error::invalid(format!(
                "{image:?}: a files archive is an uploaded digest (sha256:...) or a path, not an \
                 OCI reference"
            )));
        }
        let (archive, digest) = self.resolve_image(image).await?;
        let from_path = digest.is_none();
        let digest = digest.unwrap_or_else(|| Digest::of(&archive));
        let files = self.spin_files.clone();
        let (unpacked, archive) = {
            let digest = digest.clone();
            tokio::task::spawn_blocking(move || {
                let unpacked = files.unpack(&digest, &archive);
                (unpacked, archive)
            })
            .await
            .map_err(|e| Error::internal("unpacking the files", e))?
        };
        let host = unpacked.map_err(Error::invalid)?;
        Ok(Unpacked {
            archive,
            digest,
            from_path,
            dir: guest_dir(host),
        })
    }

    /// The unpacked files of the stored archive `digest` (at start-up), unpacked again if their
    /// folder is missing.
    pub(super) fn restore_spin_files(&self, digest: &Digest) -> Result<GuestDir, String> {
        let folder = self.spin_files.folder(digest);
        if folder.is_dir() {
            return Ok(guest_dir(folder));
        }
        let archive = self
            .state
            .read_artifact(digest)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the files archive {digest} is missing"))?;
        self.spin_files.unpack(digest, &archive).map(guest_dir)
    }
}

fn guest_dir(host: PathBuf) -> GuestDir {
    GuestDir {
        host,
        guest: GUEST_ROOT.to_string(),
    }
}
