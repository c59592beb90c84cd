//! `markdown`: renders the Markdown in the request body as HTML, like the `markdown` function of the
//! OpenFaaS store. Useful as an example with a real library in it, and as the larger component of the
//! compile benchmark (several times `hello`'s code).

use pulldown_cmark::{Options, Parser, html};
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// The most Markdown one request may send; more is answered with 413.
const MAX_INPUT: usize = 1024 * 1024;

struct Markdown;

fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let headers =
        Fields::from_list(&[("content-type".to_string(), content_type.as_bytes().to_vec())])
            .expect("valid header");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("stream is taken once");
    // Writes go out in pieces no larger than the stream accepts at once.
    for chunk in body.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .expect("write the answer");
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finish the body");
}

/// Reads the whole request body, or `None` when it is larger than [`MAX_INPUT`].
fn read_body(request: &IncomingRequest) -> Option<Vec<u8>> {
    let body = request.consume().expect("body is taken once");
    let stream = body.stream().expect("stream is taken once");
    let mut input = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        input.extend_from_slice(&chunk);
        if input.len() > MAX_INPUT {
            return None;
        }
    }
    Some(input)
}

impl Guest for Markdown {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let Some(input) = read_body(&request) else {
            respond(
                out,
                413,
                "text/plain; charset=utf-8",
                b"the Markdown is larger than 1 MiB\n",
            );
            return;
        };
        let Ok(text) = String::from_utf8(input) else {
            respond(
                out,
                400,
                "text/plain; charset=utf-8",
                b"the body is not UTF-8 text\n",
            );
            return;
        };
        let mut html_out = String::with_capacity(text.len() * 3 / 2);
        html::push_html(&mut html_out, Parser::new_ext(&text, Options::all()));
        eprintln!(
            "markdown rendered {} bytes into {}",
            text.len(),
            html_out.len()
        );
        respond(out, 200, "text/html; charset=utf-8", html_out.as_bytes());
    }
}

wasip2::http::proxy::export!(Markdown);
