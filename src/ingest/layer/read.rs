//! A layer's tar stream, read once from start to end: headers (ustar, GNU long names, PAX)
//! parsed here with every size bounded before anything is allocated, file contents stored
//! as objects while they stream past, and each member turned into a [`LayerEntry`].

use std::io::{self, Read};

use crate::cvmfs::catalog::xattr::Xattrs;
use crate::cvmfs::hash::HashAlgo;
use crate::publish::content::{store_content, ContentError};
use crate::publish::{walk, ChunkSizes, NoProgress};
use crate::repository::local::LocalStore;

use super::decompress::{Compression, Uncompressed};
use super::entries::{Attrs, LayerEntries, LayerEntry, What};
use super::errors::{LayerError, Problem};
use super::pax;

/// Bounds on what one layer may make this reader do.
#[derive(Debug, Clone)]
pub struct ReadLimits {
    /// Largest PAX extended header or GNU long name / long link accepted, in bytes: they
    /// are read into memory.
    pub max_header_bytes: u64,
    /// Largest ratio of uncompressed to compressed bytes (past the first
    /// [`super::decompress::EXPANSION_SLACK`] bytes); real layers stay far below 100.
    pub max_expansion: u64,
    /// Largest uncompressed stream accepted, in bytes, whatever the compression.
    pub max_uncompressed: u64,
    /// Most tar members (headers included) accepted in one layer.
    pub max_entries: u64,
}

impl Default for ReadLimits {
    /// 1 MiB headers, 250x expansion (gzip of zeros reaches about 1000x), 64 GiB
    /// uncompressed, 2 million members.
    fn default() -> Self {
        ReadLimits {
            max_header_bytes: 1 << 20,
            max_expansion: 250,
            max_uncompressed: 64 << 30,
            max_entries: 2_000_000,
        }
    }
}

/// What reading one layer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar members read (extension headers included).
    pub members: u64,
    /// Regular files stored.
    pub files: u64,
    /// Total size in bytes of those files.
    pub bytes: u64,
    /// Compressed bytes read.
    pub compressed: u64,
    /// Uncompressed bytes read (the whole tar stream).
    pub uncompressed: u64,
    /// Objects written as new.
    pub objects_written: u64,
    /// Objects that were stored already.
    pub objects_reused: u64,
    /// Members skipped: aufs metadata (`.wh..wh.*` other than the opaque marker) and
    /// global PAX headers.
    pub skipped: u64,
}

const BLOCK: usize = 512;

/// Reads one layer: decompresses `compressed`, parses its tar stream, stores each regular
/// file's bytes in `store` as objects of `algo` (chunked with `chunking` above its
/// minimum, as publish does) while streaming, and checks the uncompressed stream's SHA-256
/// against `diff_id` (`sha256:HEX`) when given. `layer` (the digest) names the layer in
/// errors. Objects are stored before the layer is known to be good: run it under
/// [`crate::publish::transaction`] so that a refused layer's objects are removed. The
/// calling thread must not be a rayon pool worker (chunks are compressed on the pool).
#[allow(clippy::too_many_arguments)]
pub fn read_layer(
    compressed: impl Read,
    compression: Compression,
    layer: &str,
    diff_id: Option<&str>,
    store: &LocalStore,
    algo: HashAlgo,
    chunking: Option<ChunkSizes>,
    limits: &ReadLimits,
) -> Result<(LayerEntries, LayerStats), LayerError> {
    let stream = Uncompressed::new(
        compressed,
        compression,
        limits.max_expansion,
        limits.max_uncompressed,
    )
    .map_err(|e| LayerError::stream(layer, Problem::Read(e)))?;
    let mut r = TarReader {
        stream,
        layer,
        store,
        algo,
        chunking,
        limits,
        stats: LayerStats::default(),
        entries: Vec::new(),
    };
    let result = r.run();
    let result = result.map_err(|mut e| {
        // A bomb shows up as a read error wherever it trips; say what it is.
        if let Some(p) = r.stream.tripped() {
            e.problem = p;
        }
        e
    });
    result?;
    let got = r.stream.digest();
    (r.stats.compressed, r.stats.uncompressed) = r.stream.counts();
    if let Some(want) = diff_id {
        if !got.eq_ignore_ascii_case(want) {
            return Err(LayerError::stream(
                layer,
                Problem::DiffId {
                    want: want.to_string(),
                    got,
                },
            ));
        }
    }
    tracing::info!(
        layer,
        members = r.stats.members,
        files = r.stats.files,
        bytes = r.stats.bytes,
        written = r.stats.objects_written,
        reused = r.stats.objects_reused,
        "layer read"
    );
    Ok((
        LayerEntries {
            layer: layer.to_string(),
            entries: r.entries,
        },
        r.stats,
    ))
}

