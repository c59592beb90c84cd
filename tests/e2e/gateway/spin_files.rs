//! Spin components' static `files`: globs, a folder placed at a destination and `exclude_files`,
//! resolved by `wasmgate deploy -f` and `serve -f`, mounted read-only at `/` (the `inspect` guest
//! reads, lists and tries to write them), kept across a restart (unpacked again when their folder
//! is gone), served by every node of a cluster when one node serves it from its paths
//! (`serve -f`), and a bad archive refused at upload naming its entry.

use crate::spin::send;
use crate::support::{
    Gateway, InProcess, Target, eventually, get, request, run_to_exit, temp_dir, upload,
};

const MANIFEST: &str = r#"spin_manifest_version = 2

[application]
name = "filesapp"

[[trigger.http]]
route = "/..."
component = "web"

[[trigger.http]]
route = "/other/..."
component = "other"

[component.other]
source = "{hello}"

[component.web]
source = "{inspect}"
files = ["static/**/*", { source = "assets", destination = "/x" }]
exclude_files = ["static/*.bak"]
"#;

/// A project folder: the manifest, the files it lists, and some it does not.
fn project() -> std::path::PathBuf {
    let dir = temp_dir("spin-files");
    for (path, text) in [
        ("static/a.txt", "alpha"),
        ("static/deep/b.txt", "beta"),
        ("static/old.bak", "excluded"),
        ("assets/logo.svg", "<svg/>"),
        ("private.txt", "not listed"),
    ] {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write a file");
    }
    std::fs::write(dir.join("spin.toml"), manifest()).expect("write spin.toml");
    dir
}

fn manifest() -> String {
    MANIFEST
        .replace("{inspect}", wasmgate_guests::INSPECT)
        .replace("{hello}", wasmgate_guests::HELLO)
}

async fn file(gateway: &impl Target, path: &str) -> (u16, String) {
    let answer = get(gateway, &format!("/function/filesapp/file?{path}")).await;
    (answer.status.as_u16(), answer.text())
}

/// What the guest sees: the listed files at their places, nothing else, and none writable.
async fn check_files(gateway: &impl Target) {
    assert_eq!(file(gateway, "/static/a.txt").await, (200, "alpha".into()));
    assert_eq!(
        file(gateway, "/static/deep/b.txt").await,
        (200, "beta".into())
    );
    assert_eq!(file(gateway, "/x/logo.svg").await, (200, "<svg/>".into()));
    for absent in ["/static/old.bak", "/private.txt", "/assets/logo.svg"] {
        assert_eq!(file(gateway, absent).await.0, 404, "{absent}");
    }
    let root = get(gateway, "/function/filesapp/dir?/").await;
    assert_eq!(root.text(), "static\nx");
    let written = send(
        gateway,
        "PUT",
        "/function/filesapp/file?/static/a.txt",
        "changed",
    )
    .await;
    assert_eq!(written.status, 403, "{}", written.text());
    let created = send(
        gateway,
        "PUT",
        "/function/filesapp/file?/static/new.txt",
        "new",
    )
    .await;
    assert_eq!(created.status, 403, "{}", created.text());
    assert_eq!(file(gateway, "/static/a.txt").await, (200, "alpha".into()));
}

/// `deploy -f` uploads the files as an archive; they are there after a restart, also when their
/// unpacked folder was removed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spin_components_files_are_mounted_read_only_and_kept() {
    let state = temp_dir("spin-files-state");
    let start = || Gateway::start(&["--state-dir".to_string(), state.display().to_string()]);
    let gateway = start();
    let dir = project();
    let (status, stderr) = run_to_exit(&[
        "deploy",
        "-f",
        &dir.join("spin.toml").display().to_string(),
        "--gateway",
        &format!("http://{}", gateway.addr),
    ]);
    assert!(status.success(), "{stderr}");
    check_files(&gateway).await;
    let described = crate::support::api(&gateway, "GET", "/system/function/filesapp", None).await;
    let status: serde_json::Value = serde_json::from_slice(&described.body).expect("JSON");
    assert!(
        status["annotations"]["com.wasmgate.spin.files"]
            .as_str()
            .is_some_and(|f| f.starts_with("web=sha256:")),
        "{status}"
    );

    // `describe` lists the components, their routes and whether they have files.
    let described = std::process::Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["describe", "filesapp", "--gateway"])
        .arg(format!("http://{}", gateway.addr))
        .env("WASMGATE_LOG", "warn")
        .output()
        .expect("run wasmgate describe");
    let stdout = String::from_utf8_lossy(&described.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("Components") && l.ends_with("web /... (files)")),
        "{stdout}"
    );

    gateway.signal("TERM");
    assert!(gateway.wait().success());
    std::fs::remove_dir_all(state.join("spin-files")).expect("the unpacked files");
    let gateway = start();
    check_files(&gateway).await;
}

