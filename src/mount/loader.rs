//! Prefetching what the dynamic loader will open. When a program starts, the kernel opens
//! it, then the loader opens its interpreter, `/etc/ld.so.cache` and each library in turn:
//! on a cold cache every one of them is a round trip that starts only when the previous one
//! has ended. So when an ELF file is opened, its program headers name what comes next, and
//! those objects are fetched at once, in parallel, while the kernel is still reading the
//! program. A guess that misses costs one download of a file of the image; nothing is
//! trusted from the file but names to look up in the image's own (verified) catalogs.

use std::collections::HashSet;
use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::cvmfs::catalog::EntryKind;
use crate::cvmfs::hash::ContentHash;
use crate::cvmfs::object::{ObjectKind, ObjectName};
use crate::remote::RemoteSource;
use crate::repository::{path, Found, Repository, Snapshot};

use super::elf;

/// Analyses running at once, at most: a container start opens many ELF files at a time.
const MAX_RUNNING: usize = 4;
/// Downloads one analysis runs at once.
const PARALLEL_FETCHES: usize = 6;
/// Symlinks followed while resolving one path (the kernel allows 40; images need few).
const MAX_HOPS: usize = 16;

#[derive(Default)]
pub struct LoaderPrefetch {
    /// Programs and libraries already analysed in this mount (by content).
    seen: Mutex<HashSet<ContentHash>>,
    running: Arc<AtomicUsize>,
}

/// Everything an analysis needs, owned, so it runs on its own thread.
pub struct Job {
    pub program: Arc<File>,
    pub size: u64,
    pub hash: ContentHash,
    pub repo: Arc<Repository>,
    pub root: ContentHash,
    pub root_size: u64,
    /// The repository path of the mount's root.
    pub base: Vec<u8>,
    /// The repository path of the program.
    pub program_path: Vec<u8>,
    pub source: Arc<RemoteSource>,
}

impl LoaderPrefetch {
    /// Starts analysing `job.program` unless it was analysed before or enough analyses run.
    pub fn start(&self, job: Job) {
        if !self.seen.lock().expect("seen").insert(job.hash) {
            return;
        }
        if self.running.fetch_add(1, Ordering::SeqCst) >= MAX_RUNNING {
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.seen.lock().expect("seen").remove(&job.hash);
            return;
        }
        let running = self.running.clone();
        let spawned = std::thread::Builder::new()
            .name("lazyroot-loader".into())
            .spawn(move || {
                run(&job);
                running.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.running.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn run(job: &Job) {
    let Some(needs) = elf::needs(&job.program, job.size) else {
        return;
    };
    let Ok(snap) = job.repo.snapshot_of(job.root, job.root_size) else {
        return;
    };
    // The image's root: the mount's, or (a mount of a whole repository holding many
    // images) the shallowest directory above the program in which the names resolve.
    let probe = match (&needs.interp, needs.needed.first()) {
        (Some(interp), _) => vec![interp.clone()],
        (None, Some(lib)) => elf::candidates(lib, needs.triplet),
        (None, None) => return,
    };
    let Some(root) = roots(&job.base, &job.program_path)
        .into_iter()
        .find(|r| probe.iter().any(|p| resolve(&snap, r, p).is_some()))
    else {
        return;
    };
    let mut found = Vec::new();
    if let Some(interp) = &needs.interp {
        // The glibc loader reads its cache before any library.
        for w in [interp.as_slice(), b"/etc/ld.so.cache"] {
            found.extend(resolve(&snap, &root, w));
        }
    }
    for name in &needs.needed {
        // The first directory that has it, as the loader searches.
        found.extend(
            elf::candidates(name, needs.triplet)
                .iter()
                .find_map(|c| resolve(&snap, &root, c)),
        );
    }
    // In the loader's order, a few at a time.
    for batch in found.chunks(PARALLEL_FETCHES) {
        let started: Vec<_> = batch.iter().filter_map(|f| fetch(&job.source, f)).collect();
        for t in started {
            let _ = t.join();
        }
    }
}

/// `base` and the directories between it and the program, shallowest first.
fn roots(base: &[u8], program: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![base.to_vec()];
    let Some(rest) = program.strip_prefix(base) else {
        return out;
    };
    let dir = path::parent(rest);
    let mut at = base.to_vec();
    for c in split(dir) {
        at = path::join(&at, &c);
        out.push(at.clone());
    }
    out
}

/// Fetches a whole-file object into the cache on a thread of its own (chunked files are
/// left alone: their first read fetches them chunk by chunk anyway).
fn fetch(source: &Arc<RemoteSource>, f: &Found) -> Option<std::thread::JoinHandle<()>> {
    let e = &f.entry;
    if e.kind() != EntryKind::File || e.is_chunked() {
        return None;
    }
    let name = ObjectName::new(e.hash?, ObjectKind::File);
    super::files::fetch_in_background(source, name, e.size, e.is_compressed())
}

/// The regular file at `want` (absolute, inside the image whose root is the repository
/// path `base`), following symlinks as the kernel would, never above the image's root.
pub fn resolve(s: &Snapshot<'_>, base: &[u8], want: &[u8]) -> Option<Found> {
    let mut todo: std::collections::VecDeque<Vec<u8>> = split(want).collect();
    let mut at: Vec<Vec<u8>> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == b".." {
            at.pop();
            continue;
        }
        at.push(c);
        let full = at.iter().fold(base.to_vec(), |p, c| path::join(&p, c));
        let f = s.lookup(&full).ok()??;
        match f.entry.kind() {
            EntryKind::Symlink => {
                hops += 1;
                if hops > MAX_HOPS {
                    return None;
                }
                at.pop();
                if f.entry.symlink.starts_with(b"/") {
                    at.clear();
                }
                for (i, t) in split(&f.entry.symlink).enumerate() {
                    todo.insert(i, t);
                }
            }
            EntryKind::Directory => {}
            EntryKind::File if todo.is_empty() => return Some(f),
            _ => return None,
        }
    }
    None
}

fn split(p: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    p.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| c.to_vec())
}

#[cfg(test)]
mod tests {
    #[test]
    fn roots_run_from_the_mount_down_to_the_program() {
        let r = super::roots(b"", b"/images/deb/usr/bin/dash");
        let r: Vec<&[u8]> = r.iter().map(|p| p.as_slice()).collect();
        assert_eq!(
            r,
            [
                &b""[..],
                b"/images",
                b"/images/deb",
                b"/images/deb/usr",
                b"/images/deb/usr/bin"
            ]
        );
        assert_eq!(
            super::roots(b"/images/deb", b"/images/deb/bin/sh"),
            [b"/images/deb".to_vec(), b"/images/deb/bin".to_vec()]
        );
    }
}
