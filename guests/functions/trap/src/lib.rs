//! `trap`: panics on every request, before answering. The gateway must answer 500 and keep serving.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Trap;

impl Guest for Trap {
    fn handle(_request: IncomingRequest, _out: ResponseOutparam) {
        panic!("this function always panics");
    }
}

wasip2::http::proxy::export!(Trap);
