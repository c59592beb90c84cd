//! The static files of Spin components, unpacked where the runtime preopens them (read-only):
//! `<state>/spin-files/<hex>/`, one folder per files archive, named by the archive's digest (the
//! archive itself is an artifact of the state directory, so the folder is derived data, made again
//! whenever it is missing).
//!
//! A folder is unpacked into `<state>/spin-files/.tmp-<hex>-<n>/`, each file synced, then renamed
//! into place: a folder that exists is complete. Its files are read-only for the owner too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmgate_openfaas::digest::Digest;

/// The folders of unpacked files archives.
#[derive(Debug)]
pub struct SpinFiles {
    root: PathBuf,
    counter: AtomicU64,
}

impl SpinFiles {
    /// The folders under `root` (created with the first one).
    pub fn new(root: PathBuf) -> SpinFiles {
        SpinFiles {
            root,
            counter: AtomicU64::new(0),
        }
    }

    /// Where the archive `digest` is unpacked.
    pub fn folder(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.hex())
    }

    /// The folder of the archive `digest`, unpacked from `archive` (its bytes, already checked to
    /// match the digest) unless it is there already. Refuses an archive
    /// [`wasmgate_spin::files::read_archive`] refuses.
    pub fn unpack(&self, digest: &Digest, archive: &[u8]) -> Result<PathBuf, String> {
        let folder = self.folder(digest);
        if folder.is_dir() {
            return Ok(folder);
        }
        let files = wasmgate_spin::files::read_archive(archive).map_err(|e| e.to_string())?;
        let io =
            |what: &str, path: &Path, e: std::io::Error| format!("{what} {}: {e}", path.display());
        std::fs::create_dir_all(&self.root).map_err(|e| io("creating", &self.root, e))?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join(format!(".tmp-{}-{}-{n}", digest.hex(), std::process::id()));
        let written = (|| {
            std::fs::create_dir(&tmp).map_err(|e| io("creating", &tmp, e))?;
            for file in &files {
                // Plain relative names (checked by `read_archive`): no way out of `tmp`.
                let path = tmp.join(&file.path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
                }
                let mut out = std::fs::File::create(&path).map_err(|e| io("writing", &path, e))?;
                out.write_all(&archive[file.bytes.clone()])
                    .and_then(|()| out.sync_all())
                    .map_err(|e| io("writing", &path, e))?;
                let mut permissions = out
                    .metadata()
                    .map_err(|e| io("reading", &path, e))?
                    .permissions();
                permissions.set_readonly(true);
                std::fs::set_permissions(&path, permissions)
                    .map_err(|e| io("protecting", &path, e))?;
            }
            Ok::<(), String>(())
        })();
        if let Err(error) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(error);
        }
        match std::fs::rename(&tmp, &folder) {
            Ok(()) => {}
            // Unpacked meanwhile by another deploy of the same archive.
            Err(_) if folder.is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(io("renaming", &tmp, e));
            }
        }
        if let Ok(root) = std::fs::File::open(&self.root) {
            let _ = root.sync_all();
        }
        Ok(folder)
    }

    /// Removes the folder of the archive `digest`, if any (the archive was collected).
    pub fn remove(&self, digest: &Digest) {
        let folder = self.folder(digest);
        if folder.is_dir()
            && let Err(error) = std::fs::remove_dir_all(&folder)
        {
            tracing::warn!(folder = %folder.display(), %error, "cannot remove unpacked files");
        }
    }

    /// Removes what an interrupted unpack left (at start-up).
    pub fn clear_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_is_unpacked_once_and_removed() {
        let root = std::env::temp_dir().join(format!("wasmgate-spin-files-{}", std::process::id()));
        let files = SpinFiles::new(root.clone());
        let archive =
            wasmgate_spin::files::pack([("index.html", &b"hi"[..]), ("static/a/b.css", b"b {}")])
                .expect("packs");
        let digest = Digest::of(&archive);
        let folder = files.unpack(&digest, &archive).expect("unpacks");
        assert_eq!(
            std::fs::read(folder.join("static/a/b.css")).expect("read"),
            b"b {}"
        );
        assert!(
            std::fs::metadata(folder.join("index.html"))
                .expect("stat")
                .permissions()
                .readonly()
        );
        // There already: not unpacked again (nor read).
        assert_eq!(files.unpack(&digest, b"").expect("there"), folder);
        files.remove(&digest);
        assert!(!folder.exists());
        let refused = files.unpack(&Digest::of(b"junk"), &b"junk".repeat(200));
        assert!(refused.expect_err("junk").contains("the files archive"));
        let _ = std::fs::remove_dir_all(&root);
    }
}
