//! Accepting connections and draining them on shutdown.
//!
//! [`serve`] takes a bound listener and a shutdown future, so a test can start a server on port 0 and
//! stop it when it likes. Each accepted connection holds a permit of [`ServerConfig::max_connections`]
//! and runs on its own task ([`crate::http::connection`]: TLS, HTTP/1.1 or HTTP/2, limits). On
//! shutdown it stops accepting at once, asks every connection to finish (HTTP/2 clients get a
//! GOAWAY), lets the requests in flight finish within [`ServerConfig::shutdown_timeout`], then
//! returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::http::connection::{self, ConnectionLimits, Protocols};
use crate::http::gateway::Gateway;
use crate::http::limits::{DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADERS, DEFAULT_WRITE_TIMEOUT};
use crate::http::tls::TlsConfig;

/// How long requests in flight may take to finish after a shutdown signal.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; past it, new connections wait in the kernel's accept queue.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// How long a client may take to send a request's headers (slow clients hold a connection), and
/// how long a connection may stay open with no request in flight (HTTP/1.1 keep-alive, HTTP/2).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests one HTTP/2 connection may have open at once (the `SETTINGS_MAX_CONCURRENT_STREAMS` the
/// server announces); a client wanting more opens another connection, which counts against
/// [`DEFAULT_MAX_CONNECTIONS`]. Requests in flight are bounded gateway-wide as well (`--max-inflight`).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
/// How long to wait before accepting again after `accept` failed (for example, out of file
/// descriptors), so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Connection-level policy.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// See [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub shutdown_timeout: Duration,
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`DEFAULT_HEADER_READ_TIMEOUT`]; also bounds a TLS handshake.
    pub header_read_timeout: Duration,
    /// Bytes of request line and headers (HTTP/2: the header list); past it, 431.
    pub max_header_bytes: usize,
    /// Header fields in one request; past it, 431.
    pub max_headers: usize,
    /// See [`crate::http::limits::DEFAULT_WRITE_TIMEOUT`].
    pub write_timeout: Duration,
    /// See [`DEFAULT_MAX_CONCURRENT_STREAMS`].
    pub max_concurrent_streams: u32,
    /// Serve HTTPS with this certificate and key; plain HTTP (and h2c) without.
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            tls: None,
        }
    }
}

/// Serves `gateway` on `listener` (over TLS when `tls` is given) until `shutdown` completes, then
/// drains.
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    config: ServerConfig,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let gateway = Arc::new(gateway);
    // Every connection holds a permit; the drain is over when all of them are back.
    let permits = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
    let connections = Arc::new(Semaphore::new(permits as usize));
    let draining = CancellationToken::new();
    let protocols = Arc::new(Protocols::new(&ConnectionLimits {
        header_read_timeout: config.header_read_timeout,
        write_timeout: config.write_timeout,
        max_header_bytes: config.max_header_bytes,
        max_headers: config.max_headers,
        max_concurrent_streams: config.max_concurrent_streams,
    }));
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => permit?,
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        // Small responses go out at once instead of waiting for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let connection = connection::serve(
            stream,
            peer,
            gateway.clone(),
            protocols.clone(),
            tls.clone(),
            draining.clone(),
        );
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }

    drop(listener);
    let open = permits as usize - connections.available_permits();
    tracing::info!(
        open_connections = open,
        "shutting down: no longer accepting, draining requests in flight"
    );
    draining.cancel();
    match tokio::time::timeout(config.shutdown_timeout, connections.acquire_many(permits)).await {
        Ok(_) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(
            timeout = ?config.shutdown_timeout,
            "requests still in flight after the shutdown timeout; stopping anyway"
        ),
    }
    Ok(())
}

/// A future that completes on SIGINT or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: call it before announcing the address, or a signal sent right after
/// the announcement would still kill the process with the default action.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("received SIGINT"),
                _ = terminate.recv() => tracing::info!("received SIGTERM"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("received an interrupt");
        })
    }
}
