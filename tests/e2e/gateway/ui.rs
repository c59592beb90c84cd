//! The web portal at `/ui/`: a real headless Chromium drives it against a real gateway
//! (`tests/e2e/ui/portal.mjs`), plus its auth, its headers and the cold-start header it shows.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use crate::support::{self, Gateway, InProcess, Target, api, deploy, get, request};

/// How long the browser script may take; it needs about ten seconds.
const BROWSER_PATIENCE: Duration = Duration::from_secs(240);
const USER: &str = "admin";
const PASSWORD: &str = "portal-pa55";

/// The arguments of a gateway whose `/system/*` and `/ui/` need `USER` and `PASSWORD`, serving `args`
/// too, and the folder of those credentials.
fn auth_args(args: &[String]) -> (Vec<String>, PathBuf) {
    let secrets = support::temp_dir("ui-auth");
    std::fs::write(secrets.join("basic-auth-user"), USER).expect("write the user");
    std::fs::write(secrets.join("basic-auth-password"), PASSWORD).expect("write the password");
    let mut all = vec![
        "--basic-auth-dir".to_string(),
        secrets.display().to_string(),
    ];
    all.extend_from_slice(args);
    (all, secrets)
}

/// A gateway process whose `/system/*` and `/ui/` need `USER` and `PASSWORD`, serving `args` too.
fn gateway_with_auth(args: &[String]) -> (Gateway, PathBuf) {
    let (all, secrets) = auth_args(args);
    (Gateway::start(&all), secrets)
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn get_with(
    gateway: &impl Target,
    path: &str,
    authorization: Option<&str>,
) -> support::Answer {
    let mut req = request("GET", gateway, path, Bytes::new());
    if let Some(value) = authorization {
        req.headers_mut().insert(
            http::header::AUTHORIZATION,
            value.parse().expect("a header value"),
        );
    }
    gateway.send(req).await
}

/// What the browser test needs, or a failure that says how to get it. Never a silent skip.
struct BrowserTools {
    playwright: PathBuf,
    chromium: PathBuf,
}

fn browser_tools() -> BrowserTools {
    let how = "run .ci/test, which installs Chromium (apt) and playwright-core (npm) and sets \
               WASMGATE_PLAYWRIGHT_DIR";
    let playwright = std::env::var_os("WASMGATE_PLAYWRIGHT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("WASMGATE_PLAYWRIGHT_DIR is not set: {how}"));
    let package = playwright.join("node_modules/playwright-core/package.json");
    assert!(package.is_file(), "{} is missing: {how}", package.display());
    let chromium = std::env::var_os("WASMGATE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.is_file(),
        "no Chromium at {}: {how}",
        chromium.display()
    );
    BrowserTools {
        playwright,
        chromium,
    }
}

/// Runs `command` to completion within [`BROWSER_PATIENCE`], returning its status and output.
fn run_bounded(mut command: Command) -> (std::process::ExitStatus, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("could not start node ({e}): install Node.js, then run .ci/test")
        });
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + BROWSER_PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the browser test took longer than {BROWSER_PATIENCE:?}; its output:\n{}\n{}",
                stdout.join().unwrap_or_default(),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        status,
        stdout.join().expect("stdout reader"),
        stderr.join().expect("stderr reader"),
    )
}

/// Loads the list, drops a broken component (and sees the API's reason), deploys `hello` by upload,
/// invokes it and sees its answer, its log line, a cold start and the charts; all behind basic auth.
/// Screenshots go to `target/ui-screenshots/`.
#[test]
fn portal_in_a_real_browser() {
    let tools = browser_tools();
    // Traced, to a collector that is not there (a port just freed): the spans are dropped, and the
    // try panel shows each call's trace id all the same.
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let collector = format!("http://{}", nobody.local_addr().expect("address"));
    drop(nobody);
    let (gateway, secrets) = gateway_with_auth(&[
        "--function".to_string(),
        format!("echo={}", wasmgate_guests::ECHO),
        "--otlp-endpoint".to_string(),
        collector,
    ]);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("ui-screenshots");
    for name in ["list.png", "try.png", "page.png"] {
        let _ = std::fs::remove_file(shots.join(name));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/ui/portal.mjs");
    let mut node = Command::new("node");
    node.arg(&script)
        .arg(format!("http://{}", gateway.addr))
        .arg(wasmgate_guests::HELLO)
        .arg(&shots)
        .env("WASMGATE_PLAYWRIGHT_DIR", &tools.playwright)
        .env("WASMGATE_CHROMIUM", &tools.chromium)
        .env("WASMGATE_UI_CREDENTIALS", format!("{USER}:{PASSWORD}"));
    let (status, stdout, stderr) = run_bounded(node);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("portal test passed"), "{stdout}");
    for name in ["list.png", "try.png", "page.png"] {
        let png = std::fs::read(shots.join(name))
            .unwrap_or_else(|e| panic!("screenshot {name} was not saved: {e}"));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 4096,
            "{name} is not a real screenshot ({} bytes)",
            png.len()
        );
    }
    println!("screenshots: {}", shots.display());
    let _ = std::fs::remove_dir_all(secrets);
}

