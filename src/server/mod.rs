//! HTTP/1.1 server for repositories under `/cvmfs/<fqrn>/`: GET and HEAD of exactly the files
//! a CernVM-FS client or Stratum 1 asks for, with cache headers a proxy can act on.
//!
//! Nothing is verified here: objects are named by their hash and the manifest is signed, so
//! clients check what they receive. The server's job is to hand out the right bytes, never
//! anything outside the repository, and to stay up under slow or idle clients.

mod body;
mod stall;
mod table;

pub use body::ServeBody;
use stall::WriteStall;
use table::*;

use std::collections::HashMap;
use std::convert::Infallible;
use std::fs::{File, Metadata, OpenOptions};
use std::future::{poll_fn, Future};
use std::io::{self, Read};
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Sleep;

use crate::cvmfs::manifest::{Manifest, ManifestError};
use crate::cvmfs::timefmt;

/// The most connections [`Limits::default`] allows, whatever the descriptor limit: each
/// costs some 20 KiB of buffers, and a Stratum 1's clients are mostly proxies.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Descriptors [`Limits::default`] leaves beside its connections: the listener, files
/// being read for responses, the runtime's own.
const DESCRIPTOR_HEADROOM: usize = 128;
/// Connections one client address may hold by default. Generous, because a site's clients
/// often reach the server through one proxy or NAT address.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;
/// A new connection's first request head must arrive within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A keep-alive connection may wait this long for its next request head.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Both of the above shrink to this while more than half the connection slots are taken,
/// so slow-loris and idle clients give their slots up quickly when others need them.
pub const PRESSURE_TIMEOUT: Duration = Duration::from_secs(2);
/// A client that reads nothing of a response for this long is dropped: it would hold its
/// connection slot (and, at shutdown, the drain) indefinitely.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// After shutdown, in-flight responses get this long to finish before they are cut.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes read from disk per body frame: large objects stream through a small buffer.
const CHUNK: u64 = 64 * 1024;
/// Manifest, whitelist, reflog and status files change with every publish or resign. A
/// minute is what stock Stratum 1 setups give them, so proxies absorb bursts of clients.
const CACHE_SHORT: &str = "public, max-age=61";
/// Objects are named by the hash of their bytes: a name never refers to other content.
const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// One repository to serve: `dir` is answered as `/cvmfs/<fqrn>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRepo {
    /// The repository's fully qualified name: the `<fqrn>` of its URLs.
    pub fqrn: String,
    /// The repository's directory, the one holding `.cvmfspublished`.
    pub dir: PathBuf,
}

/// Why [`discover`] cannot tell which repository a directory holds.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The directory's `.cvmfspublished` cannot be read.
    #[error("reading the manifest {}: {source}", path.display())]
    ReadManifest {
        /// The manifest's path.
        path: PathBuf,
        /// Why it cannot be read.
        source: io::Error,
    },
    /// The directory's `.cvmfspublished` does not parse as a manifest.
    #[error("{}: not a repository manifest: {source}", path.display())]
    BadManifest {
        /// The manifest's path.
        path: PathBuf,
        /// Why it does not parse.
        source: ManifestError,
    },
    /// The manifest names the repository with a name stock's rule refuses; it would be
    /// served under a URL path it could escape.
    #[error("{}: {source}", path.display())]
    BadName {
        /// The manifest's path.
        path: PathBuf,
        /// Why the name is refused.
        source: crate::cvmfs::fqrn::FqrnError,
    },
}

/// Learns the name a repository directory is served under from its manifest's `N` field.
/// The signature is not checked: clients check it, with keys the server does not need.
pub fn discover(dir: &Path) -> Result<ServedRepo, ServeError> {
    let path = dir.join(".cvmfspublished");
    let bytes = std::fs::read(&path).map_err(|source| ServeError::ReadManifest {
        path: path.clone(),
        source,
    })?;
    let (manifest, _) =
        Manifest::parse_unverified(&bytes).map_err(|source| ServeError::BadManifest {
            path: path.clone(),
            source,
        })?;
    crate::cvmfs::fqrn::validate(&manifest.fqrn).map_err(|source| ServeError::BadName {
        path: path.clone(),
        source,
    })?;
    Ok(ServedRepo {
        fqrn: manifest.fqrn,
        dir: dir.to_path_buf(),
    })
}

