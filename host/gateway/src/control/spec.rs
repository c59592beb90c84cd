//! From a deployment to what the runtime runs: the labels, annotations, limits and `envVars` wasmgate
//! reads (parsed by `wasmgate_openfaas::settings`), checked against this gateway's maximums when a
//! function is deployed, and the [`FunctionSpec`] built from them. No I/O: the secret values a spec
//! needs are handed in.

use std::path::Path;
use std::time::Duration;

use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::quantity::format_memory;
use wasmgate_openfaas::retry::RetryPolicy;
use wasmgate_openfaas::settings::{
    self, ANNOTATION_ALLOWED_HOSTS, ANNOTATION_INSTANCE_CONCURRENCY, ENV_EXEC_TIMEOUT,
};
use wasmgate_openfaas::triggers::TriggerSpec;
use wasmgate_openfaas::types::{FunctionDeployment, SECRETS_GUEST_PATH};
use wasmgate_runtime::{FunctionSpec, GuestDir, HostPattern, Limits, RuntimeConfig, World};

use super::error::Error;

/// Checks every setting a deploy reads besides names, image and secrets, in the order a deploy
/// reports them: the first one wrong is the error.
pub(super) fn check_settings(
    deployment: &FunctionDeployment,
    config: &RuntimeConfig,
) -> Result<(), Error> {
    let settings = &deployment.settings;
    settings::scale_zero_duration(settings).map_err(Error::invalid)?;
    settings::instance_reuse(settings).map_err(Error::invalid)?;
    settings::instance_concurrency(settings).map_err(Error::invalid)?;
    function_limits(deployment, config)?;
    allowed_hosts(deployment)?;
    settings::keyvalue_buckets(settings).map_err(Error::invalid)?;
    RetryPolicy::from_annotations(settings.annotations.as_ref())
        .map_err(|e| Error::invalid(format!("annotation {e}")))?;
    TriggerSpec::from_annotations(deployment.settings.annotations.as_ref())
        .map_err(|e| Error::invalid(format!("annotation {e}")))?;
    Ok(())
}

/// The replicas a deploy records: `com.openfaas.scale.min` when set, else what the function had (at
/// least one), else one.
pub(super) fn replicas(
    deployment: &FunctionDeployment,
    existing: Option<u64>,
) -> Result<u64, Error> {
    match settings::scale_min(&deployment.settings).map_err(Error::invalid)? {
        Some(min) => Ok(min),
        None => Ok(existing.map_or(1, |replicas| replicas.max(1))),
    }
}

/// Refuses concurrency on one instance for a component that cannot serve it: only a wasi:http 0.3
/// handler is async.
pub(super) fn check_world(
    function: &FunctionRef,
    deployment: &FunctionDeployment,
    world: World,
) -> Result<(), Error> {
    let concurrency =
        settings::instance_concurrency(&deployment.settings).map_err(Error::invalid)?;
    if world != World::P3 && concurrency > 1 {
        return Err(Error::invalid(format!(
            "{ANNOTATION_INSTANCE_CONCURRENCY} needs a wasi:http 0.3 component (whose handler is \
             async); {function} exports {world}, which serves one request at a time"
        )));
    }
    Ok(())
}

/// The spec of a function. `secrets_dir` is where its secrets folder is (built elsewhere), named
/// only when it lists secrets; `secret` reads a secret's value for `wasi:config`.
///
/// A setting that no longer parses (a record written by a gateway with other rules or higher
/// maximums) falls back to its default: a record is never refused once it was accepted.
pub(super) fn function_spec(
    function: &FunctionRef,
    deployment: &FunctionDeployment,
    config: &RuntimeConfig,
    secrets_dir: &Path,
    secret: impl Fn(&str) -> Option<Vec<u8>>,
) -> FunctionSpec {
    let settings = &deployment.settings;
    let env = settings
        .env_vars
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let has_secrets = settings.secrets.as_ref().is_some_and(|s| !s.is_empty());
    FunctionSpec {
        env,
        secrets: has_secrets.then(|| GuestDir {
            host: secrets_dir.to_path_buf(),
            guest: SECRETS_GUEST_PATH.to_string(),
        }),
        // A Spin component's static files are given by `spin.rs`.
        files: None,
        max_instance_reuse: settings::instance_reuse(settings).unwrap_or(0),
        max_instance_concurrency: settings::instance_concurrency(settings).unwrap_or(0),
        // The runtime clamps what it is given in any case.
        limits: function_limits(deployment, config).unwrap_or_default(),
        // A list that no longer parses reaches nothing.
        allowed_hosts: allowed_hosts(deployment).unwrap_or_default(),
        namespace: function.namespace.clone(),
        keyvalue_buckets: settings::keyvalue_buckets(settings).unwrap_or_default(),
        config: settings::config_values(settings, secret),
        // A Spin app's components get theirs from its manifest (`spin.rs`).
        spin_variables: Vec::new(),
        spin_key_value_stores: Vec::new(),
        spin_sqlite_databases: Vec::new(),
    }
}

