//! Objects: immutable zlib streams (RFC 1950) named by the hash of their compressed bytes,
//! stored as `data/XX/<rest-of-hex><suffix>`.

use std::io::{self, Read, Write};

use flate2::{read::ZlibDecoder, write::ZlibEncoder, Compression};

use crate::cvmfs::hash::{ContentHash, HashAlgo, Hasher};

/// What an object holds; selects the one-letter suffix of its name (`crypto/hash.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// A whole regular file.
    File,
    /// `C`: a catalog.
    Catalog,
    /// `P`: a chunk of a chunked file.
    Chunk,
    /// `H`: the history (tags) database.
    History,
    /// `X`: the repository certificate (PEM).
    Certificate,
    /// `M`: repository meta-info JSON.
    MetaInfo,
}

impl ObjectKind {
    /// The letter appended to the object's name (empty for a whole file).
    pub fn suffix(self) -> &'static str {
        match self {
            ObjectKind::File => "",
            ObjectKind::Catalog => "C",
            ObjectKind::Chunk => "P",
            ObjectKind::History => "H",
            ObjectKind::Certificate => "X",
            ObjectKind::MetaInfo => "M",
        }
    }
}

/// The name of one object: its hash and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName {
    /// Content hash of the object's compressed bytes.
    pub hash: ContentHash,
    /// What it holds; selects the name's suffix.
    pub kind: ObjectKind,
}

impl ObjectName {
    /// Names the object of `kind` whose compressed bytes hash to `hash`.
    pub fn new(hash: ContentHash, kind: ObjectKind) -> Self {
        ObjectName { hash, kind }
    }

    /// Path relative to the repository root, e.g. `data/d8/5ab7…48` or `data/6e/d3…9aC`.
    pub fn path(&self) -> String {
        let hex = self.hash.to_hex();
        format!("data/{}/{}{}", &hex[..2], &hex[2..], self.kind.suffix())
    }
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path())
    }
}

/// zlib's default level, as `deflateInit(Z_DEFAULT_COMPRESSION)` upstream.
pub const DEFAULT_LEVEL: u32 = 6;

/// The process-wide compression level of new objects. Any level is a valid zlib stream to
/// every reader; lower levels publish faster and make larger objects.
static LEVEL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(DEFAULT_LEVEL);

/// Sets the zlib level (0-9; larger values mean 9) of every object compressed from now on,
/// in every thread.
pub fn set_compression_level(level: u32) {
    LEVEL.store(level.min(9), std::sync::atomic::Ordering::Relaxed);
}

fn level() -> Compression {
    Compression::new(LEVEL.load(std::sync::atomic::Ordering::Relaxed))
}

thread_local! {
    /// One deflate state per thread, reset between objects: allocating and zeroing a fresh
    /// state for each of thousands of small files costs more than compressing them.
    static DEFLATE: std::cell::RefCell<(Compression, flate2::Compress)> =
        std::cell::RefCell::new((level(), flate2::Compress::new(level(), true)));
}

/// Compresses at the configured level (see [`set_compression_level`]).
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    compress_into(data, &mut out);
    out
}

/// Compresses `data` into `out` (cleared first) in one call, reusing this thread's deflate
/// state. One call for the whole input keeps the output a function of the input alone.
pub fn compress_into(data: &[u8], out: &mut Vec<u8>) {
    DEFLATE.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.0 != level() {
            *cell = (level(), flate2::Compress::new(level(), true));
        }
        let z = &mut cell.1;
        z.reset();
        out.clear();
        // deflateBound: stored blocks never grow data by more than a few bytes per 16 KiB.
        out.reserve(data.len() + data.len() / 1024 + 64);
        loop {
            let consumed = z.total_in() as usize;
            let status = z
                .compress_vec(&data[consumed..], out, flate2::FlushCompress::Finish)
                .expect("deflate into memory cannot fail");
            if status == flate2::Status::StreamEnd {
                return;
            }
            out.reserve(out.capacity().max(4096));
        }
    })
}

/// Compresses `data` and returns the compressed bytes and their content hash.
pub fn compress_and_hash(algo: HashAlgo, data: &[u8]) -> (Vec<u8>, ContentHash) {
    let compressed = compress(data);
    let hash = algo.digest(&compressed);
    (compressed, hash)
}

/// Why an object's bytes were refused.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The bytes do not hash to the object's name.
    #[error("object {name}: hash mismatch (content hashes to {actual}); the copy is corrupt or was tampered with")]
    HashMismatch {
        /// The object's path.
        name: String,
        /// Hex hash the bytes actually have.
        actual: String,
    },
    /// Inflating gives more bytes than allowed.
    #[error("object {name}: decompresses to more than the expected {limit} bytes")]
    TooLarge {
        /// The object's path, or what was being inflated.
        name: String,
        /// The most bytes allowed.
        limit: u64,
    },
    /// The content's size differs from the one the signed metadata gives.
    #[error("object {name}: decompresses to {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The object's path.
        name: String,
        /// Size from the metadata, in bytes.
        expected: u64,
        /// Size of the content, in bytes.
        actual: u64,
    },
    /// Not a valid zlib stream.
    #[error("object {name}: not a valid zlib stream: {source}")]
    Corrupt {
        /// The object's path, or what was being inflated.
        name: String,
        /// The decoder's error.
        source: io::Error,
    },
}

