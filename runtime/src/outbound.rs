//! Outbound HTTP from guests: denied unless the function lists the host, and then sent through one
//! pooled client shared by every function.
//!
//! - **Allowed hosts** ([`HostPattern`]): `api.example.com` (its default port: 80 for `http`, 443 for
//!   `https`), `api.example.com:8443`, `*.internal` (any subdomain, default ports), `*.internal:*` (any
//!   port), `127.0.0.1:9000`, `api.example.com:8000-8080` (a range, both ends included). A denied request gets `HTTP-request-denied` and opens no connection.
//! - **Timeouts**: connecting is capped at [`MAX_OUTBOUND_TIMEOUT`]; the response head (from the send,
//!   connecting included) and the gap between body frames wait what the guest asks for, at most
//!   [`MAX_OUTBOUND_TIMEOUT`] each.
//! - **Pooling**: idle connections are kept per host for reuse (at most [`MAX_IDLE_PER_HOST`], closed
//!   after [`POOL_IDLE_TIMEOUT`]).
//! - **Concurrency**: one request (one instance) may have at most [`MAX_OUTBOUND_PER_REQUEST`]
//!   outbound requests open at once; past it the guest gets `connection-limit-reached`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// The longest any outbound timeout may be, whatever the guest asks.
pub const MAX_OUTBOUND_TIMEOUT: Duration = Duration::from_secs(30);
/// Outbound requests one request's instance may have open at once.
pub const MAX_OUTBOUND_PER_REQUEST: usize = 16;
/// Idle connections kept per host.
pub const MAX_IDLE_PER_HOST: usize = 16;
/// How long an idle pooled connection is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One entry of a function's allowed hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: HostMatch,
    port: PortMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// This host exactly (lowercase).
    Exact(String),
    /// Any host ending in `.` + this (lowercase).
    SubdomainOf(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortMatch {
    /// The scheme's default port.
    Default,
    Exactly(u16),
    /// From the first to the second, both included.
    Range(u16, u16),
    Any,
}

impl HostPattern {
    /// Parses one pattern: `host`, `host:port`, `*.domain`, `*.domain:port`, with `*` as the port for
    /// any port and `LOW-HIGH` for a range (both included).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let invalid = |why: &str| Err(format!("invalid allowed host {text:?}: {why}"));
        if text.is_empty() {
            return invalid("it is empty");
        }
        if text.contains("://") || text.contains('/') {
            return invalid("give a host and optional port, without a scheme or path");
        }
        let (host, port) = match text.rsplit_once(':') {
            // An IPv6 address without brackets would be ambiguous; none are supported here.
            Some((host, port)) => {
                let number = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
                let port = if port == "*" {
                    PortMatch::Any
                } else if let Some((low, high)) = port.split_once('-') {
                    match (number(low), number(high)) {
                        (Some(low), Some(high)) if low <= high => PortMatch::Range(low, high),
                        _ => {
                            return invalid(
                                "a port range is LOW-HIGH, from 1 to 65535, LOW not above HIGH",
                            );
                        }
                    }
                } else {
                    match number(port) {
                        Some(port) => PortMatch::Exactly(port),
                        None => return invalid("the port must be a number from 1 to 65535, or *"),
                    }
                };
                (host, port)
            }
            None => (text, PortMatch::Default),
        };
        let host = host.to_ascii_lowercase();
        let valid_label = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        let host = match host.strip_prefix("*.") {
            Some(domain) if domain.split('.').all(valid_label) => {
                HostMatch::SubdomainOf(domain.into())
            }
            Some(_) => return invalid("the domain after *. is not a valid host name"),
            None if host.split('.').all(valid_label) => HostMatch::Exact(host),
            None => {
                return invalid("use a host name such as api.example.com, or *.example.com");
            }
        };
        Ok(HostPattern { host, port })
    }

    /// Parses a comma-separated list (the annotation's value); empty items are ignored.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        text.split(',')
            .filter(|item| !item.trim().is_empty())
            .map(HostPattern::parse)
            .collect()
    }

    fn matches(&self, host: &str, port: u16, default_port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            HostMatch::Exact(exact) => host == *exact,
            HostMatch::SubdomainOf(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
        };
        let port_ok = match self.port {
            PortMatch::Default => port == default_port,
            PortMatch::Exactly(wanted) => port == wanted,
            PortMatch::Range(low, high) => (low..=high).contains(&port),
            PortMatch::Any => true,
        };
        host_ok && port_ok
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            HostMatch::Exact(host) => f.write_str(host)?,
            HostMatch::SubdomainOf(domain) => write!(f, "*.{domain}")?,
        }
        match self.port {
            PortMatch::Default => Ok(()),
            PortMatch::Exactly(port) => write!(f, ":{port}"),
            PortMatch::Range(low, high) => write!(f, ":{low}-{high}"),
            PortMatch::Any => f.write_str(":*"),
        }
    }
}

