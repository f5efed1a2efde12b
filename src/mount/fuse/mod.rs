//! The FUSE side of a mount, spoken directly over `/dev/fuse`: the protocol's messages
//! ([`abi`]), the connection's descriptor ([`channel`]), the INIT handshake, the requests'
//! translation to the tree ([`ops`]) and the serving threads ([`session`]).
//!
//! Not a FUSE library: a daemon taking over a connection another daemon set up (after a
//! crash or an upgrade) must serve it without the INIT every library insists on first, and
//! must ask the kernel to resend what the dead one read (`FUSE_NOTIFY_RESEND`). The
//! protocol of a read-only filesystem is a dozen messages.

pub mod abi;
mod channel;
mod init;
mod ops;
mod ratelimit;
mod session;

pub use init::Negotiated;
pub use session::{
    other_mounts, resume, set_read_ahead, spawn, unmount, MountOptions, ResumeError, Session,
    READ_AHEAD_KIB,
};
