//! Where the tree is cut into nested catalogs: at the publish root, at directories holding a
//! `.cvmfscatalog` marker, at directories matching `.cvmfsdirtab` patterns, and (optional)
//! automatically where a catalog would exceed an entry budget.

use std::collections::HashSet;

use crate::repository::path::join;

use super::walk::{Node, NodeKind};

use crate::cvmfs::catalog::schema::MARKER;
/// File name of the dirtab, read from the root of the source.
pub const DIRTAB: &[u8] = b".cvmfsdirtab";

/// `.cvmfsdirtab`: one glob per line (`*` and `?` within a path component), paths relative
/// to the publish root; `!` excludes; `#` comments.
#[derive(Debug, Default, Clone)]
pub struct Dirtab {
    include: Vec<Vec<Vec<u8>>>,
    exclude: Vec<Vec<Vec<u8>>>,
}

fn components(p: &[u8]) -> Vec<Vec<u8>> {
    p.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(|c| c.to_vec())
        .collect()
}

fn glob(pat: &[u8], s: &[u8]) -> bool {
    match pat.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

fn matches(pattern: &[Vec<u8>], path: &[Vec<u8>]) -> bool {
    pattern.len() == path.len() && pattern.iter().zip(path).all(|(p, c)| glob(p, c))
}

impl Dirtab {
    /// Parses dirtab text; blank lines and `#` comments are skipped.
    pub fn parse(text: &[u8]) -> Self {
        let mut d = Dirtab::default();
        for line in text.split(|&b| b == b'\n') {
            let line = line.trim_ascii();
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            match line.strip_prefix(b"!") {
                Some(rest) => d.exclude.push(components(rest.trim_ascii())),
                None => d.include.push(components(line)),
            }
        }
        d
    }

    /// Whether `rel` (relative to the publish root) is to be a catalog root.
    pub fn selects(&self, rel: &[u8]) -> bool {
        let c = components(rel);
        !c.is_empty()
            && self.include.iter().any(|p| matches(p, &c))
            && !self.exclude.iter().any(|p| matches(p, &c))
    }
}

/// Entry budget of automatic catalogs: a catalog above `max` entries gives its largest
/// subdirectories of at least `min` entries catalogs of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoCatalogs {
    /// Subdirectories with fewer entries never get a catalog of their own.
    pub min: u64,
    /// A catalog with more entries than this is split.
    pub max: u64,
}

/// Repository paths of every directory below (and including) `root` that roots a catalog.
pub fn catalog_roots(
    root: &Node,
    root_path: &[u8],
    dirtab: &Dirtab,
    auto: Option<AutoCatalogs>,
) -> HashSet<Vec<u8>> {
    let mut roots = HashSet::new();
    roots.insert(root_path.to_vec());
    mark(root, root_path, b"", dirtab, &mut roots);
    if let Some(a) = auto {
        weigh(root, root_path, a, &mut roots);
    }
    roots
}

fn mark(node: &Node, path: &[u8], rel: &[u8], dirtab: &Dirtab, roots: &mut HashSet<Vec<u8>>) {
    let NodeKind::Dir(children) = &node.kind else {
        return;
    };
    let has_marker = children
        .iter()
        .any(|c| c.name == MARKER && matches!(c.kind, NodeKind::File(_)));
    if has_marker || dirtab.selects(rel) {
        roots.insert(path.to_vec());
    }
    for c in children {
        if matches!(c.kind, NodeKind::Dir(_)) {
            mark(c, &join(path, &c.name), &join(rel, &c.name), dirtab, roots);
        }
    }
}

/// Returns the number of entries the subtree leaves in its enclosing catalog.
fn weigh(node: &Node, path: &[u8], a: AutoCatalogs, roots: &mut HashSet<Vec<u8>>) -> u64 {
    let NodeKind::Dir(children) = &node.kind else {
        return 1;
    };
    let mut weight = 1u64;
    let mut subdirs: Vec<(u64, Vec<u8>)> = Vec::new();
    for c in children {
        if matches!(c.kind, NodeKind::Dir(_)) {
            let p = join(path, &c.name);
            let w = weigh(c, &p, a, roots);
            if roots.contains(&p) {
                weight += 1; // the mountpoint entry stays in this catalog
            } else {
                weight += w;
                subdirs.push((w, p));
            }
        } else {
            weight += 1;
        }
    }
    if weight > a.max {
        subdirs.sort_by_key(|x| std::cmp::Reverse(x.0));
        for (w, p) in subdirs {
            if weight <= a.max || w < a.min {
                break;
            }
            roots.insert(p);
            weight -= w - 1;
        }
    }
    if roots.contains(path) {
        1
    } else {
        weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirtab_table() {
        let d = Dirtab::parse(b"# comment\n/software/*\n/data/v?\n! /software/tmp\n");
        let cases: &[(&[u8], bool)] = &[
            (b"/software/a", true),
            (b"/software", false),
            (b"/software/a/b", false),
            (b"/software/tmp", false),
            (b"/data/v1", true),
            (b"/data/v10", false),
            (b"", false),
        ];
        for (p, want) in cases {
            assert_eq!(d.selects(p), *want, "{}", String::from_utf8_lossy(p));
        }
    }
}
