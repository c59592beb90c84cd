//! Components as OCI artifacts, in the CNCF Wasm OCI format: one `application/wasm` layer and a
//! `application/vnd.wasm.config.v0+json` config. Pull (deploying `image: registry/repo:tag`) and push
//! (`wasmgate push`), over the OCI distribution API.
//!
//! - **References**: `registry[:port]/repository[:tag][@sha256:...]`; the first part must look like a
//!   host (a dot, a port, or `localhost`), so `image` values that are file paths never match.
//! - **Transport**: `https`, except `localhost`, `127.0.0.1`, `[::1]` and the hosts listed in
//!   `$WASMGATE_INSECURE_REGISTRIES` (comma-separated `host[:port]`), which use plain `http`, as Docker
//!   treats local registries.
//! - **Credentials**: from the Docker config file (`$DOCKER_CONFIG/config.json`, else
//!   `~/.docker/config.json`), `auths.<registry>.auth` (or `username`/`password`). Registries that ask
//!   for a bearer token (`WWW-Authenticate: Bearer realm=...`) get one from their token service, with
//!   those credentials when there are any. Credential helpers (`credsStore`) are not run.
//! - **Integrity**: a pulled layer must match its digest and be at most the artifact size limit; blob
//!   redirects (to object storage) are followed, at most 5, without the registry's credentials.
//!
//! By noun: [`Reference`] (`reference.rs`), the Docker config file's credentials (`credentials.rs`),
//! and [`RegistryClient`], the distribution API's client (`registry.rs`).

#![deny(missing_docs)]

mod credentials;
mod reference;
mod registry;

pub use reference::Reference;
pub use registry::{Pulled, RegistryClient, WASM_CONFIG, WASM_LAYER};
