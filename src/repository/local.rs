//! A repository's objects and bootstrap files on local disk (the Stratum-0 directory): the
//! writer's side (temporary name, then rename) and the reader's side (bounded reads) of
//! `data/`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::cvmfs::hash::HashAlgo;
use crate::cvmfs::object::{compress_and_hash, CompressingWriter, ObjectKind, ObjectName};

use super::source::{IoContext, IoError, ObjectSource, SourceError};

/// What is at an object's final name before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// Nothing: the object is new.
    Absent,
    /// The object, whole: nothing to write.
    Whole,
    /// A file of the wrong length or content: replaced.
    Damaged,
}

/// A repository directory on local disk, as a Stratum 0 keeps it.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    /// Objects this store created, when it keeps count (a publish that fails removes them).
    created: Option<Arc<Mutex<Vec<PathBuf>>>>,
}

/// Objects up to this size that exist already are hashed before they are trusted as the
/// object their name says; larger ones get the length check only (reading a large object
/// back would cost as much as writing it again).
const HASH_EXISTING_MAX: u64 = 1 << 20;

impl LocalStore {
    /// A store for the repository directory `root` (nothing is created; see
    /// [`LocalStore::create_layout`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore {
            root: root.into(),
            created: None,
        }
    }

    /// Like [`LocalStore::new`], and keeps a list of the objects it creates, for
    /// [`LocalStore::remove_created`].
    pub fn journaled(root: impl Into<PathBuf>) -> Self {
        LocalStore {
            root: root.into(),
            created: Some(Arc::default()),
        }
    }

    /// Removes every object this (journaled) store created; returns how many. For a publish
    /// that failed before its manifest was written: nothing references them.
    pub fn remove_created(&self) -> usize {
        let Some(created) = &self.created else {
            return 0;
        };
        let paths = std::mem::take(&mut *created.lock().expect("created objects"));
        paths.iter().filter(|p| fs::remove_file(p).is_ok()).count()
    }

    /// The length in bytes of stored object `name`, if it is stored.
    pub fn stored_len(&self, name: &ObjectName) -> Option<u64> {
        fs::metadata(self.path_of(&name.path()))
            .ok()
            .map(|m| m.len())
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `rel`, a path relative to the repository root.
    pub fn path_of(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn txn_dir(&self) -> PathBuf {
        self.root.join("data/txn")
    }

    /// Creates `data/00`…`data/ff` and `data/txn`.
    pub fn create_layout(&self) -> Result<(), IoError> {
        for i in 0..=255u8 {
            let d = self.root.join(format!("data/{i:02x}"));
            fs::create_dir_all(&d).ctx("creating", &d)?;
        }
        let t = self.txn_dir();
        fs::create_dir_all(&t).ctx("creating", &t)
    }

    /// Whether the object `name` is stored (its file under `data/` exists).
    pub fn contains(&self, name: &ObjectName) -> bool {
        self.path_of(&name.path()).exists()
    }

    /// Stores already compressed bytes under `name`; a no-op if the object exists whole.
    /// Returns whether bytes were written.
    pub fn put_compressed(&self, name: &ObjectName, compressed: &[u8]) -> Result<bool, IoError> {
        let dest = self.path_of(&name.path());
        let existing = self.existing(name, &dest, compressed.len() as u64)?;
        if existing == Existing::Whole {
            return Ok(false);
        }
        let mut p = self.pending()?;
        p.file.write_all(compressed).ctx("writing", &p.shown)?;
        self.commit(p, &dest, existing)
    }

    /// Compresses, hashes and stores `data` as an object of `kind`.
    pub fn put(
        &self,
        kind: ObjectKind,
        algo: HashAlgo,
        data: &[u8],
    ) -> Result<ObjectName, IoError> {
        let (compressed, hash) = compress_and_hash(algo, data);
        let name = ObjectName::new(hash, kind);
        self.put_compressed(&name, &compressed)?;
        Ok(name)
    }

    /// Streams `reader` into a new object with bounded memory. Returns the name, the
    /// uncompressed size and whether the object was new.
    pub fn put_stream(
        &self,
        kind: ObjectKind,
        algo: HashAlgo,
        reader: &mut dyn Read,
        source: &Path,
    ) -> Result<(ObjectName, u64, bool), IoError> {
        let p = self.pending()?;
        let shown = p.shown.clone();
        let mut w = CompressingWriter::new(algo, io::BufWriter::with_capacity(256 << 10, &p.file));
        let size = copy_reporting(reader, &mut w, source, &shown)?;
        let (buf, hash, _) = w.finish().ctx("writing", &shown)?;
        buf.into_inner()
            .map_err(|e| IoError::new("writing", &shown, e.into_error()))?;
        let name = ObjectName::new(hash, kind);
        let dest = self.path_of(&name.path());
        let len = p.file.metadata().ctx("reading the size of", &shown)?.len();
        let existing = self.existing(&name, &dest, len)?;
        if existing == Existing::Whole {
            return Ok((name, size, false));
        }
        let new = self.commit(p, &dest, existing)?;
        Ok((name, size, new))
    }

    /// Whether object `name` is already stored at `dest` as the `len` bytes just made for
    /// it. An object from an earlier run is not trusted for existing: a crash that lost
    /// unsynced data leaves short or empty files under their final names, and a manifest
    /// must never be signed over one. The length is checked always (one `stat`), the hash
    /// for objects small enough to read back cheaply.
    fn existing(&self, name: &ObjectName, dest: &Path, len: u64) -> Result<Existing, IoError> {
        let on_disk = match fs::metadata(dest) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Absent),
            Err(e) => return Err(IoError::new("reading the size of", dest, e)),
        };
        let why = if on_disk != len {
            format!("{on_disk} bytes where {len} are due")
        } else if len <= HASH_EXISTING_MAX {
            let bytes = fs::read(dest).ctx("reading", dest)?;
            if name.hash.algo.digest(&bytes) == name.hash {
                return Ok(Existing::Whole);
            }
            "its bytes do not hash to its name".to_string()
        } else {
            return Ok(Existing::Whole);
        };
        tracing::warn!(
            "stored object {} is damaged ({why}); writing it again",
            dest.display()
        );
        Ok(Existing::Damaged)
    }

    /// A file for an object being written. Anonymous (`O_TMPFILE`) where the filesystem
    /// allows: a crash leaves nothing behind, and committing is one `link`, without the
    /// directory-wide locks that creating and renaming named files in `data/txn` take.
    fn pending(&self) -> Result<Pending, IoError> {
        let dir = self.txn_dir();
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o644)
            .open(&dir)
        {
            Ok(file) => {
                return Ok(Pending {
                    file,
                    named: None,
                    shown: dir.join("(anonymous)"),
                })
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
                ) => {}
            Err(e) => return Err(IoError::new("creating a temporary file in", &dir, e)),
        }
        let tmp = tempfile::Builder::new()
            .prefix("obj.")
            .tempfile_in(&dir)
            .ctx("creating a temporary file in", &dir)?;
        let shown = tmp.path().to_path_buf();
        let (file, path) = tmp.into_parts();
        Ok(Pending {
            file,
            named: Some(path),
            shown,
        })
    }

    /// Puts a pending object at `dest` (over a damaged one: by rename, so readers see the
    /// old file or the new one, never a missing name); `false` if another writer put it
    /// there first.
    fn commit(&self, p: Pending, dest: &Path, existing: Existing) -> Result<bool, IoError> {
        // Objects are world-readable: a web server serves them as they are.
        p.file
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .ctx("setting permissions of", &p.shown)?;
        let from = match &p.named {
            Some(path) => path.to_path_buf(),
            None => PathBuf::from(format!("/proc/self/fd/{}", p.file.as_raw_fd())),
        };
        if existing == Existing::Damaged {
            return self.replace(&p, &from, dest);
        }
        let linked = nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            &from,
            nix::fcntl::AT_FDCWD,
            dest,
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        );
        // A named temporary file is removed when `p` drops, whatever happened.
        match linked {
            Ok(()) => {
                self.note_created(dest);
                Ok(true)
            }
            Err(nix::errno::Errno::EEXIST) => Ok(false),
            Err(e) => Err(IoError::new("linking into", dest, e.into())),
        }
    }

    /// Renames a pending object over a damaged one. The damaged file is not this run's, so
    /// a failed publish does not remove its replacement either (it is whole, and its name
    /// may be referenced by a published revision).
    fn replace(&self, p: &Pending, from: &Path, dest: &Path) -> Result<bool, IoError> {
        let named = match &p.named {
            Some(path) => path.to_path_buf(),
            None => {
                let tmp = self.txn_dir().join(format!(
                    "replace.{}.{}",
                    std::process::id(),
                    p.file.as_raw_fd()
                ));
                let _ = fs::remove_file(&tmp);
                nix::unistd::linkat(
                    nix::fcntl::AT_FDCWD,
                    from,
                    nix::fcntl::AT_FDCWD,
                    &tmp,
                    nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
                )
                .map_err(|e| IoError::new("linking into", &tmp, e.into()))?;
                tmp
            }
        };
        fs::rename(&named, dest).ctx("renaming into", dest)?;
        Ok(true)
    }

    fn note_created(&self, dest: &Path) {
        if let Some(created) = &self.created {
            created
                .lock()
                .expect("created objects")
                .push(dest.to_path_buf());
        }
    }

    /// Writes a bootstrap file (manifest, whitelist, reflog) durably and atomically:
    /// temporary file, fsync, rename, fsync of the directory.
    pub fn write_atomic(&self, rel: &str, bytes: &[u8]) -> Result<(), IoError> {
        let dest = self.path_of(rel);
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        let mut tmp = tempfile::Builder::new()
            .prefix(".lazyroot-tmp.")
            .tempfile_in(&dir)
            .ctx("creating a temporary file in", &dir)?;
        tmp.write_all(bytes).ctx("writing", tmp.path())?;
        tmp.as_file().sync_all().ctx("syncing", tmp.path())?;
        let perm = std::os::unix::fs::PermissionsExt::from_mode(0o644);
        fs::set_permissions(tmp.path(), perm).ctx("setting permissions of", tmp.path())?;
        tmp.persist(&dest)
            .map_err(|e| IoError::new("renaming into", &dest, e.error))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .ctx("syncing", &dir)
    }

    /// Flushes everything written to the repository's filesystem, once, before the
    /// manifest that makes it reachable is written (cheaper than an fsync per object).
    pub fn sync_filesystem(&self) -> Result<(), IoError> {
        let f = File::open(&self.root).ctx("opening", &self.root)?;
        nix::unistd::syncfs(&f)
            .map_err(|e| IoError::new("syncing the filesystem of", &self.root, e.into()))
    }

    /// Opens the lock file that keeps two publishers apart.
    pub fn lock_file(&self) -> Result<File, IoError> {
        let p = self.txn_dir().join("publish.lock");
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .ctx("opening", &p)
    }
}