/// `serve -f` packs the files itself; a bad archive, a manifest whose files are not given and an
/// archive past `--max-artifact-bytes` are refused, naming what is wrong.
#[tokio::test]
async fn serve_mounts_a_spin_components_files_and_bad_archives_are_refused() {
    let dir = project();
    let served = InProcess::start(&[
        "-f".to_string(),
        dir.join("spin.toml").display().to_string(),
    ])
    .await;
    check_files(&served).await;

    let mut upload = request("POST", &served, "/system/artifacts", b"junk".repeat(200));
    upload.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-tar"),
    );
    let refused = served.send(upload).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.text().contains("the files archive: entry 0"),
        "{}",
        refused.text()
    );

    let body = serde_json::json!({
        "service": "filesapp",
        "image": "spin.toml",
        "annotations": {
            "com.wasmgate.spin.manifest": manifest(),
            "com.wasmgate.spin.sources": format!(
                "web={},other={}",
                wasmgate_guests::INSPECT,
                wasmgate_guests::HELLO
            ),
        },
    });
    let missing = crate::support::api(&served, "PUT", "/system/functions", Some(body)).await;
    assert_eq!(missing.status, 400, "{}", missing.text());
    assert!(
        missing
            .text()
            .contains("component.web.files: annotation com.wasmgate.spin.files names no archive"),
        "{}",
        missing.text()
    );
    // The app served before is untouched.
    assert_eq!(file(&served, "/x/logo.svg").await, (200, "<svg/>".into()));

    // An archive `serve -f` packs is bounded as an upload is.
    let state = temp_dir("spin-files-bound");
    let (status, stderr) = run_to_exit(&[
        "serve",
        "-f",
        &dir.join("spin.toml").display().to_string(),
        "--max-artifact-bytes",
        "2048",
        "--state-dir",
        &state.display().to_string(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!status.success());
    assert!(
        stderr.contains("storing the files of filesapp")
            && stderr.contains("more than the 2048 byte limit (--max-artifact-bytes)"),
        "{stderr}"
    );
}

/// In cluster mode, an app one node serves from its manifest (`serve -f`: its components are paths
/// there) is served by another node too, its files and its second component included: what was
/// read from a path goes to the object store with the deploy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spin_app_served_from_paths_on_one_node_is_served_by_the_others() {
    let nats = crate::cluster::Nats::start();
    let dir = project();
    let manifest = [
        "-f".to_string(),
        dir.join("spin.toml").display().to_string(),
    ];
    let a = crate::cluster::node_with(&nats, "a", &temp_dir("spin-node-a"), &manifest);
    let b = crate::cluster::node_with(&nats, "b", &temp_dir("spin-node-b"), &[]);
    crate::cluster::until_all(&[&a, &b], "/function/filesapp/file?/static/a.txt", 200).await;
    check_files(&b).await;
    let other = get(&b, "/function/filesapp/other/x").await;
    assert_eq!(other.status, 200, "{}", other.text());
}

/// The cluster's collector keeps every artifact a Spin app names (each component and each files
/// archive, not only the first component), so a node that joins after a collection serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_keeps_every_artifact_of_a_spin_app() {
    let nats = crate::cluster::Nats::start();
    let dir = project();
    let args = [
        "-f".to_string(),
        dir.join("spin.toml").display().to_string(),
        "--artifact-grace".to_string(),
        "1s".to_string(),
    ];
    let a = crate::cluster::node_with(&nats, "a", &temp_dir("spin-keep-a"), &args);
    crate::cluster::until_all(&[&a], "/function/filesapp/file?/static/a.txt", 200).await;
    // An artifact nothing names: once it is gone, a collection has run past the app's artifacts.
    let hello = std::fs::read(wasmgate_guests::HELLO).expect("read hello");
    let decoy = upload(&a, crate::cluster::variant(&hello, 7)).await;
    let store = crate::cluster::artifacts_store(&nats).await;
    let objects = || crate::cluster::live_objects(&store);
    let decoy_name = decoy.replace(':', "-");
    eventually("the collection of an unreferenced artifact", || async {
        !objects().await.contains(&decoy_name)
    })
    .await;
    let status = crate::support::api(&a, "GET", "/system/function/filesapp", None).await;
    let status: serde_json::Value = serde_json::from_slice(&status.body).expect("JSON");
    let named: Vec<String> = ["com.wasmgate.spin.sources", "com.wasmgate.spin.files"]
        .iter()
        .flat_map(|a| {
            let text = status["annotations"][*a].as_str().unwrap_or_default();
            text.split(',')
                .filter_map(|pair| pair.split_once('=').map(|(_, d)| d.replace(':', "-")))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(named.len(), 3, "{status}");
    let left = objects().await;
    for name in &named {
        assert!(left.contains(name), "{name} was collected; left: {left:?}");
    }
    let b = crate::cluster::node_with(&nats, "b", &temp_dir("spin-keep-b"), &[]);
    crate::cluster::until_all(&[&b], "/function/filesapp/file?/static/a.txt", 200).await;
}
