//! The wishlist: the images a repository should hold, one reference a line, read by
//! `lazyroot ingest --wishlist FILE` (from cron, typically). A registry reference's tag
//! may be a glob (`library/python:3.1*`), matched against the registry's tag list; every
//! other line is taken as it is. The wishlist is also what `--prune` keeps: a name that no
//! line of it matches goes.
//!
//! Format, as simple as the job: blank lines and `#` comments (from a `#` at the start of
//! a line or after a blank) are ignored; anything else is one reference. DUCC's YAML
//! wishlist carries the target repository and user as well; here those are the command's
//! own flags, so a line is just a name.

use std::path::{Path, PathBuf};

use super::names::{self, Version};
use super::reference::{Reference, ReferenceError, RegistryRef};
use super::source::{self, SourceOptions};
use super::IngestError;

/// A wishlist larger than this is refused (it is a list of names, not data).
const MAX_WISHLIST: u64 = 4 << 20;

/// One line of a wishlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wish {
    /// The reference as written.
    pub text: String,
    /// Its line number (from 1), for messages.
    pub line: usize,
    /// What it asks for.
    pub kind: WishKind,
}

/// What a wishlist line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WishKind {
    /// One image, named as [`Reference::parse`] reads it.
    One(Reference),
    /// Every tag of a registry repository that matches a glob.
    Tags {
        /// The repository (its `tag` is the placeholder `latest`, never asked for).
        repository: RegistryRef,
        /// The tag glob, as written.
        glob: String,
        /// The glob compiled.
        pattern: glob::Pattern,
    },
}

/// Why a wishlist could not be read; nothing is ingested then.
#[derive(Debug, thiserror::Error)]
pub enum WishlistError {
    /// The file could not be read.
    #[error("reading the wishlist {path}: {source}")]
    Io {
        /// The wishlist.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than a wishlist can sensibly be.
    #[error("the wishlist {path} is larger than {max} bytes")]
    TooLarge {
        /// The wishlist.
        path: PathBuf,
        /// The bound.
        max: u64,
    },
    /// A line is not a reference.
    #[error("the wishlist {path}, line {line}: {source}")]
    Reference {
        /// The wishlist.
        path: PathBuf,
        /// The line number.
        line: usize,
        /// Why.
        source: ReferenceError,
    },
    /// A tag glob is not a glob.
    #[error("the wishlist {path}, line {line}: tag glob {glob:?}: {source}")]
    Glob {
        /// The wishlist.
        path: PathBuf,
        /// The line number.
        line: usize,
        /// The glob.
        glob: String,
        /// Why.
        source: glob::PatternError,
    },
}

/// Reads the wishlist at `path`.
pub fn read(path: &Path) -> Result<Vec<Wish>, WishlistError> {
    use std::io::Read;
    let io = |source| WishlistError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_WISHLIST + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_WISHLIST {
        return Err(WishlistError::TooLarge {
            path: path.to_path_buf(),
            max: MAX_WISHLIST,
        });
    }
    parse(&text, path)
}

/// Parses a wishlist's text (`path` names it in errors).
pub fn parse(text: &str, path: &Path) -> Result<Vec<Wish>, WishlistError> {
    let mut wishes = Vec::new();
    // Editors on some systems start a UTF-8 file with a byte-order mark; it is no part of
    // the first reference.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let kind = wish_kind(line).map_err(|e| match e {
            KindError::Reference(source) => WishlistError::Reference {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            },
            KindError::Glob(glob, source) => WishlistError::Glob {
                path: path.to_path_buf(),
                line: i + 1,
                glob,
                source,
            },
        })?;
        wishes.push(Wish {
            text: line.to_string(),
            line: i + 1,
            kind,
        });
    }
    Ok(wishes)
}

/// A line without its comment: `#` at the start or after a blank (a `#` elsewhere is
/// part of a path, e.g. `oci:/srv/a#b`).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

enum KindError {
    Reference(ReferenceError),
    Glob(String, glob::PatternError),
}