/// An object file not yet in place.
struct Pending {
    file: File,
    /// The name of a named temporary file (removed on drop); `None` for an anonymous one.
    named: Option<tempfile::TempPath>,
    /// What to call it in messages.
    shown: PathBuf,
}

/// Copies with error messages that name the side that failed: the source file or the
/// temporary object.
fn copy_reporting(
    r: &mut dyn Read,
    w: &mut dyn Write,
    source: &Path,
    tmp: &Path,
) -> Result<u64, IoError> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(IoError::new("reading", source, e)),
        };
        w.write_all(&buf[..n]).ctx("writing", tmp)?;
        total += n as u64;
    }
}

impl ObjectSource for LocalStore {
    fn fetch(&self, rel: &str, limit: u64) -> Result<Vec<u8>, SourceError> {
        let path = self.path_of(rel);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SourceError::NotFound(format!(
                    "{} ({})",
                    rel,
                    self.root.display()
                )))
            }
            Err(e) => return Err(IoError::new("opening", path, e).into()),
        };
        let size = f.metadata().ctx("reading metadata of", &path)?.len();
        if size > limit {
            return Err(SourceError::TooLarge {
                what: path.display().to_string(),
                size,
                limit,
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        f.take(limit).read_to_end(&mut out).ctx("reading", &path)?;
        Ok(out)
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_is_idempotent_and_leaves_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::new(d.path());
        s.create_layout().unwrap();
        let a = s.put(ObjectKind::File, HashAlgo::Sha1, b"foo\n").unwrap();
        assert_eq!(a.path(), "data/d8/5ab7e835750785b0535d4fbba7d59e921b1f48");
        let (c, _) = compress_and_hash(HashAlgo::Sha1, b"foo\n");
        assert!(!s.put_compressed(&a, &c).unwrap(), "second put is a no-op");
        let (b, size, new) = s
            .put_stream(
                ObjectKind::File,
                HashAlgo::Sha1,
                &mut &b"foo\n"[..],
                Path::new("x"),
            )
            .unwrap();
        assert_eq!((b, size, new), (a, 4, false));
        assert_eq!(fs::read_dir(d.path().join("data/txn")).unwrap().count(), 0);
        assert_eq!(s.fetch(&a.path(), 100).unwrap(), c);
        assert!(matches!(
            s.fetch(&a.path(), 3),
            Err(SourceError::TooLarge { .. })
        ));
        assert!(matches!(
            s.fetch("data/00/nope", 3),
            Err(SourceError::NotFound(_))
        ));
    }
}
