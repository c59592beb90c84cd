//! A local OTLP/HTTP collector for the load benchmark with tracing on: it takes every export
//! (`POST /v1/traces`), reads the body whole and answers 200 with an empty
//! `ExportTraceServiceResponse` (zero bytes of protobuf), so the gateway's exporter does all its work
//! while the collector costs the shared machine as little as possible. Prints
//! `otlp-sink listening on http://ADDR`, and on exit (SIGTERM or SIGINT) how many exports and bytes
//! it took.

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Default)]
struct Taken {
    exports: AtomicU64,
    bytes: AtomicU64,
}

async fn take(
    taken: Arc<Taken>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let traces = request.uri().path() == "/v1/traces";
    let body = request.into_body().collect().await.map(|b| b.to_bytes());
    let mut response = Response::new(Full::new(Bytes::new()));
    match (traces, body) {
        (true, Ok(body)) => {
            taken.exports.fetch_add(1, Ordering::Relaxed);
            taken.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/x-protobuf"),
            );
        }
        _ => *response.status_mut() = StatusCode::NOT_FOUND,
    }
    Ok(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "otlp-sink listening on http://{}",
        listener.local_addr()?
    )?;
    stdout.flush()?;
    drop(stdout);
    let taken = Arc::new(Taken::default());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let taken = taken.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| take(taken.clone(), request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    eprintln!(
        "otlp-sink: {} exports, {} bytes",
        taken.exports.load(Ordering::Relaxed),
        taken.bytes.load(Ordering::Relaxed)
    );
    Ok(())
}
