//! One revision of a repository, named by its root catalog hash: path lookups through
//! nested catalogs, directory listings and verified file reads.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::cvmfs::catalog::{CatalogDb, Chunk, Entry, EntryKind, Row};
use crate::cvmfs::hash::{ContentHash, PathKey};
use crate::cvmfs::object::{ObjectKind, ObjectName};
use crate::repository::source::{ObjectRequest, Verified};

use super::path::{is_within, join, normalize};
use super::{RepoError, Repository};

/// An entry together with where it was found.
#[derive(Debug, Clone)]
pub struct Found {
    /// Normalized path ("" for the root).
    pub path: Vec<u8>,
    /// The entry as its catalog stores it.
    pub entry: Entry,
    /// The catalog that holds the entry.
    pub catalog: ContentHash,
}

/// One revision of a [`Repository`], named by its root catalog hash; catalogs are loaded
/// as paths are resolved.
pub struct Snapshot<'r> {
    repo: &'r Repository,
    root: ContentHash,
    root_size: u64,
}

fn shown(path: &[u8]) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        String::from_utf8_lossy(path).into_owned()
    }
}

impl<'r> Snapshot<'r> {
    pub(super) fn new(
        repo: &'r Repository,
        root: ContentHash,
        root_size: u64,
    ) -> Result<Self, RepoError> {
        let s = Snapshot {
            repo,
            root,
            root_size,
        };
        // Fail early on a missing or corrupt root catalog, and on one without a root
        // directory (a mount would come up and answer ENOENT at its root).
        let db = s.repo.catalog(&root, root_size)?;
        let entry = db
            .lock()
            .expect("catalog")
            .lookup(PathKey::of(b""))
            .map_err(Self::cat_err(&root))?;
        if !entry.is_some_and(|e| e.is_dir()) {
            return Err(RepoError::Invalid(format!(
                "root catalog {} has no root directory entry",
                root.to_hex()
            )));
        }
        Ok(s)
    }

    /// The root catalog hash that names this revision.
    pub fn root_hash(&self) -> ContentHash {
        self.root
    }

