//! `p3-trailers`: shows request and response trailers, which only wasi:http 0.3 makes easy. It reads
//! the request body to the end, counting its bytes, then awaits the request's trailers; then it answers
//! 200 with the body `<n> bytes\n` and, after the body, the response trailers `x-request-bytes: <n>`
//! plus every request trailer `<name>: <value>` echoed as `x-echo-<name>: <value>` (names lowercased),
//! all declared in a `trailer` response header (HTTP/1.1 servers such as hyper send only declared
//! trailers, and only to a client that sent `TE: trailers`).
//! If the request body or its trailers fail, it answers 400 with `request failed: <error-code>`.

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::wit_bindgen::StreamResult;
use wasip3::{wit_future, wit_stream};

struct Trailers;

fn internal(error: impl std::fmt::Debug) -> ErrorCode {
    ErrorCode::InternalError(Some(format!("{error:?}")))
}

impl wasip3::exports::http::handler::Guest for Trailers {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let (request_done, request_done_rx) = wit_future::new(|| Ok(()));
        let (mut input, request_trailers) = Request::consume_body(request, request_done_rx);
        let mut bytes = 0usize;
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            let (status, chunk) = input.read(buf).await;
            bytes += chunk.len();
            if !matches!(status, StreamResult::Complete(_)) {
                break;
            }
            buf = chunk;
            buf.clear();
        }
        drop(input);
        let echoed = match request_trailers.await {
            Ok(trailers) => trailers.map(|t| t.copy_all()).unwrap_or_default(),
            Err(code) => {
                drop(request_done);
                return answer(400, format!("request failed: {code:?}\n"), None);
            }
        };
        drop(request_done);

        let mut trailers = vec![(
            "x-request-bytes".to_string(),
            bytes.to_string().into_bytes(),
        )];
        for (name, value) in echoed {
            trailers.push((format!("x-echo-{}", name.to_ascii_lowercase()), value));
        }
        let declared: Vec<&str> = trailers.iter().map(|(name, _)| name.as_str()).collect();
        let declared = declared.join(", ");
        let trailers = Fields::from_list(&trailers).map_err(internal)?;
        answer(200, format!("{bytes} bytes\n"), Some((declared, trailers)))
    }
}

/// A response of `status` with the body `text` and then the `trailers` that the `trailer` header
/// names.
fn answer(
    status: u16,
    text: String,
    trailers: Option<(String, Fields)>,
) -> Result<Response, ErrorCode> {
    let mut headers = vec![("content-type".to_string(), b"text/plain".to_vec())];
    let trailers = trailers.map(|(declared, trailers)| {
        headers.push(("trailer".to_string(), declared.into_bytes()));
        trailers
    });
    let headers = Fields::from_list(&headers).map_err(internal)?;
    let (mut body, body_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
    response.set_status_code(status).map_err(internal)?;
    wasip3::spawn_local(async move {
        body.write_all(text.into_bytes()).await;
        // The trailers follow the end of the body.
        drop(body);
        let _ = trailers_tx.write(Ok(trailers)).await;
    });
    Ok(response)
}

wasip3::http::service::export!(Trailers);
