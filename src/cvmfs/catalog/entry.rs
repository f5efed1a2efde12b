//! One catalog row as Rust values, and what kind of filesystem object it describes.

use crate::cvmfs::hash::{ContentHash, HashAlgo, PathKey};

use super::schema::flags;
use super::xattr::{self, Xattrs};

/// What a row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl EntryKind {
    /// The one-letter type used in listings (`d f l p S c b`).
    pub fn letter(self) -> char {
        match self {
            EntryKind::Directory => 'd',
            EntryKind::File => 'f',
            EntryKind::Symlink => 'l',
            EntryKind::Fifo => 'p',
            EntryKind::Socket => 'S',
            EntryKind::CharDevice => 'c',
            EntryKind::BlockDevice => 'b',
        }
    }

    pub fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFDIR => EntryKind::Directory,
            libc::S_IFREG => EntryKind::File,
            libc::S_IFLNK => EntryKind::Symlink,
            libc::S_IFIFO => EntryKind::Fifo,
            libc::S_IFSOCK => EntryKind::Socket,
            libc::S_IFCHR => EntryKind::CharDevice,
            libc::S_IFBLK => EntryKind::BlockDevice,
            _ => return None,
        })
    }
}

/// A piece of a chunked file: uncompressed offset and size, and its `P` object's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub offset: u64,
    pub size: u64,
    pub hash: ContentHash,
}

/// One row of the `catalog` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Basename, raw bytes ("" for the repository root).
    pub name: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// File size, symlink target length, or rdev of a device; 4096 for directories.
    pub size: u64,
    pub mtime: i64,
    /// Nanosecond part of the mtime (schema revision 7; `None` in older catalogs).
    pub mtime_ns: Option<u32>,
    pub flags: u32,
    /// `(hard-link group << 32) | link count`; the link count for directories.
    pub hardlinks: u64,
    /// Content hash of a whole-file object (none for directories, symlinks, chunked files).
    pub hash: Option<ContentHash>,
    pub symlink: Vec<u8>,
    pub xattrs: Option<Xattrs>,
}

impl Entry {
    pub fn kind(&self) -> EntryKind {
        if self.flags & flags::DIR != 0 {
            return EntryKind::Directory;
        }
        if self.flags & flags::LINK != 0 {
            return EntryKind::Symlink;
        }
        EntryKind::from_mode(self.mode).unwrap_or(EntryKind::File)
    }

    pub fn is_dir(&self) -> bool {
        self.flags & flags::DIR != 0
    }

    pub fn is_nested_mountpoint(&self) -> bool {
        self.flags & flags::NESTED_MOUNTPOINT != 0
    }

    pub fn is_chunked(&self) -> bool {
        self.flags & flags::CHUNKED != 0
    }

    pub fn is_hidden(&self) -> bool {
        self.flags & flags::HIDDEN != 0
    }

    pub fn hash_algo(&self) -> HashAlgo {
        HashAlgo::from_flag_bits((self.flags & flags::HASH_MASK) >> flags::HASH_SHIFT)
            .unwrap_or_default()
    }

    /// Objects are zlib unless the row says "no compression" (bits 11-13 = 1).
    pub fn is_compressed(&self) -> bool {
        (self.flags & flags::COMPRESSION_MASK) >> flags::COMPRESSION_SHIFT == 0
    }

    pub fn hardlink_group(&self) -> u32 {
        (self.hardlinks >> 32) as u32
    }

    pub fn link_count(&self) -> u32 {
        (self.hardlinks & 0xffff_ffff) as u32
    }

    /// Device numbers for character and block devices (stored in `size`).
    pub fn rdev(&self) -> u64 {
        self.size
    }

    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }

    pub fn xattr_blob(&self) -> Result<Option<Vec<u8>>, xattr::XattrError> {
        self.xattrs.as_ref().map(xattr::encode).transpose()
    }
}

/// A row with its keys: what the writer inserts and the reader returns for scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: PathKey,
    pub parent: PathKey,
    pub entry: Entry,
}
