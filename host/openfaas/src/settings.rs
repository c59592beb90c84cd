//! The labels, annotations and `envVars` of a deployment that wasmgate reads, by name, and how each
//! one is parsed. Each reader returns the setting or a message naming it; no I/O, and none of this
//! gateway's maximums (the gateway checks a parsed value against those: `control/spec.rs`).
//!
//! The retry annotations have a module of their own ([`crate::retry`]).

use std::time::Duration;

use crate::duration::parse_duration;
use crate::quantity::parse_memory;
use crate::types::FunctionSettings;

/// Label: `"true"` opts the function into scale to zero.
pub const LABEL_SCALE_ZERO: &str = "com.openfaas.scale.zero";
/// Label: the idle time before scale to zero, a Go duration.
pub const LABEL_SCALE_ZERO_DURATION: &str = "com.openfaas.scale.zero-duration";
/// Label: the replicas a deploy records.
pub const LABEL_SCALE_MIN: &str = "com.openfaas.scale.min";
/// OpenFaaS's default idle time before scale to zero, for functions that opt in without a duration.
pub const DEFAULT_SCALE_ZERO_DURATION: Duration = Duration::from_secs(15 * 60);
/// Opt-in instance reuse: the number of requests one instance may serve (an annotation, or a label).
pub const ANNOTATION_INSTANCE_REUSE: &str = "com.wasmgate.instance-reuse";
/// Opt-in concurrency on a reused instance of a wasi:http 0.3 function: how many requests it may
/// serve at the same time (an annotation, or a label).
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
/// The smallest memory limit: one WebAssembly page.
pub const MIN_MEMORY_BYTES: u64 = 64 * 1024;

/// The label `key`, if set.
pub fn label<'a>(settings: &'a FunctionSettings, key: &str) -> Option<&'a String> {
    settings.labels.as_ref().and_then(|l| l.get(key))
}

/// The annotation `key`, if set.
pub fn annotation<'a>(settings: &'a FunctionSettings, key: &str) -> Option<&'a String> {
    settings.annotations.as_ref().and_then(|a| a.get(key))
}

/// [`LABEL_SCALE_ZERO_DURATION`], checked; `None` when not set.
pub fn scale_zero_duration(settings: &FunctionSettings) -> Result<Option<Duration>, String> {
    label(settings, LABEL_SCALE_ZERO_DURATION)
        .map(|value| {
            parse_duration(value).map_err(|e| format!("label {LABEL_SCALE_ZERO_DURATION}: {e}"))
        })
        .transpose()
}

/// The idle time after which a function that opted into scale to zero is unloaded; `None` when it
/// did not opt in. A duration that no longer parses falls back to the default.
pub fn scale_zero_after(settings: &FunctionSettings) -> Option<Duration> {
    if label(settings, LABEL_SCALE_ZERO).map(String::as_str) != Some("true") {
        return None;
    }
    Some(
        scale_zero_duration(settings)
            .ok()
            .flatten()
            .unwrap_or(DEFAULT_SCALE_ZERO_DURATION),
    )
}

/// [`LABEL_SCALE_MIN`]; `None` when not set.
pub fn scale_min(settings: &FunctionSettings) -> Result<Option<u64>, String> {
    label(settings, LABEL_SCALE_MIN)
        .map(|min| {
            min.parse::<u64>()
                .map_err(|_| format!("label {LABEL_SCALE_MIN} must be a whole number"))
        })
        .transpose()
}

/// [`ANNOTATION_INSTANCE_REUSE`]: how many requests one instance may serve; 0 when not set.
pub fn instance_reuse(settings: &FunctionSettings) -> Result<u32, String> {
    whole_number(settings, ANNOTATION_INSTANCE_REUSE, "requests per instance")
}

/// [`ANNOTATION_INSTANCE_CONCURRENCY`]: how many requests one reused instance of a wasi:http 0.3
/// function may serve at once; 0 when not set.
pub fn instance_concurrency(settings: &FunctionSettings) -> Result<u32, String> {
    whole_number(
        settings,
        ANNOTATION_INSTANCE_CONCURRENCY,
        "requests served at once per instance",
    )
}

