//! `bigstream`: streams a large response, `?mb=N` MiB of it (1024 when not given), in 4 KiB writes.
//! Used to test that the gateway's memory stays bounded while a big body streams through it, and that
//! a client that stops reading does not hold the instance for ever.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct BigStream;

/// `blocking-write-and-flush` takes at most 4096 bytes at a time.
const CHUNK: usize = 4096;

impl Guest for BigStream {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let megabytes: usize = path
            .split_once("mb=")
            .and_then(|(_, n)| n.split('&').next()?.parse().ok())
            .unwrap_or(1024);
        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"application/octet-stream".to_vec(),
        )])
        .expect("valid header");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("stream is taken once");
        let chunk = vec![b'w'; CHUNK];
        for _ in 0..megabytes * (1024 * 1024 / CHUNK) {
            // Waits for room when the reader is slower than this loop; fails when the client is gone.
            if stream.blocking_write_and_flush(&chunk).is_err() {
                return;
            }
        }
        drop(stream);
        let _ = OutgoingBody::finish(body, None);
    }
}

wasip2::http::proxy::export!(BigStream);
