//! `p3-memhog`: the wasi:http 0.3 twin of `memhog`, a hostile guest that allocates without end.
//! `?mb=N` allocates (and touches) N MiB and answers 200 `held N MiB`; without a query it keeps
//! allocating 1 MiB blocks until its memory cannot grow, which aborts it (a trap, no answer).
//! Used to test memory limits.

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_future, wit_stream};

struct MemHog;

const MIB: usize = 1024 * 1024;

fn megabytes(query: &str) -> Option<usize> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("mb="))
        .and_then(|v| v.parse().ok())
}

impl wasip3::exports::http::handler::Guest for MemHog {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let want = megabytes(query).unwrap_or(usize::MAX / MIB);
        let mut held: Vec<Vec<u8>> = Vec::new();
        while held.len() < want {
            // Touch every page, so the memory is really used, not only reserved.
            held.push(vec![0xa5; MIB]);
        }
        let text = format!("held {} MiB\n", held.len());
        let (mut body, body_rx) = wit_stream::new();
        let (_, no_trailers) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(Fields::new(), Some(body_rx), no_trailers);
        wasip3::spawn_local(async move {
            body.write_all(text.into_bytes()).await;
            // Held until the answer is written.
            drop(held);
        });
        Ok(response)
    }
}

wasip3::http::service::export!(MemHog);
