//! ELF headers of files in an image (the prefetcher reads them to learn the interpreter and
//! libraries): random and mutated headers of a real program give "nothing" or bounded
//! results, never a panic or an unbounded read.

use std::io::{Seek, Write};

use lazyroot::mount::elf;
use proptest::prelude::*;

use super::*;

/// Where the mutations go: anywhere in the headers, or in the dynamic section.
#[derive(Debug, Clone)]
enum Edit {
    /// Byte-level mutations of the first 4 KiB (ELF header and program headers).
    Head(Vec<Mutation>),
    /// A 2, 4 or 8-byte field at an offset in the first 4 KiB set to an edge value.
    Field(usize, u8, u64),
    /// Byte-level mutations of the dynamic section.
    Dynamic(Vec<Mutation>),
}

fn edge() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(u64::MAX - 7),
        Just(i64::MAX as u64),
        Just(u32::MAX as u64),
        Just(u16::MAX as u64),
        Just(1 << 32),
        0u64..4096,
        any::<u64>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => mutations().prop_map(Edit::Head),
        3 => (0usize..4096, prop_oneof![Just(2u8), Just(4), Just(8)], edge())
            .prop_map(|(at, w, v)| Edit::Field(at, w, v)),
        2 => mutations().prop_map(Edit::Dynamic),
    ]
}

/// The file offset and size of the PT_DYNAMIC segment of a 64-bit ELF file.
fn dynamic_section(b: &[u8]) -> Option<(usize, usize)> {
    let u16_at = |at: usize| u16::from_le_bytes(b[at..at + 2].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (u64_at(32) as usize, u16_at(54) as usize, u16_at(56));
    (0..phnum as usize).find_map(|i| {
        let p = phoff + i * phentsize;
        (u32::from_le_bytes(b[p..p + 4].try_into().unwrap()) == 2)
            .then(|| (u64_at(p + 8) as usize, u64_at(p + 32) as usize))
    })
}

/// `b` with `e` applied; `dynamic` is where the seed's dynamic section is.
fn apply_edit(mut b: Vec<u8>, e: &Edit, dynamic: (usize, usize)) -> Vec<u8> {
    match e {
        Edit::Head(ms) => {
            let head = apply(&b[..4096.min(b.len())], ms);
            b.splice(..4096.min(b.len()), head);
        }
        Edit::Field(at, width, v) => {
            let w = *width as usize;
            if b.len() >= w {
                let at = (*at).min(b.len() - w);
                b[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
        }
        Edit::Dynamic(ms) => {
            let (off, len) = dynamic;
            let end = (off + len).min(b.len());
            if off < end {
                let piece = apply(&b[off..end], ms);
                b.splice(off..end, piece);
            }
        }
    }
    b
}

#[test]
fn mutated_elf_headers_give_bounded_results_or_nothing() {
    let seed = std::fs::read("/bin/true").unwrap();
    assert!(elf::is_elf(&seed));
    let dynamic = dynamic_section(&seed).expect("/bin/true is dynamically linked");
    let file = tempfile::tempfile().unwrap();
    let input = prop_oneof![
        3 => proptest::collection::vec(edit(), 1..=3).prop_map(move |es| {
            es.iter().fold(seed.clone(), |b, e| apply_edit(b, e, dynamic))
        }),
        1 => random_bytes(4096),
        1 => random_bytes(200).prop_map(|b| [b"\x7fELF\x02\x01".to_vec(), b].concat()),
    ];
    fuzz("elf", 1500, input, move |bytes| {
        let mut f = &file;
        f.set_len(0).unwrap();
        f.rewind().unwrap();
        f.write_all(&bytes).unwrap();
        // A size beyond the file's end (a sparse or still-downloading cache file) too.
        let mut verdict = Verdict::Caught;
        for size in [bytes.len() as u64, bytes.len() as u64 + 4096] {
            let Some(n) = elf::needs(&file, size) else {
                continue;
            };
            verdict = Verdict::Accepted;
            prop_assert!(n.needed.len() <= 64);
            for s in n.needed.iter().chain(&n.interp) {
                prop_assert!(!s.is_empty() && s.len() < 4096 && !s.contains(&0));
                let _ = elf::candidates(s, n.triplet);
            }
            prop_assert!(n.interp.as_ref().is_none_or(|i| i.starts_with(b"/")));
        }
        Ok(verdict)
    });
}
