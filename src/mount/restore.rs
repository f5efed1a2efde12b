//! A mount's journal from both ends: starting one for a new connection, and taking over the
//! state a previous daemon's journal describes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::files::Handle;
use super::journal::{Journal, Record, Restored};
use super::MountedTree;

impl MountedTree {
    /// Writes everything the kernel is handed from now on to `journal` (a new connection:
    /// nothing was handed out yet).
    pub fn start_journal(&self, journal: Arc<Journal>) {
        let (root, size) = {
            let cur = self.current.read().expect("revision");
            (cur.root, cur.root_size)
        };
        journal.append(&Record::Revision { root, size });
        self.inodes
            .lock()
            .expect("inodes")
            .set_journal(journal.clone());
        if self.journal.set(journal).is_err() {
            tracing::error!("a mount's journal was started twice");
        }
    }

    /// Open file `fh` reads through passthrough backing file `id` (closed at release).
    pub fn note_backing(&self, fh: u64, id: u32) {
        self.journal_handle(fh, Record::Backing { fh, id });
    }

    /// Writes down `record` about handle `fh` (opened, or given a backing file), before
    /// the kernel learns the handle.
    pub(super) fn journal_handle(&self, fh: u64, record: Record) {
        let Some(j) = self.journal.get() else {
            return;
        };
        // Under the lock a compaction takes: a record is either before its snapshot (and
        // in it) or after.
        let mut journaled = self.journaled.lock().expect("journaled");
        j.note_handle(fh);
        j.append(&record);
        journaled.entry(fh).or_default().push(record);
    }

    /// Handle `fh` answers the kernel's request `request` (written down before the reply).
    pub fn note_request(&self, fh: u64, request: u64) {
        self.journal_handle(fh, Record::Request { fh, request });
    }

    /// The handle a previous daemon opened for `request` and died before replying with,
    /// if it is still open: the answer to the request sent again.
    pub fn reopened(&self, request: u64) -> Option<u64> {
        let fh = self.reopened.lock().expect("reopened").remove(&request)?;
        self.journaled
            .lock()
            .expect("journaled")
            .contains_key(&fh)
            .then_some(fh)
    }

    /// Handle `fh` was released.
    pub(super) fn journal_release(&self, fh: u64) {
        let Some(j) = self.journal.get() else {
            return;
        };
        let mut journaled = self.journaled.lock().expect("journaled");
        if journaled.remove(&fh).is_some() {
            j.append(&Record::Release(fh));
        }
    }

    /// Compacts the journal once it has grown enough (see [`Journal::wants_compaction`]):
    /// the state now, written as a snapshot that replaces every record before it, so a
    /// mount that lives for months keeps a journal the size of what the kernel holds.
    pub fn maybe_compact_journal(&self, init: crate::mount::fuse::Negotiated) {
        let Some(j) = self.journal.get() else {
            return;
        };
        if !j.wants_compaction() {
            return;
        }
        // Nothing that appends may run meanwhile: revision switches, references, handles.
        let cur = self.current.read().expect("revision");
        let inodes = self.inodes.lock().expect("inodes");
        let journaled = self.journaled.lock().expect("journaled");
        let mut state = vec![
            Record::Init(init),
            Record::Revision {
                root: cur.root,
                size: cur.root_size,
            },
            Record::InodesBelow(inodes.next()),
            Record::HandlesBelow(self.next_fh.load(Ordering::Relaxed)),
        ];
        for n in inodes.held() {
            state.push(Record::Node {
                ino: n.ino,
                path: n.path,
                key: n.key,
            });
            if n.lookups > 1 {
                state.push(Record::Hold {
                    ino: n.ino,
                    n: n.lookups - 1,
                });
            }
        }
        state.extend(journaled.values().flatten().cloned());
        if let Err(e) = j.compact(&state) {
            tracing::error!("compacting the mount's journal: {e}");
        }
    }

    /// Takes over what a previous daemon handed the kernel: the revision it served, the
    /// inode numbers the kernel holds, open files and directories. Returns the open files
    /// that read through passthrough backing files: (handle, backing id).
    pub fn restore(&self, r: &Restored, journal: Arc<Journal>) -> Vec<(u64, u32)> {
        if let Some((root, size)) = r.revision {
            let mut cur = self.current.write().expect("revision");
            if cur.root != root {
                // The kernel holds this revision's numbers: it is what the connection
                // shows, whatever this daemon was asked to mount.
                match cur.repo.snapshot_of(root, size) {
                    Ok(_) => {
                        tracing::info!("going on serving revision root {root}, as the previous daemon did");
                        cur.root = root;
                        cur.root_size = size;
                    }
                    Err(e) => tracing::warn!(
                        "the revision the previous daemon served (root {root}) does not load ({e}); serving root {}",
                        cur.root
                    ),
                }
            }
        }
        {
            let mut inodes = self.inodes.lock().expect("inodes");
            inodes.restore(&r.nodes, r.next_ino);
            inodes.set_journal(journal.clone());
        }
        self.next_fh.fetch_max(r.next_fh, Ordering::Relaxed);
        let mut backing = Vec::new();
        {
            let mut handles = self.handles.lock().expect("handles");
            let mut journaled = self.journaled.lock().expect("journaled");
            for f in &r.files {
                tracing::debug!("open file handle {} (inode {}) taken over", f.fh, f.ino);
                let mut recs = vec![Record::File {
                    fh: f.fh,
                    ino: f.ino,
                    file: f.file.clone(),
                }];
                if let Some(id) = f.backing {
                    recs.push(Record::Backing { fh: f.fh, id });
                }
                journaled.insert(f.fh, recs);
                // Opened again on first use: the previous daemon verified the object, and
                // a task resuming its reads should not wait for every open file at once.
                handles.insert(f.fh, Handle::Kept(f.file.clone()));
                // Pinned now, not on first use: what a running task reads is never evicted
                // across the restart.
                if let super::journal::FileRecord::Whole { hash, .. } = &f.file {
                    self.source.cache.pin(hash);
                }
                if let Some(id) = f.backing {
                    backing.push((f.fh, id));
                }
            }
        }
        if self.journal.set(journal).is_err() {
            tracing::error!("a mount's journal was started twice");
        }
        for &(fh, ino) in &r.dirs {
            self.journaled
                .lock()
                .expect("journaled")
                .insert(fh, vec![Record::Dir { fh, ino }]);
            match self.readdir(ino) {
                Ok(l) => {
                    self.listings
                        .lock()
                        .expect("listings")
                        .insert(fh, Arc::new(l));
                }
                Err(e) => tracing::warn!("directory handle {fh} (inode {ino}) is lost: {e}"),
            }
        }
        {
            let mut journaled = self.journaled.lock().expect("journaled");
            let mut reopened = self.reopened.lock().expect("reopened");
            for &(request, fh) in &r.requests {
                reopened.insert(request, fh);
                if let Some(recs) = journaled.get_mut(&fh) {
                    recs.push(Record::Request { fh, request });
                }
            }
        }
        tracing::info!(
            "took over {} inodes, {} open files and {} open directories",
            r.nodes.len(),
            r.files.len(),
            r.dirs.len()
        );
        backing
    }
}
