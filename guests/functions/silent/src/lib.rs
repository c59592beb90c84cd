//! `silent`: returns normally without ever setting a response. The gateway must notice and answer 500.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Silent;

impl Guest for Silent {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        eprintln!("returning without a response");
        drop(out);
    }
}

wasip2::http::proxy::export!(Silent);
