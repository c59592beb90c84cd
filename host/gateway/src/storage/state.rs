//! Durable, crash-safe state of the gateway, kept in one state directory.
//!
//! The directory is opened once as a [`cap_std::fs::Dir`], so every later access is relative to
//! it and no name can reach outside it. Layout under the root:
//!
//! - `artifacts/sha256-<hex>.wasm`: component bytes, addressed by their SHA-256 digest;
//! - `functions/<namespace>/<name>.json`: one pretty-JSON record per function;
//! - `namespaces/<namespace>.json`: one pretty-JSON record per namespace;
//! - `secrets/<namespace>/<name>`: raw secret bytes, owner-only (0600, directories 0700);
//! - `tmp/`: files being written; anything left there by a crash is deleted at open.
//!
//! Every write goes to a fresh file in `tmp/`, is synced, renamed over its destination and the
//! destination directory is synced. A rename within one file system is atomic, so after a crash
//! (even `kill -9` or power loss) each file holds either its old or its new content, never a mix.
//! Records that are damaged anyway (edited by hand, disk trouble) are reported as [`Problem`]s and
//! skipped, so one bad file never stops the gateway from starting.
//!
//! One process is expected to own a state directory: opening it clears `tmp/`, which would break
//! another process's writes in progress.
//!
//! Over 600 lines: one noun, the state directory. Its kinds of file (artifacts, function and
//! namespace records, secrets) share the crash-safe write, the name checks and the one `Dir`, so
//! they stay together (about 590 lines); the last third is tests (crash safety, damaged records,
//! permissions, artifacts).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, DirBuilder, OpenOptions};
#[cfg(unix)]
use cap_std::fs::{DirBuilderExt, OpenOptionsExt, Permissions, PermissionsExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmgate_openfaas::digest::Digest;

const ARTIFACTS: &str = "artifacts";
const FUNCTIONS: &str = "functions";
const NAMESPACES: &str = "namespaces";
const SECRETS: &str = "secrets";
const TMP: &str = "tmp";
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// The gateway's state directory; see the [module documentation](self) for layout and guarantees.
#[derive(Debug)]
pub struct StateDir {
    /// The root, opened once; all paths below are relative to it and cannot escape it.
    root: Dir,
    /// Makes temporary file names unique within this process.
    counter: AtomicU64,
    /// Serialises secret writes so that "check, then write" is atomic (see `create_secret`).
    secrets: Mutex<()>,
}

/// A damaged record that was skipped while loading, so the caller can report it.
#[derive(Debug)]
pub struct Problem {
    /// The record's path, relative to the state directory.
    pub path: String,
    /// Why it could not be loaded.
    pub reason: String,
}

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A name or namespace that could escape its directory or is otherwise unusable as a file name.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// The item to create already exists.
    #[error("{0} already exists")]
    Exists(String),
    /// The item to change or delete does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The file system failed; `context` says what was being done.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A record could not be turned into JSON.
    #[error("{context}")]
    Json {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

/// Builds a `map_err` adapter that wraps an I/O error with `context`.
fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> StateError {
    move |source| StateError::Io {
        context: context.into(),
        source,
    }
}

/// Rejects a name that is unusable as a single path component. Callers validate names more
/// strictly; this is the last line of defence against escaping a directory.
fn check_name(kind: &str, value: &str) -> Result<(), StateError> {
    let bad =
        value.is_empty() || value == "." || value == ".." || value.contains(['/', '\\', '\0']);
    if bad {
        return Err(StateError::InvalidName(format!("{kind} {value:?}")));
    }
    Ok(())
}

/// Secret names follow the OpenFaaS rule as well: no `..` anywhere.
fn check_secret_name(value: &str) -> Result<(), StateError> {
    check_name("secret name", value)?;
    if value.contains("..") {
        return Err(StateError::InvalidName(format!("secret name {value:?}")));
    }
    Ok(())
}

/// Whether syncing a directory failed only because the platform does not support it.
fn dir_sync_unsupported(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
    ) || (cfg!(windows) && error.kind() == io::ErrorKind::PermissionDenied)
}

/// Records `path` as skipped for `reason`, and logs it.
fn problem(problems: &mut Vec<Problem>, path: &Path, reason: impl std::fmt::Display) {
    let path = path.display().to_string();
    let reason = reason.to_string();
    tracing::warn!(%path, %reason, "skipping a damaged state record");
    problems.push(Problem { path, reason });
}

/// The digest named by an artifact file name, if it is exactly `sha256-<64 lowercase hex>.wasm`.
fn artifact_digest(file_name: &str) -> Option<Digest> {
    let hex = file_name.strip_prefix("sha256-")?.strip_suffix(".wasm")?;
    let lowercase = hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex.len() != 64 || !lowercase {
        return None;
    }
    Digest::parse(&format!("sha256:{hex}"))
}

/// The directory holding `path`, the root (`""`) for a top-level entry.
fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// How errors name a secret.
fn secret_label(namespace: &str, name: &str) -> String {
    format!("secret {name:?} in namespace {namespace:?}")
}

/// Checks a function's namespace and name and returns the path of its record.
fn function_path(namespace: &str, name: &str) -> Result<PathBuf, StateError> {
    check_name("namespace", namespace)?;
    check_name("function name", name)?;
    Ok(Path::new(FUNCTIONS)
        .join(namespace)
        .join(format!("{name}.json")))
}

/// Checks a namespace and returns the path of its record.
fn namespace_path(namespace: &str) -> Result<PathBuf, StateError> {
    check_name("namespace", namespace)?;
    Ok(Path::new(NAMESPACES).join(format!("{namespace}.json")))
}

/// Checks a secret's namespace and name and returns its path.
fn secret_path(namespace: &str, name: &str) -> Result<PathBuf, StateError> {
    check_name("namespace", namespace)?;
    check_secret_name(name)?;
    Ok(Path::new(SECRETS).join(namespace).join(name))
}

fn artifact_path(digest: &Digest) -> PathBuf {
    Path::new(ARTIFACTS).join(format!("sha256-{}.wasm", digest.hex()))
}

impl StateDir {
    /// Opens the state directory at `path`, creating it (and its parents) if missing, restricting
    /// it to its owner, creating missing subdirectories and deleting leftovers of interrupted
    /// writes. This is the only access by ambient path; everything else goes through the handle.
    pub fn open(path: &Path) -> Result<StateDir, StateError> {
        let context = || format!("opening state directory {}", path.display());
        Dir::create_ambient_dir_all(path, ambient_authority()).map_err(io_err(context()))?;
        let root = Dir::open_ambient_dir(path, ambient_authority()).map_err(io_err(context()))?;
        #[cfg(unix)]
        root.set_permissions(".", Permissions::from_mode(DIR_MODE))
            .map_err(io_err(context()))?;
        let state = StateDir {
            root,
            counter: AtomicU64::new(0),
            secrets: Mutex::new(()),
        };
        for sub in [ARTIFACTS, FUNCTIONS, NAMESPACES, SECRETS, TMP] {
            state.ensure_dir(Path::new(sub))?;
        }
        #[cfg(unix)]
        state
            .root
            .set_permissions(SECRETS, Permissions::from_mode(DIR_MODE))
            .map_err(io_err(context()))?;
        state.clear_tmp()?;
        Ok(state)
    }

    /// Deletes whatever interrupted writes left in `tmp/`. Failing to delete one is only logged:
    /// a leftover wastes space but never affects what is loaded.
    fn clear_tmp(&self) -> Result<(), StateError> {
        let entries = self.root.read_dir(TMP).map_err(io_err("listing tmp"))?;
        for entry in entries {
            let entry = entry.map_err(io_err("listing tmp"))?;
            let name = Path::new(TMP).join(entry.file_name());
            let removed = match entry.file_type() {
                Ok(kind) if kind.is_dir() => self.root.remove_dir_all(&name),
                _ => self.root.remove_file(&name),
            };
            let path = name.display();
            match removed {
                Ok(()) => tracing::debug!(%path, "removed a leftover temporary file"),
                Err(error) => tracing::warn!(%path, %error, "cannot remove a temporary file"),
            }
        }
        Ok(())
    }

    /// Creates directory `rel` (owner-only) if missing; its parent must exist. A new directory's
    /// entry lives in its parent, so the parent is synced to make the creation durable.
    fn ensure_dir(&self, rel: &Path) -> Result<(), StateError> {
        if self.root.is_dir(rel) {
            return Ok(());
        }
        let mut builder = DirBuilder::new();
        #[cfg(unix)]
        builder.mode(DIR_MODE);
        match self.root.create_dir_with(rel, &builder) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(error) => return Err(io_err(format!("creating {}", rel.display()))(error)),
        }
        self.sync_dir(parent(rel))
    }

    /// Flushes directory `rel` (the root if empty), making renames and deletions in it durable.
    /// `Dir` handles may be `O_PATH` descriptors, which cannot be synced, so the directory is
    /// opened again, read-only, as a file.
    fn sync_dir(&self, rel: &Path) -> Result<(), StateError> {
        let target = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let synced = self
            .root
            .open_with(target, OpenOptions::new().read(true))
            .and_then(|dir| dir.sync_all());
        match synced {
            Err(error) if !dir_sync_unsupported(&error) => Err(io_err(format!(
                "syncing directory {}",
                target.display()
            ))(error)),
            _ => Ok(()),
        }
    }

    /// Replaces the file at `dest` with `bytes`, crash-safely: temp file, write, sync, rename,
    /// sync the directory. The file is created owner-only, which secrets rely on.
    fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<(), StateError> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(FILE_MODE);
        let (temp, mut file) = loop {
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let temp = Path::new(TMP).join(format!("{}-{n}.tmp", std::process::id()));
            match self.root.open_with(&temp, &options) {
                Ok(file) => break (temp, file),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(io_err(format!("creating {}", temp.display()))(error)),
            }
        };
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .and_then(|()| {
                drop(file);
                self.root.rename(&temp, &self.root, dest)
            });
        if let Err(error) = written {
            // Best effort: a leftover temp file is also removed at the next open.
            let _ = self.root.remove_file(&temp);
            return Err(io_err(format!("writing {}", dest.display()))(error));
        }
        self.sync_dir(parent(dest))
    }

    /// Reads the file at `rel`, or `None` if it does not exist.
    fn read_optional(&self, rel: &Path) -> Result<Option<Vec<u8>>, StateError> {
        match self.root.read(rel) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_err(format!("reading {}", rel.display()))(error)),
        }
    }

    /// Deletes the file at `rel` durably; returns whether it existed.
    fn remove_optional(&self, rel: &Path) -> Result<bool, StateError> {
        match self.root.remove_file(rel) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(io_err(format!("deleting {}", rel.display()))(error)),
        }
        self.sync_dir(parent(rel))?;
        Ok(true)
    }

    /// Serialises `record` as pretty JSON and stores it at `dest`.
    fn write_record<T: Serialize>(&self, dest: &Path, record: &T) -> Result<(), StateError> {
        let mut bytes = serde_json::to_vec_pretty(record).map_err(|source| StateError::Json {
            context: format!("encoding {}", dest.display()),
            source,
        })?;
        bytes.push(b'\n');
        self.write_atomic(dest, &bytes)
    }

    /// Loads every `<name>.json` record in directory `rel` into `out`. Damaged records become
    /// problems; other files are ignored. Fails only if the directory cannot be listed.
    fn load_records<T: DeserializeOwned>(
        &self,
        rel: &Path,
        out: &mut Vec<(String, T)>,
        problems: &mut Vec<Problem>,
    ) -> io::Result<()> {
        for entry in self.root.read_dir(rel)? {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    problem(problems, rel, error);
                    continue;
                }
            };
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let path = rel.join(&file_name);
            if let Err(error) = check_name("record name", name) {
                problem(problems, &path, error);
                continue;
            }
            let bytes = match self.root.read(&path) {
                Ok(bytes) => bytes,
                Err(error) => {
                    problem(problems, &path, error);
                    continue;
                }
            };
            match serde_json::from_slice(&bytes) {
                Ok(record) => out.push((name.to_owned(), record)),
                Err(error) => problem(problems, &path, error),
            }
        }
        Ok(())
    }

    /// Stores `bytes` under their digest. Identical bytes are stored once: the flag says whether
    /// this call stored them. (Two concurrent puts of new bytes may both say `true`; harmless.)
    pub fn put_artifact(&self, bytes: &[u8]) -> Result<(Digest, bool), StateError> {
        let digest = Digest::of(bytes);
        let path = artifact_path(&digest);
        if self.root.is_file(&path) {
            // Stored again: its age (for collection) starts again too.
            if let Err(error) = self
                .root
                .open(&path)
                .and_then(|file| file.into_std().set_modified(std::time::SystemTime::now()))
            {
                tracing::debug!(%error, %digest, "could not refresh an artifact's time");
            }
            return Ok((digest, false));
        }
        self.write_atomic(&path, bytes)?;
        Ok((digest, true))
    }

    /// Reads the artifact with `digest`, or `None` if it is not stored. Bytes that no longer
    /// match their digest (disk damage, tampering) are an error rather than silently used.
    pub fn read_artifact(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StateError> {
        let path = artifact_path(digest);
        let Some(bytes) = self.read_optional(&path)? else {
            return Ok(None);
        };
        if Digest::of(&bytes) != *digest {
            let error = io::Error::new(io::ErrorKind::InvalidData, "content does not match digest");
            return Err(io_err(format!("reading {}", path.display()))(error));
        }
        Ok(Some(bytes))
    }

    /// Whether an artifact with `digest` is stored.
    pub fn has_artifact(&self, digest: &Digest) -> bool {
        self.root.is_file(artifact_path(digest))
    }

    /// How long ago the artifact with `digest` was last stored, if it is.
    pub fn artifact_age(&self, digest: &Digest) -> Option<std::time::Duration> {
        let modified = self
            .root
            .metadata(artifact_path(digest))
            .and_then(|m| m.modified())
            .ok()?
            .into_std();
        Some(modified.elapsed().unwrap_or_default())
    }

    /// Deletes the artifact with `digest`; returns whether it was stored.
    pub fn delete_artifact(&self, digest: &Digest) -> Result<bool, StateError> {
        self.remove_optional(&artifact_path(digest))
    }

    /// The digests of all stored artifacts, sorted. Files not named `sha256-<hex>.wasm` (with 64
    /// lowercase hex digits, as this module writes them) are ignored.
    pub fn list_artifacts(&self) -> Result<Vec<Digest>, StateError> {
        let context = "listing artifacts";
        let mut digests = Vec::new();
        for entry in self.root.read_dir(ARTIFACTS).map_err(io_err(context))? {
            let file_name = entry.map_err(io_err(context))?.file_name();
            if let Some(digest) = file_name.to_str().and_then(artifact_digest) {
                digests.push(digest);
            }
        }
        digests.sort_by(|a, b| a.hex().cmp(b.hex()));
        Ok(digests)
    }

    /// Stores (creates or replaces) the record of function `name` in `namespace`.
    pub fn put_function<T: Serialize>(
        &self,
        namespace: &str,
        name: &str,
        record: &T,
    ) -> Result<(), StateError> {
        let path = function_path(namespace, name)?;
        self.ensure_dir(parent(&path))?;
        self.write_record(&path, record)
    }

    /// Deletes the record of function `name` in `namespace`; returns whether it existed.
    pub fn delete_function(&self, namespace: &str, name: &str) -> Result<bool, StateError> {
        self.remove_optional(&function_path(namespace, name)?)
    }

    /// Loads all function records as `(namespace, name, record)`, sorted by namespace and name,
    /// plus the damaged records that were skipped.
    #[allow(clippy::type_complexity)]
    pub fn load_functions<T: DeserializeOwned>(
        &self,
    ) -> Result<(Vec<(String, String, T)>, Vec<Problem>), StateError> {
        let mut functions = Vec::new();
        let mut problems = Vec::new();
        let entries = self
            .root
            .read_dir(FUNCTIONS)
            .map_err(io_err("listing functions"))?;
        for entry in entries {
            let entry = entry.map_err(io_err("listing functions"))?;
            if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            let file_name = entry.file_name();
            let path = Path::new(FUNCTIONS).join(&file_name);
            let Some(namespace) = file_name.to_str() else {
                problem(&mut problems, &path, "namespace is not UTF-8");
                continue;
            };
            if let Err(error) = check_name("namespace", namespace) {
                problem(&mut problems, &path, error);
                continue;
            }
            let mut records = Vec::new();
            if let Err(error) = self.load_records(&path, &mut records, &mut problems) {
                problem(&mut problems, &path, error);
            }
            let owned = records.into_iter();
            functions.extend(owned.map(|(name, record)| (namespace.to_owned(), name, record)));
        }
        functions.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        Ok((functions, problems))
    }

    /// Stores (creates or replaces) the record of `namespace`.
    pub fn put_namespace<T: Serialize>(
        &self,
        namespace: &str,
        record: &T,
    ) -> Result<(), StateError> {
        self.write_record(&namespace_path(namespace)?, record)
    }

    /// Deletes the record of `namespace`; returns whether it existed.
    pub fn delete_namespace(&self, namespace: &str) -> Result<bool, StateError> {
        self.remove_optional(&namespace_path(namespace)?)
    }

    /// Loads all namespace records as `(namespace, record)`, sorted by namespace, plus the
    /// damaged records that were skipped.
    #[allow(clippy::type_complexity)]
    pub fn load_namespaces<T: DeserializeOwned>(
        &self,
    ) -> Result<(Vec<(String, T)>, Vec<Problem>), StateError> {
        let mut namespaces = Vec::new();
        let mut problems = Vec::new();
        self.load_records(Path::new(NAMESPACES), &mut namespaces, &mut problems)
            .map_err(io_err("listing namespaces"))?;
        namespaces.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((namespaces, problems))
    }

    /// Creates secret `name` in `namespace`; fails with `Exists` if it is already there.
    pub fn create_secret(
        &self,
        namespace: &str,
        name: &str,
        value: &[u8],
    ) -> Result<(), StateError> {
        let path = secret_path(namespace, name)?;
        // The rename in `write_atomic` silently replaces an existing file, so "check, then
        // rename" is only atomic if no other secret write runs in between. This process is the
        // only writer, so a lock suffices. The guarded value is `()`, so a poisoned lock holds
        // no broken data and is safe to take over. A crash at any point is harmless: the secret
        // appears whole at the rename or not at all, and a half-written temp file is deleted at
        // the next open.
        let _guard = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        let exists = self
            .root
            .try_exists(&path)
            .map_err(io_err(format!("checking {}", path.display())))?;
        if exists {
            return Err(StateError::Exists(secret_label(namespace, name)));
        }
        self.ensure_dir(parent(&path))?;
        self.write_atomic(&path, value)
    }

    /// Replaces the value of secret `name` in `namespace`; fails with `NotFound` if it is absent.
    pub fn update_secret(
        &self,
        namespace: &str,
        name: &str,
        value: &[u8],
    ) -> Result<(), StateError> {
        let path = secret_path(namespace, name)?;
        // Under the lock, so a concurrent delete cannot slip in and be undone by our rename.
        let _guard = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.root.is_file(&path) {
            return Err(StateError::NotFound(secret_label(namespace, name)));
        }
        self.write_atomic(&path, value)
    }

    /// Deletes secret `name` in `namespace`; fails with `NotFound` if it is absent.
    pub fn delete_secret(&self, namespace: &str, name: &str) -> Result<(), StateError> {
        let path = secret_path(namespace, name)?;
        let _guard = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.remove_optional(&path)? {
            return Err(StateError::NotFound(secret_label(namespace, name)));
        }
        Ok(())
    }

    /// The names of the secrets in `namespace`, sorted; empty if it has none.
    pub fn list_secrets(&self, namespace: &str) -> Result<Vec<String>, StateError> {
        check_name("namespace", namespace)?;
        let dir = Path::new(SECRETS).join(namespace);
        let context = || format!("listing {}", dir.display());
        let entries = match self.root.read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_err(context())(error)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(context()))?;
            if !entry.file_type().is_ok_and(|kind| kind.is_file()) {
                continue;
            }
            if let Some(name) = entry.file_name().to_str()
                && check_secret_name(name).is_ok()
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Reads secret `name` in `namespace`, or `None` if it is absent.
    pub fn read_secret(&self, namespace: &str, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.read_optional(&secret_path(namespace, name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// A fresh directory under the system temp dir, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Scratch {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("wasmgate-state-{}-{test}-{n}", std::process::id());
            let path = std::env::temp_dir().join(name);
            let _ = std::fs::remove_dir_all(&path);
            Scratch(path)
        }

        fn open(&self) -> StateDir {
            StateDir::open(&self.0).expect("open state dir")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Record {
        image: String,
        replicas: u32,
    }

    fn record(image: &str, replicas: u32) -> Record {
        Record {
            image: image.to_owned(),
            replicas,
        }
    }

    fn file_count(dir: &Path) -> usize {
        std::fs::read_dir(dir).expect("read dir").count()
    }

    #[test]
    fn identical_artifact_bytes_are_stored_once() {
        let scratch = Scratch::new("artifact-once");
        let state = scratch.open();
        let (first, new) = state.put_artifact(b"component").expect("first put");
        assert!(new);
        let (second, new) = state.put_artifact(b"component").expect("second put");
        assert!(!new);
        assert_eq!(first, second);
        assert_eq!(file_count(&scratch.0.join(ARTIFACTS)), 1);
        assert_eq!(file_count(&scratch.0.join(TMP)), 0);
    }

    #[test]
    fn artifacts_read_has_delete_list() {
        let scratch = Scratch::new("artifacts");
        let state = scratch.open();
        let (a, _) = state.put_artifact(b"alpha").expect("put alpha");
        let (b, _) = state.put_artifact(b"beta").expect("put beta");
        let junk = scratch.0.join(ARTIFACTS).join("notes.txt");
        std::fs::write(junk, b"ignored").expect("write junk");
        let mut want = vec![a.clone(), b.clone()];
        want.sort_by(|x, y| x.hex().cmp(y.hex()));
        assert_eq!(state.list_artifacts().expect("list"), want);

        assert_eq!(
            state.read_artifact(&a).expect("read"),
            Some(b"alpha".to_vec())
        );
        assert!(state.has_artifact(&a));
        assert!(state.delete_artifact(&a).expect("delete"));
        assert!(!state.delete_artifact(&a).expect("delete again"));
        assert!(!state.has_artifact(&a));
        assert_eq!(state.read_artifact(&a).expect("read deleted"), None);
        assert_eq!(state.list_artifacts().expect("list"), vec![b.clone()]);

        // Bytes that no longer match their name are an error, not silently served.
        let path = scratch.0.join(artifact_path(&b));
        std::fs::write(path, b"tampered").expect("tamper");
        assert!(matches!(
            state.read_artifact(&b),
            Err(StateError::Io { .. })
        ));
    }

    #[test]
    fn function_records_survive_reopen() {
        let scratch = Scratch::new("functions");
        let state = scratch.open();
        state
            .put_function("prod", "b", &record("old", 1))
            .expect("put");
        state
            .put_function("prod", "b", &record("b", 2))
            .expect("replace");
        state
            .put_function("prod", "a", &record("a", 1))
            .expect("put");
        state
            .put_function("dev", "z", &record("z", 3))
            .expect("put");
        state
            .put_function("dev", "gone", &record("g", 0))
            .expect("put");
        assert!(state.delete_function("dev", "gone").expect("delete"));
        assert!(!state.delete_function("dev", "gone").expect("delete again"));
        assert!(
            !state
                .delete_function("nowhere", "x")
                .expect("delete unknown")
        );
        drop(state);

        let state = scratch.open();
        let (functions, problems) = state.load_functions::<Record>().expect("load");
        assert!(problems.is_empty(), "{problems:?}");
        let want = vec![
            ("dev".to_owned(), "z".to_owned(), record("z", 3)),
            ("prod".to_owned(), "a".to_owned(), record("a", 1)),
            ("prod".to_owned(), "b".to_owned(), record("b", 2)),
        ];
        assert_eq!(functions, want);
    }

    #[test]
    fn damaged_record_is_reported_and_skipped() {
        let scratch = Scratch::new("damaged");
        let state = scratch.open();
        state
            .put_function("ns", "good", &record("g", 1))
            .expect("put");
        let dir = scratch.0.join(FUNCTIONS).join("ns");
        std::fs::write(dir.join("x.json"), b"{not json").expect("write garbage");
        std::fs::write(dir.join("notes.txt"), b"not a record").expect("write other");
        std::fs::write(scratch.0.join(FUNCTIONS).join("stray"), b"").expect("write stray");

        let (functions, problems) = state.load_functions::<Record>().expect("load");
        assert_eq!(functions.len(), 1);
        assert_eq!(functions[0].1, "good");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].path.ends_with("x.json"), "{problems:?}");
        assert!(!problems[0].reason.is_empty());
    }

    #[test]
    fn leftover_tmp_file_is_removed_at_open() {
        let scratch = Scratch::new("tmp");
        drop(scratch.open());
        let leftover = scratch.0.join(TMP).join("123-0.tmp");
        std::fs::write(&leftover, b"half written").expect("write leftover");
        std::fs::create_dir(scratch.0.join(TMP).join("dir")).expect("create leftover dir");
        let _state = scratch.open();
        assert!(!leftover.exists());
        assert_eq!(file_count(&scratch.0.join(TMP)), 0);
    }

    #[test]
    fn secrets_lifecycle() {
        let scratch = Scratch::new("secrets");
        let state = scratch.open();
        assert_eq!(
            state.list_secrets("ns").expect("list empty"),
            Vec::<String>::new()
        );
        state.create_secret("ns", "b-key", b"one").expect("create");
        state.create_secret("ns", "a-key", b"two").expect("create");
        assert!(matches!(
            state.create_secret("ns", "b-key", b"again"),
            Err(StateError::Exists(_))
        ));
        assert_eq!(
            state.read_secret("ns", "b-key").expect("read"),
            Some(b"one".to_vec())
        );
        state.update_secret("ns", "b-key", b"new").expect("update");
        assert_eq!(
            state.read_secret("ns", "b-key").expect("read"),
            Some(b"new".to_vec())
        );
        assert!(matches!(
            state.update_secret("ns", "missing", b"x"),
            Err(StateError::NotFound(_))
        ));
        assert_eq!(state.list_secrets("ns").expect("list"), ["a-key", "b-key"]);
        assert_eq!(
            state.list_secrets("other").expect("list other"),
            Vec::<String>::new()
        );
        state.delete_secret("ns", "a-key").expect("delete");
        assert!(matches!(
            state.delete_secret("ns", "a-key"),
            Err(StateError::NotFound(_))
        ));
        assert_eq!(
            state.read_secret("ns", "a-key").expect("read deleted"),
            None
        );
        assert_eq!(state.list_secrets("ns").expect("list"), ["b-key"]);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |path: &Path| {
                let metadata = std::fs::metadata(path).expect("metadata");
                metadata.permissions().mode() & 0o777
            };
            assert_eq!(
                mode(&scratch.0.join(SECRETS).join("ns").join("b-key")),
                0o600
            );
            assert_eq!(mode(&scratch.0.join(SECRETS).join("ns")), 0o700);
            assert_eq!(mode(&scratch.0.join(SECRETS)), 0o700);
            assert_eq!(mode(&scratch.0), 0o700);
        }
    }

    fn rejects<T: std::fmt::Debug>(what: &str, bad: &str, result: Result<T, StateError>) {
        let rejected = matches!(result, Err(StateError::InvalidName(_)));
        assert!(rejected, "{what} accepted {bad:?}: {result:?}");
    }

    #[test]
    fn invalid_names_are_rejected() {
        let scratch = Scratch::new("names");
        let state = scratch.open();
        let r = record("x", 1);
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b"] {
            rejects("put_function ns", bad, state.put_function(bad, "ok", &r));
            rejects("put_function name", bad, state.put_function("ok", bad, &r));
            rejects("delete_function", bad, state.delete_function(bad, "ok"));
            rejects("put_namespace", bad, state.put_namespace(bad, &r));
            rejects("delete_namespace", bad, state.delete_namespace(bad));
            rejects(
                "create_secret ns",
                bad,
                state.create_secret(bad, "ok", b"v"),
            );
            rejects(
                "create_secret name",
                bad,
                state.create_secret("ok", bad, b"v"),
            );
            rejects("update_secret", bad, state.update_secret("ok", bad, b"v"));
            rejects("delete_secret", bad, state.delete_secret("ok", bad));
            rejects("read_secret", bad, state.read_secret("ok", bad));
            rejects("list_secrets", bad, state.list_secrets(bad));
        }
        rejects(
            "create_secret",
            "a..b",
            state.create_secret("ok", "a..b", b"v"),
        );
        // Nothing was written anywhere by the rejected calls.
        for sub in [FUNCTIONS, NAMESPACES, SECRETS] {
            assert_eq!(file_count(&scratch.0.join(sub)), 0, "{sub}");
        }
    }

    #[test]
    fn namespaces_round_trip() {
        let scratch = Scratch::new("namespaces");
        let state = scratch.open();
        state.put_namespace("prod", &record("p", 1)).expect("put");
        state.put_namespace("dev", &record("d", 2)).expect("put");
        state.put_namespace("gone", &record("g", 3)).expect("put");
        assert!(state.delete_namespace("gone").expect("delete"));
        assert!(!state.delete_namespace("gone").expect("delete again"));
        drop(state);

        let state = scratch.open();
        let (namespaces, problems) = state.load_namespaces::<Record>().expect("load");
        assert!(problems.is_empty(), "{problems:?}");
        let want = vec![
            ("dev".to_owned(), record("d", 2)),
            ("prod".to_owned(), record("p", 1)),
        ];
        assert_eq!(namespaces, want);
    }
}
