//! `.cvmfspublished`: random bytes are refused; a signed manifest with any mutation is
//! refused unless what it says is unchanged; a manifest with odd fields that is signed again
//! parses, and what parses writes back to the same fields.

use lazyroot::cvmfs::hash::HashAlgo;
use lazyroot::cvmfs::letter::Letter;
use lazyroot::cvmfs::manifest::{Manifest, ROOT_PATH_MD5};
use lazyroot::cvmfs::signature;
use proptest::prelude::*;

use super::*;

fn sample() -> Manifest {
    let algo = HashAlgo::Sha1;
    Manifest {
        root_catalog: algo.digest(b"root"),
        root_catalog_size: 14336,
        root_path_md5: ROOT_PATH_MD5.into(),
        ttl: 240,
        revision: 7,
        garbage_collectable: false,
        alt_catalog_path: true,
        fqrn: "fuzz.example.org".into(),
        certificate: Some(algo.digest(b"cert")),
        history: Some(algo.digest(b"hist")),
        timestamp: 1_445_428_515,
        meta_info: Some(algo.digest(b"meta")),
        reflog: Some(algo.digest(b"reflog")),
    }
}

/// Parses and verifies; accepted only if the content is the signed original's.
fn check_signed(bytes: &[u8], original: &Manifest) -> Result<Verdict, TestCaseError> {
    let Ok((parsed, letter)) = Manifest::parse_unverified(bytes) else {
        return Ok(Verdict::Caught);
    };
    if Manifest::verify_letter(&letter, &test_key().to_public_key()).is_err() {
        return Ok(Verdict::Caught);
    }
    prop_assert_eq!(&parsed, original, "an altered manifest verified");
    let body = original.body();
    prop_assert_eq!(letter.body, body.as_bytes());
    Ok(Verdict::Accepted)
}

#[test]
fn random_bytes_are_refused() {
    let original = sample();
    let bytes = random_letters("([A-Z][ -~]{0,50}\n){0,12}");
    fuzz("manifest/random", 1000, bytes, |b| {
        let v = check_signed(&b, &original)?;
        prop_assert_eq!(v, Verdict::Caught, "random bytes verified");
        Ok(v)
    });
}

#[test]
fn mutated_signed_manifests_are_refused_unless_unchanged() {
    let original = sample();
    let signed = original.sign(test_key()).unwrap();
    fuzz("manifest/mutated", 1000, mutated(signed), |b| {
        check_signed(&b, &original)
    });
}

#[test]
fn mutated_then_resigned_bodies_parse_to_what_they_write() {
    let body = sample().body().into_bytes();
    let key = test_key();
    fuzz("manifest/resigned", 300, mutated(body), |body| {
        // Signed again as a publisher would: only the body parser stands between the
        // mutation and the client.
        let hash = HashAlgo::Sha1.digest(&body).to_hex();
        let sig = signature::sign_digest_sha1(key, hash.as_bytes()).unwrap();
        let bytes = Letter::compose(&body, &hash, &sig);
        let Ok((parsed, letter)) = Manifest::parse_unverified(&bytes) else {
            return Ok(Verdict::Caught);
        };
        prop_assert!(Manifest::verify_letter(&letter, &key.to_public_key()).is_ok());
        // What a reader accepts, it can write back unchanged (republish, resign, info).
        let again = parsed.sign(key).unwrap();
        let back = Manifest::parse_unverified(&again).map(|(m, _)| m);
        prop_assert!(
            matches!(&back, Ok(m) if *m == parsed),
            "{parsed:?} wrote back as {back:?}"
        );
        Ok(Verdict::Accepted)
    });
}

#[test]
fn a_timestamp_past_i64_is_refused_not_wrapped() {
    // Found by `mutated_then_resigned_bodies_parse_to_what_they_write`: T9223372036854775808
    // parsed as the time i64::MIN, and signing that manifest again wrote `T-92…08`, which no
    // reader accepts.
    let body = sample()
        .body()
        .replace("T1445428515", "T9223372036854775808");
    let hash = HashAlgo::Sha1.digest(body.as_bytes()).to_hex();
    let sig = signature::sign_digest_sha1(test_key(), hash.as_bytes()).unwrap();
    let bytes = Letter::compose(body.as_bytes(), &hash, &sig);
    let err = Manifest::parse_unverified(&bytes)
        .map(|(m, _)| m)
        .unwrap_err();
    assert!(
        matches!(
            err,
            lazyroot::cvmfs::manifest::ManifestError::Field { key: 'T', .. }
        ),
        "{err}"
    );
    let max = sample()
        .body()
        .replace("T1445428515", "T9223372036854775807");
    let bytes = Letter::compose(max.as_bytes(), &hash, &sig);
    assert_eq!(
        Manifest::parse_unverified(&bytes).unwrap().0.timestamp,
        i64::MAX
    );
}
