//! What the dynamic loader will open after an ELF program: its interpreter (`PT_INTERP`)
//! and the libraries it needs (`DT_NEEDED`). Read from the cached file, which comes from the
//! network and is untrusted: every offset, count and string is bounded, and anything odd
//! just means "nothing to prefetch". 64-bit little-endian only (x86-64, AArch64).

use std::fs::File;
use std::os::unix::fs::FileExt;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// Bounds on what a program header table, dynamic section and strings may make us read.
const MAX_PHDRS: u16 = 128;
const MAX_DYNAMIC: u64 = 1024;
const MAX_NEEDED: usize = 64;
const MAX_STRING: usize = 4096;

/// What the dynamic loader will open after a program.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// The interpreter's path, as written (absolute).
    pub interp: Option<Vec<u8>>,
    /// Library names, as written (`libc.so.6`).
    pub needed: Vec<Vec<u8>>,
    /// The multiarch triplet of the machine, for the library directories.
    pub triplet: Option<&'static str>,
}

struct Phdr {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn read(file: &File, offset: u64, len: usize, size: u64) -> Option<Vec<u8>> {
    if offset.checked_add(len as u64)? > size {
        return None;
    }
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

/// A NUL-terminated string at `offset`, at most `MAX_STRING` bytes.
fn string(file: &File, offset: u64, size: u64) -> Option<Vec<u8>> {
    let len = (size.checked_sub(offset)? as usize).min(MAX_STRING);
    let buf = read(file, offset, len, size)?;
    let end = buf.iter().position(|&b| b == 0)?;
    (end > 0).then(|| buf[..end].to_vec())
}

/// Whether `head` (the file's first bytes) starts an ELF file.
pub fn is_elf(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
}

/// The interpreter and needed libraries of the ELF file `file` of `size` bytes; `None` when
/// it is not a 64-bit little-endian ELF file or is malformed.
pub fn needs(file: &File, size: u64) -> Option<Needs> {
    let h = read(file, 0, 64, size)?;
    if !is_elf(&h) || h[4] != 2 || h[5] != 1 {
        return None; // not ELFCLASS64 / ELFDATA2LSB
    }
    let triplet = match u16_at(&h, 18)? {
        EM_X86_64 => Some("x86_64-linux-gnu"),
        EM_AARCH64 => Some("aarch64-linux-gnu"),
        _ => None,
    };
    let phoff = u64_at(&h, 32)?;
    let phentsize = u16_at(&h, 54)?;
    let phnum = u16_at(&h, 56)?;
    if phentsize < 56 || phnum > MAX_PHDRS {
        return None;
    }
    let table = read(file, phoff, phentsize as usize * phnum as usize, size)?;
    let phdrs: Vec<Phdr> = (0..phnum as usize)
        .filter_map(|i| {
            let p = &table[i * phentsize as usize..];
            Some(Phdr {
                kind: u32_at(p, 0)?,
                offset: u64_at(p, 8)?,
                vaddr: u64_at(p, 16)?,
                filesz: u64_at(p, 32)?,
            })
        })
        .collect();
    let mut needs = Needs {
        triplet,
        ..Needs::default()
    };
    if let Some(p) = phdrs.iter().find(|p| p.kind == PT_INTERP) {
        needs.interp = string(file, p.offset, size).filter(|s| s.starts_with(b"/"));
    }
    let Some(dynamic) = phdrs.iter().find(|p| p.kind == PT_DYNAMIC) else {
        return Some(needs);
    };
    let entries = (dynamic.filesz / 16).min(MAX_DYNAMIC);
    let dynbuf = read(file, dynamic.offset, entries as usize * 16, size)?;
    let mut strtab = None;
    let mut offsets = Vec::new();
    for i in 0..entries as usize {
        let (tag, val) = (u64_at(&dynbuf, i * 16)?, u64_at(&dynbuf, i * 16 + 8)?);
        match tag {
            DT_NULL => break,
            DT_NEEDED if offsets.len() < MAX_NEEDED => offsets.push(val),
            DT_STRTAB => strtab = Some(val),
            _ => {}
        }
    }
    // DT_STRTAB is an address: the load segment that maps it gives its file offset.
    let strtab = strtab?;
    let seg = phdrs
        .iter()
        .find(|p| p.kind == PT_LOAD && strtab >= p.vaddr && strtab - p.vaddr < p.filesz)?;
    let base = seg.offset.checked_add(strtab - seg.vaddr)?;
    for off in offsets {
        if let Some(name) = base.checked_add(off).and_then(|at| string(file, at, size)) {
            // A plain file name; a path in DT_NEEDED is taken as given (rare).
            needs.needed.push(name);
        }
    }
    Some(needs)
}

/// Where the loader looks for `name` by default, in its order: the multiarch directories,
/// then the classic ones (`/lib64` for 64-bit), as Debian-like and Red Hat-like images lay
/// them out. Names with a slash are paths already.
pub fn candidates(name: &[u8], triplet: Option<&str>) -> Vec<Vec<u8>> {
    if name.contains(&b'/') {
        return vec![name.to_vec()];
    }
    let mut dirs: Vec<String> = Vec::new();
    if let Some(t) = triplet {
        dirs.push(format!("/lib/{t}"));
        dirs.push(format!("/usr/lib/{t}"));
    }
    dirs.extend(["/lib64", "/usr/lib64", "/lib", "/usr/lib"].map(String::from));
    dirs.into_iter()
        .map(|d| {
            let mut p = d.into_bytes();
            p.push(b'/');
            p.extend_from_slice(name);
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_program_needs_its_loader_and_libc() {
        // This machine's own programs: dynamically linked, x86-64 or AArch64.
        let path = "/bin/ls";
        let f = File::open(path).unwrap();
        let size = f.metadata().unwrap().len();
        let n = needs(&f, size).expect("an ELF file");
        let interp = n.interp.expect("an interpreter");
        assert!(
            interp.starts_with(b"/lib"),
            "{}",
            String::from_utf8_lossy(&interp)
        );
        assert!(n.needed.iter().any(|l| l == b"libc.so.6"), "{:?}", n.needed);
        assert!(n.triplet.is_some());
    }

    #[test]
    fn anything_else_is_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("text", b"#!/bin/sh\necho hi\n".to_vec()),
            ("short", b"\x7fELF".to_vec()),
            // An ELF header whose program header table lies far past the end.
            ("lying", {
                let mut h = vec![0u8; 64];
                h[..6].copy_from_slice(b"\x7fELF\x02\x01");
                h[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
                h[54..56].copy_from_slice(&56u16.to_le_bytes());
                h[56..58].copy_from_slice(&4u16.to_le_bytes());
                h
            }),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, &bytes).unwrap();
            let f = File::open(&p).unwrap();
            assert_eq!(needs(&f, bytes.len() as u64), None, "{name}");
        }
    }

    #[test]
    fn library_directories_in_the_loaders_order() {
        let c = candidates(b"libc.so.6", Some("x86_64-linux-gnu"));
        assert_eq!(c[0], b"/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(c.last().unwrap(), b"/usr/lib/libc.so.6");
        assert_eq!(candidates(b"/opt/x.so", None), vec![b"/opt/x.so".to_vec()]);
    }
}
