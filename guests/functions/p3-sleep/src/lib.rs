//! `p3-sleep`: a guest that waits without working, inside an async export. Without a query it awaits
//! `wasi:clocks/monotonic-clock@0.3` `wait-for` of the longest duration there is, over and over, and
//! never answers (the host sees a pending task, not a busy one); with `?ms=N` it awaits `wait-for` of N
//! milliseconds and then answers 200 `slept N ms`. Used to test timeouts, cancellation and how many
//! idle requests an instance can hold.

use wasip3::clocks::monotonic_clock;
use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_future, wit_stream};

struct Sleep;

fn milliseconds(query: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .and_then(|v| v.parse().ok())
}

impl wasip3::exports::http::handler::Guest for Sleep {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let ms = match milliseconds(query) {
            None => loop {
                monotonic_clock::wait_for(u64::MAX).await;
            },
            Some(ms) => {
                monotonic_clock::wait_for(ms.saturating_mul(1_000_000)).await;
                ms
            }
        };
        let (mut body, body_rx) = wit_stream::new();
        let (_, no_trailers) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(Fields::new(), Some(body_rx), no_trailers);
        wasip3::spawn_local(async move {
            body.write_all(format!("slept {ms} ms\n").into_bytes())
                .await;
        });
        Ok(response)
    }
}

wasip3::http::service::export!(Sleep);