/// Headers that describe the next member.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Vec<pax::Record>,
}

impl Pending {
    fn pax(&self, key: &[u8]) -> Option<&[u8]> {
        // The last record of a key wins, as POSIX says.
        self.pax
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}

struct TarReader<'a> {
    stream: Uncompressed<'a>,
    layer: &'a str,
    store: &'a LocalStore,
    algo: HashAlgo,
    chunking: Option<ChunkSizes>,
    limits: &'a ReadLimits,
    stats: LayerStats,
    entries: Vec<LayerEntry>,
}

impl TarReader<'_> {
    fn err(&self, member: Option<&[u8]>, p: Problem) -> LayerError {
        match member {
            Some(m) => LayerError::member(self.layer, m, p),
            None => LayerError::stream(self.layer, p),
        }
    }

    fn run(&mut self) -> Result<(), LayerError> {
        let mut block = [0u8; BLOCK];
        let mut pending = Pending::default();
        loop {
            let more = read_block(&mut self.stream, &mut block)
                .map_err(|e| self.err(None, Problem::Read(e)))?;
            if !more || block.iter().all(|&b| b == 0) {
                // End of archive (two zero blocks, or the stream's end). What follows is
                // still read: the diff_id covers every byte.
                if pending.long_name.is_some() || pending.long_link.is_some() {
                    return Err(self.err(
                        None,
                        Problem::BadHeader("extension headers without a member".into()),
                    ));
                }
                io::copy(&mut self.stream, &mut io::sink())
                    .map_err(|e| self.err(None, Problem::Read(e)))?;
                return Ok(());
            }
            self.stats.members += 1;
            if self.stats.members > self.limits.max_entries {
                return Err(self.err(None, Problem::TooManyMembers(self.limits.max_entries)));
            }
            check_sum(&block).map_err(|m| self.err(None, Problem::BadHeader(m)))?;
            let h = tar::Header::from_byte_slice(&block);
            let declared = h
                .entry_size()
                .map_err(|e| self.err(None, Problem::BadHeader(e.to_string())))?;
            let et = h.entry_type();
            match et {
                tar::EntryType::GNULongName => {
                    let v = self.extension(declared, "GNU long name")?;
                    pending.long_name = Some(strip_nul(v));
                    continue;
                }
                tar::EntryType::GNULongLink => {
                    let v = self.extension(declared, "GNU long link")?;
                    pending.long_link = Some(strip_nul(v));
                    continue;
                }
                tar::EntryType::XHeader => {
                    let v = self.extension(declared, "PAX")?;
                    pending.pax =
                        pax::parse(&v).map_err(|m| self.err(None, Problem::BadHeader(m)))?;
                    continue;
                }
                tar::EntryType::XGlobalHeader => {
                    // Defaults for all later members; no image tool writes them with
                    // anything that matters to a root filesystem.
                    self.extension(declared, "PAX global")?;
                    self.stats.skipped += 1;
                    continue;
                }
                _ => {}
            }
            let p = std::mem::take(&mut pending);
            let name: Vec<u8> = match (p.pax(b"path"), &p.long_name) {
                (Some(n), _) => n.to_vec(),
                (None, Some(n)) => n.clone(),
                (None, None) => h.path_bytes().into_owned(),
            };
            let size = match p.pax(b"size") {
                Some(v) => parse_u64(v)
                    .ok_or_else(|| self.err(Some(&name), Problem::BadHeader("PAX size".into())))?,
                None => declared,
            };
            let unread = self.member(h, et, &name, size, &p)?;
            skip(&mut self.stream, unread + padding(size))
                .map_err(|e| self.err(Some(&name), Problem::Read(e)))?;
        }
    }

    /// Reads an extension header's data (bounded), and its padding.
    fn extension(&mut self, size: u64, what: &'static str) -> Result<Vec<u8>, LayerError> {
        let limit = self.limits.max_header_bytes;
        if size > limit {
            return Err(self.err(None, Problem::HeaderTooLarge { what, size, limit }));
        }
        let mut v = vec![0u8; size as usize];
        self.stream
            .read_exact(&mut v)
            .and_then(|_| skip(&mut self.stream, padding(size)))
            .map_err(|e| self.err(None, Problem::Read(e)))?;
        Ok(v)
    }

    /// Turns one member into an entry; returns how many of its data bytes are still unread.
    fn member(
        &mut self,
        h: &tar::Header,
        et: tar::EntryType,
        name: &[u8],
        size: u64,
        p: &Pending,
    ) -> Result<u64, LayerError> {
        let layer = self.layer;
        let fail = |p: Problem| LayerError::member(layer, name, p);
        let comps = components(name).map_err(fail)?;
        if comps.iter().any(|c| is_aufs_meta(c)) {
            // aufs' own bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`), not part of the image.
            self.stats.skipped += 1;
            return Ok(size);
        }
        let path = comps.join(&b'/');
        if let Some(last) = comps.last() {
            if *last == b".wh..wh..opq" {
                let dir = comps[..comps.len() - 1].join(&b'/');
                self.entries.push(LayerEntry {
                    path: dir,
                    what: What::Opaque,
                });
                return Ok(size);
            }
            if let Some(target) = last.strip_prefix(b".wh.") {
                if target.is_empty() || target == b"." || target == b".." {
                    return Err(fail(Problem::BadWhiteout(
                        String::from_utf8_lossy(target).into_owned(),
                    )));
                }
                let mut gone = comps[..comps.len() - 1].to_vec();
                gone.push(target);
                self.entries.push(LayerEntry {
                    path: gone.join(&b'/'),
                    what: What::Whiteout,
                });
                return Ok(size);
            }
        }
        let bad = |e: io::Error| LayerError::member(layer, name, Problem::BadHeader(e.to_string()));
        let old = h.as_old();
        let attrs = Attrs {
            mode: or_zero(&old.mode, h.mode()).map_err(bad)? & 0o7777,
            uid: id(p.pax(b"uid"), or_zero(&old.uid, h.uid())).map_err(&fail)?,
            gid: id(p.pax(b"gid"), or_zero(&old.gid, h.gid())).map_err(&fail)?,
            mtime: 0,
            mtime_ns: 0,
            xattrs: xattrs(&p.pax),
        };
        let (mtime, mtime_ns) = match p.pax(b"mtime") {
            Some(v) => pax::time(v).ok_or_else(|| fail(Problem::BadHeader("PAX mtime".into())))?,
            None => (or_zero(&old.mtime, h.mtime()).map_err(bad)? as i64, 0),
        };
        let attrs = Attrs {
            mtime,
            mtime_ns,
            ..attrs
        };
        let link = || -> Option<Vec<u8>> {
            match (p.pax(b"linkpath"), &p.long_link) {
                (Some(l), _) => Some(l.to_vec()),
                (None, Some(l)) => Some(l.clone()),
                (None, None) => h.link_name_bytes().map(|l| l.into_owned()),
            }
        };
        let mut unread = size;
        let what = match et {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let content = self.file(name, size)?;
                unread = 0;
                What::File { attrs, content }
            }
            tar::EntryType::Directory => What::Dir { attrs },
            tar::EntryType::Symlink => {
                let target = link().unwrap_or_default();
                if target.is_empty() {
                    return Err(fail(Problem::EmptySymlink));
                }
                What::Symlink { attrs, target }
            }
            tar::EntryType::Link => {
                let raw = link().unwrap_or_default();
                let shown = || crate::repository::listing::escape(&raw);
                let target = match components(&raw) {
                    Ok(t) if t.is_empty() => return Err(fail(Problem::LinkMissing(shown()))),
                    Ok(t) => t.join(&b'/'),
                    Err(Problem::Absolute | Problem::DotDot) => {
                        return Err(fail(Problem::LinkOutside(shown())))
                    }
                    Err(e) => return Err(fail(e)),
                };
                What::HardLink { target }
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = h.device_major().map_err(bad)?;
                let minor = h.device_minor().map_err(bad)?;
                let (Some(major), Some(minor)) = (major, minor) else {
                    return Err(fail(Problem::BadHeader("device without numbers".into())));
                };
                What::Device {
                    attrs,
                    block: et == tar::EntryType::Block,
                    major,
                    minor,
                }
            }
            tar::EntryType::Fifo => What::Fifo { attrs },
            other => return Err(fail(Problem::Unsupported(other.as_byte() as char))),
        };
        if path.is_empty() && !matches!(what, What::Dir { .. }) {
            return Err(fail(Problem::RootType(kind_name(&what))));
        }
        self.entries.push(LayerEntry { path, what });
        Ok(unread)
    }

    /// Stores a regular file's `size` bytes from the stream.
    fn file(
        &mut self,
        name: &[u8],
        size: u64,
    ) -> Result<crate::publish::content::FileContent, LayerError> {
        let mut data = (&mut self.stream).take(size);
        let stored = store_content(
            &mut data,
            size,
            self.store,
            self.algo,
            self.chunking,
            &NoProgress,
        )
        .map_err(|e| {
            let p = match e {
                ContentError::Read(e) => Problem::Read(e),
                ContentError::Store(e) => Problem::Store(e),
            };
            LayerError::member(self.layer, name, p)
        })?;
        if stored.size != size {
            return Err(LayerError::member(
                self.layer,
                name,
                Problem::Read(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the stream ends {} bytes into a {size}-byte file",
                        stored.size
                    ),
                )),
            ));
        }
        self.stats.files += 1;
        self.stats.bytes += size;
        self.stats.objects_written += stored.written;
        self.stats.objects_reused += stored.reused;
        Ok(stored.content)
    }
}

