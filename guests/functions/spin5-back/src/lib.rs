//! `spin5-back`: the private component of the Spin app the gateway tests deploy (`spin-sdk` 5.2.0).
//! It answers with the path and query it was given, the `spin-*` headers of its match, and its
//! component variable `token` (from a secret variable), so a test can see a call reached it.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::variables;

#[http_component]
fn handle(request: Request) -> impl IntoResponse {
    let header = |name: &str| {
        request
            .header(name)
            .and_then(|v| v.as_str())
            .unwrap_or("(none)")
            .to_string()
    };
    let token = variables::get("token").unwrap_or_else(|error| format!("{error:?}"));
    let body = format!(
        "back {}?{} path-info={} matched={} client={} token={token}\n",
        request.path(),
        request.query(),
        header("spin-path-info"),
        header("spin-matched-route"),
        header("spin-client-addr"),
    );
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(body)
        .build()
}
