//! `spin5-redis`: a Spin component (`spin-sdk` 5.2.0) that uses Spin's Redis interface
//! (`fermyon:spin/redis@2.0.0`), which wasmgate does not provide: the tests deploy it to see it
//! refused, the interface named.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(_request: Request) -> impl IntoResponse {
    let answer = match spin_sdk::redis::Connection::open("redis://127.0.0.1:6379") {
        Ok(connection) => format!("{:?}", connection.get("key").is_ok()),
        Err(error) => format!("{error:?}"),
    };
    Response::builder().status(200).body(answer).build()
}
