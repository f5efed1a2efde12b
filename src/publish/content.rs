//! Turning regular files into objects: whole files and content-defined chunks, hashed and
//! compressed on every core, with files unchanged since the last publish taken from the
//! publish index instead of being read again.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::{Condvar, Mutex};

use rayon::prelude::*;

use crate::cvmfs::catalog::Chunk;
use crate::cvmfs::hash::{ContentHash, HashAlgo};
use crate::cvmfs::object::{compress_and_hash, ObjectKind, ObjectName};
use crate::repository::local::LocalStore;
use crate::repository::source::IoError;

use super::chunker::{ChunkDetector, ChunkSizes};
use super::index::PublishIndex;
use super::walk::{FileJob, Meta};
use super::{Progress, PublishError};

/// Where a regular file's bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// One whole-file object.
    Whole {
        /// Hash of the compressed object, which names it in `data/`.
        hash: ContentHash,
        /// Uncompressed file size in bytes.
        size: u64,
    },
    /// Content-defined chunks (`P` objects); the catalog entry itself has no hash.
    Chunked {
        /// Uncompressed file size in bytes.
        size: u64,
        /// The chunks in offset order, together covering the file.
        chunks: Vec<Chunk>,
    },
}

impl FileContent {
    /// Every object the content needs.
    pub fn objects(&self) -> Vec<ObjectName> {
        match self {
            FileContent::Whole { hash, .. } => vec![ObjectName::new(*hash, ObjectKind::File)],
            FileContent::Chunked { chunks, .. } => chunks
                .iter()
                .map(|c| ObjectName::new(c.hash, ObjectKind::Chunk))
                .collect(),
        }
    }

    /// The file size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            FileContent::Whole { size, .. } | FileContent::Chunked { size, .. } => *size,
        }
    }

    /// A one-line text form: `W SIZE HASH` or `C SIZE OFFSET:SIZE:HASH,...` (the publish
    /// index and remembered layers store it).
    pub fn encode(&self) -> String {
        match self {
            FileContent::Whole { hash, size } => format!("W {size} {}", hash.to_hex()),
            FileContent::Chunked { size, chunks } => {
                let list: Vec<String> = chunks
                    .iter()
                    .map(|c| format!("{}:{}:{}", c.offset, c.size, c.hash.to_hex()))
                    .collect();
                format!("C {size} {}", list.join(","))
            }
        }
    }

    /// Parses [`FileContent::encode`]'s form; `None` if it is not one.
    pub fn decode(s: &str) -> Option<FileContent> {
        let mut parts = s.splitn(3, ' ');
        let (kind, size, rest) = (parts.next()?, parts.next()?.parse().ok()?, parts.next()?);
        match kind {
            "W" => Some(FileContent::Whole {
                hash: ContentHash::parse(rest).ok()?,
                size,
            }),
            "C" => {
                let mut chunks = Vec::new();
                for c in rest.split(',') {
                    let mut f = c.splitn(3, ':');
                    chunks.push(Chunk {
                        offset: f.next()?.parse().ok()?,
                        size: f.next()?.parse().ok()?,
                        hash: ContentHash::parse(f.next()?).ok()?,
                    });
                }
                Some(FileContent::Chunked { size, chunks })
            }
            _ => None,
        }
    }
}

/// How [`process_all`] turns files into objects.
pub struct ContentSettings<'a> {
    /// Where objects are stored.
    pub store: &'a LocalStore,
    /// Hash algorithm of new objects.
    pub algo: HashAlgo,
    /// Chunk sizes; `None` (or invalid sizes) stores every file whole.
    pub chunking: Option<ChunkSizes>,
    /// Told of bytes done and of each file about to be read.
    pub progress: &'a dyn Progress,
    /// The last publish's index, for files unchanged since.
    pub index: &'a PublishIndex,
}

/// Counts of what [`process_all`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ContentStats {
    /// Files read, hashed and stored.
    pub files_read: u64,
    /// Total size in bytes of the files read.
    pub bytes_read: u64,
    /// Files taken from the publish index, their objects all present.
    pub files_reused: u64,
}

