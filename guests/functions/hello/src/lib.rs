//! `hello`: the smallest useful function. Answers `Hello from wasmgate!` and the path it was asked for,
//! and writes one log line to stdout so the gateway's log capture has something to show.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".to_string());
        println!("hello called for {path}");

        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("valid header");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(out, Ok(response));

        let stream = body.write().expect("stream is taken once");
        stream
            .blocking_write_and_flush(
                format!("Hello from wasmgate! You asked for {path}\n").as_bytes(),
            )
            .expect("write the greeting");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish the body");
    }
}

wasip2::http::proxy::export!(Hello);