fn kind_name(w: &What) -> &'static str {
    match w {
        What::Whiteout | What::Opaque => "whiteout",
        What::Dir { .. } => "directory",
        What::File { .. } => "regular file",
        What::Symlink { .. } => "symlink",
        What::HardLink { .. } => "hard link",
        What::Device { .. } => "device",
        What::Fifo { .. } => "fifo",
    }
}

/// `.wh..wh.*` names other than the opaque marker: aufs' metadata.
fn is_aufs_meta(c: &[u8]) -> bool {
    c.starts_with(b".wh..wh.") && c != b".wh..wh..opq"
}

/// The components of a member name or hard link target: `.` and empty components
/// (`./a`, `a//b`, `a/`) drop out; `./` alone is the root (no components). Empty,
/// absolute and `..`-climbing names are refused, as are names with NUL bytes.
pub fn components(name: &[u8]) -> Result<Vec<&[u8]>, Problem> {
    if name.is_empty() {
        return Err(Problem::EmptyName);
    }
    if name[0] == b'/' {
        return Err(Problem::Absolute);
    }
    if name.contains(&0) {
        return Err(Problem::NulInName);
    }
    let mut out = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(Problem::DotDot),
            c => out.push(c),
        }
    }
    if out.len() > walk::MAX_DEPTH {
        return Err(Problem::TooDeep(walk::MAX_DEPTH));
    }
    Ok(out)
}