/// How many clients the server holds and for how long; [`Limits::default`] is what
/// `lazyroot serve` uses unless told otherwise.
///
/// A connection waiting for a request head (a new one, an idle keep-alive one, a slow-loris
/// one still sending its head) is *idle* and can be closed when its slot is needed: the
/// oldest idle one first. A connection whose request is being answered is never cut for
/// another. A client that finds every slot busy answering is refused at once (503) instead
/// of waiting in the kernel's accept queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once.
    pub max_connections: usize,
    /// Connections held at once for one client IP address.
    pub max_connections_per_client: usize,
    /// Time a new connection has for its first request head.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request head.
    pub idle_timeout: Duration,
    /// What both timeouts shrink to while more than half of `max_connections` are held.
    pub pressure_timeout: Duration,
    /// Time a client may read nothing of a response before it is dropped.
    pub write_stall_timeout: Duration,
}

impl Default for Limits {
    /// [`default_max_connections`] and the timeouts of this module's constants.
    fn default() -> Self {
        Limits {
            max_connections: default_max_connections(),
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            header_timeout: HEADER_READ_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            pressure_timeout: PRESSURE_TIMEOUT,
            write_stall_timeout: WRITE_STALL_TIMEOUT,
        }
    }
}

/// [`DEFAULT_MAX_CONNECTIONS`], or the open-file soft limit less some headroom if that is
/// lower: past it, accept fails with EMFILE and new clients cannot even be refused.
#[allow(unsafe_code)]
pub fn default_max_connections() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let nofile = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    nofile
        .saturating_sub(DESCRIPTOR_HEADROOM)
        .clamp(16, DEFAULT_MAX_CONNECTIONS)
}

/// Serves `repos` on `listener` with [`Limits::default`]; see [`run_with`].
pub async fn run(
    listener: TcpListener,
    repos: Vec<ServedRepo>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    run_with(listener, repos, Limits::default(), shutdown).await
}

/// Serves `repos` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting, closes idle connections, lets in-flight responses finish (at most
/// [`DRAIN_TIMEOUT`]) and returns. Fails only if two repositories share a name or a limit
/// is zero.
pub async fn run_with(
    listener: TcpListener,
    repos: Vec<ServedRepo>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    if limits.max_connections == 0 || limits.max_connections_per_client == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the connection limits must be at least 1",
        ));
    }
    let repos = Arc::new(repo_table(repos)?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let write_stall = limits.write_stall_timeout;
    let table = Arc::new(Mutex::new(Table::new(limits)));
    let mut conns = JoinSet::new();
    // Timeouts are enforced by a sweep over all connections rather than a timer in each:
    // the limit a connection is held to changes with the pressure on all of them.
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Reap finished connections so the set does not grow with every client.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = sweep.tick() => lock(&table).sweep(Instant::now()),
            (stream, peer) = next_connection(&listener) => {
                let admitted = lock(&table).admit(peer, Instant::now());
                match admitted {
                    Some(ticket) => {
                        let conn = Connection {
                            repos: repos.clone(),
                            stop: stop_rx.clone(),
                            table: table.clone(),
                            ticket,
                            write_stall,
                        };
                        conns.spawn(conn.serve(stream));
                    }
                    None => refuse(stream),
                }
            }
        }
    }
    // Closing the socket first makes new clients fail fast instead of queueing.
    drop(listener);
    stop_tx.send_replace(true);
    drain(conns).await;
    Ok(())
}

type Repos = HashMap<String, PathBuf>;

