//! Sessions: mounting a new connection (mount(2), INIT) or resuming a kept one, the pool
//! of threads serving it, handing it over; the kernel tunables set after mounting and the
//! checks before an unmount.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::abi;
use super::channel::{Channel, Next};
use super::init::Negotiated;
use super::ops::{Served, Server};
use crate::mount::journal::{Journal, JournalError, Record};
use crate::mount::MountedTree;

/// How [`spawn`] mounts a tree (always read-only, with default permission checks).
pub struct MountOptions {
    /// Shown as the source in mount tables: `lazyroot:<name>`.
    pub name: String,
    /// Let other users (and containers' uids) use the mount.
    pub allow_other: bool,
    /// Honour set-user-id and set-group-id bits (`suid`, else `nosuid`).
    pub suid: bool,
    /// Allow device files to be used (`dev`, else `nodev`).
    pub dev: bool,
    /// Whole files read by the kernel straight from the cache (FUSE passthrough).
    pub passthrough: bool,
    /// Threads serving requests: one slow download must not stall every other reader.
    pub threads: usize,
}

/// Why a kept connection could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// Its journal could not be read back.
    #[error("the connection's journal: {0}")]
    Journal(#[from] JournalError),
    /// The descriptor could not be set up.
    #[error("the connection's descriptor: {0}")]
    Io(#[from] io::Error),
}

/// A FUSE connection being served by a pool of threads, until the kernel ends it
/// (unmount, abort) or [`Session::hand_over`] stops it for another daemon.
pub struct Session {
    server: Arc<Server>,
    mountpoint: PathBuf,
    /// Readable once serving must stop (its write end is `stop_tx`).
    stop_rx: Arc<OwnedFd>,
    stop_tx: OwnedFd,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Set by the first thread that sees the connection end.
    gone: Arc<AtomicBool>,
    /// Unmount when dropped (not after a hand-over: another daemon serves it now).
    unmount_on_drop: bool,
}

/// Mounts `tree` read-only at `mountpoint` on a new connection, served by background
/// threads until unmounted. Needs CAP_SYS_ADMIN (the mount is made with mount(2)).
pub fn spawn(tree: Arc<MountedTree>, mountpoint: &Path, o: &MountOptions) -> io::Result<Session> {
    use nix::fcntl::{open, OFlag};
    use nix::mount::{mount, MsFlags};
    use nix::sys::stat::Mode;
    let fd = open("/dev/fuse", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| io::Error::other(format!("opening /dev/fuse: {e}")))?;
    let mut data = format!(
        "fd={},rootmode=40000,user_id={},group_id={},default_permissions",
        fd.as_raw_fd(),
        nix::unistd::geteuid(),
        nix::unistd::getegid()
    );
    if o.allow_other {
        data.push_str(",allow_other");
    }
    let mut flags = MsFlags::MS_RDONLY;
    if !o.suid {
        flags |= MsFlags::MS_NOSUID;
    }
    if !o.dev {
        flags |= MsFlags::MS_NODEV;
    }
    let source = format!("lazyroot:{}", o.name);
    mount(
        Some(source.as_str()),
        mountpoint,
        Some("fuse.lazyroot"),
        flags,
        Some(data.as_str()),
    )
    .map_err(|e| {
        let hint = if e == nix::errno::Errno::EPERM {
            " (mounting needs CAP_SYS_ADMIN)"
        } else {
            ""
        };
        io::Error::other(format!("mount(2) of fuse.lazyroot: {e}{hint}"))
    })?;
    let channel = Arc::new(Channel::new(fd)?);
    let journal = Arc::new(Journal::create()?);
    let negotiated = match handshake(&channel, &tree, o) {
        Ok(n) => n,
        Err(e) => {
            let _ = unmount(mountpoint, true);
            return Err(e);
        }
    };
    journal.append(&Record::Init(negotiated));
    tree.start_journal(journal.clone());
    journal.flush();
    let session = Session::start(
        tree,
        channel,
        journal,
        negotiated,
        mountpoint,
        o.threads,
        Vec::new(),
    )?;
    // After the threads start: finding the mount's device is a stat of the mount itself.
    if let Err(e) = set_read_ahead(mountpoint, READ_AHEAD_KIB) {
        // Only slower sequential reads: worth a word, not a failure.
        tracing::warn!("read-ahead left at the kernel's default: {e}");
    }
    Ok(session)
}

/// Reads and answers the kernel's INIT, the first message of every new connection.
fn handshake(channel: &Channel, tree: &MountedTree, o: &MountOptions) -> io::Result<Negotiated> {
    let (stop_rx, _stop_tx) = nix::unistd::pipe()?;
    let mut buf = vec![0u8; super::init::BUFFER];
    let n = match channel.next(&mut buf, stop_rx.as_fd())? {
        Next::Request(n) => n,
        _ => return Err(io::Error::other("the FUSE connection ended before INIT")),
    };
    let h = abi::InHeader::parse(&buf[..n])
        .ok_or_else(|| io::Error::other("a malformed first FUSE message"))?;
    let want = super::init::Wanted {
        pinned: tree.is_pinned(),
        passthrough: o.passthrough,
    };
    super::init::answer(channel, h.opcode, h.unique, &buf[abi::IN_HEADER..n], &want)
        .map_err(io::Error::other)
}

/// Goes on serving a connection a previous daemon served (its `/dev/fuse` descriptor
/// and journal, from the keeper) without a new INIT. `resend`: the previous daemon died
/// with requests read and unanswered; the kernel is asked to send them again.
pub fn resume(
    tree: Arc<MountedTree>,
    fuse: OwnedFd,
    journal: OwnedFd,
    mountpoint: &Path,
    threads: usize,
    resend: bool,
) -> Result<Session, ResumeError> {
    let channel = Arc::new(Channel::new(fuse)?);
    let (journal, restored) = Journal::open(journal)?;
    let journal = Arc::new(journal);
    let backing = tree.restore(&restored, journal.clone());
    journal.flush();
    let negotiated = restored.init;
    if resend {
        // Before any thread of ours reads: a resend moves back every request being
        // processed, ours too, and our reply to one moved back would find nothing (the
        // kernel answers the copy it sends again).
        if negotiated.resend() {
            channel.notify_resend()?;
        } else {
            tracing::warn!(
                "this kernel cannot resend what the previous daemon read and never answered \
                 (FUSE_NOTIFY_RESEND needs Linux 6.9): those calls wait until the connection is aborted"
            );
        }
    }
    Ok(Session::start(
        tree, channel, journal, negotiated, mountpoint, threads, backing,
    )?)
}

impl Session {
    fn start(
        tree: Arc<MountedTree>,
        channel: Arc<Channel>,
        journal: Arc<Journal>,
        negotiated: Negotiated,
        mountpoint: &Path,
        threads: usize,
        backing: Vec<(u64, u32)>,
    ) -> io::Result<Session> {
        let server = Arc::new(Server {
            tree,
            channel,
            negotiated,
            journal,
            // Open files a previous daemon gave backing files (closed at their release).
            backing: Mutex::new(backing.into_iter().collect::<HashMap<_, _>>()),
        });
        let (stop_rx, stop_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let stop_rx = Arc::new(stop_rx);
        let gone = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (server, stop_rx, gone) = (server.clone(), stop_rx.clone(), gone.clone());
            let stop_tx = stop_tx.try_clone()?;
            handles.push(
                std::thread::Builder::new()
                    .name(format!("lazyroot-fuse-{i}"))
                    .spawn(move || serve(&server, &stop_rx, &stop_tx, &gone))?,
            );
        }
        Ok(Session {
            server,
            mountpoint: mountpoint.to_path_buf(),
            stop_rx,
            stop_tx,
            threads: handles,
            gone,
            unmount_on_drop: true,
        })
    }

    /// Whether the connection has ended (unmounted or aborted).
    pub fn is_finished(&self) -> bool {
        self.gone.load(Ordering::Relaxed) || self.threads.iter().all(|t| t.is_finished())
    }

    /// The connection's `/dev/fuse` descriptor (for the keeper).
    pub fn fuse_fd(&self) -> BorrowedFd<'_> {
        self.server.channel.fd()
    }

    /// The journal's descriptor (for the keeper).
    pub fn journal_fd(&self) -> BorrowedFd<'_> {
        self.server.journal.fd()
    }

    /// What INIT settled for this connection.
    pub fn negotiated(&self) -> Negotiated {
        self.server.negotiated
    }

    /// Stops serving without unmounting, for another daemon to take over: every request
    /// already read is answered first, so the next daemon has nothing to resend from us.
    pub fn hand_over(mut self) {
        self.unmount_on_drop = false;
        self.stop_threads();
        self.server.journal.flush();
    }

    fn stop_threads(&mut self) {
        let _ = nix::unistd::write(&self.stop_tx, b"x");
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Waits for the serving threads to end (the connection ended).
    pub fn join(mut self) {
        self.unmount_on_drop = false;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.unmount_on_drop && !self.threads.is_empty() {
            if !self.gone.load(Ordering::Relaxed) {
                let _ = unmount(&self.mountpoint, true);
            }
            self.stop_threads();
        }
        let _ = &self.stop_rx;
    }
}

