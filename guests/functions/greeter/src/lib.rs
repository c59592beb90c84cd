//! `greeter`: reads its configuration through `wasi:config` and logs through `wasi:logging`.
//!
//! - `GET /` answers `<greeting>, <name>!` from the configuration keys `greeting` (default `Hello`)
//!   and `name` (default `world`; `?name=` wins), and logs an `info` line `greeter: greeted <name>`;
//!   without a `greeting` it also logs a `warn` line.
//! - `GET /config` lists every configuration key it sees, `key=value` per line, sorted.
//! - `GET /config/<key>` answers one value (404 when absent).

mod services {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "wasmgate:function/services",
        generate_all,
    });
}

use services::wasi::config::store as config;
use services::wasi::logging::logging::{Level, log};
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Greeter;

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

impl Guest for Greeter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_query = request.path_with_query().unwrap_or_default();
        let (path, query) = path_query.split_once('?').unwrap_or((&path_query, ""));
        if path == "/config" {
            let mut all = config::get_all().unwrap_or_default();
            all.sort();
            let text: String = all.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            return answer(out, 200, &text);
        }
        if let Some(key) = path.strip_prefix("/config/") {
            return match config::get(key) {
                Ok(Some(value)) => answer(out, 200, &format!("{value}\n")),
                Ok(None) => answer(out, 404, &format!("no configuration value {key}\n")),
                Err(e) => answer(out, 500, &format!("{e:?}\n")),
            };
        }
        let greeting = config::get("greeting").ok().flatten();
        if greeting.is_none() {
            log(
                Level::Warn,
                "greeter",
                "no greeting configured; using Hello",
            );
        }
        let name = query
            .split('&')
            .find_map(|p| p.strip_prefix("name="))
            .map(str::to_string)
            .or_else(|| config::get("name").ok().flatten())
            .unwrap_or_else(|| "world".to_string());
        log(Level::Info, "greeter", &format!("greeted {name}"));
        let greeting = greeting.unwrap_or_else(|| "Hello".to_string());
        answer(out, 200, &format!("{greeting}, {name}!\n"));
    }
}

wasip2::http::proxy::export!(Greeter);
