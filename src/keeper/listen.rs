//! The keeper's socket: claiming its path (one keeper per path), binding it, and accepting
//! only the keeper's own user and root.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::socket::{
    bind, connect, getsockopt, listen, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    UnixAddr,
};

use super::error::KeeperError;

/// The keeper's bound socket; dropping it removes the socket file if it is still this one.
pub(super) struct Listener {
    // std's listener only calls accept4 (with SOCK_CLOEXEC); it does not mind that the
    // socket is SOCK_SEQPACKET, and it spares an unsafe conversion of the accepted fd.
    socket: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file bound, so that a successor's is not removed.
    identity: (u64, u64),
    /// Held for the keeper's life: two keepers starting at once cannot both remove a
    /// stale socket file and bind, one after the other's bind.
    _lock: Flock<File>,
}

impl Listener {
    /// Binds `path` (mode 0600; its directory made 0700 if missing). A stale socket file
    /// (nothing accepts there) is replaced; a live keeper there is an error.
    pub fn bind(path: &Path) -> Result<Self, KeeperError> {
        let setup = |what, source| KeeperError::Setup {
            what,
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| setup("creating the directory of", e))?;
            }
        }
        let lock = lock(path)?;
        remove_stale(path)?;
        let addr = UnixAddr::new(path).map_err(|e| setup("naming", e.into()))?;
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| setup("creating a socket for", e.into()))?;
        bind(fd.as_raw_fd(), &addr).map_err(|e| setup("binding", e.into()))?;
        // Connecting needs write permission on the socket file: 0600 leaves only the
        // keeper's user (and root); the peer check on accept says the same again.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| setup("setting the mode of", e))?;
        listen(&fd, Backlog::new(128).unwrap_or(Backlog::MAXCONN))
            .map_err(|e| setup("listening on", e.into()))?;
        let meta = std::fs::symlink_metadata(path).map_err(|e| setup("reading", e))?;
        Ok(Listener {
            socket: UnixListener::from(fd),
            path: path.to_owned(),
            identity: (meta.dev(), meta.ino()),
            _lock: lock,
        })
    }

    /// The next pending connection from an allowed peer; `None` when none is pending.
    /// Others are closed with a warning. The connection is non-blocking.
    pub fn accept(&self) -> Result<Option<OwnedFd>, std::io::Error> {
        loop {
            let stream = match self.socket.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                // The peer gave up before it was accepted: look at the next one.
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Err(e) => return Err(e),
            };
            let creds = getsockopt(&stream, sockopt::PeerCredentials)?;
            let me = nix::unistd::geteuid().as_raw();
            if creds.uid() != me && creds.uid() != 0 {
                tracing::warn!(
                    "keeper: refused a connection from uid {} (pid {}): only uid {me} and root may use it",
                    creds.uid(),
                    creds.pid()
                );
                continue;
            }
            stream.set_nonblocking(true)?;
            return Ok(Some(OwnedFd::from(stream)));
        }
    }

    /// The listening socket (readable when a connection is pending).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .map(|m| (m.dev(), m.ino()) == self.identity)
            .unwrap_or(false);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The lock file beside the socket, `<socket>.lock`, locked for the keeper's life.
fn lock(path: &Path) -> Result<Flock<File>, KeeperError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|source| KeeperError::Setup {
            what: "opening the lock file",
            path: lock_path.clone(),
            source,
        })?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(l),
        Err((_, Errno::EWOULDBLOCK)) => Err(KeeperError::AlreadyRunning {
            socket: path.to_owned(),
        }),
        Err((_, e)) => Err(KeeperError::Setup {
            what: "locking",
            path: lock_path,
            source: e.into(),
        }),
    }
}

/// Removes a socket file at `path` that nothing accepts on; a keeper that accepts there
/// (one started without the lock file, or from another mount namespace's view of the lock)
/// is an error, and so is a file there that is not a socket.
fn remove_stale(path: &Path) -> Result<(), KeeperError> {
    let setup = |what, source| KeeperError::Setup {
        what,
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(setup("reading", e)),
    };
    if !meta.file_type().is_socket() {
        return Err(setup(
            "replacing",
            std::io::Error::new(ErrorKind::AlreadyExists, "a file that is not a socket"),
        ));
    }
    match probe(path) {
        Ok(()) => Err(KeeperError::AlreadyRunning {
            socket: path.to_owned(),
        }),
        Err(Errno::ECONNREFUSED) => {
            tracing::info!("keeper: replacing the stale socket {}", path.display());
            std::fs::remove_file(path).map_err(|e| setup("removing the stale socket", e))
        }
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(setup("probing", e.into())),
    }
}

/// Connects to `path` and hangs up again: does anything accept there?
pub(super) fn probe(path: &Path) -> Result<(), Errno> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)
}
