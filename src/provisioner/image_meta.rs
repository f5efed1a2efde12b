//! Reading an ingested image's metadata at mount time: the file beside its root
//! filesystem ([`crate::ingest::names::meta_file`]) becomes the appc `app` section.

use crate::cvmfs::catalog::EntryKind;
use crate::cvmfs::hash::ContentHash;
use crate::ingest::meta::{ImageMeta, MAX_META_BYTES};
use crate::ingest::names::meta_of_rootfs;
use crate::repository::Repository;

use super::app;

/// Largest `/etc/passwd` read to find a user's group.
const MAX_PASSWD_BYTES: u64 = 1 << 20;

/// The `app` section of the image at `path` (an ingested image's flat directory) of
/// revision `root`; `None` for a directory that is not an ingested image. A metadata file
/// that cannot be read is logged and ignored: the image still mounts, without a default
/// command (the task must give one).
pub fn app_of(
    repo: &Repository,
    root: ContentHash,
    size: u64,
    path: &str,
) -> Option<serde_json::Value> {
    let meta_path = meta_of_rootfs(path)?;
    let snapshot = repo.snapshot_of(root, size).ok()?;
    let read = |p: &str, limit: u64| -> Option<Vec<u8>> {
        let found = snapshot.lookup(p.as_bytes()).ok()??;
        if found.entry.kind() != EntryKind::File || found.entry.size > limit {
            tracing::warn!("{p}: not a regular file of at most {limit} bytes; ignored");
            return None;
        }
        let mut out = Vec::new();
        match snapshot.read_found(&found, &mut out) {
            Ok(_) => Some(out),
            Err(e) => {
                tracing::warn!("reading {p}: {e}; ignored");
                None
            }
        }
    };
    let meta = match ImageMeta::from_bytes(&read(&meta_path, MAX_META_BYTES)?) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("{meta_path}: {e}; the image has no default command");
            return None;
        }
    };
    let passwd = read(&format!("{path}/etc/passwd"), MAX_PASSWD_BYTES)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    app::app(&meta, |user| app::passwd_group(&passwd, user))
}
