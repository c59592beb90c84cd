//! `p3-stream-forever`: a response that never ends. It answers 200 (`content-type: text/plain`) at
//! once, then writes one chunk `tick <n>\n` (n = 1, 2, ...) every 10 ms, awaiting
//! `wasi:clocks/monotonic-clock@0.3` `wait-for` in between, forever; `?n=K` ends the body after K
//! chunks. It stops as soon as the client goes away (a write finds the stream dropped). Used to test
//! streaming, idle and total-time limits, and that a dropped client frees the instance.

use wasip3::clocks::monotonic_clock;
use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_future, wit_stream};

struct StreamForever;

const TICK_NS: u64 = 10_000_000;

fn chunks(query: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("n="))
        .and_then(|v| v.parse().ok())
}

impl wasip3::exports::http::handler::Guest for StreamForever {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let limit = chunks(query).unwrap_or(u64::MAX);
        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
            .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
        let (mut body, body_rx) = wit_stream::new();
        let (_, no_trailers) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(headers, Some(body_rx), no_trailers);
        wasip3::spawn_local(async move {
            let mut n = 0u64;
            while n < limit {
                n += 1;
                let rest = body.write_all(format!("tick {n}\n").into_bytes()).await;
                if !rest.is_empty() {
                    // The client went away.
                    return;
                }
                if n < limit {
                    monotonic_clock::wait_for(TICK_NS).await;
                }
            }
        });
        Ok(response)
    }
}

wasip3::http::service::export!(StreamForever);
