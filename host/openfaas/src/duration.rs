//! Durations written the way Go (and so OpenFaaS) writes them: `30s`, `1m30s`, `250ms`, `1h`.
//! A bare number is taken as seconds, as of-watchdog does.

use std::time::Duration;

/// Parses a Go-style duration such as `1m30s`. Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number before {rest:?}"
            ));
        }
        let value: f64 = rest[..digits].parse().map_err(|_| {
            format!(
                "invalid duration {text:?}: bad number {:?}",
                &rest[..digits]
            )
        })?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "invalid duration {text:?}: missing unit (use s, ms, m or h)"
                ));
            }
            unit => return Err(format!("invalid duration {text:?}: unknown unit {unit:?}")),
        };
        rest = &rest[unit_len..];
        let part = Duration::try_from_secs_f64(value * unit_seconds)
            .map_err(|_| format!("invalid duration {text:?}: out of range"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("invalid duration {text:?}: out of range"))?;
    }
    Ok(total)
}

/// Writes a duration back the Go way, as [`parse_duration`] reads it: `30s`, `15m`, `1h30m`, `250ms`
/// (whole milliseconds; below a millisecond, nanoseconds).
pub fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_string();
    }
    let nanos = duration.subsec_nanos();
    if nanos != 0 {
        let total = duration.as_nanos();
        return if total.is_multiple_of(1_000_000) {
            format!("{}ms", total / 1_000_000)
        } else {
            format!("{total}ns")
        };
    }
    let seconds = duration.as_secs();
    let mut text = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        let count = (seconds / size) % if unit == "h" { u64::MAX } else { 60 };
        if count > 0 {
            text.push_str(&format!("{count}{unit}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_back() {
        for (text, duration) in [
            ("30s", Duration::from_secs(30)),
            ("15m", Duration::from_secs(15 * 60)),
            ("1h30m", Duration::from_secs(90 * 60)),
            ("1m5s", Duration::from_secs(65)),
            ("250ms", Duration::from_millis(250)),
            ("1500ms", Duration::from_millis(1500)),
            ("7ns", Duration::from_nanos(7)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration), "{text}");
        }
    }

    #[test]
    fn parses_go_durations() {
        let ms = Duration::from_millis;
        let cases = [
            ("30s", Ok(ms(30_000))),
            ("1m30s", Ok(ms(90_000))),
            ("250ms", Ok(ms(250))),
            ("1h", Ok(ms(3_600_000))),
            ("1.5s", Ok(ms(1_500))),
            ("10", Ok(ms(10_000))),
            ("0", Ok(ms(0))),
            ("", Err(())),
            ("s", Err(())),
            ("10x", Err(())),
            ("1.5", Err(())),
            ("-1s", Err(())),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_duration(input).map_err(|_| ()), expected, "{input:?}");
        }
    }
}