/// Produces the content of every job, in job order.
pub fn process_all(
    jobs: &[FileJob],
    s: &ContentSettings<'_>,
) -> Result<(Vec<FileContent>, ContentStats), PublishError> {
    let mut out: Vec<Option<FileContent>> = vec![None; jobs.len()];
    let mut todo = Vec::new();
    let mut stats = ContentStats::default();
    for (i, job) in jobs.iter().enumerate() {
        match s
            .index
            .reusable(&job.repo_path, &job.meta, s.algo, |o| s.store.stored_len(o))
        {
            Some(c) => {
                s.progress.bytes(job.meta.size);
                stats.files_reused += 1;
                out[i] = Some(c);
            }
            _ => todo.push(i),
        }
    }
    let chunking = s.chunking.filter(|c| c.validate().is_ok());
    let (large, small): (Vec<usize>, Vec<usize>) = todo
        .into_iter()
        .partition(|&i| chunking.is_some_and(|c| c.might_chunk(jobs[i].meta.size)));
    // Small files: one task each, spread over the pool.
    let results: Vec<(usize, Result<FileContent, PublishError>)> = small
        .par_iter()
        .map(|&i| (i, whole_file(&jobs[i], s)))
        .collect();
    for (i, r) in results {
        out[i] = Some(r?);
    }
    // Large files one at a time from this thread, their chunks compressed in parallel.
    for &i in &large {
        out[i] = Some(chunked_file(
            &jobs[i],
            s,
            chunking.expect("partitioned on it"),
        )?);
    }
    for &i in small.iter().chain(&large) {
        stats.files_read += 1;
        stats.bytes_read += jobs[i].meta.size;
    }
    Ok((
        out.into_iter()
            .map(|c| c.expect("every job done"))
            .collect(),
        stats,
    ))
}

/// Opens a file as the walk saw it: no symlink following, no blocking on a fifo that
/// replaced it, and the same size and mtime as at walk time.
fn open_checked(job: &FileJob, s: &ContentSettings<'_>) -> Result<File, PublishError> {
    s.progress.before_read(&job.source);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&job.source)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PublishError::Vanished(job.source.clone()),
            _ if e.raw_os_error() == Some(libc::ELOOP) => PublishError::Changed(job.source.clone()),
            _ => PublishError::io("opening", &job.source, e),
        })?;
    check_unchanged(&f, job)?;
    Ok(f)
}

fn check_unchanged(f: &File, job: &FileJob) -> Result<(), PublishError> {
    let m = f
        .metadata()
        .map_err(|e| PublishError::io("reading metadata of", &job.source, e))?;
    let now = Meta::of(&m);
    let same = m.is_file()
        && now.size == job.meta.size
        && now.mtime == job.meta.mtime
        && now.mtime_ns == job.meta.mtime_ns
        && m.ino() == job.meta.ino;
    if same {
        Ok(())
    } else {
        Err(PublishError::Changed(job.source.clone()))
    }
}

/// Why storing a stream of file content failed: reading the stream, or storing its objects.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The reader failed (for a walked file: the file; for a layer: the decompressor or
    /// the tar stream under it).
    #[error("reading the content: {0}")]
    Read(#[source] std::io::Error),
    /// Writing an object into the store failed.
    #[error(transparent)]
    Store(#[from] IoError),
}

/// What storing one file's content did.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Where the bytes now live.
    pub content: FileContent,
    /// Bytes read from the stream (the file size).
    pub size: u64,
    /// Objects written as new.
    pub written: u64,
    /// Objects that were in the store already, whole.
    pub reused: u64,
}

/// Stores all of `reader` as a file's content: chunked when `chunking` is given and
/// `size_hint` (the expected size) is above the minimum chunk size, one whole-file object
/// otherwise. Chunking compresses on the rayon pool and blocks until it is done, so the
/// caller must not be a pool worker.
pub fn store_content(
    reader: &mut dyn Read,
    size_hint: u64,
    store: &LocalStore,
    algo: HashAlgo,
    chunking: Option<ChunkSizes>,
    progress: &dyn Progress,
) -> Result<Stored, ContentError> {
    match chunking.filter(|c| c.validate().is_ok() && c.might_chunk(size_hint)) {
        Some(sizes) => store_chunked(reader, store, algo, sizes, progress),
        None => store_whole(reader, size_hint, store, algo, progress),
    }
}

/// Files up to this size are read and compressed in memory (one pass, no temporary file
/// unless the object is new); larger ones are streamed with bounded memory.
const IN_MEMORY: u64 = 16 << 20;

