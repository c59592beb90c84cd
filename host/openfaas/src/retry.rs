//! Retries of async calls: the `com.openfaas.retry.*` annotations (OpenFaaS Pro's) and the backoff.

use std::time::Duration;

/// `com.openfaas.retry.attempts`: attempts in all, the first included.
pub const ANNOTATION_RETRY_ATTEMPTS: &str = "com.openfaas.retry.attempts";
/// `com.openfaas.retry.codes`: statuses that are retried, comma-separated.
pub const ANNOTATION_RETRY_CODES: &str = "com.openfaas.retry.codes";
/// `com.openfaas.retry.min_wait`: the first backoff, a Go duration.
pub const ANNOTATION_RETRY_MIN_WAIT: &str = "com.openfaas.retry.min_wait";
/// `com.openfaas.retry.max_wait`: the longest backoff, a Go duration.
pub const ANNOTATION_RETRY_MAX_WAIT: &str = "com.openfaas.retry.max_wait";

/// How a function's failed calls are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all.
    pub attempts: u32,
    /// Retried statuses.
    pub codes: Vec<u16>,
    /// The first wait.
    pub min_wait: Duration,
    /// The longest wait.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    /// OpenFaaS Pro's defaults: 10 attempts, 10 s then doubling up to 120 s.
    fn default() -> Self {
        RetryPolicy {
            attempts: 10,
            codes: vec![408, 429, 500, 502, 503, 504],
            min_wait: Duration::from_secs(10),
            max_wait: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The policy the `com.openfaas.retry.*` annotations describe (defaults for those absent).
    pub fn from_annotations(
        annotations: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Result<RetryPolicy, String> {
        let mut policy = RetryPolicy::default();
        let Some(annotations) = annotations else {
            return Ok(policy);
        };
        if let Some(value) = annotations.get(ANNOTATION_RETRY_ATTEMPTS) {
            policy.attempts = value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    format!(
                        "{ANNOTATION_RETRY_ATTEMPTS} must be a number from 1 to 100, not {value:?}"
                    )
                })?;
        }
        if let Some(value) = annotations.get(ANNOTATION_RETRY_CODES) {
            policy.codes = value
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| {
                    c.parse::<u16>()
                        .ok()
                        .filter(|c| (100..=599).contains(c))
                        .ok_or_else(|| {
                            format!("{ANNOTATION_RETRY_CODES}: {c:?} is not an HTTP status")
                        })
                })
                .collect::<Result<_, _>>()?;
        }
        let wait = |key: &str, default: Duration| -> Result<Duration, String> {
            match annotations.get(key) {
                None => Ok(default),
                Some(value) => {
                    crate::duration::parse_duration(value).map_err(|e| format!("{key}: {e}"))
                }
            }
        };
        policy.min_wait = wait(ANNOTATION_RETRY_MIN_WAIT, policy.min_wait)?;
        policy.max_wait = wait(ANNOTATION_RETRY_MAX_WAIT, policy.max_wait)?;
        if policy.min_wait > policy.max_wait {
            return Err(format!(
                "{ANNOTATION_RETRY_MIN_WAIT} ({:?}) is longer than {ANNOTATION_RETRY_MAX_WAIT} ({:?})",
                policy.min_wait, policy.max_wait
            ));
        }
        Ok(policy)
    }

    /// The wait before the attempt after `attempts`: `min_wait` doubled per attempt, at most
    /// `max_wait`, then a random part of it (between half and all) so retries spread out.
    pub fn backoff(&self, attempts: u32) -> Duration {
        backoff(self.min_wait, self.max_wait, attempts)
    }
}

/// `min` doubled per attempt after the first, at most `max`, then a random part of it (between
/// half and all) so that retries spread out.
pub fn backoff(min: Duration, max: Duration, attempts: u32) -> Duration {
    let doubled = min.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let wait = doubled.min(max);
    let half = wait / 2;
    half + wait.saturating_sub(half).mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_annotations() {
        let mut annotations = std::collections::BTreeMap::new();
        assert_eq!(
            RetryPolicy::from_annotations(Some(&annotations)),
            Ok(RetryPolicy::default())
        );
        annotations.insert(ANNOTATION_RETRY_ATTEMPTS.to_string(), "3".to_string());
        annotations.insert(ANNOTATION_RETRY_CODES.to_string(), "503, 429".to_string());
        annotations.insert(ANNOTATION_RETRY_MIN_WAIT.to_string(), "100ms".to_string());
        annotations.insert(ANNOTATION_RETRY_MAX_WAIT.to_string(), "1s".to_string());
        let policy = RetryPolicy::from_annotations(Some(&annotations)).expect("valid");
        assert_eq!(policy.attempts, 3);
        assert_eq!(policy.codes, vec![503, 429]);
        assert_eq!(policy.min_wait, Duration::from_millis(100));
        for attempt in 1..10 {
            let wait = policy.backoff(attempt);
            let full =
                Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(1));
            assert!(
                wait >= full / 2 && wait <= full,
                "{attempt}: {wait:?} vs {full:?}"
            );
        }
        for (key, bad) in [
            (ANNOTATION_RETRY_ATTEMPTS, "0"),
            (ANNOTATION_RETRY_ATTEMPTS, "many"),
            (ANNOTATION_RETRY_CODES, "700"),
            (ANNOTATION_RETRY_MIN_WAIT, "soon"),
            (ANNOTATION_RETRY_MIN_WAIT, "5s"),
        ] {
            let mut annotations = annotations.clone();
            annotations.insert(key.to_string(), bad.to_string());
            let error = RetryPolicy::from_annotations(Some(&annotations)).expect_err(bad);
            assert!(error.contains(key), "{error}");
        }
    }
}
