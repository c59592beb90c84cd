//! `echo`: shows what a function receives. The request's method, path, query, every `x-*` header and
//! its W3C trace context (`traceparent`, `tracestate`) come back as response headers (`x-echo-method`,
//! `x-echo-path`, `x-echo-query`, `x-echo-<header>`), and the
//! request body streams back as the response body chunk by chunk, never held whole. The response head is
//! sent before the body is read, so a client sees it while it is still sending.

use std::io::{Read, Write};

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Echo;

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

impl Guest for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path.to_string(), query.to_string()),
            None => (path_with_query, String::new()),
        };

        let mut echoed = vec![
            (
                "x-echo-method".to_string(),
                method_name(&request.method()).into_bytes(),
            ),
            ("x-echo-path".to_string(), path.into_bytes()),
            ("x-echo-query".to_string(), query.into_bytes()),
        ];
        let content_type = request.headers().get("content-type");
        for (name, value) in request.headers().entries() {
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("x-") || lower == "traceparent" || lower == "tracestate" {
                echoed.push((format!("x-echo-{}", name.to_ascii_lowercase()), value));
            }
        }
        if let Some(value) = content_type.into_iter().next() {
            echoed.push(("content-type".to_string(), value));
        }

        let response = OutgoingResponse::new(Fields::from_list(&echoed).expect("valid headers"));
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(out, Ok(response));

        let incoming = request.consume().expect("body is consumed once");
        let mut input = incoming.stream().expect("stream is taken once");
        let mut output = body.write().expect("stream is taken once");
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = Read::read(&mut input, &mut buf).expect("read the request body");
            if n == 0 {
                break;
            }
            output
                .write_all(&buf[..n])
                .expect("write the response body");
            output.flush().expect("flush the response body");
        }
        drop(input);
        drop(output);
        OutgoingBody::finish(body, None).expect("finish the body");
    }
}

wasip2::http::proxy::export!(Echo);
