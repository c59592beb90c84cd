//! `p3-caller`: calls another function by name through the wasi:http 0.3 client, to show a p3
//! function calling a p2 one and back. `POST /?to=<name>` sends a POST to `http://<name>/` (the
//! gateway serves `http://NAME/` in process; `name.namespace` reaches another namespace its allowed
//! hosts list). Without `to` it calls the function named by the environment variable `TO` (read
//! through `wasi:cli/environment@0.3`), so a p2 `pipeline` step, which calls `/`, can go through it.
//! The outgoing body is the request body streamed straight through (the request's own body stream and
//! trailers are handed to the outgoing request, and its `content-type` is kept). It answers
//! `== <name> (<status>)\n<its answer>`: 200 when the callee answered 2xx, 502 when it answered
//! anything else. If the call itself fails it answers 502 `== <name> (error <error-code>)\n`. With
//! neither `to` nor `TO` it answers 400.

use wasip3::http::client;
use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response, Scheme};
use wasip3::{wit_future, wit_stream};

struct Caller;

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

fn answer(status: u16, text: String) -> Result<Response, ErrorCode> {
    let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
        .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
    let (mut body, body_rx) = wit_stream::new();
    let (_, no_trailers) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(body_rx), no_trailers);
    response
        .set_status_code(status)
        .map_err(|()| ErrorCode::InternalError(Some("status".into())))?;
    wasip3::spawn_local(async move {
        body.write_all(text.into_bytes()).await;
    });
    Ok(response)
}

/// POSTs `request`'s body to `http://<to>/` and returns the callee's status and answer.
async fn call(to: &str, request: Request) -> Result<(u16, String), String> {
    let mut headers = Vec::new();
    if let Some(value) = request.get_headers().get("content-type").into_iter().next() {
        headers.push(("content-type".to_string(), value));
    }
    let headers = Fields::from_list(&headers).map_err(|e| format!("{e:?}"))?;
    let (request_done, request_done_rx) = wit_future::new(|| Ok(()));
    let (body, trailers) = Request::consume_body(request, request_done_rx);
    let (outgoing, _sent) = Request::new(headers, Some(body), trailers, None);
    outgoing.set_method(&Method::Post).map_err(|()| "method")?;
    outgoing
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| "scheme")?;
    outgoing.set_authority(Some(to)).map_err(|()| "authority")?;
    outgoing
        .set_path_with_query(Some("/"))
        .map_err(|()| "path")?;
    let response = client::send(outgoing)
        .await
        .map_err(|code| format!("error {code:?}"))?;
    drop(request_done);
    let status = response.get_status_code();
    let (done, done_rx) = wit_future::new(|| Ok(()));
    let (body, _trailers) = Response::consume_body(response, done_rx);
    let bytes = body.collect().await;
    drop(done);
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

impl wasip3::exports::http::handler::Guest for Caller {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let to = param(query, "to").map(str::to_string).or_else(|| {
            wasip3::cli::environment::get_environment()
                .into_iter()
                .find_map(|(name, value)| (name == "TO").then_some(value))
        });
        let Some(to) = to.filter(|to| !to.is_empty()) else {
            return answer(400, "usage: POST /?to=<function> (or set TO)\n".to_string());
        };
        match call(&to, request).await {
            Ok((status, said)) => {
                let ours = if (200..300).contains(&status) {
                    200
                } else {
                    502
                };
                answer(ours, format!("== {to} ({status})\n{said}"))
            }
            Err(error) => answer(502, format!("== {to} ({error})\n")),
        }
    }
}

wasip3::http::service::export!(Caller);