fn repo_table(repos: Vec<ServedRepo>) -> io::Result<Repos> {
    let mut table = HashMap::new();
    for r in repos {
        if let Some(other) = table.insert(r.fqrn.clone(), r.dir.clone()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} and {} are both repository {}; serve one of them",
                    other.display(),
                    r.dir.display(),
                    r.fqrn
                ),
            ));
        }
    }
    Ok(table)
}

/// The next client, and its address. Never waits for a free slot: a client the server
/// cannot take is better refused at once than left in the kernel's accept queue. Accept
/// errors (a client that reset before it was accepted, running out of file descriptors)
/// are logged and retried after a pause, so one bad moment does not end the server or
/// spin the CPU.
async fn next_connection(listener: &TcpListener) -> (TcpStream, IpAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => return (stream, peer.ip()),
            Err(e) => {
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn drain(mut conns: JoinSet<()>) {
    let finished = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            "{} connection(s) still busy {} s after shutdown; closing them",
            conns.len(),
            DRAIN_TIMEOUT.as_secs()
        );
        conns.shutdown().await;
    }
}

/// What a request path names: a file of some repository, and how to describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A bootstrap or bookkeeping file: replaced in place, so cached briefly.
    Meta { content_type: &'static str },
    /// A content-addressed object under `data/`.
    Object,
}

/// The only files outside `data/` a client or replica asks for, with their content types.
const META_FILES: [(&str, &str); 7] = [
    (".cvmfspublished", "application/x-cvmfs"),
    (".cvmfswhitelist", "application/x-cvmfs"),
    ("cvmfswhitelist.pkcs7", "application/x-cvmfs"),
    (".cvmfsreflog", "application/octet-stream"),
    (".cvmfs_master_replica", "application/octet-stream"),
    (".cvmfs_last_snapshot", "application/octet-stream"),
    (".cvmfs_status.json", "application/json"),
];

/// Splits `/cvmfs/<fqrn>/<rel>` into (fqrn, rel, kind). The raw path is matched against an
/// allow-list of names and nothing is decoded, so `..`, `%2e%2e`, `data/txn/` and
/// `.lazyroot/` never name anything.
fn route(path: &str) -> Option<(&str, &str, Kind)> {
    let rest = path.strip_prefix("/cvmfs/")?;
    let (fqrn, rel) = rest.split_once('/')?;
    let kind = match rel.strip_prefix("data/") {
        Some(name) => is_object_path(name).then_some(Kind::Object)?,
        None => META_FILES
            .iter()
            .find(|(name, _)| *name == rel)
            .map(|&(_, content_type)| Kind::Meta { content_type })?,
    };
    Some((fqrn, rel, kind))
}

/// `ab/<38 hex>[-rmd160|-shake128][C|P|H|X|M|L]`, lowercase hex as the format writes it.
fn is_object_path(name: &str) -> bool {
    let b = name.as_bytes();
    let hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if b.len() < 41 || !hex(&b[..2]) || b[2] != b'/' || !hex(&b[3..41]) {
        return false;
    }
    let tail = &name[41..];
    let tail = tail
        .strip_suffix(|c: char| "CPHXML".contains(c))
        .unwrap_or(tail);
    matches!(tail, "" | "-rmd160" | "-shake128")
}

/// The object's name without the directory slash: its hash and suffix, a strong ETag.
fn object_etag(rel: &str) -> String {
    let name = &rel["data/".len()..];
    format!("\"{}{}\"", &name[..2], &name[3..])
}

