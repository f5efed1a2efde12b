//! What `stat` shows for a catalog entry: the kernel-free attribute record the FUSE adapter
//! converts, so the conversion rules are testable without a mount.

use crate::cvmfs::catalog::{Entry, EntryKind};

/// The attributes `stat` shows for one entry of a mounted tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number within the mount ([`inodes::ROOT`](super::inodes::ROOT) for its root).
    pub ino: u64,
    /// File type: directory, regular file, symlink, device, FIFO or socket.
    pub kind: EntryKind,
    /// Size in bytes: 4096 for directories, 0 for devices, FIFOs and sockets.
    pub size: u64,
    /// Permission bits (`mode & 0o7777`), without the file type.
    pub perm: u16,
    /// Hard-link count, at least 1.
    pub nlink: u32,
    /// Owner user id, as stored in the catalog.
    pub uid: u32,
    /// Owner group id, as stored in the catalog.
    pub gid: u32,
    /// Device number of a character or block device; 0 otherwise.
    pub rdev: u32,
    /// Modification time, seconds since the Unix epoch (may be negative).
    pub mtime: i64,
    /// Nanosecond part of the modification time (0 when the catalog lacks it).
    pub mtime_ns: u32,
}

impl Attr {
    /// The attributes of catalog entry `e` shown as inode `ino`.
    pub fn of(ino: u64, e: &Entry) -> Self {
        let kind = e.kind();
        let (size, rdev) = match kind {
            EntryKind::Directory => (4096, 0),
            EntryKind::CharDevice | EntryKind::BlockDevice => (0, e.rdev() as u32),
            EntryKind::Fifo | EntryKind::Socket => (0, 0),
            _ => (e.size, 0),
        };
        Attr {
            ino,
            kind,
            size,
            perm: e.permissions() as u16,
            nlink: e.link_count().max(1),
            uid: e.uid,
            gid: e.gid,
            rdev,
            mtime: e.mtime,
            mtime_ns: e.mtime_ns.unwrap_or(0),
        }
    }
}
