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

/// The first page holds the header: a magic and where the records start (moved forward
/// by each compaction; what lies before is given back to the kernel).
const HEADER: u64 = 4096;
const MAGIC: &[u8; 8] = b"LZRJRNL1";

/// A journal is compacted once its records take more than this, and four times what the
/// last compaction wrote.
const COMPACT_AT: u64 = 8 << 20;

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
    /// Its header is not a lazyroot journal's (or of a version this one cannot read).
    #[error("the journal's header is not a lazyroot journal's")]
    BadHeader,
}

struct Pending {
    bytes: Vec<u8>,
    /// Where the records start (after the header; moved by compaction).
    start: u64,
    /// Where the next flush writes.
    end: u64,
    /// How many bytes the last compaction wrote.
    compacted: u64,
    inodes_below: u64,
    handles_below: u64,
}

impl Pending {
    /// Past the size where compacting pays.
    fn over(&self) -> bool {
        let used = self.end - self.start;
        used > COMPACT_AT && used > 4 * self.compacted
    }
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
        let file = File::from(fd);
        write_header(&file, HEADER)?;
        Ok(Journal::with(file, HEADER, HEADER, 0, 0))
    }

    fn with(file: File, start: u64, end: u64, inodes_below: u64, handles_below: u64) -> Journal {
        Journal {
            file,
            pending: Mutex::new(Pending {
                bytes: Vec::new(),
                start,
                end,
                compacted: 0,
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
        let mut head = [0u8; 16];
        file.read_exact_at(&mut head, 0)
            .map_err(|_| JournalError::BadHeader)?;
        let start = u64::from_le_bytes(head[8..16].try_into().expect("8"));
        if &head[..8] != MAGIC || start < HEADER || start > len {
            return Err(JournalError::BadHeader);
        }
        let mut bytes = vec![0u8; (len - start) as usize];
        file.read_exact_at(&mut bytes, start)?;
        let records = Record::decode_all(&bytes)?;
        let restored = Restored::replay(&records).ok_or(JournalError::NoInit)?;
        let j = Journal::with(file, start, len, restored.next_ino, restored.next_fh);
        Ok((j, restored))
    }

    /// Whether the journal has grown enough to be worth compacting.
    pub fn wants_compaction(&self) -> bool {
        self.pending.lock().expect("journal").over()
    }

    /// Replaces everything written with `state` (the records that rebuild what the kernel
    /// holds now), written after the current end; the header then points at it, and the
    /// old records are given back (a hole punched in the memfd). The caller holds whatever
    /// keeps others from appending meanwhile. A daemon killed half-way leaves the old
    /// records in force (the snapshot, cut short, is ignored).
    pub fn compact(&self, state: &[Record]) -> io::Result<()> {
        let mut p = self.pending.lock().expect("journal");
        if !p.bytes.is_empty() {
            self.file.write_all_at(&p.bytes, p.end)?;
            p.end += p.bytes.len() as u64;
            p.bytes.clear();
        }
        let mut body = Vec::new();
        for r in state {
            r.encode(&mut body);
        }
        let mut out = Vec::with_capacity(body.len() + 16);
        Record::Snapshot {
            len: body.len() as u64,
        }
        .encode(&mut out);
        out.extend_from_slice(&body);
        let at = p.end;
        self.file.write_all_at(&out, at)?;
        p.end += out.len() as u64;
        write_header(&self.file, at)?;
        let old = p.start;
        p.start = at;
        p.compacted = out.len() as u64;
        // Whole pages only; what stays of the last page is never read again.
        let hole_end = at & !4095;
        if hole_end > old {
            use nix::fcntl::{fallocate, FallocateFlags};
            let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
            if let Err(e) = fallocate(&self.file, flags, old as i64, (hole_end - old) as i64) {
                tracing::warn!("giving the journal's old records back: {e}");
            }
        }
        tracing::info!(
            "compacted the mount's journal: {} records, {} KiB (was {} KiB)",
            state.len(),
            out.len() >> 10,
            (at - old) >> 10
        );
        Ok(())
    }

    /// Bytes of records in force (from the start the header names to the end).
    pub fn used(&self) -> u64 {
        let p = self.pending.lock().expect("journal");
        p.end - p.start
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
    /// holds a number or handle the journal lacks. True once it is worth compacting.
    pub fn flush(&self) -> bool {
        let mut p = self.pending.lock().expect("journal");
        if p.bytes.is_empty() {
            return false;
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
        p.over()
    }
}

/// Points the header at `start`: one write of 16 bytes, whole or not at all.
fn write_header(file: &File, start: u64) -> io::Result<()> {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&start.to_le_bytes());
    file.write_all_at(&h, 0)
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
    fn a_compacted_journal_reads_back_the_same_state_and_gives_memory_back() {
        let j = Journal::create().unwrap();
        let init = Record::Init(Negotiated {
            minor: 41,
            offered: 0,
            flags: 0,
        });
        j.append(&init);
        let node = Record::Node {
            ino: 2,
            path: b"/a".to_vec(),
            key: Key::Path(b"/a".to_vec()),
        };
        j.append(&node);
        // Churn: many holds and forgets of another inode.
        for _ in 0..100_000 {
            j.append(&Record::Node {
                ino: 3,
                path: b"/b".to_vec(),
                key: Key::Path(b"/b".to_vec()),
            });
            j.append(&Record::Forget { ino: 3, n: 1 });
        }
        j.flush();
        let before = j.used();
        let state = vec![init.clone(), node.clone(), Record::Hold { ino: 2, n: 4 }];
        j.compact(&state).unwrap();
        assert!(j.used() < 200, "{} bytes in force", j.used());
        j.append(&Record::Forget { ino: 2, n: 1 });
        j.flush();
        let fd = j.fd().try_clone_to_owned().unwrap();
        let allocated = nix::sys::stat::fstat(&fd).unwrap().st_blocks as u64 * 512;
        assert!(
            allocated < before / 4,
            "{allocated} bytes still allocated of {before}"
        );
        let (_, r) = Journal::open(fd).unwrap();
        assert_eq!(
            r.nodes.len(),
            1,
            "inode 3 was forgotten before the snapshot"
        );
        assert_eq!((r.nodes[0].ino, r.nodes[0].lookups), (2, 4));
    }

    #[test]
    fn a_compaction_cut_short_leaves_the_old_records_in_force() {
        let j = Journal::create().unwrap();
        j.append(&Record::Init(Negotiated {
            minor: 41,
            offered: 0,
            flags: 0,
        }));
        j.append(&Record::Node {
            ino: 2,
            path: b"/a".to_vec(),
            key: Key::Path(b"/a".to_vec()),
        });
        j.flush();
        // What a daemon killed after writing the snapshot's head (and not its body, nor
        // the header) leaves.
        let mut head = Vec::new();
        Record::Snapshot { len: 1000 }.encode(&mut head);
        let end = j.file.metadata().unwrap().len();
        j.file.write_all_at(&head, end).unwrap();
        let (_, r) = Journal::open(j.fd().try_clone_to_owned().unwrap()).unwrap();
        assert_eq!(r.nodes.len(), 1);
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
