//! Walking a source tree into memory: metadata from `lstat`, symlinks never followed,
//! names kept as raw bytes, extended attributes read without following links.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::cvmfs::catalog::xattr::Xattrs;

use super::PublishError;

/// Metadata of one source entry, as `lstat` saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Full `st_mode`: file type and permission bits.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Size in bytes (for a symlink, the length of its target).
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// Nanosecond part of the modification time.
    pub mtime_ns: u32,
    /// Status change time, Unix seconds; the publish index uses it to spot changed files.
    pub ctime: i64,
    /// Nanosecond part of the status change time.
    pub ctime_ns: u32,
    /// Device number of a character or block device (the catalog stores it as the size).
    pub rdev: u64,
    /// Device of the filesystem holding the entry; with `ino` it identifies a file.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Number of hard links to the file.
    pub nlink: u64,
}

impl Meta {
    /// Copies the fields of `m` (metadata from `lstat`).
    pub fn of(m: &fs::Metadata) -> Self {
        Meta {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_ns: m.mtime_nsec() as u32,
            ctime: m.ctime(),
            ctime_ns: m.ctime_nsec() as u32,
            rdev: m.rdev(),
            dev: m.dev(),
            ino: m.ino(),
            nlink: m.nlink(),
        }
    }
}

/// What a [`Node`] is, with what its catalog entry needs.
#[derive(Debug)]
pub enum NodeKind {
    /// A directory and its children, sorted by name.
    Dir(Vec<Node>),
    /// A regular file; the index of its content job.
    File(usize),
    /// A symbolic link and its target, as raw bytes (never followed).
    Symlink(Vec<u8>),
    /// Fifo, socket, character or block device.
    Special,
}

/// One entry of the walked source tree.
#[derive(Debug)]
pub struct Node {
    /// Base name as raw bytes (the walk's root starts with an empty name).
    pub name: Vec<u8>,
    /// Metadata as `lstat` saw it.
    pub meta: Meta,
    /// Extended attributes (without `security.selinux`); `None` if there are none.
    pub xattrs: Option<Xattrs>,
    /// What kind of entry it is.
    pub kind: NodeKind,
}

/// A regular file whose content must be hashed.
#[derive(Debug, Clone)]
pub struct FileJob {
    /// Where the file is on the publishing host.
    pub source: PathBuf,
    /// Path inside the repository.
    pub repo_path: Vec<u8>,
    /// Its metadata at walk time; reading it checks the file is still so.
    pub meta: Meta,
}

/// Deeper trees are refused with a clear error rather than exhausting the stack.
pub const MAX_DEPTH: usize = 2048;

/// Extended attributes that describe the publishing host, not the image.
const SKIPPED_XATTRS: &[&[u8]] = &[b"security.selinux"];

/// Whether an extended attribute is left out of the repository: it describes the host
/// (its SELinux labels), not the image. Ingest drops the same ones from layers.
pub fn skipped_xattr(name: &[u8]) -> bool {
    SKIPPED_XATTRS.contains(&name)
}

/// Walks a source tree into [`Node`]s, collecting its regular files as [`FileJob`]s.
pub struct Walker {
    /// Every regular file found, in walk order; [`NodeKind::File`] holds an index into it.
    pub jobs: Vec<FileJob>,
    /// Number of entries walked so far, the root included.
    pub entries: u64,
}

impl Walker {
    /// A walker that has seen nothing yet.
    pub fn new() -> Self {
        Walker {
            jobs: Vec::new(),
            entries: 0,
        }
    }

    /// Walks `source` (which must be a directory) as repository path `repo_path`.
    pub fn walk_root(&mut self, source: &Path, repo_path: &[u8]) -> Result<Node, PublishError> {
        let m = fs::symlink_metadata(source)
            .map_err(|e| PublishError::io("reading metadata of", source, e))?;
        if !m.is_dir() {
            return Err(PublishError::NotADirectory(source.to_path_buf()));
        }
        self.walk(source, Vec::new(), repo_path.to_vec(), Meta::of(&m), 0)
    }

