//! `spin7-hello`: a function built with a third-party SDK, `spin-sdk` 7 (the wasi:http 0.3
//! generation, `#[http_service]`), to show wasmgate runs components it did not build. It answers 200
//! `Hello from spin-sdk 7` and, on the next line, the path (with its query) it was asked for. It uses
//! no Spin host interface, so it imports WASI interfaces only and exports `wasi:http/handler@0.3.0`.

use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

#[http_service]
async fn hello(request: Request) -> impl IntoResponse {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    format!("Hello from spin-sdk 7\n{path}\n")
}
