//! Mounting and unmounting: the options every lazyroot mount shares, the kernel tunables
//! set after mounting, and the checks before an unmount.

use std::io;
use std::path::Path;
use std::sync::Arc;

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

/// Mounts `tree` read-only at `mountpoint`, served by background threads until unmounted.
pub fn spawn(
    tree: Arc<MountedTree>,
    mountpoint: &Path,
    o: &MountOptions,
) -> io::Result<fuser::BackgroundSession> {
    use fuser::MountOption as O;
    let mut options = vec![
        O::FSName(format!("lazyroot:{}", o.name)),
        O::Subtype("lazyroot".into()),
        O::RO,
        O::DefaultPermissions,
    ];
    options.push(if o.suid { O::Suid } else { O::NoSuid });
    options.push(if o.dev { O::Dev } else { O::NoDev });
    let mut config = fuser::Config::default();
    config.mount_options = options;
    config.acl = if o.allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    config.n_threads = Some(o.threads.max(1));
    // One /dev/fuse descriptor per thread: no thundering herd on a shared one.
    config.clone_fd = true;
    let session = fuser::spawn_mount(super::Fs::new(tree, o.passthrough), mountpoint, &config)?;
    if let Err(e) = set_read_ahead(mountpoint, READ_AHEAD_KIB) {
        // Only slower sequential reads: worth a word, not a failure.
        tracing::warn!("read-ahead left at the kernel's default: {e}");
    }
    Ok(session)
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
