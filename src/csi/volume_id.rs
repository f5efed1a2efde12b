//! What a CSI volume id and volume context name: a repository directory at one revision.
//!
//! The volume id is `<fqrn>:<path>`, optionally followed by `@<root_hash>`, e.g.
//! `sft.example.org:/images/bookworm@0a1b…`. The volume context may name the same parts under
//! the keys `fqrn`, `path`, `root_hash` and `tag`; a key present in the context wins over the
//! id. When the context has both `fqrn` and `path` the id is not parsed at all (it may then be
//! any opaque name, as the kubelet gives inline volumes). Paths containing `@` must be given
//! in the context.

use std::collections::HashMap;

use super::VolumeError;

/// Longest accepted path inside a repository, in bytes.
pub const MAX_PATH: usize = 4096;

/// What a published volume is: a repository directory at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Repository name, e.g. `sft.example.org`.
    pub fqrn: String,
    /// Absolute, normalised directory inside the repository (`/` for its root).
    pub path: String,
    /// The revision's root catalog hash (`hex[-suffix]`); None with `tag` or for the newest.
    pub root_hash: Option<String>,
    /// A named tag of the repository; never together with `root_hash`.
    pub tag: Option<String>,
}

/// Builds and validates the spec of a volume from its id and context.
pub fn parse_volume(
    volume_id: &str,
    context: &HashMap<String, String>,
) -> Result<VolumeSpec, VolumeError> {
    let ctx = |k: &str| context.get(k).cloned();
    let (fqrn, path, id_hash) = match (ctx("fqrn"), ctx("path")) {
        (Some(fqrn), Some(path)) => (fqrn, path, None),
        (f, p) => {
            let (id_fqrn, id_path, id_hash) = split_volume_id(volume_id)?;
            (f.unwrap_or(id_fqrn), p.unwrap_or(id_path), id_hash)
        }
    };
    let root_hash = ctx("root_hash").or(id_hash);
    let tag = ctx("tag");
    if root_hash.is_some() && tag.is_some() {
        return Err(invalid(
            "a volume names either a root_hash or a tag, not both",
        ));
    }
    validate_fqrn(&fqrn)?;
    validate_path(&path)?;
    if let Some(h) = &root_hash {
        validate_root_hash(h)?;
    }
    if let Some(t) = &tag {
        crate::cvmfs::history::validate_tag_name(t)
            .map_err(|_| invalid(format!("bad tag name {:?}", clip(t))))?;
    }
    Ok(VolumeSpec {
        fqrn,
        path,
        root_hash,
        tag,
    })
}

/// `<fqrn>:<path>[@<root_hash>]` into its parts (unvalidated).
fn split_volume_id(id: &str) -> Result<(String, String, Option<String>), VolumeError> {
    let bad = || {
        invalid(format!(
            "volume id {:?} is not <fqrn>:<path>[@<root_hash>] and the volume context names no fqrn and path",
            clip(id)
        ))
    };
    let (fqrn, rest) = id.split_once(':').ok_or_else(bad)?;
    let (path, hash) = match rest.rsplit_once('@') {
        Some((path, hash)) => (path, Some(hash.to_string())),
        None => (rest, None),
    };
    if fqrn.is_empty() || path.is_empty() {
        return Err(bad());
    }
    Ok((fqrn.to_string(), path.to_string(), hash))
}

fn validate_fqrn(fqrn: &str) -> Result<(), VolumeError> {
    crate::cvmfs::fqrn::validate(fqrn).map_err(|e| invalid(e.to_string()))
}

