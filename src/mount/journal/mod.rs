//! The journal of a mount: everything the kernel holds that a daemon taking the connection
//! over must mean the same way (inode numbers and their lookup counts, open file and
//! directory handles, the revision served, what INIT settled).
//!
//! Inode numbers and handles are handed out in order and cannot be derived again from the
//! content alone (two revisions may put different files at one path), so they are written
//! down before the kernel sees them: records are appended under the lock that changes the
//! state, and [`Journal::flush`] writes them out before each reply is sent. The journal
//! lives in a memfd whose descriptor the keeper holds next to the connection's, so it
//! outlives the daemon (a SIGKILL loses no completed write) and dies with the connection.

mod record;
mod replay;

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

pub use record::{DecodeError, FileRecord, Record};
pub use replay::{Restored, RestoredFile, RestoredNode};

/// A journal larger than this is refused when read back (it is compacted long before).
pub const MAX_JOURNAL: u64 = 1 << 30;

/// Numbers are reserved in blocks of this many: one record per block, not per number.
const RESERVE: u64 = 4096;

/// Why a kept journal could not be taken over.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading it failed.
    #[error("reading the journal: {0}")]
    Io(#[from] io::Error),
    /// It is larger than [`MAX_JOURNAL`].
    #[error("the journal holds {0} bytes, more than the {MAX_JOURNAL} accepted")]
    TooLarge(u64),
    /// It does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// It lacks the INIT record every journal starts with.
    #[error("the journal has no INIT record: not a lazyroot connection's")]
    NoInit,
}

struct Pending {
    bytes: Vec<u8>,
    /// Where the next flush writes.
    end: u64,
    inodes_below: u64,
    handles_below: u64,
}

/// An open journal, appended to by the mount and flushed by the session.
pub struct Journal {
    file: File,
    pending: Mutex<Pending>,
}

impl Journal {
    /// A new, empty journal (a new connection).
    pub fn create() -> io::Result<Journal> {
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let fd = memfd_create("lazyroot-journal", MFdFlags::MFD_CLOEXEC)?;
        Ok(Journal::with(File::from(fd), 0, 0, 0))
    }

    fn with(file: File, end: u64, inodes_below: u64, handles_below: u64) -> Journal {
        Journal {
            file,
            pending: Mutex::new(Pending {
                bytes: Vec::new(),
                end,
                inodes_below,
                handles_below,
            }),
        }
    }

    /// Takes over a kept journal: reads it back and goes on appending to it.
    pub fn open(fd: OwnedFd) -> Result<(Journal, Restored), JournalError> {
        let file = File::from(fd);
        let len = file.metadata()?.len();
        if len > MAX_JOURNAL {
            return Err(JournalError::TooLarge(len));
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        let records = Record::decode_all(&bytes)?;
        let restored = Restored::replay(&records).ok_or(JournalError::NoInit)?;
        let j = Journal::with(file, len, restored.next_ino, restored.next_fh);
        Ok((j, restored))
    }

    /// The memfd (for the keeper).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Queues `r`; written by the next [`flush`](Self::flush).
    pub fn append(&self, r: &Record) {
        let mut p = self.pending.lock().expect("journal");
        r.encode(&mut p.bytes);
    }

    /// Inode number `ino` is about to be handed out.
    pub fn note_inode(&self, ino: u64) {
        let mut p = self.pending.lock().expect("journal");
        if ino >= p.inodes_below {
            p.inodes_below = ino + RESERVE;
            let r = Record::InodesBelow(p.inodes_below);
            r.encode(&mut p.bytes);
        }
    }

    /// Handle `fh` is about to be handed out.
    pub fn note_handle(&self, fh: u64) {
        let mut p = self.pending.lock().expect("journal");
        if fh >= p.handles_below {
            p.handles_below = fh + RESERVE;
            let r = Record::HandlesBelow(p.handles_below);
            r.encode(&mut p.bytes);
        }
    }

    /// Writes out what was appended. Called before every reply, so the kernel never
    /// holds a number or handle the journal lacks.
    pub fn flush(&self) {
        let mut p = self.pending.lock().expect("journal");
        if p.bytes.is_empty() {
            return;
        }
        // One write of whole records: a daemon killed mid-call either wrote it or not.
        match self.file.write_all_at(&p.bytes, p.end) {
            Ok(()) => {
                p.end += p.bytes.len() as u64;
                p.bytes.clear();
            }
            // Kept for the next flush; only memory pressure fails a memfd write.
            Err(e) => tracing::error!("writing the mount's journal: {e}"),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.pending.lock().expect("journal").end
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount::fuse::Negotiated;
    use crate::mount::inodes::Key;

    #[test]
    fn what_was_flushed_is_read_back_by_the_next_daemon() {
        let j = Journal::create().unwrap();
        j.append(&Record::Init(Negotiated {
            minor: 41,
            offered: 0,
            flags: 0,
        }));
        j.note_inode(2);
        j.append(&Record::Node {
            ino: 2,
            path: b"/a".to_vec(),
            key: Key::Path(b"/a".to_vec()),
        });
        j.append(&Record::Hold { ino: 2, n: 1 });
        j.note_handle(1);
        j.append(&Record::File {
            fh: 1,
            ino: 2,
            file: FileRecord::Empty,
        });
        j.flush();
        j.append(&Record::Forget { ino: 2, n: 2 });
        // Not flushed: the next daemon does not see it (as after a SIGKILL here).
        let fd = j.fd().try_clone_to_owned().unwrap();
        let (j2, r) = Journal::open(fd).unwrap();
        assert_eq!(r.nodes.len(), 1);
        assert_eq!(r.nodes[0].lookups, 2);
        assert_eq!(r.files.len(), 1);
        assert!(r.next_ino >= 2 + RESERVE && r.next_fh > 1);
        j2.append(&Record::Forget { ino: 2, n: 2 });
        j2.flush();
        let (_, r) = Journal::open(j2.fd().try_clone_to_owned().unwrap()).unwrap();
        assert!(r.nodes.is_empty(), "forgotten by the second daemon");
        assert!(r.next_ino >= 2 + RESERVE, "numbers are never reused");
    }

    #[test]
    fn a_journal_without_init_is_refused() {
        let j = Journal::create().unwrap();
        j.append(&Record::Hold { ino: 3, n: 1 });
        j.flush();
        assert!(matches!(
            Journal::open(j.fd().try_clone_to_owned().unwrap()),
            Err(JournalError::NoInit)
        ));
    }
}