/// A numeric owner: PAX `uid`/`gid` over the header's, and it must fit 32 bits.
fn id(pax: Option<&[u8]>, header: io::Result<u64>) -> Result<u32, Problem> {
    let v = match pax {
        Some(v) => parse_u64(v).ok_or_else(|| Problem::BadHeader("PAX owner".into()))?,
        None => header.map_err(|e| Problem::BadHeader(e.to_string()))?,
    };
    u32::try_from(v).map_err(|_| Problem::BadHeader(format!("owner id {v} does not fit 32 bits")))
}

/// A numeric header field that is all NULs or spaces is zero, as Go's and GNU's readers
/// take it (some writers leave fields they do not know empty).
fn or_zero<T: Default>(raw: &[u8], parsed: io::Result<T>) -> io::Result<T> {
    if raw.iter().all(|&b| b == 0 || b == b' ') {
        return Ok(T::default());
    }
    parsed
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// `SCHILY.xattr.NAME` records, without the attributes the publisher drops and without
/// empty values (a PAX record with an empty value deletes rather than sets).
fn xattrs(records: &[pax::Record]) -> Xattrs {
    let mut out = Xattrs::new();
    for (k, v) in records {
        if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
            if name.is_empty() || walk::skipped_xattr(name) {
                continue;
            }
            if v.is_empty() {
                out.remove(name);
            } else {
                out.insert(name.to_vec(), v.clone());
            }
        }
    }
    out
}

fn strip_nul(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(end) = v.iter().position(|&b| b == 0) {
        v.truncate(end);
    }
    v
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// The checksum of a header block: the sum of its bytes with the checksum field as spaces.
fn check_sum(block: &[u8; BLOCK]) -> Result<(), String> {
    let h = tar::Header::from_byte_slice(block);
    let want = h.cksum().map_err(|e| e.to_string())?;
    let sum: u32 = block[..148]
        .iter()
        .chain(&block[156..])
        .map(|&b| u32::from(b))
        .sum::<u32>()
        + 8 * 32;
    if sum != want {
        return Err(format!(
            "header checksum {want} where the header sums to {sum}"
        ));
    }
    Ok(())
}

/// Fills `buf`; `false` at a clean end of stream before its first byte.
fn read_block(r: &mut dyn Read, buf: &mut [u8; BLOCK]) -> io::Result<bool> {
    let mut got = 0;
    while got < BLOCK {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ends inside a header",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn skip(r: &mut dyn Read, n: u64) -> io::Result<()> {
    let skipped = io::copy(&mut r.take(n), &mut io::sink())?;
    if skipped != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the stream ends inside a member",
        ));
    }
    Ok(())
}
