//! `spin7-app`: a component of the Spin app the gateway tests deploy, built with `spin-sdk` 7
//! (wasi:http 0.3, `spin:variables@3.0.0`, `spin:key-value@3.0.0`, `spin:sqlite@3.1.0`). What it
//! answers depends on the
//! part of the path its wildcard matched (`spin-path-info`):
//!
//! - `/var/NAME`: the component variable `NAME`, or the error it got;
//! - `/kv/KEY`: GET reads `KEY` of the `default` store, POST writes the body there;
//! - `/keys`: every key of the `default` store, one a line;
//! - `/kv-other`: tries the store `other`, which the manifest does not list;
//! - `/sql/NOTE`: adds `NOTE` to the table `notes` of the `default` database (`spin5-front`'s too),
//!   then answers the insert's rowid and changes, and every note;
//! - `/sql-other`: tries the database `other`, which the manifest does not list.

use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;
use spin_sdk::key_value::Store;
use spin_sdk::sqlite::{self, Connection, Value};

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let info = request
        .headers()
        .get("spin-path-info")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if let Some(name) = info.strip_prefix("/var/") {
        return match spin_sdk::variables::get(name).await {
            Ok(value) => format!("spin7 {name}={value}\n"),
            Err(error) => format!("spin7 {name}: {error:?}\n"),
        };
    }
    if info == "/kv-other" {
        return match Store::open("other").await {
            Ok(_) => "spin7 opened other\n".to_string(),
            Err(error) => format!("spin7 open other: {error:?}\n"),
        };
    }
    if let Some(note) = info.strip_prefix("/sql/") {
        return match notes(note).await {
            Ok(answer) => answer,
            Err(error) => format!("spin7 sql: {error:?}\n"),
        };
    }
    if info == "/sql-other" {
        return match Connection::open("other").await {
            Ok(_) => "spin7 opened other\n".to_string(),
            Err(error) => format!("spin7 open other: {error:?}\n"),
        };
    }
    let store = match Store::open_default().await {
        Ok(store) => store,
        Err(error) => return format!("spin7 open default: {error:?}\n"),
    };
    if info == "/keys" {
        return match store.get_keys().await.collect().await {
            Ok(mut keys) => {
                keys.sort();
                format!("spin7 keys: {}\n", keys.join(","))
            }
            Err(error) => format!("spin7 keys: {error:?}\n"),
        };
    }
    let Some(key) = info.strip_prefix("/kv/") else {
        return format!("spin7 nothing at {info}\n");
    };
    if request.method() == spin_sdk::http::Method::POST {
        let bytes = match request.into_body().bytes().await {
            Ok(bytes) => bytes,
            Err(error) => return format!("spin7 body: {error:?}\n"),
        };
        return match store.set(key, &bytes).await {
            Ok(()) => format!("spin7 {key}={}\n", String::from_utf8_lossy(&bytes)),
            Err(error) => format!("spin7 set {key}: {error:?}\n"),
        };
    }
    match store.get(key).await {
        Ok(Some(value)) => format!("spin7 {key}={}\n", String::from_utf8_lossy(&value)),
        Ok(None) => format!("spin7 {key} is not set\n"),
        Err(error) => format!("spin7 get {key}: {error:?}\n"),
    }
}

/// Adds `note` to `notes`: the insert's rowid and changes, then every note in order.
async fn notes(note: &str) -> Result<String, sqlite::Error> {
    let db = Connection::open_default().await?;
    db.execute("CREATE TABLE IF NOT EXISTS notes (n TEXT NOT NULL)", [])
        .await?
        .collect()
        .await?;
    db.execute("INSERT INTO notes (n) VALUES (?)", [Value::text(note)])
        .await?
        .collect()
        .await?;
    let (rowid, changes) = (db.last_insert_rowid().await, db.changes().await);
    let rows = db
        .execute("SELECT n FROM notes ORDER BY rowid", [])
        .await?
        .collect()
        .await?;
    let notes: Vec<&str> = rows.iter().filter_map(|row| row.get::<&str>(0)).collect();
    Ok(format!(
        "spin7 rowid={rowid} changes={changes} notes={}: {}\n",
        notes.len(),
        notes.join(",")
    ))
}
