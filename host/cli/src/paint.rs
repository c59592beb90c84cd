//! Colour for people: on a terminal only, and never when `NO_COLOR` is set (https://no-color.org).

use std::io::IsTerminal;

/// Whether standard output gets colour.
pub fn enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

fn paint(text: &str, code: &str, on: bool) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Success.
pub fn green(text: &str, on: bool) -> String {
    paint(text, "32", on)
}

/// Failure.
pub fn red(text: &str, on: bool) -> String {
    paint(text, "31", on)
}

/// Headings.
pub fn bold(text: &str, on: bool) -> String {
    paint(text, "1", on)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_is_plain_text() {
        assert_eq!(green("ok", false), "ok");
        assert_eq!(red("no", true), "\x1b[31mno\x1b[0m");
    }
}
