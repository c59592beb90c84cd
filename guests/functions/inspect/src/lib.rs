//! `inspect`: shows what a function can see of its host, to test isolation.
//!
//! - `GET /env` lists the environment, one `NAME=value` per line;
//! - `GET /file?<path>` answers the file's contents (404 with the error if it cannot be read);
//! - `PUT /file?<path>` tries to write the body to the file (403 with the error if refused);
//! - `GET /dir?<path>` lists a directory's entries, one per line.

use std::io::Read;

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Inspect;

fn answer(out: ResponseOutparam, status: u16, body: &[u8]) {
    let response = OutgoingResponse::new(Fields::new());
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("stream is taken once");
    for chunk in body.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .expect("write the answer");
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finish the body");
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let incoming = request.consume().expect("body is consumed once");
    let mut input = incoming.stream().expect("stream is taken once");
    let mut body = Vec::new();
    Read::read_to_end(&mut input, &mut body).expect("read the request body");
    body
}

impl Guest for Inspect {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((&path_with_query, ""));
        let (path, query) = (path.to_string(), query.to_string());
        match (request.method(), path.as_str()) {
            (Method::Get, "/env") => {
                let env: String = std::env::vars()
                    .map(|(k, v)| format!("{k}={v}\n"))
                    .collect();
                answer(out, 200, env.as_bytes());
            }
            (Method::Get, "/file") => match std::fs::read(&query) {
                Ok(contents) => answer(out, 200, &contents),
                Err(error) => answer(out, 404, error.to_string().as_bytes()),
            },
            (Method::Put, "/file") => {
                let body = read_body(&request);
                match std::fs::write(&query, body) {
                    Ok(()) => answer(out, 200, b"written"),
                    Err(error) => answer(out, 403, error.to_string().as_bytes()),
                }
            }
            (Method::Get, "/dir") => match std::fs::read_dir(&query) {
                Ok(entries) => {
                    let mut names: Vec<String> = entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    answer(out, 200, names.join("\n").as_bytes());
                }
                Err(error) => answer(out, 404, error.to_string().as_bytes()),
            },
            _ => answer(
                out,
                400,
                b"try GET /env, GET /file?PATH, PUT /file?PATH or GET /dir?PATH",
            ),
        }
    }
}

wasip2::http::proxy::export!(Inspect);