/// The idle time after which a function that opted into scale to zero is unloaded.
pub(super) fn scale_zero_after(deployment: &FunctionDeployment) -> Option<Duration> {
    settings::scale_zero_after(&deployment.settings)
}

/// `com.wasmgate.allowed-hosts` (an annotation): where the function's outbound HTTP may go.
fn allowed_hosts(deployment: &FunctionDeployment) -> Result<Vec<HostPattern>, Error> {
    match settings::annotation(&deployment.settings, ANNOTATION_ALLOWED_HOSTS) {
        None => Ok(Vec::new()),
        Some(list) => HostPattern::parse_list(list)
            .map_err(|e| Error::invalid(format!("annotation {ANNOTATION_ALLOWED_HOSTS}: {e}"))),
    }
}

/// The function's limits: `limits.memory`, and `exec_timeout` and `max_inflight` from `envVars`,
/// each checked against this gateway's maximums.
fn function_limits(
    deployment: &FunctionDeployment,
    config: &RuntimeConfig,
) -> Result<Limits, Error> {
    let settings = &deployment.settings;
    let memory_bytes = settings::memory_limit(settings).map_err(Error::invalid)?;
    if let Some(bytes) = memory_bytes
        && bytes > config.max_memory_bytes
    {
        return Err(Error::invalid(format!(
            "limits.memory {} is above this gateway's maximum of {} (--max-memory)",
            settings
                .limits
                .as_ref()
                .and_then(|l| l.memory.as_deref())
                .unwrap_or_default(),
            format_memory(config.max_memory_bytes)
        )));
    }
    let timeout = settings::exec_timeout(settings).map_err(Error::invalid)?;
    if let Some(timeout) = timeout
        && timeout > config.max_timeout
    {
        return Err(Error::invalid(format!(
            "envVars.{ENV_EXEC_TIMEOUT} {} is above this gateway's maximum of {:?} \
             (--max-timeout)",
            settings::env(settings, ENV_EXEC_TIMEOUT).map_or("", String::as_str),
            config.max_timeout
        )));
    }
    let max_inflight = settings::max_inflight(settings).map_err(Error::invalid)?;
    Ok(Limits {
        memory_bytes,
        timeout,
        max_inflight,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use wasmgate_openfaas::settings::{
        ANNOTATION_INSTANCE_REUSE, ANNOTATION_KEYVALUE_BUCKETS, DEFAULT_SCALE_ZERO_DURATION,
        ENV_MAX_INFLIGHT, LABEL_SCALE_MIN, LABEL_SCALE_ZERO, LABEL_SCALE_ZERO_DURATION,
    };
    use wasmgate_openfaas::types::Resources;

    use super::*;

    fn hello() -> FunctionRef {
        FunctionRef::new("hello", Some("team")).expect("a valid name")
    }

    fn map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn with_annotations(pairs: &[(&str, &str)]) -> FunctionDeployment {
        let mut deployment = FunctionDeployment::default();
        deployment.settings.annotations = map(pairs);
        deployment
    }

    fn with_labels(pairs: &[(&str, &str)]) -> FunctionDeployment {
        let mut deployment = FunctionDeployment::default();
        deployment.settings.labels = map(pairs);
        deployment
    }

    fn with_env(pairs: &[(&str, &str)]) -> FunctionDeployment {
        let mut deployment = FunctionDeployment::default();
        deployment.settings.env_vars = map(pairs);
        deployment
    }

    fn with_memory(memory: &str) -> FunctionDeployment {
        let mut deployment = FunctionDeployment::default();
        deployment.settings.limits = Some(Resources {
            memory: Some(memory.to_string()),
            ..Resources::default()
        });
        deployment
    }

    fn no_secrets(_: &str) -> Option<Vec<u8>> {
        None
    }

    #[test]
    fn a_plain_deployment_gets_the_defaults() {
        let spec = function_spec(
            &hello(),
            &FunctionDeployment::default(),
            &RuntimeConfig::default(),
            Path::new("/state/run/secrets/team/hello"),
            no_secrets,
        );
        assert!(spec.env.is_empty());
        assert_eq!(spec.secrets, None);
        assert_eq!(spec.max_instance_reuse, 0);
        assert_eq!(spec.max_instance_concurrency, 0);
        assert_eq!(spec.limits, Limits::default());
        assert!(spec.allowed_hosts.is_empty());
        assert_eq!(spec.namespace, "team");
        assert!(spec.keyvalue_buckets.is_empty());
        assert!(spec.config.is_empty());
    }

    #[test]
    fn every_setting_reaches_the_spec() {
        let mut deployment = with_memory("128Mi");
        deployment.settings.env_vars = map(&[
            ("GREETING", "hi"),
            (ENV_EXEC_TIMEOUT, "30s"),
            (ENV_MAX_INFLIGHT, "4"),
        ]);
        deployment.settings.annotations = map(&[
            (ANNOTATION_INSTANCE_REUSE, "100"),
            (ANNOTATION_INSTANCE_CONCURRENCY, " 8 "),
            (ANNOTATION_ALLOWED_HOSTS, "api.example.com"),
            (ANNOTATION_KEYVALUE_BUCKETS, "cache, , sessions"),
            ("com.wasmgate.config.colour", "blue"),
            ("unrelated", "x"),
        ]);
        deployment.settings.secrets = Some(vec!["token".into(), "absent".into()]);
        check_settings(&deployment, &RuntimeConfig::default()).expect("valid settings");
        let spec = function_spec(
            &hello(),
            &deployment,
            &RuntimeConfig::default(),
            Path::new("/state/run/secrets/team/hello"),
            |name| (name == "token").then(|| b"s3cret".to_vec()),
        );
        assert_eq!(
            spec.secrets,
            Some(GuestDir {
                host: PathBuf::from("/state/run/secrets/team/hello"),
                guest: SECRETS_GUEST_PATH.to_string(),
            })
        );
        assert_eq!(spec.max_instance_reuse, 100);
        assert_eq!(spec.max_instance_concurrency, 8);
        assert_eq!(
            spec.limits,
            Limits {
                memory_bytes: Some(128 * 1024 * 1024),
                timeout: Some(Duration::from_secs(30)),
                max_inflight: Some(4),
            }
        );
        assert_eq!(
            spec.allowed_hosts,
            HostPattern::parse_list("api.example.com").expect("a valid list")
        );
        assert_eq!(spec.keyvalue_buckets, ["cache", "sessions"]);
        let pairs = |values: &[(&str, &str)]| -> Vec<(String, String)> {
            values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            spec.env,
            pairs(&[
                ("GREETING", "hi"),
                ("exec_timeout", "30s"),
                ("max_inflight", "4")
            ])
        );
        // Secrets first, then config annotations, then the environment: the first of a key wins.
        assert_eq!(
            spec.config,
            pairs(&[
                ("token", "s3cret"),
                ("colour", "blue"),
                ("GREETING", "hi"),
                ("exec_timeout", "30s"),
                ("max_inflight", "4"),
            ])
        );
    }

    #[test]
    fn an_empty_secret_list_mounts_nothing() {
        let mut deployment = FunctionDeployment::default();
        deployment.settings.secrets = Some(Vec::new());
        let spec = function_spec(
            &hello(),
            &deployment,
            &RuntimeConfig::default(),
            Path::new("/s"),
            no_secrets,
        );
        assert_eq!(spec.secrets, None);
    }

    #[test]
    fn a_record_that_no_longer_parses_falls_back_to_the_defaults() {
        let mut deployment = with_memory("1Ti");
        deployment.settings.annotations = map(&[
            (ANNOTATION_INSTANCE_REUSE, "many"),
            (ANNOTATION_ALLOWED_HOSTS, "http://"),
            (ANNOTATION_KEYVALUE_BUCKETS, "a/b"),
        ]);
        assert!(check_settings(&deployment, &RuntimeConfig::default()).is_err());
        let spec = function_spec(
            &hello(),
            &deployment,
            &RuntimeConfig::default(),
            Path::new("/s"),
            no_secrets,
        );
        assert_eq!(spec.max_instance_reuse, 0);
        assert_eq!(spec.limits, Limits::default());
        assert!(spec.allowed_hosts.is_empty());
        assert!(spec.keyvalue_buckets.is_empty());
    }

    #[test]
    fn each_wrong_setting_is_refused_with_its_reason() {
        let config = RuntimeConfig {
            max_memory_bytes: 256 * 1024 * 1024,
            max_timeout: Duration::from_secs(60),
            ..RuntimeConfig::default()
        };
        let cases = [
            (
                with_labels(&[(LABEL_SCALE_ZERO_DURATION, "soon")]),
                "label com.openfaas.scale.zero-duration: ",
            ),
            (
                with_annotations(&[(ANNOTATION_INSTANCE_REUSE, "-1")]),
                "com.wasmgate.instance-reuse must be a whole number of requests per instance, not \"-1\"",
            ),
            (
                with_labels(&[(ANNOTATION_INSTANCE_CONCURRENCY, "x")]),
                "com.wasmgate.instance-concurrency must be a whole number of requests served at once \
                 per instance, not \"x\"",
            ),
            (with_memory("lots"), "limits.memory: "),
            (
                with_memory("1Gi"),
                "limits.memory 1Gi is above this gateway's maximum of 256Mi (--max-memory)",
            ),
            (
                with_memory("1Ki"),
                "limits.memory 1Ki is less than one WebAssembly page (64Ki)",
            ),
            (
                with_env(&[(ENV_EXEC_TIMEOUT, "long")]),
                "envVars.exec_timeout: ",
            ),
            (
                with_env(&[(ENV_EXEC_TIMEOUT, "0s")]),
                "envVars.exec_timeout must be more than zero",
            ),
            (
                with_env(&[(ENV_EXEC_TIMEOUT, "2m")]),
                "envVars.exec_timeout 2m is above this gateway's maximum of 60s (--max-timeout)",
            ),
            (
                with_env(&[(ENV_MAX_INFLIGHT, "0")]),
                "envVars.max_inflight must be a whole number of requests above zero, not \"0\"",
            ),
            (
                with_annotations(&[(ANNOTATION_ALLOWED_HOSTS, "a b")]),
                "annotation com.wasmgate.allowed-hosts: ",
            ),
            (
                with_annotations(&[(ANNOTATION_KEYVALUE_BUCKETS, "ok, no/slash")]),
                "annotation com.wasmgate.keyvalue.buckets: \"no/slash\" is not a bucket name \
                 (letters, digits, '-', '_', '.', at most 64)",
            ),
            (
                with_annotations(&[("com.openfaas.retry.attempts", "0")]),
                "annotation com.openfaas.retry.attempts must be a number from 1 to 100",
            ),
        ];
        for (deployment, expected) in cases {
            match check_settings(&deployment, &config) {
                Err(Error::InvalidInput(message)) => assert!(
                    message.starts_with(expected),
                    "{message:?} does not start with {expected:?}"
                ),
                other => panic!("{expected:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_first_wrong_setting_is_the_error() {
        let mut deployment = with_annotations(&[
            (ANNOTATION_INSTANCE_REUSE, "x"),
            (ANNOTATION_KEYVALUE_BUCKETS, "a/b"),
        ]);
        deployment.settings.labels = map(&[(LABEL_SCALE_ZERO_DURATION, "soon")]);
        let error = check_settings(&deployment, &RuntimeConfig::default()).expect_err("refused");
        assert!(error.to_string().starts_with("label "), "{error}");
    }

    #[test]
    fn replicas_come_from_scale_min_or_what_the_function_had() {
        let plain = FunctionDeployment::default();
        assert_eq!(replicas(&plain, None), Ok(1));
        assert_eq!(replicas(&plain, Some(0)), Ok(1));
        assert_eq!(replicas(&plain, Some(3)), Ok(3));
        let pinned = with_labels(&[(LABEL_SCALE_MIN, "0")]);
        assert_eq!(replicas(&pinned, Some(3)), Ok(0));
        assert_eq!(
            replicas(&with_labels(&[(LABEL_SCALE_MIN, "two")]), None),
            Err(Error::invalid(
                "label com.openfaas.scale.min must be a whole number"
            ))
        );
    }

    #[test]
    fn scale_to_zero_is_opt_in() {
        assert_eq!(scale_zero_after(&FunctionDeployment::default()), None);
        assert_eq!(
            scale_zero_after(&with_labels(&[(LABEL_SCALE_ZERO, "false")])),
            None
        );
        assert_eq!(
            scale_zero_after(&with_labels(&[(LABEL_SCALE_ZERO, "true")])),
            Some(DEFAULT_SCALE_ZERO_DURATION)
        );
        assert_eq!(
            scale_zero_after(&with_labels(&[
                (LABEL_SCALE_ZERO, "true"),
                (LABEL_SCALE_ZERO_DURATION, "90s"),
            ])),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            scale_zero_after(&with_labels(&[
                (LABEL_SCALE_ZERO, "true"),
                (LABEL_SCALE_ZERO_DURATION, "never"),
            ])),
            Some(DEFAULT_SCALE_ZERO_DURATION)
        );
    }

    #[test]
    fn concurrency_on_one_instance_needs_wasi_http_0_3() {
        let concurrent = with_annotations(&[(ANNOTATION_INSTANCE_CONCURRENCY, "4")]);
        assert_eq!(check_world(&hello(), &concurrent, World::P3), Ok(()));
        let error = check_world(&hello(), &concurrent, World::P2).expect_err("refused");
        let text = error.to_string();
        assert!(
            text.starts_with(
                "com.wasmgate.instance-concurrency needs a wasi:http 0.3 component (whose handler \
                 is async); hello.team exports "
            ),
            "{text}"
        );
        let one = with_annotations(&[(ANNOTATION_INSTANCE_CONCURRENCY, "1")]);
        assert_eq!(check_world(&hello(), &one, World::P2), Ok(()));
    }
}
