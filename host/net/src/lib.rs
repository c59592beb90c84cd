//! What the host crates share about talking HTTP (the gateway's server and callbacks, the registry
//! client, the command-line client).

/// An error and its causes on one line (`outer: cause: root cause`), for errors whose `Display` shows
/// only the outermost layer (hyper's, for one).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
