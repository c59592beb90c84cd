//! Memory quantities written the Kubernetes way, as OpenFaaS `limits.memory` takes them: `128Mi`,
//! `1Gi`, `500M`, `1.5Gi`, `134217728`, `129e6`.

/// Parses a Kubernetes memory quantity into bytes.
///
/// Binary suffixes `Ki Mi Gi Ti Pi Ei` (powers of 1024), decimal suffixes `k M G T P E` (powers of
/// 1000), an exponent (`129e6`), or a plain number of bytes. Fractions are allowed (`1.5Gi`) and
/// rounded up to a whole byte. A milli suffix (`m`) is refused: a thousandth of a byte is never meant.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let invalid = |why: &str| Err(format!("invalid memory quantity {text:?}: {why}"));
    if text.is_empty() {
        return invalid("it is empty");
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return invalid("expected a number such as 128Mi, 1Gi or 500M");
    }
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "m" => return invalid("a milli-byte suffix (m) makes no sense for memory; use Mi or M"),
        exponent if exponent.starts_with(['e', 'E']) => match exponent[1..].parse::<i32>() {
            Ok(power) if (0..=18).contains(&power) => 10f64.powi(power),
            _ => return invalid("the exponent must be a whole number from 0 to 18"),
        },
        _ => return invalid("unknown suffix; use Ki, Mi, Gi, Ti (or k, M, G, T)"),
    };
    let value: f64 = match number.parse() {
        Ok(value) => value,
        Err(_) => return invalid("bad number"),
    };
    let bytes = (value * multiplier).ceil();
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return invalid("too large");
    }
    Ok(bytes as u64)
}

/// Writes bytes back as a short quantity (`128Mi`, `1536Ki`, `500000000`), for messages.
pub fn format_memory(bytes: u64) -> String {
    for (suffix, unit) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_kubernetes_does() {
        let cases: [(&str, u64); 12] = [
            ("128Mi", 128 << 20),
            ("1Gi", 1 << 30),
            ("500M", 500_000_000),
            ("64Ki", 64 << 10),
            ("1.5Gi", 3 << 29),
            ("134217728", 134_217_728),
            ("129e6", 129_000_000),
            ("1k", 1000),
            (" 2Mi ", 2 << 20),
            ("0", 0),
            ("1E", 1_000_000_000_000_000_000),
            ("0.5Ki", 512),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_memory(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_quantities_say_why() {
        for (text, why) in [
            ("", "empty"),
            ("Mi", "expected a number"),
            ("12MB", "unknown suffix"),
            ("100m", "milli"),
            ("1.2.3Mi", "bad number"),
            ("1e99", "exponent"),
            ("99999Ei", "too large"),
            ("-1Mi", "expected a number"),
            (".5Mi", "expected a number"),
        ] {
            let error = parse_memory(text).expect_err(text);
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for bytes in [128u64 << 20, 1 << 30, 1536 << 10, 500_000_000, 7] {
            assert_eq!(parse_memory(&format_memory(bytes)), Ok(bytes));
        }
        assert_eq!(format_memory(128 << 20), "128Mi");
    }
}
