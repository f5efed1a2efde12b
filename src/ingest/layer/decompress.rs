//! A layer's bytes as its uncompressed tar stream: gzip (any number of members, as Go's
//! reader takes them), zstd, or none; counted on both sides so that a decompression bomb
//! is stopped after a bounded amount of work, and hashed for the diff_id check.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::errors::Problem;

/// How a layer's tar stream is compressed: the one type the image documents name
/// ([`LayerCompression::of`] a descriptor) and the decompressor takes.
pub use crate::ingest::media::LayerCompression as Compression;

/// The largest zstd window accepted (2^27 = 128 MiB, libzstd's own default limit): a
/// frame asking for more is refused rather than allocated.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Uncompressed bytes allowed before the expansion ratio applies: small layers of empty
/// files and directories are mostly tar padding and compress far beyond any sane ratio.
pub const EXPANSION_SLACK: u64 = 16 << 20;

/// Counts the compressed bytes the decoder consumes.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
}

/// The uncompressed tar stream: reads through the decoder, hashes every byte, and fails
/// once the expansion limits are passed (remembering why, so the caller can name the
/// bomb even where the error passed through code that wraps it).
pub struct Uncompressed<'a> {
    decoder: Box<dyn Read + 'a>,
    compression: Compression,
    compressed: Arc<AtomicU64>,
    uncompressed: u64,
    ratio: u64,
    cap: u64,
    sha256: Sha256,
    tripped: Arc<Mutex<Option<Problem>>>,
}

impl<'a> Uncompressed<'a> {
    /// Wraps `compressed`, allowing at most `ratio` times the compressed size (plus
    /// [`EXPANSION_SLACK`]) and at most `cap` bytes in all.
    pub fn new(
        compressed: impl Read + 'a,
        compression: Compression,
        ratio: u64,
        cap: u64,
    ) -> io::Result<Self> {
        let count = Arc::new(AtomicU64::new(0));
        let counting = Counting {
            inner: compressed,
            count: count.clone(),
        };
        let decoder: Box<dyn Read + 'a> = match compression {
            Compression::None => Box::new(counting),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
                io::BufReader::with_capacity(64 << 10, counting),
            )),
            Compression::Zstd => {
                let mut d = zstd::stream::read::Decoder::new(counting)?;
                d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                Box::new(d)
            }
        };
        Ok(Uncompressed {
            decoder,
            compression,
            compressed: count,
            uncompressed: 0,
            ratio,
            cap,
            sha256: Sha256::new(),
            tripped: Arc::default(),
        })
    }

    /// The limit violation that stopped the stream, if one did.
    pub fn tripped(&self) -> Option<Problem> {
        self.tripped.lock().expect("tripped").take()
    }

    /// Compressed and uncompressed bytes read so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.compressed.load(Relaxed), self.uncompressed)
    }

    /// The SHA-256 of the uncompressed bytes read so far, as `sha256:HEX`.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.sha256.clone().finalize()))
    }

    fn check(&self) -> Option<Problem> {
        let compressed = self.compressed.load(Relaxed);
        let limit = if self.uncompressed > self.cap {
            format!("at most {} bytes", self.cap)
        } else if self.compression != Compression::None
            && self.uncompressed
                > compressed
                    .saturating_mul(self.ratio)
                    .saturating_add(EXPANSION_SLACK)
        {
            format!("{}x the compressed size", self.ratio)
        } else {
            return None;
        };
        Some(Problem::Expansion {
            uncompressed: self.uncompressed,
            compressed,
            limit,
        })
    }
}

impl Read for Uncompressed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.decoder.read(buf)?;
        self.uncompressed += n as u64;
        self.sha256.update(&buf[..n]);
        if let Some(p) = self.check() {
            let msg = p.to_string();
            *self.tripped.lock().expect("tripped") = Some(p);
            return Err(io::Error::other(msg));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_and_magic() {
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.config.v1+json"),
            None
        );
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"etc/"), Compression::None);
    }

    #[test]
    fn every_compression_decodes_and_hashes_the_plain_bytes() {
        let plain = b"hello layer".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&plain[..], 3).unwrap();
        let want = format!("sha256:{}", hex::encode(Sha256::digest(&plain)));
        for (bytes, c) in [
            (plain.clone(), Compression::None),
            (gz, Compression::Gzip),
            (zst, Compression::Zstd),
        ] {
            let mut u = Uncompressed::new(&bytes[..], c, 100, u64::MAX).unwrap();
            let mut out = Vec::new();
            u.read_to_end(&mut out).unwrap();
            assert_eq!(out, plain, "{c:?}");
            assert_eq!(u.digest(), want, "{c:?}");
        }
    }

    #[test]
    fn expansion_past_the_ratio_or_the_cap_trips() {
        let zeros = vec![0u8; 64 << 20];
        let zst = zstd::encode_all(&zeros[..], 3).unwrap();
        let mut u = Uncompressed::new(&zst[..], Compression::Zstd, 100, u64::MAX).unwrap();
        assert!(std::io::copy(&mut u, &mut std::io::sink()).is_err());
        assert!(matches!(u.tripped(), Some(Problem::Expansion { .. })));
        let mut u = Uncompressed::new(&zeros[..], Compression::None, 100, 1 << 20).unwrap();
        assert!(std::io::copy(&mut u, &mut std::io::sink()).is_err());
        assert!(u.uncompressed <= (1 << 20) + (64 << 10) * 2);
        assert!(matches!(u.tripped(), Some(Problem::Expansion { .. })));
    }
}