/// What one reference asks for; a registry reference whose tag holds `*`, `?` or `[` is a
/// tag glob.
fn wish_kind(text: &str) -> Result<WishKind, KindError> {
    let parsed = Reference::parse(text);
    let glob_tag = match &parsed {
        Err(ReferenceError::Tag { tag, .. }) if is_glob(tag) && !text.contains('@') => {
            Some(tag.clone())
        }
        _ => None,
    };
    let Some(glob) = glob_tag else {
        return parsed.map(WishKind::One).map_err(KindError::Reference);
    };
    let name = &text[..text.len() - glob.len() - 1];
    let repository = RegistryRef::parse(&format!("{name}:latest")).map_err(KindError::Reference)?;
    let pattern = glob::Pattern::new(&glob).map_err(|e| KindError::Glob(glob.clone(), e))?;
    Ok(WishKind::Tags {
        repository,
        glob,
        pattern,
    })
}

fn is_glob(tag: &str) -> bool {
    tag.contains(['*', '?', '['])
}

/// A wish made into references: a glob's matching tags, sorted (none matching is not an
/// error: the tags may not have been pushed yet).
pub fn expand(wish: &Wish, options: &SourceOptions) -> Result<Vec<String>, IngestError> {
    match &wish.kind {
        WishKind::One(_) => Ok(vec![wish.text.clone()]),
        WishKind::Tags {
            repository,
            pattern,
            ..
        } => {
            let src = source::open(&Reference::Registry(repository.clone()), options)?;
            let mut tags: Vec<String> = src
                .tags()?
                .into_iter()
                .filter(|t| pattern.matches(t))
                .collect();
            tags.sort();
            tags.dedup();
            Ok(tags
                .into_iter()
                .map(|t| {
                    let mut r = repository.clone();
                    r.tag = Some(t);
                    r.to_string()
                })
                .collect())
        }
    }
}

/// Which names a prune keeps: those a wish names, whether or not its image could be read
/// this time (a registry that is down must not make its images go).
pub struct Keep {
    exact: Vec<String>,
    /// A tag glob's link base (`<prefix>/<registry>/<repository>:`) and the tag pattern,
    /// the one [`expand`] matches tags with.
    globs: Vec<(String, glob::Pattern)>,
}

impl Keep {
    /// The names `wishes` (and the extra references `more`) give under `prefix`.
    pub fn new(prefix: &str, wishes: &[Wish], more: &[Reference]) -> Keep {
        let mut keep = Keep {
            exact: Vec::new(),
            globs: Vec::new(),
        };
        for r in more {
            keep.exact.push(super::run::link_of(prefix, r));
        }
        for w in wishes {
            match &w.kind {
                WishKind::One(r) => keep.exact.push(super::run::link_of(prefix, r)),
                WishKind::Tags {
                    repository,
                    pattern,
                    ..
                } => {
                    let base = names::link_path(
                        prefix,
                        &repository.registry,
                        &repository.repository,
                        &Version::Tag(String::new()),
                    );
                    // The name is literal; only the tag is a glob, matched as `expand`
                    // matches it (a glob valid alone, e.g. `**`, need not be valid glued
                    // to the name).
                    keep.globs.push((base, pattern.clone()));
                }
            }
        }
        keep
    }

