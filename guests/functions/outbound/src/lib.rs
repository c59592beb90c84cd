//! `outbound`: calls another HTTP server and reports what happened, to test outbound rules.
//! `GET /?url=<url>&n=<count>` sends `count` (default 1) GET requests to `url` at once, then answers
//! one line per request: `<status> <first 40 bytes of the body>` or `error <error-code>`.
//! `&first_byte_ms=<ms>` sets the request's first-byte timeout.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, FutureIncomingResponse, IncomingRequest, OutgoingBody, OutgoingRequest,
    OutgoingResponse, RequestOptions, ResponseOutparam, Scheme,
};

struct Outbound;

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// Starts one GET of `url` (`http://host[:port]/path`).
fn start(url: &str, first_byte_ms: Option<u64>) -> Result<FutureIncomingResponse, String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(format!("unsupported url {url}"));
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request.set_scheme(Some(&scheme)).map_err(|()| "scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "path")?;
    let options = first_byte_ms.map(|ms| {
        let options = RequestOptions::new();
        let _ = options.set_first_byte_timeout(Some(ms * 1_000_000));
        options
    });
    outgoing_handler::handle(request, options).map_err(|code| format!("error {code:?}"))
}

/// Waits for one response and describes it.
fn finish(future: FutureIncomingResponse) -> String {
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return format!("error {code:?}"),
        Some(Err(())) | None => return "error no response".to_string(),
    };
    let status = response.status();
    let body = response.consume().expect("body is taken once");
    let stream = body.stream().expect("stream is taken once");
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(4096) {
        bytes.extend_from_slice(&chunk);
    }
    bytes.truncate(40);
    format!("{status} {}", String::from_utf8_lossy(&bytes).trim())
}

impl Guest for Outbound {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let url = param(query, "url")
            .unwrap_or("http://127.0.0.1:1/")
            .to_string();
        let count: usize = param(query, "n").and_then(|n| n.parse().ok()).unwrap_or(1);
        let first_byte_ms = param(query, "first_byte_ms").and_then(|n| n.parse().ok());
        // All started first, so they are open at the same time.
        let started: Vec<Result<FutureIncomingResponse, String>> =
            (0..count).map(|_| start(&url, first_byte_ms)).collect();
        let lines: Vec<String> = started
            .into_iter()
            .map(|s| match s {
                Ok(future) => finish(future),
                Err(error) => error,
            })
            .collect();

        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("stream is taken once");
        for line in lines {
            stream
                .blocking_write_and_flush(format!("{line}\n").as_bytes())
                .expect("write");
        }
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish the body");
    }
}

wasip2::http::proxy::export!(Outbound);
