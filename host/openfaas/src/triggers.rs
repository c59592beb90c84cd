//! What makes a function run besides its HTTP route: the annotations of OpenFaaS's event
//! connectors, read here and nowhere else. No I/O: the gateway's `connectors` module runs them.
//!
//! - `topic`: comma-separated. `cron-function` (as OpenFaaS's cron-connector reads it) asks for a
//!   schedule; every other entry is a NATS subject (as the nats-connector reads it), served in
//!   cluster mode.
//! - `schedule`: when `topic` lists `cron-function`, the schedule in the syntax of the cron-connector
//!   (robfig/cron v3's standard parser): five fields (minute, hour, day of month, month, day of
//!   week; names such as `MON` or `JAN`, ranges, lists, steps, `?`), or a descriptor: `@yearly`
//!   (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`, or `@every
//!   <Go duration>`. Times are UTC (`TZ=UTC` / `CRON_TZ=UTC` prefixes are accepted, other zones
//!   refused). The five fields are parsed by the `croner` crate; `@every` is ours.
//! - `async`: `"true"` sends every connector invocation of the function through the durable async
//!   queue (retries from `com.openfaas.retry.*`), as the cron-connector does with the same
//!   annotation; `"false"` or absent, it runs synchronously.
//! - `com.wasmgate.callback-url`: with `async: "true"`, where each connector invocation's result is
//!   POSTed (the `X-Callback-Url` of an async call).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::duration::parse_duration;
use crate::names::FunctionRef;

/// Annotation: the connectors' topics, comma-separated.
pub const ANNOTATION_TOPIC: &str = "topic";
/// Annotation: the cron schedule of a function whose topics include [`CRON_TOPIC`].
pub const ANNOTATION_SCHEDULE: &str = "schedule";
/// Annotation: `"true"` to run connector invocations through the async queue.
pub const ANNOTATION_ASYNC: &str = "async";
/// Annotation: where the result of an asynchronous connector invocation is POSTed.
pub const ANNOTATION_CALLBACK_URL: &str = "com.wasmgate.callback-url";
/// The topic that asks for a schedule (not a NATS subject).
pub const CRON_TOPIC: &str = "cron-function";
/// `X-Connector` of a scheduled invocation, as OpenFaaS's cron-connector sends it.
pub const CRON_CONNECTOR: &str = "cron-connector";
/// `X-Connector` of an invocation for a NATS message.
pub const NATS_CONNECTOR: &str = "nats-connector";
/// Most subjects one function may list (each is a subscription on every node).
pub const MAX_TOPICS: usize = 16;
/// Longest subject accepted.
pub const MAX_SUBJECT_LEN: usize = 256;

/// A schedule, parsed: five cron fields or `@every`.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// As written.
    text: String,
    when: When,
}

#[derive(Debug, Clone)]
enum When {
    Cron(Box<croner::Cron>),
    /// `@every`: whole seconds, at least one. Ticks fall on multiples of the period since the Unix
    /// epoch, so that every node of a cluster computes the same ones.
    Every(u64),
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.text == other.text
    }
}

impl Schedule {
    /// Parses a schedule as the cron-connector accepts it (see the module documentation).
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let written = text.trim();
        let mut rest = written;
        for prefix in ["TZ=", "CRON_TZ="] {
            if let Some(zoned) = rest.strip_prefix(prefix) {
                let (zone, after) = zoned.split_once(' ').unwrap_or((zoned, ""));
                if zone != "UTC" && zone != "Etc/UTC" {
                    return Err(format!(
                        "time zone {zone:?}: schedules run in UTC (only TZ=UTC is accepted)"
                    ));
                }
                rest = after.trim_start();
            }
        }
        if rest.is_empty() {
            return Err("empty schedule".into());
        }
        let when = if let Some(every) = rest.strip_prefix("@every") {
            let every = every.trim();
            let period = parse_duration(every).map_err(|e| format!("@every: {e}"))?;
            // robfig/cron truncates to whole seconds and runs at least every second.
            if period.is_zero() {
                return Err("@every needs a duration above zero".into());
            }
            When::Every(period.as_secs().max(1))
        } else if rest.starts_with('@') {
            let pattern = match rest {
                "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@hourly" => rest,
                "@midnight" => "@daily",
                other => {
                    return Err(format!(
                        "unknown descriptor {other:?} (use @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>)"
                    ));
                }
            };
            When::Cron(Box::new(parse_fields(pattern)?))
        } else {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.len() != 5 {
                return Err(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                    fields.len()
                ));
            }
            for field in &fields {
                refuse_extensions(field)?;
            }
            When::Cron(Box::new(parse_fields(&fields.join(" "))?))
        };
        Ok(Schedule {
            text: written.to_string(),
            when,
        })
    }

    /// The schedule as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first tick strictly after `after`, in whole seconds; `None` if there is none (a date
    /// that never comes, such as 30 February).
    pub fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        let seconds = after.duration_since(UNIX_EPOCH).ok()?.as_secs();
        match &self.when {
            When::Every(period) => {
                let next = (seconds / period).checked_add(1)?.checked_mul(*period)?;
                Some(UNIX_EPOCH + Duration::from_secs(next))
            }
            When::Cron(cron) => {
                let from = chrono::DateTime::<chrono::Utc>::from_timestamp(
                    i64::try_from(seconds).ok()?,
                    0,
                )?;
                let next = cron.find_next_occurrence(&from, false).ok()?;
                let next = u64::try_from(next.timestamp()).ok()?;
                Some(UNIX_EPOCH + Duration::from_secs(next))
            }
        }
    }
}

