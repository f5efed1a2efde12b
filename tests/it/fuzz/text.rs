//! The small textual fields: content hashes, certificate fingerprints, whitelist timestamps,
//! repository names. Whatever parses writes back to itself.

use lazyroot::cvmfs::hash::{ContentHash, HashAlgo};
use lazyroot::cvmfs::{fqrn, timefmt};
use proptest::prelude::*;

use super::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,80}",
        "[0-9a-fA-F]{38,42}(-rmd160|-shake128|-md5|-)?",
        "([0-9A-Fa-f]{2}:){19}[0-9A-Fa-f]{2}(-RMD160|-SHAKE128|-X)?",
        "[0-9]{12,16}",
        "[a-z0-9.-]{0,70}",
        mutated(HashAlgo::Shake128.digest(b"x").to_hex().into_bytes())
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        mutated(b"20151120115513".to_vec()).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

#[test]
fn hashes_fingerprints_timestamps_and_names_round_trip() {
    fuzz("text", 5000, text(), |s| {
        let mut verdict = Verdict::Caught;
        if let Ok(h) = ContentHash::parse(&s) {
            prop_assert_eq!(ContentHash::parse(&h.to_hex()), Ok(h));
            prop_assert_eq!(h.to_hex(), s.to_ascii_lowercase());
            verdict = Verdict::Accepted;
        }
        if let Ok(h) = ContentHash::parse_fingerprint(&s) {
            prop_assert_eq!(ContentHash::parse_fingerprint(&h.to_fingerprint()), Ok(h));
            verdict = Verdict::Accepted;
        }
        if let Some(t) = timefmt::parse_compact(&s) {
            // Day 31 of a short month or second 60 normalise; the instant round-trips.
            prop_assert_eq!(timefmt::parse_compact(&timefmt::compact(t)), Some(t));
            verdict = Verdict::Accepted;
        }
        if fqrn::validate(&s).is_ok() {
            verdict = Verdict::Accepted;
        }
        Ok(verdict)
    });
}
