//! `p3-grpc`: a gRPC unary echo, to show a gRPC call reaching a function through the gateway. A gRPC
//! client calls `/function/p3-grpc/<package.Service>/<Method>`; the gateway hands the function the path
//! `/<package.Service>/<Method>`, as a gRPC server expects it.
//!
//! - Method `Echo` of any service: the request's one message (the 5-byte gRPC prefix, then the
//!   protobuf bytes) comes back as the response's message, so it answers any method whose request
//!   and response types are the same. The trailers are `grpc-status: 0` and `x-grpc-path: <the path
//!   it saw>`.
//! - Any other method: no message, `grpc-status: 12` (unimplemented) and a `grpc-message`.
//! - A request that is not one whole uncompressed message of at most 4 MiB (gRPC's default limit):
//!   `grpc-status: 13` (internal) and a `grpc-message` that says what is wrong.
//! - A request whose `content-type` is not `application/grpc[+proto]`: HTTP 415, as gRPC's HTTP
//!   mapping asks.

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::wit_bindgen::StreamResult;
use wasip3::{wit_future, wit_stream};

struct Grpc;

/// gRPC's default largest message.
const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// A compressed flag (one byte) and a big-endian length (four).
const PREFIX: usize = 5;

fn internal(error: impl std::fmt::Debug) -> ErrorCode {
    ErrorCode::InternalError(Some(format!("{error:?}")))
}

impl wasip3::exports::http::handler::Guest for Grpc {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request
            .get_path_with_query()
            .unwrap_or_else(|| "/".to_string());
        let grpc = request
            .get_headers()
            .get("content-type")
            .into_iter()
            .next()
            .map(|value| {
                value == b"application/grpc" || value.starts_with(b"application/grpc+proto")
            })
            .unwrap_or(false);
        if !grpc {
            return reply(415, Vec::new(), Vec::new());
        }

        let (request_done, request_done_rx) = wit_future::new(|| Ok(()));
        let (mut input, _trailers) = Request::consume_body(request, request_done_rx);
        let mut body = Vec::new();
        let mut too_large = false;
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            let (status, chunk) = input.read(buf).await;
            if body.len() + chunk.len() > PREFIX + MAX_MESSAGE {
                too_large = true;
                break;
            }
            body.extend_from_slice(&chunk);
            if !matches!(status, StreamResult::Complete(_)) {
                break;
            }
            buf = chunk;
            buf.clear();
        }
        drop(input);
        drop(request_done);

        let mut trailers = vec![("x-grpc-path".to_string(), path.clone().into_bytes())];
        let problem = if too_large {
            Some(format!("the request is larger than {MAX_MESSAGE} bytes"))
        } else {
            check_message(&body).err()
        };
        if let Some(problem) = problem {
            trailers.push(("grpc-status".to_string(), b"13".to_vec()));
            trailers.push(("grpc-message".to_string(), problem.into_bytes()));
            return reply(200, Vec::new(), trailers);
        }
        if path.rsplit('/').next() != Some("Echo") {
            trailers.push(("grpc-status".to_string(), b"12".to_vec()));
            let message = format!("method {path} is not implemented; this function answers Echo");
            trailers.push(("grpc-message".to_string(), message.into_bytes()));
            return reply(200, Vec::new(), trailers);
        }
        trailers.push(("grpc-status".to_string(), b"0".to_vec()));
        reply(200, body, trailers)
    }
}

/// Whether `body` is one whole uncompressed length-prefixed message.
fn check_message(body: &[u8]) -> Result<(), String> {
    let Some((prefix, message)) = body.split_first_chunk::<PREFIX>() else {
        return Err(format!("expected one message, got {} bytes", body.len()));
    };
    if prefix[0] != 0 {
        return Err("compressed messages are not accepted".to_string());
    }
    let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if length != message.len() {
        return Err(format!(
            "the message says {length} bytes, {} followed (one message per call)",
            message.len()
        ));
    }
    Ok(())
}

/// A response of `status` with `content-type: application/grpc`, `body`, then `trailers`.
fn reply(
    status: u16,
    body: Vec<u8>,
    trailers: Vec<(String, Vec<u8>)>,
) -> Result<Response, ErrorCode> {
    let headers = Fields::from_list(&[("content-type".to_string(), b"application/grpc".to_vec())])
        .map_err(internal)?;
    let trailers = Fields::from_list(&trailers).map_err(internal)?;
    let (mut out, out_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(out_rx), trailers_rx);
    response.set_status_code(status).map_err(internal)?;
    wasip3::spawn_local(async move {
        out.write_all(body).await;
        // The trailers follow the end of the body.
        drop(out);
        let _ = trailers_tx.write(Ok(Some(trailers))).await;
    });
    Ok(response)
}

wasip3::http::service::export!(Grpc);
