//! `pipeline`: calls other functions by name and answers with what each said.
//!
//! `POST /?steps=a,b` (or the environment variable `STEPS`, default `hello,echo`) sends the request
//! body to `http://a/` and then `http://b/` (functions of its own namespace; `name.namespace` reaches
//! another one its allowed hosts list), and answers one section per step:
//! `== a (200)\n<a's answer>\n== b (200)\n<b's answer>\n`. If a step fails, it answers 502 with
//! `step <name> failed: <status or error>` and the step's answer, so a failure deep in a chain of
//! calls reaches the first caller.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

struct Pipeline;

fn answer(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
        .expect("valid headers");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("a valid status");
    let body = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("stream is taken once");
    for chunk in text.as_bytes().chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("write");
    }
    drop(stream);
    OutgoingBody::finish(body, None).expect("finish the body");
}

fn read_all(stream: &wasip2::io::streams::InputStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend_from_slice(&chunk);
    }
    bytes
}

/// POSTs `body` to `http://<step>/` and returns the status and the answer.
fn call(step: &str, body: &[u8]) -> Result<(u16, String), String> {
    let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
        .map_err(|e| format!("{e:?}"))?;
    let request = OutgoingRequest::new(headers);
    request.set_method(&Method::Post).map_err(|()| "method")?;
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| "scheme")?;
    request
        .set_authority(Some(step))
        .map_err(|()| "authority")?;
    request
        .set_path_with_query(Some("/"))
        .map_err(|()| "path")?;
    let outgoing = request.body().map_err(|()| "body")?;
    let future = outgoing_handler::handle(request, None).map_err(|code| format!("{code:?}"))?;
    // A callee may answer without reading the body (HTTP allows it): the stream then closes under
    // us. Stop writing and take its answer; an error only counts when no answer comes.
    let mut write_error = None;
    {
        let stream = outgoing.write().map_err(|()| "stream")?;
        for chunk in body.chunks(4096) {
            if let Err(e) = stream.blocking_write_and_flush(chunk) {
                write_error = Some(format!("{e:?}"));
                break;
            }
        }
    }
    if write_error.is_none() {
        OutgoingBody::finish(outgoing, None).map_err(|e| format!("{e:?}"))?;
    } else {
        drop(outgoing);
    }
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(write_error.unwrap_or(format!("{code:?}"))),
        Some(Err(())) | None => return Err(write_error.unwrap_or("no response".to_string())),
    };
    let status = response.status();
    let body = response.consume().map_err(|()| "consume")?;
    let text = {
        let stream = body.stream().map_err(|()| "stream")?;
        String::from_utf8_lossy(&read_all(&stream)).into_owned()
    };
    Ok((status, text))
}

impl Guest for Pipeline {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let steps = query
            .split('&')
            .find_map(|p| p.strip_prefix("steps="))
            .map(str::to_string)
            .or_else(|| {
                wasip2::cli::environment::get_environment()
                    .into_iter()
                    .find(|(k, _)| k == "STEPS")
                    .map(|(_, v)| v)
            })
            .unwrap_or_else(|| "hello,echo".to_string());
        let body = match request.consume() {
            Ok(incoming) => {
                let bytes = match incoming.stream() {
                    Ok(stream) => read_all(&stream),
                    Err(()) => Vec::new(),
                };
                drop(incoming);
                bytes
            }
            Err(()) => Vec::new(),
        };
        let mut text = String::new();
        for step in steps.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match call(step, &body) {
                Ok((status, answer)) if (200..300).contains(&status) => {
                    text.push_str(&format!("== {step} ({status})\n{answer}"));
                    if !answer.ends_with('\n') {
                        text.push('\n');
                    }
                }
                Ok((status, answer)) => {
                    return answer_failure(out, step, &status.to_string(), &answer);
                }
                Err(reason) => return answer_failure(out, step, &reason, ""),
            }
        }
        answer(out, 200, &text);
    }
}

fn answer_failure(out: ResponseOutparam, step: &str, what: &str, said: &str) {
    answer(out, 502, &format!("step {step} failed: {what}\n{said}"));
}

wasip2::http::proxy::export!(Pipeline);
