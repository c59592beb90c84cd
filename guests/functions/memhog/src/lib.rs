//! `memhog`: a hostile guest that allocates without end. `?mb=N` allocates (and touches) N MiB and
//! answers `held N MiB`; without a query it keeps allocating 1 MiB blocks until its memory cannot
//! grow, which aborts it. Used to test memory limits.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct MemHog;

const MIB: usize = 1024 * 1024;

fn megabytes(query: &str) -> Option<usize> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("mb="))
        .and_then(|v| v.parse().ok())
}

impl Guest for MemHog {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let want = megabytes(query).unwrap_or(usize::MAX / MIB);
        let mut held: Vec<Vec<u8>> = Vec::new();
        while held.len() < want {
            // Touch every page, so the memory is really used, not only reserved.
            held.push(vec![0xa5; MIB]);
        }
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("stream is taken once");
        stream
            .blocking_write_and_flush(format!("held {} MiB\n", held.len()).as_bytes())
            .expect("write");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish the body");
    }
}

wasip2::http::proxy::export!(MemHog);