/// Five cron fields (or a descriptor croner knows) through croner, configured as robfig/cron's
/// standard parser: no seconds, no year, day of month OR day of week when both are restricted.
fn parse_fields(pattern: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(pattern)
        .map_err(|e| e.to_string())
}

/// croner reads Quartz's `L`, `W` and `#`, which the cron-connector refuses: refuse them too, so
/// a schedule means the same here as there.
fn refuse_extensions(field: &str) -> Result<(), String> {
    for piece in field.split([',', '-', '/']) {
        let upper = piece.to_ascii_uppercase();
        let quartz = upper.contains('#')
            || upper == "L"
            || upper == "LW"
            || ((upper.ends_with('L') || upper.ends_with('W'))
                && upper.len() > 1
                && upper[..upper.len() - 1].bytes().all(|b| b.is_ascii_digit()));
        if quartz {
            return Err(format!(
                "{piece:?}: L, W and # are not cron-connector syntax"
            ));
        }
    }
    Ok(())
}

/// What the connectors do with one function, from its annotations.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TriggerSpec {
    /// When `topic` lists [`CRON_TOPIC`]: its schedule.
    pub schedule: Option<Schedule>,
    /// The NATS subjects of `topic`, in order, without duplicates.
    pub subjects: Vec<String>,
    /// Connector invocations go through the async queue.
    pub asynchronous: bool,
    /// With `asynchronous`, where each result is POSTed.
    pub callback_url: Option<String>,
}

impl TriggerSpec {
    /// Reads the connector annotations; an error names the annotation and says what is wrong.
    pub fn from_annotations(
        annotations: Option<&BTreeMap<String, String>>,
    ) -> Result<TriggerSpec, String> {
        let get = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
        let mut spec = TriggerSpec::default();
        let mut cron = false;
        for topic in get(ANNOTATION_TOPIC).unwrap_or("").split(',') {
            let topic = topic.trim();
            if topic.is_empty() {
                continue;
            }
            if topic == CRON_TOPIC {
                cron = true;
                continue;
            }
            check_subject(topic)
                .map_err(|e| format!("{ANNOTATION_TOPIC}: subject {topic:?} {e}"))?;
            if !spec.subjects.iter().any(|s| s == topic) {
                spec.subjects.push(topic.to_string());
            }
        }
        if spec.subjects.len() > MAX_TOPICS {
            return Err(format!(
                "{ANNOTATION_TOPIC}: {} subjects, at most {MAX_TOPICS}",
                spec.subjects.len()
            ));
        }
        match (cron, get(ANNOTATION_SCHEDULE)) {
            (true, Some(text)) => {
                let schedule = Schedule::parse(text)
                    .map_err(|e| format!("{ANNOTATION_SCHEDULE} {text:?}: {e}"))?;
                spec.schedule = Some(schedule);
            }
            (true, None) => {
                return Err(format!(
                    "{ANNOTATION_TOPIC}: {CRON_TOPIC} needs a {ANNOTATION_SCHEDULE} annotation"
                ));
            }
            (false, Some(text)) => {
                return Err(format!(
                    "{ANNOTATION_SCHEDULE} {text:?} needs {ANNOTATION_TOPIC}: {CRON_TOPIC}"
                ));
            }
            (false, None) => {}
        }
        spec.asynchronous = match get(ANNOTATION_ASYNC).map(str::trim) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(format!(
                    "{ANNOTATION_ASYNC} {other:?} must be \"true\" or \"false\""
                ));
            }
        };
        if let Some(url) = get(ANNOTATION_CALLBACK_URL) {
            let url = url.trim();
            if !spec.asynchronous {
                return Err(format!(
                    "{ANNOTATION_CALLBACK_URL} needs {ANNOTATION_ASYNC}: \"true\""
                ));
            }
            let uri = http::Uri::from_str(url)
                .map_err(|e| format!("{ANNOTATION_CALLBACK_URL} {url:?} is not a URL: {e}"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
                return Err(format!(
                    "{ANNOTATION_CALLBACK_URL} {url:?} must be an absolute http:// or https:// URL"
                ));
            }
            spec.callback_url = Some(url.to_string());
        }
        Ok(spec)
    }

    /// Whether any connector runs the function.
    pub fn is_empty(&self) -> bool {
        self.schedule.is_none() && self.subjects.is_empty()
    }
}

