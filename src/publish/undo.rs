//! What a failed publish leaves behind, taken back: the objects it created (nothing
//! references them: the manifest still names the previous revision) and the reflog it wrote
//! ahead of the manifest. Only if the manifest is still the one read at the start: once a
//! new manifest is in place, everything it names stays.

use crate::cvmfs::reflog;
use crate::repository::local::LocalStore;
use crate::repository::source::IoError;
use crate::repository::MANIFEST_PATH;

/// The bootstrap files as they were when the publish took the lock.
pub struct Before {
    manifest: Option<Vec<u8>>,
    reflog: Option<Vec<u8>>,
}

/// Reads the bootstrap files a failed publish must be compared with (or restored to).
pub fn remember(store: &LocalStore) -> Before {
    let read = |rel: &str| std::fs::read(store.path_of(rel)).ok();
    Before {
        manifest: read(MANIFEST_PATH),
        reflog: read(reflog::PATH),
    }
}

/// Takes back what a failed publish wrote, if its manifest never replaced the old one.
pub fn undo(store: &LocalStore, before: &Before) {
    let now = std::fs::read(store.path_of(MANIFEST_PATH)).ok();
    if now != before.manifest {
        tracing::warn!(
            "the publish failed after its manifest was written; its objects stay, as the \
             manifest names them"
        );
        return;
    }
    let removed = store.remove_created();
    if removed > 0 {
        tracing::info!("removed {removed} objects of the failed publish");
    }
    let reflog_now = std::fs::read(store.path_of(reflog::PATH)).ok();
    if reflog_now == before.reflog {
        return;
    }
    // The reflog lists every root ever published; the failed one must not stay in it, and
    // the old list must not be lost.
    let path = store.path_of(reflog::PATH);
    let restored = match &before.reflog {
        Some(bytes) => store.write_atomic(reflog::PATH, bytes),
        None => std::fs::remove_file(&path).map_err(|e| IoError::new("removing", &path, e)),
    };
    if let Err(e) = restored {
        tracing::warn!("restoring the reflog after the failed publish: {e}");
    }
}
