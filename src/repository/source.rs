//! Where a reader gets a repository's files: the [`ObjectSource`] trait (a local
//! directory, or HTTP through the cache), what an object read asks for, what it returns
//! once verified, and why it fails.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::cvmfs::object::ObjectName;

/// An I/O failure with the operation and path it happened to.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct IoError {
    /// What was being done (`reading`, `opening`, …).
    pub op: &'static str,
    /// The file it was done to.
    pub path: PathBuf,
    /// The underlying I/O error.
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// An error of `op` on `path`.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        IoError {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Adds the operation and path to an `io::Result`.
pub trait IoContext<T> {
    /// Wraps the error with the operation `op` and the `path` it was done to.
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, IoError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, IoError> {
        self.map_err(|e| IoError::new(op, path, e))
    }
}

/// Why a file of the repository could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file does not exist; holds its name and the repository directory looked in.
    #[error("{0} is missing from the repository")]
    NotFound(String),
    /// The file is larger than the caller allows.
    #[error("{what} is {size} bytes, more than the {limit} allowed")]
    TooLarge {
        /// The file.
        what: String,
        /// Its size in bytes.
        size: u64,
        /// The allowed maximum in bytes.
        limit: u64,
    },
    /// An I/O error, with the operation and path.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The object failed verification against its name (hash, size, decompression).
    #[error(transparent)]
    Object(#[from] crate::cvmfs::object::ObjectError),
    /// A remote source's failure (download, cache), already described.
    #[error("{0}")]
    Fetch(String),
}

/// What an object read asks for.
#[derive(Debug, Clone, Copy)]
pub struct ObjectRequest<'a> {
    /// The object: its hash and kind, hence its path under `data/`.
    pub name: &'a ObjectName,
    /// The decompressed size the catalog states, if known.
    pub size: Option<u64>,
    /// At most this many decompressed bytes are accepted.
    pub limit: u64,
    /// Whether the object is a zlib stream (the catalog can say it is stored raw).
    pub compressed: bool,
    /// For catalogs: where they are mounted (a cache drops superseded versions first).
    pub mountpoint: Option<&'a [u8]>,
}

/// A verified, decompressed object: in memory, or the open file a cache keeps (open, so
/// that what was verified is what is read, whatever happens to the cache's names).
#[derive(Debug)]
pub enum Verified {
    /// The content in memory.
    Bytes(Vec<u8>),
    /// An open file holding the verified content (a cache's copy).
    File(fs::File),
}

impl Verified {
    /// The content in memory, read from the file if need be.
    pub fn into_bytes(self) -> Result<Vec<u8>, SourceError> {
        match self {
            Verified::Bytes(b) => Ok(b),
            Verified::File(mut f) => {
                use std::io::Read;
                let mut out = Vec::new();
                f.read_to_end(&mut out)
                    .ctx("reading", Path::new("a cached object"))
                    .map_err(SourceError::from)?;
                Ok(out)
            }
        }
    }
}

/// Where a reader gets the raw bytes of repository files (`.cvmfspublished`, `data/…`).
/// A local directory now; HTTP implements the same trait.
pub trait ObjectSource: Send + Sync {
    /// The bytes of `rel` (a path relative to the repository root), at most `limit` of them.
    fn fetch(&self, rel: &str, limit: u64) -> Result<Vec<u8>, SourceError>;
    /// A short description for messages (a directory or a URL).
    fn describe(&self) -> String;

    /// Ends one hold of the object `hash`, which a request with a `mountpoint` (a catalog)
    /// handed out: a caching source may evict it again once no one holds it. Every such
    /// request that succeeded is released exactly once.
    fn release(&self, _hash: &crate::cvmfs::hash::ContentHash) {}

    /// An object, verified against its name and decompressed. By default fetched whole
    /// into memory; a caching source hands out the path of its verified copy instead.
    fn object(&self, req: &ObjectRequest<'_>) -> Result<Verified, SourceError> {
        let name = req.name;
        let raw_limit = if req.compressed {
            req.limit + req.limit / 512 + 1024
        } else {
            req.limit
        };
        let raw = self.fetch(&name.path(), raw_limit)?;
        let data = if req.compressed {
            crate::cvmfs::object::open_verified(name, &raw, req.limit)?
        } else {
            let actual = name.hash.algo.digest(&raw);
            if actual != name.hash {
                return Err(crate::cvmfs::object::ObjectError::HashMismatch {
                    name: name.path(),
                    actual: actual.to_hex(),
                }
                .into());
            }
            raw
        };
        if let Some(want) = req.size {
            if data.len() as u64 != want {
                let e = crate::cvmfs::object::ObjectError::SizeMismatch {
                    name: name.path(),
                    expected: want,
                    actual: data.len() as u64,
                };
                return Err(e.into());
            }
        }
        Ok(Verified::Bytes(data))
    }
}