    fn walk(
        &mut self,
        source: &Path,
        name: Vec<u8>,
        repo_path: Vec<u8>,
        meta: Meta,
        depth: usize,
    ) -> Result<Node, PublishError> {
        self.entries += 1;
        let xattrs = read_xattrs(source)?;
        let ft = meta.mode & libc::S_IFMT;
        let kind = match ft {
            libc::S_IFDIR => {
                if depth >= MAX_DEPTH {
                    return Err(PublishError::TooDeep(source.to_path_buf(), MAX_DEPTH));
                }
                let mut names = Vec::new();
                let rd =
                    fs::read_dir(source).map_err(|e| PublishError::io("listing", source, e))?;
                for item in rd {
                    let item = item.map_err(|e| PublishError::io("listing", source, e))?;
                    names.push(item.file_name());
                }
                names.sort();
                let mut children = Vec::with_capacity(names.len());
                for child in names {
                    let child_path = source.join(&child);
                    let m = match fs::symlink_metadata(&child_path) {
                        Ok(m) => m,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            return Err(PublishError::Vanished(child_path));
                        }
                        Err(e) => {
                            return Err(PublishError::io("reading metadata of", &child_path, e))
                        }
                    };
                    let bytes = child.as_bytes().to_vec();
                    let child_repo = crate::repository::path::join(&repo_path, &bytes);
                    children.push(self.walk(
                        &child_path,
                        bytes,
                        child_repo,
                        Meta::of(&m),
                        depth + 1,
                    )?);
                }
                NodeKind::Dir(children)
            }
            libc::S_IFREG => {
                self.jobs.push(FileJob {
                    source: source.to_path_buf(),
                    repo_path,
                    meta: meta.clone(),
                });
                NodeKind::File(self.jobs.len() - 1)
            }
            libc::S_IFLNK => {
                let target = fs::read_link(source)
                    .map_err(|e| PublishError::io("reading link", source, e))?;
                NodeKind::Symlink(target.as_os_str().as_bytes().to_vec())
            }
            _ => NodeKind::Special,
        };
        Ok(Node {
            name,
            meta,
            xattrs,
            kind,
        })
    }
}

impl Default for Walker {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads all extended attributes of `path` without following a final symlink.
#[allow(unsafe_code)]
fn read_xattrs(path: &Path) -> Result<Option<Xattrs>, PublishError> {
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| PublishError::BadName(path.to_path_buf()))?;
    let err = |e: std::io::Error| PublishError::io("reading extended attributes of", path, e);
    // SAFETY: `cpath` is NUL-terminated and outlives the call; `xattr_call` passes a buffer
    // valid for `len` bytes (or null with 0, asking for the size).
    let names = match xattr_call(|buf, len| unsafe {
        libc::llistxattr(cpath.as_ptr(), buf as *mut libc::c_char, len)
    }) {
        Ok(n) => n,
        // Filesystems without xattr support, and special files on some, say so: no attributes.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENODATA)) => {
            return Ok(None)
        }
        Err(e) => return Err(err(e)),
    };
    let mut out = Xattrs::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if skipped_xattr(name) {
            continue;
        }
        let cname = CString::new(name).expect("split at NUL");
        // SAFETY: as above; `cname` is NUL-terminated and outlives the call.
        let value = match xattr_call(|buf, len| unsafe {
            libc::lgetxattr(
                cpath.as_ptr(),
                cname.as_ptr(),
                buf as *mut libc::c_void,
                len,
            )
        }) {
            Ok(v) => v,
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue, // removed meanwhile
            Err(e) => return Err(err(e)),
        };
        out.insert(name.to_vec(), value);
    }
    Ok(if out.is_empty() { None } else { Some(out) })
}

/// Calls a size-then-fill xattr syscall, retrying if the value grew in between.
fn xattr_call(f: impl Fn(*mut u8, usize) -> isize) -> std::io::Result<Vec<u8>> {
    loop {
        let n = f(std::ptr::null_mut(), 0);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if n == 0 {
            return Ok(Vec::new());
        }

        let mut buf = vec![0u8; n as usize];
        let m = f(buf.as_mut_ptr(), buf.len());
        if m < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                continue;
            }
            return Err(e);
        }
        buf.truncate(m as usize);
        return Ok(buf);
    }
}
