//! RSA keys and the two signature schemes of the trust chain:
//! - the manifest: PKCS#1 v1.5 over SHA-1 of the ASCII hex hash (`EVP_Sign` upstream);
//! - the whitelist: PKCS#1 type-1 padding over the ASCII hex hash itself, no DigestInfo
//!   (`RSA_private_encrypt` upstream), checked by recovering the hex hash.

use std::path::Path;

use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha1::{Digest, Sha1};

/// Why an RSA key could not be read, parsed, generated or used to sign.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("reading key {path}: {source}")]
    Read {
        /// The key file.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file holds no PEM RSA key of the expected kind.
    #[error("key {path} is not an RSA {kind} key in PEM form (PKCS#1 or PKCS#8/SPKI)")]
    Format {
        /// The key file.
        path: String,
        /// `"private"` or `"public"`.
        kind: &'static str,
    },
    /// Generating a new key failed.
    #[error("generating an RSA key: {0}")]
    Generate(rsa::Error),
    /// RSA signing failed.
    #[error("signing: {0}")]
    Sign(rsa::Error),
}

/// RSA key size used for new master and repository keys (as `cvmfs_server mkfs`).
pub const KEY_BITS: usize = 2048;

/// Generates a new RSA key of [`KEY_BITS`] bits, for a master or repository key.
pub fn generate_key() -> Result<RsaPrivateKey, KeyError> {
    RsaPrivateKey::new(&mut rand::thread_rng(), KEY_BITS).map_err(KeyError::Generate)
}

/// Parses a PEM private key, PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8; `None` if neither.
pub fn parse_private_key(pem: &str) -> Option<RsaPrivateKey> {
    RsaPrivateKey::from_pkcs1_pem(pem)
        .ok()
        .or_else(|| RsaPrivateKey::from_pkcs8_pem(pem).ok())
}

/// Parses a PEM public key, SPKI (`PUBLIC KEY`) or PKCS#1; `None` if neither.
pub fn parse_public_key(pem: &str) -> Option<RsaPublicKey> {
    RsaPublicKey::from_public_key_pem(pem)
        .ok()
        .or_else(|| RsaPublicKey::from_pkcs1_pem(pem).ok())
}

/// Reads a PEM private key file (see [`parse_private_key`]).
pub fn load_private_key(path: &Path) -> Result<RsaPrivateKey, KeyError> {
    let pem = read_text(path)?;
    parse_private_key(&pem).ok_or_else(|| KeyError::Format {
        path: path.display().to_string(),
        kind: "private",
    })
}

/// Reads a PEM public key file (see [`parse_public_key`]).
pub fn load_public_key(path: &Path) -> Result<RsaPublicKey, KeyError> {
    let pem = read_text(path)?;
    parse_public_key(&pem).ok_or_else(|| KeyError::Format {
        path: path.display().to_string(),
        kind: "public",
    })
}

fn read_text(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// PEM forms as stock CernVM-FS writes them: `RSA PRIVATE KEY` and `PUBLIC KEY`.
pub fn private_key_pem(key: &RsaPrivateKey) -> String {
    key.to_pkcs1_pem(LineEnding::LF)
        .expect("encoding an RSA key")
        .to_string()
}

/// The SPKI `PUBLIC KEY` PEM form, as in stock `.pub` files.
pub fn public_key_pem(key: &RsaPublicKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .expect("encoding an RSA key")
}

/// Manifest signature: RSA PKCS#1 v1.5 with SHA-1 over the ASCII hex hash.
pub fn sign_digest_sha1(key: &RsaPrivateKey, hash_hex: &[u8]) -> Result<Vec<u8>, KeyError> {
    let digest = Sha1::digest(hash_hex);
    key.sign(Pkcs1v15Sign::new::<Sha1>(), &digest)
        .map_err(KeyError::Sign)
}

/// Checks a manifest signature made as by [`sign_digest_sha1`].
pub fn verify_digest_sha1(key: &RsaPublicKey, hash_hex: &[u8], signature: &[u8]) -> bool {
    let digest = Sha1::digest(hash_hex);
    key.verify(Pkcs1v15Sign::new::<Sha1>(), &digest, signature)
        .is_ok()
}

/// Whitelist signature: the hex hash itself, type-1 padded, no DigestInfo.
pub fn sign_raw(key: &RsaPrivateKey, hash_hex: &[u8]) -> Result<Vec<u8>, KeyError> {
    key.sign(Pkcs1v15Sign::new_unprefixed(), hash_hex)
        .map_err(KeyError::Sign)
}

/// Checks a whitelist signature made as by [`sign_raw`].
pub fn verify_raw(key: &RsaPublicKey, hash_hex: &[u8], signature: &[u8]) -> bool {
    key.verify(Pkcs1v15Sign::new_unprefixed(), hash_hex, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemes_round_trip_and_are_distinct() {
        let k = generate_key().unwrap();
        let p = k.to_public_key();
        let msg = b"a9993e364706816aba3e25717850c26c9cd0d89d";
        let s1 = sign_digest_sha1(&k, msg).unwrap();
        let s2 = sign_raw(&k, msg).unwrap();
        assert!(verify_digest_sha1(&p, msg, &s1));
        assert!(verify_raw(&p, msg, &s2));
        assert!(!verify_raw(&p, msg, &s1));
        assert!(!verify_digest_sha1(&p, msg, &s2));
        assert!(!verify_digest_sha1(
            &p,
            b"a9993e364706816aba3e25717850c26c9cd0d89e",
            &s1
        ));
        let pem = private_key_pem(&k);
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert_eq!(parse_private_key(&pem).unwrap(), k);
        assert_eq!(parse_public_key(&public_key_pem(&p)).unwrap(), p);
    }
}
