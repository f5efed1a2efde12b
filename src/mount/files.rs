//! Open files of the mounted tree: a whole file is fetched on open and read from its cached
//! object; a chunked file chunk by chunk on read, the next chunk fetched in the background.
//! The object or chunk being read is pinned against the cache's quota until released.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::cvmfs::catalog::{Chunk, EntryKind};
use crate::cvmfs::hash::ContentHash;
use crate::cvmfs::object::{ObjectKind, ObjectName};
use crate::remote::RemoteSource;
use crate::repository::source::Verified;

use super::journal::{FileRecord, Record};
use super::{elf, loader, ClientError, MountedTree};

/// Where an open file's bytes are.
#[derive(Clone)]
pub(super) enum Handle {
    /// A file of no bytes: nothing to fetch (and nothing that could be wrong).
    Empty,
    Whole {
        file: Arc<File>,
        hash: ContentHash,
    },
    Chunked(Arc<ChunkedFile>),
    /// Opened by a previous daemon: made one of the others on first use.
    Kept(FileRecord),
}

/// An open chunked file: its chunk list and the chunk being read (sequential reads hit the
/// same chunk many times in a row; it stays open rather than being looked up each time).
pub(super) struct ChunkedFile {
    chunks: Vec<Chunk>,
    compressed: bool,
    current: Mutex<Option<(usize, Arc<File>)>>,
    /// The chunk a background prefetch was last started for.
    prefetched: AtomicU64,
}

