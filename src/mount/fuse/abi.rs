//! The FUSE kernel protocol, as far as a read-only filesystem speaks it: opcodes, flags and
//! the byte layout of the messages. Written by hand because it must match the kernel's ABI
//! byte for byte (include/uapi/linux/fuse.h, protocol 7.x, native byte order); the installed
//! header may be older than the running kernel, so the newer constants (passthrough, resend)
//! are defined here rather than taken from it.

/// The protocol's major version; a kernel offering another one is refused.
pub const KERNEL_MAJOR: u32 = 7;
/// The newest minor version spoken here: 7.40 added passthrough, 7.41 resend.
pub const KERNEL_MINOR: u32 = 41;
/// The oldest minor version accepted: 7.31 (Linux 5.10) has every message used here in its
/// current size.
pub const MIN_MINOR: u32 = 31;

/// `fuse_in_header`: every request starts with it.
pub const IN_HEADER: usize = 40;
/// `fuse_out_header`: every reply and notification starts with it.
pub const OUT_HEADER: usize = 16;

/// A request read back by the kernel after `FUSE_NOTIFY_RESEND` has this bit set in its
/// unique id; the reply carries the id as it came.
pub const UNIQUE_RESEND: u64 = 1 << 63;

/// Request opcodes (`enum fuse_opcode`) this filesystem answers or must recognise.
#[allow(missing_docs)]
pub mod op {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const ACCESS: u32 = 34;
    pub const INTERRUPT: u32 = 36;
    pub const DESTROY: u32 = 38;
    pub const BATCH_FORGET: u32 = 42;
    pub const READDIRPLUS: u32 = 44;
}

/// `FUSE_INIT` flags (`flags` holds bits 0–31, `flags2` bits 32–63).
#[allow(missing_docs)]
pub mod init {
    pub const ASYNC_READ: u64 = 1 << 0;
    pub const BIG_WRITES: u64 = 1 << 5;
    pub const DO_READDIRPLUS: u64 = 1 << 13;
    pub const READDIRPLUS_AUTO: u64 = 1 << 14;
    pub const PARALLEL_DIROPS: u64 = 1 << 18;
    pub const POSIX_ACL: u64 = 1 << 20;
    pub const MAX_PAGES: u64 = 1 << 22;
    pub const CACHE_SYMLINKS: u64 = 1 << 23;
    pub const INIT_EXT: u64 = 1 << 30;
    pub const PASSTHROUGH: u64 = 1 << 37;
    pub const HAS_RESEND: u64 = 1 << 39;
}

/// `open_flags` of an open reply.
#[allow(missing_docs)]
pub mod fopen {
    pub const KEEP_CACHE: u32 = 1 << 1;
    pub const PASSTHROUGH: u32 = 1 << 7;
}

/// `FUSE_NOTIFY_RESEND`: the kernel queues again every request a daemon has read but not
/// answered (Linux 6.9, protocol 7.40; offered as `FUSE_HAS_RESEND`).
pub const NOTIFY_RESEND: i32 = 7;

/// Reads native-endian integers out of a request's argument bytes, failing (not panicking)
/// on a short message.
pub struct Args<'a> {
    bytes: &'a [u8],
}

impl<'a> Args<'a> {
    /// The arguments after the in-header.
    pub fn new(bytes: &'a [u8]) -> Self {
        Args { bytes }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    /// The next `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_ne_bytes(self.take(4)?.try_into().ok()?))
    }

    /// The next `u64`.
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_ne_bytes(self.take(8)?.try_into().ok()?))
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    /// A NUL-terminated name (without its NUL).
    pub fn name(&mut self) -> Option<&'a [u8]> {
        let end = self.bytes.iter().position(|&b| b == 0)?;
        let name = &self.bytes[..end];
        self.bytes = &self.bytes[end + 1..];
        Some(name)
    }
}

/// `fuse_in_header`.
#[derive(Debug, Clone, Copy)]
pub struct InHeader {
    /// The whole request's length, header included.
    pub len: u32,
    /// What is asked ([`op`]).
    pub opcode: u32,
    /// The id the reply must carry.
    pub unique: u64,
    /// The inode the request is about.
    pub nodeid: u64,
}

impl InHeader {
    /// Parses the header of `buf`; `None` if it is short or its length disagrees.
    pub fn parse(buf: &[u8]) -> Option<InHeader> {
        let mut a = Args::new(buf);
        let h = InHeader {
            len: a.u32()?,
            opcode: a.u32()?,
            unique: a.u64()?,
            nodeid: a.u64()?,
        };
        (h.len as usize == buf.len() && buf.len() >= IN_HEADER).then_some(h)
    }
}

/// Appends native-endian integers: the replies' bodies.
#[derive(Default)]
pub struct Out {
    /// The bytes so far.
    pub bytes: Vec<u8>,
}

