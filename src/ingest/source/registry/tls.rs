//! TLS for registries: rustls (ring) with the system's roots (`rustls-native-certs`, i.e.
//! `/etc/ssl/certs` on Debian) and the PEM files given with `--ca`, HTTP/1.1 only.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::errors::RegistryError;

/// The client configuration: system roots plus `ca_files`.
pub(crate) fn client_config(
    ca_files: &[PathBuf],
) -> Result<Arc<rustls::ClientConfig>, RegistryError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "a system root certificate could not be loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system root certificates");
    for path in ca_files {
        let ca_err = |source| RegistryError::CaFile {
            path: path.clone(),
            source,
        };
        let bytes = std::fs::read(path).map_err(ca_err)?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| ca_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        if certs.is_empty() {
            return Err(ca_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no PEM certificate in it",
            )));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| ca_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(RegistryError::TlsSetup)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
