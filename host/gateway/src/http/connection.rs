//! One accepted connection, from its first byte to its close.
//!
//! 1. With TLS, the handshake, bounded by the header read timeout (a client that connects and says
//!    nothing holds a connection permit); ALPN offers `h2`, then `http/1.1`.
//! 2. hyper-util's auto builder reads the first bytes: the HTTP/2 preface means HTTP/2 (after ALPN
//!    `h2`, or h2c with prior knowledge on plain TCP), anything else HTTP/1.1. Both keep the same
//!    limits: header bytes (HTTP/1.1: hyper's read buffer; HTTP/2: the header list size), header
//!    fields (HTTP/1.1: hyper; HTTP/2: counted here), request bodies (`LimitedBody`, in the
//!    gateway), slow readers (`WriteTimeout` on the socket, under TLS), and for HTTP/2 at most
//!    [`ConnectionLimits::max_concurrent_streams`] requests at once.
//! 3. A connection with no request in flight for the header read timeout is closed gracefully (HTTP/2
//!    clients get a GOAWAY), as is every connection when the server drains. This also bounds the
//!    wait for the first bytes, which the auto builder does not time.
//!
//! Trailers pass both ways: hyper gives the request's to the gateway as the body's last frame, and
//! sends the response's (over HTTP/1.1 only those declared, to a client that sent `TE: trailers`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::http::body::{BoxError, GatewayBody, text};
use crate::http::gateway::Gateway;
use crate::http::limits::WriteTimeout;

/// What the server's configuration says about each connection.
pub(crate) struct ConnectionLimits {
    /// For the headers of a request, a TLS handshake, and a connection with no request in flight.
    pub(crate) header_read_timeout: Duration,
    /// For a client that stops reading.
    pub(crate) write_timeout: Duration,
    /// Request line and headers (HTTP/2: the header list size).
    pub(crate) max_header_bytes: usize,
    /// Header fields of one request.
    pub(crate) max_headers: usize,
    /// Requests at once on one HTTP/2 connection.
    pub(crate) max_concurrent_streams: u32,
}

/// How connections speak HTTP, built once from the [`ConnectionLimits`].
pub(crate) struct Protocols {
    http: auto::Builder<TokioExecutor>,
    header_read_timeout: Duration,
    write_timeout: Duration,
    max_headers: usize,
}

impl Protocols {
    pub(crate) fn new(config: &ConnectionLimits) -> Protocols {
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            // hyper's read buffer holds the request line and headers; past it, 431. Its floor is 8 KiB.
            .max_buf_size(config.max_header_bytes.max(8192))
            .max_headers(config.max_headers)
            .keep_alive(true);
        http.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(config.max_concurrent_streams)
            // The decoded header list, each field counted with 32 bytes of overhead (RFC 9113 6.5.2).
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
        Protocols {
            http,
            header_read_timeout: config.header_read_timeout,
            write_timeout: config.write_timeout,
            max_headers: config.max_headers,
        }
    }
}

/// Serves one connection until it closes, or the server drains and its requests are done.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
    protocols: Arc<Protocols>,
    tls: Option<TlsAcceptor>,
    draining: CancellationToken,
) {
    // Under TLS, so a client that stops reading is noticed however its bytes are wrapped.
    let stream = WriteTimeout::new(stream, protocols.write_timeout);
    let Some(acceptor) = tls else {
        return http(TokioIo::new(stream), peer, gateway, protocols, draining).await;
    };
    let handshake = tokio::select! {
        () = draining.cancelled() => return,
        done = tokio::time::timeout(protocols.header_read_timeout, acceptor.accept(stream)) => done,
    };
    match handshake {
        Ok(Ok(stream)) => http(TokioIo::new(stream), peer, gateway, protocols, draining).await,
        // A scanner, a client that does not trust the certificate: its business, not an operator's.
        Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

async fn http<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
    protocols: Arc<Protocols>,
    draining: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let max_headers = protocols.max_headers;
    let service = {
        let activity = activity.clone();
        service_fn(move |request: Request<Incoming>| {
            let gateway = gateway.clone();
            let busy = Busy::new(activity.clone());
            async move {
                let response = answer(&gateway, request, peer, max_headers).await;
                Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
            }
        })
    };
    let connection = protocols.http.serve_connection(io, service);
    tokio::pin!(connection);
    let idle = activity.idle(protocols.header_read_timeout);
    tokio::pin!(idle);
    let mut closing = false;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            () = draining.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = &mut idle, if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    };
    if let Err(error) = result {
        // Timeouts are the gateway's decision, so say so; other errors are the client's business (a
        // reset, a malformed request already answered 400).
        if stopped_reading(&*error) {
            let error = wasmgate_net::error_chain(&*error);
            tracing::info!(%error, %peer, "connection closed: the client stopped reading");
        } else {
            tracing::debug!(error = %wasmgate_net::error_chain(&*error), %peer, "connection ended with an error");
        }
    }
}

/// The gateway's answer, after the checks HTTP/2 needs here.
async fn answer(
    gateway: &Gateway,
    mut request: Request<Incoming>,
    peer: SocketAddr,
    max_headers: usize,
) -> Response<GatewayBody> {
    if request.version() == Version::HTTP_2 {
        // hyper counts HTTP/1.1 fields itself; an HTTP/2 header list is bounded only in bytes.
        if request.headers().len() > max_headers {
            return text(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                &format!("more than {max_headers} header fields\n"),
            );
        }
        // HTTP/2 carries the host in the `:authority` pseudo-header; the gateway (X-Forwarded-Host,
        // the URI the guest sees) reads `Host`, as HTTP/1.1 sends it.
        if !request.headers().contains_key(header::HOST)
            && let Some(host) = request
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            request.headers_mut().insert(header::HOST, host);
        }
    }
    gateway.handle(request, Some(peer)).await
}

/// Whether a connection ended because its client stopped reading for the write timeout. (Slow headers
/// are not reported: hyper's header timeout also closes idle keep-alive connections, which is normal.)
fn stopped_reading(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Requests in flight on one connection, and when the last one started or ended.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let millis = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(millis, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// Completes once no request has been in flight for `timeout`. The timer is re-armed only when
    /// it fires, so a busy connection costs a few atomics per request.
    async fn idle(&self, timeout: Duration) {
        let mut deadline = self.last() + timeout;
        loop {
            tokio::time::sleep_until(deadline).await;
            if self.in_flight.load(Ordering::Acquire) > 0 {
                deadline = Instant::now() + timeout;
                continue;
            }
            let quiet_until = self.last() + timeout;
            if quiet_until > Instant::now() {
                deadline = quiet_until;
                continue;
            }
            return;
        }
    }
}

/// One request in flight, from its head to the end (or drop) of its response body.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Busy {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.touch();
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it is done.
struct Tracked {
    body: GatewayBody,
    _busy: Busy,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
