//! Mounts that outlive their daemon: a new mount's `/dev/fuse` descriptor and journal go
//! to the keeper; a daemon starting where a previous one served takes the connection
//! over instead of mounting again (the tasks on it never notice beyond a pause).

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::keeper::{KeeperClient, KeeperError, KeptRef};
use crate::mount::fuse::{self, MountOptions, ResumeError, Session};
use crate::mount::MountedTree;

/// Why a kept mount could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KeptError {
    /// Talking to the keeper failed.
    #[error("keeper: {0}")]
    Keeper(#[from] KeeperError),
    /// Mounting failed.
    #[error("mounting: {0}")]
    Mount(#[from] std::io::Error),
    /// The kept connection could not be taken over.
    #[error("taking the kept connection over: {0}")]
    Resume(#[from] ResumeError),
    /// The keeper handed over fewer descriptors than a mount deposits.
    #[error("the keeper holds {0} descriptors for this mount, not 2 (/dev/fuse and journal)")]
    Descriptors(usize),
}

/// How a mount came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// A new connection (nothing was kept for this mount point).
    Mounted,
    /// A connection a previous daemon served. `orphaned`: it died (its unanswered
    /// requests were asked for again) rather than handing it over.
    TookOver {
        /// The previous daemon died rather than handing over.
        orphaned: bool,
    },
}

/// The keeper's key for a mount point: its canonical path, found without touching the
/// mount point itself (a kept mount whose daemon is dead would block a `stat` of it until
/// someone serves it again: that is us).
pub fn key_of(mountpoint: &Path) -> PathBuf {
    let (Some(parent), Some(name)) = (mountpoint.parent(), mountpoint.file_name()) else {
        return mountpoint.to_path_buf();
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    std::fs::canonicalize(parent)
        .unwrap_or_else(|_| parent.to_path_buf())
        .join(name)
}

/// What to do when nothing is kept for the mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Mount over whatever is there.
    Keep,
    /// Detach a mount left there first (a dead one: its daemon gone, nothing kept it).
    Detach,
}

/// Mounts `tree` at `mountpoint`, or takes over the connection the keeper holds for it
/// (waiting up to `wait` while a live daemon still owns it: an upgrade hands over).
/// Without a keeper, mounts as a plain mount that dies with this process.
pub fn mount(
    tree: Arc<MountedTree>,
    mountpoint: &Path,
    o: &MountOptions,
    keeper: Option<&KeeperClient>,
    wait: Duration,
    stale: Stale,
) -> Result<(Session, Started), KeptError> {
    let fresh = |tree| {
        if stale == Stale::Detach {
            fuse::unmount(mountpoint, true)?;
        }
        fuse::spawn(tree, mountpoint, o)
    };
    let Some(keeper) = keeper else {
        return Ok((fresh(tree)?, Started::Mounted));
    };
    let key = key_of(mountpoint);
    let name = key.to_string_lossy().into_owned();
    if let Some(c) = keeper.claim(&name, wait)? {
        let n = c.fds.len();
        let mut fds = c.fds.into_iter();
        let (Some(fuse_fd), Some(journal_fd), None) = (fds.next(), fds.next(), fds.next()) else {
            return Err(KeptError::Descriptors(n));
        };
        let session = fuse::resume(tree, fuse_fd, journal_fd, mountpoint, o.threads, c.orphaned)?;
        tracing::info!(
            "took over the FUSE connection of {} ({})",
            key.display(),
            if c.orphaned {
                "its daemon had died"
            } else {
                "handed over"
            }
        );
        return Ok((
            session,
            Started::TookOver {
                orphaned: c.orphaned,
            },
        ));
    }
    let session = fresh(tree)?;
    if !session.negotiated().resend() {
        tracing::warn!(
            "this kernel does not offer FUSE_NOTIFY_RESEND (Linux 6.9): after a crash, the \
             calls the dead daemon was answering wait until the keeper aborts the connection"
        );
    }
    deposit(keeper, &key, &session)?;
    Ok((session, Started::Mounted))
}

/// Gives the keeper (again: a new keeper after the last one died) what it needs to keep
/// `session`'s connection alive.
pub fn deposit(keeper: &KeeperClient, key: &Path, session: &Session) -> Result<(), KeeperError> {
    // The connection's number under /sys/fs/fuse/connections is the mount's device
    // number (anonymous devices have major 0, so the minor alone).
    let fusectl = std::fs::metadata(key).ok().map(|m| libc::minor(m.dev()));
    let fds = [session.fuse_fd(), session.journal_fd()];
    let fds: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    keeper.deposit(
        &key.to_string_lossy(),
        &KeptRef {
            mountpoint: key,
            fusectl,
            fds: &fds,
        },
    )
}

/// The mount at `mountpoint` was unmounted for good: the keeper lets its copies go.
pub fn release(keeper: Option<&KeeperClient>, mountpoint: &Path) {
    if let Some(k) = keeper {
        let key = key_of(mountpoint);
        if let Err(e) = k.release(&key.to_string_lossy()) {
            tracing::warn!("telling the keeper {} is unmounted: {e}", key.display());
        }
    }
}
