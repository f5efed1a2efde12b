//! Content digests of images (`sha256:<hex>`), and a reader that verifies a blob while it
//! streams: an image's bytes come from a registry, a directory or an archive we do not
//! trust, so nothing is used before its size and digest are checked.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::Digest as _;

use super::error::{BlobFault, IngestError};

/// The hash function of a digest. OCI names sha256 (everywhere) and sha512 (allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// `sha256`: 64 hex digits; what every registry and `docker save` uses.
    Sha256,
    /// `sha512`: 128 hex digits.
    Sha512,
}

impl Algorithm {
    /// The name in a digest string.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Hex digits of a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// A fresh incremental hasher.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

/// An incremental hash of one of the [`Algorithm`]s.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 in progress.
    Sha256(sha2::Sha256),
    /// SHA-512 in progress.
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        let (algorithm, bytes) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        Digest {
            algorithm,
            hex: hex::encode(bytes),
        }
    }
}

/// A content digest, `algorithm:hex` with lowercase hex of the algorithm's length.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// The hash function.
    pub algorithm: Algorithm,
    /// Lowercase hex of the hash, of [`Algorithm::hex_len`] digits.
    pub hex: String,
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `algorithm:` prefix.
    #[error("digest {0:?} has no algorithm (expected sha256:<64 hex digits>)")]
    NoAlgorithm(String),
    /// An algorithm other than sha256 or sha512.
    #[error("digest {0:?}: unsupported algorithm (sha256 and sha512 are)")]
    Algorithm(String),
    /// Hex of the wrong length, uppercase or not hex.
    #[error("digest {0:?}: the hash must be {1} lowercase hex digits")]
    Hex(String, usize),
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let shown: String = s.chars().take(160).collect();
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::NoAlgorithm(shown.clone()))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(DigestError::Algorithm(shown)),
        };
        let ok = hex.len() == algorithm.hex_len()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(DigestError::Hex(shown, algorithm.hex_len()));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The sha256 digest of `data`.
    pub fn sha256(data: &[u8]) -> Digest {
        Self::of(Algorithm::Sha256, data)
    }

    /// The digest of `data` with `algorithm`.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = algorithm.hasher();
        h.update(data);
        h.finish()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Streams a blob and checks it against its descriptor: never more than `size` bytes are
/// passed on (one more is an error at once, so a hostile server cannot fill a disk), and at
/// the end the count must be `size` and the bytes must hash to the digest. The end is
/// reported as EOF only after both checks pass, so a consumer that reads to EOF has used
/// verified bytes only as a whole. Errors are `io::Error`s whose inner error is an
/// [`IngestError::Blob`] naming the image, the blob and the cause.
pub struct VerifyingReader<R> {
    inner: R,
    reference: String,
    digest: Digest,
    size: u64,
    got: u64,
    hasher: Option<Hasher>,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, which should yield the blob `digest` of `size` bytes; `reference`
    /// names the image in errors.
    pub fn new(inner: R, reference: &str, digest: &Digest, size: u64) -> Self {
        VerifyingReader {
            inner,
            reference: reference.to_string(),
            hasher: Some(digest.algorithm.hasher()),
            digest: digest.clone(),
            size,
            got: 0,
        }
    }

    fn fault(&self, cause: BlobFault) -> io::Error {
        let kind = match &cause {
            BlobFault::Read(e) => e.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(
            kind,
            IngestError::Blob {
                reference: self.reference.clone(),
                digest: self.digest.clone(),
                cause,
            },
        )
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(hasher) = self.hasher.as_mut() else {
            return Ok(0); // verified and finished
        };
        if buf.is_empty() {
            return Ok(0);
        }
        // Ask for one byte past the end, so a longer stream is caught here.
        let left = self.size - self.got;
        let want = buf
            .len()
            .min(usize::try_from(left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.fault(BlobFault::Read(e))),
            }
        };
        if n as u64 > left {
            return Err(self.fault(BlobFault::TooLong { size: self.size }));
        }
        hasher.update(&buf[..n]);
        self.got += n as u64;
        if n > 0 {
            return Ok(n);
        }
        if self.got < self.size {
            return Err(self.fault(BlobFault::Truncated {
                got: self.got,
                size: self.size,
            }));
        }
        let actual = self.hasher.take().expect("hasher present").finish();
        if actual != self.digest {
            return Err(self.fault(BlobFault::Digest { actual }));
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parse_and_display() {
        let d = Digest::parse(HELLO).unwrap();
        assert_eq!(d, Digest::sha256(b"hello"));
        assert_eq!(d.to_string(), HELLO);
        for bad in [
            "sha256",
            "md5:abcd",
            "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
            "sha256:2cf2",
            "sha512:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b982g",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
        let long = Digest::of(Algorithm::Sha512, b"x");
        assert_eq!(Digest::parse(&long.to_string()).unwrap(), long);
    }

    fn read_all(data: &[u8], digest: &Digest, size: u64) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        VerifyingReader::new(data, "img", digest, size)
            .read_to_end(&mut out)
            .map(|_| out)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn verifies_size_and_digest() {
        let d = Digest::sha256(b"hello");
        assert_eq!(read_all(b"hello", &d, 5).unwrap(), b"hello");
        let e = read_all(b"hellO", &d, 5).unwrap_err();
        assert!(e.contains(HELLO) && e.contains("hashes to"), "{e}");
        let e = read_all(b"hell", &d, 5).unwrap_err();
        assert!(e.contains("after 4 of its 5 bytes"), "{e}");
        let e = read_all(b"hello!", &d, 5).unwrap_err();
        assert!(e.contains("more than"), "{e}");
        let e = read_all(b"", &Digest::sha256(b""), 0);
        assert_eq!(e.unwrap(), b"");
    }
}