thread_local! {
    /// Per-thread read and compress buffers, reused across files.
    static BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Keeps the first error of the reader it wraps: the store wraps read errors in its own
/// context, and callers need to tell a failed read from a failed write.
struct Catching<'a> {
    inner: &'a mut dyn Read,
    progress: &'a dyn Progress,
    error: Option<std::io::Error>,
}

impl Read for Catching<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => {
                    self.progress.bytes(n as u64);
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let shown = std::io::Error::new(e.kind(), e.to_string());
                    self.error.get_or_insert(e);
                    return Err(shown);
                }
            }
        }
    }
}

impl Catching<'_> {
    /// The reader's own error if it failed, else `e` as a store error.
    fn blame(&mut self, e: IoError) -> ContentError {
        match self.error.take() {
            Some(read) => ContentError::Read(read),
            None => ContentError::Store(e),
        }
    }
}

/// Stores all of `reader` as one whole-file object: in memory when `size_hint` is at most
/// 16 MiB (and the stream keeps to it), streamed through a temporary file otherwise.
pub fn store_whole(
    reader: &mut dyn Read,
    size_hint: u64,
    store: &LocalStore,
    algo: HashAlgo,
    progress: &dyn Progress,
) -> Result<Stored, ContentError> {
    let mut r = Catching {
        inner: reader,
        progress,
        error: None,
    };
    if size_hint <= IN_MEMORY {
        let done = BUFFERS.with(|b| -> Result<Option<Stored>, ContentError> {
            let (data, compressed) = &mut *b.borrow_mut();
            data.clear();
            (&mut r)
                .take(IN_MEMORY + 1)
                .read_to_end(data)
                .map_err(|e| ContentError::Read(r.error.take().unwrap_or(e)))?;
            if data.len() as u64 > IN_MEMORY {
                return Ok(None); // longer than it said: streamed below, prefix first
            }
            crate::cvmfs::object::compress_into(data, compressed);
            let hash = algo.digest(compressed);
            let new = store.put_compressed(&ObjectName::new(hash, ObjectKind::File), compressed)?;
            Ok(Some(Stored {
                content: FileContent::Whole {
                    hash,
                    size: data.len() as u64,
                },
                size: data.len() as u64,
                written: u64::from(new),
                reused: u64::from(!new),
            }))
        })?;
        if let Some(s) = done {
            return Ok(s);
        }
        let prefix = BUFFERS.with(|b| std::mem::take(&mut b.borrow_mut().0));
        let mut chained = std::io::Cursor::new(prefix).chain(&mut r);
        let result = stream_whole(&mut chained, store, algo);
        drop(chained);
        return result.map_err(|e| r.blame(e));
    }
    stream_whole(&mut r, store, algo).map_err(|e| r.blame(e))
}

fn stream_whole(r: &mut dyn Read, store: &LocalStore, algo: HashAlgo) -> Result<Stored, IoError> {
    let (name, size, new) =
        store.put_stream(ObjectKind::File, algo, r, std::path::Path::new("(content)"))?;
    Ok(Stored {
        content: FileContent::Whole {
            hash: name.hash,
            size,
        },
        size,
        written: u64::from(new),
        reused: u64::from(!new),
    })
}

/// Bounds how many chunks are being compressed at once (memory: this many × max chunk).
struct InFlight {
    count: Mutex<usize>,
    freed: Condvar,
    limit: usize,
}

impl InFlight {
    fn acquire(&self) {
        let mut c = self.count.lock().expect("in-flight count");
        while *c >= self.limit {
            c = self.freed.wait(c).expect("in-flight count");
        }
        *c += 1;
    }
    fn release(&self) {
        *self.count.lock().expect("in-flight count") -= 1;
        self.freed.notify_one();
    }
}

/// Chunks of one file compressed at once, at most: each holds up to twice the largest chunk
/// (its bytes and its compressed copy), so this bounds a big file's memory at about
/// 16 MiB + 4 x 32 MiB on any host. The price: one file is deflated on 4 threads at most
/// (many files are still stored in parallel by `publish`).
const MAX_CHUNKS_IN_FLIGHT: usize = 4;

