//! The journal's records and their encoding: a length-prefixed frame per record
//! (`u32` length, `u8` tag, fields in little-endian). A private format, so a hand-written
//! encoder of a few fixed shapes rather than a serialization library: paths are raw bytes
//! and must round-trip exactly, and a daemon of the next version must still read it.

use crate::cvmfs::catalog::Chunk;
use crate::cvmfs::hash::{ContentHash, HashAlgo, DIGEST_LEN};
use crate::mount::fuse::Negotiated;
use crate::mount::inodes::Key;

/// The largest record accepted when reading a journal back (a chunk list of a 64 GiB file
/// in 1 MiB chunks is 3.3 MB).
pub const MAX_RECORD: usize = 16 << 20;

/// What an open file handle reads, as far as it must be remembered to go on reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRecord {
    /// No bytes.
    Empty,
    /// One object, verified on open.
    Whole {
        /// Its content hash.
        hash: ContentHash,
        /// Uncompressed size.
        size: u64,
        /// Stored compressed.
        compressed: bool,
    },
    /// A chunked file: its chunk list, as the catalog gave it at open.
    Chunked {
        /// Chunks stored compressed.
        compressed: bool,
        /// In offset order.
        chunks: Vec<Chunk>,
    },
}

/// One change to what the kernel holds of a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The connection's INIT (first record of every journal).
    Init(Negotiated),
    /// The revision served (a new one each time an unpinned mount moves on).
    Revision {
        /// Root catalog hash.
        root: ContentHash,
        /// Its size.
        size: u64,
    },
    /// Inode `ino` got its first kernel reference.
    Node {
        /// The number.
        ino: u64,
        /// The path it was first seen at.
        path: Vec<u8>,
        /// What makes it that inode.
        key: Key,
    },
    /// `n` more references on `ino`.
    Hold {
        /// The number.
        ino: u64,
        /// References taken.
        n: u64,
    },
    /// The kernel forgot `n` references on `ino`.
    Forget {
        /// The number.
        ino: u64,
        /// References given back.
        n: u64,
    },
    /// Inode numbers below this may have been handed out: never hand them out again.
    InodesBelow(u64),
    /// Handles below this may have been handed out.
    HandlesBelow(u64),
    /// File handle `fh` opened on `ino`.
    File {
        /// The handle.
        fh: u64,
        /// The file's inode.
        ino: u64,
        /// What it reads.
        file: FileRecord,
    },
    /// Directory handle `fh` opened on `ino`.
    Dir {
        /// The handle.
        fh: u64,
        /// The directory's inode.
        ino: u64,
    },
    /// File handle `fh` reads through passthrough backing file `id`.
    Backing {
        /// The handle.
        fh: u64,
        /// The connection's backing file id.
        id: u32,
    },
    /// Handle `fh` (file or directory) was released.
    Release(u64),
    /// Handle `fh` was opened for the kernel's request `request` (its unique id). Should
    /// the daemon die before the reply, the kernel sends the request again (with the
    /// resend bit): the next daemon answers it with this handle rather than a new one, which
    /// nobody would ever release.
    Request {
        /// The handle.
        fh: u64,
        /// The request's unique id (without the resend bit).
        request: u64,
    },
    /// A compacted copy of the whole state follows, `len` bytes of records: everything
    /// before it is void. One cut short (a daemon killed while compacting) is ignored, and
    /// so is everything after it.
    Snapshot {
        /// Bytes of the records that make up the snapshot.
        len: u64,
    },
}

/// Why a journal could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A record ends before its fields do, or its length is out of bounds.
    #[error("journal record {0} is truncated or oversized")]
    Truncated(usize),
    /// A tag this version does not know.
    #[error("journal record {index} has unknown tag {tag}")]
    UnknownTag {
        /// Which record.
        index: usize,
        /// Its tag.
        tag: u8,
    },
    /// A hash algorithm this version does not know.
    #[error("journal record {0} names an unknown hash algorithm")]
    BadHash(usize),
}

struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn hash(&mut self, h: &ContentHash) {
        self.u8(h.algo.flag_bits() as u8);
        self.0.extend_from_slice(&h.digest);
    }
}

struct Dec<'a> {
    b: &'a [u8],
    index: usize,
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError::Truncated(self.index));
        }
        let (h, r) = self.b.split_at(n);
        self.b = r;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn hash(&mut self) -> Result<ContentHash, DecodeError> {
        let algo = HashAlgo::from_flag_bits(u32::from(self.u8()?))
            .ok_or(DecodeError::BadHash(self.index))?;
        let digest: [u8; DIGEST_LEN] = self.take(DIGEST_LEN)?.try_into().expect("digest");
        Ok(ContentHash::new(algo, digest))
    }
}

