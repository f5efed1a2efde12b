//! The `FUSE_INIT` handshake: which protocol version and features a connection uses. It
//! happens once per connection; a daemon taking over a kept connection reuses what was
//! agreed then (recorded in the journal) and never sees an INIT.

use super::abi::{self, init, Args, Out};
use super::channel::Channel;

/// Room for the largest request: a write of `max_write` bytes plus its headers (the kernel
/// refuses reads into anything smaller). Nothing is ever written to a read-only mount, but
/// the kernel sizes its check by `max_write`.
pub const MAX_WRITE: u32 = 128 * 1024;
/// The read buffer of each serving thread.
pub const BUFFER: usize = MAX_WRITE as usize + 4096;

/// What a connection's INIT settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Protocol minor version in use.
    pub minor: u32,
    /// What the kernel offered.
    pub offered: u64,
    /// What was accepted.
    pub flags: u64,
}

impl Negotiated {
    /// Whole files are read by the kernel from their backing files.
    pub fn passthrough(&self) -> bool {
        self.flags & init::PASSTHROUGH != 0
    }

    /// The kernel can queue again what a dead daemon read but never answered.
    pub fn resend(&self) -> bool {
        self.offered & init::HAS_RESEND != 0
    }
}

/// What the filesystem would like from the kernel.
pub struct Wanted {
    /// Symlink targets and listings never change (a pinned revision).
    pub pinned: bool,
    /// FUSE passthrough of whole files.
    pub passthrough: bool,
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The first message was not an INIT.
    #[error("the kernel's first FUSE message was opcode {0}, not INIT")]
    NotInit(u32),
    /// The kernel speaks a protocol this daemon does not.
    #[error("the kernel speaks FUSE {0}.{1}; lazyroot needs 7.{min} or newer", min = abi::MIN_MINOR)]
    Protocol(u32, u32),
    /// The message was cut short.
    #[error("a truncated FUSE INIT message")]
    Truncated,
}

/// Answers the INIT request in `args` (unique id `unique`) on `ch`.
pub fn answer(
    ch: &Channel,
    opcode: u32,
    unique: u64,
    args: &[u8],
    want: &Wanted,
) -> Result<Negotiated, InitError> {
    if opcode != abi::op::INIT {
        return Err(InitError::NotInit(opcode));
    }
    let mut a = Args::new(args);
    let (major, minor) = (
        a.u32().ok_or(InitError::Truncated)?,
        a.u32().ok_or(InitError::Truncated)?,
    );
    let max_readahead = a.u32().ok_or(InitError::Truncated)?;
    let mut offered = u64::from(a.u32().ok_or(InitError::Truncated)?);
    if offered & init::INIT_EXT != 0 {
        offered |= u64::from(a.u32().ok_or(InitError::Truncated)?) << 32;
    }
    if major != abi::KERNEL_MAJOR || minor < abi::MIN_MINOR {
        ch.reply(unique, -libc::EPROTO, &[]);
        return Err(InitError::Protocol(major, minor));
    }
    let mut wanted = init::ASYNC_READ
        | init::BIG_WRITES
        | init::DO_READDIRPLUS
        | init::READDIRPLUS_AUTO
        | init::PARALLEL_DIROPS
        | init::MAX_PAGES
        // The kernel then caches each inode's ACL (most have none) instead of asking for
        // `system.posix_acl_*` on every `ls -l`, and enforces stored ACLs.
        | init::POSIX_ACL
        | init::INIT_EXT;
    if want.pinned {
        // Symlink targets of a pinned revision never change: the kernel may keep them.
        wanted |= init::CACHE_SYMLINKS;
    }
    if want.passthrough {
        if offered & init::PASSTHROUGH != 0 {
            wanted |= init::PASSTHROUGH;
        } else {
            tracing::info!(
                "this kernel does not offer FUSE passthrough; reads go through the daemon"
            );
        }
    }
    let flags = wanted & offered;
    let minor = minor.min(abi::KERNEL_MINOR);
    let mut o = Out::default();
    o.u32(abi::KERNEL_MAJOR)
        .u32(minor)
        .u32(max_readahead)
        .u32(flags as u32)
        .u16(64) // max_background
        .u16(48) // congestion_threshold
        .u32(MAX_WRITE)
        .u32(1) // time_gran: nanoseconds
        // 256 pages: 1 MiB reads, which the read-ahead set after mounting asks for.
        .u16(256)
        .u16(0) // map_alignment
        .u32((flags >> 32) as u32)
        // max_stack_depth: a passthrough file may not sit on another stacked filesystem.
        .u32(u32::from(flags & init::PASSTHROUGH != 0))
        .zeros(24);
    ch.reply(unique, 0, &[&o.bytes]);
    Ok(Negotiated {
        minor,
        offered,
        flags,
    })
}