/// One serving thread: requests until the connection ends or serving is stopped.
fn serve(server: &Server, stop_rx: &OwnedFd, stop_tx: &OwnedFd, gone: &AtomicBool) {
    let mut buf = vec![0u8; super::init::BUFFER];
    loop {
        let n = match server.channel.next(&mut buf, stop_rx.as_fd()) {
            Ok(Next::Request(n)) => n,
            Ok(Next::Stopped) => return,
            Ok(Next::Gone) => break,
            Err(e) => {
                tracing::error!("reading from the FUSE connection: {e}");
                break;
            }
        };
        let Some(h) = abi::InHeader::parse(&buf[..n]) else {
            tracing::warn!("a malformed FUSE request of {n} bytes was dropped");
            continue;
        };
        if let Served::Destroyed = server.serve(&h, &buf[abi::IN_HEADER..n]) {
            break;
        }
    }
    gone.store(true, Ordering::Relaxed);
    // The others may sleep in poll on a connection that ends quietly: wake them.
    let _ = nix::unistd::write(stop_tx, b"x");
}

/// Unmounts `mountpoint`; `detach` unmounts even while it is busy (lazily).
pub fn unmount(mountpoint: &Path, detach: bool) -> io::Result<()> {
    use nix::errno::Errno;
    use nix::mount::{umount2, MntFlags};
    let flags = if detach {
        MntFlags::MNT_DETACH
    } else {
        MntFlags::empty()
    };
    match umount2(mountpoint, flags) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// How many other mounts of the filesystem mounted at `mountpoint` this mount namespace
/// has (binds of it). Each keeps the FUSE connection in use after the mount itself goes.
pub fn other_mounts(mountpoint: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return 0;
    };
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    // The mount table lists paths resolved: a mount point reached through a symlink is
    // its own mount under another name, not another mount.
    let listed = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.into());
    let Ok(mounts) = crate::mount::mountinfo::read() else {
        return 0;
    };
    mounts
        .iter()
        .filter(|m| (m.major, m.minor) == (major, minor) && m.mount_point != listed)
        .count()
}

/// What `lazyroot mount` sets with [`set_read_ahead`].
pub const READ_AHEAD_KIB: u32 = 1024;

/// The kernel's read-ahead for a FUSE mount starts at 128 KiB, so a sequential reader costs
/// one round trip per 128 KiB. Raising the mount's read-ahead (its backing device info, by
/// the mount's device number) lets the kernel ask for up to 1 MiB at a time (256 pages, its
/// default limit for one FUSE request) and keep that much in flight.
pub fn set_read_ahead(mountpoint: &std::path::Path, kib: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mountpoint)?.dev();
    let bdi = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    std::fs::write(&bdi, format!("{kib}\n"))
        .map_err(|e| std::io::Error::new(e.kind(), format!("{bdi}: {e}")))
}