#[tokio::test]
async fn portal_is_behind_the_same_auth_as_the_api() {
    let (args, secrets) = auth_args(&[]);
    let gateway = InProcess::start(&args).await;
    let good = basic(USER, PASSWORD);
    let wrong = basic(USER, "nope");
    for path in ["/ui", "/ui/", "/ui/app.js", "/ui/style.css", "/ui/missing"] {
        for authorization in [None, Some(wrong.as_str())] {
            let answer = get_with(&gateway, path, authorization).await;
            assert_eq!(answer.status, 401, "{path} with {authorization:?}");
            assert_eq!(
                answer.header("www-authenticate"),
                "Basic realm=\"Restricted\""
            );
        }
    }
    let page = get_with(&gateway, "/ui/", Some(&good)).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert!(
        page.text().contains("<script src=\"app.js\""),
        "{}",
        page.text()
    );
    for (path, kind) in [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
    ] {
        let asset = get_with(&gateway, path, Some(&good)).await;
        assert_eq!(asset.status, 200, "{path}");
        assert_eq!(asset.header("content-type"), kind);
    }
    let missing = get_with(&gateway, "/ui/missing", Some(&good)).await;
    assert_eq!(missing.status, 404);
    // Invocation, health and metrics stay open, as before.
    assert_eq!(get(&gateway, "/healthz").await.status, 200);
    assert_eq!(get(&gateway, "/metrics").await.status, 200);
    drop(gateway);
    let _ = std::fs::remove_dir_all(secrets);

    let open = InProcess::start(&[]).await;
    let page = get(&open, "/ui/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    let policy = page.header("content-security-policy");
    assert!(
        policy.contains("default-src 'none'") && policy.contains("script-src 'self'"),
        "{policy}"
    );
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(page.header("cache-control"), "private, no-cache");
    let redirect = get(&open, "/ui").await;
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("location"), "/ui/");
    assert_eq!(get(&open, "/ui/nope.js").await.status, 404);
    assert_eq!(get(&open, "/uix").await.status, 404);
}

/// `X-Wasmgate-Cold-Start` says whether the function had to load for this request, and the metrics
/// keep when that last happened (the list's "last cold start").
#[tokio::test]
async fn invocations_say_whether_they_were_a_cold_start() {
    let gateway = InProcess::start(&[]).await;
    deploy(&gateway, "hello", wasmgate_guests::HELLO, json!({})).await;
    let warm = get(&gateway, "/function/hello/x").await;
    assert_eq!(warm.status, 200);
    assert_eq!(warm.header("x-wasmgate-cold-start"), "false");
    let metrics = get(&gateway, "/metrics").await.text();
    let gauge = "wasmgate_last_cold_start_timestamp_seconds{function_name=\"hello.openfaas-fn\"}";
    assert!(!metrics.contains(gauge), "no cold start yet:\n{metrics}");

    let scaled = api(
        &gateway,
        "POST",
        "/system/scale-function/hello",
        Some(json!({"serviceName": "hello", "replicas": 0})),
    )
    .await;
    assert_eq!(scaled.status, 202, "{}", scaled.text());
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let cold = get(&gateway, "/function/hello/x").await;
    assert_eq!(cold.status, 200);
    assert_eq!(cold.text(), "Hello from wasmgate! You asked for /x\n");
    assert_eq!(cold.header("x-wasmgate-cold-start"), "true");
    let again = get(&gateway, "/function/hello/x").await;
    assert_eq!(again.header("x-wasmgate-cold-start"), "false");

    let metrics = get(&gateway, "/metrics").await.text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with(gauge))
        .unwrap_or_else(|| panic!("no {gauge} in:\n{metrics}"));
    let when: f64 = line[gauge.len()..].trim().parse().expect("a number");
    assert!(
        when >= before.floor() - 1.0 && when <= before + 60.0,
        "last cold start {when}, the call was at {before}"
    );
    // The gateway's own answers say nothing about cold starts.
    let missing = get(&gateway, "/function/nobody").await;
    assert_eq!(missing.status, 404);
    assert!(missing.headers.get("x-wasmgate-cold-start").is_none());
}