/// A whole-number setting given as an annotation or, failing that, a label; 0 when absent.
fn whole_number(settings: &FunctionSettings, key: &str, unit: &str) -> Result<u32, String> {
    match annotation(settings, key).or_else(|| label(settings, key)) {
        None => Ok(0),
        Some(value) => value
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("{key} must be a whole number of {unit}, not {value:?}")),
    }
}

/// [`ANNOTATION_KEYVALUE_BUCKETS`]: the buckets the function may open besides `default`.
pub fn keyvalue_buckets(settings: &FunctionSettings) -> Result<Vec<String>, String> {
    let Some(list) = annotation(settings, ANNOTATION_KEYVALUE_BUCKETS) else {
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
                Err(format!(
                    "annotation {ANNOTATION_KEYVALUE_BUCKETS}: {name:?} is not a bucket name \
                     (letters, digits, '-', '_', '.', at most 64)"
                ))
            }
        })
        .collect()
}

/// What `wasi:config/store` answers for the function, first match wins: the secrets it lists (by
/// name, as text, read with `secret`), then `com.wasmgate.config.KEY` annotations, then its `envVars`.
pub fn config_values(
    settings: &FunctionSettings,
    secret: impl Fn(&str) -> Option<Vec<u8>>,
) -> Vec<(String, String)> {
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

/// `limits.memory` in bytes (at least [`MIN_MEMORY_BYTES`]); `None` when not set.
pub fn memory_limit(settings: &FunctionSettings) -> Result<Option<u64>, String> {
    let Some(text) = settings.limits.as_ref().and_then(|l| l.memory.as_deref()) else {
        return Ok(None);
    };
    let bytes = parse_memory(text).map_err(|e| format!("limits.memory: {e}"))?;
    if bytes < MIN_MEMORY_BYTES {
        return Err(format!(
            "limits.memory {text} is less than one WebAssembly page (64Ki)"
        ));
    }
    Ok(Some(bytes))
}

/// `envVars.exec_timeout`, more than zero; `None` when not set.
pub fn exec_timeout(settings: &FunctionSettings) -> Result<Option<Duration>, String> {
    let Some(text) = env(settings, ENV_EXEC_TIMEOUT) else {
        return Ok(None);
    };
    let timeout = parse_duration(text).map_err(|e| format!("envVars.{ENV_EXEC_TIMEOUT}: {e}"))?;
    if timeout.is_zero() {
        return Err(format!("envVars.{ENV_EXEC_TIMEOUT} must be more than zero"));
    }
    Ok(Some(timeout))
}

/// `envVars.max_inflight`, above zero; `None` when not set.
pub fn max_inflight(settings: &FunctionSettings) -> Result<Option<u32>, String> {
    let Some(text) = env(settings, ENV_MAX_INFLIGHT) else {
        return Ok(None);
    };
    match text.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(format!(
            "envVars.{ENV_MAX_INFLIGHT} must be a whole number of requests above zero, not {text:?}"
        )),
    }
}

