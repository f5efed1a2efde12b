//! One catalog row as Rust values, and what kind of filesystem object it describes.

use crate::cvmfs::hash::{ContentHash, HashAlgo, PathKey};

use super::schema::flags;
use super::xattr::{self, Xattrs};

/// What a row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory (`DIR` flag).
    Directory,
    /// A regular file.
    File,
    /// A symbolic link; the target is in [`Entry::symlink`].
    Symlink,
    /// A named pipe (FIFO).
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A character device; its device number is in [`Entry::size`].
    CharDevice,
    /// A block device; its device number is in [`Entry::size`].
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

    /// The kind named by the file-type bits (`S_IFMT`) of `mode`; `None` for an unknown type.
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
    /// Where the chunk starts in the uncompressed file, in bytes.
    pub offset: u64,
    /// Uncompressed length of the chunk, in bytes.
    pub size: u64,
    /// Content hash of the chunk's `P` object (its compressed bytes).
    pub hash: ContentHash,
}

/// One row of the `catalog` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Basename, raw bytes ("" for the repository root).
    pub name: Vec<u8>,
    /// Full `st_mode`: file-type bits and permission bits.
    pub mode: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// File size, symlink target length, or rdev of a device; 4096 for directories.
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// Nanosecond part of the mtime (schema revision 7; `None` in older catalogs).
    pub mtime_ns: Option<u32>,
    /// Row flags: the bits of [`flags`], the hash algorithm (bits 8-10) and compression (11-13).
    pub flags: u32,
    /// `(hard-link group << 32) | link count`; the link count for directories.
    pub hardlinks: u64,
    /// Content hash of a whole-file object (none for directories, symlinks, chunked files).
    pub hash: Option<ContentHash>,
    /// Symlink target, raw bytes (empty for every other kind).
    pub symlink: Vec<u8>,
    /// Extended attributes; `None` when the row has no xattr blob.
    pub xattrs: Option<Xattrs>,
}

impl Entry {
    /// What the row describes: the `DIR` and `LINK` flags first, then the file type in `mode`
    /// (a regular file if that is unknown).
    pub fn kind(&self) -> EntryKind {
        if self.flags & flags::DIR != 0 {
            return EntryKind::Directory;
        }
        if self.flags & flags::LINK != 0 {
            return EntryKind::Symlink;
        }
        EntryKind::from_mode(self.mode).unwrap_or(EntryKind::File)
    }

    /// Whether the `DIR` flag is set.
    pub fn is_dir(&self) -> bool {
        self.flags & flags::DIR != 0
    }

    /// Whether a nested catalog is mounted at this directory (flag set in the parent catalog).
    pub fn is_nested_mountpoint(&self) -> bool {
        self.flags & flags::NESTED_MOUNTPOINT != 0
    }

    /// Whether the file is stored as chunks (rows of the `chunks` table), not as one object.
    pub fn is_chunked(&self) -> bool {
        self.flags & flags::CHUNKED != 0
    }

    /// Whether the entry is left out of directory listings (stock hides `/.cvmfs` this way).
    pub fn is_hidden(&self) -> bool {
        self.flags & flags::HIDDEN != 0
    }

    /// The hash algorithm of this entry's objects (flag bits 8-10); SHA-1 if the bits are unknown.
    pub fn hash_algo(&self) -> HashAlgo {
        HashAlgo::from_flag_bits((self.flags & flags::HASH_MASK) >> flags::HASH_SHIFT)
            .unwrap_or_default()
    }

    /// Objects are zlib unless the row says "no compression" (bits 11-13 = 1).
    pub fn is_compressed(&self) -> bool {
        (self.flags & flags::COMPRESSION_MASK) >> flags::COMPRESSION_SHIFT == 0
    }

    /// The hard-link group (upper 32 bits of `hardlinks`): entries of one non-zero group share an
    /// inode; 0 means no group.
    pub fn hardlink_group(&self) -> u32 {
        (self.hardlinks >> 32) as u32
    }

    /// The link count (lower 32 bits of `hardlinks`).
    pub fn link_count(&self) -> u32 {
        (self.hardlinks & 0xffff_ffff) as u32
    }

    /// Device numbers for character and block devices (stored in `size`).
    pub fn rdev(&self) -> u64 {
        self.size
    }

    /// The permission bits of `mode`, setuid, setgid and sticky included.
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }

    /// The `xattr` column value: the encoded blob, or `None` without xattrs. Fails on attributes
    /// the format cannot store.
    pub fn xattr_blob(&self) -> Result<Option<Vec<u8>>, xattr::XattrError> {
        self.xattrs.as_ref().map(xattr::encode).transpose()
    }
}

/// A row with its keys: what the writer inserts and the reader returns for scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Path key (MD5) of the entry's full path.
    pub key: PathKey,
    /// Path key of the parent directory ([`PathKey::NONE`] for the repository root).
    pub parent: PathKey,
    /// The row's values.
    pub entry: Entry,
}
