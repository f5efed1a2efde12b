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
        if let Some(j) = self.journal.get() {
            j.append(&Record::Backing { fh, id });
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
            for f in &r.files {
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
        tracing::info!(
            "took over {} inodes, {} open files and {} open directories",
            r.nodes.len(),
            r.files.len(),
            r.dirs.len()
        );
        backing
    }
}
