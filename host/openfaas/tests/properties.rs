//! Property tests for every parser of outside input: function names, memory quantities, durations,
//! FunctionDeployment JSON. Each must never panic on any input, and must read back what it writes.
//! (Request paths are covered in `gateway.rs`'s unit tests, where the URI builder lives.)

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use wasmgate_openfaas::duration::parse_duration;
use wasmgate_openfaas::names::{DEFAULT_NAMESPACE, FunctionRef};
use wasmgate_openfaas::quantity::{format_memory, parse_memory};
use wasmgate_openfaas::types::FunctionDeployment;

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_][a-zA-Z0-9_-]{0,40}"
}

fn namespace() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?"
}

proptest! {
    #[test]
    fn names_never_panic(text in any::<String>()) {
        let _ = FunctionRef::parse(&text);
    }

    #[test]
    fn names_split_at_the_last_dot(name in name(), namespace in namespace()) {
        let plain = FunctionRef::parse(&name).expect("a valid name");
        prop_assert_eq!(&plain.name, &name);
        prop_assert_eq!(plain.namespace.as_str(), DEFAULT_NAMESPACE);
        let qualified = FunctionRef::parse(&format!("{name}.{namespace}")).expect("valid");
        prop_assert_eq!(&qualified.name, &name);
        prop_assert_eq!(&qualified.namespace, &namespace);
        prop_assert_eq!(FunctionRef::parse(&qualified.key()).expect("round trip"), qualified);
    }

    #[test]
    fn names_with_path_characters_are_refused(name in name(), bad in "[/\\\\?#% \u{0}]") {
        let text = format!("{name}{bad}x");
        prop_assert!(FunctionRef::parse(&text).is_err(), "{} was accepted", text);
    }

    #[test]
    fn quantities_never_panic(text in any::<String>()) {
        let _ = parse_memory(&text);
    }

    #[test]
    fn quantities_scale_by_their_suffix(n in 0u64..1_000_000, suffix in 0usize..7) {
        let (text, multiplier) = [
            ("", 1u64), ("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30),
            ("k", 1000), ("M", 1_000_000), ("G", 1_000_000_000),
        ][suffix];
        prop_assert_eq!(parse_memory(&format!("{n}{text}")), Ok(n * multiplier));
    }

    #[test]
    fn quantities_read_back_what_is_written(bytes in 0u64..(1 << 50)) {
        prop_assert_eq!(parse_memory(&format_memory(bytes)), Ok(bytes));
    }

    #[test]
    fn durations_never_panic(text in any::<String>()) {
        let _ = parse_duration(&text);
    }

    #[test]
    fn durations_add_their_parts(h in 0u64..100, m in 0u64..100, s in 0u64..100, ms in 0u64..1000) {
        let text = format!("{h}h{m}m{s}s{ms}ms");
        let expected = Duration::from_secs(h * 3600 + m * 60 + s) + Duration::from_millis(ms);
        prop_assert_eq!(parse_duration(&text), Ok(expected));
        // A bare number is seconds, as of-watchdog reads it.
        prop_assert_eq!(parse_duration(&s.to_string()), Ok(Duration::from_secs(s)));
    }

    #[test]
    fn deployments_never_panic(text in any::<String>()) {
        let _ = serde_json::from_str::<FunctionDeployment>(&text);
    }

    #[test]
    fn deployment_json_never_panics_on_json(value in json()) {
        let _ = serde_json::from_value::<FunctionDeployment>(value);
    }

    #[test]
    fn deployments_read_back_what_is_written(
        service in name(),
        image in "[ -~]{1,60}",
        namespace in proptest::option::of(namespace()),
        env in proptest::collection::btree_map("[A-Z_]{1,10}", "[ -~]{0,20}", 0..5),
        labels in proptest::collection::btree_map("[a-z.]{1,20}", "[ -~]{0,20}", 0..5),
    ) {
        let mut json = serde_json::json!({"service": service, "image": image, "envVars": env, "labels": labels});
        if let Some(namespace) = &namespace {
            json["namespace"] = serde_json::Value::String(namespace.clone());
        }
        let deployment: FunctionDeployment = serde_json::from_value(json).expect("parses");
        prop_assert_eq!(&deployment.service, &service);
        prop_assert_eq!(&deployment.namespace, &namespace);
        let env_read: BTreeMap<String, String> =
            deployment.settings.env_vars.clone().unwrap_or_default().into_iter().collect();
        prop_assert_eq!(env_read, env);
        let text = serde_json::to_string(&deployment).expect("serialises");
        let again: FunctionDeployment = serde_json::from_str(&text).expect("parses again");
        prop_assert_eq!(again, deployment);
    }
}

/// Arbitrary JSON values, nested a few levels, with keys that the deployment reads among others.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<String>().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("service".to_string()),
                    Just("image".to_string()),
                    Just("envVars".to_string()),
                    Just("limits".to_string()),
                    Just("labels".to_string()),
                    Just("annotations".to_string()),
                    Just("secrets".to_string()),
                    any::<String>(),
                ],
                inner,
                0..6,
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
