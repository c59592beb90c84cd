//! Accepting connections and draining them on shutdown.
//!
//! [`serve`] takes a bound listener and a shutdown future, so a test can start a server on port 0 and
//! stop it when it likes. On shutdown it stops accepting at once, lets every request in flight finish
//! within [`ServerConfig::shutdown_timeout`], then returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::http::gateway::Gateway;
use crate::http::limits::{
    DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADERS, DEFAULT_WRITE_TIMEOUT, WriteTimeout,
};

/// How long requests in flight may take to finish after a shutdown signal.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; past it, new connections wait in the kernel's accept queue.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// How long a client may take to send a request's headers (slow clients hold a connection).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
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
    /// See [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// Bytes of request line and headers; past it hyper answers 431.
    pub max_header_bytes: usize,
    /// Header fields in one request; past it hyper answers 431.
    pub max_headers: usize,
    /// See [`crate::http::limits::DEFAULT_WRITE_TIMEOUT`].
    pub write_timeout: Duration,
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
        }
    }
}

/// Serves `gateway` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let gateway = Arc::new(gateway);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        // hyper's read buffer holds the request line and headers; past it, 431. Its floor is 8 KiB.
        .max_buf_size(config.max_header_bytes.max(8192))
        .max_headers(config.max_headers)
        .keep_alive(true);
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
        let gateway = gateway.clone();
        let service = service_fn(move |request| {
            let gateway = gateway.clone();
            async move { Ok::<_, std::convert::Infallible>(gateway.handle(request, Some(peer)).await) }
        });
        let stream = WriteTimeout::new(stream, config.write_timeout);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // Timeouts are the gateway's decision, so say so; other errors are the client's
                // business (a reset, a malformed request already answered 400).
                if stopped_reading(&error) {
                    let error = wasmgate_net::error_chain(&error);
                    tracing::info!(%error, %peer, "connection closed: the client stopped reading");
                } else {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                }
            }
            drop(permit);
        });
    }

    drop(listener);
    let open = graceful.count();
    tracing::info!(
        open_connections = open,
        "shutting down: no longer accepting, draining requests in flight"
    );
    match tokio::time::timeout(config.shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(
            timeout = ?config.shutdown_timeout,
            "requests still in flight after the shutdown timeout; stopping anyway"
        ),
    }
    Ok(())
}

/// Whether a connection ended because its client stopped reading for the write timeout. (Slow headers
/// are not reported: hyper's header timeout also closes idle keep-alive connections, which is normal.)
fn stopped_reading(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
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
