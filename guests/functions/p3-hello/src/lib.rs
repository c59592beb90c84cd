//! `p3-hello`: the smallest wasi:http 0.3 function. Answers 200 with
//! `Hello from wasmgate (wasi:http 0.3)!`, a newline and the path (with its query) it was asked for,
//! plus a newline. It writes two lines to stdout through `wasi:cli/stdout@0.3`:
//! `p3-hello called for <path>` in one write, then `p3-hello wrote this line in three pieces` in three
//! writes (`p3-hello `, `wrote this line `, `in three pieces\n`), so a log capture has to join pieces.

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_future, wit_stream};

struct Hello;

/// Writes `pieces` to stdout, one stream write each, and waits until the host has taken them.
async fn log(pieces: &[&str]) {
    let (mut tx, rx) = wit_stream::new();
    let done = wasip3::cli::stdout::write_via_stream(rx);
    for piece in pieces {
        tx.write_all(piece.as_bytes().to_vec()).await;
    }
    drop(tx);
    let _ = done.await;
}

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request
            .get_path_with_query()
            .unwrap_or_else(|| "/".to_string());
        log(&[&format!("p3-hello called for {path}\n")]).await;
        log(&["p3-hello ", "wrote this line ", "in three pieces\n"]).await;

        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
        let (mut body, body_rx) = wit_stream::new();
        // No trailers: the writer is dropped, which resolves the future to `ok(none)`.
        let (_, trailers) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(headers, Some(body_rx), trailers);
        wasip3::spawn_local(async move {
            body.write_all(format!("Hello from wasmgate (wasi:http 0.3)!\n{path}\n").into_bytes())
                .await;
        });
        Ok(response)
    }
}

wasip3::http::service::export!(Hello);
