//! The signed-letter framing shared by manifest and whitelist: whatever splits, composes
//! back to the same bytes (nothing is dropped or invented between the parts).

use lazyroot::cvmfs::letter::{Letter, MAX_LETTER};
use proptest::prelude::*;

use super::*;

fn split_composes_back(bytes: Vec<u8>) -> Result<Verdict, TestCaseError> {
    let Ok(l) = Letter::split("manifest", &bytes) else {
        return Ok(Verdict::Caught);
    };
    prop_assert!(bytes.len() <= MAX_LETTER);
    let hash = std::str::from_utf8(l.hash_hex);
    if let Ok(hash) = hash {
        prop_assert_eq!(Letter::compose(l.body, hash, l.signature), bytes.clone());
    }
    prop_assert!(l.body.is_empty() || l.body.ends_with(b"\n"));
    Ok(Verdict::Accepted)
}

#[test]
fn random_bytes_split_or_are_refused() {
    let bytes = prop_oneof![
        random_bytes(512),
        // Random lines around a separator, so that splitting succeeds now and then.
        (random_bytes(64), random_bytes(64), random_bytes(64)).prop_map(|(a, h, s)| [
            a,
            b"\n--\n".to_vec(),
            h,
            b"\n".to_vec(),
            s
        ]
        .concat()),
    ];
    fuzz("letter/random", 2000, bytes, split_composes_back);
}

#[test]
fn mutated_letters_split_or_are_refused() {
    let seed = Letter::compose(b"Cabc\nS2\nNx\n", "ff00", b"\x00--\n\x01\xff");
    fuzz("letter/mutated", 2000, mutated(seed), split_composes_back);
}
