//! Paths inside a repository: "" is the root, everything else is `/a/b` with no empty,
//! `.` or `..` components, so a path can never name anything outside the tree.

/// A path [`normalize`] refuses; holds it as given (lossily decoded).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("path {0:?} is not a valid path inside a repository (`..` and NUL bytes are refused)")]
pub struct BadPath(pub String);

/// Normalizes `a/b`, `/a//b/`, `./a` to `/a/b`; the root to "".
pub fn normalize(path: &[u8]) -> Result<Vec<u8>, BadPath> {
    let mut out = Vec::with_capacity(path.len() + 1);
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return Err(BadPath(String::from_utf8_lossy(path).into_owned())),
            c if c.contains(&0) => return Err(BadPath(String::from_utf8_lossy(path).into_owned())),
            c => {
                out.push(b'/');
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

/// The parent of a normalized path ("" for top-level entries and for the root).
pub fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    }
}

/// `name` (one component) appended to the normalized directory path `dir`.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// Whether `path` is `prefix` or lies below it.
pub fn is_within(path: &[u8], prefix: &[u8]) -> bool {
    prefix.is_empty()
        || (path.starts_with(prefix) && (path.len() == prefix.len() || path[prefix.len()] == b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"", Some(b"")),
            (b"/", Some(b"")),
            (b"a/b", Some(b"/a/b")),
            (b"//a/./b/", Some(b"/a/b")),
            (b"/a/../b", None),
            (b"/a\0b", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).ok().as_deref(), *want, "{input:?}");
        }
        assert_eq!(parent(b"/a/b"), b"/a");
        assert_eq!(parent(b"/a"), b"");
        assert!(is_within(b"/a/b", b"/a"));
        assert!(is_within(b"/a", b"/a"));
        assert!(!is_within(b"/ab", b"/a"));
        assert!(is_within(b"/x", b""));
    }
}
