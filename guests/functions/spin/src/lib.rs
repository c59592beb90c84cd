//! `spin`: a hostile guest that burns CPU. Without a query it loops forever, never calling the host;
//! with `?ms=N` it spins for N milliseconds of wall-clock time and then answers `spun N ms`.
//! Used to test time limits, fairness and `max_inflight`.

use std::time::{Duration, Instant};

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Spin;

fn milliseconds(query: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .and_then(|v| v.parse().ok())
}

impl Guest for Spin {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let mut counter = 0u64;
        match milliseconds(query) {
            None => loop {
                // No host call, no allocation: only the epoch interrupt can stop this.
                counter = std::hint::black_box(counter.wrapping_add(1));
            },
            Some(ms) => {
                let until = Instant::now() + Duration::from_millis(ms);
                while Instant::now() < until {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
        }
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("stream is taken once");
        let ms = milliseconds(query).unwrap_or(0);
        stream
            .blocking_write_and_flush(format!("spun {ms} ms\n").as_bytes())
            .expect("write");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish the body");
    }
}

wasip2::http::proxy::export!(Spin);