async fn respond(repos: &Repos, req: &Request<Incoming>) -> Response<ServeBody> {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return method_not_allowed(),
    };
    let (method, path) = (req.method(), req.uri().path());
    let Some((fqrn, rel, kind)) = route(path) else {
        return text(StatusCode::NOT_FOUND, "not found\n".into());
    };
    let Some(dir) = repos.get(fqrn) else {
        return text(StatusCode::NOT_FOUND, "no such repository\n".into());
    };
    let file_path = dir.join(rel);
    let opened = {
        let p = file_path.clone();
        tokio::task::spawn_blocking(move || open_regular(&p)).await
    };
    match opened {
        Ok(Ok(Some((file, meta)))) => {
            file_response(head, rel, kind, file, &meta, req.headers(), file_path)
        }
        Ok(Ok(None)) => text(StatusCode::NOT_FOUND, "not found\n".into()),
        Ok(Err(e)) => {
            tracing::error!("{method} {path}: opening {}: {e}", file_path.display());
            let body = format!("cannot open {fqrn}/{rel}: {e}\n");
            text(StatusCode::INTERNAL_SERVER_ERROR, body)
        }
        Err(e) => {
            tracing::error!("{method} {path}: the task opening the file failed: {e}");
            let body = format!("cannot open {fqrn}/{rel}\n");
            text(StatusCode::INTERNAL_SERVER_ERROR, body)
        }
    }
}

/// Opens a regular file without following a symlink in the last component; `None` if there
/// is no regular file by that name. O_NONBLOCK keeps a planted FIFO from blocking the open.
fn open_regular(path: &Path) -> io::Result<Option<(File, Metadata)>> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if is_absent(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    Ok(meta.file_type().is_file().then_some((file, meta)))
}

/// Errors that mean "nothing servable by that name": missing, a path through a non-directory,
/// or a symlink (ELOOP under O_NOFOLLOW).
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG)
    )
}

fn file_response(
    head: bool,
    rel: &str,
    kind: Kind,
    file: File,
    meta: &Metadata,
    req_headers: &HeaderMap,
    path: PathBuf,
) -> Response<ServeBody> {
    let (content_type, cache, etag) = match kind {
        Kind::Meta { content_type } => (content_type, CACHE_SHORT, None),
        Kind::Object => (
            "application/octet-stream",
            CACHE_IMMUTABLE,
            Some(object_etag(rel)),
        ),
    };
    let mut resp = Response::new(ServeBody::empty());
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&http_date(meta.mtime())) {
        h.insert(header::LAST_MODIFIED, v);
    }
    if let Some(tag) = &etag {
        h.insert(header::ETAG, HeaderValue::from_str(tag).expect("hex"));
        if etag_matches(req_headers, tag) {
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            return resp;
        }
    }
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
    if !head {
        *resp.body_mut() = ServeBody::file(file, meta.len(), path);
    }
    resp
}

/// `If-None-Match` by weak comparison (RFC 9110 §13.1.2): a list of tags, `W/` ignored, `*`.
fn etag_matches(req_headers: &HeaderMap, etag: &str) -> bool {
    req_headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .map(|t| t.strip_prefix("W/").unwrap_or(t))
        .any(|t| t == "*" || t == etag)
}

