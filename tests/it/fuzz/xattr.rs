//! The xattr blob of a catalog row: random and mutated blobs decode or are refused; what
//! decodes, the writer can encode again to the same attributes.

use lazyroot::cvmfs::catalog::xattr::{self, Xattrs};
use proptest::prelude::*;

use super::*;

fn check(blob: Vec<u8>) -> Result<Verdict, TestCaseError> {
    let Ok(attrs) = xattr::decode(&blob) else {
        return Ok(Verdict::Caught);
    };
    prop_assert!(attrs.len() <= xattr::MAX_COUNT);
    // A row the reader accepts must be one a publisher can write back (graft, republish).
    let again = xattr::encode(&attrs);
    prop_assert!(
        again.is_ok(),
        "decoded {attrs:?} does not encode: {again:?}"
    );
    prop_assert_eq!(xattr::decode(&again.unwrap()), Ok(attrs));
    Ok(Verdict::Accepted)
}

#[test]
fn random_blobs_decode_or_are_refused() {
    let blobs = prop_oneof![
        random_bytes(300),
        // Version 1 and a small count, so attribute parsing is reached.
        (0u8..4, random_bytes(40)).prop_map(|(n, b)| [vec![1, n], b].concat()),
    ];
    fuzz("xattr/random", 5000, blobs, check);
}

#[test]
fn mutated_blobs_decode_or_are_refused() {
    let mut a = Xattrs::new();
    a.insert(
        b"security.capability".to_vec(),
        vec![1, 0, 0, 2, 0, 0, 0, 0],
    );
    a.insert(b"user.a".to_vec(), vec![]);
    a.insert(b"user.mime".to_vec(), b"text/plain".to_vec());
    fuzz(
        "xattr/mutated",
        5000,
        mutated(xattr::encode(&a).unwrap()),
        check,
    );
}

#[test]
fn an_empty_name_is_refused() {
    // Found by the catalog row fuzzing: a blob naming an attribute "" decoded, and the
    // row then failed to encode again (`encode` refuses empty names).
    assert_eq!(
        xattr::decode(&[1, 1, 0, 0]),
        Err(xattr::XattrError::Malformed("empty name"))
    );
    assert_eq!(
        xattr::decode(&[1, 1, 0, 1, b'v']),
        Err(xattr::XattrError::Malformed("empty name"))
    );
}
