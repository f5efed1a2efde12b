//! `.cvmfswhitelist`: the master-key-signed list of repository certificate fingerprints,
//! with an expiry date and the repository name (`whitelist.cc`).

use rsa::{RsaPrivateKey, RsaPublicKey};

use crate::cvmfs::hash::ContentHash;
use crate::cvmfs::letter::{Letter, LetterError};
use crate::cvmfs::signature;
use crate::cvmfs::timefmt;

/// Default lifetime of a whitelist, as `cvmfs_server`.
pub const DEFAULT_LIFETIME_DAYS: i64 = 30;

/// The content of a whitelist: which repository certificates may sign `fqrn`'s manifest,
/// and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whitelist {
    /// When it was made, in Unix seconds (the first line, `YYYYMMDDHHMMSS` UTC).
    pub created: i64,
    /// When it expires, in Unix seconds (the `E` line); checked to the hour.
    pub expires: i64,
    /// The repository it is for (the `N` line).
    pub fqrn: String,
    /// Approved certificates: hashes of their DER form (one `AA:BB:…` line each).
    pub fingerprints: Vec<ContentHash>,
}

/// Why a whitelist was refused or could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum WhitelistError {
    /// The signed-letter framing is broken (no `--` line or hash line, or too large).
    #[error(transparent)]
    Letter(#[from] LetterError),
    /// A body line is not what the format expects.
    #[error("whitelist: malformed line {line}: {why}")]
    Malformed {
        /// 1-based line number (0: the body is not UTF-8).
        line: usize,
        /// What was expected there.
        why: String,
    },
    /// The hash line is unreadable or is not the hash of the body.
    #[error("whitelist: its hash line does not match its content; it was altered")]
    HashMismatch,
    /// No trusted master key verifies the signature; holds how many keys were tried.
    #[error("whitelist: signature does not verify against any of the {0} trusted master public key(s); wrong key, or a forged whitelist")]
    BadSignature(usize),
    /// The whitelist has expired; holds the expiry time (ISO 8601).
    #[error("whitelist: expired on {0}; re-sign it with the master key (`lazyroot resign`)")]
    Expired(String),
    /// The whitelist names another repository.
    #[error("whitelist is for repository {found:?}, not {expected:?}")]
    WrongRepository {
        /// The repository being opened.
        expected: String,
        /// The repository the whitelist names.
        found: String,
    },
    /// The certificate is not approved; holds its fingerprint.
    #[error("whitelist: the certificate fingerprint {0} is not listed; the manifest was signed by a key the master key never approved")]
    NotListed(String),
    /// Signing with the master key failed.
    #[error("signing the whitelist: {0}")]
    Sign(#[from] signature::KeyError),
}

impl Whitelist {
    /// A whitelist approving the certificate `fingerprint` for `fqrn`, made at `now` (Unix
    /// seconds) and expiring `lifetime_days` later.
    pub fn new(fqrn: &str, fingerprint: ContentHash, now: i64, lifetime_days: i64) -> Self {
        Whitelist {
            created: now,
            expires: now + lifetime_days * 86_400,
            fqrn: fqrn.to_string(),
            fingerprints: vec![fingerprint],
        }
    }

    fn body(&self) -> String {
        let mut s = format!(
            "{}\nE{}\nN{}\n",
            timefmt::compact(self.created),
            timefmt::compact(self.expires),
            self.fqrn
        );
        for fp in &self.fingerprints {
            s.push_str(&fp.to_fingerprint());
            s.push('\n');
        }
        s
    }

    /// The signed whitelist: the body's hash in the repository's algorithm as hex (the
    /// algorithm of its fingerprints), signed raw by the master key.
    pub fn sign(&self, master: &RsaPrivateKey) -> Result<Vec<u8>, WhitelistError> {
        let body = self.body();
        let algo = self
            .fingerprints
            .first()
            .map(|f| f.algo)
            .unwrap_or_default();
        let hash_hex = algo.digest(body.as_bytes()).to_hex();
        let sig = signature::sign_raw(master, hash_hex.as_bytes())?;
        Ok(Letter::compose(body.as_bytes(), &hash_hex, &sig))
    }

    /// Parses and verifies the signature against any of `masters`. Expiry and the
    /// repository name are checked separately by [`Whitelist::check`].
    pub fn verify(bytes: &[u8], masters: &[RsaPublicKey]) -> Result<Self, WhitelistError> {
        let letter = Letter::split("whitelist", bytes)?;
        let wl = Self::parse_body(letter.body)?;
        let hash_text =
            std::str::from_utf8(letter.hash_hex).map_err(|_| WhitelistError::HashMismatch)?;
        let claimed = ContentHash::parse(hash_text).map_err(|_| WhitelistError::HashMismatch)?;
        if claimed.algo.digest(letter.body) != claimed {
            return Err(WhitelistError::HashMismatch);
        }
        if !masters
            .iter()
            .any(|k| signature::verify_raw(k, letter.hash_hex, letter.signature))
        {
            return Err(WhitelistError::BadSignature(masters.len()));
        }
        Ok(wl)
    }

    /// The whitelist must name `fqrn`, be unexpired at `now`, and list `fingerprint`.
    pub fn check(
        &self,
        fqrn: &str,
        now: i64,
        fingerprint: &ContentHash,
    ) -> Result<(), WhitelistError> {
        if self.fqrn != fqrn {
            return Err(WhitelistError::WrongRepository {
                expected: fqrn.to_string(),
                found: self.fqrn.clone(),
            });
        }
        // Expiry is checked to the hour, as stock clients do: minutes and seconds of the
        // E line are ignored.
        if now >= self.expires - self.expires.rem_euclid(3600) {
            return Err(WhitelistError::Expired(timefmt::iso8601(self.expires)));
        }
        if !self.fingerprints.contains(fingerprint) {
            return Err(WhitelistError::NotListed(fingerprint.to_fingerprint()));
        }
        Ok(())
    }

    fn parse_body(body: &[u8]) -> Result<Self, WhitelistError> {
        let text = std::str::from_utf8(body).map_err(|_| WhitelistError::Malformed {
            line: 0,
            why: "not UTF-8".into(),
        })?;
        let mut lines = text.lines().enumerate();
        let bad = |line: usize, why: &str| WhitelistError::Malformed {
            line: line + 1,
            why: why.to_string(),
        };
        let (i, l) = lines.next().ok_or_else(|| bad(0, "empty"))?;
        let created = timefmt::parse_compact(l.trim())
            .ok_or_else(|| bad(i, "expected a YYYYMMDDHHMMSS timestamp"))?;
        let (i, l) = lines.next().ok_or_else(|| bad(1, "no expiry line"))?;
        let expires = l
            .strip_prefix('E')
            .and_then(|t| timefmt::parse_compact(t.trim()))
            .ok_or_else(|| bad(i, "expected E followed by a YYYYMMDDHHMMSS timestamp"))?;
        let (i, l) = lines
            .next()
            .ok_or_else(|| bad(2, "no repository name line"))?;
        let fqrn = l
            .strip_prefix('N')
            .ok_or_else(|| bad(i, "expected N followed by the repository name"))?;
        let mut fingerprints = Vec::new();
        for (i, l) in lines {
            // Option lines (Vpkcs7, Wcachain) are not supported modes; they carry no fingerprint.
            if l.is_empty() || l.starts_with('V') || l.starts_with('W') {
                continue;
            }
            // A fingerprint may be followed by a comment (`AA:BB:… # CN=…`).
            let fp = l.split_whitespace().next().unwrap_or("");
            fingerprints
                .push(ContentHash::parse_fingerprint(fp).map_err(|e| bad(i, &e.to_string()))?);
        }
        Ok(Whitelist {
            created,
            expires,
            fqrn: fqrn.to_string(),
            fingerprints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cvmfs::hash::HashAlgo;

    #[test]
    fn sign_verify_check() {
        let master = signature::generate_key().unwrap();
        let other = signature::generate_key().unwrap();
        let fp = HashAlgo::Sha1.digest(b"cert");
        let wl = Whitelist::new("a.example.org", fp, 1_000_000, 30);
        let bytes = wl.sign(&master).unwrap();
        let got =
            Whitelist::verify(&bytes, &[other.to_public_key(), master.to_public_key()]).unwrap();
        assert_eq!(got, wl);
        got.check("a.example.org", 1_000_001, &fp).unwrap();
        assert!(matches!(
            got.check("b.example.org", 1_000_001, &fp),
            Err(WhitelistError::WrongRepository { .. })
        ));
        assert!(matches!(
            got.check("a.example.org", 1_000_000 + 30 * 86_400 - 1, &fp),
            Err(WhitelistError::Expired(_))
        ));
        let fp2 = HashAlgo::Sha1.digest(b"other");
        assert!(matches!(
            got.check("a.example.org", 1_000_001, &fp2),
            Err(WhitelistError::NotListed(_))
        ));
        assert!(matches!(
            Whitelist::verify(&bytes, &[other.to_public_key()]),
            Err(WhitelistError::BadSignature(1))
        ));
        let mut tampered = bytes.clone();
        tampered[20] = b'9';
        assert!(Whitelist::verify(&tampered, &[master.to_public_key()]).is_err());
    }
}