fn text(status: StatusCode, body: String) -> Response<ServeBody> {
    let mut resp = Response::new(ServeBody::bytes(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn method_not_allowed() -> Response<ServeBody> {
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    resp
}

/// IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // The format has four-digit years only; mtimes outside are clamped rather than mangled.
    let secs = secs.clamp(0, 253_402_300_799);
    let c = timefmt::compact(secs); // YYYYMMDDHHMMSS
    let month = MONTHS[c[4..6].parse::<usize>().unwrap_or(1) - 1];
    // 1970-01-01 was a Thursday.
    let weekday = DAYS[(secs.div_euclid(86_400) + 4).rem_euclid(7) as usize];
    format!(
        "{weekday}, {} {month} {} {}:{}:{} GMT",
        &c[6..8],
        &c[0..4],
        &c[8..10],
        &c[10..12],
        &c[12..14]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX38: &str = "0123456789abcdef0123456789abcdef012345";

    #[test]
    fn routes() {
        let obj = format!("/cvmfs/r.org/data/ab/{HEX38}");
        let ok: Vec<(String, Kind)> = vec![
            (
                "/cvmfs/r.org/.cvmfspublished".into(),
                Kind::Meta {
                    content_type: "application/x-cvmfs",
                },
            ),
            (
                "/cvmfs/r.org/.cvmfs_status.json".into(),
                Kind::Meta {
                    content_type: "application/json",
                },
            ),
            (
                "/cvmfs/r.org/.cvmfsreflog".into(),
                Kind::Meta {
                    content_type: "application/octet-stream",
                },
            ),
            (obj.clone(), Kind::Object),
            (format!("{obj}C"), Kind::Object),
            (format!("{obj}L"), Kind::Object),
            (format!("{obj}-rmd160"), Kind::Object),
            (format!("{obj}-shake128P"), Kind::Object),
        ];
        for (path, kind) in ok {
            let (fqrn, rel, k) = route(&path).unwrap_or_else(|| panic!("{path} refused"));
            assert_eq!((fqrn, k), ("r.org", kind), "{path}");
            assert_eq!(format!("/cvmfs/{fqrn}/{rel}"), path);
        }
        let bad = [
            "/".to_string(),
            "/cvmfs/r.org".into(),
            "/cvmfs/r.org/".into(),
            "/cvmfs/r.org/../keys/r.org.key".into(),
            "/cvmfs/r.org/./.cvmfspublished".into(),
            "/cvmfs/r.org//.cvmfspublished".into(),
            "/cvmfs/r.org/%2ecvmfspublished".into(),
            "/cvmfs/r.org/data/txn/publish.lock".into(),
            "/cvmfs/r.org/.lazyroot/publish-index.sqlite".into(),
            "/cvmfs/r.org/.cvmfspublished/x".into(),
            "/cvmfs/r.org/data/ab".into(),
            format!("{obj}T"),
            format!("{obj}CC"),
            format!("{obj}-sha256"),
            format!("{obj}0"),
            format!("/cvmfs/r.org/data/AB/{HEX38}"),
            format!("/cvmfs/r.org/data/ab/{}", HEX38.to_uppercase()),
            format!("/cvmfs/r.org/data/ab/{}", &HEX38[..37]),
            format!("/cvmfs/r.org/data/ab/../{HEX38}"),
            format!("/cvmfs/r.org/data/ab/{HEX38}/"),
            format!("/cvmfs/r.org/data/ab/{HEX38}é"),
            format!("/x/cvmfs/r.org/data/ab/{HEX38}"),
        ];
        for path in bad {
            assert_eq!(route(&path), None, "{path}");
        }
    }

    #[test]
    fn etag_is_the_object_name() {
        assert_eq!(
            object_etag(&format!("data/ab/{HEX38}-shake128C")),
            format!("\"ab{HEX38}-shake128C\"")
        );
    }

    #[test]
    fn if_none_match() {
        let tag = "\"ab01\"";
        let cases = [
            ("\"ab01\"", true),
            ("W/\"ab01\"", true),
            ("\"x\", \"ab01\"", true),
            ("*", true),
            ("\"ab02\"", false),
            ("ab01", false),
        ];
        for (value, expected) in cases {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
            assert_eq!(etag_matches(&h, tag), expected, "{value}");
        }
        assert!(!etag_matches(&HeaderMap::new(), tag));
    }

    #[test]
    fn http_dates() {
        let cases = [
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (-5, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (i64::MAX, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ];
        for (secs, s) in cases {
            assert_eq!(http_date(secs), s, "{secs}");
        }
    }

    #[test]
    fn duplicate_names_are_refused() {
        let r = |d: &str| ServedRepo {
            fqrn: "a.org".into(),
            dir: d.into(),
        };
        assert!(repo_table(vec![r("/x"), r("/y")]).is_err());
        assert_eq!(repo_table(vec![r("/x")]).unwrap().len(), 1);
    }

    #[test]
    fn absent_files_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        std::os::unix::fs::symlink(&file, dir.path().join("link")).unwrap();
        assert!(open_regular(&file).unwrap().is_some());
        for name in ["missing", "link", "f/below", "."] {
            assert!(
                open_regular(&dir.path().join(name)).unwrap().is_none(),
                "{name}"
            );
        }
    }
}