/// Whether `uri` may be called under `allowed`.
fn is_allowed(allowed: &[HostPattern], uri: &http::Uri) -> bool {
    let Some(host) = uri.host() else {
        return false;
    };
    let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
        443
    } else {
        80
    };
    let port = uri.port_u16().unwrap_or(default_port);
    allowed
        .iter()
        .any(|pattern| pattern.matches(host, port, default_port))
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The client every function's outbound requests go through.
#[derive(Clone)]
pub(crate) struct OutboundClient {
    // One allocation shared by every request; cloning it is one reference count.
    client: Arc<Client<Connector, WasiBody>>,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundClient").finish_non_exhaustive()
    }
}

impl OutboundClient {
    pub(crate) fn new() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(MAX_OUTBOUND_TIMEOUT));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .build(connector);
        OutboundClient {
            client: Arc::new(client),
        }
    }
}

/// What one request's instance may call, and its share of outbound requests.
pub(crate) struct Outbound {
    allowed: Arc<[HostPattern]>,
    client: OutboundClient,
    /// Made on the first outbound request; most requests make none.
    open: Option<Arc<Semaphore>>,
}

impl Outbound {
    /// Whether the function's allowed hosts include `uri`'s host and port.
    pub(crate) fn allows(&self, uri: &http::Uri) -> bool {
        is_allowed(&self.allowed, uri)
    }

    pub(crate) fn new(allowed: Arc<[HostPattern]>, client: OutboundClient) -> Self {
        Outbound {
            allowed,
            client,
            open: None,
        }
    }

    /// Sends `request` if allowed. The returned future resolves to the response head; its body streams
    /// with the between-bytes timeout.
    pub(crate) fn send(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> impl Future<Output = Result<http::Response<WasiBody>, HttpError>> + Send + 'static {
        let allowed = is_allowed(&self.allowed, request.uri());
        let permit = self
            .open
            .get_or_insert_with(|| Arc::new(Semaphore::new(MAX_OUTBOUND_PER_REQUEST)))
            .clone()
            .try_acquire_owned();
        let client = Client::clone(&self.client.client);
        let bounded = |asked: Option<Duration>| {
            asked
                .unwrap_or(MAX_OUTBOUND_TIMEOUT)
                .min(MAX_OUTBOUND_TIMEOUT)
        };
        let first_byte = bounded(options.and_then(|o| o.first_byte_timeout));
        let between_bytes = bounded(options.and_then(|o| o.between_bytes_timeout));
        async move {
            if !allowed {
                tracing::debug!(uri = %request.uri(), "outbound request denied");
                return Err(HttpError::HttpRequestDenied);
            }
            let permit = permit.map_err(|_| HttpError::ConnectionLimitReached)?;
            // The pooled client writes the request in origin form itself; it needs the absolute URI.
            request.headers_mut().remove(http::header::HOST);
            // The first-byte timeout runs from the send, connecting included; connecting alone is
            // also capped by the connector at MAX_OUTBOUND_TIMEOUT.
            let response = tokio::time::timeout(first_byte, client.request(request))
                .await
                .map_err(|_| HttpError::ConnectionReadTimeout)?
                .map_err(client_error)?;
            Ok(response.map(|body| {
                TimedBody {
                    inner: body,
                    gap: between_bytes,
                    idle: None,
                    _permit: permit,
                }
                .boxed_unsync()
            }))
        }
    }
}