    /// The repository this revision belongs to.
    pub fn repository(&self) -> &'r Repository {
        self.repo
    }

    /// The deepest catalog whose subtree holds `path` (a normalized path).
    fn catalog_for(&self, path: &[u8]) -> Result<(ContentHash, Arc<Mutex<CatalogDb>>), RepoError> {
        let (mut hash, mut size, mut mount) = (self.root, self.root_size, Vec::new());
        loop {
            let nested = self.repo.nested_of(&hash, size, Some(&mount))?;
            match nested.iter().find(|n| is_within(path, &n.path)) {
                Some(n) => (hash, size, mount) = (n.hash, n.size, n.path.clone()),
                None => return Ok((hash, self.repo.catalog_at(&hash, size, Some(&mount))?)),
            }
        }
    }

    fn cat_err(
        hash: &ContentHash,
    ) -> impl Fn(crate::cvmfs::catalog::CatalogError) -> RepoError + '_ {
        move |source| RepoError::Catalog {
            what: format!("catalog {}", hash.to_hex()),
            source,
        }
    }

    /// Looks up `path`; `None` if it does not exist.
    pub fn lookup(&self, path: &[u8]) -> Result<Option<Found>, RepoError> {
        let path = normalize(path)?;
        let (hash, db) = self.catalog_for(&path)?;
        let row = db
            .lock()
            .expect("catalog")
            .lookup_row(PathKey::of(&path))
            .map_err(Self::cat_err(&hash))?;
        let Some(row) = row else { return Ok(None) };
        // A row must hang below its parent directory: one that names itself (or any other
        // key) as its parent is invisible in every listing; a hostile catalog, refused.
        if !path.is_empty() && row.parent != PathKey::of(super::path::parent(&path)) {
            return Err(RepoError::Invalid(format!(
                "{}: its row does not name its parent directory as parent",
                shown(&path)
            )));
        }
        Ok(Some(Found {
            path,
            entry: row.entry,
            catalog: hash,
        }))
    }

    /// As [`Snapshot::lookup`], but a missing path is [`RepoError::NotFound`].
    pub fn stat(&self, path: &[u8]) -> Result<Found, RepoError> {
        self.lookup(path)?
            .ok_or_else(|| RepoError::NotFound(shown(path)))
    }

    /// The entries of a directory, ordered by name (hidden entries left out).
    pub fn list(&self, path: &[u8]) -> Result<Vec<Found>, RepoError> {
        let dir = self.stat(path)?;
        if !dir.entry.is_dir() {
            return Err(RepoError::NotADirectory(shown(&dir.path)));
        }
        let (hash, db) = self.catalog_for(&dir.path)?;
        let rows: Vec<Row> = db
            .lock()
            .expect("catalog")
            .children(PathKey::of(&dir.path))
            .map_err(Self::cat_err(&hash))?;
        let mut out: Vec<Found> = Vec::with_capacity(rows.len());
        let mut previous: Option<Vec<u8>> = None;
        for r in rows {
            let path = join(&dir.path, &r.entry.name);
            // A child whose key is not the md5 of its path is found by no lookup, and two
            // children with one name cannot both be real: a hostile catalog, refused.
            if PathKey::of(&path) != r.key {
                return Err(RepoError::Invalid(format!(
                    "{}: listed under a key that is not its path's",
                    shown(&path)
                )));
            }
            if previous.as_ref() == Some(&r.entry.name) {
                return Err(RepoError::Invalid(format!(
                    "{}: listed twice",
                    shown(&path)
                )));
            }
            previous = Some(r.entry.name.clone());
            if r.entry.is_hidden() {
                continue;
            }
            out.push(Found {
                path,
                entry: r.entry,
                catalog: hash,
            });
        }
        Ok(out)
    }

    /// The chunk list of a chunked file.
    pub fn chunks(&self, found: &Found) -> Result<Vec<Chunk>, RepoError> {
        let db = self.repo.catalog(&found.catalog, 0)?;
        let chunks = db
            .lock()
            .expect("catalog")
            .chunks(PathKey::of(&found.path), found.entry.hash_algo())
            .map_err(Self::cat_err(&found.catalog))?;
        covers(&chunks, found.entry.size)
            .map_err(|why| RepoError::Invalid(format!("{}: {why}", shown(&found.path))))?;
        Ok(chunks)
    }

    /// Writes the verified content of a regular file to `out`; returns the byte count.
    pub fn read_file(&self, path: &[u8], out: &mut dyn Write) -> Result<u64, RepoError> {
        let found = self.stat(path)?;
        self.read_found(&found, out)
    }

    /// As [`Snapshot::read_file`], for an entry already looked up: its whole-file object or
    /// its chunks in order, each verified, are written to `out`. Returns the file size.
    pub fn read_found(&self, found: &Found, out: &mut dyn Write) -> Result<u64, RepoError> {
        let e = &found.entry;
        if e.kind() != EntryKind::File {
            return Err(RepoError::NotAFile(shown(&found.path)));
        }
        let io = |err: std::io::Error| {
            RepoError::Invalid(format!("writing {}: {err}", shown(&found.path)))
        };
        if e.flags & crate::cvmfs::catalog::schema::flags::EXTERNAL != 0 {
            return Err(RepoError::Invalid(format!(
                "{}: external files are not supported",
                shown(&found.path)
            )));
        }
        if e.is_chunked() {
            // `chunks` has checked that they cover the file exactly.
            for c in self.chunks(found)? {
                let data = self.object(
                    ObjectName::new(c.hash, ObjectKind::Chunk),
                    c.size,
                    e.is_compressed(),
                )?;
                out.write_all(&data).map_err(io)?;
            }
            return Ok(e.size);
        }
        let Some(hash) = e.hash else {
            if e.size == 0 {
                return Ok(0);
            }
            return Err(RepoError::Invalid(format!(
                "{}: file of {} bytes has no content hash",
                shown(&found.path),
                e.size
            )));
        };
        let data = self.object(
            ObjectName::new(hash, ObjectKind::File),
            e.size,
            e.is_compressed(),
        )?;
        out.write_all(&data).map_err(io)?;
        Ok(e.size)
    }

    /// A verified object of exactly `size` bytes once decompressed.
    fn object(&self, name: ObjectName, size: u64, compressed: bool) -> Result<Vec<u8>, RepoError> {
        Ok(self.verified(&name, size, compressed)?.into_bytes()?)
    }

    /// A file's object (whole file or chunk), verified: in memory or as a cached file.
    pub fn verified(
        &self,
        name: &ObjectName,
        size: u64,
        compressed: bool,
    ) -> Result<Verified, RepoError> {
        let req = ObjectRequest {
            name,
            size: Some(size),
            limit: size,
            compressed,
            mountpoint: None,
        };
        Ok(self.repo.source().object(&req)?)
    }

    /// Visits every entry below `path` (itself included) in pre-order, children by name.
    pub fn walk(
        &self,
        path: &[u8],
        visit: &mut dyn FnMut(&Found) -> Result<(), RepoError>,
    ) -> Result<(), RepoError> {
        let mut stack = vec![self.stat(path)?];
        while let Some(item) = stack.pop() {
            visit(&item)?;
            if item.entry.is_dir() {
                stack.extend(self.list(&item.path)?.into_iter().rev());
            }
        }
        Ok(())
    }
}

