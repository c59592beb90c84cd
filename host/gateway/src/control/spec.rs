//! From a deployment to what the runtime runs: the labels, annotations, limits and `envVars` wasmgate
//! reads, checked against this gateway's maximums when a function is deployed, and the
//! [`FunctionSpec`] built from them. No I/O: the secret values a spec needs are handed in.
//!
//! Over 600 lines with its tests, which are half of it: one case per rule and per message, kept
//! beside the rules they pin.

use std::path::Path;
use std::time::Duration;

use wasmgate_openfaas::duration::parse_duration;
use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::quantity::{format_memory, parse_memory};
use wasmgate_openfaas::retry::RetryPolicy;
use wasmgate_openfaas::triggers::TriggerSpec;
use wasmgate_openfaas::types::{FunctionDeployment, SECRETS_GUEST_PATH};
use wasmgate_runtime::{FunctionSpec, GuestDir, HostPattern, Limits, RuntimeConfig, World};

use super::error::Error;

/// OpenFaaS's default idle time before scale to zero, for functions that opt in without a duration.
pub const DEFAULT_SCALE_ZERO_DURATION: Duration = Duration::from_secs(15 * 60);
const LABEL_SCALE_ZERO: &str = "com.openfaas.scale.zero";
const LABEL_SCALE_ZERO_DURATION: &str = "com.openfaas.scale.zero-duration";
const LABEL_SCALE_MIN: &str = "com.openfaas.scale.min";
/// Opt-in instance reuse: the number of requests one instance may serve (see `FunctionSpec`).
pub const ANNOTATION_INSTANCE_REUSE: &str = "com.wasmgate.instance-reuse";
/// Opt-in concurrency on a reused instance of a wasi:http 0.3 function: how many requests it may
/// serve at the same time (see `FunctionSpec::max_instance_concurrency`).
pub const ANNOTATION_INSTANCE_CONCURRENCY: &str = "com.wasmgate.instance-concurrency";
/// Hosts a function's outbound HTTP may reach, comma-separated (`api.example.com, *.internal:8443`).
pub const ANNOTATION_ALLOWED_HOSTS: &str = "com.wasmgate.allowed-hosts";
/// Annotation: key-value buckets the function may open besides `default`, comma-separated.
pub const ANNOTATION_KEYVALUE_BUCKETS: &str = "com.wasmgate.keyvalue.buckets";
/// Annotation prefix: `com.wasmgate.config.KEY: VALUE` is `KEY` in the function's `wasi:config`.
pub const ANNOTATION_CONFIG_PREFIX: &str = "com.wasmgate.config.";
/// `envVars` key (as of-watchdog reads it): the time limit of one request, a Go duration.
pub const ENV_EXEC_TIMEOUT: &str = "exec_timeout";
/// `envVars` key (as of-watchdog reads it): requests of the function served at once.
pub const ENV_MAX_INFLIGHT: &str = "max_inflight";

/// Checks every setting a deploy reads besides names, image and secrets, in the order a deploy
/// reports them: the first one wrong is the error.
pub(super) fn check_settings(
    deployment: &FunctionDeployment,
    config: &RuntimeConfig,
) -> Result<(), Error> {
    if let Some(value) = label(deployment, LABEL_SCALE_ZERO_DURATION) {
        parse_duration(value)
            .map_err(|e| Error::invalid(format!("label {LABEL_SCALE_ZERO_DURATION}: {e}")))?;
    }
    instance_reuse(deployment)?;
    instance_concurrency(deployment)?;
    function_limits(deployment, config)?;
    allowed_hosts(deployment)?;
    keyvalue_buckets(deployment)?;
    RetryPolicy::from_annotations(deployment.settings.annotations.as_ref())
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
    match label(deployment, LABEL_SCALE_MIN) {
        Some(min) => min
            .parse::<u64>()
            .map_err(|_| Error::invalid(format!("label {LABEL_SCALE_MIN} must be a whole number"))),
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
    if world != World::P3 && instance_concurrency(deployment)? > 1 {
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
        max_instance_reuse: instance_reuse(deployment).unwrap_or(0),
        max_instance_concurrency: instance_concurrency(deployment).unwrap_or(0),
        // The runtime clamps what it is given in any case.
        limits: function_limits(deployment, config).unwrap_or_default(),
        // A list that no longer parses reaches nothing.
        allowed_hosts: allowed_hosts(deployment).unwrap_or_default(),
        namespace: function.namespace.clone(),
        keyvalue_buckets: keyvalue_buckets(deployment).unwrap_or_default(),
        config: config_values(deployment, secret),
    }
}

/// The idle time after which a function that opted into scale to zero is unloaded.
pub(super) fn scale_zero_after(deployment: &FunctionDeployment) -> Option<Duration> {
    if label(deployment, LABEL_SCALE_ZERO).map(String::as_str) != Some("true") {
        return None;
    }
    Some(
        label(deployment, LABEL_SCALE_ZERO_DURATION)
            .and_then(|d| parse_duration(d).ok())
            .unwrap_or(DEFAULT_SCALE_ZERO_DURATION),
    )
}

fn label<'a>(deployment: &'a FunctionDeployment, key: &str) -> Option<&'a String> {
    deployment.settings.labels.as_ref().and_then(|l| l.get(key))
}

fn annotation<'a>(deployment: &'a FunctionDeployment, key: &str) -> Option<&'a String> {
    deployment
        .settings
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
}

