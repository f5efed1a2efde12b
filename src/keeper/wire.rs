//! One packet and its descriptors over a SOCK_SEQPACKET Unix socket (both sides).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use super::protocol::MAX_MESSAGE;

/// The kernel passes at most this many descriptors in one message (`SCM_MAX_FD`). Room for
/// all of them means a message is never cut short for want of space, so every descriptor
/// the kernel installed is seen here and closed if refused (nix does not show any when
/// the control data is truncated).
const SCM_MAX_FD: usize = 253;

/// A packet as received.
pub(super) struct Packet {
    /// Its bytes (at most [`MAX_MESSAGE`]).
    pub body: Vec<u8>,
    /// The descriptors that came with it, owned (close-on-exec).
    pub fds: Vec<OwnedFd>,
    /// It was longer than [`MAX_MESSAGE`]; the rest was discarded.
    pub truncated: bool,
    /// Descriptors were sent but not all were installed (the open-file limit): the
    /// message is incomplete.
    pub fds_lost: bool,
}

/// Sends `body` with `fds` as one packet; `MSG_NOSIGNAL` so that a peer gone is `EPIPE`,
/// not a signal that kills the sender.
pub(super) fn send(
    socket: BorrowedFd<'_>,
    body: &[u8],
    fds: &[BorrowedFd<'_>],
    flags: MsgFlags,
) -> Result<(), Errno> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    let sent = sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(body)],
        cmsgs,
        flags | MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    // A SOCK_SEQPACKET send is all or nothing; anything else is not that socket.
    if sent != body.len() {
        return Err(Errno::EMSGSIZE);
    }
    Ok(())
}

/// Receives one packet; `None` at end of file (the peer closed). Descriptors arrive
/// close-on-exec (`MSG_CMSG_CLOEXEC`), so a program the receiver starts never inherits one.
pub(super) fn recv(socket: BorrowedFd<'_>, flags: MsgFlags) -> Result<Option<Packet>, Errno> {
    let mut body = vec![0u8; MAX_MESSAGE];
    let mut cmsg = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
    let mut iov = [IoSliceMut::new(&mut body)];
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        flags | MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let (bytes, msg_flags) = (msg.bytes, msg.flags);
    let mut fds = Vec::new();
    let fds_lost = match msg.cmsgs() {
        Ok(cmsgs) => {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    fds.extend(raw.into_iter().map(own));
                }
            }
            false
        }
        // MSG_CTRUNC: the kernel could not install them all (EMFILE).
        Err(_) => true,
    };
    // End of file, and a zero-length packet (which this protocol never sends), read the
    // same: the peer is treated as gone.
    if bytes == 0 {
        return Ok(None);
    }
    body.truncate(bytes);
    Ok(Some(Packet {
        body,
        fds,
        truncated: msg_flags.contains(MsgFlags::MSG_TRUNC),
        fds_lost,
    }))
}

/// Takes ownership of a descriptor the kernel just installed for an SCM_RIGHTS message.
#[allow(unsafe_code)]
fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: recvmsg just installed `fd` in this process's table for us; nothing else
    // knows it, so this is its only owner and it is closed exactly once, when dropped.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
