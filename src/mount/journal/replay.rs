//! Reading a journal back: the state its records add up to.

use std::collections::BTreeMap;

use super::record::{FileRecord, Record};
use crate::cvmfs::hash::ContentHash;
use crate::mount::fuse::Negotiated;
use crate::mount::inodes::Key;

/// An inode the kernel holds references on.
#[derive(Debug, Clone)]
pub struct RestoredNode {
    /// Its number.
    pub ino: u64,
    /// The path it was first seen at.
    pub path: Vec<u8>,
    /// What makes it that inode.
    pub key: Key,
    /// References the kernel holds.
    pub lookups: u64,
}

/// An open file handle.
#[derive(Debug, Clone)]
pub struct RestoredFile {
    /// The handle.
    pub fh: u64,
    /// Its inode.
    pub ino: u64,
    /// What it reads.
    pub file: FileRecord,
    /// Its passthrough backing file, if the kernel reads it directly.
    pub backing: Option<u32>,
}

/// What a previous daemon left: enough to go on serving its connection.
#[derive(Debug, Clone)]
pub struct Restored {
    /// What INIT settled.
    pub init: Negotiated,
    /// The revision served last.
    pub revision: Option<(ContentHash, u64)>,
    /// Held inodes.
    pub nodes: Vec<RestoredNode>,
    /// The first inode number never handed out.
    pub next_ino: u64,
    /// Open file handles.
    pub files: Vec<RestoredFile>,
    /// Open directory handles: (handle, inode).
    pub dirs: Vec<(u64, u64)>,
    /// The first handle never handed out.
    pub next_fh: u64,
    /// Open handles by the request that opened them: (request, handle).
    pub requests: Vec<(u64, u64)>,
}

impl Restored {
    /// The state `records` add up to; `None` without an INIT record.
    pub fn replay(records: &[Record]) -> Option<Restored> {
        let mut init = None;
        let mut revision = None;
        let mut nodes: BTreeMap<u64, RestoredNode> = BTreeMap::new();
        let mut files: BTreeMap<u64, RestoredFile> = BTreeMap::new();
        let mut dirs: BTreeMap<u64, u64> = BTreeMap::new();
        let mut requests: BTreeMap<u64, u64> = BTreeMap::new();
        let (mut next_ino, mut next_fh) = (2, 1);
        for r in records {
            match r {
                Record::Init(n) => init = Some(*n),
                Record::Revision { root, size } => revision = Some((*root, *size)),
                Record::Node { ino, path, key } => {
                    next_ino = next_ino.max(ino + 1);
                    nodes
                        .entry(*ino)
                        .or_insert_with(|| RestoredNode {
                            ino: *ino,
                            path: path.clone(),
                            key: key.clone(),
                            lookups: 0,
                        })
                        .lookups += 1;
                }
                Record::Hold { ino, n } => {
                    if let Some(node) = nodes.get_mut(ino) {
                        node.lookups += n;
                    }
                }
                Record::Forget { ino, n } => {
                    if let Some(node) = nodes.get_mut(ino) {
                        node.lookups = node.lookups.saturating_sub(*n);
                        if node.lookups == 0 {
                            nodes.remove(ino);
                        }
                    }
                }
                Record::InodesBelow(n) => next_ino = next_ino.max(*n),
                Record::HandlesBelow(n) => next_fh = next_fh.max(*n),
                Record::File { fh, ino, file } => {
                    next_fh = next_fh.max(fh + 1);
                    files.insert(
                        *fh,
                        RestoredFile {
                            fh: *fh,
                            ino: *ino,
                            file: file.clone(),
                            backing: None,
                        },
                    );
                }
                Record::Dir { fh, ino } => {
                    next_fh = next_fh.max(fh + 1);
                    dirs.insert(*fh, *ino);
                }
                Record::Backing { fh, id } => {
                    if let Some(f) = files.get_mut(fh) {
                        f.backing = Some(*id);
                    }
                }
                Record::Release(fh) => {
                    files.remove(fh);
                    dirs.remove(fh);
                    requests.remove(fh);
                }
                Record::Request { fh, request } => {
                    requests.insert(*fh, *request);
                }
                Record::Snapshot { .. } => {
                    // The snapshot's own records rebuild everything from here.
                    nodes.clear();
                    files.clear();
                    dirs.clear();
                    requests.clear();
                }
            }
        }
        Some(Restored {
            init: init?,
            revision,
            nodes: nodes.into_values().collect(),
            next_ino,
            files: files.into_values().collect(),
            dirs: dirs.into_iter().collect(),
            next_fh,
            requests: requests.into_iter().map(|(fh, r)| (r, fh)).collect(),
        })
    }
}
