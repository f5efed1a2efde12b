//! The fuser adapter, and only that: inode and attribute conversion, the one errno
//! mapping, kernel cache lifetimes. All behaviour lives in [`crate::mount`].

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

use crate::cvmfs::catalog::EntryKind;
use crate::mount::{Attr, ClientError, Listing, MountedTree};

mod ratelimit;
mod session;

use ratelimit::{RateLimit, Verdict};
pub use session::{other_mounts, set_read_ahead, spawn, unmount, MountOptions, READ_AHEAD_KIB};

/// The fuser [`Filesystem`] serving one [`MountedTree`] to the kernel.
pub struct Fs {
    tree: Arc<MountedTree>,
    /// Whole-file reads go straight from the kernel to the cached object (FUSE passthrough),
    /// never through this process. Off when the kernel lacks it.
    passthrough: bool,
    /// Backing files registered with the kernel, by file handle, until release.
    backing: Mutex<HashMap<u64, BackingId>>,
}

impl Fs {
    /// Serves `tree`; `passthrough` asks for FUSE passthrough of whole files (dropped at
    /// init when the kernel lacks it).
    pub fn new(tree: Arc<MountedTree>, passthrough: bool) -> Self {
        Fs {
            tree,
            passthrough,
            backing: Mutex::new(HashMap::new()),
        }
    }
}

impl Fs {
    /// The listing behind a readdir: by handle, or by inode when the kernel opened the
    /// directory without asking (handle 0, pinned mounts).
    fn listing(&self, ino: INodeNo, fh: FileHandle) -> Result<Arc<Listing>, ClientError> {
        if fh.0 == 0 {
            self.tree.listing_of(ino.0)
        } else {
            self.tree.listing(fh.0)
        }
    }
}

/// The one place client errors become errno values.
fn errno(e: &ClientError) -> Errno {
    match e {
        ClientError::NotFound => Errno::ENOENT,
        ClientError::NotADirectory => Errno::ENOTDIR,
        ClientError::IsADirectory => Errno::EISDIR,
        ClientError::NotASymlink => Errno::EINVAL,
        ClientError::NoAttribute => Errno::ENODATA,
        ClientError::BadHandle => Errno::EBADF,
        ClientError::InvalidPath(_) => Errno::EINVAL,
        ClientError::Io(msg) => {
            // Ten a minute: a mount whose servers are gone fails every read.
            static EIO_LOG: RateLimit = RateLimit::new(10, std::time::Duration::from_secs(60));
            if let Verdict::Log { suppressed } = EIO_LOG.check(std::time::Instant::now()) {
                if suppressed > 0 {
                    tracing::warn!("{suppressed} more I/O errors were not logged");
                }
                tracing::warn!("I/O error: {msg}");
            }
            Errno::EIO
        }
    }
}

