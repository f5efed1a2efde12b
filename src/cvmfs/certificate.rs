//! The repository certificate: a self-signed X.509 certificate around the repository key.
//! Clients trust it only because its fingerprint is on the master-signed whitelist, so its
//! own validity dates are not what protects anyone (stock clients ignore them too).

use std::str::FromStr;
use std::time::Duration;

use der::{Decode, DecodePem, Encode, EncodePem};
use rsa::pkcs1v15::SigningKey;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use spki::{DecodePublicKey, EncodePublicKey, SubjectPublicKeyInfoOwned};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;
use x509_cert::Certificate;

use crate::cvmfs::hash::{ContentHash, HashAlgo};

/// Why a certificate cannot be parsed or generated.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// Neither PEM nor DER X.509.
    #[error("certificate is not a PEM or DER X.509 certificate: {0}")]
    Parse(der::Error),
    /// The certificate's key is not an RSA public key.
    #[error("certificate does not hold an RSA public key: {0}")]
    Key(String),
    /// Building or encoding a new certificate failed.
    #[error("building the certificate: {0}")]
    Build(String),
}

/// A parsed repository certificate.
pub struct RepoCertificate {
    der: Vec<u8>,
    public_key: RsaPublicKey,
}

/// One year, as `cvmfs_server mkfs` (`openssl x509 -days 365`); clients ignore it.
const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

impl RepoCertificate {
    /// Creates a self-signed certificate for the repository key, subject
    /// `CN=<fqrn> CernVM-FS Release Managers` as stock repositories have it (names over 30
    /// characters are cut to 30 and marked `[...]`, as `cvmfs_server` does).
    pub fn generate(fqrn: &str, key: &RsaPrivateKey) -> Result<String, CertificateError> {
        let build = |e: &dyn std::fmt::Display| CertificateError::Build(e.to_string());
        let short = if fqrn.len() > 30 {
            format!("{}[...]", &fqrn[..30])
        } else {
            fqrn.to_string()
        };
        let cn = format!("{short} CernVM-FS Release Managers");
        let subject = Name::from_str(&format!("CN={cn}")).map_err(|e| build(&e))?;
        let spki_der = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| build(&e))?;
        let spki =
            SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).map_err(|e| build(&e))?;
        let serial: [u8; 8] = rand::random();
        let serial = SerialNumber::new(&[&[0x01], &serial[..]].concat()).map_err(|e| build(&e))?;
        let validity = Validity::from_now(VALIDITY).map_err(|e| build(&e))?;
        let signer = SigningKey::<Sha256>::new(key.clone());
        let builder =
            CertificateBuilder::new(Profile::Root, serial, validity, subject, spki, &signer)
                .map_err(|e| build(&e))?;
        let cert = builder
            .build::<rsa::pkcs1v15::Signature>()
            .map_err(|e| build(&e))?;
        cert.to_pem(der::pem::LineEnding::LF).map_err(|e| build(&e))
    }

    /// Parses PEM (what stock repositories store in the `X` object) or DER.
    pub fn parse(bytes: &[u8]) -> Result<Self, CertificateError> {
        let cert = match Certificate::from_pem(bytes) {
            Ok(c) => c,
            Err(_) => Certificate::from_der(bytes).map_err(CertificateError::Parse)?,
        };
        let der = cert.to_der().map_err(CertificateError::Parse)?;
        let spki_der = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(CertificateError::Parse)?;
        let public_key = RsaPublicKey::from_public_key_der(&spki_der)
            .map_err(|e| CertificateError::Key(e.to_string()))?;
        Ok(RepoCertificate { der, public_key })
    }

    /// The fingerprint listed on the whitelist: the hash of the DER encoding.
    pub fn fingerprint(&self, algo: HashAlgo) -> ContentHash {
        algo.digest(&self.der)
    }

    /// The repository's public key, which verifies manifest signatures.
    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public_key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_parses_with_its_key() {
        let k = crate::cvmfs::signature::generate_key().unwrap();
        let pem = RepoCertificate::generate("test.example.org", &k).unwrap();
        let c = RepoCertificate::parse(pem.as_bytes()).unwrap();
        assert_eq!(c.public_key(), &k.to_public_key());
    }
}
