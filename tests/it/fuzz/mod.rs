//! Fuzzing: property tests over every parser of bytes that come from a server, a cache or
//! an image (manifest, letter, whitelist, certificate, hashes and timestamps, zlib objects,
//! catalog rows, chunk lists and xattr blobs, ELF headers, HTTP answers). Each property gets
//! random inputs and mutations of a valid input made by the project's own writers, and
//! checks that the parser never panics, stays bounded, and never accepts altered signed
//! content.
//!
//! Bounded for CI: every property runs one batch of a fixed number of cases
//! (`LAZYROOT_FUZZ_CASES` overrides the batch size), and `LAZYROOT_FUZZ_SECONDS` keeps a
//! property running fresh, randomly seeded batches until that many seconds have passed
//! (what `scripts/fuzz-long.sh` uses). Each property prints one `fuzz-tally` line on
//! standard error: cases tried, inputs rejected with an error (caught), accepted, and
//! whether the property failed.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

mod catalog;
mod certificate;
mod elf;
mod http;
mod letter;
mod manifest;
mod object;
mod text;
mod whitelist;
mod xattr;

/// What a parser made of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Refused with an error (or "nothing there" for the ELF reader).
    Caught,
    /// Accepted, and the property's checks on the result held.
    Accepted,
}

/// One case slower than this is a failure: inputs are small, so only a (near) hang is.
const SLOW_CASE: Duration = Duration::from_secs(10);

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs `test` on values of `strategy`: a batch of `default_cases` (or `LAZYROOT_FUZZ_CASES`),
/// repeated in fresh batches until `LAZYROOT_FUZZ_SECONDS` have passed when that is set.
/// Prints the tally, then fails the test with proptest's minimal failing input if any case
/// failed or panicked.
pub fn fuzz<S>(
    area: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<Verdict, TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let cases = env_number("LAZYROOT_FUZZ_CASES").map_or(default_cases, |n| n as u32);
    let budget = env_number("LAZYROOT_FUZZ_SECONDS").map(Duration::from_secs);
    let config = Config {
        cases,
        // Failures are reported with their minimal input; regression files are committed by
        // hand, for real bugs only, so nothing is written into the source tree.
        failure_persistence: None,
        max_shrink_iters: 2048,
        max_shrink_time: 60_000,
        ..Config::default()
    };
    let (tried, caught, accepted) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    let outcome = loop {
        let mut runner = TestRunner::new(config.clone());
        let result = runner.run(&strategy, |value| {
            tried.fetch_add(1, Ordering::Relaxed);
            let t = Instant::now();
            let verdict = test(value)?;
            if t.elapsed() > SLOW_CASE {
                return Err(TestCaseError::fail(format!(
                    "one case took {:?}",
                    t.elapsed()
                )));
            }
            match verdict {
                Verdict::Caught => caught.fetch_add(1, Ordering::Relaxed),
                Verdict::Accepted => accepted.fetch_add(1, Ordering::Relaxed),
            };
            Ok(())
        });
        if result.is_err() || budget.is_none_or(|b| start.elapsed() >= b) {
            break result;
        }
    };
    eprintln!(
        "fuzz-tally area={area} tried={} caught={} accepted={} failed={} seconds={:.1}",
        tried.into_inner(),
        caught.into_inner(),
        accepted.into_inner(),
        u8::from(outcome.is_err()),
        start.elapsed().as_secs_f64()
    );
    if let Err(e) = outcome {
        panic!("fuzz {area}: {e}");
    }
}

/// Numbers at the edges of the integer types, as text: what overflows a careless parser.
pub const HUGE: &[&str] = &[
    "0",
    "-1",
    "-0",
    "+1",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "1e9",
    "0x10",
];

/// One edit of a byte string. Positions are taken modulo the length, so any value is valid
/// for any input.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flips one bit.
    FlipBit(usize, u8),
    /// Overwrites one byte.
    SetByte(usize, u8),
    /// Cuts the input at a position.
    Truncate(usize),
    /// Inserts bytes at a position.
    Insert(usize, Vec<u8>),
    /// Removes up to `n` bytes from a position.
    Remove(usize, usize),
    /// Repeats a range of bytes right after itself.
    Duplicate(usize, usize),
    /// Repeats one line (fields of line-based formats).
    DuplicateLine(usize),
    /// Drops one line.
    DropLine(usize),
    /// Swaps two lines.
    SwapLines(usize, usize),
    /// Replaces one run of decimal digits with a number from [`HUGE`].
    HugeNumber(usize, usize),
    /// Replaces what follows the first byte of a line (the value of a one-letter field)
    /// with a number from [`HUGE`].
    HugeField(usize, usize),
    /// Inserts a byte repeated `n` times: an overlong field.
    Overlong(usize, u8, usize),
    /// Inserts a byte sequence that is not UTF-8.
    InvalidUtf8(usize),
}

