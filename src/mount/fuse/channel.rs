//! One FUSE connection's `/dev/fuse` descriptor: reading requests, writing replies and
//! notifications, registering passthrough backing files. The descriptor is the connection:
//! it may have been opened by this process (a new mount) or received from the keeper (a
//! connection a previous daemon served), and the kernel cannot tell the two apart.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::abi;

/// Why reading the next request stopped.
pub enum Next {
    /// A request of this many bytes is in the buffer.
    Request(usize),
    /// The stop descriptor became readable: hand over or shut down.
    Stopped,
    /// The connection is gone (unmounted or aborted): nothing more will come.
    Gone,
}

/// A `/dev/fuse` descriptor, shared by the serving threads.
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// Serves the connection behind `fd`, made non-blocking so that threads polling it
    /// together never sleep in `read` while another took the request.
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = OFlag::from_bits_retain(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(Channel { fd })
    }

    /// The descriptor (to hand to the keeper).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Waits for the next request (or for `stop`) and reads it into `buf`, which must hold
    /// the largest request the connection was set up for.
    pub fn next(&self, buf: &mut [u8], stop: BorrowedFd<'_>) -> io::Result<Next> {
        loop {
            let mut fds = [
                PollFd::new(self.fd.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop, PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return Ok(Next::Stopped);
            }
            match nix::unistd::read(&self.fd, buf) {
                Ok(n) => return Ok(Next::Request(n)),
                // Another thread took it, or it was interrupted before it was read.
                Err(Errno::EAGAIN) | Err(Errno::EINTR) | Err(Errno::ENOENT) => continue,
                Err(Errno::ENODEV) => return Ok(Next::Gone),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Answers request `unique`: `error` is 0 or a negative errno, `body` the reply's parts.
    pub fn reply(&self, unique: u64, error: i32, body: &[&[u8]]) {
        let len = abi::OUT_HEADER + body.iter().map(|b| b.len()).sum::<usize>();
        let mut head = abi::Out::default();
        head.u32(len as u32).u32(error as u32).u64(unique);
        let mut iov = vec![io::IoSlice::new(&head.bytes)];
        iov.extend(body.iter().map(|b| io::IoSlice::new(b)));
        match nix::sys::uio::writev(&self.fd, &iov) {
            Ok(_) => {}
            // The request was interrupted and is gone, or the connection was aborted.
            Err(Errno::ENOENT) | Err(Errno::ENODEV) => {
                tracing::debug!("the reply to request {unique:#x} found no request waiting")
            }
            Err(e) => tracing::warn!("replying to FUSE request {unique:#x}: {e}"),
        }
    }

    /// Asks the kernel to queue again every request some daemon read from this connection
    /// and never answered (a daemon that died while serving them). Fails with EINVAL on
    /// kernels without it (before Linux 6.9).
    pub fn notify_resend(&self) -> io::Result<()> {
        let mut head = abi::Out::default();
        head.u32(abi::OUT_HEADER as u32)
            .u32(abi::NOTIFY_RESEND as u32)
            .u64(0);
        nix::unistd::write(&self.fd, &head.bytes)?;
        Ok(())
    }

    /// Registers `file` as a passthrough backing file; the id an open reply names.
    #[allow(unsafe_code)]
    pub fn backing_open(&self, file: BorrowedFd<'_>) -> io::Result<u32> {
        #[repr(C)]
        struct BackingMap {
            fd: i32,
            flags: u32,
            padding: u64,
        }
        nix::ioctl_write_ptr!(backing_open, 229, 1, BackingMap);
        let map = BackingMap {
            fd: file.as_raw_fd(),
            flags: 0,
            padding: 0,
        };
        // SAFETY: `map` is a valid `struct fuse_backing_map` for the ioctl's duration.
        let id = unsafe { backing_open(self.fd.as_raw_fd(), &map) }?;
        Ok(id as u32)
    }

    /// Drops a backing file registered by [`backing_open`](Self::backing_open) (by this
    /// daemon or a previous one: ids belong to the connection).
    #[allow(unsafe_code)]
    pub fn backing_close(&self, id: u32) {
        nix::ioctl_write_ptr!(backing_close, 229, 2, u32);
        // SAFETY: the argument is a valid u32 for the ioctl's duration.
        if let Err(e) = unsafe { backing_close(self.fd.as_raw_fd(), &id) } {
            tracing::warn!("closing passthrough backing file {id}: {e}");
        }
    }
}
