//! A download sink that writes into a cache transaction file: inflating zlib objects on the
//! fly (objects are cached decompressed, ready for `pread`) or copying raw ones, never
//! accepting more than the size the catalog promised.

use std::fs::File;
use std::io::{self, Seek, Write};

use flate2::write::ZlibDecoder;
use sha2::{Digest, Sha256};

use crate::remote::download::Sink;

/// A file (a duplicate descriptor of the sink's) that refuses to grow past `limit` bytes.
struct Limited {
    file: File,
    written: u64,
    limit: u64,
    /// Of the bytes written: the cache checks an object against it on first use.
    digest: Sha256,
}

impl Write for Limited {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            let msg = format!(
                "object decompresses to more than the {} bytes its catalog states",
                self.limit
            );
            return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
        }
        let n = self.file.write(buf)?;
        self.digest.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

enum Out {
    Inflate(ZlibDecoder<Limited>),
    Raw(Limited),
}

/// The [`Sink`] a cache download writes into: a transaction file, inflated on the fly for
/// zlib objects, copied for raw ones; more than `limit` bytes after decompression fail with
/// `InvalidData` (corrupt content, the server's fault).
pub struct ObjectSink {
    file: File,
    limit: u64,
    compressed: bool,
    out: Option<Out>,
}

impl ObjectSink {
    /// A sink into `file` accepting at most `limit` decompressed bytes; `compressed` says
    /// whether the bytes arriving are a zlib stream to inflate.
    pub fn new(file: File, limit: u64, compressed: bool) -> io::Result<Self> {
        let mut s = ObjectSink {
            file,
            limit,
            compressed,
            out: None,
        };
        s.out = Some(s.fresh()?);
        Ok(s)
    }

    fn fresh(&self) -> io::Result<Out> {
        let l = Limited {
            file: self.file.try_clone()?,
            written: 0,
            limit: self.limit,
            digest: Sha256::new(),
        };
        Ok(if self.compressed {
            Out::Inflate(ZlibDecoder::new(l))
        } else {
            Out::Raw(l)
        })
    }

    /// Finishes the stream; returns the file, the decompressed size and the SHA-256 of the
    /// decompressed bytes.
    pub fn finish(mut self) -> io::Result<(File, u64, [u8; 32])> {
        let l = match self.out.take().expect("sink in use") {
            Out::Inflate(d) => d.finish()?,
            Out::Raw(l) => l,
        };
        Ok((self.file, l.written, l.digest.finalize().into()))
    }
}

impl Sink for ObjectSink {
    fn reset(&mut self) -> io::Result<()> {
        // Dropping the old decoder may flush leftovers into the file; the truncation below
        // discards them.
        drop(self.out.take());
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.out = Some(self.fresh()?);
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self.out.as_mut().expect("sink in use") {
            // The decoder takes nothing after the end of the zlib stream (`WriteZero`):
            // bytes there are the server's corruption, not a local failure.
            Out::Inflate(d) => d.write_all(data).map_err(|e| match e.kind() {
                io::ErrorKind::WriteZero => io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bytes after the end of the object's zlib stream",
                ),
                _ => e,
            }),
            Out::Raw(l) => l.write_all(data),
        }
    }
}