/// A NATS subject to subscribe to: dot-separated tokens, no whitespace, `*` as a whole token, `>`
/// as the last one.
fn check_subject(subject: &str) -> Result<(), String> {
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(format!("is longer than {MAX_SUBJECT_LEN} bytes"));
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("holds whitespace".into());
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err("has an empty token (two dots, or a dot at an end)".into());
        }
        if token.contains('>') && (*token != ">" || i + 1 != tokens.len()) {
            return Err("may hold > only as its last token".into());
        }
        if token.contains('*') && *token != "*" {
            return Err("may hold * only as a whole token".into());
        }
    }
    Ok(())
}

/// A function's triggers as the status JSON shows them (`triggers`, a wasmgate field).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Triggers {
    /// The HTTP route: `/function/<name>.<namespace>`.
    pub route: String,
    /// The cron schedule, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The NATS subjects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// Connector invocations go through the async queue.
    #[serde(default, rename = "async", skip_serializing_if = "std::ops::Not::not")]
    pub asynchronous: bool,
}

impl Triggers {
    /// The triggers of `function` with these annotations. Annotations that do not parse (a record
    /// from an older version) leave only the route.
    pub fn of(function: &FunctionRef, annotations: Option<&BTreeMap<String, String>>) -> Triggers {
        let spec = TriggerSpec::from_annotations(annotations).unwrap_or_default();
        let asynchronous = spec.asynchronous && !spec.is_empty();
        Triggers {
            route: format!("/function/{}", function.key()),
            schedule: spec.schedule.map(|s| s.as_str().to_string()),
            topics: spec.subjects,
            asynchronous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        crate::time::parse_rfc3339(text).expect("a time")
    }

    fn next(schedule: &str, after: &str) -> String {
        let schedule = Schedule::parse(schedule).expect("valid");
        crate::time::format_rfc3339(schedule.next_after(at(after)).expect("a tick"), false)
    }

    #[test]
    fn schedules_tick_as_the_cron_connector_would() {
        let cases = [
            (
                "*/5 * * * *",
                "2026-12-01T10:02:30Z",
                "2026-12-01T10:05:00Z",
            ),
            (
                "*/5 * * * *",
                "2026-12-01T10:05:00Z",
                "2026-12-01T10:10:00Z",
            ),
            (
                "0 9 * * MON-FRI",
                "2026-12-05T12:00:00Z",
                "2026-12-07T09:00:00Z",
            ),
            (
                "30 2 1 JAN ?",
                "2026-12-01T00:00:00Z",
                "2027-01-01T02:30:00Z",
            ),
            ("0 0 13 * 5", "2026-12-01T00:00:00Z", "2026-12-04T00:00:00Z"),
            ("@hourly", "2026-12-01T10:02:30Z", "2026-12-01T11:00:00Z"),
            ("@daily", "2026-12-01T10:02:30Z", "2026-12-02T00:00:00Z"),
            ("@midnight", "2026-12-01T10:02:30Z", "2026-12-02T00:00:00Z"),
            ("@weekly", "2026-12-01T10:02:30Z", "2026-12-06T00:00:00Z"),
            ("@monthly", "2026-12-01T10:02:30Z", "2027-01-01T00:00:00Z"),
            ("@yearly", "2026-12-01T10:02:30Z", "2027-01-01T00:00:00Z"),
            ("@annually", "2026-12-01T10:02:30Z", "2027-01-01T00:00:00Z"),
            ("@every 30s", "2026-12-01T10:02:31Z", "2026-12-01T10:03:00Z"),
            ("@every 1s", "2026-12-01T10:02:31Z", "2026-12-01T10:02:32Z"),
            (
                "@every 1m30s",
                "2026-12-01T10:02:31Z",
                "2026-12-01T10:03:00Z",
            ),
            (
                "@every 1500ms",
                "2026-12-01T10:02:31Z",
                "2026-12-01T10:02:32Z",
            ),
            (
                "TZ=UTC 0 12 * * *",
                "2026-12-01T10:02:31Z",
                "2026-12-01T12:00:00Z",
            ),
        ];
        for (schedule, after, expected) in cases {
            assert_eq!(next(schedule, after), expected, "{schedule} after {after}");
        }
    }

    #[test]
    fn a_bad_schedule_says_what_is_wrong() {
        let cases = [
            ("", "empty schedule"),
            ("* * * *", "expected 5 fields"),
            ("0 * * * * *", "expected 5 fields"),
            ("61 * * * *", ""),
            ("* * 32 * *", ""),
            ("@fortnightly", "unknown descriptor"),
            ("@every", "@every"),
            ("@every 0s", "above zero"),
            ("@every soon", "@every"),
            ("0 0 L * *", "L, W and #"),
            ("0 0 15W * *", "L, W and #"),
            ("0 0 * * 5#3", "L, W and #"),
            ("TZ=Europe/Paris 0 0 * * *", "UTC"),
        ];
        for (schedule, reason) in cases {
            let error = Schedule::parse(schedule).expect_err(schedule);
            assert!(error.contains(reason), "{schedule:?}: {error}");
        }
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn annotations_become_triggers() {
        let spec = TriggerSpec::from_annotations(Some(&annotations(&[
            ("topic", "cron-function, orders.new ,orders.*,orders.new"),
            ("schedule", "*/5 * * * *"),
            ("async", "true"),
            ("com.wasmgate.callback-url", "http://127.0.0.1:9000/done"),
        ])))
        .expect("valid");
        assert_eq!(
            spec.schedule.as_ref().map(Schedule::as_str),
            Some("*/5 * * * *")
        );
        assert_eq!(spec.subjects, ["orders.new", "orders.*"]);
        assert!(spec.asynchronous);
        assert_eq!(
            spec.callback_url.as_deref(),
            Some("http://127.0.0.1:9000/done")
        );

        let plain = TriggerSpec::from_annotations(None).expect("valid");
        assert!(plain.is_empty() && !plain.asynchronous);
        let topics_only =
            TriggerSpec::from_annotations(Some(&annotations(&[("topic", "a,b.>")]))).expect("ok");
        assert_eq!(topics_only.subjects, ["a", "b.>"]);
        assert!(topics_only.schedule.is_none());
    }

    #[test]
    fn bad_annotations_are_refused_with_their_name() {
        let cases: [(&[(&str, &str)], &str); 9] = [
            (&[("topic", "cron-function")], "needs a schedule annotation"),
            (&[("schedule", "@hourly")], "needs topic: cron-function"),
            (
                &[("topic", "cron-function"), ("schedule", "0 25 * * *")],
                "schedule \"0 25 * * *\"",
            ),
            (&[("topic", "a b")], "whitespace"),
            (&[("topic", "a..b")], "empty token"),
            (&[("topic", "a.>.b")], "last token"),
            (&[("topic", "a.b*")], "whole token"),
            (&[("topic", "a"), ("async", "yes")], "async \"yes\""),
            (
                &[("topic", "a"), ("com.wasmgate.callback-url", "http://x/")],
                "needs async",
            ),
        ];
        for (pairs, reason) in cases {
            let error = TriggerSpec::from_annotations(Some(&annotations(pairs)))
                .expect_err(&format!("{pairs:?}"));
            assert!(error.contains(reason), "{pairs:?}: {error}");
        }
        let many: Vec<String> = (0..=MAX_TOPICS).map(|i| format!("t{i}")).collect();
        let error =
            TriggerSpec::from_annotations(Some(&annotations(&[("topic", &many.join(","))])))
                .expect_err("too many");
        assert!(error.contains("at most"), "{error}");
        let error = TriggerSpec::from_annotations(Some(&annotations(&[
            ("topic", "a"),
            ("async", "true"),
            ("com.wasmgate.callback-url", "ftp://x/"),
        ])))
        .expect_err("ftp");
        assert!(error.contains("absolute http"), "{error}");
    }

    #[test]
    fn the_status_shows_route_schedule_and_topics() {
        let function = FunctionRef::new("tick", None).expect("a name");
        let triggers = Triggers::of(
            &function,
            Some(&annotations(&[
                ("topic", "cron-function,jobs"),
                ("schedule", "@every 1s"),
            ])),
        );
        let json = serde_json::to_value(&triggers).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({"route": "/function/tick.openfaas-fn", "schedule": "@every 1s", "topics": ["jobs"]})
        );
        let plain = serde_json::to_value(Triggers::of(&function, None)).expect("JSON");
        assert_eq!(
            plain,
            serde_json::json!({"route": "/function/tick.openfaas-fn"})
        );
    }
}
