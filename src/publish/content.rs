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

/// Files up to this size are read and compressed in memory (one pass, no temporary file
/// unless the object is new); larger ones are streamed with bounded memory.
const IN_MEMORY: u64 = 16 << 20;

thread_local! {
    /// Per-thread read and compress buffers, reused across files.
    static BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

fn whole_file(job: &FileJob, s: &ContentSettings<'_>) -> Result<FileContent, PublishError> {
    let mut f = open_checked(job, s)?;
    if job.meta.size <= IN_MEMORY {
        return BUFFERS.with(|b| {
            let (data, compressed) = &mut *b.borrow_mut();
            data.clear();
            (&mut f)
                .take(IN_MEMORY + 1)
                .read_to_end(data)
                .map_err(|e| PublishError::io("reading", &job.source, e))?;
            s.progress.bytes(data.len() as u64);
            check_unchanged(&f, job)?;
            if data.len() as u64 != job.meta.size {
                return Err(PublishError::Changed(job.source.clone()));
            }
            crate::cvmfs::object::compress_into(data, compressed);
            let hash = s.algo.digest(compressed);
            s.store
                .put_compressed(&ObjectName::new(hash, ObjectKind::File), compressed)?;
            Ok(FileContent::Whole {
                hash,
                size: data.len() as u64,
            })
        });
    }

    let mut counting = CountingReader {
        inner: &mut f,
        progress: s.progress,
    };
    let (name, size, _) =
        s.store
            .put_stream(ObjectKind::File, s.algo, &mut counting, &job.source)?;
    check_unchanged(&f, job)?;
    if size != job.meta.size {
        return Err(PublishError::Changed(job.source.clone()));
    }
    Ok(FileContent::Whole {
        hash: name.hash,
        size,
    })
}

struct CountingReader<'a, R: Read> {
    inner: &'a mut R,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.bytes(n as u64);
        Ok(n)
    }
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

/// Reads a large file on the calling thread (which must not be a pool worker: it blocks
/// while every worker compresses a chunk) and compresses its chunks on the pool.
fn chunked_file(
    job: &FileJob,
    s: &ContentSettings<'_>,
    sizes: ChunkSizes,
) -> Result<FileContent, PublishError> {
    let mut f = open_checked(job, s)?;
    let inflight = InFlight {
        count: Mutex::new(0),
        freed: Condvar::new(),
        limit: rayon::current_num_threads() + 1,
    };
    let results: Mutex<Vec<Result<Chunk, PublishError>>> = Mutex::new(Vec::new());
    let mut offset = 0u64;
    let mut pending: Option<(u64, Vec<u8>)> = None; // held back: a lone chunk is stored whole
    let dispatched = std::sync::atomic::AtomicUsize::new(0);
    let read_result =
        rayon::in_place_scope(|scope| -> Result<Option<(u64, Vec<u8>)>, PublishError> {
            let mut detector = ChunkDetector::new(sizes);
            let mut current: Vec<u8> = Vec::with_capacity(sizes.min as usize);
            let mut buf = vec![0u8; 1 << 20];
            let dispatch = |start: u64, data: Vec<u8>| {
                inflight.acquire();
                dispatched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (inflight, results, algo, store) = (&inflight, &results, s.algo, s.store);
                scope.spawn(move |_| {
                    let (compressed, hash) = compress_and_hash(algo, &data);
                    let name = ObjectName::new(hash, ObjectKind::Chunk);
                    let r = store
                        .put_compressed(&name, &compressed)
                        .map(|_| Chunk {
                            offset: start,
                            size: data.len() as u64,
                            hash,
                        })
                        .map_err(PublishError::from);
                    results.lock().expect("chunk results").push(r);
                    inflight.release();
                });
            };
            loop {
                let n = match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(PublishError::io("reading", &job.source, e)),
                };
                s.progress.bytes(n as u64);
                let mut rest = &buf[..n];
                while let Some(cut) = detector.feed(rest) {
                    current.extend_from_slice(&rest[..cut]);
                    rest = &rest[cut..];
                    let done =
                        std::mem::replace(&mut current, Vec::with_capacity(sizes.min as usize));
                    let start = offset;
                    offset += done.len() as u64;
                    if let Some((ps, pd)) = pending.replace((start, done)) {
                        dispatch(ps, pd);
                    }
                }
                current.extend_from_slice(rest);
            }
            if !current.is_empty() {
                let start = offset;
                offset += current.len() as u64;
                if let Some((ps, pd)) = pending.replace((start, std::mem::take(&mut current))) {
                    dispatch(ps, pd);
                }
            }
            if dispatched.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                return Ok(pending.take());
            }
            if let Some((ps, pd)) = pending.take() {
                dispatch(ps, pd);
            }
            Ok(None)
        })?;
    check_unchanged(&f, job)?;
    if offset != job.meta.size {
        return Err(PublishError::Changed(job.source.clone()));
    }
    if let Some((_, data)) = read_result {
        // One chunk only: stored as a plain whole-file object, as upstream does.
        let name = s.store.put(ObjectKind::File, s.algo, &data)?;
        return Ok(FileContent::Whole {
            hash: name.hash,
            size: offset,
        });
    }
    let mut chunks = results
        .into_inner()
        .expect("chunk results")
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    chunks.sort_by_key(|c| c.offset);
    Ok(FileContent::Chunked {
        size: offset,
        chunks,
    })
}
