//! A listing of every entry of a snapshot, one line each, in the layout of the fixture's
//! `expected-listing.tsv`: path, type, permissions, uid:gid, mtime, size, nlink, SHA-1 of
//! the content, symlink target, xattrs. Made to compare trees across implementations.

use std::fmt::Write as _;

use sha1::{Digest, Sha1};

use crate::cvmfs::catalog::EntryKind;
use crate::repository::{Found, RepoError, Snapshot};

/// Non-printable bytes become `\xNN`.
pub fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if (0x20..0x7f).contains(&c) {
            s.push(c as char);
        } else {
            let _ = write!(s, "\\x{c:02x}");
        }
    }
    s
}

/// One listing line for an entry; reads the file content to hash it.
pub fn line(snap: &Snapshot<'_>, f: &Found) -> Result<String, RepoError> {
    let e = &f.entry;
    let kind = e.kind();
    let path = if f.path.is_empty() {
        "/".to_string()
    } else {
        escape(&f.path)
    };
    let size = match kind {
        EntryKind::Directory => "0".to_string(),
        EntryKind::CharDevice | EntryKind::BlockDevice => {
            let d = e.rdev() as libc::dev_t;
            format!("{}:{}", libc::major(d), libc::minor(d))
        }
        _ => e.size.to_string(),
    };
    let nlink = if kind == EntryKind::File {
        e.link_count().max(1).to_string()
    } else {
        "-".to_string()
    };
    let digest = if kind == EntryKind::File {
        let mut h = HashWriter(Sha1::new());
        snap.read_found(f, &mut h)?;
        hex::encode(h.0.finalize())
    } else {
        String::new()
    };
    let xattrs = e
        .xattrs
        .as_ref()
        .map(|x| {
            x.iter()
                .map(|(k, v)| format!("{}={}", escape(k), hex::encode(v)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    Ok(format!(
        "{path}\t{}\t{:04o}\t{}:{}\t{}\t{size}\t{nlink}\t{digest}\t{}\t{xattrs}",
        kind.letter(),
        e.permissions(),
        e.uid,
        e.gid,
        e.mtime,
        escape(&e.symlink),
    ))
}

struct HashWriter(Sha1);
impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every entry below `path`, sorted by path bytes.
pub fn listing(snap: &Snapshot<'_>, path: &[u8]) -> Result<Vec<String>, RepoError> {
    let mut found = Vec::new();
    snap.walk(path, &mut |f| {
        found.push(f.clone());
        Ok(())
    })?;
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found.iter().map(|f| line(snap, f)).collect()
}