/// Verifies `compressed` against `name` and inflates it, refusing to produce more than
/// `limit` bytes (sizes come from signed metadata; an attacker's zlib bomb stops here).
pub fn open_verified(
    name: &ObjectName,
    compressed: &[u8],
    limit: u64,
) -> Result<Vec<u8>, ObjectError> {
    let actual = name.hash.algo.digest(compressed);
    if actual != name.hash {
        return Err(ObjectError::HashMismatch {
            name: name.path(),
            actual: actual.to_hex(),
        });
    }
    inflate_bounded(&name.path(), compressed, limit)
}

/// Inflates a zlib stream, failing once more than `limit` bytes come out.
pub fn inflate_bounded(what: &str, compressed: &[u8], limit: u64) -> Result<Vec<u8>, ObjectError> {
    let mut out = Vec::with_capacity(limit.min(compressed.len() as u64 * 4).min(64 << 20) as usize);
    let mut dec = ZlibDecoder::new(compressed).take(limit.saturating_add(1));
    dec.read_to_end(&mut out)
        .map_err(|source| ObjectError::Corrupt {
            name: what.to_string(),
            source,
        })?;
    if out.len() as u64 > limit {
        return Err(ObjectError::TooLarge {
            name: what.to_string(),
            limit,
        });
    }
    Ok(out)
}

/// A writer that compresses what it is given and hashes the compressed stream, so a file
/// of any size becomes an object in one pass with bounded memory.
pub struct CompressingWriter<W: Write> {
    enc: ZlibEncoder<HashingWriter<W>>,
}

impl<W: Write> CompressingWriter<W> {
    /// Starts an object written compressed into `inner` and hashed with `algo`, at the configured
    /// compression level.
    pub fn new(algo: HashAlgo, inner: W) -> Self {
        CompressingWriter {
            enc: ZlibEncoder::new(
                HashingWriter {
                    inner,
                    hasher: algo.hasher(),
                    written: 0,
                },
                level(),
            ),
        }
    }

    /// Finishes the stream; returns the inner writer, the hash and the compressed size.
    pub fn finish(self) -> io::Result<(W, ContentHash, u64)> {
        let hw = self.enc.finish()?;
        Ok((hw.inner, hw.hasher.finish(), hw.written))
    }
}

impl<W: Write> Write for CompressingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.enc.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.enc.flush()
    }
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Hasher,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_suffixes() {
        let h = ContentHash::parse("d85ab7e835750785b0535d4fbba7d59e921b1f48").unwrap();
        let cases = [
            (
                ObjectKind::File,
                "data/d8/5ab7e835750785b0535d4fbba7d59e921b1f48",
            ),
            (
                ObjectKind::Catalog,
                "data/d8/5ab7e835750785b0535d4fbba7d59e921b1f48C",
            ),
            (
                ObjectKind::Chunk,
                "data/d8/5ab7e835750785b0535d4fbba7d59e921b1f48P",
            ),
            (
                ObjectKind::History,
                "data/d8/5ab7e835750785b0535d4fbba7d59e921b1f48H",
            ),
            (
                ObjectKind::Certificate,
                "data/d8/5ab7e835750785b0535d4fbba7d59e921b1f48X",
            ),
            (
                ObjectKind::MetaInfo,
                "data/d8/5ab7e835750785b0535d4fbba7d59e921b1f48M",
            ),
        ];
        for (kind, want) in cases {
            assert_eq!(ObjectName::new(h, kind).path(), want);
        }
        let s = ContentHash::parse("d85ab7e835750785b0535d4fbba7d59e921b1f48-shake128").unwrap();
        assert_eq!(
            ObjectName::new(s, ObjectKind::Catalog).path(),
            "data/d8/5ab7e835750785b0535d4fbba7d59e921b1f48-shake128C"
        );
    }

    #[test]
    fn zlib_stream_format_and_round_trip() {
        let (c, h) = compress_and_hash(HashAlgo::Sha1, b"foo\n");
        assert_eq!(&c[..2], &[0x78, 0x9c], "RFC 1950 header, default level");
        let name = ObjectName::new(h, ObjectKind::File);
        assert_eq!(open_verified(&name, &c, 4).unwrap(), b"foo\n");
        assert!(matches!(
            open_verified(&name, &c, 3),
            Err(ObjectError::TooLarge { .. })
        ));
        let mut bad = c.clone();
        bad[3] ^= 1;
        assert!(matches!(
            open_verified(&name, &bad, 4),
            Err(ObjectError::HashMismatch { .. })
        ));
    }

    #[test]
    fn streaming_writer_matches_one_shot() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = CompressingWriter::new(HashAlgo::Shake128, Vec::new());
        for part in data.chunks(7777) {
            w.write_all(part).unwrap();
        }
        let (out, h, n) = w.finish().unwrap();
        assert_eq!((h, n), (HashAlgo::Shake128.digest(&out), out.len() as u64));
        assert_eq!(inflate_bounded("t", &out, data.len() as u64).unwrap(), data);
        // One-shot compression is a function of the input alone, whatever ran before.
        let (c1, h1) = compress_and_hash(HashAlgo::Shake128, &data);
        compress(b"something else entirely");
        let (c2, h2) = compress_and_hash(HashAlgo::Shake128, &data);
        assert_eq!((c1, h1), (c2, h2));
    }
}
