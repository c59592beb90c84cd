//! `p3-spin`: the wasi:http 0.3 twin of `spin`, a hostile guest that burns CPU inside an async export.
//! Without a query it loops forever, never calling the host and never yielding; with `?ms=N` it spins
//! for N milliseconds of wall-clock time, reading `wasi:clocks/monotonic-clock@0.3` `now` on every
//! turn, and then answers 200 `spun N ms`. Used to test time limits, fairness and `max_inflight`.

use wasip3::clocks::monotonic_clock;
use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_future, wit_stream};

struct Spin;

fn milliseconds(query: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .and_then(|v| v.parse().ok())
}

impl wasip3::exports::http::handler::Guest for Spin {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let mut counter = 0u64;
        let ms = match milliseconds(query) {
            None => loop {
                // No host call, no allocation, no await: only the epoch interrupt can stop this.
                counter = std::hint::black_box(counter.wrapping_add(1));
            },
            Some(ms) => {
                let until = monotonic_clock::now().saturating_add(ms.saturating_mul(1_000_000));
                while monotonic_clock::now() < until {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
                ms
            }
        };
        let (mut body, body_rx) = wit_stream::new();
        let (_, no_trailers) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(Fields::new(), Some(body_rx), no_trailers);
        wasip3::spawn_local(async move {
            body.write_all(format!("spun {ms} ms\n").into_bytes()).await;
        });
        Ok(response)
    }
}

wasip3::http::service::export!(Spin);
