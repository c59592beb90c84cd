//! What the host crates share about talking HTTP (the gateway's server and callbacks, the registry
//! client, the command-line client): the one outbound client ([`http_client`]) and error chains.

#![deny(missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The outbound HTTP client of the host crates (async callbacks, registries, the gateway's API).
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled HTTP/1.1 client for `http` and `https` URLs: rustls with the Mozilla roots compiled in
/// (no system store needed), at most `connect_timeout` to open a connection. (The runtime has its
/// own client for guests' outbound requests, with their allowed-host rules.)
pub fn http_client(connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// An error and its causes on one line (`outer: cause: root cause`), for errors whose `Display` shows
/// only the outermost layer (hyper's, for one).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
