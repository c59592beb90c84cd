//! Repository-wide checks live in `tidy.rs`; this library only says where the repository is. The
//! end-to-end tests in `e2e/` belong to the `wasmgate` package (see `host/cli/Cargo.toml`).

#![deny(missing_docs)]

use std::path::{Path, PathBuf};

/// The repository's root folder (the workspace this crate is a member of).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}