/// Mutations, weighted towards the small edits that keep most of a valid input intact.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    let pos = any::<usize>();
    prop_oneof![
        4 => (pos, 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        2 => (pos, any::<u8>()).prop_map(|(p, b)| Mutation::SetByte(p, b)),
        1 => pos.prop_map(Mutation::Truncate),
        2 => (pos, proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
        1 => (pos, 1usize..64).prop_map(|(p, n)| Mutation::Remove(p, n)),
        1 => (pos, 1usize..64).prop_map(|(p, n)| Mutation::Duplicate(p, n)),
        2 => pos.prop_map(Mutation::DuplicateLine),
        1 => pos.prop_map(Mutation::DropLine),
        1 => (pos, pos).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        2 => (pos, 0..HUGE.len()).prop_map(|(p, h)| Mutation::HugeNumber(p, h)),
        2 => (pos, 0..HUGE.len()).prop_map(|(p, h)| Mutation::HugeField(p, h)),
        1 => (pos, any::<u8>(), prop_oneof![1usize..300, 4000usize..70_000])
            .prop_map(|(p, b, n)| Mutation::Overlong(p, b, n)),
        1 => pos.prop_map(Mutation::InvalidUtf8),
    ]
}

/// One to four mutations.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 1..=4)
}

/// Random bytes of up to `max` bytes.
pub fn random_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=max)
}

/// Random bytes, or random text matching the regex `body` in the letter layout (body, a
/// hash, a signature), so that a signed file's body parser is reached, not only the split.
pub fn random_letters(body: &'static str) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        random_bytes(600),
        (body, "[0-9a-f]{40}", random_bytes(300)).prop_map(|(body, hash, sig)| {
            lazyroot::cvmfs::letter::Letter::compose(body.as_bytes(), &hash, &sig)
        }),
    ]
}

/// Lines of `b`, each with its newline (the last one perhaps without).
fn lines(b: &[u8]) -> Vec<Vec<u8>> {
    b.split_inclusive(|&c| c == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// `b` with `ms` applied in order.
pub fn apply(b: &[u8], ms: &[Mutation]) -> Vec<u8> {
    let mut b = b.to_vec();
    for m in ms {
        apply_one(&mut b, m);
    }
    b
}

fn apply_one(b: &mut Vec<u8>, m: &Mutation) {
    let at = |p: usize, len: usize| if len == 0 { 0 } else { p % len };
    let len = b.len();
    match m {
        Mutation::FlipBit(p, bit) if len > 0 => b[at(*p, len)] ^= 1 << bit,
        Mutation::SetByte(p, v) if len > 0 => b[at(*p, len)] = *v,
        Mutation::Truncate(p) => b.truncate(at(*p, len + 1)),
        Mutation::Insert(p, bytes) => {
            let i = at(*p, len + 1);
            b.splice(i..i, bytes.iter().copied());
        }
        Mutation::Remove(p, n) if len > 0 => {
            let i = at(*p, len);
            b.drain(i..(i + n).min(len));
        }
        Mutation::Duplicate(p, n) if len > 0 => {
            let i = at(*p, len);
            let piece = b[i..(i + n).min(len)].to_vec();
            let end = i + piece.len();
            b.splice(end..end, piece);
        }
        Mutation::DuplicateLine(p) | Mutation::DropLine(p) => {
            let mut ls = lines(b);
            if ls.is_empty() {
                return;
            }
            let i = at(*p, ls.len());
            if matches!(m, Mutation::DropLine(_)) {
                ls.remove(i);
            } else {
                let l = ls[i].clone();
                ls.insert(i, l);
            }
            *b = ls.concat();
        }
        Mutation::HugeField(p, h) => {
            let mut ls = lines(b);
            if ls.is_empty() {
                return;
            }
            let i = at(*p, ls.len());
            let key = ls[i].first().copied().unwrap_or(b'T');
            ls[i] = [&[key][..], HUGE[*h].as_bytes(), b"\n"].concat();
            *b = ls.concat();
        }
        Mutation::SwapLines(x, y) => {
            let mut ls = lines(b);
            if ls.is_empty() {
                return;
            }
            let n = ls.len();
            ls.swap(at(*x, n), at(*y, n));
            *b = ls.concat();
        }
        Mutation::HugeNumber(p, h) => {
            let mut runs = Vec::new();
            let mut i = 0;
            while i < len {
                if b[i].is_ascii_digit() {
                    let s = i;
                    while i < len && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    runs.push(s..i);
                } else {
                    i += 1;
                }
            }
            if runs.is_empty() {
                return;
            }
            let r = runs[at(*p, runs.len())].clone();
            b.splice(r, HUGE[*h].bytes());
        }
        Mutation::Overlong(p, v, n) => {
            let i = at(*p, len + 1);
            b.splice(i..i, std::iter::repeat_n(*v, *n));
        }
        Mutation::InvalidUtf8(p) => {
            let i = at(*p, len + 1);
            b.splice(i..i, [0xc3, 0x28, 0xff]);
        }
        _ => {}
    }
}

/// Mutations of `seed`: the input for "mutated valid" properties.
pub fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    mutations().prop_map(move |ms| apply(&seed, &ms))
}

/// One RSA key per test binary: key generation is the slow part of signing.
pub fn test_key() -> &'static rsa::RsaPrivateKey {
    static KEY: std::sync::OnceLock<rsa::RsaPrivateKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| lazyroot::cvmfs::signature::generate_key().unwrap())
}
