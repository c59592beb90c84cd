//! `p3-echo`: the wasi:http 0.3 twin of `echo`; shows what a function receives. The request's method,
//! path, query and every `x-*` header come back as response headers (`x-echo-method`, `x-echo-path`,
//! `x-echo-query`, `x-echo-<header>`; the request's `content-type`, if any, is kept), and the request
//! body streams back as the response body chunk by chunk (reads of at most 64 KiB, each written out
//! whole before the next read), never held whole. The response head is returned before the body is
//! read, so a client sees it while it is still sending, and backpressure works both ways: a client that
//! stops reading stops the function reading. Request trailers are not echoed (see `p3-trailers`).

use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response};
use wasip3::wit_bindgen::StreamResult;
use wasip3::{wit_future, wit_stream};

struct Echo;

const CHUNK: usize = 64 * 1024;

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

fn internal(error: impl std::fmt::Debug) -> ErrorCode {
    ErrorCode::InternalError(Some(format!("{error:?}")))
}

impl wasip3::exports::http::handler::Guest for Echo {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path_with_query = request
            .get_path_with_query()
            .unwrap_or_else(|| "/".to_string());
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path.to_string(), query.to_string()),
            None => (path_with_query, String::new()),
        };

        let mut echoed = vec![
            (
                "x-echo-method".to_string(),
                method_name(&request.get_method()).into_bytes(),
            ),
            ("x-echo-path".to_string(), path.into_bytes()),
            ("x-echo-query".to_string(), query.into_bytes()),
        ];
        let headers = request.get_headers();
        for (name, value) in headers.copy_all() {
            let name = name.to_ascii_lowercase();
            if name.starts_with("x-") {
                echoed.push((format!("x-echo-{name}"), value));
            }
        }
        if let Some(value) = headers.get("content-type").into_iter().next() {
            echoed.push(("content-type".to_string(), value));
        }
        drop(headers);

        // Dropping `request_done` at the end tells the host the body was handled (`ok`).
        let (request_done, request_done_rx) = wit_future::new(|| Ok(()));
        let (mut input, _request_trailers) = Request::consume_body(request, request_done_rx);
        let (mut output, output_rx) = wit_stream::new();
        let (_, no_trailers) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(
            Fields::from_list(&echoed).map_err(internal)?,
            Some(output_rx),
            no_trailers,
        );

        wasip3::spawn_local(async move {
            let mut buf = Vec::with_capacity(CHUNK);
            loop {
                let (status, chunk) = input.read(buf).await;
                match status {
                    StreamResult::Complete(_) => {}
                    // The request body ended (or the host dropped it).
                    StreamResult::Dropped | StreamResult::Cancelled => break,
                }
                let rest = output.write_all(chunk).await;
                if !rest.is_empty() {
                    // The client went away: stop reading too.
                    break;
                }
                buf = rest;
                buf.reserve(CHUNK);
            }
            drop(output);
            drop(request_done);
        });
        Ok(response)
    }
}

wasip3::http::service::export!(Echo);
