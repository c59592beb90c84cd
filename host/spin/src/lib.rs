//! # wasmgate-spin
//!
//! Spin applications as wasmgate reads them, with no I/O: the `spin.toml` manifest of version 2
//! ([`App::parse`], `manifest.rs`), Spin's HTTP routing and the `spin-*` request headers
//! ([`Router`], `routes.rs`), variable templates and where their values come from
//! ([`variables`]), `allowed_outbound_hosts` ([`OutboundHost`], `outbound.rs`), and the archive in
//! which a component's static files travel ([`files`]).
//!
//! The gateway deploys an app as one function whose components are parts of it; this crate decides
//! what the manifest means, the gateway and the runtime do the rest:
//!
//! 1. [`App::parse`] the manifest: fields wasmgate cannot honour are refused, naming the field.
//! 2. [`variables::resolve`] the app's variables from the function's secrets and environment, then
//!    [`variables::component_values`] gives each component its own.
//! 3. For each request, [`Router::route`] picks the component and [`RouteMatch::headers`] gives the
//!    `spin-*` headers it sees.
//!
//! ```
//! let app = wasmgate_spin::App::parse(r#"
//! spin_manifest_version = 2
//! [application]
//! name = "hello"
//! [[trigger.http]]
//! route = "/api/..."
//! component = "api"
//! [component.api]
//! source = "api.wasm"
//! "#).unwrap();
//! let router = app.router();
//! let found = router.route("/api/users").unwrap();
//! assert_eq!((found.component.as_str(), found.path_info.as_str()), ("api", "/users"));
//! ```

#![deny(missing_docs)]

pub mod deployment;
pub mod files;
mod manifest;
mod outbound;
mod routes;
pub mod variables;

pub use crate::manifest::{App, Component, HttpTrigger, ManifestError, is_component_name};
pub use crate::outbound::{OutboundHost, SERVICE_CHAINING_DOMAIN, resolve_entries};
pub use crate::routes::{RouteMatch, RouteSpec, Router, WELL_KNOWN_PREFIX, headers};
pub use crate::variables::{Variable, is_variable_name};
