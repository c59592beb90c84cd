//! The HTTP face of the gateway: the router and the invocation contract ([`gateway`]), the
//! management API ([`api`]) and its refusals ([`error`]), the web portal ([`ui`]), basic auth ([`auth`]), request limits
//! ([`limits`]), the accept loop and its connections ([`server`]) and HTTPS ([`tls`]).

pub mod api;
pub mod auth;
pub mod body;
mod connection;
pub mod error;
pub mod gateway;
pub mod limits;
pub mod server;
pub mod tls;
pub mod ui;
