//! The local cache: one content-addressed directory shared by every repository, revision
//! and image, so an object two images share is downloaded once. Objects are stored
//! decompressed and verified: downloaded into `txn/`, checked against their hash (the
//! download manager hashes the compressed stream), then renamed into `objects/`. A soft
//! quota evicts least-recently-used objects — superseded catalogs first, never pinned
//! ones (loaded catalogs, open files) — down to half the quota.

pub mod breadcrumb;
pub mod quota;
pub mod sink;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

pub use quota::Kind;

use crate::cvmfs::hash::ContentHash;
use crate::remote::download::DownloadError;

/// Why the cache could not be opened or could not hand out an object.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// [`Cache::open`]: a subdirectory cannot be created, the directory is not writable, or
    /// the bookkeeping database does not open.
    #[error("cache directory {path}: {why}")]
    Unusable {
        /// The cache directory.
        path: String,
        /// What failed.
        why: String,
    },
    /// A filesystem operation on a cache file failed.
    #[error("cache: {op} {path}: {source}")]
    Io {
        /// What was being done, e.g. `renaming into`.
        op: &'static str,
        /// The file or directory it was done to.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The download failed: every host failed, or the transaction file could not be written.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// The SQLite bookkeeping database (`cachedb.sqlite`) failed to record an object.
    #[error("cache bookkeeping: {0}")]
    Db(#[from] rusqlite::Error),
    /// The downloaded object does not decompress, or not to the size its catalog states.
    #[error("object {name}: {why}")]
    Object {
        /// The object's hash, in hex.
        name: String,
        /// What is wrong with it.
        why: String,
    },
}

impl CacheError {
    /// Whether the object is missing from every server (as opposed to unreachable servers,
    /// wrong bytes or a local fault).
    pub fn is_missing(&self) -> bool {
        matches!(self, CacheError::Download(d) if d.is_missing())
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CacheError + 'a {
    move |source| CacheError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

/// The local cache of verified, decompressed objects under one directory (`objects/`,
/// `txn/`, `repos/`, `cachedb.sqlite`), shared by every repository. Safe to use from many
/// threads; several processes may share the directory.
pub struct Cache {
    dir: PathBuf,
    /// Soft limit in bytes; `None` = unlimited.
    quota: Option<u64>,
    db: Mutex<quota::Quota>,
    /// Objects being downloaded: later requests wait for the first one.
    inflight: Mutex<HashMap<ContentHash, DoneFlag>>,
    /// Uses not yet written to the bookkeeping database.
    touched: Mutex<Vec<ContentHash>>,
    /// Reference counts of objects that must not be evicted.
    pins: Mutex<HashMap<ContentHash, u32>>,
    /// Objects this process has checked against their recorded digest (or downloaded).
    vouched: Mutex<HashSet<ContentHash>>,
    /// Set while one thread evicts: the others do not queue up to do the same.
    evicting: AtomicBool,
}

/// What a caller needs from the cache.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    /// The object's name: the hash of its bytes as served.
    pub hash: &'a ContentHash,
    /// The decompressed size its catalog states, if known.
    pub size: Option<u64>,
    /// Data or a catalog; older catalogs of a mountpoint are evicted before anything else.
    pub kind: &'a Kind,
    /// At most this many decompressed bytes are accepted.
    pub limit: u64,
    /// Whether it is served zlib-compressed (it is inflated on the way in).
    pub compressed: bool,
}

/// A download's temporary file untouched for this long is a crash's leftover.
const TXN_STALE: std::time::Duration = std::time::Duration::from_secs(600);

/// How many uses are collected before they are written to the bookkeeping database.
const TOUCH_BATCH: usize = 256;

/// Set (and notified) when an in-flight download has finished, successfully or not.
type DoneFlag = Arc<(Mutex<bool>, Condvar)>;

/// Decides what a download writes and how (see [`sink::ObjectSink`]).
pub type Fetch<'a> = dyn Fn(&mut sink::ObjectSink) -> Result<u64, DownloadError> + 'a;

impl Cache {
    /// Opens (creating) a cache directory and checks that it is usable.
    pub fn open(dir: &Path, quota_bytes: Option<u64>) -> Result<Self, CacheError> {
        let unusable = |why: String| CacheError::Unusable {
            path: dir.display().to_string(),
            why,
        };
        for sub in ["objects", "txn", "repos"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(|e| unusable(format!("cannot create {sub}/: {e}")))?;
        }
        // Leftovers of a crash are incomplete downloads: never trusted, removed. Only old
        // ones: other processes share the cache (a daemon taking over from another starts
        // while that one still downloads), and a live download writes at least every few
        // seconds (slower ones are cut off by the low-speed limit).
        if let Ok(rd) = fs::read_dir(dir.join("txn")) {
            let now = std::time::SystemTime::now();
            for e in rd.flatten() {
                let stale = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > TXN_STALE);
                if stale {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let probe = dir.join(format!("txn/.probe-{}", std::process::id()));
        fs::write(&probe, b"x").map_err(|e| unusable(format!("not writable: {e}")))?;
        let _ = fs::remove_file(&probe);
        let db_path = dir.join("cachedb.sqlite");
        let db = match quota::Quota::open(&db_path) {
            Ok(db) => db,
            // Bookkeeping, not data: a damaged database must not stop every mount until an
            // operator deletes the cache.
            Err(e) => {
                tracing::warn!(
                    "cache bookkeeping {}: {e}; rebuilding it from the objects (the damaged \
                     one is kept as cachedb.sqlite.corrupt)",
                    db_path.display()
                );
                quota::Quota::rebuild(&db_path, &dir.join("objects"))
                    .map_err(|e| unusable(format!("rebuilding the bookkeeping database: {e}")))?
            }
        };
        Ok(Cache {
            dir: dir.to_path_buf(),
            quota: quota_bytes,
            db: Mutex::new(db),
            inflight: Mutex::new(HashMap::new()),
            pins: Mutex::new(HashMap::new()),
            touched: Mutex::new(Vec::new()),
            vouched: Mutex::new(HashSet::new()),
            evicting: AtomicBool::new(false),
        })
    }

    /// The cache's root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where object `hash` is, or would be, kept: `objects/<2 hex digits>/<the rest>`.
    pub fn path(&self, hash: &ContentHash) -> PathBuf {
        let hex = hash.to_hex();
        self.dir.join("objects").join(&hex[..2]).join(&hex[2..])
    }

    /// The verified, decompressed object `want.hash`, open for reading, downloading it
    /// with `fetch` if needed. Concurrent calls for one object share one download. An open
    /// file, not a path: once open, nothing that unlinks the object (the quota, another
    /// process sharing the cache) takes it away from the caller.
    pub fn get(&self, want: &Want<'_>, fetch: &Fetch<'_>) -> Result<fs::File, CacheError> {
        let hash = want.hash;
        let path = self.path(hash);
        let mut dropped = false;
        loop {
            match fs::File::open(&path) {
                Ok(file) => match self.vouch(hash, &file, want.size) {
                    Ok(()) => {
                        self.touch(hash);
                        return Ok(file);
                    }
                    // Damaged again right after a fresh copy: this disk is not to be trusted.
                    Err(why) if dropped => {
                        return Err(CacheError::Object {
                            name: hash.to_hex(),
                            why: format!("cached copy damaged twice: {why}"),
                        })
                    }
                    Err(why) => {
                        dropped = true;
                        // Never served: dropped, and fetched again below.
                        tracing::warn!(
                            "cached object {}: {why}; dropping it and fetching it again",
                            hash.to_hex()
                        );
                        self.drop_object(hash, &path);
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("opening", &path)(e)),
            }
            let (flag, mine) = {
                let mut inflight = self.inflight.lock().expect("inflight");
                match inflight.get(hash) {
                    Some(f) => (f.clone(), false),
                    None => {
                        let f = Arc::new((Mutex::new(false), Condvar::new()));
                        inflight.insert(*hash, f.clone());
                        (f, true)
                    }
                }
            };
            if !mine {
                // Another thread downloads it; its download is bounded in time.
                let mut done = flag.0.lock().expect("inflight flag");
                while !*done {
                    done = flag.1.wait(done).expect("inflight flag");
                }
                if path.exists() {
                    continue;
                }
                // The other download failed: try ourselves.
            }
            // A panic in a download must not leave the waiters below waiting for good: it
            // becomes this download's error, and they are told as for any other failure.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.download(want, fetch, &path)
            }))
            .unwrap_or_else(|_| {
                Err(CacheError::Object {
                    name: hash.to_hex(),
                    why: "the download panicked".into(),
                })
            });
            if mine {
                self.inflight.lock().expect("inflight").remove(hash);
                *flag.0.lock().expect("inflight flag") = true;
                flag.1.notify_all();
            }
            return result;
        }
    }

    /// Downloads into `txn/`, verifies, renames into place; returns the file, still open,
    /// so that a quota run right after the rename cannot take it from the caller.
    fn download(
        &self,
        want: &Want<'_>,
        fetch: &Fetch<'_>,
        dest: &Path,
    ) -> Result<fs::File, CacheError> {
        let Want {
            hash,
            size,
            kind,
            limit,
            compressed,
        } = *want;
        let txn = self.dir.join("txn");
        let tmp = tempfile::Builder::new()
            .prefix("obj.")
            .tempfile_in(&txn)
            .map_err(io_err("creating a file in", &txn))?;
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(io_err("opening", tmp.path()))?;
        let mut sink = sink::ObjectSink::new(file, limit, compressed)
            .map_err(io_err("opening", tmp.path()))?;
        fetch(&mut sink)?;
        let (_, written, digest) = sink.finish().map_err(|e| CacheError::Object {
            name: hash.to_hex(),
            why: format!("does not decompress: {e}"),
        })?;
        if let Some(want) = size {
            if written != want {
                return Err(CacheError::Object {
                    name: hash.to_hex(),
                    why: format!("decompresses to {written} bytes, the catalog says {want}"),
                });
            }
        }
        // On disk before it has its final name: after a power loss an object is whole or
        // absent, never a short file under the right name.
        tmp.as_file()
            .sync_data()
            .map_err(io_err("syncing", tmp.path()))?;
        let parent = dest.parent().expect("objects/XX");
        fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        let mut file = tmp.persist(dest).map_err(|e| CacheError::Io {
            op: "renaming into",
            path: dest.display().to_string(),
            source: e.error,
        })?;
        self.db
            .lock()
            .expect("cache db")
            .insert(hash, written, kind, &digest)?;
        self.vouched.lock().expect("vouched").insert(*hash);
        // The object just written is about to be used: never its own eviction's victim.
        self.enforce_quota(hash);
        use std::io::Seek;
        file.rewind().map_err(io_err("rewinding", dest))?;
        Ok(file)
    }

    /// Whether the cached `file` of object `hash` is still what was verified when it was
    /// downloaded: its size against the catalog's (every open; one `fstat`), and, the first
    /// time this process uses it, its bytes against the SHA-256 recorded then. A damaged
    /// object (bit rot, a short file after a crash, a hand edit) says why.
    fn vouch(&self, hash: &ContentHash, file: &fs::File, size: Option<u64>) -> Result<(), String> {
        let len = file.metadata().map_err(|e| format!("fstat: {e}"))?.len();
        if let Some(want) = size {
            if len != want {
                return Err(format!("{len} bytes, its catalog says {want}"));
            }
        }
        if self.vouched.lock().expect("vouched").contains(hash) {
            return Ok(());
        }
        let recorded = self
            .db
            .lock()
            .expect("cache db")
            .digest_of(hash)
            .map_err(|e| format!("bookkeeping: {e}"))?
            .ok_or(
                "no digest recorded for it (cached before digests were, or the record was lost)",
            )?;
        let actual = sha256_of(file).map_err(|e| format!("reading: {e}"))?;
        if actual[..] != recorded[..] {
            return Err("its bytes differ from those verified when it was downloaded".into());
        }
        self.vouched.lock().expect("vouched").insert(*hash);
        Ok(())
    }

    /// Removes a damaged object and its record (another process may be using the name; its
    /// open descriptor keeps what it has).
    fn drop_object(&self, hash: &ContentHash, path: &Path) {
        let _ = fs::remove_file(path);
        let _ = self.db.lock().expect("cache db").remove(hash);
        self.vouched.lock().expect("vouched").remove(hash);
    }

    /// Records a use for the LRU. Uses are written in batches: a database write on every
    /// open would cost more than the open itself.
    fn touch(&self, hash: &ContentHash) {
        let mut pending = self.touched.lock().expect("touched");
        pending.push(*hash);
        if pending.len() >= TOUCH_BATCH {
            let batch = std::mem::take(&mut *pending);
            drop(pending);
            let mut db = self.db.lock().expect("cache db");
            let _ = db.touch_all(&batch);
        }
    }

    fn flush_touches(&self, db: &mut quota::Quota) {
        let batch = std::mem::take(&mut *self.touched.lock().expect("touched"));
        let _ = db.touch_all(&batch);
    }

    /// Keeps `hash` from eviction until a matching [`Cache::unpin`]. Pins are counted and
    /// held in memory: they protect objects from this process's quota runs only.
    pub fn pin(&self, hash: &ContentHash) {
        *self.pins.lock().expect("pins").entry(*hash).or_insert(0) += 1;
    }

    /// Releases one pin of `hash`; an object that is not pinned is left as it is.
    pub fn unpin(&self, hash: &ContentHash) {
        let mut pins = self.pins.lock().expect("pins");
        if let Some(n) = pins.get_mut(hash) {
            *n -= 1;
            if *n == 0 {
                pins.remove(hash);
            }
        }
    }

    /// Objects pinned now, and the bytes they take by the cache's bookkeeping.
    pub fn pinned(&self) -> (u64, u64) {
        let hashes: Vec<ContentHash> = self.pins.lock().expect("pins").keys().copied().collect();
        let db = self.db.lock().expect("cache db");
        let bytes = hashes
            .iter()
            .filter_map(|h| db.size_of(h).ok().flatten())
            .sum();
        (hashes.len() as u64, bytes)
    }

    /// Bytes the cache holds, by its bookkeeping.
    pub fn used(&self) -> u64 {
        self.db.lock().expect("cache db").total()
    }

    /// Over the soft limit: evict down to half of it, skipping pinned objects and `fresh`.
    ///
    /// Runs after every download, so the common case costs a comparison with a running
    /// count, not a query. One thread evicts at a time; others carry on (the one running
    /// frees space for all). The database lock is held only to choose and forget the
    /// victims; their files are unlinked after it is released, so readers never wait for
    /// the disk. A reader that opened a victim before the unlink keeps reading it.
    fn enforce_quota(&self, fresh: &ContentHash) {
        let Some(q) = self.quota else { return };
        if self.db.lock().expect("cache db").total() <= q {
            return;
        }
        if self.evicting.swap(true, Ordering::AcqRel) {
            return;
        }
        let _done = EvictingGuard(&self.evicting);
        // Downloads that finished while this thread evicted did not evict themselves: one
        // more round covers them. Bounded, so a cache filling as fast as it is emptied
        // cannot keep one reader here.
        for _ in 0..4 {
            if !self.evict_round(q, fresh) {
                break;
            }
        }
    }

    /// One eviction down to half of `q`; false if nothing was over the limit.
    fn evict_round(&self, q: u64, fresh: &ContentHash) -> bool {
        let victims = {
            let mut db = self.db.lock().expect("cache db");
            // Eviction order must reflect every recent use, and the count what other
            // processes sharing the directory added.
            self.flush_touches(&mut db);
            let total = db.recount().unwrap_or_else(|_| db.total());
            if total <= q {
                return false;
            }
            let pins = &self.pins;
            match db.evict(total - q / 2, |h| {
                h == fresh || pins.lock().expect("pins").contains_key(h)
            }) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("cache quota: choosing objects to evict: {e}");
                    return false;
                }
            }
        };
        let mut gone = Vec::with_capacity(victims.len());
        for h in &victims {
            // An open file descriptor keeps the data readable for whoever holds it.
            match fs::remove_file(self.path(h)) {
                Ok(()) => gone.push(*h),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => gone.push(*h),
                Err(e) => tracing::warn!("cache quota: removing {}: {e}", h.to_hex()),
            }
        }
        let mut vouched = self.vouched.lock().expect("vouched");
        for h in &gone {
            vouched.remove(h);
        }
        tracing::debug!("cache quota: evicted {} objects", gone.len());
        !gone.is_empty()
    }
}

