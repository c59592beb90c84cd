//! The client subcommands, run as the real binary against a gateway started by the test.
//!
//! Over 600 lines: the command-line client's tests, end to end (templates, toolchains, the binary).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::{Gateway, all_guests, api, deploy, get, temp_dir};

/// What one run of `wasmgate` printed.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `wasmgate args...` with `stdin`, a private config folder, and no `$OPENFAAS_URL`.
fn wasmgate(config: &std::path::Path, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("OPENFAAS_URL")
        .current_dir(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wasmgate");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait for wasmgate");
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs a client command off the test's async threads.
async fn run(config: &std::path::Path, args: Vec<String>, stdin: &'static [u8]) -> Run {
    let config = config.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        wasmgate(&config, &args, stdin)
    })
    .await
    .expect("the command runs")
}

fn args(gateway: &Gateway, words: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    all.extend(["--gateway".to_string(), format!("http://{}", gateway.addr)]);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_describe_invoke_remove_and_logs() {
    let gateway = Gateway::with_all_guests();
    let config = temp_dir("cli-config");

    let listed = run(&config, args(&gateway, &["list", "--json"]), b"").await;
    assert!(listed.ok, "{}", listed.stderr);
    let functions: Vec<serde_json::Value> =
        serde_json::from_str(&listed.stdout).expect("list --json prints JSON");
    assert!(
        functions.iter().any(|f| f["name"] == "hello"),
        "{}",
        listed.stdout
    );

    let table = run(&config, args(&gateway, &["ls"]), b"").await;
    assert!(table.ok, "{}", table.stderr);
    let header = table.stdout.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("Function") && header.contains("Invocations"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.lines().any(|l| l.starts_with("hello ")),
        "{}",
        table.stdout
    );

    let described = run(&config, args(&gateway, &["describe", "hello"]), b"").await;
    assert!(described.ok, "{}", described.stderr);
    assert!(described.stdout.contains("Name:"), "{}", described.stdout);
    assert!(
        described.stdout.contains(&format!(
            "http://{}/function/hello.openfaas-fn",
            gateway.addr
        )),
        "{}",
        described.stdout
    );

    // invoke: the body from stdin, headers and query passed through, the answer on stdout.
    let invoked = run(
        &config,
        args(
            &gateway,
            &[
                "invoke",
                "echo",
                "-H",
                "X-Extra=yes",
                "-q",
                "a=1",
                "-q",
                "b=two words",
            ],
        ),
        b"from stdin",
    )
    .await;
    assert!(invoked.ok, "{}", invoked.stderr);
    assert_eq!(invoked.stdout, "from stdin");
    let failed = run(&config, args(&gateway, &["invoke", "trap"]), b"").await;
    assert!(!failed.ok);
    assert!(
        failed.stderr.contains("the function answered 500"),
        "{}",
        failed.stderr
    );

    // logs --tail: the last lines only.
    for _ in 0..3 {
        assert_eq!(get(&gateway, "/function/hello/tail-me").await.status, 200);
    }
    let logs = run(
        &config,
        args(&gateway, &["logs", "hello", "--tail", "2"]),
        b"",
    )
    .await;
    assert!(logs.ok, "{}", logs.stderr);
    let lines: Vec<&str> = logs.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", logs.stdout);
    assert!(
        lines
            .iter()
            .all(|l| l.contains("hello (") && l.contains("hello called for /tail-me")),
        "{}",
        logs.stdout
    );

    // Unknown functions: a clear message and a non-zero exit.
    for command in [&["remove", "nope"][..], &["describe", "nope"][..]] {
        let missing = run(&config, args(&gateway, command), b"").await;
        assert!(!missing.ok, "{command:?} succeeded");
        assert!(
            missing
                .stderr
                .contains("no function nope in namespace openfaas-fn"),
            "{}",
            missing.stderr
        );
    }
    let removed = run(&config, args(&gateway, &["rm", "echo"]), b"").await;
    assert!(removed.ok, "{}", removed.stderr);
    assert_eq!(get(&gateway, "/function/echo").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_function() {
    let gateway = Gateway::start(&[]);
    let config = temp_dir("cli-config");
    let created = run(
        &config,
        args(
            &gateway,
            &["secret", "create", "api-key", "--from-literal", "s3cret"],
        ),
        b"",
    )
    .await;
    assert!(created.ok, "{}", created.stderr);
    let from_stdin = run(
        &config,
        args(&gateway, &["secret", "create", "other"]),
        b"piped",
    )
    .await;
    assert!(from_stdin.ok, "{}", from_stdin.stderr);
    let again = run(
        &config,
        args(
            &gateway,
            &["secret", "create", "api-key", "--from-literal", "x"],
        ),
        b"",
    )
    .await;
    assert!(!again.ok);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);

    let listed = run(&config, args(&gateway, &["secret", "ls"]), b"").await;
    assert!(listed.ok, "{}", listed.stderr);
    assert!(
        listed.stdout.contains("api-key") && !listed.stdout.contains("s3cret"),
        "{}",
        listed.stdout
    );

    deploy(
        &gateway,
        "inspect",
        wasmgate_guests::INSPECT,
        serde_json::json!({"secrets": ["api-key", "other"]}),
    )
    .await;
    let read = get(
        &gateway,
        "/function/inspect/file?/var/openfaas/secrets/api-key",
    )
    .await;
    assert_eq!(read.text(), "s3cret");
    let read = get(
        &gateway,
        "/function/inspect/file?/var/openfaas/secrets/other",
    )
    .await;
    assert_eq!(read.text(), "piped");

    let removed = run(&config, args(&gateway, &["secret", "rm", "other"]), b"").await;
    assert!(removed.ok, "{}", removed.stderr);
    let missing = run(&config, args(&gateway, &["secret", "rm", "other"]), b"").await;
    assert!(
        !missing.ok && missing.stderr.contains("no secret other"),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_checks_and_saves_credentials() {
    let secrets = temp_dir("auth");
    std::fs::write(secrets.join("basic-auth-user"), "admin\n").expect("write");
    std::fs::write(secrets.join("basic-auth-password"), "right\n").expect("write");
    let mut flags = all_guests();
    flags.extend([
        "--basic-auth-dir".to_string(),
        secrets.display().to_string(),
    ]);
    let gateway = Gateway::start(&flags);
    let config = temp_dir("cli-config");
    let saved = config.join("wasmgate").join("credentials.json");

    let wrong = run(
        &config,
        args(&gateway, &["login", "--password-stdin"]),
        b"wrong\n",
    )
    .await;
    assert!(!wrong.ok);
    assert!(
        wrong.stderr.contains("wrong user name or password"),
        "{}",
        wrong.stderr
    );
    assert!(!saved.exists(), "nothing saved after a failed login");
    let refused = run(&config, args(&gateway, &["list"]), b"").await;
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("run `wasmgate login"),
        "{}",
        refused.stderr
    );

    let right = run(
        &config,
        args(&gateway, &["login", "-u", "admin", "--password-stdin"]),
        b"right\n",
    )
    .await;
    assert!(right.ok, "{}", right.stderr);
    assert!(!right.stdout.contains("right") && !right.stderr.contains("right\n"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&saved)
        .expect("saved")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "credentials are owner-only");
    let listed = run(&config, args(&gateway, &["list", "--json"]), b"").await;
    assert!(listed.ok, "{}", listed.stderr);

    let out = run(&config, args(&gateway, &["logout"]), b"").await;
    assert!(out.ok && out.stdout.contains("removed"), "{}", out.stdout);
    assert!(!run(&config, args(&gateway, &["list"]), b"").await.ok);

    // version works with or without the gateway.
    let version = run(&config, args(&gateway, &["version", "--json"]), b"").await;
    assert!(version.ok, "{}", version.stderr);
    let value: serde_json::Value = serde_json::from_str(&version.stdout).expect("JSON");
    assert_eq!(value["client"]["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_uploads_only_what_is_missing_and_reports_failures() {
    let gateway = Gateway::start(&[]);
    let config = temp_dir("cli-config");
    let project = temp_dir("cli-project");
    std::fs::write(project.join("broken.wasm"), b"not a component").expect("write");
    let stack = format!(
        "version: 1.0\nprovider:\n  name: openfaas\n  gateway: http://{addr}\nfunctions:\n  \
         greeter:\n    lang: rust\n    image: {hello}\n    environment:\n      GREETING: hi\n    \
         labels:\n      team: web\n    annotations:\n      com.wasmgate.instance-reuse: 4\n    \
         limits:\n      memory: 64Mi\n  \
         mirror:\n    lang: rust\n    image: {echo}\n    namespace: openfaas-fn\n  \
         broken:\n    lang: rust\n    image: broken.wasm\n",
        addr = gateway.addr,
        hello = wasmgate_guests::HELLO,
        echo = wasmgate_guests::ECHO,
    );
    let stack_file = project.join("stack.yml");
    std::fs::write(&stack_file, stack).expect("write stack.yml");
    let stack_arg = stack_file.display().to_string();

    // The gateway comes from provider.gateway; one bad function fails the run but not the others.
    let first = run(
        &config,
        vec!["deploy".into(), "-f".into(), stack_arg.clone()],
        b"",
    )
    .await;
    assert!(!first.ok, "a failed function makes deploy fail");
    assert!(
        first
            .stdout
            .contains("greeter.openfaas-fn: deployed (component uploaded)"),
        "{}",
        first.stdout
    );
    assert!(
        first
            .stdout
            .contains("mirror.openfaas-fn: deployed (component uploaded)"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("broken.openfaas-fn: failed")
            && first.stdout.contains("not a WebAssembly binary"),
        "{}",
        first.stdout
    );
    assert!(first.stdout.contains("2 of 3 deployed"), "{}", first.stdout);
    assert!(
        first.stderr.contains("these failed: broken.openfaas-fn"),
        "{}",
        first.stderr
    );
    assert_eq!(
        get(&gateway, "/function/greeter/x").await.text(),
        "Hello from wasmgate! You asked for /x\n"
    );
    // The stack's settings arrived with it.
    let described = run(
        &config,
        vec![
            "describe".into(),
            "greeter".into(),
            "-f".into(),
            stack_arg.clone(),
            "--json".into(),
        ],
        b"",
    )
    .await;
    let status: serde_json::Value = serde_json::from_str(&described.stdout).expect("JSON");
    assert_eq!(status["envVars"]["GREETING"], "hi", "{status}");
    assert_eq!(status["labels"]["team"], "web", "{status}");
    assert_eq!(
        status["annotations"]["com.wasmgate.instance-reuse"], "4",
        "{status}"
    );
    assert_eq!(status["limits"]["memory"], "64Mi", "{status}");

    // Again, only the good ones: nothing to upload, both updated.
    let second = run(
        &config,
        vec![
            "deploy".into(),
            "-f".into(),
            stack_arg.clone(),
            "--filter".into(),
            "greeter".into(),
            "--filter".into(),
            "mirror".into(),
        ],
        b"",
    )
    .await;
    assert!(second.ok, "{}\n{}", second.stdout, second.stderr);
    assert!(
        second
            .stdout
            .contains("greeter.openfaas-fn: deployed (component already there)\n"),
        "{}",
        second.stdout
    );
    assert!(
        second.stdout.contains("2 of 2 deployed"),
        "{}",
        second.stdout
    );
    let unknown = run(
        &config,
        vec![
            "deploy".into(),
            "-f".into(),
            stack_arg,
            "--filter".into(),
            "nope".into(),
        ],
        b"",
    )
    .await;
    assert!(
        !unknown.ok && unknown.stderr.contains("no function nope in"),
        "{}",
        unknown.stderr
    );
}

/// `new`, `build`, `deploy`, `invoke` for one template against a gateway started by the test: from
/// nothing to the template's answer. `up` (build then deploy) afterwards deploys it again (the JS and
/// Python toolchains do not build byte-for-byte the same component twice, so it may upload again).
async fn new_build_deploy_invoke(lang: &str, wasi: Option<&str>, world: &str) {
    let gateway = Gateway::start(&[]);
    let config = temp_dir("cli-config");
    let project = temp_dir(&format!("cli-new-{lang}"));
    let stack = project.join("stack.yml").display().to_string();
    let gw = format!("http://{}", gateway.addr);
    let cmd = |words: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        all.extend(["-f".into(), stack.clone(), "--gateway".into(), gw.clone()]);
        all
    };
    let name = format!(
        "greeter-{lang}{}",
        wasi.map_or(String::new(), |w| w.replace('.', ""))
    );

    let mut new = vec!["new", &name, "--lang", lang];
    if let Some(wasi) = wasi {
        new.extend(["--wasi", wasi]);
    }
    let created = run(&config, cmd(&new), b"").await;
    assert!(created.ok, "{}", created.stderr);
    let again = run(&config, cmd(&["new", &name, "--lang", lang]), b"").await;
    assert!(
        !again.ok && again.stderr.contains("already exists"),
        "{}",
        again.stderr
    );

    let built = run(&config, cmd(&["build"]), b"").await;
    assert!(built.ok, "{}\n{}", built.stdout, built.stderr);
    let deployed = run(&config, cmd(&["deploy"]), b"").await;
    assert!(deployed.ok, "{}\n{}", deployed.stdout, deployed.stderr);
    assert!(
        deployed.stdout.contains(&format!(
            "{name}.openfaas-fn: deployed (component uploaded)"
        )),
        "{}",
        deployed.stdout
    );

    let status = api(&gateway, "GET", &format!("/system/function/{name}"), None).await;
    let status: serde_json::Value = serde_json::from_slice(&status.body).expect("JSON");
    assert_eq!(status["world"], world, "{status}");

    let invoked = run(&config, cmd(&["invoke", &name]), b"four").await;
    assert!(invoked.ok, "{}", invoked.stderr);
    assert_eq!(
        invoked.stdout,
        format!("Hello from {name}! You sent 4 bytes.\n")
    );
    let answer = get(&gateway, &format!("/function/{name}")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), "text/plain; charset=utf-8");

    let up = run(&config, cmd(&["up"]), b"").await;
    assert!(up.ok, "{}\n{}", up.stdout, up.stderr);
    assert!(
        up.stdout
            .contains(&format!("{name}.openfaas-fn: deployed (component ")),
        "{}",
        up.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_build_deploy_invoke_rust() {
    new_build_deploy_invoke("rust", None, "wasi:http@0.3").await;
}

/// The Rust template for the older world, `--wasi 0.2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_build_deploy_invoke_rust_wasi_0_2() {
    new_build_deploy_invoke("rust", Some("0.2"), "wasi:http@0.2").await;
}

/// Needs componentize-js (`.ci/run` installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_build_deploy_invoke_js() {
    new_build_deploy_invoke("js", None, "wasi:http@0.2").await;
}

/// Needs componentize-py (`.ci/run` installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_build_deploy_invoke_python() {
    new_build_deploy_invoke("python", None, "wasi:http@0.2").await;
}

/// `new` refuses a bad name; `build` without the toolchain stops with the command that installs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_and_build_explain_what_is_missing() {
    let config = temp_dir("cli-config");
    let project = temp_dir("cli-missing");
    let stack = project.join("stack.yml").display().to_string();
    let bad = run(
        &config,
        vec!["new".into(), "Bad Name".into(), "-f".into(), stack.clone()],
        b"",
    )
    .await;
    assert!(
        !bad.ok && bad.stderr.contains("invalid function name"),
        "{}",
        bad.stderr
    );
    for lang in ["js", "python"] {
        let created = run(
            &config,
            vec![
                "new".into(),
                format!("f-{lang}"),
                "--lang".into(),
                lang.into(),
                "-f".into(),
                stack.clone(),
            ],
            b"",
        )
        .await;
        assert!(created.ok, "{}", created.stderr);
    }
    // Only the system folders on PATH: Node.js may be there, the componentize tools are not.
    let built = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_wasmgate"))
            .args(["build", "-f", &stack, "--filter", "f-js"])
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("run wasmgate")
    });
    let built = built.await.expect("build runs");
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(!built.status.success());
    assert!(
        stderr.contains("npm install --prefix")
            && stderr.contains("@bytecodealliance/componentize-js@0.23.0")
            || stderr.contains("install Node.js"),
        "{stderr}"
    );
    let stack = project.join("stack.yml");
    let built = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_wasmgate"))
            .args(["build", "--filter", "f-python", "-f"])
            .arg(&stack)
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("run wasmgate")
    });
    let built = built.await.expect("build runs");
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(!built.status.success());
    assert!(
        stderr.contains("f-python: componentize-py is missing; install it with: pip install componentize-py==0.25.1"),
        "{stderr}"
    );
}