/// Cuts all of `reader` into content-defined chunks on the calling thread (which must not
/// be a pool worker: it blocks while every worker compresses a chunk) and compresses them
/// on the pool. Memory, whatever the file's size: one chunk per pool thread being compressed
/// (its bytes and its compressed copy), the chunk being cut, and the first chunk until a
/// second one shows the stream is chunked at all; with the default 16 MiB maximum, at most
/// 16 MiB + min(pool threads, 4) × 32 MiB. A stream that makes a single chunk is stored as a
/// whole-file object, as upstream does.
pub fn store_chunked(
    reader: &mut dyn Read,
    store: &LocalStore,
    algo: HashAlgo,
    sizes: ChunkSizes,
    progress: &dyn Progress,
) -> Result<Stored, ContentError> {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
    let inflight = InFlight {
        count: Mutex::new(0),
        freed: Condvar::new(),
        // No more than there are workers: a chunk queued behind busy workers would only
        // hold memory, since the reader cuts the next one meanwhile anyway. And no more
        // than MAX_CHUNKS_IN_FLIGHT whatever the core count, so that one big file costs
        // the same memory on a 64-core host as on a 4-core one.
        limit: rayon::current_num_threads().clamp(1, MAX_CHUNKS_IN_FLIGHT),
    };
    let results: Mutex<Vec<Result<Chunk, IoError>>> = Mutex::new(Vec::new());
    let written = AtomicU64::new(0);
    let mut offset = 0u64;
    // The first chunk, held back until a second one is cut: a lone chunk is stored whole.
    let mut pending: Option<(u64, Vec<u8>)> = None;
    let dispatched = AtomicUsize::new(0);
    let read_result =
        rayon::in_place_scope(|scope| -> Result<Option<(u64, Vec<u8>)>, ContentError> {
            let mut detector = ChunkDetector::new(sizes);
            // Room for the largest chunk up front: growing by doubling would copy it, with
            // both copies in memory for a moment. Only the pages written become resident.
            let mut current: Vec<u8> = Vec::with_capacity(sizes.max as usize);
            let mut buf = vec![0u8; 1 << 20];
            let dispatch = |start: u64, data: Vec<u8>| {
                inflight.acquire();
                dispatched.fetch_add(1, Relaxed);
                let (inflight, results, written) = (&inflight, &results, &written);
                scope.spawn(move |_| {
                    let (compressed, hash) = compress_and_hash(algo, &data);
                    let name = ObjectName::new(hash, ObjectKind::Chunk);
                    let r = store.put_compressed(&name, &compressed).map(|new| {
                        written.fetch_add(u64::from(new), Relaxed);
                        Chunk {
                            offset: start,
                            size: data.len() as u64,
                            hash,
                        }
                    });
                    results.lock().expect("chunk results").push(r);
                    inflight.release();
                });
            };
            // Each chunk cut: the first waits in `pending`; the second sends both.
            let mut send = |start: u64, data: Vec<u8>| {
                if dispatched.load(Relaxed) == 0 && pending.is_none() {
                    pending = Some((start, data));
                    return;
                }
                if let Some((ps, pd)) = pending.take() {
                    dispatch(ps, pd);
                }
                dispatch(start, data);
            };
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(ContentError::Read(e)),
                };
                progress.bytes(n as u64);
                let mut rest = &buf[..n];
                while let Some(cut) = detector.feed(rest) {
                    current.extend_from_slice(&rest[..cut]);
                    rest = &rest[cut..];
                    let done =
                        std::mem::replace(&mut current, Vec::with_capacity(sizes.max as usize));
                    let start = offset;
                    offset += done.len() as u64;
                    send(start, done);
                }
                current.extend_from_slice(rest);
            }
            if !current.is_empty() {
                let start = offset;
                offset += current.len() as u64;
                send(start, std::mem::take(&mut current));
            }
            // Nothing sent: at most one chunk, stored whole below.
            Ok(pending.take())
        })?;
    if let Some((_, data)) = read_result {
        // One chunk only (or none: an empty stream): a plain whole-file object.
        let (compressed, hash) = compress_and_hash(algo, &data);
        let new = store.put_compressed(&ObjectName::new(hash, ObjectKind::File), &compressed)?;
        return Ok(Stored {
            content: FileContent::Whole { hash, size: offset },
            size: offset,
            written: u64::from(new),
            reused: u64::from(!new),
        });
    }
    let mut chunks = results
        .into_inner()
        .expect("chunk results")
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    chunks.sort_by_key(|c| c.offset);
    let written = written.into_inner();
    Ok(Stored {
        reused: chunks.len() as u64 - written,
        written,
        content: FileContent::Chunked {
            size: offset,
            chunks,
        },
        size: offset,
    })
}

