//! The key files of a repository, named as stock CernVM-FS names them so keys move freely
//! between the two: `<fqrn>.masterkey` (signs the whitelist), `<fqrn>.pub` (what clients
//! trust), `<fqrn>.key` and `<fqrn>.crt` (the repository key and certificate).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rsa::{RsaPrivateKey, RsaPublicKey};

use crate::cvmfs::certificate::{CertificateError, RepoCertificate};
use crate::cvmfs::signature::{self, KeyError};

#[derive(Debug, Clone)]
pub struct KeyPaths {
    pub dir: PathBuf,
    pub fqrn: String,
}

impl KeyPaths {
    pub fn new(dir: impl Into<PathBuf>, fqrn: &str) -> Self {
        KeyPaths {
            dir: dir.into(),
            fqrn: fqrn.to_string(),
        }
    }
    fn file(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.fqrn))
    }
    pub fn master_key(&self) -> PathBuf {
        self.file("masterkey")
    }
    pub fn master_public(&self) -> PathBuf {
        self.file("pub")
    }
    pub fn repo_key(&self) -> PathBuf {
        self.file("key")
    }
    pub fn certificate(&self) -> PathBuf {
        self.file("crt")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the certificate {cert} does not belong to the repository key {key}")]
    Mismatch { cert: String, key: String },
}

/// What a publisher signs with.
pub struct SigningKeys {
    pub repo_key: RsaPrivateKey,
    pub certificate_pem: String,
}

impl SigningKeys {
    /// Loads the repository key and certificate and checks that they belong together.
    pub fn load(paths: &KeyPaths) -> Result<Self, KeysError> {
        let repo_key = signature::load_private_key(&paths.repo_key())?;
        let cert_path = paths.certificate();
        let certificate_pem = fs::read_to_string(&cert_path).map_err(|source| KeyError::Read {
            path: cert_path.display().to_string(),
            source,
        })?;
        let cert = RepoCertificate::parse(certificate_pem.as_bytes())?;
        if cert.public_key() != &repo_key.to_public_key() {
            return Err(KeysError::Mismatch {
                cert: cert_path.display().to_string(),
                key: paths.repo_key().display().to_string(),
            });
        }
        Ok(SigningKeys {
            repo_key,
            certificate_pem,
        })
    }

    pub fn certificate(&self) -> RepoCertificate {
        RepoCertificate::parse(self.certificate_pem.as_bytes()).expect("checked at load")
    }
}

pub fn load_master_key(paths: &KeyPaths) -> Result<RsaPrivateKey, KeyError> {
    signature::load_private_key(&paths.master_key())
}

pub fn load_master_public(path: &Path) -> Result<RsaPublicKey, KeyError> {
    signature::load_public_key(path)
}

/// Creates whatever keys are missing (an operator may bring an existing master key).
/// Private keys are written 0400, public files 0444, as `cvmfs_server` does.
pub fn ensure_keys(paths: &KeyPaths) -> Result<(), KeysError> {
    fs::create_dir_all(&paths.dir).map_err(|source| KeysError::Write {
        path: paths.dir.display().to_string(),
        source,
    })?;
    if !paths.master_key().exists() {
        let master = signature::generate_key()?;
        write_new(
            &paths.master_key(),
            signature::private_key_pem(&master).as_bytes(),
            0o400,
        )?;
        write_new(
            &paths.master_public(),
            signature::public_key_pem(&master.to_public_key()).as_bytes(),
            0o444,
        )?;
    } else if !paths.master_public().exists() {
        let master = load_master_key(paths)?;
        write_new(
            &paths.master_public(),
            signature::public_key_pem(&master.to_public_key()).as_bytes(),
            0o444,
        )?;
    }
    if !paths.repo_key().exists() {
        let key = signature::generate_key()?;
        write_new(
            &paths.repo_key(),
            signature::private_key_pem(&key).as_bytes(),
            0o400,
        )?;
        let pem = RepoCertificate::generate(&paths.fqrn, &key)?;
        write_new(&paths.certificate(), pem.as_bytes(), 0o444)?;
    }
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeysError> {
    let err = |source| KeysError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(err)
}
