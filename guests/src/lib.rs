//! The example and test functions of wasmgate, built for `wasm32-wasip2` by this crate's build script.
//!
//! Each guest in `guests/functions/<name>` becomes a constant holding the path of its component, for
//! example [`HELLO`]. [`foreach_guest!`] names every guest; the integration tests use it to fail to
//! compile when a guest has no test.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