impl Record {
    /// Appends this record's frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut e = Enc(Vec::with_capacity(64));
        match self {
            Record::Init(n) => {
                e.u8(1);
                e.u32(n.minor);
                e.u64(n.offered);
                e.u64(n.flags);
            }
            Record::Revision { root, size } => {
                e.u8(2);
                e.hash(root);
                e.u64(*size);
            }
            Record::Node { ino, path, key } => {
                e.u8(3);
                e.u64(*ino);
                e.bytes(path);
                match key {
                    Key::Path(p) => {
                        e.u8(0);
                        e.bytes(p);
                    }
                    Key::File(p, h) => {
                        e.u8(1);
                        e.bytes(p);
                        e.hash(h);
                    }
                    Key::Link(h, g) => {
                        e.u8(2);
                        e.hash(h);
                        e.u32(*g);
                    }
                }
            }
            Record::Hold { ino, n } => {
                e.u8(4);
                e.u64(*ino);
                e.u64(*n);
            }
            Record::Forget { ino, n } => {
                e.u8(5);
                e.u64(*ino);
                e.u64(*n);
            }
            Record::InodesBelow(n) => {
                e.u8(6);
                e.u64(*n);
            }
            Record::HandlesBelow(n) => {
                e.u8(7);
                e.u64(*n);
            }
            Record::File { fh, ino, file } => {
                e.u8(8);
                e.u64(*fh);
                e.u64(*ino);
                match file {
                    FileRecord::Empty => e.u8(0),
                    FileRecord::Whole {
                        hash,
                        size,
                        compressed,
                    } => {
                        e.u8(1);
                        e.hash(hash);
                        e.u64(*size);
                        e.u8(u8::from(*compressed));
                    }
                    FileRecord::Chunked { compressed, chunks } => {
                        e.u8(2);
                        e.u8(u8::from(*compressed));
                        e.u32(chunks.len() as u32);
                        for c in chunks {
                            e.u64(c.offset);
                            e.u64(c.size);
                            e.hash(&c.hash);
                        }
                    }
                }
            }
            Record::Dir { fh, ino } => {
                e.u8(9);
                e.u64(*fh);
                e.u64(*ino);
            }
            Record::Backing { fh, id } => {
                e.u8(10);
                e.u64(*fh);
                e.u32(*id);
            }
            Record::Release(fh) => {
                e.u8(11);
                e.u64(*fh);
            }
            Record::Snapshot { len } => {
                e.u8(12);
                e.u64(*len);
            }
            Record::Request { fh, request } => {
                e.u8(13);
                e.u64(*fh);
                e.u64(*request);
            }
        }
        out.extend_from_slice(&(e.0.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.0);
    }