/// `invoke --async` queues the call, prints its id, and the callback brings the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_async_prints_the_call_id() {
    let gateway = Gateway::start(&[
        "--function".to_string(),
        format!("echo={}", wasmgate_guests::ECHO),
    ]);
    let config = temp_dir("cli-config");
    let callbacks = crate::support::Callbacks::start().await;
    let queued = run(
        &config,
        args(
            &gateway,
            &[
                "invoke",
                "echo",
                "--async",
                "--callback-url",
                &callbacks.url(),
                "-H",
                "x-note=queued",
            ],
        ),
        b"later",
    )
    .await;
    assert!(queued.ok, "{}", queued.stderr);
    let id = queued.stdout.trim().to_string();
    assert_eq!(id.len(), 36, "a call id: {:?}", queued.stdout);
    assert!(
        queued.stderr.contains(&format!("/system/async/{id}")),
        "{}",
        queued.stderr
    );
    let received = callbacks.wait_for(1).await;
    assert_eq!(received[0].header("x-call-id"), id);
    assert_eq!(received[0].header("x-echo-x-note"), "queued");
    assert_eq!(&received[0].body[..], b"later");

    let wrong = run(
        &config,
        args(&gateway, &["invoke", "echo", "--async", "-m", "GET"]),
        b"",
    )
    .await;
    assert!(
        !wrong.ok && wrong.stderr.contains("POST"),
        "{}",
        wrong.stderr
    );
    let unknown = run(&config, args(&gateway, &["invoke", "nope", "--async"]), b"").await;
    assert!(
        !unknown.ok && unknown.stderr.contains("404"),
        "{}",
        unknown.stderr
    );
}

