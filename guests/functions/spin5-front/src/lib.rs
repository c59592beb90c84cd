//! `spin5-front`: the public component of the Spin app the gateway tests deploy, built with
//! `spin-sdk` 5.2.0 (wasi:http 0.2, `fermyon:spin/*@2.0.0`). What it answers depends on the part of
//! the path its wildcard route matched (`spin-path-info`):
//!
//! - `/kv/KEY`: GET reads `KEY` of the `default` store, POST (or PUT) writes the body there; each
//!   answers `KEY=VALUE` (or `KEY is not set`).
//! - `/kv-other`: tries to open the store `other`, which the manifest does not list.
//! - `/var/NAME`: the component variable `NAME`, or the error Spin's interface gave.
//! - `/sql/TEXT`: adds `TEXT` to the table `notes` of the `default` database (made if missing) and
//!   answers how many notes there are and the notes themselves.
//! - `/sql-other`: tries to open the database `other`, which the manifest does not list.
//! - `/chain`: calls the private component through `http://back.spin.internal/inner` and answers
//!   with what it said.
//! - `/self`: a self-request to the app's route `/api/exact` (through `http://self.alt`).
//! - anything else: the `spin-*` headers it was given (`spin-path-match-*` included), one
//!   `name: value` a line.

use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::{key_value, sqlite, variables};

const SPIN_HEADERS: [&str; 7] = [
    "spin-full-url",
    "spin-path-info",
    "spin-matched-route",
    "spin-base-path",
    "spin-raw-component-route",
    "spin-component-route",
    "spin-client-addr",
];

fn text(status: u16, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(body)
        .build()
}

#[http_component]
async fn handle(request: Request) -> impl IntoResponse {
    let path = request
        .header("spin-path-info")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    if let Some(key) = path.strip_prefix("/kv/") {
        return kv(&request, key);
    }
    if path == "/kv-other" {
        return match key_value::Store::open("other") {
            Ok(_) => text(200, "opened other\n".into()),
            Err(error) => text(403, format!("open other: {error:?}\n")),
        };
    }
    if let Some(text) = path.strip_prefix("/sql/") {
        return notes(text);
    }
    if path == "/sql-other" {
        return match sqlite::Connection::open("other") {
            Ok(_) => text(200, "opened other\n".into()),
            Err(error) => text(403, format!("open other: {error:?}\n")),
        };
    }
    if let Some(name) = path.strip_prefix("/var/") {
        return match variables::get(name) {
            Ok(value) => text(200, format!("{name}={value}\n")),
            Err(error) => text(404, format!("{name}: {error:?}\n")),
        };
    }
    if path == "/chain" {
        return forward("http://back.spin.internal/inner?from=front").await;
    }
    if path == "/self" {
        return forward("http://self.alt/api/exact").await;
    }
    let mut lines = format!("front {} {}\n", request.method(), request.path());
    for name in SPIN_HEADERS {
        let value = request
            .header(name)
            .and_then(|v| v.as_str())
            .unwrap_or("(none)");
        lines.push_str(&format!("{name}: {value}\n"));
    }
    // A named segment's value (`/named/:id/...`).
    for (name, value) in request.headers() {
        if name.starts_with("spin-path-match-") {
            let value = value.as_str().unwrap_or("(not text)");
            lines.push_str(&format!("{name}: {value}\n"));
        }
    }
    text(200, lines)
}

fn notes(note: &str) -> Response {
    let run = || -> Result<String, sqlite::Error> {
        let db = sqlite::Connection::open_default()?;
        db.execute("CREATE TABLE IF NOT EXISTS notes (n TEXT NOT NULL)", &[])?;
        db.execute(
            "INSERT INTO notes (n) VALUES (?)",
            &[sqlite::Value::Text(note.to_string())],
        )?;
        let result = db.execute("SELECT n FROM notes ORDER BY rowid", &[])?;
        let notes: Vec<String> = result
            .rows()
            .filter_map(|row| row.get::<&str>("n").map(str::to_string))
            .collect();
        Ok(format!("notes={}: {}\n", notes.len(), notes.join(",")))
    };
    match run() {
        Ok(answer) => text(200, answer),
        Err(error) => text(500, format!("sql: {error:?}\n")),
    }
}

fn kv(request: &Request, key: &str) -> Response {
    let store = match key_value::Store::open_default() {
        Ok(store) => store,
        Err(error) => return text(500, format!("open default: {error:?}\n")),
    };
    match request.method() {
        Method::Post | Method::Put => match store.set(key, request.body()) {
            Ok(()) => text(
                200,
                format!("{key}={}\n", String::from_utf8_lossy(request.body())),
            ),
            Err(error) => text(500, format!("set {key}: {error:?}\n")),
        },
        _ => match store.get(key) {
            Ok(Some(value)) => text(200, format!("{key}={}\n", String::from_utf8_lossy(&value))),
            Ok(None) => text(404, format!("{key} is not set\n")),
            Err(error) => text(500, format!("get {key}: {error:?}\n")),
        },
    }
}

async fn forward(url: &str) -> Response {
    let outbound = Request::get(url).build();
    match spin_sdk::http::send::<_, Response>(outbound).await {
        Ok(response) => {
            let body = String::from_utf8_lossy(response.body()).into_owned();
            text(*response.status(), format!("via {url}: {body}"))
        }
        Err(error) => text(502, format!("{url}: {error}\n")),
    }
}
