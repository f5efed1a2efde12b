//! One layer's entries onto the tree, with the OCI layer semantics: whiteouts and opaque
//! markers act on what the layers below left (never on the same layer's entries, wherever
//! they stand in the stream), then the other entries in stream order: a directory over a
//! directory takes the new metadata and keeps the children, anything else replaces what
//! was there, missing parents are created, hard links name the inode of their target.
//! Member paths never pass through a symlink of the image: such a member is refused.

use super::entries::{Attrs, LayerEntries, LayerEntry, What};
use super::errors::{LayerError, Problem};
use super::read::components;
use super::tree::{Child, Dir, Inode, Leaf, Tree};

impl Tree {
    /// Applies `layer` on top of the layers applied so far. The entries are checked again
    /// (they may come from remembered state rather than a tar stream). On error the tree is
    /// left partly changed: discard it, as nothing of the image may be published then.
    pub fn apply(&mut self, layer: &LayerEntries) -> Result<(), LayerError> {
        let fail = |e: &LayerEntry, p: Problem| LayerError::member(&layer.layer, &e.path, p);
        // Lower layers first: a whiteout never removes an entry of its own layer.
        for e in &layer.entries {
            let comps = components_of(&e.path).map_err(|p| fail(e, p))?;
            match e.what {
                What::Whiteout => {
                    let Some((last, parents)) = comps.split_last() else {
                        return Err(fail(e, Problem::BadWhiteout(String::new())));
                    };
                    if let Some(dir) = self.dir_at(parents, false).map_err(|p| fail(e, p))? {
                        dir.children.remove(*last);
                    }
                }
                What::Opaque => {
                    if let Some(dir) = self.dir_at(&comps, false).map_err(|p| fail(e, p))? {
                        dir.children.clear();
                    }
                }
                _ => {}
            }
        }
        for e in &layer.entries {
            let comps = components_of(&e.path).map_err(|p| fail(e, p))?;
            self.put(&comps, &e.what).map_err(|p| fail(e, p))?;
        }
        Ok(())
    }

    fn put(&mut self, comps: &[&[u8]], what: &What) -> Result<(), Problem> {
        let leaf = |attrs: &Attrs, kind: Leaf| Inode {
            attrs: attrs.clone(),
            kind,
        };
        let inode = match what {
            What::Whiteout | What::Opaque => return Ok(()),
            What::Dir { attrs } => {
                let Some((last, parents)) = comps.split_last() else {
                    self.root.attrs = attrs.clone();
                    return Ok(());
                };
                let dir = self.dir_at(parents, true)?.expect("created");
                match dir.children.get_mut(*last) {
                    Some(Child::Dir(d)) => d.attrs = attrs.clone(),
                    _ => {
                        dir.children
                            .insert(last.to_vec(), Child::Dir(Dir::new(attrs.clone())));
                    }
                }
                return Ok(());
            }
            What::HardLink { target } => {
                let shown = || crate::repository::listing::escape(target);
                let t = match components(target) {
                    Ok(t) => t,
                    Err(Problem::Absolute | Problem::DotDot) => {
                        return Err(Problem::LinkOutside(shown()))
                    }
                    Err(p) => return Err(p),
                };
                let i = self.leaf_at(&t).map_err(|p| match p {
                    Problem::LinkMissing(_) => Problem::LinkMissing(shown()),
                    Problem::LinkToDirectory(_) => Problem::LinkToDirectory(shown()),
                    p => p,
                })?;
                return self.link(comps, i);
            }
            What::File { attrs, content } => leaf(attrs, Leaf::File(content.clone())),
            What::Symlink { attrs, target } => leaf(attrs, Leaf::Symlink(target.clone())),
            What::Device {
                attrs,
                block,
                major,
                minor,
            } => leaf(
                attrs,
                Leaf::Device {
                    block: *block,
                    rdev: libc::makedev(*major, *minor),
                },
            ),
            What::Fifo { attrs } => leaf(attrs, Leaf::Fifo),
        };
        if comps.is_empty() {
            return Err(Problem::RootType("non-directory"));
        }
        self.inodes.push(inode);
        self.link(comps, self.inodes.len() - 1)
    }

    /// Puts inode `i` at `comps` (not the root), replacing what is there.
    fn link(&mut self, comps: &[&[u8]], i: usize) -> Result<(), Problem> {
        let Some((last, parents)) = comps.split_last() else {
            return Err(Problem::RootType("hard link"));
        };
        let dir = self.dir_at(parents, true)?.expect("created");
        dir.children.insert(last.to_vec(), Child::Leaf(i));
        Ok(())
    }

    /// The directory at `comps`. Missing directories are created (with
    /// [`Attrs::implicit_dir`]) when `create`, else the answer is `None`, as it is for a
    /// non-directory when not creating. A symlink on the way is refused either way.
    fn dir_at(&mut self, comps: &[&[u8]], create: bool) -> Result<Option<&mut Dir>, Problem> {
        let inodes = &self.inodes;
        let mut dir = &mut self.root;
        for (n, c) in comps.iter().enumerate() {
            let child = match dir.children.entry(c.to_vec()) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    if !create {
                        return Ok(None);
                    }
                    v.insert(Child::Dir(Dir::new(Attrs::implicit_dir())))
                }
            };
            match child {
                Child::Dir(d) => dir = d,
                Child::Leaf(i) => {
                    let here = crate::repository::listing::escape(&comps[..=n].join(&b'/'));
                    return match inodes[*i].kind {
                        Leaf::Symlink(_) => Err(Problem::ThroughSymlink(here)),
                        _ if create => Err(Problem::ParentNotDirectory(here)),
                        _ => Ok(None),
                    };
                }
            }
        }
        Ok(Some(dir))
    }

    /// The inode at `comps`, for a hard link to it.
    fn leaf_at(&self, comps: &[&[u8]]) -> Result<usize, Problem> {
        let missing = || Problem::LinkMissing(String::new());
        let Some((last, parents)) = comps.split_last() else {
            return Err(Problem::LinkToDirectory(String::new()));
        };
        let mut dir = &self.root;
        for (n, c) in parents.iter().enumerate() {
            match dir.children.get(*c) {
                Some(Child::Dir(d)) => dir = d,
                Some(Child::Leaf(i)) if matches!(self.inodes[*i].kind, Leaf::Symlink(_)) => {
                    let here = crate::repository::listing::escape(&comps[..=n].join(&b'/'));
                    return Err(Problem::ThroughSymlink(here));
                }
                _ => return Err(missing()),
            }
        }
        match dir.children.get(*last) {
            Some(Child::Leaf(i)) => Ok(*i),
            Some(Child::Dir(_)) => Err(Problem::LinkToDirectory(String::new())),
            None => Err(missing()),
        }
    }
}

/// An entry's path split into components, refusing what could not come from a reader
/// (remembered state is checked as strictly as a tar stream).
fn components_of(path: &[u8]) -> Result<Vec<&[u8]>, Problem> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    components(path)
}
