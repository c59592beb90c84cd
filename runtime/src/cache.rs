//! Compiled code on disk, so a function is compiled once per engine, not once per process start.
//!
//! Files live at `<dir>/<engine hash>/<key>.cwasm`, where the engine hash covers everything that makes
//! compiled code incompatible (wasmtime version, compiler settings, CPU features) and the key names the
//! component's bytes (the host passes their SHA-256). A miss or an unreadable file just means compiling.
//!
//! An engine upgrade (or other settings) starts a new folder. At start the folders of other engines
//! that no gateway has opened for [`STALE_AFTER`] are removed: code no engine of this build can load.
//! The grace lets gateways of different builds share one cache folder during a rolling upgrade (each
//! marks its own folder when it opens it) without deleting each other's code.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Engine;
use wasmtime::component::Component;

/// How long the folder of another engine must have gone unopened before a start removes it.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// The compiled-code cache of one engine.
#[derive(Debug)]
pub(crate) struct CodeCache {
    dir: PathBuf,
    next_temp: AtomicU64,
}

impl CodeCache {
    /// A cache in `root`, in a folder for this engine's compatibility hash.
    pub(crate) fn open(root: &Path, engine: &Engine) -> std::io::Result<Self> {
        // `DefaultHasher::new()` has fixed keys, so the name is stable across runs of one build; a
        // different build may name it differently, which costs a recompile, never a wrong load.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let name = format!("{:016x}", hasher.finish());
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir)?;
        // Marks the folder as in use, for other engines' starts (see the module docs).
        let now = std::time::SystemTime::now();
        if let Err(error) = std::fs::File::open(&dir).and_then(|d| d.set_modified(now)) {
            tracing::debug!(%error, "could not mark the code cache folder as in use");
        }
        remove_stale_engines(root, &name, STALE_AFTER);
        Ok(CodeCache {
            dir,
            next_temp: AtomicU64::new(0),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    /// Whether compiled code for `key` is stored.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.path(key).exists()
    }

    /// Removes the compiled code stored for `key`, if any.
    pub(crate) fn remove(&self, key: &str) {
        match std::fs::remove_file(self.path(key)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(key, %error, "could not remove cached compiled code"),
        }
    }

    /// The cached component for `key`, if there is a usable one.
    pub(crate) fn load(&self, engine: &Engine, key: &str) -> Option<Component> {
        let path = self.path(key);
        if !path.exists() {
            return None;
        }
        // SAFETY: `deserialize_file` maps the file and runs the machine code in it, so the file must
        // be one that `Component::serialize` produced for a compatible engine and nobody altered. Only
        // `store` writes here, in a folder named after the engine's compatibility hash inside the
        // gateway's owner-only state directory; wasmtime itself also checks the header and the engine
        // settings recorded in the file and refuses a mismatch.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %format!("{error:#}"), "ignoring an unusable cached compilation");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores `component` under `key`: written to a temporary file, synced, then renamed, so a
    /// reader never sees a partial file, even after a crash.
    pub(crate) fn store(&self, key: &str, component: &Component) {
        let result = (|| -> Result<(), String> {
            let bytes = component.serialize().map_err(|e| format!("{e:#}"))?;
            let temp = self.dir.join(format!(
                ".{key}.{}.{}.tmp",
                std::process::id(),
                self.next_temp.fetch_add(1, Ordering::Relaxed)
            ));
            let mut file = std::fs::File::create(&temp).map_err(|e| e.to_string())?;
            file.write_all(&bytes)
                .and_then(|()| file.sync_all())
                .map_err(|e| e.to_string())?;
            std::fs::rename(&temp, self.path(key)).map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                e.to_string()
            })
        })();
        if let Err(error) = result {
            tracing::warn!(key, %error, "could not cache compiled code");
        }
    }
}

/// Removes the folders of `root` named like an engine's (16 hex digits) other than `ours` that were
/// last marked more than `stale_after` ago. Failures are logged: a folder left is only disk.
fn remove_stale_engines(root: &Path, ours: &str, stale_after: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let engine_folder = name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if !engine_folder || name == ours {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age >= stale_after);
        if !stale {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => {
                tracing::info!(folder = %entry.path().display(), "removed the compiled code of another engine")
            }
            Err(error) => {
                tracing::warn!(folder = %entry.path().display(), %error, "could not remove the compiled code of another engine")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Code compiled by one engine is never offered to an engine whose compiled code differs (another
    /// wasmtime version, or other compiler settings, as here): each has a folder of its own.
    #[test]
    fn code_of_another_engine_is_never_loaded() {
        let root = std::env::temp_dir().join(format!("wasmgate-cache-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let engine = Engine::new(&wasmtime::Config::new()).expect("engine");
        let mut other = wasmtime::Config::new();
        other.cranelift_opt_level(wasmtime::OptLevel::None);
        let other = Engine::new(&other).expect("other engine");

        let wasm = wat::parse_str("(component (core module))").expect("wat");
        let component = Component::new(&engine, &wasm).expect("compiles");
        let ours = CodeCache::open(&root, &engine).expect("cache");
        ours.store("key", &component);
        assert!(ours.contains("key"));
        assert!(ours.load(&engine, "key").is_some());

        let theirs = CodeCache::open(&root, &other).expect("cache");
        assert_ne!(ours.dir, theirs.dir, "one folder per engine hash");
        assert!(!theirs.contains("key"));
        assert!(theirs.load(&other, "key").is_none());
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Other engines' folders are removed once unused for the grace period; recent ones, ours and
    /// anything not named like an engine folder stay.
    #[test]
    fn stale_folders_of_other_engines_are_removed() {
        let root =
            std::env::temp_dir().join(format!("wasmgate-cache-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let old = root.join("00000000000000aa");
        let recent = root.join("00000000000000bb");
        let ours = root.join("00000000000000cc");
        let other = root.join("notes");
        for dir in [&old, &recent, &ours, &other] {
            std::fs::create_dir_all(dir).expect("create");
            std::fs::write(dir.join("x.cwasm"), b"code").expect("write");
        }
        let long_ago = std::time::SystemTime::now() - 2 * STALE_AFTER;
        for dir in [&old, &ours, &other] {
            std::fs::File::open(dir)
                .and_then(|d| d.set_modified(long_ago))
                .expect("age the folder");
        }
        remove_stale_engines(&root, "00000000000000cc", STALE_AFTER);
        assert!(!old.exists(), "a stale folder of another engine is removed");
        assert!(recent.exists(), "a folder used recently stays");
        assert!(ours.exists(), "our own folder stays");
        assert!(other.exists(), "only engine folders are touched");
        let _ = std::fs::remove_dir_all(&root);
    }
}
