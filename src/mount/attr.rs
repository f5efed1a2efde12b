//! What `stat` shows for a catalog entry: the kernel-free attribute record the FUSE adapter
//! converts, so the conversion rules are testable without a mount.

use crate::cvmfs::catalog::{Entry, EntryKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: EntryKind,
    pub size: u64,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub mtime: i64,
    pub mtime_ns: u32,
}

impl Attr {
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