    /// Every record of a journal, in order. A frame cut short at the very end (a write the
    /// kernel never completed) ends the journal there; anything else malformed is an error.
    pub fn decode_all(mut b: &[u8]) -> Result<Vec<Record>, DecodeError> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let index = out.len();
            if b.len() < 4 {
                break;
            }
            let len = u32::from_le_bytes(b[..4].try_into().expect("4")) as usize;
            if len == 0 || len > MAX_RECORD {
                return Err(DecodeError::Truncated(index));
            }
            if b.len() < 4 + len {
                break;
            }
            let mut d = Dec {
                b: &b[4..4 + len],
                index,
            };
            let r = Record::decode(&mut d)?;
            if !d.b.is_empty() {
                return Err(DecodeError::Truncated(index));
            }
            b = &b[4 + len..];
            if let Record::Snapshot { len } = r {
                if (b.len() as u64) < len {
                    // A compaction that never finished: the state before it stands.
                    break;
                }
            }
            out.push(r);
        }
        Ok(out)
    }

    fn decode(d: &mut Dec<'_>) -> Result<Record, DecodeError> {
        let tag = d.u8()?;
        Ok(match tag {
            1 => Record::Init(Negotiated {
                minor: d.u32()?,
                offered: d.u64()?,
                flags: d.u64()?,
            }),
            2 => Record::Revision {
                root: d.hash()?,
                size: d.u64()?,
            },
            3 => {
                let ino = d.u64()?;
                let path = d.bytes()?;
                let key = match d.u8()? {
                    0 => Key::Path(d.bytes()?),
                    1 => Key::File(d.bytes()?, d.hash()?),
                    2 => Key::Link(d.hash()?, d.u32()?),
                    _ => return Err(DecodeError::Truncated(d.index)),
                };
                Record::Node { ino, path, key }
            }
            4 => Record::Hold {
                ino: d.u64()?,
                n: d.u64()?,
            },
            5 => Record::Forget {
                ino: d.u64()?,
                n: d.u64()?,
            },
            6 => Record::InodesBelow(d.u64()?),
            7 => Record::HandlesBelow(d.u64()?),
            8 => {
                let fh = d.u64()?;
                let ino = d.u64()?;
                let file = match d.u8()? {
                    0 => FileRecord::Empty,
                    1 => FileRecord::Whole {
                        hash: d.hash()?,
                        size: d.u64()?,
                        compressed: d.u8()? != 0,
                    },
                    2 => {
                        let compressed = d.u8()? != 0;
                        let n = d.u32()? as usize;
                        // Bounded by the frame: each chunk takes 37 bytes of it.
                        if n > d.b.len() / 37 {
                            return Err(DecodeError::Truncated(d.index));
                        }
                        let mut chunks = Vec::with_capacity(n);
                        for _ in 0..n {
                            chunks.push(Chunk {
                                offset: d.u64()?,
                                size: d.u64()?,
                                hash: d.hash()?,
                            });
                        }
                        FileRecord::Chunked { compressed, chunks }
                    }
                    _ => return Err(DecodeError::Truncated(d.index)),
                };
                Record::File { fh, ino, file }
            }
            9 => Record::Dir {
                fh: d.u64()?,
                ino: d.u64()?,
            },
            10 => Record::Backing {
                fh: d.u64()?,
                id: d.u32()?,
            },
            11 => Record::Release(d.u64()?),
            12 => Record::Snapshot { len: d.u64()? },
            13 => Record::Request {
                fh: d.u64()?,
                request: d.u64()?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    index: d.index,
                    tag,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Record> {
        let h = HashAlgo::Sha1.digest(b"x");
        let s = HashAlgo::Shake128.digest(b"y");
        vec![
            Record::Init(Negotiated {
                minor: 41,
                offered: 1 << 39 | 5,
                flags: 3,
            }),
            Record::Revision { root: h, size: 9 },
            Record::Node {
                ino: 2,
                path: b"/a\xff\0b".to_vec(),
                key: Key::Path(b"/a\xff\0b".to_vec()),
            },
            Record::Node {
                ino: 3,
                path: b"/f".to_vec(),
                key: Key::File(b"/f".to_vec(), s),
            },
            Record::Node {
                ino: 4,
                path: b"/l".to_vec(),
                key: Key::Link(h, 7),
            },
            Record::Hold { ino: 3, n: 1 },
            Record::Forget { ino: 3, n: 2 },
            Record::InodesBelow(4096),
            Record::HandlesBelow(8192),
            Record::File {
                fh: 1,
                ino: 3,
                file: FileRecord::Whole {
                    hash: s,
                    size: 10,
                    compressed: true,
                },
            },
            Record::File {
                fh: 2,
                ino: 3,
                file: FileRecord::Chunked {
                    compressed: false,
                    chunks: vec![
                        Chunk {
                            offset: 0,
                            size: 5,
                            hash: h,
                        },
                        Chunk {
                            offset: 5,
                            size: 5,
                            hash: s,
                        },
                    ],
                },
            },
            Record::File {
                fh: 3,
                ino: 3,
                file: FileRecord::Empty,
            },
            Record::Dir { fh: 4, ino: 1 },
            Record::Backing { fh: 1, id: 12 },
            Record::Release(4),
            Record::Request { fh: 1, request: 6 },
            Record::Snapshot { len: 0 },
        ]
    }

    #[test]
    fn every_record_round_trips() {
        let mut b = Vec::new();
        for r in all() {
            r.encode(&mut b);
        }
        assert_eq!(Record::decode_all(&b).unwrap(), all());
    }

    #[test]
    fn a_cut_tail_ends_the_journal_and_garbage_is_refused() {
        let mut b = Vec::new();
        for r in all() {
            r.encode(&mut b);
        }
        let full = Record::decode_all(&b).unwrap().len();
        let cut = Record::decode_all(&b[..b.len() - 3]).unwrap();
        assert_eq!(cut.len(), full - 1, "the last, cut record is dropped");
        let mut bad = b.clone();
        bad[4] = 99; // the first record's tag
        assert!(matches!(
            Record::decode_all(&bad),
            Err(DecodeError::UnknownTag { index: 0, tag: 99 })
        ));
        let mut huge = Vec::new();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 16]);
        assert!(Record::decode_all(&huge).is_err(), "oversized length");
        // A chunk count larger than the frame can hold is refused before allocating.
        let mut lie = Vec::new();
        let body = [
            8u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 255, 255, 255, 255,
        ];
        lie.extend_from_slice(&(body.len() as u32).to_le_bytes());
        lie.extend_from_slice(&body);
        assert!(Record::decode_all(&lie).is_err());
    }
}
