//! Content hashes (SHA-1, RIPEMD-160, SHAKE-128) with CernVM-FS's hex suffixes, and the
//! MD5 path keys that index catalog rows.

use std::fmt;
use std::str::FromStr;

use sha1::Digest as _;
use sha3::digest::{ExtendableOutput, Update, XofReader};

/// Every content digest in the format is 20 bytes, whatever the algorithm.
pub const DIGEST_LEN: usize = 20;

/// The hash algorithm of a repository or of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum HashAlgo {
    /// SHA-1, the default; its hex form has no suffix.
    #[default]
    Sha1,
    /// RIPEMD-160 (`-rmd160`).
    Rmd160,
    /// SHAKE-128 read out to 160 bits (`-shake128`).
    Shake128,
}

impl HashAlgo {
    /// The suffix CernVM-FS appends to a hex digest so that equal-length digests of
    /// different algorithms can be told apart (`crypto/hash.cc`).
    pub fn hex_suffix(self) -> &'static str {
        match self {
            HashAlgo::Sha1 => "",
            HashAlgo::Rmd160 => "-rmd160",
            HashAlgo::Shake128 => "-shake128",
        }
    }

    /// The value stored in bits 8-10 of a catalog row's flags (algorithm - 1).
    pub fn flag_bits(self) -> u32 {
        match self {
            HashAlgo::Sha1 => 0,
            HashAlgo::Rmd160 => 1,
            HashAlgo::Shake128 => 2,
        }
    }

    /// The algorithm for a flags value from [`flag_bits`](Self::flag_bits); `None` if unknown.
    pub fn from_flag_bits(bits: u32) -> Option<Self> {
        match bits {
            0 => Some(HashAlgo::Sha1),
            1 => Some(HashAlgo::Rmd160),
            2 => Some(HashAlgo::Shake128),
            _ => None,
        }
    }

    /// The lower-case name (`sha1`, `rmd160`, `shake128`), as `FromStr` accepts it.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Sha1 => "sha1",
            HashAlgo::Rmd160 => "rmd160",
            HashAlgo::Shake128 => "shake128",
        }
    }

    /// A fresh incremental hasher for this algorithm.
    pub fn hasher(self) -> Hasher {
        match self {
            HashAlgo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashAlgo::Rmd160 => Hasher::Rmd160(ripemd::Ripemd160::new()),
            HashAlgo::Shake128 => Hasher::Shake128(sha3::Shake128::default()),
        }
    }

    /// Hashes `data` in one call.
    pub fn digest(self, data: &[u8]) -> ContentHash {
        let mut h = self.hasher();
        h.update(data);
        h.finish()
    }
}

impl FromStr for HashAlgo {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Self, HashError> {
        match s.to_ascii_lowercase().as_str() {
            "sha1" => Ok(HashAlgo::Sha1),
            "rmd160" | "ripemd160" => Ok(HashAlgo::Rmd160),
            "shake128" => Ok(HashAlgo::Shake128),
            _ => Err(HashError::UnknownAlgorithm(s.to_string())),
        }
    }
}

/// An incremental hasher for any of the content algorithms. Short-lived and on the stack,
/// so the variants' size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Hasher {
    /// SHA-1 state.
    Sha1(sha1::Sha1),
    /// RIPEMD-160 state.
    Rmd160(ripemd::Ripemd160),
    /// SHAKE-128 state.
    Shake128(sha3::Shake128),
}

impl Hasher {
    /// Feeds `data` into the hash.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => sha1::Digest::update(h, data),
            Hasher::Rmd160(h) => ripemd::Digest::update(h, data),
            Hasher::Shake128(h) => h.update(data),
        }
    }

    /// The 20-byte digest of everything fed in.
    pub fn finish(self) -> ContentHash {
        let mut digest = [0u8; DIGEST_LEN];
        let algo = match self {
            Hasher::Sha1(h) => {
                digest.copy_from_slice(&h.finalize());
                HashAlgo::Sha1
            }
            Hasher::Rmd160(h) => {
                digest.copy_from_slice(&h.finalize());
                HashAlgo::Rmd160
            }
            Hasher::Shake128(h) => {
                h.finalize_xof().read(&mut digest);
                HashAlgo::Shake128
            }
        };
        ContentHash { algo, digest }
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Why an algorithm name or a content hash cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    /// A name other than sha1, rmd160 (or ripemd160) and shake128.
    #[error("unknown hash algorithm {0:?} (expected sha1, rmd160 or shake128)")]
    UnknownAlgorithm(String),
    /// Not 40 hex digits with an optional known suffix (or a blob that is not 20 bytes).
    #[error("malformed content hash {0:?}: expected 40 hex digits and an optional -rmd160/-shake128 suffix")]
    Malformed(String),
}

/// A content hash: algorithm plus 20-byte digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash {
    /// The algorithm that produced the digest.
    pub algo: HashAlgo,
    /// The raw digest bytes.
    pub digest: [u8; DIGEST_LEN],
}

impl ContentHash {
    /// Pairs a digest with the algorithm that computed it.
    pub fn new(algo: HashAlgo, digest: [u8; DIGEST_LEN]) -> Self {
        ContentHash { algo, digest }
    }