    /// Whether the link at `link` (a repository path) is wished for.
    pub fn keeps(&self, link: &str) -> bool {
        self.exact.iter().any(|e| e == link)
            || self.globs.iter().any(|(base, pattern)| {
                link.strip_prefix(base.as_str())
                    .is_some_and(|tag| !tag.contains('/') && pattern.matches(tag))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wishes(text: &str) -> Vec<Wish> {
        parse(text, Path::new("w")).unwrap()
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_line() {
        let w = wishes("\u{feff}busybox\n");
        assert_eq!((w.len(), w[0].text.as_str(), w[0].line), (1, "busybox", 1));
    }

    #[test]
    fn lines_comments_and_globs() {
        let w = wishes(
            "# images for the farm\n\
             \n\
             registry.example.org/team/app:1.4   # pinned\n\
             library/python:3.1*\n\
             oci:/srv/images/a#b:v1\n",
        );
        assert_eq!(w.len(), 3);
        assert_eq!(
            (w[0].line, w[0].text.as_str()),
            (3, "registry.example.org/team/app:1.4")
        );
        assert!(matches!(w[0].kind, WishKind::One(Reference::Registry(_))));
        match &w[1].kind {
            WishKind::Tags {
                repository, glob, ..
            } => {
                assert_eq!(repository.registry, "docker.io");
                assert_eq!(repository.repository, "library/python");
                assert_eq!(glob, "3.1*");
            }
            k => panic!("not a glob: {k:?}"),
        }
        assert!(
            matches!(&w[2].kind, WishKind::One(Reference::OciLayout { dir, .. }) if dir == Path::new("/srv/images/a#b"))
        );
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        let e = parse("busybox\nUPPER/case:1\n", Path::new("list")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("list, line 2"), "{msg}");
        let e = parse("a/b:[x\n", Path::new("list")).unwrap_err();
        assert!(matches!(e, WishlistError::Glob { line: 1, .. }), "{e}");
    }

    #[test]
    fn keep_matches_names_and_tag_globs_only() {
        let w = wishes("r.example.org/team/app:1.*\nbusybox\n");
        let keep = Keep::new("/img", &w, &[]);
        assert!(keep.keeps("/img/r.example.org/team/app:1.4"));
        assert!(!keep.keeps("/img/r.example.org/team/app:2.0"));
        // A glob's `*` stays within the tag: another repository's name never matches.
        assert!(!keep.keeps("/img/r.example.org/team/app:1.4/x"));
        assert!(!keep.keeps("/img/r.example.org/team/apps:1.4"));
        assert!(keep.keeps("/img/docker.io/library/busybox:latest"));
        assert!(!keep.keeps("/docker.io/library/busybox:latest"));
    }
}

#[cfg(test)]
mod adversarial {
    use super::*;

    fn keep(text: &str) -> Keep {
        Keep::new("/img", &parse(text, Path::new("w")).unwrap(), &[])
    }

    /// `**` is a valid glob on its own (expand matches every tag with it), but not after a
    /// literal in one path component: a Keep built by gluing the link's base to the glob
    /// must still keep what expand ingested.
    #[test]
    fn a_double_star_tag_glob_keeps_what_it_ingests() {
        let w = parse("r.example.org/team/app:**\n", Path::new("w")).unwrap();
        let WishKind::Tags { pattern, .. } = &w[0].kind else {
            panic!("not a glob: {:?}", w[0].kind);
        };
        assert!(pattern.matches("1.4"), "expand ingests tag 1.4");
        let keep = Keep::new("/img", &w, &[]);
        assert!(
            keep.keeps("/img/r.example.org/team/app:1.4"),
            "prune would remove the link expand just made"
        );
        assert!(!keep.keeps("/img/r.example.org/team/app:1.4/x"));
        assert!(!keep.keeps("/img/r.example.org/team/other:1.4"));
    }

    #[test]
    fn question_mark_and_bracket_globs_keep_exactly_what_they_match() {
        let k = keep("r.example.org/team/app:1.?\nr.example.org/team/py:3.[0-9]\n");
        assert!(k.keeps("/img/r.example.org/team/app:1.4"));
        assert!(!k.keeps("/img/r.example.org/team/app:1.40"));
        assert!(k.keeps("/img/r.example.org/team/py:3.7"));
        assert!(!k.keeps("/img/r.example.org/team/py:3.x"));
        // A registry with a port: the `:` of the port is literal, not the tag's.
        let k = keep("localhost:5000/app:v*\n");
        assert!(k.keeps("/img/localhost:5000/app:v1"));
        assert!(!k.keeps("/img/localhost:5000/app:w1"));
    }

    /// Odd lines with glob characters never panic (the glob is cut off the line's end by
    /// byte length): each is a wish or a line-numbered error.
    #[test]
    fn odd_glob_lines_are_wishes_or_errors_never_panics() {
        for line in [
            "*",
            ":*",
            "a:*",
            "a:é*",
            "oci:/d:é*",
            "oci::*",
            "oci:/d:[",
            "docker-archive:/x.tar:app:1*",
            "docker-archive::[",
            "r.example.org:5000:*",
            "r.example.org/a:b:*",
            "a/b:x*y@sha256:00",
            "a/b:[[]",
            "a/b:[!]",
            "a/b:***",
        ] {
            match parse(&format!("{line}\n"), Path::new("w")) {
                Ok(w) => assert_eq!(w.len(), 1, "{line}"),
                Err(e) => assert!(e.to_string().contains("line 1"), "{line}: {e}"),
            }
        }
    }
}
