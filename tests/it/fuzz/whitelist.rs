//! `.cvmfswhitelist`: random bytes are refused; a signed whitelist with any mutation is
//! refused unless its content is unchanged; odd bodies signed again parse to what they write.

use lazyroot::cvmfs::hash::{ContentHash, HashAlgo};
use lazyroot::cvmfs::letter::Letter;
use lazyroot::cvmfs::signature;
use lazyroot::cvmfs::whitelist::Whitelist;
use proptest::prelude::*;

use super::*;

fn sample() -> Whitelist {
    let mut w = Whitelist::new(
        "fuzz.example.org",
        HashAlgo::Sha1.digest(b"cert"),
        1_445_428_515,
        30,
    );
    w.fingerprints.push(HashAlgo::Sha1.digest(b"second cert"));
    w
}

fn check_signed(bytes: &[u8], original: &Whitelist) -> Result<Verdict, TestCaseError> {
    match Whitelist::verify(bytes, &[test_key().to_public_key()]) {
        Err(_) => Ok(Verdict::Caught),
        Ok(w) => {
            prop_assert_eq!(&w, original, "an altered whitelist verified");
            // The checks on a verified whitelist take any values without overflow.
            let fp: ContentHash = w.fingerprints[0];
            let _ = w.check(&w.fqrn, i64::MAX, &fp);
            let _ = w.check(&w.fqrn, i64::MIN, &fp);
            Ok(Verdict::Accepted)
        }
    }
}

#[test]
fn random_bytes_are_refused() {
    let original = sample();
    let bytes = random_letters("[0-9]{14}\nE[0-9]{14}\nN[ -~]{0,20}\n([0-9A-F:]{0,70}\n){0,3}");
    fuzz("whitelist/random", 1000, bytes, |b| {
        let v = check_signed(&b, &original)?;
        prop_assert_eq!(v, Verdict::Caught, "random bytes verified");
        Ok(v)
    });
}

#[test]
fn mutated_signed_whitelists_are_refused_unless_unchanged() {
    let original = sample();
    let signed = original.sign(test_key()).unwrap();
    fuzz("whitelist/mutated", 1000, mutated(signed), |b| {
        check_signed(&b, &original)
    });
}

#[test]
fn mutated_then_resigned_bodies_parse_to_what_they_write() {
    let signed = sample().sign(test_key()).unwrap();
    let body = Letter::split("whitelist", &signed).unwrap().body.to_vec();
    let key = test_key();
    let public = [key.to_public_key()];
    fuzz("whitelist/resigned", 300, mutated(body), |body| {
        let hash = HashAlgo::Sha1.digest(&body).to_hex();
        let sig = signature::sign_raw(key, hash.as_bytes()).unwrap();
        let bytes = Letter::compose(&body, &hash, &sig);
        let Ok(parsed) = Whitelist::verify(&bytes, &public) else {
            return Ok(Verdict::Caught);
        };
        if let Some(fp) = parsed.fingerprints.first() {
            let _ = parsed.check(&parsed.fqrn, 0, fp);
        }
        // Signing writes the fingerprints' algorithm; an empty list signs as SHA-1.
        let again = parsed.sign(key).unwrap();
        let back = Whitelist::verify(&again, &public);
        prop_assert!(
            matches!(&back, Ok(w) if *w == parsed),
            "{parsed:?} wrote back as {back:?}"
        );
        Ok(Verdict::Accepted)
    });
}