impl MountedTree {
    /// Opens a regular file: a whole-file object is fetched (and verified) now; a chunked
    /// file's chunks are fetched as reads reach them. Returns a handle.
    pub fn open(&self, ino: u64) -> Result<u64, ClientError> {
        let f = self.note(self.stat(ino))?;
        let e = &f.entry;
        match e.kind() {
            EntryKind::Directory => return Err(ClientError::IsADirectory),
            EntryKind::File => {}
            _ => return Err(ClientError::Io("not a regular file".into())),
        }
        let record = if e.size == 0 {
            // Published empty files and the skeleton's (which have no object anywhere).
            FileRecord::Empty
        } else if e.is_chunked() {
            let chunks = self.note(self.with_snapshot(|s| Ok(s.chunks(&f)?)))?;
            FileRecord::Chunked {
                compressed: e.is_compressed(),
                chunks,
            }
        } else {
            let hash = match e.hash {
                Some(h) => h,
                None => return self.note(Err(ClientError::Io("file without content hash".into()))),
            };
            FileRecord::Whole {
                hash,
                size: e.size,
                compressed: e.is_compressed(),
            }
        };
        let handle = self.note(self.handle_of(&record))?;
        if let Handle::Whole { file, hash } = &handle {
            self.maybe_prefetch_loader(file, e.size, *hash, &f.path);
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.journal_handle(
            fh,
            Record::File {
                fh,
                ino,
                file: record,
            },
        );
        self.handles.lock().expect("handles").insert(fh, handle);
        Ok(fh)
    }

    /// The handle reading what `record` names: a whole file's object is fetched (and
    /// verified) now and pinned until release; a chunked file's chunks as reads reach them.
    pub(super) fn handle_of(&self, record: &FileRecord) -> Result<Handle, ClientError> {
        Ok(match record {
            FileRecord::Empty => Handle::Empty,
            FileRecord::Chunked { compressed, chunks } => Handle::Chunked(Arc::new(ChunkedFile {
                chunks: chunks.clone(),
                compressed: *compressed,
                current: Mutex::new(None),
                prefetched: AtomicU64::new(u64::MAX),
            })),
            FileRecord::Whole {
                hash,
                size,
                compressed,
            } => {
                let file = self.object_file(
                    &ObjectName::new(*hash, ObjectKind::File),
                    *size,
                    *compressed,
                )?;
                self.source.cache.pin(hash);
                Handle::Whole {
                    file: Arc::new(file),
                    hash: *hash,
                }
            }
        })
    }

    /// A program (an ELF file) was opened: start fetching its interpreter and libraries.
    fn maybe_prefetch_loader(&self, file: &Arc<File>, size: u64, hash: ContentHash, at: &[u8]) {
        let mut head = [0u8; 4];
        if size < 64 || file.read_exact_at(&mut head, 0).is_err() || !elf::is_elf(&head) {
            return;
        }
        let (repo, root, root_size) = {
            let cur = self.current.read().expect("revision");
            (cur.repo.clone(), cur.root, cur.root_size)
        };
        self.loader.start(loader::Job {
            program: file.clone(),
            size,
            hash,
            repo,
            root,
            root_size,
            base: self.base.clone(),
            program_path: at.to_vec(),
            source: self.source.clone(),
        });
    }

    fn object_file(
        &self,
        name: &ObjectName,
        size: u64,
        compressed: bool,
    ) -> Result<File, ClientError> {
        let v = self.with_snapshot(|s| Ok(s.verified(name, size, compressed)?))?;
        match v {
            Verified::File(f) => Ok(f),
            Verified::Bytes(_) => Err(ClientError::Io("object not cached".into())),
        }
    }

    /// Up to `size` bytes of open file `fh` from `offset`; fewer only at the end of the file.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, ClientError> {
        let mut out = vec![0u8; size as usize];
        let n = self.read_into(fh, offset, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// Reads into `out` (a buffer the caller reuses: a fresh megabyte per request would be
    /// mapped, zeroed and unmapped every time); the number of bytes read.
    pub fn read_into(&self, fh: u64, offset: u64, out: &mut [u8]) -> Result<usize, ClientError> {
        let handle = self.handle(fh)?;
        match handle {
            Handle::Kept(_) => Err(ClientError::BadHandle),
            Handle::Empty => Ok(0),
            Handle::Whole { file, .. } => {
                read_full(&file, out, offset).map_err(|e| ClientError::Io(e.to_string()))
            }
            Handle::Chunked(c) => self.note(self.read_chunks(&c, offset, out)),
        }
    }

    /// Fills `out` from the chunks covering `[offset, offset + out.len())`.
    fn read_chunks(
        &self,
        cf: &ChunkedFile,
        offset: u64,
        out: &mut [u8],
    ) -> Result<usize, ClientError> {
        let mut done = 0usize;
        let start = cf.chunks.partition_point(|c| c.offset + c.size <= offset);
        for (i, c) in cf.chunks.iter().enumerate().skip(start) {
            if done == out.len() {
                break;
            }
            let pos = offset + done as u64;
            if c.offset > pos {
                break;
            }
            let file = self.chunk_file(cf, i)?;
            let want = ((c.offset + c.size - pos) as usize).min(out.len() - done);
            let n = read_full(&file, &mut out[done..done + want], pos - c.offset)
                .map_err(|e| ClientError::Io(e.to_string()))?;
            done += n;
            if n < want {
                break;
            }
        }
        Ok(done)
    }

    /// The open file of chunk `i`, fetching it if needed; starts fetching chunk `i + 1` in
    /// the background, so a sequential reader finds it ready instead of waiting a round trip.
    fn chunk_file(&self, cf: &ChunkedFile, i: usize) -> Result<Arc<File>, ClientError> {
        if let Some((ci, f)) = cf.current.lock().expect("current chunk").as_ref() {
            if *ci == i {
                return Ok(f.clone());
            }
        }
        let c = &cf.chunks[i];
        let file = Arc::new(self.object_file(
            &ObjectName::new(c.hash, ObjectKind::Chunk),
            c.size,
            cf.compressed,
        )?);
        {
            // The chunk being read is pinned like an open whole file: the quota leaves it
            // alone until the reader moves on or closes the file.
            let mut current = cf.current.lock().expect("current chunk");
            self.source.cache.pin(&c.hash);
            if let Some((old, _)) = current.replace((i, file.clone())) {
                self.source.cache.unpin(&cf.chunks[old].hash);
            }
        }
        if let Some(next) = cf.chunks.get(i + 1) {
            if cf.prefetched.swap(i as u64 + 1, Ordering::Relaxed) != i as u64 + 1 {
                self.prefetch(
                    ObjectName::new(next.hash, ObjectKind::Chunk),
                    next.size,
                    cf.compressed,
                );
            }
        }
        Ok(file)
    }

    /// Fetches an object into the cache in the background (see [`fetch_in_background`]).
    fn prefetch(&self, name: ObjectName, size: u64, compressed: bool) {
        fetch_in_background(&self.source, name, size, compressed);
    }

    /// The handle `fh`; one a previous daemon opened is opened again now.
    fn handle(&self, fh: u64) -> Result<Handle, ClientError> {
        let h = self
            .handles
            .lock()
            .expect("handles")
            .get(&fh)
            .cloned()
            .ok_or(ClientError::BadHandle)?;
        let Handle::Kept(record) = h else {
            return Ok(h);
        };
        let opened = self.note(self.handle_of(&record))?;
        let mut handles = self.handles.lock().expect("handles");
        match handles.get_mut(&fh) {
            Some(slot @ Handle::Kept(_)) => {
                *slot = opened.clone();
                // The pin `restore` took is now the opened handle's own.
                if let Handle::Whole { hash, .. } = &opened {
                    self.source.cache.unpin(hash);
                }
                Ok(opened)
            }
            // Another thread opened it meanwhile (or it was released): theirs stands.
            other => {
                if let Handle::Whole { hash, .. } = &opened {
                    self.source.cache.unpin(hash);
                }
                other.cloned().ok_or(ClientError::BadHandle)
            }
        }
    }

    /// The cached object behind an open whole file (for kernel passthrough).
    pub fn whole_file(&self, fh: u64) -> Option<Arc<File>> {
        match self.handle(fh).ok()? {
            Handle::Whole { file, .. } => Some(file),
            Handle::Empty | Handle::Chunked(_) | Handle::Kept(_) => None,
        }
    }

    /// Closes file handle `fh`, unpinning the cached object (or chunk) it held.
    pub fn release(&self, fh: u64) {
        let handle = self.handles.lock().expect("handles").remove(&fh);
        self.journal_release(fh);
        match handle {
            Some(Handle::Whole { hash, .. }) => self.source.cache.unpin(&hash),
            Some(Handle::Kept(FileRecord::Whole { hash, .. })) => self.source.cache.unpin(&hash),
            Some(Handle::Empty) | Some(Handle::Kept(_)) | None => {}
            Some(Handle::Chunked(c)) => {
                if let Some((i, _)) = c.current.lock().expect("current chunk").take() {
                    self.source.cache.unpin(&c.chunks[i].hash);
                }
            }
        }
    }
}

fn read_full(file: &File, out: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < out.len() {
        match file.read_at(&mut out[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Fetches an object into the cache on a short-lived thread, unless it is cached already;
/// errors are left for the reader that needs the object to meet (and report) again. The
/// thread, to wait for, if one was started.
pub(crate) fn fetch_in_background(
    source: &Arc<RemoteSource>,
    name: ObjectName,
    size: u64,
    compressed: bool,
) -> Option<std::thread::JoinHandle<()>> {
    if source.cache.path(&name.hash).exists() {
        return None;
    }
    let source = source.clone();
    std::thread::Builder::new()
        .name("lazyroot-prefetch".into())
        .spawn(move || {
            let req = crate::repository::source::ObjectRequest {
                name: &name,
                size: Some(size),
                limit: size,
                compressed,
                mountpoint: None,
            };
            let _ = crate::repository::source::ObjectSource::object(source.as_ref(), &req);
        })
        .ok()
}
