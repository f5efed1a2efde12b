//! The keeper: a small process that keeps FUSE connections alive across daemon crashes.
//!
//! A FUSE connection dies when the last open descriptor of its `/dev/fuse` file closes.
//! A daemon (`lazyroot mount`, the provisioner) deposits each mount's `/dev/fuse`
//! descriptor and its journal (a memfd with the daemon's state) with the keeper over a
//! Unix socket ([`KeeperClient::deposit`]). If the daemon dies (SIGKILL, OOM), its
//! connection to the keeper closes and the keeper still holds the descriptors: the key is
//! *orphaned*. A restarted daemon [claims](KeeperClient::claim) it, gets duplicates and
//! resumes serving. If nobody claims an orphaned key within the takeover timeout (60 s by
//! default), the keeper aborts it: it writes `1` to the connection's fusectl `abort` file,
//! closes its descriptors (the last `/dev/fuse` one closing aborts the connection as
//! well, so processes using the mount get `ENOTCONN` instead of hanging) and detaches the
//! mount point (`umount2(MNT_DETACH)`, only if a FUSE filesystem is mounted there).
//!
//! # Protocol
//! A SOCK_SEQPACKET socket (mode 0600, only the keeper's user and root may connect), one
//! JSON message per packet ([`protocol`]), descriptors as SCM_RIGHTS; each request gets
//! exactly one reply. Messages are at most [`protocol::MAX_MESSAGE`] bytes with at most
//! [`protocol::MAX_FDS`] descriptors; a refused message's descriptors are closed.
//!
//! # When the keeper stops
//! - **SIGTERM or SIGINT**: it exits (status 0) and closes every descriptor it holds.
//!   Mounts whose daemons are alive keep working: each daemon holds its own `/dev/fuse`
//!   descriptor, so the connection lives on (it only loses its safety net until the
//!   daemon notices, through [`KeeperClient::as_fd`], starts a new keeper and deposits
//!   again). Orphaned mounts are aborted then, as at their deadline: fusectl abort, close,
//!   detach.
//! - **SIGKILL** (or a crash): the same, done by the kernel, except that orphaned mounts
//!   are not detached: their connections abort (the last `/dev/fuse` descriptor closed)
//!   and their mount points report `ENOTCONN` until someone unmounts them.
//! - **Idle** ([`KeeperOptions::idle_exit`]): holding no key and with no client for that
//!   long, it exits 0; the next daemon that needs one starts a new one
//!   ([`KeeperClient::connect_or_spawn`]).
//!
//! The socket file is removed when the keeper exits normally; a stale one left by a
//! killed keeper is replaced by the next. `<socket>.lock`, beside it, is flocked for the
//! keeper's life so that only one keeper serves a path.

mod abort;
mod client;
mod error;
mod listen;
pub mod protocol;
mod server;
mod table;
mod wire;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use client::KeeperClient;
pub use error::KeeperError;
pub use protocol::{KeyState, Listed};
pub use server::run;

/// Where the keeper listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/lazyroot/keeper.sock";

/// What one deposit holds: the descriptors, in order (by convention `[fuse, journal]`),
/// and what is needed to abort it.
#[derive(Debug)]
pub struct Kept {
    /// Where the FUSE filesystem is mounted (canonical: it is compared with mountinfo).
    pub mountpoint: PathBuf,
    /// The connection's number under `/sys/fs/fuse/connections/` (the mount's minor
    /// device number), if known.
    pub fusectl: Option<u32>,
    /// The descriptors.
    pub fds: Vec<OwnedFd>,
}

impl Kept {
    /// The descriptors, borrowed, for a [`KeptRef`].
    pub fn borrowed_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.fds.iter().map(AsFd::as_fd).collect()
    }
}

/// A deposit as the depositing daemon sees it: its own descriptors, lent for the call
/// (the keeper receives duplicates; the daemon keeps and goes on using its own).
#[derive(Debug, Clone, Copy)]
pub struct KeptRef<'a> {
    /// Where the FUSE filesystem is mounted (canonical: it is compared with mountinfo).
    pub mountpoint: &'a Path,
    /// The connection's number under `/sys/fs/fuse/connections/`, if known.
    pub fusectl: Option<u32>,
    /// The descriptors, in order (by convention `[fuse, journal]`).
    pub fds: &'a [BorrowedFd<'a>],
}

/// What a claim hands over: duplicates of the deposited descriptors, in deposit order.
#[derive(Debug)]
pub struct Claimed {
    /// Where the FUSE filesystem is mounted.
    pub mountpoint: PathBuf,
    /// The connection's number under `/sys/fs/fuse/connections/`, if known.
    pub fusectl: Option<u32>,
    /// The descriptors (close-on-exec).
    pub fds: Vec<OwnedFd>,
    /// The previous owner died (or disconnected without releasing) rather than being
    /// this very client, still alive.
    pub orphaned: bool,
}

/// How the keeper behaves.
#[derive(Debug, Clone)]
pub struct KeeperOptions {
    /// How long an orphaned key waits for a claim before it is aborted.
    pub takeover_timeout: Duration,
    /// Exit after holding no key with no client connected for this long; `None`: never.
    pub idle_exit: Option<Duration>,
}

impl Default for KeeperOptions {
    fn default() -> Self {
        KeeperOptions {
            takeover_timeout: Duration::from_secs(60),
            idle_exit: Some(Duration::from_secs(10)),
        }
    }
}
