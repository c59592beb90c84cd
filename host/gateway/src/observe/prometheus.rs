//! The Prometheus text exposition format (0.0.4), the one writer of `/metrics`: the gateway's own
//! metrics ([`super::metrics`]) and the async queue's lines both go through it.
//!
//! Written by hand rather than with the `prometheus-client` crate: the format is four line shapes,
//! the OpenFaaS metric names are fixed, and the counters on the request path are plain atomics that
//! a registry would wrap again.

use std::fmt::{Display, Write as _};

/// The `# HELP` and `# TYPE` lines that open a metric family; `kind` is `counter`, `gauge` or
/// `histogram`.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample line: `name{labels} value`, or `name value` when `labels` (`k="v",...`) is empty.
pub fn sample(out: &mut String, name: &str, labels: &str, value: impl Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Formats a float so Prometheus parses it (`+Inf`/`-Inf`/`NaN` spelled its way).
pub fn float(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else if v.is_nan() {
        "NaN".to_string()
    } else {
        format!("{v}")
    }
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let mut out = String::new();
        header(&mut out, "m", "counter", "Things.");
        sample(&mut out, "m", "function_name=\"f\"", 3);
        sample(&mut out, "m", "", 4);
        assert_eq!(
            out,
            "# HELP m Things.\n# TYPE m counter\nm{function_name=\"f\"} 3\nm 4\n"
        );
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(0.5), "0.5");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