/// Absolute, at most [`MAX_PATH`] bytes, no NUL, no empty, `.` or `..` components.
pub fn validate_path(path: &str) -> Result<(), VolumeError> {
    let bad = |why: &str| Err(invalid(format!("bad path {:?}: {why}", clip(path))));
    if path.len() > MAX_PATH {
        return bad("too long");
    }
    if path.contains('\0') {
        return bad("contains NUL");
    }
    let Some(rest) = path.strip_prefix('/') else {
        return bad("not absolute");
    };
    if rest.is_empty() {
        return Ok(());
    }
    for component in rest.split('/') {
        match component {
            "" => return bad("empty component"),
            "." | ".." => return bad("relative component"),
            _ => {}
        }
    }
    Ok(())
}

/// 40 lower-case hex digits, optionally `-rmd160` or `-shake128` (as object names are).
pub fn validate_root_hash(hash: &str) -> Result<(), VolumeError> {
    match crate::cvmfs::hash::ContentHash::parse(hash) {
        Ok(h) if h.to_hex() == hash => Ok(()),
        _ => Err(invalid(format!(
            "bad root hash {:?}: expected 40 lower-case hex digits and an optional -rmd160/-shake128 suffix",
            clip(hash)
        ))),
    }
}

fn invalid(message: impl Into<String>) -> VolumeError {
    VolumeError::InvalidArgument(message.into())
}

/// At most 200 characters of untrusted input, for messages.
fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";

    fn ctx(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_id_forms() {
        let s = parse_volume("sft.example.org:/images/bookworm", &ctx(&[])).unwrap();
        assert_eq!(s.fqrn, "sft.example.org");
        assert_eq!(s.path, "/images/bookworm");
        assert_eq!(s.root_hash, None);
        let s = parse_volume(&format!("a.b:/x@{HASH}-rmd160"), &ctx(&[])).unwrap();
        assert_eq!(s.root_hash.as_deref(), Some(&*format!("{HASH}-rmd160")));
        assert_eq!(parse_volume("a.b:/", &ctx(&[])).unwrap().path, "/");
    }

    #[test]
    fn context_wins() {
        let s = parse_volume("opaque-id", &ctx(&[("fqrn", "c.d"), ("path", "/p")])).unwrap();
        assert_eq!((s.fqrn.as_str(), s.path.as_str()), ("c.d", "/p"));
        let s = parse_volume(&format!("a.b:/x@{HASH}"), &ctx(&[("path", "/y")])).unwrap();
        assert_eq!(s.path, "/y");
        assert_eq!(s.root_hash.as_deref(), Some(HASH));
        let s = parse_volume("a.b:/x", &ctx(&[("tag", "v1.0")])).unwrap();
        assert_eq!(s.tag.as_deref(), Some("v1.0"));
        assert!(parse_volume(&format!("a.b:/x@{HASH}"), &ctx(&[("tag", "v1")])).is_err());
        assert!(parse_volume("opaque-id", &ctx(&[("fqrn", "c.d")])).is_err());
    }

    #[test]
    fn rejects_malformed() {
        for id in [
            "",
            "noColon",
            ":/x",
            "a.b:",
            "a.b:x",
            "a.b:/x/../y",
            "a.b:/..",
            "a.b:/x/./y",
            "a.b://x",
            "a.b:/x/",
            "a.b:/x\0",
            "_a.b:/x",
            ".a:/x",
            "-a.b:/x",
            "a.b:/x@",
            "a.b:/x@zz",
            "a.b:/x@0A1B2C3D4E5F60718293A4B5C6D7E8F901234567",
            "a.b:/x@0a1b2c3d4e5f60718293a4b5c6d7e8f901234567-md5",
        ] {
            assert!(parse_volume(id, &ctx(&[])).is_err(), "{id:?}");
        }
        // Stock's name rule allows these.
        for id in ["a_b:/x", "a..b:/x", "A.b:/x"] {
            assert!(parse_volume(id, &ctx(&[])).is_ok(), "{id:?}");
        }
        let long = format!("a.b:/{}", "x".repeat(MAX_PATH));
        assert!(parse_volume(&long, &ctx(&[])).is_err());
        assert!(parse_volume("a.b:/x", &ctx(&[("tag", "bad tag")])).is_err());
    }
}
