//! `trap`: fails on purpose, in one of several ways chosen by the path. The gateway must answer 500
//! (or cut the body, once it has started) and keep serving everyone else.
//!
//! - `/` (anything else): panics before answering;
//! - `/recurse`: recurses without end until the guest's stack overflows;
//! - `/after-start`: answers 200, streams 256 KiB of `p`, then panics mid-body.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};

struct Trap;

/// Each frame holds a buffer the optimiser cannot remove, so the stack really grows.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1).wrapping_add(frame[(depth % 64) as usize])
}

impl Guest for Trap {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        match path.as_str() {
            "/recurse" => {
                let depth = recurse(std::hint::black_box(0));
                panic!("unreachable: recursion ended at {depth}");
            }
            "/after-start" => {
                let response = OutgoingResponse::new(Fields::new());
                let body = response.body().expect("body is taken once");
                ResponseOutparam::set(out, Ok(response));
                let stream = body.write().expect("stream is taken once");
                // Enough that the head and the first bytes are on their way before the panic.
                for _ in 0..64 {
                    stream
                        .blocking_write_and_flush(&[b'p'; 4096])
                        .expect("write");
                }
                panic!("this function panics after its response has started");
            }
            _ => panic!("this function always panics"),
        }
    }
}

wasip2::http::proxy::export!(Trap);