/// Clears the "an eviction is running" flag however the eviction ends.
struct EvictingGuard<'a>(&'a AtomicBool);

impl Drop for EvictingGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The SHA-256 of a file's bytes, read with `pread` (the descriptor's offset is left alone).
fn sha256_of(file: &fs::File) -> std::io::Result<[u8; 32]> {
    use sha2::Digest;
    use std::os::unix::fs::FileExt;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = match file.read_at(&mut buf, at) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cvmfs::hash::HashAlgo;
    use crate::remote::download::Sink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn want<'a>(hash: &'a ContentHash, size: Option<u64>, kind: &'a Kind, limit: u64) -> Want<'a> {
        Want {
            hash,
            size,
            kind,
            limit,
            compressed: true,
        }
    }

    /// A "download" that writes `data` compressed, counting calls.
    fn fetcher<'a>(
        data: &'a [u8],
        calls: &'a AtomicUsize,
    ) -> impl Fn(&mut sink::ObjectSink) -> Result<u64, DownloadError> + 'a {
        move |s| {
            calls.fetch_add(1, Ordering::SeqCst);
            let c = crate::cvmfs::object::compress(data);
            s.reset().unwrap();
            s.write(&c).unwrap();
            Ok(c.len() as u64)
        }
    }

    #[test]
    fn verified_objects_are_kept_and_shared() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(d.path(), None).unwrap();
        let calls = AtomicUsize::new(0);
        let h = HashAlgo::Sha1.digest(b"name");
        let f = fetcher(b"content", &calls);
        let read = |mut file: std::fs::File| {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut out).unwrap();
            out
        };
        let fresh = cache.get(&want(&h, Some(7), &Kind::Data, 7), &f).unwrap();
        assert_eq!(read(fresh), b"content");
        let cached = cache.get(&want(&h, Some(7), &Kind::Data, 7), &f).unwrap();
        // What was handed out stays readable when the name goes (eviction, another process
        // sharing the cache): the caller holds the file, not a path to open again.
        std::fs::remove_file(cache.path(&h)).unwrap();
        assert_eq!(read(cached), b"content");
        cache.get(&want(&h, Some(7), &Kind::Data, 7), &f).unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the second request is served from the cache; the third, after the unlink, downloads again"
        );
        // A size that disagrees with the catalog is refused and nothing is kept.
        let h2 = HashAlgo::Sha1.digest(b"other");
        let e = cache
            .get(&want(&h2, Some(8), &Kind::Data, 8), &f)
            .unwrap_err();
        assert!(e.to_string().contains("the catalog says 8"), "{e}");
        assert!(!cache.path(&h2).exists());
        // More than the limit: refused while streaming.
        let h3 = HashAlgo::Sha1.digest(b"third");
        assert!(cache.get(&want(&h3, None, &Kind::Data, 3), &f).is_err());
        assert_eq!(
            std::fs::read_dir(d.path().join("txn")).unwrap().count(),
            0,
            "no leftovers"
        );
    }

    #[test]
    fn quota_evicts_superseded_catalogs_first_and_never_pinned_objects() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(d.path(), Some(3000)).unwrap();
        let calls = AtomicUsize::new(0);
        let blob = vec![7u8; 1000];
        let f = fetcher(&blob, &calls);
        let cat = |m: &[u8]| Kind::Catalog {
            fqrn: "r".into(),
            mountpoint: m.to_vec(),
        };
        let h = |s: &str| HashAlgo::Sha1.digest(s.as_bytes());
        cache
            .get(&want(&h("old-root"), None, &cat(b""), 1000), &f)
            .unwrap();
        cache
            .get(&want(&h("pinned"), None, &Kind::Data, 1000), &f)
            .unwrap();
        cache.pin(&h("pinned"));
        cache
            .get(&want(&h("new-root"), None, &cat(b""), 1000), &f)
            .unwrap(); // supersedes old-root
        assert_eq!(cache.used(), 3000);
        cache
            .get(&want(&h("fourth"), None, &Kind::Data, 1000), &f)
            .unwrap(); // over quota: clean to 1500
        assert!(
            !cache.path(&h("old-root")).exists(),
            "the superseded catalog goes first"
        );
        assert!(cache.path(&h("pinned")).exists(), "pinned objects stay");
        assert!(cache.used() <= 2000);
        cache.unpin(&h("pinned"));
    }

    /// A download that panics fails its own request and wakes every waiter, which then
    /// fetches for itself: nobody waits for good. (Bounded: a waiter left behind is a
    /// timeout here, not a hung test.)
    #[test]
    fn a_panicking_download_leaves_no_waiter_behind() {
        use std::sync::mpsc;
        let d = tempfile::tempdir().unwrap();
        let cache = Arc::new(Cache::open(d.path(), None).unwrap());
        let h = HashAlgo::Sha1.digest(b"panics once");
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let first = {
            let cache = cache.clone();
            std::thread::spawn(move || {
                let fetch = |_: &mut sink::ObjectSink| -> Result<u64, DownloadError> {
                    started_tx.send(()).unwrap();
                    // Held until the second caller waits on this download, then a bug.
                    go_rx.recv().unwrap();
                    panic!("a bug in a download");
                };
                let kind = Kind::Data;
                cache.get(&want(&h, Some(7), &kind, 7), &fetch).map(|_| ())
            })
        };
        started_rx.recv().unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        {
            let cache = cache.clone();
            std::thread::spawn(move || {
                let calls = AtomicUsize::new(0);
                let fetch = fetcher(b"content", &calls);
                let kind = Kind::Data;
                let r = cache.get(&want(&h, Some(7), &kind, 7), &fetch).map(|_| ());
                let _ = done_tx.send(r.map_err(|e| e.to_string()));
            });
        }
        // Let the second caller reach the wait on the first download.
        std::thread::sleep(std::time::Duration::from_millis(100));
        go_tx.send(()).unwrap();
        let e = first.join().expect("the panic is caught").unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
        done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the waiter was left waiting")
            .expect("the waiter fetched for itself");
    }

    #[test]
    fn unusable_directories_are_named() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let e = Cache::open(&file, None).err().unwrap();
        assert!(e.to_string().contains("a-file"), "{e}");
    }

    #[test]
    fn opening_a_shared_cache_leaves_other_processes_downloads_alone() {
        let d = tempfile::tempdir().unwrap();
        drop(Cache::open(d.path(), None).unwrap());
        let live = d.path().join("txn/.tmp-live");
        let old = d.path().join("txn/.tmp-old");
        std::fs::write(&live, b"being written").unwrap();
        let f = std::fs::File::create(&old).unwrap();
        f.set_modified(std::time::SystemTime::now() - 2 * TXN_STALE)
            .unwrap();
        drop(Cache::open(d.path(), None).unwrap());
        assert!(live.exists(), "a download in progress elsewhere survives");
        assert!(!old.exists(), "a crash's leftover goes");
    }
}
