//! A component's static `files`: the manifest's entries ([`FileMount`]), and the archive in which
//! the files travel to the gateway ([`pack`], [`read_archive`]).
//!
//! In `spin.toml`, `files = ["static/**/*", "index.html", { source = "assets", destination = "/x" }]`:
//! a string is a path or a glob relative to the manifest's folder, whose files the guest sees at the
//! same path from `/` (`static/a.css` at `/static/a.css`); a `{ source, destination }` puts a file
//! at `destination`, or a folder's files under it. `exclude_files` (globs, relative to the
//! manifest's folder) leaves out files that a glob or a folder would bring. The client (`wasmgate
//! deploy -f`, `serve -f`) resolves the globs, since only it has the folder.
//!
//! The files of one component travel as one archive, a POSIX tar of regular files whose names are
//! the guests' paths without the leading `/`, uploaded like a component and named by its digest.
//! The gateway reads it with [`read_archive`], which refuses anything but regular files (and
//! folders) under plain relative names, more than [`MAX_FILES`] of them, a name given twice, and a
//! file that is also a folder. The archive's size bounds the files' total size (tar does not
//! compress).

use std::collections::BTreeSet;
use std::ops::Range;

/// Files one component may have.
pub const MAX_FILES: usize = 10_000;
/// Bytes of one guest path at most.
pub const MAX_PATH_BYTES: usize = 1024;
/// The media type of a files archive, as uploaded.
pub const MEDIA_TYPE: &str = "application/x-tar";

/// One entry of a component's `files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileMount {
    /// A path or a glob, relative to the manifest's folder; its files keep their paths.
    Pattern(String),
    /// `{ source, destination }`: a file, or a folder's files, at `destination` (absolute).
    Placement {
        /// A file or a folder, relative to the manifest's folder.
        source: String,
        /// Where the guest sees it, `/` for the root.
        destination: String,
    },
}

/// Whether `path` (`/`-separated) is plain: no `..`, no `.`, nothing empty between separators.
fn is_plain(path: &str) -> bool {
    path.split('/')
        .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Reads one entry of `files`; `at` names it (`component.web.files[0]`).
pub(crate) fn parse_mount(at: &str, value: toml::Value) -> Result<FileMount, String> {
    let fail = |why: &str| Err(format!("{at}: {why}"));
    match value {
        toml::Value::String(pattern) => {
            let trimmed = pattern.trim_start_matches("./");
            if trimmed.is_empty() || trimmed == "." {
                return fail(
                    "a pattern names files, not the manifest's folder; use \"**/*\" or \
                     { source = \".\", destination = \"/\" }",
                );
            }
            if pattern.starts_with('/') {
                return fail("a pattern is relative to the manifest's folder, not absolute");
            }
            if !is_plain(trimmed.trim_end_matches('/')) {
                return fail(
                    "a pattern must stay inside the manifest's folder, without `.` or `..` \
                     (use a glob such as \"dir/**/*\" for a folder)",
                );
            }
            Ok(FileMount::Pattern(pattern))
        }
        toml::Value::Table(mut table) => {
            let source = table.remove("source");
            let destination = table.remove("destination");
            if let Some(field) = table.keys().next() {
                return fail(&format!(
                    "{field:?} is not a field of a file entry (source, destination)"
                ));
            }
            let (Some(toml::Value::String(source)), Some(toml::Value::String(destination))) =
                (source, destination)
            else {
                return fail("a table entry has a `source` and a `destination`, both strings");
            };
            let inside = source.trim_start_matches("./").trim_end_matches('/');
            if source.starts_with('/') || (inside != "." && !inside.is_empty() && !is_plain(inside))
            {
                return fail(&format!(
                    "source {source:?} must be a path inside the manifest's folder, without `..`"
                ));
            }
            let guest = destination.trim_matches('/');
            if !guest.is_empty() && !is_plain(guest) {
                return fail(&format!(
                    "destination {destination:?} must be an absolute guest path without `.` or `..`"
                ));
            }
            Ok(FileMount::Placement {
                source,
                destination,
            })
        }
        _ => fail("an entry is a pattern (a string) or { source, destination }"),
    }
}

/// Why an archive of files is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the files archive: {0}")]
pub struct ArchiveError(pub String);

/// One file of an archive: its guest path without the leading `/`, and where its bytes are in the
/// archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedFile {
    /// `static/a.css` for the guest's `/static/a.css`.
    pub path: String,
    /// Its bytes' range in the archive.
    pub bytes: Range<usize>,
}

