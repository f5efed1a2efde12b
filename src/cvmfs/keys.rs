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

/// Where a repository's key files live: `<dir>/<fqrn>.<ext>`, as stock CernVM-FS names them.
#[derive(Debug, Clone)]
pub struct KeyPaths {
    /// Directory holding the key files.
    pub dir: PathBuf,
    /// Fully qualified repository name; the stem of every key file name.
    pub fqrn: String,
}

impl KeyPaths {
    /// The key files of repository `fqrn` in `dir` (nothing is read or created).
    pub fn new(dir: impl Into<PathBuf>, fqrn: &str) -> Self {
        KeyPaths {
            dir: dir.into(),
            fqrn: fqrn.to_string(),
        }
    }
    fn file(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.fqrn))
    }
    /// `<fqrn>.masterkey`: the master private key, which signs the whitelist.
    pub fn master_key(&self) -> PathBuf {
        self.file("masterkey")
    }
    /// `<fqrn>.pub`: the master public key, the one clients trust.
    pub fn master_public(&self) -> PathBuf {
        self.file("pub")
    }
    /// `<fqrn>.key`: the repository private key, which signs the manifest.
    pub fn repo_key(&self) -> PathBuf {
        self.file("key")
    }
    /// `<fqrn>.crt`: the repository certificate (PEM) holding the repository public key.
    pub fn certificate(&self) -> PathBuf {
        self.file("crt")
    }
}

/// Why the key files could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// A key file could not be read, parsed, generated or used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The certificate could not be parsed or generated.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// Creating the key directory or writing a key file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The directory or file being written.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The certificate's public key is not that of the repository key.
    #[error("the certificate {cert} does not belong to the repository key {key}")]
    Mismatch {
        /// Path of the certificate file.
        cert: String,
        /// Path of the repository key file.
        key: String,
    },
}

/// What a publisher signs with.
pub struct SigningKeys {
    /// The repository private key, which signs the manifest.
    pub repo_key: RsaPrivateKey,
    /// The repository certificate as PEM text, stored compressed as the `X` object on publish.
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

    /// The parsed certificate (it was parsed and checked by [`SigningKeys::load`]).
    pub fn certificate(&self) -> RepoCertificate {
        RepoCertificate::parse(self.certificate_pem.as_bytes()).expect("checked at load")
    }
}

/// Loads the master private key (`<fqrn>.masterkey`), which signs the whitelist.
pub fn load_master_key(paths: &KeyPaths) -> Result<RsaPrivateKey, KeyError> {
    signature::load_private_key(&paths.master_key())
}

/// Loads a master public key (a `.pub` file, PEM) that a reader trusts.
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