fn whole_file(job: &FileJob, s: &ContentSettings<'_>) -> Result<FileContent, PublishError> {
    let mut f = open_checked(job, s)?;
    let stored = store_whole(&mut f, job.meta.size, s.store, s.algo, s.progress)
        .map_err(|e| content_error(job, e))?;
    finish_read(&f, job, stored)
}

fn chunked_file(
    job: &FileJob,
    s: &ContentSettings<'_>,
    sizes: ChunkSizes,
) -> Result<FileContent, PublishError> {
    let mut f = open_checked(job, s)?;
    let stored = store_chunked(&mut f, s.store, s.algo, sizes, s.progress)
        .map_err(|e| content_error(job, e))?;
    finish_read(&f, job, stored)
}

fn content_error(job: &FileJob, e: ContentError) -> PublishError {
    match e {
        ContentError::Read(e) => PublishError::io("reading", &job.source, e),
        ContentError::Store(e) => PublishError::Io(e),
    }
}

/// A walked file read whole must still be as the walk saw it, at the size it saw.
fn finish_read(f: &File, job: &FileJob, stored: Stored) -> Result<FileContent, PublishError> {
    check_unchanged(f, job)?;
    if stored.size != job.meta.size {
        return Err(PublishError::Changed(job.source.clone()));
    }
    Ok(stored.content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cvmfs::object::open_verified;
    use crate::publish::NoProgress;

    const SIZES: ChunkSizes = ChunkSizes {
        min: 4 << 10,
        avg: 8 << 10,
        max: 16 << 10,
    };

    /// Deterministic incompressible bytes (xorshift).
    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn read(store: &LocalStore, name: &ObjectName) -> Vec<u8> {
        let compressed = std::fs::read(store.path_of(&name.path())).unwrap();
        open_verified(name, &compressed, u64::MAX).unwrap()
    }

    /// Where an independent detector over the whole input cuts it: (offset, size) pairs.
    fn cuts(data: &[u8]) -> Vec<(u64, u64)> {
        let (mut d, mut out, mut start, mut at) = (ChunkDetector::new(SIZES), vec![], 0, 0);
        let mut rest = data;
        while let Some(n) = d.feed(rest) {
            at += n;
            out.push((start as u64, (at - start) as u64));
            start = at;
            rest = &rest[n..];
        }
        if at < data.len() {
            out.push((start as u64, (data.len() - start) as u64));
        }
        out
    }

    #[test]
    fn a_chunked_stream_is_stored_as_its_cuts_and_a_lone_chunk_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.create_layout().unwrap();
        let data = noise(300 << 10);
        let want = cuts(&data);
        assert!(want.len() > 10, "{want:?}");
        let s = store_chunked(&mut &data[..], &store, HashAlgo::Sha1, SIZES, &NoProgress).unwrap();
        assert_eq!(s.size, data.len() as u64);
        let FileContent::Chunked { size, chunks } = s.content else {
            panic!("not chunked: {:?}", s.content)
        };
        assert_eq!(size, data.len() as u64);
        let got: Vec<(u64, u64)> = chunks.iter().map(|c| (c.offset, c.size)).collect();
        assert_eq!(got, want);
        for c in &chunks {
            let (at, n) = (c.offset as usize, c.size as usize);
            let name = ObjectName::new(c.hash, ObjectKind::Chunk);
            assert_eq!(read(&store, &name), &data[at..at + n]);
        }
        assert_eq!((s.written, s.reused), (chunks.len() as u64, 0));

        // Shorter than the minimum chunk: no cut, so one whole-file object.
        let short = &data[..3000];
        let s = store_chunked(&mut &short[..], &store, HashAlgo::Sha1, SIZES, &NoProgress).unwrap();
        let FileContent::Whole { hash, size } = s.content else {
            panic!("not whole: {:?}", s.content)
        };
        assert_eq!(size, 3000);
        assert_eq!(
            read(&store, &ObjectName::new(hash, ObjectKind::File)),
            short
        );
    }
}
