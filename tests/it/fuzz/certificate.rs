//! The repository certificate (PEM or DER X.509): random and mutated certificates are
//! refused or parse; one that parses to the whitelisted fingerprint holds the original key
//! (the fingerprint is what the master key vouches for, so it must pin the key).

use der::{DecodePem, Encode};
use lazyroot::cvmfs::certificate::RepoCertificate;
use lazyroot::cvmfs::hash::HashAlgo;
use proptest::prelude::*;

use super::*;

fn check(bytes: &[u8], original: &RepoCertificate) -> Result<Verdict, TestCaseError> {
    let Ok(c) = RepoCertificate::parse(bytes) else {
        return Ok(Verdict::Caught);
    };
    for algo in [HashAlgo::Sha1, HashAlgo::Rmd160, HashAlgo::Shake128] {
        // Another certificate around the same key is harmless (it is not whitelisted); the
        // whitelisted fingerprint around another key would not be.
        if c.fingerprint(algo) == original.fingerprint(algo) {
            prop_assert_eq!(c.public_key(), original.public_key());
        }
    }
    Ok(Verdict::Accepted)
}

fn original() -> (String, Vec<u8>, RepoCertificate) {
    let pem = RepoCertificate::generate("fuzz.example.org", test_key()).unwrap();
    let der = x509_cert::Certificate::from_pem(pem.as_bytes())
        .unwrap()
        .to_der()
        .unwrap();
    let c = RepoCertificate::parse(pem.as_bytes()).unwrap();
    (pem, der, c)
}

#[test]
fn random_bytes_are_refused() {
    let (_, _, c) = original();
    let bytes = prop_oneof![
        random_bytes(1200),
        random_bytes(600).prop_map(|b| {
            // A DER SEQUENCE header around random content reaches the ASN.1 decoder.
            let mut out = vec![0x30, 0x82, (b.len() >> 8) as u8, b.len() as u8];
            out.extend(b);
            out
        }),
    ];
    fuzz("certificate/random", 1000, bytes, |b| check(&b, &c));
}

#[test]
fn mutated_pem_certificates_are_refused_or_keep_their_key() {
    let (pem, _, c) = original();
    fuzz(
        "certificate/mutated-pem",
        1000,
        mutated(pem.into_bytes()),
        |b| check(&b, &c),
    );
}

#[test]
fn mutated_der_certificates_are_refused_or_keep_their_key() {
    let (_, der, c) = original();
    fuzz("certificate/mutated-der", 1000, mutated(der), |b| {
        check(&b, &c)
    });
}