/// What `wasi:config/store` answers for the function, first match wins: the secrets it lists (by
/// name, as text), then `com.wasmgate.config.KEY` annotations, then its `envVars`.
fn config_values(
    deployment: &FunctionDeployment,
    secret: impl Fn(&str) -> Option<Vec<u8>>,
) -> Vec<(String, String)> {
    let settings = &deployment.settings;
    let mut values = Vec::new();
    for name in settings.secrets.iter().flatten() {
        if let Some(value) = secret(name) {
            values.push((name.clone(), String::from_utf8_lossy(&value).into_owned()));
        }
    }
    for (key, value) in settings.annotations.iter().flatten() {
        if let Some(key) = key.strip_prefix(ANNOTATION_CONFIG_PREFIX) {
            values.push((key.to_string(), value.clone()));
        }
    }
    for (key, value) in settings.env_vars.iter().flatten() {
        values.push((key.clone(), value.clone()));
    }
    values
}

/// `com.wasmgate.instance-reuse` (an annotation, or a label): how many requests one instance may serve.
fn instance_reuse(deployment: &FunctionDeployment) -> Result<u32, Error> {
    whole_number_setting(
        deployment,
        ANNOTATION_INSTANCE_REUSE,
        "requests per instance",
    )
}

/// `com.wasmgate.instance-concurrency` (an annotation, or a label): how many requests one reused
/// instance of a wasi:http 0.3 function may serve at once.
fn instance_concurrency(deployment: &FunctionDeployment) -> Result<u32, Error> {
    whole_number_setting(
        deployment,
        ANNOTATION_INSTANCE_CONCURRENCY,
        "requests served at once per instance",
    )
}

/// A whole-number setting given as an annotation or, failing that, a label; 0 when absent.
fn whole_number_setting(
    deployment: &FunctionDeployment,
    key: &str,
    unit: &str,
) -> Result<u32, Error> {
    match annotation(deployment, key).or_else(|| label(deployment, key)) {
        None => Ok(0),
        Some(value) => value.trim().parse::<u32>().map_err(|_| {
            Error::invalid(format!(
                "{key} must be a whole number of {unit}, not {value:?}"
            ))
        }),
    }
}

/// `com.wasmgate.allowed-hosts` (an annotation): where the function's outbound HTTP may go.
fn allowed_hosts(deployment: &FunctionDeployment) -> Result<Vec<HostPattern>, Error> {
    match annotation(deployment, ANNOTATION_ALLOWED_HOSTS) {
        None => Ok(Vec::new()),
        Some(list) => HostPattern::parse_list(list)
            .map_err(|e| Error::invalid(format!("annotation {ANNOTATION_ALLOWED_HOSTS}: {e}"))),
    }
}

/// `com.wasmgate.keyvalue.buckets` (an annotation): buckets the function may open besides `default`.
fn keyvalue_buckets(deployment: &FunctionDeployment) -> Result<Vec<String>, Error> {
    let Some(list) = annotation(deployment, ANNOTATION_KEYVALUE_BUCKETS) else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            let valid = name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if valid {
                Ok(name.to_string())
            } else {
                Err(Error::invalid(format!(
                    "annotation {ANNOTATION_KEYVALUE_BUCKETS}: {name:?} is not a bucket name \
                     (letters, digits, '-', '_', '.', at most 64)"
                )))
            }
        })
        .collect()
}

/// The function's limits: `limits.memory`, and `exec_timeout` and `max_inflight` from `envVars`,
/// each checked against this gateway's maximums.
fn function_limits(
    deployment: &FunctionDeployment,
    config: &RuntimeConfig,
) -> Result<Limits, Error> {
    let settings = &deployment.settings;
    let memory_bytes = match settings.limits.as_ref().and_then(|l| l.memory.as_deref()) {
        None => None,
        Some(text) => {
            let bytes =
                parse_memory(text).map_err(|e| Error::invalid(format!("limits.memory: {e}")))?;
            if bytes > config.max_memory_bytes {
                return Err(Error::invalid(format!(
                    "limits.memory {text} is above this gateway's maximum of {} (--max-memory)",
                    format_memory(config.max_memory_bytes)
                )));
            }
            if bytes < 64 * 1024 {
                return Err(Error::invalid(format!(
                    "limits.memory {text} is less than one WebAssembly page (64Ki)"
                )));
            }
            Some(bytes)
        }
    };
    let env = settings.env_vars.as_ref();
    let timeout = match env.and_then(|e| e.get(ENV_EXEC_TIMEOUT)) {
        None => None,
        Some(text) => {
            let timeout = parse_duration(text)
                .map_err(|e| Error::invalid(format!("envVars.{ENV_EXEC_TIMEOUT}: {e}")))?;
            if timeout.is_zero() {
                return Err(Error::invalid(format!(
                    "envVars.{ENV_EXEC_TIMEOUT} must be more than zero"
                )));
            }
            if timeout > config.max_timeout {
                return Err(Error::invalid(format!(
                    "envVars.{ENV_EXEC_TIMEOUT} {text} is above this gateway's maximum of {:?} \
                     (--max-timeout)",
                    config.max_timeout
                )));
            }
            Some(timeout)
        }
    };
    let max_inflight = match env.and_then(|e| e.get(ENV_MAX_INFLIGHT)) {
        None => None,
        Some(text) => match text.trim().parse::<u32>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(Error::invalid(format!(
                    "envVars.{ENV_MAX_INFLIGHT} must be a whole number of requests above zero, \
                     not {text:?}"
                )));
            }
        },
    };
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
    fn a_label_serves_when_no_annotation_says() {
        let labelled = with_labels(&[(ANNOTATION_INSTANCE_REUSE, "3")]);
        assert_eq!(instance_reuse(&labelled), Ok(3));
        let mut both = labelled.clone();
        both.settings.annotations = map(&[(ANNOTATION_INSTANCE_REUSE, "5")]);
        assert_eq!(instance_reuse(&both), Ok(5));
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