fn client_error(error: hyper_util::client::legacy::Error) -> HttpError {
    if error.is_connect() {
        return HttpError::ConnectionRefused;
    }
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            if hyper.is_timeout() {
                return HttpError::ConnectionReadTimeout;
            }
            return HttpError::InternalError(Some(hyper.to_string()));
        }
        source = cause.source();
    }
    HttpError::InternalError(Some(error.to_string()))
}

/// A response body that fails when no frame arrives for `gap`, and holds its request's place among
/// the open outbound requests until it ends.
struct TimedBody {
    inner: hyper::body::Incoming,
    gap: Duration,
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    _permit: OwnedSemaphorePermit,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.idle = None;
                Poll::Ready(frame.map(|f| f.map_err(HttpError::from)))
            }
            Poll::Pending => {
                let gap = this.gap;
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
                match idle.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::HttpResponseTimeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &str, uri: &str) -> bool {
        let patterns = HostPattern::parse_list(list).expect("valid list");
        is_allowed(&patterns, &uri.parse().expect("uri"))
    }

    #[test]
    fn patterns_match_hosts_and_ports() {
        let list = "api.example.com, *.internal:8443, 127.0.0.1:9000, *.any.test:*";
        assert!(allowed(list, "https://api.example.com/x"));
        assert!(allowed(list, "http://API.example.com/"));
        assert!(
            !allowed(list, "https://api.example.com:8443/"),
            "only the default port"
        );
        assert!(!allowed(list, "https://evil.com/?api.example.com"));
        assert!(!allowed(list, "https://api.example.com.evil.com/"));
        assert!(allowed(list, "https://db.internal:8443/"));
        assert!(allowed(list, "https://a.b.internal:8443/"));
        assert!(
            !allowed(list, "https://internal:8443/"),
            "*. needs a subdomain"
        );
        assert!(!allowed(list, "https://xinternal:8443/"));
        assert!(!allowed(list, "https://db.internal/"));
        assert!(allowed(list, "http://127.0.0.1:9000/"));
        assert!(!allowed(list, "http://127.0.0.1:9001/"));
        assert!(allowed(list, "http://x.any.test:1234/"));
        let range = "api.example.com:8000-8080";
        assert!(allowed(range, "http://api.example.com:8000/"));
        assert!(allowed(range, "http://api.example.com:8080/"));
        assert!(!allowed(range, "http://api.example.com:8081/"));
        assert!(!allowed(range, "http://api.example.com:7999/"));
        assert!(
            !allowed(range, "https://api.example.com/"),
            "443 is not in it"
        );
        assert!(!allowed("", "http://127.0.0.1:9000/"), "nothing by default");
        assert!(!allowed(list, "/relative"));
    }

    #[test]
    fn bad_patterns_say_why() {
        for (text, why) in [
            ("https://api.example.com", "without a scheme"),
            ("api.example.com/path", "without a scheme or path"),
            ("api.example.com:0", "port must be"),
            ("api.example.com:http", "port must be"),
            ("api.example.com:9-8", "a port range"),
            ("api.example.com:0-8", "a port range"),
            ("api.example.com:1-x", "a port range"),
            ("*.", "domain after *."),
            ("a b.com", "host name"),
            ("*", "host name"),
        ] {
            let error = HostPattern::parse(text).expect_err(text);
            assert!(error.contains(why), "{text}: {error}");
        }
        let list = HostPattern::parse_list(" a.com , ,*.b.org:*,c.net:1-2").expect("valid");
        let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["a.com", "*.b.org:*", "c.net:1-2"]);
    }
}
