//! Answering requests: each opcode's arguments decoded, the tree asked, the answer encoded.
//! All behaviour lives in [`crate::mount`]; this only translates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::abi::{self, op, Args, FileAttr, InHeader, Out};
use super::channel::Channel;
use super::init::Negotiated;
use super::ratelimit::{RateLimit, Verdict};
use crate::cvmfs::catalog::EntryKind;
use crate::mount::journal::Journal;
use crate::mount::{Attr, ClientError, Listing, MountedTree};

/// What the serving threads share: the tree, the connection and what INIT settled.
pub struct Server {
    pub(super) tree: Arc<MountedTree>,
    pub(super) channel: Arc<Channel>,
    pub(super) negotiated: Negotiated,
    pub(super) journal: Arc<Journal>,
    /// Passthrough backing ids by file handle, until release.
    pub(super) backing: Mutex<HashMap<u64, u32>>,
}

/// What serving one request leads to.
pub enum Served {
    /// Go on.
    More,
    /// The kernel said goodbye (FUSE_DESTROY).
    Destroyed,
}

/// A failpoint for the restart tests: with `LAZYROOT_FAILPOINT=die-before-open-reply` the
/// daemon dies (SIGKILL of itself) once an open is written down and before it is answered,
/// the one moment a takeover must not leave a handle that nobody holds.
fn die_here_if_asked(journal: &Journal) {
    static ASKED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let asked = *ASKED.get_or_init(|| {
        std::env::var_os("LAZYROOT_FAILPOINT").is_some_and(|v| v == "die-before-open-reply")
    });
    if asked {
        journal.flush();
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// The one place client errors become errno values.
fn errno(e: &ClientError) -> i32 {
    match e {
        ClientError::NotFound => libc::ENOENT,
        ClientError::NotADirectory => libc::ENOTDIR,
        ClientError::IsADirectory => libc::EISDIR,
        ClientError::NotASymlink => libc::EINVAL,
        ClientError::NoAttribute => libc::ENODATA,
        ClientError::BadHandle => libc::EBADF,
        ClientError::InvalidPath(_) => libc::EINVAL,
        ClientError::Io(msg) => {
            // Ten a minute: a mount whose servers are gone fails every read.
            static EIO_LOG: RateLimit = RateLimit::new(10, Duration::from_secs(60));
            if let Verdict::Log { suppressed } = EIO_LOG.check(std::time::Instant::now()) {
                if suppressed > 0 {
                    tracing::warn!("{suppressed} more I/O errors were not logged");
                }
                tracing::warn!("I/O error: {msg}");
            }
            libc::EIO
        }
    }
}

/// The file type bits of `st_mode` (`S_IF*`) and of a directory entry (`DT_*`).
fn type_bits(k: EntryKind) -> (u32, u32) {
    match k {
        EntryKind::Directory => (libc::S_IFDIR, libc::DT_DIR as u32),
        EntryKind::File => (libc::S_IFREG, libc::DT_REG as u32),
        EntryKind::Symlink => (libc::S_IFLNK, libc::DT_LNK as u32),
        EntryKind::Fifo => (libc::S_IFIFO, libc::DT_FIFO as u32),
        EntryKind::Socket => (libc::S_IFSOCK, libc::DT_SOCK as u32),
        EntryKind::CharDevice => (libc::S_IFCHR, libc::DT_CHR as u32),
        EntryKind::BlockDevice => (libc::S_IFBLK, libc::DT_BLK as u32),
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: a.ino,
        size: a.size,
        blocks: a.size.div_ceil(512),
        // Two's complement: the kernel reads the field as signed, so times before 1970
        // come out as they were stored.
        time: a.mtime as u64,
        time_ns: a.mtime_ns,
        mode: type_bits(a.kind).0 | u32::from(a.perm),
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
    }
}

impl Server {
    /// Answers with `body`, after writing down what it hands the kernel.
    fn ok(&self, h: &InHeader, body: &[&[u8]]) {
        let compact = self.journal.flush();
        self.channel.reply(h.unique, 0, body);
        if compact {
            self.tree.maybe_compact_journal(self.negotiated);
        }
    }

    fn fail(&self, h: &InHeader, errno: i32) {
        self.journal.flush();
        self.channel.reply(h.unique, -errno, &[]);
    }

    fn answer(&self, h: &InHeader, r: Result<Out, i32>) {
        match r {
            Ok(o) => self.ok(h, &[&o.bytes]),
            Err(e) => self.fail(h, e),
        }
    }

    /// Serves one request (`args`: what follows its header).
    pub fn serve(&self, h: &InHeader, args: &[u8]) -> Served {
        let mut a = Args::new(args);
        match h.opcode {
            op::LOOKUP => {
                let r = a.name().ok_or(libc::EINVAL).and_then(|name| {
                    let at = self.tree.lookup(h.nodeid, name).map_err(|e| errno(&e))?;
                    let mut o = Out::default();
                    abi::put_entry(&mut o, &file_attr(&at), self.tree.kernel_ttl());
                    Ok(o)
                });
                self.answer(h, r);
            }
            op::FORGET => {
                if let Some(n) = a.u64() {
                    self.tree.forget(h.nodeid, n);
                }
            }
            op::BATCH_FORGET => {
                let count = a.u32().unwrap_or(0);
                a.skip(4);
                for _ in 0..count {
                    let (Some(ino), Some(n)) = (a.u64(), a.u64()) else {
                        break;
                    };
                    self.tree.forget(ino, n);
                }
            }
            op::GETATTR => {
                let r = self
                    .tree
                    .getattr(h.nodeid)
                    .map_err(|e| errno(&e))
                    .map(|at| {
                        let mut o = Out::default();
                        abi::put_attr(&mut o, &file_attr(&at), self.tree.kernel_ttl());
                        o
                    });
                self.answer(h, r);
            }
            op::READLINK => match self.tree.readlink(h.nodeid) {
                Ok(t) => self.ok(h, &[&t]),
                Err(e) => self.fail(h, errno(&e)),
            },
            op::OPEN => self.open(h, &mut a),
            op::READ => self.read(h, &mut a),
            op::RELEASE => {
                if let Some(fh) = a.u64() {
                    if let Some(id) = self.backing.lock().expect("backing").remove(&fh) {
                        self.channel.backing_close(id);
                    }
                    self.tree.release(fh);
                }
                self.ok(h, &[]);
            }
            op::OPENDIR => {
                if self.tree.is_pinned() {
                    // A pinned revision's directories never change. ENOSYS tells the kernel
                    // to stop sending opendir and releasedir for this mount and to cache
                    // every listing it reads: a warm `find` asks nothing.
                    return self.reply_errno(h, libc::ENOSYS);
                }
                let r = self
                    .tree
                    .opendir(h.nodeid)
                    .map_err(|e| errno(&e))
                    .map(|fh| {
                        let mut o = Out::default();
                        o.u64(fh).u32(0).u32(0);
                        o
                    });
                self.answer(h, r);
            }
            op::RELEASEDIR => {
                if let Some(fh) = a.u64() {
                    self.tree.releasedir(fh);
                }
                self.ok(h, &[]);
            }
            op::READDIR | op::READDIRPLUS => self.readdir(h, &mut a, h.opcode == op::READDIRPLUS),
            op::STATFS => {
                let (files, bytes) = self.tree.statfs();
                let mut o = Out::default();
                o.u64(bytes.div_ceil(4096)) // blocks
                    .u64(0) // bfree
                    .u64(0) // bavail
                    .u64(files)
                    .u64(0) // ffree
                    .u32(4096) // bsize
                    .u32(255) // namelen
                    .u32(4096) // frsize
                    .zeros(28);
                self.ok(h, &[&o.bytes]);
            }
            op::GETXATTR => {
                let size = a.u32().unwrap_or(0);
                a.skip(4);
                match a.name() {
                    Some(name) => {
                        let r = self.tree.getxattr(h.nodeid, name);
                        self.xattr(h, size, r)
                    }
                    None => self.fail(h, libc::EINVAL),
                }
            }
            op::LISTXATTR => {
                let size = a.u32().unwrap_or(0);
                let r = self.tree.listxattr(h.nodeid);
                self.xattr(h, size, r);
            }
            // Permission checks are the kernel's (`default_permissions`); nothing to flush.
            op::ACCESS | op::FLUSH => self.ok(h, &[]),
            // Answered by answering (or not) the request it names; nothing is cancelled.
            op::INTERRUPT => {}
            op::DESTROY => {
                self.ok(h, &[]);
                return Served::Destroyed;
            }
            op::INIT => {
                // Only ever the first message, answered by the session before serving.
                self.fail(h, libc::EPROTO);
            }
            op::SETATTR => self.fail(h, libc::EROFS),
            _ => self.fail(h, libc::ENOSYS),
        }
        Served::More
    }

    /// For a request the kernel sends again (a previous daemon read it and died), the
    /// handle that daemon had opened for it, if it had.
    fn resent(&self, h: &InHeader) -> Option<u64> {
        if h.unique & abi::UNIQUE_RESEND == 0 {
            return None;
        }
        self.tree.reopened(h.unique & !abi::UNIQUE_RESEND)
    }

    fn reply_errno(&self, h: &InHeader, e: i32) -> Served {
        self.fail(h, e);
        Served::More
    }

    fn open(&self, h: &InHeader, a: &mut Args<'_>) {
        let flags = a.u32().unwrap_or(0) as i32;
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return self.fail(h, libc::EROFS);
        }
        if let Some(fh) = self.resent(h) {
            // Opened by the daemon that died before replying: that handle, as it was.
            let mut o = Out::default();
            match self.backing.lock().expect("backing").get(&fh) {
                Some(&id) => o.u64(fh).u32(abi::fopen::PASSTHROUGH).u32(id),
                None => o.u64(fh).u32(abi::fopen::KEEP_CACHE).u32(0),
            };
            return self.ok(h, &[&o.bytes]);
        }
        let fh = match self.tree.open(h.nodeid) {
            Ok(fh) => fh,
            Err(e) => return self.fail(h, errno(&e)),
        };
        self.tree.note_request(fh, h.unique & !abi::UNIQUE_RESEND);
        tracing::debug!("request {:#x}: opened handle {fh}", h.unique);
        die_here_if_asked(&self.journal);
        let mut o = Out::default();
        if self.negotiated.passthrough() {
            if let Some(file) = self.tree.whole_file(fh) {
                use std::os::fd::AsFd;
                match self.channel.backing_open(file.as_fd()) {
                    Ok(id) => {
                        self.backing.lock().expect("backing").insert(fh, id);
                        self.tree.note_backing(fh, id);
                        o.u64(fh).u32(abi::fopen::PASSTHROUGH).u32(id);
                        return self.ok(h, &[&o.bytes]);
                    }
                    Err(e) => {
                        tracing::warn!("passthrough refused ({e}); reading through the daemon")
                    }
                }
            }
        }
        // The content behind an inode never changes (new content is a new inode), so the
        // page cache may keep file pages across opens, pinned or not.
        o.u64(fh).u32(abi::fopen::KEEP_CACHE).u32(0);
        self.ok(h, &[&o.bytes]);
    }

    fn read(&self, h: &InHeader, a: &mut Args<'_>) {
        let (Some(fh), Some(offset), Some(size)) = (a.u64(), a.u64(), a.u32()) else {
            return self.fail(h, libc::EINVAL);
        };
        thread_local! {
            // One buffer per serving thread, grown to the largest request seen (1 MiB with
            // the read-ahead set after mounting) and reused.
            static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUFFER.with_borrow_mut(|buf| {
            let size = size as usize;
            if buf.len() < size {
                buf.resize(size, 0);
            }
            match self.tree.read_into(fh, offset, &mut buf[..size]) {
                Ok(n) => self.ok(h, &[&buf[..n]]),
                Err(e) => self.fail(h, errno(&e)),
            }
        });
    }

    /// The listing behind a readdir: by handle, or by inode when the kernel opened the
    /// directory without asking (handle 0, pinned mounts).
    fn listing(&self, ino: u64, fh: u64) -> Result<Arc<Listing>, ClientError> {
        if fh == 0 {
            self.tree.listing_of(ino)
        } else {
            self.tree.listing(fh)
        }
    }

    fn readdir(&self, h: &InHeader, a: &mut Args<'_>, plus: bool) {
        let (Some(fh), Some(offset), Some(size)) = (a.u64(), a.u64(), a.u32()) else {
            return self.fail(h, libc::EINVAL);
        };
        let items = match self.listing(h.nodeid, fh) {
            Ok(i) => i,
            Err(e) => return self.fail(h, errno(&e)),
        };
        let limit = size as usize;
        let mut o = Out::default();
        // "." and ".." first, then the listing: one numbering of offsets for readdir and
        // readdirplus, which the kernel may mix in one pass over a directory.
        let dir = type_bits(EntryKind::Directory).1;
        let dots = [&b"."[..], &b".."[..]];
        let ttl = self.tree.kernel_ttl();
        for i in offset as usize..dots.len() + items.len() {
            let off = (i + 1) as u64;
            if let Some(name) = dots.get(i) {
                if plus {
                    if o.bytes.len() + abi::direntplus_len(name.len()) > limit {
                        break;
                    }
                    // Node id 0: no attributes and no reference (the kernel takes none
                    // for dot entries anyway).
                    abi::put_entry(&mut o, &FileAttr::default(), Duration::ZERO);
                }
                if !abi::put_dirent(&mut o, limit, h.nodeid, off, dir, name) {
                    break;
                }
                continue;
            }
            let (name, listed) = &items[i - dots.len()];
            if !plus {
                if !abi::put_dirent(
                    &mut o,
                    limit,
                    listed.ino,
                    off,
                    type_bits(listed.kind).1,
                    name,
                ) {
                    break;
                }
                continue;
            }
            if o.bytes.len() + abi::direntplus_len(name.len()) > limit {
                break;
            }
            // Each entry sent is a reference the kernel will forget: taken only once it is
            // certain to fit.
            let at = match self.tree.hold_listed(h.nodeid, name, listed) {
                Ok(at) => at,
                Err(e) => {
                    if o.bytes.is_empty() {
                        return self.fail(h, errno(&e));
                    }
                    break;
                }
            };
            let fa = file_attr(&at);
            abi::put_entry(&mut o, &fa, ttl);
            abi::put_dirent(&mut o, limit, fa.ino, off, type_bits(at.kind).1, name);
        }
        self.ok(h, &[&o.bytes]);
    }

    fn xattr(&self, h: &InHeader, size: u32, r: Result<Vec<u8>, ClientError>) {
        match r {
            Ok(v) if size == 0 => {
                let mut o = Out::default();
                o.u32(v.len() as u32).u32(0);
                self.ok(h, &[&o.bytes]);
            }
            Ok(v) if v.len() <= size as usize => self.ok(h, &[&v]),
            Ok(_) => self.fail(h, libc::ERANGE),
            Err(e) => self.fail(h, errno(&e)),
        }
    }
}
