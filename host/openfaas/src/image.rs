//! A deployment's `image` as faas-cli sends it.
//!
//! `faas-cli deploy -f stack.yml` builds the image name with its tag format (`BuildImageName` in
//! faas-cli's `schema/image.go`): an image whose last `/`-segment has no `:` gets `:latest` appended,
//! whatever it is. So the stack file's `image: ./hello.wasm` arrives as `./hello.wasm:latest`, and
//! `image: sha256:<hex>` (which has a `:`) arrives as it is. A file path has no tags: the `:latest`
//! faas-cli added is dropped, and any other tag on a path is refused, since it cannot mean anything.

/// The tag faas-cli appends to an image that has none.
pub const CLI_DEFAULT_TAG: &str = "latest";

/// A path image with a tag other than the one faas-cli appends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "image {image:?} is a file path with the tag {tag:?}, and a path has no tags: give the path \
     alone (faas-cli adds \":latest\" to an image without a tag, which wasmgate drops on a path)"
)]
pub struct PathTagError {
    /// The image as given.
    pub image: String,
    /// The tag on it.
    pub tag: String,
}

/// Splits the tag off the last `/`-segment of `image`: `("./hello.wasm", Some("latest"))` for
/// `./hello.wasm:latest`; `(image, None)` when that segment has no `:`.
pub fn split_tag(image: &str) -> (&str, Option<&str>) {
    let segment_start = image.rfind('/').map_or(0, |slash| slash + 1);
    match image[segment_start..].rfind(':') {
        Some(colon) => {
            let colon = segment_start + colon;
            (&image[..colon], Some(&image[colon + 1..]))
        }
        None => (image, None),
    }
}

/// `image` without the `:latest` faas-cli appends: what the stack file said. An image with any
/// other tag, or none, is returned as it is.
pub fn without_cli_tag(image: &str) -> &str {
    match split_tag(image) {
        (name, Some(CLI_DEFAULT_TAG)) if !name.is_empty() => name,
        _ => image,
    }
}

/// The file a path image names: `./hello.wasm:latest` is `./hello.wasm`; a path with another tag
/// (`./hello.wasm:v2`) is refused with the reason.
pub fn path_of(image: &str) -> Result<&str, PathTagError> {
    match split_tag(image) {
        (_, None) => Ok(image),
        (name, Some(CLI_DEFAULT_TAG)) if !name.is_empty() => Ok(name),
        (_, Some(tag)) => Err(PathTagError {
            image: image.to_string(),
            tag: tag.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_taken_from_the_last_segment() {
        let cases = [
            ("./hello.wasm:latest", ("./hello.wasm", Some("latest"))),
            ("./hello.wasm", ("./hello.wasm", None)),
            ("hello.wasm:v2", ("hello.wasm", Some("v2"))),
            ("/srv/a:b/hello.wasm", ("/srv/a:b/hello.wasm", None)),
            (
                "/srv/a:b/hello.wasm:latest",
                ("/srv/a:b/hello.wasm", Some("latest")),
            ),
            ("localhost:5000/fn", ("localhost:5000/fn", None)),
            ("localhost:5000/fn:1.0", ("localhost:5000/fn", Some("1.0"))),
            ("sha256:ab", ("sha256", Some("ab"))),
        ];
        for (image, expected) in cases {
            assert_eq!(split_tag(image), expected, "{image:?}");
        }
    }

    #[test]
    fn only_the_tag_faas_cli_appends_is_dropped() {
        assert_eq!(without_cli_tag("./hello.wasm:latest"), "./hello.wasm");
        assert_eq!(without_cli_tag("ghcr.io/me/fn:latest"), "ghcr.io/me/fn");
        assert_eq!(without_cli_tag("ghcr.io/me/fn:v1"), "ghcr.io/me/fn:v1");
        assert_eq!(without_cli_tag("./hello.wasm"), "./hello.wasm");
        assert_eq!(without_cli_tag(":latest"), ":latest");
    }

    #[test]
    fn a_path_keeps_no_tag() {
        assert_eq!(path_of("./hello.wasm:latest"), Ok("./hello.wasm"));
        assert_eq!(path_of("fns/hello.wasm"), Ok("fns/hello.wasm"));
        assert_eq!(
            path_of("/tmp/x:y/hello.wasm:latest"),
            Ok("/tmp/x:y/hello.wasm")
        );
        let refused = path_of("./hello.wasm:v2").expect_err("a tag on a path");
        assert_eq!(refused.tag, "v2");
        let reason = refused.to_string();
        assert!(reason.contains("\"./hello.wasm:v2\""), "{reason}");
        assert!(reason.contains("a path has no tags"), "{reason}");
        assert!(path_of("./hello.wasm:").is_err());
        assert!(path_of(":latest").is_err());
    }
}
