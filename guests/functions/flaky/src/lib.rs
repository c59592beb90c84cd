//! `flaky`: a guest that fails on purpose, for the async queue's retries.
//!
//! - `?fail=N`: answers 503 while the request's `X-Retry` header (the retries before this attempt,
//!   which the async queue sets; 0 when absent) is below N, then 200 `ok after R retries`.
//! - `?sleep_ms=N`: first sleeps N milliseconds on the host's clock (no CPU burnt).
//! - `?status=S`: the status of the final answer (default 200).
//!
//! The body of every answer ends with the request body it received, so tests can see it arrived.

use wasip2::clocks::monotonic_clock;
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Flaky;

fn param(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let Ok(body) = request.consume() else {
        return Vec::new();
    };
    let Ok(stream) = body.stream() else {
        return Vec::new();
    };
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend_from_slice(&chunk);
    }
    bytes
}

impl Guest for Flaky {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let retry: u64 = request
            .headers()
            .get("x-retry")
            .first()
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
            .unwrap_or(0);
        let received = read_body(&request);
        if let Some(ms) = param(query, "sleep_ms") {
            monotonic_clock::subscribe_duration(ms * 1_000_000).block();
        }
        let fail = param(query, "fail").unwrap_or(0);
        let (status, text) = if retry < fail {
            (
                503,
                format!("failing, retry {retry} of the {fail} that fail\n"),
            )
        } else {
            let status = param(query, "status").unwrap_or(200);
            (status as u16, format!("ok after {retry} retries\n"))
        };
        let headers = Fields::from_list(&[
            ("content-type".to_string(), b"text/plain".to_vec()),
            ("x-flaky".to_string(), b"yes".to_vec()),
        ])
        .expect("valid headers");
        let response = OutgoingResponse::new(headers);
        response.set_status_code(status).expect("a valid status");
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("stream is taken once");
        let mut all = text.into_bytes();
        all.extend_from_slice(&received);
        for chunk in all.chunks(4096) {
            stream.blocking_write_and_flush(chunk).expect("write");
        }
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish the body");
    }
}

wasip2::http::proxy::export!(Flaky);
