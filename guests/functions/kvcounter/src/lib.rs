//! `kvcounter`: a counter on `wasi:keyvalue`, kept by the gateway across requests and restarts.
//!
//! - `POST /` (or any method but GET) adds 1 to the key `hits` (or `?key=NAME`) with the atomic
//!   `increment` and answers `count N`;
//! - `GET /` answers the current value without changing it (`count 0` when absent);
//! - `?bucket=NAME` uses that bucket instead of `default` (it must be listed in the function's
//!   `com.wasmgate.keyvalue.buckets` annotation, else `access-denied`).

mod services {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "wasmgate:function/services",
        generate_all,
    });
}

use services::wasi::keyvalue::{atomics, store};
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Counter;

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

fn answer(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
        .expect("valid headers");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("a valid status");
    let body = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("stream is taken once");
    stream
        .blocking_write_and_flush(text.as_bytes())
        .expect("write");
    drop(stream);
    OutgoingBody::finish(body, None).expect("finish the body");
}

fn count(request: &IncomingRequest) -> Result<u64, String> {
    let path = request.path_with_query().unwrap_or_default();
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let key = param(query, "key").unwrap_or("hits");
    let bucket = store::open(param(query, "bucket").unwrap_or("default"))
        .map_err(|e| format!("open: {e:?}"))?;
    if matches!(request.method(), Method::Get) {
        let value = bucket.get(key).map_err(|e| format!("get: {e:?}"))?;
        return Ok(value
            .and_then(|v| String::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0));
    }
    atomics::increment(&bucket, key, 1).map_err(|e| format!("increment: {e:?}"))
}

impl Guest for Counter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        match count(&request) {
            Ok(n) => answer(out, 200, &format!("count {n}\n")),
            Err(reason) => answer(out, 500, &format!("{reason}\n")),
        }
    }
}

wasip2::http::proxy::export!(Counter);