/// Whether `chunks` (by offset) cover a file of `size` bytes exactly: from offset 0, each
/// starting where the previous one ended, none empty, ending at `size`, with no arithmetic
/// that can overflow. A signed catalog can still say otherwise, and a reader that trusted it
/// would return short reads or bytes at the wrong place.
pub fn covers(chunks: &[Chunk], size: u64) -> Result<(), String> {
    if chunks.is_empty() {
        return Err("chunked file without chunks".into());
    }
    let mut next = 0u64;
    for c in chunks {
        if c.offset != next {
            let what = if c.offset > next { "gap" } else { "overlap" };
            return Err(format!("chunk list has a {what} at offset {next}"));
        }
        if c.size == 0 {
            return Err(format!("chunk list has an empty chunk at offset {next}"));
        }
        next = next
            .checked_add(c.size)
            .ok_or_else(|| format!("chunk at offset {next} runs past 2^64 bytes"))?;
    }
    if next != size {
        return Err(format!("chunks cover {next} of {size} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cvmfs::hash::HashAlgo;

    fn c(offset: u64, size: u64) -> Chunk {
        Chunk {
            offset,
            size,
            hash: HashAlgo::Sha1.digest(b"x"),
        }
    }

    #[test]
    fn chunk_lists_must_cover_the_file_exactly() {
        assert_eq!(covers(&[c(0, 4), c(4, 6)], 10), Ok(()));
        for (list, size, why) in [
            (vec![], 0, "without chunks"),
            (vec![c(0, 4), c(5, 5)], 10, "gap at offset 4"),
            (vec![c(0, 4), c(3, 7)], 10, "overlap at offset 4"),
            (vec![c(1, 9)], 10, "gap at offset 0"),
            (vec![c(0, 4), c(4, 0), c(4, 6)], 10, "empty chunk"),
            (vec![c(0, 4)], 10, "cover 4 of 10"),
            (vec![c(0, 4), c(4, 6)], 8, "cover 10 of 8"),
            (vec![c(0, u64::MAX), c(u64::MAX, 2)], 1, "past 2^64"),
        ] {
            let e = covers(&list, size).unwrap_err();
            assert!(e.contains(why), "{e} / {why}");
        }
    }
}