/// Makes the archive of `files` (guest path without the leading `/`, bytes), in the order given.
/// Refuses what [`read_archive`] would refuse.
pub fn pack<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Vec<u8>, ArchiveError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut count = 0;
    for (path, bytes) in files {
        count += 1;
        if count > MAX_FILES {
            return Err(ArchiveError(format!(
                "more than {MAX_FILES} files (a component has at most {MAX_FILES})"
            )));
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o444);
        header.set_mtime(0);
        builder
            .append_data(&mut header, path, bytes)
            .map_err(|e| ArchiveError(format!("{path}: {e}")))?;
    }
    let archive = builder
        .into_inner()
        .map_err(|e| ArchiveError(e.to_string()))?;
    read_archive(&archive)?;
    Ok(archive)
}

/// Reads and checks an archive: its regular files, in archive order.
pub fn read_archive(archive: &[u8]) -> Result<Vec<ArchivedFile>, ArchiveError> {
    let fail = |why: String| Err(ArchiveError(why));
    let mut reader = tar::Archive::new(archive);
    let entries = reader
        .entries()
        .map_err(|e| ArchiveError(format!("not a tar archive: {e}")))?;
    let mut files = Vec::new();
    let mut names = BTreeSet::new();
    let mut folders = BTreeSet::new();
    for (index, entry) in entries.enumerate() {
        let entry =
            entry.map_err(|e| ArchiveError(format!("entry {index} cannot be read: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| ArchiveError(format!("entry {index}: {e}")))?;
        let Some(path) = path.to_str().map(str::to_string) else {
            return fail(format!("entry {index}: its name is not UTF-8"));
        };
        let name = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if name.is_empty() {
            continue;
        }
        if path.starts_with('/') || !is_plain(&name) || name.len() > MAX_PATH_BYTES {
            return fail(format!(
                "{path:?}: a name is a relative path without `.` or `..`, at most \
                 {MAX_PATH_BYTES} bytes"
            ));
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                folders.insert(name);
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            other => {
                return fail(format!(
                    "{path:?} is a {other:?} entry; only regular files and folders are kept"
                ));
            }
        }
        if files.len() == MAX_FILES {
            return fail(format!(
                "more than {MAX_FILES} files (a component has at most {MAX_FILES})"
            ));
        }
        if !names.insert(name.clone()) {
            return fail(format!("{name:?} is given twice"));
        }
        let start = usize::try_from(entry.raw_file_position()).unwrap_or(usize::MAX);
        let size = usize::try_from(entry.size()).unwrap_or(usize::MAX);
        let bytes = start..start.saturating_add(size);
        if bytes.end > archive.len() {
            return fail(format!("{name:?} is cut short"));
        }
        files.push(ArchivedFile { path: name, bytes });
    }
    // A name that is a file cannot also be a folder of another.
    for file in &files {
        let mut parent = file.path.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            if names.contains(up) {
                return fail(format!("{up:?} is a file and also holds {:?}", file.path));
            }
            parent = up;
        }
        if folders.contains(&file.path) {
            return fail(format!("{:?} is a file and also a folder", file.path));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_keeps_its_files() {
        let archive = pack([
            ("index.html", &b"<h1>hi</h1>"[..]),
            ("static/a.css", b"a {}"),
            ("x/deep/er/b.txt", b""),
        ])
        .expect("packs");
        let files = read_archive(&archive).expect("reads");
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["index.html", "static/a.css", "x/deep/er/b.txt"]);
        assert_eq!(&archive[files[1].bytes.clone()], b"a {}");
        // Long names (past ustar's 100 bytes) travel too.
        let long = format!("{}/file.txt", "d".repeat(300));
        let archive = pack([(long.as_str(), &b"long"[..])]).expect("packs");
        assert_eq!(read_archive(&archive).expect("reads")[0].path, long);
    }

    /// Archives made by hand (as a client of the API might), each refused naming the entry.
    #[test]
    fn bad_archives_are_refused_naming_the_entry() {
        fn raw(path: &str, kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            // Written into the header as is: `append_data` would refuse `..` itself.
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            let mut builder = tar::Builder::new(Vec::new());
            builder.append(&header, data).expect("append");
            builder.into_inner().expect("finish")
        }
        let cases = [
            (
                raw("../up.txt", tar::EntryType::Regular, b"x"),
                "\"../up.txt\"",
            ),
            (
                raw("/etc/passwd", tar::EntryType::Regular, b"x"),
                "\"/etc/passwd\"",
            ),
            (raw("a/./b", tar::EntryType::Regular, b"x"), "\"a/./b\""),
            (
                raw("link", tar::EntryType::Symlink, b""),
                "\"link\" is a Symlink",
            ),
            (b"not a tar at all, just some bytes".repeat(20), "entry 0"),
        ];
        for (archive, expected) in cases {
            let error = read_archive(&archive).expect_err(expected).to_string();
            assert!(error.contains(expected), "{expected}: {error}");
        }
        let twice = pack([("a.txt", &b"1"[..]), ("a.txt", b"2")]).expect_err("twice");
        assert!(
            twice.to_string().contains("\"a.txt\" is given twice"),
            "{twice}"
        );
        let both = pack([("a", &b"1"[..]), ("a/b", b"2")]).expect_err("file and folder");
        assert!(
            both.to_string().contains("\"a\" is a file and also holds"),
            "{both}"
        );
        let names: Vec<String> = (0..=MAX_FILES).map(|i| format!("f{i}")).collect();
        let many = pack(names.iter().map(|n| (n.as_str(), &b""[..]))).expect_err("too many");
        assert!(many.to_string().contains("more than 10000 files"), "{many}");
    }

    #[test]
    fn entries_are_checked() {
        let good = [
            toml::Value::String("static/**/*".into()),
            toml::Value::String("./index.html".into()),
            toml::Value::Table(toml::toml! { source = "assets" destination = "/x" }),
            toml::Value::Table(toml::toml! { source = "." destination = "/" }),
        ];
        for value in good {
            parse_mount("f", value.clone()).unwrap_or_else(|e| panic!("{value}: {e}"));
        }
        let bad = [
            (toml::Value::String("/etc/*".into()), "not absolute"),
            (
                toml::Value::String("../up/*".into()),
                "inside the manifest's folder",
            ),
            (toml::Value::String(".".into()), "not the manifest's folder"),
            (
                toml::Value::Table(toml::toml! { source = "../a" destination = "/" }),
                "source \"../a\"",
            ),
            (
                toml::Value::Table(toml::toml! { source = "a" destination = "/x/../y" }),
                "destination \"/x/../y\"",
            ),
            (
                toml::Value::Table(toml::toml! { source = "a" }),
                "a `source` and a `destination`",
            ),
            (
                toml::Value::Table(toml::toml! { source = "a" destination = "/" mode = "rw" }),
                "\"mode\" is not a field",
            ),
            (toml::Value::Integer(3), "a pattern (a string)"),
        ];
        for (value, expected) in bad {
            let error = parse_mount("component.web.files[0]", value.clone())
                .expect_err("refused")
                .to_string();
            assert!(
                error.starts_with("component.web.files[0]: ") && error.contains(expected),
                "{value}: {error}"
            );
        }
    }
}
