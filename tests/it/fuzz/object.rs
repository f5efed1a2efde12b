//! zlib objects: random and mutated streams inflate within the limit or are refused; a
//! mutated object never passes verification against its name.

use lazyroot::cvmfs::hash::HashAlgo;
use lazyroot::cvmfs::object::{self, ObjectKind, ObjectName};
use proptest::prelude::*;

use super::*;

const LIMIT: u64 = 100_000;

#[test]
fn random_streams_inflate_within_the_limit_or_are_refused() {
    let bytes = prop_oneof![
        random_bytes(2000),
        // A valid zlib header, so the inflater reaches the random blocks.
        random_bytes(2000).prop_map(|b| [vec![0x78, 0x9c], b].concat()),
    ];
    fuzz(
        "object/random",
        2000,
        bytes,
        |b| match object::inflate_bounded("fuzz", &b, LIMIT) {
            Ok(out) => {
                prop_assert!(out.len() as u64 <= LIMIT);
                Ok(Verdict::Accepted)
            }
            Err(_) => Ok(Verdict::Caught),
        },
    );
}

#[test]
fn mutated_objects_fail_verification_or_are_unchanged() {
    // Text and a long run of zeros: literal and back-reference blocks; the run is a small
    // zlib bomb against a limit below its size.
    let data = [b"Cabc\nS2\n".repeat(200), vec![0u8; 200_000]].concat();
    let (compressed, hash) = object::compress_and_hash(HashAlgo::Sha1, &data);
    let name = ObjectName::new(hash, ObjectKind::Chunk);
    fuzz("object/mutated", 1000, mutated(compressed.clone()), |b| {
        if let Ok(out) = object::inflate_bounded("fuzz", &b, LIMIT) {
            prop_assert!(out.len() as u64 <= LIMIT);
        }
        match object::open_verified(&name, &b, data.len() as u64) {
            Ok(out) => {
                prop_assert_eq!(&b, &compressed, "an altered object verified");
                prop_assert!(out == data);
                Ok(Verdict::Accepted)
            }
            Err(_) => Ok(Verdict::Caught),
        }
    });
}