/// Colour only on a terminal (run under `script`, which gives the command a pseudo-terminal), and
/// never with `NO_COLOR`; piped output is plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colour_only_on_a_terminal() {
    let gateway = Gateway::start(&[
        "--function".to_string(),
        format!("hello={}", wasmgate_guests::HELLO),
    ]);
    let config = temp_dir("cli-config");
    let project = temp_dir("cli-colour");
    let stack = project.join("stack.yml");
    std::fs::write(
        &stack,
        format!(
            "provider:\n  name: openfaas\nfunctions:\n  greeter:\n    image: {}\n",
            wasmgate_guests::HELLO
        ),
    )
    .expect("write the stack file");
    let command = format!(
        "{} deploy -f {} --gateway http://{} && {} list --gateway http://{}",
        env!("CARGO_BIN_EXE_wasmgate"),
        stack.display(),
        gateway.addr,
        env!("CARGO_BIN_EXE_wasmgate"),
        gateway.addr
    );
    let script_config = config.clone();
    let on_terminal = move |no_color: bool| {
        let mut script = Command::new("script");
        script
            .args(["-qec", &command, "/dev/null"])
            .env("XDG_CONFIG_HOME", &script_config)
            .env_remove("NO_COLOR");
        if no_color {
            script.env("NO_COLOR", "1");
        }
        let output = script.output().expect("run script");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let coloured = tokio::task::spawn_blocking(move || (on_terminal(false), on_terminal(true)))
        .await
        .expect("script runs");
    assert!(
        coloured.0.contains("\x1b[32mdeployed\x1b[0m"),
        "{:?}",
        coloured.0
    );
    assert!(coloured.0.contains("\x1b[1mFunction"), "{:?}", coloured.0);
    // The progress bar is drawn on the terminal (stderr), then cleared.
    assert!(coloured.0.contains("deploying ["), "{:?}", coloured.0);
    // Every colour ends with a reset; the progress bar's line clearing is not colour.
    assert!(
        !coloured.1.contains("\x1b[0m"),
        "NO_COLOR: {:?}",
        coloured.1
    );
    assert!(coloured.1.contains("greeter"), "{:?}", coloured.1);

    let piped = run(&config, args(&gateway, &["list"]), b"").await;
    assert!(
        piped.ok && piped.stdout.contains("greeter"),
        "{}",
        piped.stderr
    );
    assert!(!piped.stdout.contains('\x1b'), "{:?}", piped.stdout);
}
