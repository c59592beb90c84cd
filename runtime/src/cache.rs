//! Compiled code on disk, so a function is compiled once per engine, not once per process start.
//!
//! Files live at `<dir>/<engine hash>/<key>.cwasm`, where the engine hash covers everything that makes
//! compiled code incompatible (wasmtime version, compiler settings, CPU features) and the key names the
//! component's bytes (the host passes their SHA-256). A miss or an unreadable file just means compiling.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Engine;
use wasmtime::component::Component;

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
        let dir = root.join(format!("{:016x}", hasher.finish()));
        std::fs::create_dir_all(&dir)?;
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
}