impl Out {
    /// Appends a `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_ne_bytes());
        self
    }
    /// Appends a `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_ne_bytes());
        self
    }
    /// Appends a `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_ne_bytes());
        self
    }
    /// Appends `n` zero bytes (padding, unused fields).
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.bytes.resize(self.bytes.len() + n, 0);
        self
    }
}

/// What `stat` shows, in the kernel's terms (`struct fuse_attr`, 88 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileAttr {
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks.
    pub blocks: u64,
    /// Seconds since the epoch (atime, mtime and ctime alike).
    pub time: u64,
    /// Nanoseconds of `time`.
    pub time_ns: u32,
    /// File type and permission bits.
    pub mode: u32,
    /// Hard links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number (old 32-bit encoding, as FUSE carries it).
    pub rdev: u32,
}

impl FileAttr {
    /// Appends `struct fuse_attr`.
    pub fn put(&self, o: &mut Out) {
        o.u64(self.ino)
            .u64(self.size)
            .u64(self.blocks)
            .u64(self.time)
            .u64(self.time)
            .u64(self.time)
            .u32(self.time_ns)
            .u32(self.time_ns)
            .u32(self.time_ns)
            .u32(self.mode)
            .u32(self.nlink)
            .u32(self.uid)
            .u32(self.gid)
            .u32(self.rdev)
            .u32(4096) // blksize
            .u32(0); // flags
    }
}

/// Appends `struct fuse_entry_out` (128 bytes): a lookup's answer, and each readdirplus
/// entry's head.
pub fn put_entry(o: &mut Out, attr: &FileAttr, ttl: std::time::Duration) {
    o.u64(attr.ino)
        .u64(0) // generation: numbers are never reused
        .u64(ttl.as_secs())
        .u64(ttl.as_secs())
        .u32(ttl.subsec_nanos())
        .u32(ttl.subsec_nanos());
    attr.put(o);
}

/// Appends `struct fuse_attr_out` (104 bytes).
pub fn put_attr(o: &mut Out, attr: &FileAttr, ttl: std::time::Duration) {
    o.u64(ttl.as_secs()).u32(ttl.subsec_nanos()).u32(0);
    attr.put(o);
}

/// Appends one `struct fuse_dirent` (padded to 8 bytes) if it fits in `limit` bytes in all;
/// false when it does not (the reply is full).
pub fn put_dirent(o: &mut Out, limit: usize, ino: u64, off: u64, kind: u32, name: &[u8]) -> bool {
    let len = (24 + name.len()).next_multiple_of(8);
    if o.bytes.len() + len > limit {
        return false;
    }
    o.u64(ino).u64(off).u32(name.len() as u32).u32(kind);
    o.bytes.extend_from_slice(name);
    o.zeros(len - 24 - name.len());
    true
}

/// The size of one readdirplus entry (`fuse_direntplus`) for a name of `n` bytes.
pub fn direntplus_len(n: usize) -> usize {
    (128 + 24 + n).next_multiple_of(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_kernels_sizes() {
        let mut o = Out::default();
        FileAttr::default().put(&mut o);
        assert_eq!(o.bytes.len(), 88, "struct fuse_attr");
        let mut o = Out::default();
        put_entry(&mut o, &FileAttr::default(), std::time::Duration::ZERO);
        assert_eq!(o.bytes.len(), 128, "struct fuse_entry_out");
        let mut o = Out::default();
        put_attr(&mut o, &FileAttr::default(), std::time::Duration::ZERO);
        assert_eq!(o.bytes.len(), 104, "struct fuse_attr_out");
        let mut o = Out::default();
        assert!(put_dirent(&mut o, 4096, 7, 1, 4, b"abc"));
        assert_eq!(o.bytes.len(), 32, "dirent padded to 8");
        assert!(!put_dirent(&mut o, 40, 7, 2, 4, b"abc"), "no room left");
        assert_eq!(direntplus_len(3), 160);
    }

    #[test]
    fn a_short_or_inconsistent_header_is_refused() {
        let mut req = Out::default();
        req.u32(41)
            .u32(op::LOOKUP)
            .u64(2)
            .u64(1)
            .zeros(16)
            .bytes
            .push(0);
        assert!(InHeader::parse(&req.bytes).is_some());
        assert!(
            InHeader::parse(&req.bytes[..40]).is_none(),
            "length disagrees"
        );
        assert!(InHeader::parse(&req.bytes[..8]).is_none(), "short");
        let mut a = Args::new(b"name\0rest");
        assert_eq!(a.name(), Some(&b"name"[..]));
        assert_eq!(a.name(), None, "no NUL: refused");
        assert_eq!(Args::new(&[1, 2]).u32(), None);
    }
}
