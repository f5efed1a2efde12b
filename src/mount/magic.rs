//! Magic extended attributes, as CernVM-FS clients answer them (`magic_xattr.cc`): facts
//! about the mount and the file, for operators and debugging (`getfattr -n user.root_hash`).

use std::sync::atomic::Ordering;

use super::MountedTree;
use crate::repository::Found;

pub fn value(tree: &MountedTree, f: &Found, name: &[u8]) -> Option<Vec<u8>> {
    // `ls -l` and friends ask for security.* and system.* on every entry: answer at once.
    if !name.starts_with(b"user.") {
        return None;
    }
    let cur = tree.current.read().expect("revision");
    let m = cur.repo.manifest();
    let stats = tree.source.downloader.stats();
    let text = match name {
        b"user.fqrn" => m.fqrn.clone(),
        b"user.revision" => m.revision.to_string(),
        b"user.root_hash" => cur.root.to_hex(),
        b"user.hash" => f.entry.hash?.to_hex(),
        b"user.chunks" => {
            if f.entry.is_chunked() {
                drop(cur);
                tree.with_snapshot(|s| Ok(s.chunks(f)?.len()))
                    .ok()?
                    .to_string()
            } else if f.entry.kind() == crate::cvmfs::catalog::EntryKind::File {
                "1".to_string()
            } else {
                return None;
            }
        }
        b"user.host" => stats.host,
        b"user.proxy" => stats.proxy,
        b"user.nioerr" => (stats.errors + tree.errors.load(Ordering::Relaxed)).to_string(),
        b"user.ndownload" => stats.requests.to_string(),
        b"user.rx" => (stats.bytes / 1024).to_string(),
        b"user.pinned" => tree.pinned.to_string(),
        // Catalogs the mounted revision has loaded (CernVM-FS's name).
        b"user.nclg" => cur.repo.loaded_catalogs().to_string(),
        // Objects the cache keeps from eviction for this process, and their size.
        b"user.npinned" => tree.source.cache.pinned().0.to_string(),
        b"user.pinned_kib" => (tree.source.cache.pinned().1 / 1024).to_string(),
        // Inode numbers the mount remembers (those the kernel holds, and recent ones).
        b"user.ninode" => tree.inodes.lock().expect("inodes").len().to_string(),
        b"user.offline" => {
            (*tree.mode.lock().expect("mode") == crate::remote::Mode::Offline).to_string()
        }
        _ => return None,
    };
    Some(text.into_bytes())
}