/// The `envVars` entry `key`, as the text given.
pub fn env<'a>(settings: &'a FunctionSettings, key: &str) -> Option<&'a String> {
    settings.env_vars.as_ref().and_then(|e| e.get(key))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::types::Resources;

    fn map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn with(
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> FunctionSettings {
        FunctionSettings {
            labels: map(labels),
            annotations: map(annotations),
            env_vars: map(env),
            ..FunctionSettings::default()
        }
    }

    #[test]
    fn scale_to_zero_needs_the_label_and_defaults_its_duration() {
        let none = with(&[(LABEL_SCALE_ZERO_DURATION, "1m")], &[], &[]);
        assert_eq!(scale_zero_after(&none), None);
        let default = with(&[(LABEL_SCALE_ZERO, "true")], &[], &[]);
        assert_eq!(
            scale_zero_after(&default),
            Some(DEFAULT_SCALE_ZERO_DURATION)
        );
        let set = with(
            &[
                (LABEL_SCALE_ZERO, "true"),
                (LABEL_SCALE_ZERO_DURATION, "90s"),
            ],
            &[],
            &[],
        );
        assert_eq!(scale_zero_after(&set), Some(Duration::from_secs(90)));
        // A stored duration that no longer parses falls back; the check at deploy refuses it.
        let bad = with(
            &[
                (LABEL_SCALE_ZERO, "true"),
                (LABEL_SCALE_ZERO_DURATION, "soon"),
            ],
            &[],
            &[],
        );
        assert_eq!(scale_zero_after(&bad), Some(DEFAULT_SCALE_ZERO_DURATION));
        let error = scale_zero_duration(&bad).expect_err("refused");
        assert!(
            error.starts_with("label com.openfaas.scale.zero-duration: "),
            "{error}"
        );
    }

    #[test]
    fn whole_numbers_come_from_an_annotation_then_a_label() {
        assert_eq!(instance_reuse(&with(&[], &[], &[])), Ok(0));
        let label_only = with(&[(ANNOTATION_INSTANCE_REUSE, "5")], &[], &[]);
        assert_eq!(instance_reuse(&label_only), Ok(5));
        let both = with(
            &[(ANNOTATION_INSTANCE_REUSE, "5")],
            &[(ANNOTATION_INSTANCE_REUSE, " 7 ")],
            &[],
        );
        assert_eq!(instance_reuse(&both), Ok(7));
        let bad = with(&[], &[(ANNOTATION_INSTANCE_CONCURRENCY, "many")], &[]);
        assert_eq!(
            instance_concurrency(&bad),
            Err(
                "com.wasmgate.instance-concurrency must be a whole number of requests served \
                 at once per instance, not \"many\""
                    .to_string()
            )
        );
        assert_eq!(
            scale_min(&with(&[(LABEL_SCALE_MIN, "3")], &[], &[])),
            Ok(Some(3))
        );
        assert!(scale_min(&with(&[(LABEL_SCALE_MIN, "-1")], &[], &[])).is_err());
    }

    #[test]
    fn limits_are_parsed_and_bounded_below() {
        let mut settings = with(
            &[],
            &[],
            &[(ENV_EXEC_TIMEOUT, "2s"), (ENV_MAX_INFLIGHT, "4")],
        );
        settings.limits = Some(Resources {
            memory: Some("128Mi".to_string()),
            ..Resources::default()
        });
        assert_eq!(memory_limit(&settings), Ok(Some(128 * 1024 * 1024)));
        assert_eq!(exec_timeout(&settings), Ok(Some(Duration::from_secs(2))));
        assert_eq!(max_inflight(&settings), Ok(Some(4)));
        settings.limits = Some(Resources {
            memory: Some("1Ki".to_string()),
            ..Resources::default()
        });
        assert_eq!(
            memory_limit(&settings),
            Err("limits.memory 1Ki is less than one WebAssembly page (64Ki)".to_string())
        );
        let zero = with(
            &[],
            &[],
            &[(ENV_EXEC_TIMEOUT, "0s"), (ENV_MAX_INFLIGHT, "0")],
        );
        assert_eq!(
            exec_timeout(&zero),
            Err("envVars.exec_timeout must be more than zero".to_string())
        );
        assert!(max_inflight(&zero).is_err());
        assert_eq!(exec_timeout(&with(&[], &[], &[])), Ok(None));
    }

    #[test]
    fn buckets_and_config_values() {
        let settings = with(
            &[],
            &[
                (ANNOTATION_KEYVALUE_BUCKETS, "carts, , sessions.v2"),
                ("com.wasmgate.config.colour", "blue"),
            ],
            &[("colour", "red")],
        );
        assert_eq!(
            keyvalue_buckets(&settings),
            Ok(vec!["carts".to_string(), "sessions.v2".to_string()])
        );
        assert_eq!(
            config_values(&settings, |_| None),
            [
                ("colour".to_string(), "blue".to_string()),
                ("colour".to_string(), "red".to_string())
            ]
        );
        let bad = with(&[], &[(ANNOTATION_KEYVALUE_BUCKETS, "a/b")], &[]);
        assert!(
            keyvalue_buckets(&bad)
                .expect_err("refused")
                .contains("\"a/b\"")
        );
    }
}
