//! A full disk: the state directory on a small tmpfs of its own (mounted in a private mount
//! namespace by `unshare`, so the test needs no privilege beyond user namespaces). What does not fit
//! is refused with a reason and leaves nothing half-written; what runs keeps running; once space is
//! freed, everything works again without a restart.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::support::{Gateway, Target, api, deploy, get, request, temp_dir};

/// The tmpfs's size: room for the state and a few components.
const TMPFS: &str = "size=8m";

/// `wasmgate serve` with its state directory on a fresh tmpfs, mounted over `state` inside the
/// gateway's own mount namespace. The test reaches that mount through `/proc/<pid>/root`.
fn gateway_on_tmpfs(state: &Path) -> Gateway {
    let script =
        "mount -t tmpfs -o \"$WASMGATE_TEST_TMPFS\" tmpfs \"$WASMGATE_TEST_STATE\" && exec \"$@\"";
    let launcher: Vec<String> = [
        "env",
        &format!("WASMGATE_TEST_TMPFS={TMPFS}"),
        &format!("WASMGATE_TEST_STATE={}", state.display()),
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        script,
        "wasmgate",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Gateway::start_through(
        &launcher,
        &["--state-dir".to_string(), state.display().to_string()],
    )
}

/// Fills the file system of `dir` with `dir/filler` until it refuses more.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create the filler");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match file.write_all(&chunk).and_then(|()| file.sync_all()) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(28) => return path,
            Err(error) => panic!("filling {}: {error}", dir.display()),
        }
    }
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map_while(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_what_does_not_fit_and_recovers() {
    let state = temp_dir("tmpfs-state");
    let gateway = gateway_on_tmpfs(&state);
    // The state directory as the gateway sees it: its tmpfs, not the folder under it.
    let seen = PathBuf::from(format!("/proc/{}/root", gateway.pid()))
        .join(state.strip_prefix("/").expect("temp dirs are absolute"));
    let mounts = std::fs::read_to_string(format!("/proc/{}/mounts", gateway.pid()))
        .expect("the gateway's mounts");
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("tmpfs ") && l.contains(&state.display().to_string())),
        "the state directory is not on a tmpfs of its own:\n{mounts}"
    );
    deploy(&gateway, "hello", wasmgate_guests::HELLO, json!({})).await;
    assert_eq!(get(&gateway, "/function/hello").await.status, 200);
    let artifacts_before = names(&seen.join("artifacts"));

    let filler = fill(&seen);

    // An upload that does not fit: 507 with the reason, and no file left behind.
    let echo = std::fs::read(wasmgate_guests::ECHO).expect("the echo component");
    let refused = gateway
        .send(request("POST", &gateway, "/system/artifacts", echo.clone()))
        .await;
    assert_eq!(refused.status, 507, "{}", refused.text());
    assert!(
        refused
            .text()
            .contains("no space left in the state directory"),
        "{}",
        refused.text()
    );
    assert_eq!(names(&seen.join("artifacts")), artifacts_before);
    assert_eq!(names(&seen.join("tmp")), Vec::<String>::new());

    // A deploy that does not fit: refused the same way, and the function does not exist.
    let body = json!({"service": "echo", "image": wasmgate_guests::ECHO});
    let refused = api(&gateway, "POST", "/system/functions", Some(body.clone())).await;
    assert_eq!(refused.status, 507, "{}", refused.text());
    assert_eq!(
        api(&gateway, "GET", "/system/function/echo", None)
            .await
            .status,
        404
    );
    assert_eq!(names(&seen.join("tmp")), Vec::<String>::new());

    // An async call that cannot be made durable: 503 with Retry-After.
    let big = vec![b'x'; 512 * 1024];
    let refused = gateway
        .send(request(
            "POST",
            &gateway,
            "/async-function/hello",
            big.clone(),
        ))
        .await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(!refused.header("retry-after").is_empty());

    // What runs keeps running.
    assert_eq!(get(&gateway, "/function/hello").await.status, 200);

    // Space again: the same requests succeed, without a restart.
    std::fs::remove_file(&filler).expect("remove the filler");
    let stored = gateway
        .send(request("POST", &gateway, "/system/artifacts", echo))
        .await;
    assert_eq!(stored.status, 201, "{}", stored.text());
    let deployed = api(&gateway, "POST", "/system/functions", Some(body)).await;
    assert_eq!(deployed.status, 202, "{}", deployed.text());
    assert_eq!(get(&gateway, "/function/echo").await.status, 200);
    let queued = gateway
        .send(request("POST", &gateway, "/async-function/hello", big))
        .await;
    assert_eq!(queued.status, 202, "{}", queued.text());
    let id = queued.header("x-call-id").to_string();
    crate::support::eventually("the queued call to succeed", || async {
        let status = get(&gateway, &format!("/system/async/{id}")).await;
        serde_json::from_slice::<serde_json::Value>(&status.body)
            .is_ok_and(|status| status["status"] == "succeeded")
    })
    .await;
}
