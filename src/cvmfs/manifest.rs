//! `.cvmfspublished`: the signed manifest naming the root catalog (`manifest.cc`).

use rsa::{RsaPrivateKey, RsaPublicKey};

use crate::cvmfs::hash::{ContentHash, HashAlgo};
use crate::cvmfs::letter::{Letter, LetterError};
use crate::cvmfs::signature;

/// The fields of a manifest, each under its one-letter key; it names the root catalog of one
/// revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `C`: root catalog hash.
    pub root_catalog: ContentHash,
    /// `B`: uncompressed size of the root catalog.
    pub root_catalog_size: u64,
    /// `R`: MD5 of the root path, hex.
    pub root_path_md5: String,
    /// `D`: TTL in seconds.
    pub ttl: u64,
    /// `S`: revision.
    pub revision: u64,
    /// `G`: garbage-collectable.
    pub garbage_collectable: bool,
    /// `A`: alternative names for bootstrap objects.
    pub alt_catalog_path: bool,
    /// `N`: repository name.
    pub fqrn: String,
    /// `X`: certificate object hash.
    pub certificate: Option<ContentHash>,
    /// `H`: history database object hash.
    pub history: Option<ContentHash>,
    /// `T`: publish time, Unix seconds.
    pub timestamp: i64,
    /// `M`: meta-info object hash.
    pub meta_info: Option<ContentHash>,
    /// `Y`: reflog hash.
    pub reflog: Option<ContentHash>,
}