fn file_type(k: EntryKind) -> FileType {
    match k {
        EntryKind::Directory => FileType::Directory,
        EntryKind::File => FileType::RegularFile,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::Socket => FileType::Socket,
        EntryKind::CharDevice => FileType::CharDevice,
        EntryKind::BlockDevice => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    let t = if a.mtime >= 0 {
        UNIX_EPOCH + Duration::new(a.mtime as u64, a.mtime_ns)
    } else {
        UNIX_EPOCH - Duration::from_secs(a.mtime.unsigned_abs())
    };
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() <= size as usize {
        reply.data(value);
    } else {
        reply.error(Errno::ERANGE);
    }
}

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // The kernel then caches each inode's ACL (most have none) instead of asking the
        // daemon for `system.posix_acl_*` on every `ls -l`, and enforces stored ACLs.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_POSIX_ACL);
        if self.tree.is_pinned() {
            // Symlink targets of a pinned revision never change: the kernel may keep them.
            let _ = config.add_capabilities(fuser::InitFlags::FUSE_CACHE_SYMLINKS);
        }
        if self.passthrough {
            // A passthrough file may not sit on another stacked filesystem (stack depth 1).
            let ok = config
                .add_capabilities(fuser::InitFlags::FUSE_PASSTHROUGH)
                .is_ok()
                && config.set_max_stack_depth(1).is_ok();
            if !ok {
                tracing::info!(
                    "this kernel does not offer FUSE passthrough; reads go through the daemon"
                );
                self.passthrough = false;
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.tree.lookup(parent.0, name.as_bytes()) {
            Ok(a) => reply.entry(&self.tree.kernel_ttl(), &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.tree.getattr(ino.0) {
            Ok(a) => reply.attr(&self.tree.kernel_ttl(), &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.tree.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let fh = match self.tree.open(ino.0) {
            Ok(fh) => fh,
            Err(e) => return reply.error(errno(&e)),
        };
        if self.passthrough {
            if let Some(file) = self.tree.whole_file(fh) {
                match reply.open_backing(file.as_ref()) {
                    Ok(id) => {
                        reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id);
                        self.backing.lock().expect("backing").insert(fh, id);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("passthrough refused ({e}); reading through the daemon")
                    }
                }
            }
        }
        // The content behind an inode never changes (new content is a new inode), so the
        // page cache may keep file pages across opens, pinned or not.
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE)
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        thread_local! {
            // One buffer per serving thread, grown to the largest request seen (1 MiB with
            // the read-ahead we set) and reused.
            static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUFFER.with_borrow_mut(|buf| {
            if buf.len() < size as usize {
                buf.resize(size as usize, 0);
            }
            match self.tree.read_into(fh.0, offset, &mut buf[..size as usize]) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.backing.lock().expect("backing").remove(&fh.0);
        self.tree.release(fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.tree.is_pinned() {
            // A pinned revision's directories never change. ENOSYS tells the kernel to stop
            // sending opendir and releasedir for this mount and to cache every listing it
            // reads (FOPEN_CACHE_DIR is its default then): a warm `find` asks nothing.
            return reply.error(Errno::ENOSYS);
        }
        match self.tree.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.tree.releasedir(fh.0);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let items = match self.listing(ino, fh) {
            Ok(i) => i,
            Err(e) => return reply.error(errno(&e)),
        };
        let dots = [
            (&b"."[..], ino.0, FileType::Directory),
            (&b".."[..], ino.0, FileType::Directory),
        ];
        let all = dots.into_iter().chain(
            items
                .iter()
                .map(|(n, a)| (n.as_slice(), a.ino, file_type(a.kind))),
        );
        for (i, (name, child, kind)) in all.enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(child),
                (i + 1) as u64,
                kind,
                OsStr::from_bytes(name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let items = match self.listing(ino, fh) {
            Ok(i) => i,
            Err(e) => return reply.error(errno(&e)),
        };
        let ttl = self.tree.kernel_ttl();
        for (i, (name, listed)) in items.iter().enumerate().skip(offset as usize) {
            // Each entry sent is a reference the kernel will forget: taken first, given
            // back if the buffer had no room for it.
            let a = match self.tree.hold_listed(ino.0, name, listed) {
                Ok(a) => a,
                Err(e) => return reply.error(errno(&e)),
            };
            if reply.add(
                INodeNo(a.ino),
                (i + 1) as u64,
                OsStr::from_bytes(name),
                &ttl,
                &file_attr(&a),
                Generation(0),
            ) {
                self.tree.forget(a.ino, 1);
                break;
            }
        }
        reply.ok();
    }

    // (batch_forget's default calls this for each node.)
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.tree.forget(ino.0, nlookup);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (files, bytes) = self.tree.statfs();
        let blocks = bytes.div_ceil(4096);
        reply.statfs(blocks, 0, 0, files, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.tree.getxattr(ino.0, name.as_bytes()) {
            Ok(v) => xattr_reply(reply, size, &v),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.tree.listxattr(ino.0) {
            Ok(v) => xattr_reply(reply, size, &v),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Permission checks are the kernel's (`default_permissions`).
        reply.ok();
    }
}