    /// Builds a hash from a catalog `hash` blob; `None` for an empty blob (directories, symlinks).
    pub fn from_blob(algo: HashAlgo, blob: &[u8]) -> Result<Option<Self>, HashError> {
        if blob.is_empty() {
            return Ok(None);
        }
        let digest: [u8; DIGEST_LEN] = blob
            .try_into()
            .map_err(|_| HashError::Malformed(hex::encode(blob)))?;
        Ok(Some(ContentHash { algo, digest }))
    }

    /// Hex digits plus the algorithm suffix, as in object names and the manifest.
    pub fn to_hex(&self) -> String {
        format!("{}{}", hex::encode(self.digest), self.algo.hex_suffix())
    }

    /// Parses `hex[suffix]`; the suffix selects the algorithm.
    pub fn parse(s: &str) -> Result<Self, HashError> {
        let bad = || HashError::Malformed(s.chars().take(80).collect());
        if s.len() < 2 * DIGEST_LEN || !s.is_char_boundary(2 * DIGEST_LEN) {
            return Err(bad());
        }
        let (hexpart, suffix) = s.split_at(2 * DIGEST_LEN);
        let algo = match suffix {
            "" => HashAlgo::Sha1,
            "-rmd160" => HashAlgo::Rmd160,
            "-shake128" => HashAlgo::Shake128,
            _ => return Err(bad()),
        };
        let mut digest = [0u8; DIGEST_LEN];
        hex::decode_to_slice(hexpart, &mut digest).map_err(|_| bad())?;
        Ok(ContentHash { algo, digest })
    }

    /// Certificate fingerprint form: `AA:BB:…` in upper case, with the upper-case algorithm
    /// suffix for non-SHA-1 (`whitelist.cc`).
    pub fn to_fingerprint(&self) -> String {
        let mut s = self
            .digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        s.push_str(&self.algo.hex_suffix().to_ascii_uppercase());
        s
    }

    /// Parses the [`to_fingerprint`](Self::to_fingerprint) form; case and colons do not matter.
    pub fn parse_fingerprint(s: &str) -> Result<Self, HashError> {
        let lower = s.trim().to_ascii_lowercase();
        let (body, suffix) = match lower.find('-') {
            Some(i) => lower.split_at(i),
            None => (lower.as_str(), ""),
        };
        Self::parse(&format!("{}{}", body.replace(':', ""), suffix))
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.to_hex())
    }
}

/// The MD5 of a path inside a repository, as the two signed 64-bit integers CernVM-FS
/// stores (`Md5::ToIntPair`: the digest memcpy'd into two int64 on a little-endian host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathKey(pub i64, pub i64);

impl PathKey {
    /// The repository root is the empty path; every other path starts with `/`.
    pub fn of(path: &[u8]) -> Self {
        let d = md5::Md5::digest(path);
        let lo = i64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
        let hi = i64::from_le_bytes(d[8..16].try_into().expect("8 bytes"));
        PathKey(lo, hi)
    }

    /// The parent key of the root entry.
    pub const NONE: PathKey = PathKey(0, 0);

    /// The 32 hex digits of the MD5, as the manifest's `R` field writes it.
    pub fn md5_hex(&self) -> String {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.0.to_le_bytes());
        b[8..16].copy_from_slice(&self.1.to_le_bytes());
        hex::encode(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let cases: &[(HashAlgo, &[u8], &str)] = &[
            (
                HashAlgo::Sha1,
                b"abc",
                "a9993e364706816aba3e25717850c26c9cd0d89d",
            ),
            (
                HashAlgo::Rmd160,
                b"abc",
                "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc-rmd160",
            ),
            (
                HashAlgo::Shake128,
                b"",
                "7f9c2ba4e88f827d616045507605853ed73b8093-shake128",
            ),
        ];
        for (algo, input, want) in cases {
            let h = algo.digest(input);
            assert_eq!(h.to_hex(), *want, "{algo:?}");
            assert_eq!(ContentHash::parse(want).unwrap(), h);
        }
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in [
            "",
            "abc",
            "zz993e364706816aba3e25717850c26c9cd0d89d",
            "a9993e364706816aba3e25717850c26c9cd0d89d-md5",
        ] {
            assert!(ContentHash::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fingerprint_round_trip() {
        let h = HashAlgo::Sha1.digest(b"x");
        let fp = h.to_fingerprint();
        assert_eq!(fp.len(), 59);
        assert_eq!(ContentHash::parse_fingerprint(&fp).unwrap(), h);
        let s = HashAlgo::Shake128.digest(b"x");
        assert!(s.to_fingerprint().ends_with("-SHAKE128"));
        assert_eq!(
            ContentHash::parse_fingerprint(&s.to_fingerprint()).unwrap(),
            s
        );
    }

    #[test]
    fn path_keys_match_fixture() {
        // Verified against the stock fixture's root catalog.
        assert_eq!(
            PathKey::of(b""),
            PathKey(338333539836370388, 9098107892288553193)
        );
        assert_eq!(
            PathKey::of(b"").md5_hex(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            PathKey::of(b"/foo"),
            PathKey(5745132282796244766, -5819618580357280866)
        );
    }
}