/// Why a manifest cannot be read, verified or signed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// It is not laid out as a signed letter.
    #[error(transparent)]
    Letter(#[from] LetterError),
    /// A field is missing or has a bad value.
    #[error("manifest: field {key} {why}")]
    Field {
        /// The field's one-letter key (`?` for a line that is not UTF-8).
        key: char,
        /// What is wrong with it.
        why: String,
    },
    /// The hash line does not match the body.
    #[error("manifest: its hash line does not match its content; it was altered")]
    HashMismatch,
    /// The signature does not verify against the certificate's key.
    #[error("manifest: signature does not verify against the repository certificate")]
    BadSignature,
    /// Signing with the repository key failed.
    #[error("signing the manifest: {0}")]
    Sign(#[from] signature::KeyError),
}

/// MD5 of the empty root path.
pub const ROOT_PATH_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

impl Manifest {
    /// The repository's hash algorithm: that of the root catalog hash.
    pub fn hash_algo(&self) -> HashAlgo {
        self.root_catalog.algo
    }

    /// The unsigned body, fields in the order `Manifest::ExportString` writes them.
    pub fn body(&self) -> String {
        let mut s = format!(
            "C{}\nB{}\nR{}\nD{}\nS{}\nG{}\nA{}\n",
            self.root_catalog.to_hex(),
            self.root_catalog_size,
            self.root_path_md5,
            self.ttl,
            self.revision,
            yes_no(self.garbage_collectable),
            yes_no(self.alt_catalog_path),
        );
        s.push_str(&format!("N{}\n", self.fqrn));
        if let Some(x) = &self.certificate {
            s.push_str(&format!("X{}\n", x.to_hex()));
        }
        if let Some(h) = &self.history {
            s.push_str(&format!("H{}\n", h.to_hex()));
        }
        s.push_str(&format!("T{}\n", self.timestamp));
        if let Some(m) = &self.meta_info {
            s.push_str(&format!("M{}\n", m.to_hex()));
        }
        if let Some(y) = &self.reflog {
            s.push_str(&format!("Y{}\n", y.to_hex()));
        }
        s
    }

    /// Signs with the repository key: hash of the body in the repository's algorithm
    /// (hex + suffix), then RSA/SHA-1 over that hex string.
    pub fn sign(&self, key: &RsaPrivateKey) -> Result<Vec<u8>, ManifestError> {
        let body = self.body();
        let hash_hex = self.hash_algo().digest(body.as_bytes()).to_hex();
        let sig = signature::sign_digest_sha1(key, hash_hex.as_bytes())?;
        Ok(Letter::compose(body.as_bytes(), &hash_hex, &sig))
    }

    /// Parses without checking the signature: used to learn which certificate to fetch.
    pub fn parse_unverified(bytes: &[u8]) -> Result<(Self, Letter<'_>), ManifestError> {
        let letter = Letter::split("manifest", bytes)?;
        let m = Self::parse_body(letter.body)?;
        Ok((m, letter))
    }

    /// Checks the hash line and the signature against the certificate's public key.
    pub fn verify_letter(letter: &Letter<'_>, key: &RsaPublicKey) -> Result<(), ManifestError> {
        let text = std::str::from_utf8(letter.hash_hex).map_err(|_| ManifestError::HashMismatch)?;
        let claimed = ContentHash::parse(text).map_err(|_| ManifestError::HashMismatch)?;
        if claimed.algo.digest(letter.body) != claimed {
            return Err(ManifestError::HashMismatch);
        }
        if !signature::verify_digest_sha1(key, letter.hash_hex, letter.signature) {
            return Err(ManifestError::BadSignature);
        }
        Ok(())
    }

    fn parse_body(body: &[u8]) -> Result<Self, ManifestError> {
        let field = |key: char, why: &str| ManifestError::Field {
            key,
            why: why.to_string(),
        };
        let mut m = Manifest {
            root_catalog: ContentHash::new(HashAlgo::Sha1, [0; 20]),
            root_catalog_size: 0,
            root_path_md5: String::new(),
            ttl: 0,
            revision: 0,
            garbage_collectable: false,
            alt_catalog_path: false,
            fqrn: String::new(),
            certificate: None,
            history: None,
            timestamp: 0,
            meta_info: None,
            reflog: None,
        };
        let (mut has_c, mut has_r, mut has_d, mut has_s) = (false, false, false, false);
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = std::str::from_utf8(line).map_err(|_| field('?', "is not UTF-8"))?;
            let mut chars = line.chars();
            let key = chars.next().expect("non-empty");
            let val = chars.as_str();
            let hash = || ContentHash::parse(val).map_err(|e| field(key, &e.to_string()));
            let num = || {
                val.parse::<u64>()
                    .map_err(|_| field(key, "is not a number"))
            };
            match key {
                'C' => (m.root_catalog, has_c) = (hash()?, true),
                'B' => m.root_catalog_size = num()?,
                'R' => (m.root_path_md5, has_r) = (val.to_string(), true),
                'D' => (m.ttl, has_d) = (num()?, true),
                'S' => (m.revision, has_s) = (num()?, true),
                'G' => m.garbage_collectable = val == "yes",
                'A' => m.alt_catalog_path = val == "yes",
                'N' => m.fqrn = val.to_string(),
                'X' => m.certificate = Some(hash()?),
                'H' => m.history = Some(hash()?),
                // A cast would wrap a value past i64::MAX to a time before 1970, which
                // the next signing would write as a negative number no reader takes.
                'T' => {
                    m.timestamp =
                        i64::try_from(num()?).map_err(|_| field(key, "is out of range"))?
                }
                'M' => m.meta_info = Some(hash()?),
                'Y' => m.reflog = Some(hash()?),
                _ => {} // reserved or newer fields (L, Z, …) do not concern a reader
            }
        }
        for (present, key) in [(has_c, 'C'), (has_r, 'R'), (has_d, 'D'), (has_s, 'S')] {
            if !present {
                return Err(field(key, "is required but missing"));
            }
        }
        Ok(m)
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(algo: HashAlgo) -> Manifest {
        Manifest {
            root_catalog: algo.digest(b"root"),
            root_catalog_size: 14336,
            root_path_md5: ROOT_PATH_MD5.into(),
            ttl: 240,
            revision: 7,
            garbage_collectable: false,
            alt_catalog_path: false,
            fqrn: "a.example.org".into(),
            certificate: Some(algo.digest(b"cert")),
            history: Some(algo.digest(b"hist")),
            timestamp: 1_445_428_515,
            meta_info: None,
            reflog: Some(algo.digest(b"reflog")),
        }
    }

    #[test]
    fn round_trip_each_algorithm() {
        let key = signature::generate_key().unwrap();
        for algo in [HashAlgo::Sha1, HashAlgo::Rmd160, HashAlgo::Shake128] {
            let m = sample(algo);
            let bytes = m.sign(&key).unwrap();
            let (got, letter) = Manifest::parse_unverified(&bytes).unwrap();
            assert_eq!(got, m);
            Manifest::verify_letter(&letter, &key.to_public_key()).unwrap();
            let hash_line = std::str::from_utf8(letter.hash_hex).unwrap();
            assert!(hash_line.ends_with(algo.hex_suffix()));
        }
    }

    #[test]
    fn tampering_is_detected() {
        let key = signature::generate_key().unwrap();
        let bytes = sample(HashAlgo::Sha1).sign(&key).unwrap();
        let mut t = bytes.clone();
        let i = bytes.windows(2).position(|w| w == b"S7").unwrap();
        t[i + 1] = b'8';
        let (_, l) = Manifest::parse_unverified(&t).unwrap();
        assert!(matches!(
            Manifest::verify_letter(&l, &key.to_public_key()),
            Err(ManifestError::HashMismatch)
        ));
        let other = signature::generate_key().unwrap();
        let (_, l) = Manifest::parse_unverified(&bytes).unwrap();
        assert!(matches!(
            Manifest::verify_letter(&l, &other.to_public_key()),
            Err(ManifestError::BadSignature)
        ));
        assert!(matches!(
            Manifest::parse_unverified(b"B1\n--\nab\n"),
            Err(ManifestError::Field { key: 'C', .. })
        ));
    }
}
