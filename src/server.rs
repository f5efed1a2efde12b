//! HTTP/1.1 server for repositories under `/cvmfs/<fqrn>/`: GET and HEAD of exactly the files
//! a CernVM-FS client or Stratum 1 asks for, with cache headers a proxy can act on.
//!
//! Nothing is verified here: objects are named by their hash and the manifest is signed, so
//! clients check what they receive. The server's job is to hand out the right bytes, never
//! anything outside the repository, and to stay up under slow or idle clients.

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

/// How often timeouts are checked; a timeout hits at most this much late.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// Refusals and reclaims are summed up in the log at most this often, not one line each.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The table, even if a panic poisoned its lock: the worst a panic there leaves is a
/// counter off by one, better than every later connection panicking too.
fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every open connection, for admission and timeouts. Connections that were asked to close
/// but have not yet are no longer counted against the limits: they are on their way out,
/// and the client that asked for their slot should not wait for that.
struct Table {
    limits: Limits,
    next_id: u64,
    conns: HashMap<u64, Slot>,
    /// Counted connections per client address; an address with none has no entry.
    per_client: HashMap<IpAddr, usize>,
    /// Connections counted against `limits`: open and not asked to close.
    counted: usize,
    /// Since the last report: clients refused, idle connections closed for a newcomer.
    refused: u64,
    reclaimed: u64,
    reported: Instant,
}

struct Slot {
    client: IpAddr,
    /// Since when the connection has been idle (waiting for a request head); `None` while
    /// it answers one.
    idle_since: Option<Instant>,
    /// Whether it has answered a request: a keep-alive connection, held to `idle_timeout`.
    answered: bool,
    /// Asked to close, and no longer counted.
    closing: bool,
    kick: Arc<Notify>,
}

/// A connection's place in the table; it leaves the table when this is dropped.
struct Ticket {
    table: Arc<Mutex<Table>>,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.table).remove(self.id);
    }
}

impl Table {
    fn new(limits: Limits) -> Self {
        Table {
            limits,
            next_id: 0,
            conns: HashMap::new(),
            per_client: HashMap::new(),
            counted: 0,
            refused: 0,
            reclaimed: 0,
            reported: Instant::now(),
        }
    }

    /// Takes a new connection from `client`, making room by closing the oldest idle
    /// connection (of that client, if it is the client that is at its limit); `None` if
    /// every connection that would have to go is answering a request.
    fn admit(&mut self, client: IpAddr, now: Instant) -> Option<(u64, Arc<Notify>)> {
        let own = self.per_client.get(&client).copied().unwrap_or(0);
        let victim = if own >= self.limits.max_connections_per_client {
            Some(self.oldest_idle(Some(client)))
        } else if self.counted >= self.limits.max_connections {
            Some(self.oldest_idle(None))
        } else {
            None
        };
        match victim {
            Some(Some(id)) => {
                self.close(id);
                self.reclaimed += 1;
            }
            Some(None) => {
                self.refused += 1;
                self.report(now);
                return None;
            }
            None => {}
        }
        self.report(now);
        let id = self.next_id;
        self.next_id += 1;
        let kick = Arc::new(Notify::new());
        self.conns.insert(
            id,
            Slot {
                client,
                idle_since: Some(now),
                answered: false,
                closing: false,
                kick: kick.clone(),
            },
        );
        self.count(client, 1);
        Some((id, kick))
    }

    /// The counted connection idle the longest, of `client` or of anyone. A linear scan:
    /// it runs only when the server is full, and a few thousand entries take microseconds.
    fn oldest_idle(&self, client: Option<IpAddr>) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, s)| !s.closing && client.is_none_or(|c| c == s.client))
            .filter_map(|(&id, s)| s.idle_since.map(|t| (t, id)))
            .min()
            .map(|(_, id)| id)
    }

    /// Asks connection `id` to close if it is idle, and stops counting it.
    fn close(&mut self, id: u64) {
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        if slot.closing {
            return;
        }
        slot.closing = true;
        // A stored permit: the connection sees the request even if it is not waiting now.
        slot.kick.notify_one();
        let client = slot.client;
        self.count(client, -1);
    }

    /// Connection `id` was asked to close but had started answering a request meanwhile
    /// (a request that arrived as the decision was made): it stays, and counts again.
    fn keep(&mut self, id: u64) {
        if let Some(slot) = self.conns.get_mut(&id) {
            if slot.closing {
                slot.closing = false;
                let client = slot.client;
                self.count(client, 1);
            }
        }
    }

    /// Connection `id` went idle (`true`) or started answering a request.
    fn set_idle(&mut self, id: u64, idle: bool, now: Instant) {
        if let Some(slot) = self.conns.get_mut(&id) {
            if idle {
                slot.idle_since = Some(now);
                slot.answered = true;
            } else {
                slot.idle_since = None;
            }
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(slot) = self.conns.remove(&id) {
            if !slot.closing {
                self.count(slot.client, -1);
            }
        }
    }

    fn count(&mut self, client: IpAddr, delta: isize) {
        self.counted = self.counted.saturating_add_signed(delta);
        let n = self.per_client.entry(client).or_insert(0);
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            self.per_client.remove(&client);
        }
    }

    /// Under pressure: more than half the slots held. Then every timeout for idle
    /// connections is `pressure_timeout`, as nginx-style servers shed keep-alive clients
    /// first when they run short of connections.
    fn under_pressure(&self) -> bool {
        self.counted > self.limits.max_connections / 2
    }

    /// Closes the idle connections that waited longer than they may.
    fn sweep(&mut self, now: Instant) {
        let l = &self.limits;
        let pressure = self.under_pressure();
        let expired: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, s)| !s.closing)
            .filter_map(|(&id, s)| {
                let since = s.idle_since?;
                let mut limit = if s.answered {
                    l.idle_timeout
                } else {
                    l.header_timeout
                };
                if pressure {
                    limit = limit.min(l.pressure_timeout);
                }
                (now.duration_since(since) >= limit).then_some(id)
            })
            .collect();
        for id in expired {
            self.close(id);
        }
        self.report(now);
    }

    /// Logs refusals and reclaims of the last interval, if any: under a flood one line per
    /// client would be a flood of its own.
    fn report(&mut self, now: Instant) {
        if now.duration_since(self.reported) < REPORT_INTERVAL {
            return;
        }
        if self.refused > 0 {
            tracing::warn!(
                "{} client(s) refused: all {} connection slots busy answering requests \
                 (--max-connections, --max-connections-per-client)",
                self.refused,
                self.counted
            );
        }
        if self.reclaimed > 0 {
            tracing::info!(
                "{} idle connection(s) closed to make room for new clients",
                self.reclaimed
            );
        }
        self.refused = 0;
        self.reclaimed = 0;
        self.reported = now;
    }
}

/// A client the server cannot take: told so in one write that never waits, then closed.
/// A CernVM-FS client moves on to its next server or proxy on a 503 or a closed
/// connection alike; the write is only a courtesy.
fn refuse(stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\
        Retry-After: 1\r\nConnection: close\r\n\r\n";
    let _ = stream.try_write(BUSY);
}

/// What a connection's parts tell each other about its requests: how many were handed to
/// the service and how many responses were sent whole, and whether a write waits for the
/// client. The connection is idle when every request has been answered and written.
#[derive(Default)]
struct Activity {
    started: AtomicU64,
    finished: AtomicU64,
    write_pending: AtomicBool,
}

impl Activity {
    fn idle(&self) -> bool {
        self.started.load(Ordering::Relaxed) == self.finished.load(Ordering::Relaxed)
            && !self.write_pending.load(Ordering::Relaxed)
    }
}

/// One client connection and what it needs from the server.
struct Connection {
    repos: Arc<Repos>,
    stop: watch::Receiver<bool>,
    table: Arc<Mutex<Table>>,
    ticket: (u64, Arc<Notify>),
    write_stall: Duration,
}

impl Connection {
    /// Requests in order over keep-alive until the client leaves, the connection is
    /// closed while idle (a timeout, or its slot given to a newcomer), or shutdown asks it
    /// to end after its current response.
    async fn serve(self, stream: TcpStream) {
        let (id, kick) = self.ticket;
        let _ticket = Ticket {
            table: self.table.clone(),
            id,
        };
        // Responses are written whole by hyper; waiting for ACKs (Nagle) would only add
        // latency.
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(WriteStall::new(stream, self.write_stall, activity.clone()));
        let repos = self.repos;
        let counter = activity.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            // Counted when hyper hands the request over, in the same poll that parsed its
            // head: from then on the connection is answering, not idle.
            counter.started.fetch_add(1, Ordering::Relaxed);
            let repos = repos.clone();
            let done = Finished(counter.clone());
            async move {
                let resp = respond(&repos, &req).await;
                Ok::<_, Infallible>(resp.map(|body| CountedBody { body, _done: done }))
            }
        });
        // Header and idle timeouts are the table's sweep (they shrink under pressure);
        // hyper's own header timeout is fixed per connection, so it is off.
        let conn = http1::Builder::new()
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .serve_connection(io, service);
        let mut conn = pin!(conn);
        let mut stop = self.stop;
        let mut stopped = pin!(async move {
            // The guard `wait_for` returns is not Send; only the wake-up matters.
            let _ = stop.wait_for(|stopped| *stopped).await;
        });
        let mut kicked = pin!(kick.notified());
        let mut stopping = false;
        let mut idle = true;
        // A hand-written poll so the connection's state is looked at between polls of
        // hyper's future, when it cannot change: a connection found idle there has no
        // response half written, and closing it loses nothing but the keep-alive.
        let result = poll_fn(|cx| {
            if !stopping && stopped.as_mut().poll(cx).is_ready() {
                stopping = true;
                if activity.idle() {
                    return Poll::Ready(Ok(()));
                }
                conn.as_mut().graceful_shutdown();
            }
            while kicked.as_mut().poll(cx).is_ready() {
                if activity.idle() {
                    return Poll::Ready(Ok(()));
                }
                lock(&self.table).keep(id);
                kicked.set(kick.notified());
            }
            let r = conn.as_mut().poll(cx);
            if r.is_pending() {
                let now_idle = activity.idle();
                if now_idle != idle {
                    idle = now_idle;
                    lock(&self.table).set_idle(id, idle, Instant::now());
                }
            }
            r
        })
        .await;
        // Client-side failures (resets, timeouts, garbage) are the client's business and
        // would flood the log; a user error means this module built an invalid response.
        if let Err(e) = result {
            if e.is_user() {
                tracing::debug!("connection: {e}");
            }
        }
    }
}

/// Counts a response as sent whole when hyper drops its body: after the last frame, which
/// hyper writes (or leaves pending in [`WriteStall`]) in the same poll.
struct Finished(Arc<Activity>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// A [`ServeBody`] that counts itself finished when dropped.
struct CountedBody {
    body: ServeBody,
    _done: Finished,
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
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

/// A response body: nothing, a short text, or a file streamed in `CHUNK`-sized reads.
pub struct ServeBody(BodyKind);

enum BodyKind {
    Bytes(Option<Bytes>),
    File(FileBody),
}

impl ServeBody {
    fn empty() -> Self {
        ServeBody(BodyKind::Bytes(None))
    }

    fn bytes(b: Bytes) -> Self {
        ServeBody(BodyKind::Bytes(Some(b)))
    }

    fn file(file: File, len: u64, path: PathBuf) -> Self {
        ServeBody(BodyKind::File(FileBody {
            state: ReadState::Idle(file),
            remaining: len,
            path,
        }))
    }
}

impl Body for ServeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().0 {
            BodyKind::Bytes(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            BodyKind::File(f) => f.poll_chunk(cx).map(|r| r.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyKind::Bytes(b) => b.is_none(),
            BodyKind::File(f) => f.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyKind::Bytes(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            BodyKind::File(f) => SizeHint::with_exact(f.remaining),
        }
    }
}

/// Reads a file sequentially on the blocking pool, one chunk at a time, only when hyper
/// asks for the next frame: memory stays at one chunk per response, and a blocking thread
/// is held only while a read is running (a slow client holds none).
struct FileBody {
    state: ReadState,
    /// Bytes still owed: the Content-Length promised from fstat, never more.
    remaining: u64,
    path: PathBuf,
}

enum ReadState {
    Idle(File),
    Reading(JoinHandle<(File, io::Result<Vec<u8>>)>),
    Done,
}

impl FileBody {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            match std::mem::replace(&mut self.state, ReadState::Done) {
                ReadState::Done => return Poll::Ready(None),
                ReadState::Idle(_) if self.remaining == 0 => return Poll::Ready(None),
                ReadState::Idle(file) => {
                    let n = self.remaining.min(CHUNK);
                    self.state = ReadState::Reading(tokio::task::spawn_blocking(move || {
                        let r = read_chunk(&file, n);
                        (file, r)
                    }));
                }
                ReadState::Reading(mut task) => {
                    let Poll::Ready(joined) = Pin::new(&mut task).poll(cx) else {
                        self.state = ReadState::Reading(task);
                        return Poll::Pending;
                    };
                    return Poll::Ready(Some(self.chunk_read(joined)));
                }
            }
        }
    }

    fn chunk_read(
        &mut self,
        joined: Result<(File, io::Result<Vec<u8>>), tokio::task::JoinError>,
    ) -> io::Result<Bytes> {
        let e = match joined {
            Ok((file, Ok(buf))) if !buf.is_empty() => {
                self.remaining -= buf.len() as u64;
                self.state = ReadState::Idle(file);
                return Ok(Bytes::from(buf));
            }
            // The length was promised in the header; a short file cannot keep the promise,
            // and the error makes hyper cut the connection instead of hanging the client.
            Ok((_, Ok(_))) => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file shrank; {} bytes missing", self.remaining),
            ),
            Ok((_, Err(e))) => e,
            Err(e) => io::Error::other(e),
        };
        tracing::error!("reading {}: {e}", self.path.display());
        Err(e)
    }
}

/// Up to `n` bytes; fewer only at end of file.
fn read_chunk(file: &File, n: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n as usize);
    file.take(n).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A TCP stream whose writes fail once the peer has accepted nothing for `limit`: hyper
/// only bounds reading the request head, and a client that stops reading a large response
/// would otherwise hold its connection slot (and, at shutdown, the drain) indefinitely.
///
/// It also tells the connection whether a write is waiting for the client: a response that
/// is still on its way out is not finished, so its connection is not idle.
struct WriteStall {
    inner: TcpStream,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    activity: Arc<Activity>,
}

impl WriteStall {
    fn new(inner: TcpStream, limit: Duration, activity: Arc<Activity>) -> Self {
        WriteStall {
            inner,
            limit,
            timer: None,
            activity,
        }
    }

    /// Progress clears the timer; the first Pending starts it; its expiry is an error.
    fn watch<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.activity
            .write_pending
            .store(r.is_pending(), Ordering::Relaxed);
        if r.is_ready() {
            self.timer = None;
            return r;
        }
        let limit = self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing for too long",
        )))
    }
}

impl AsyncRead for WriteStall {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteStall {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, r)
    }
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

    fn limits(max: usize, per_client: usize) -> Limits {
        Limits {
            max_connections: max,
            max_connections_per_client: per_client,
            ..Limits::default()
        }
    }

    #[test]
    fn a_full_table_gives_the_oldest_idle_slot_away_and_never_a_busy_one() {
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut t = Table::new(limits(3, 10));
        let ids: Vec<u64> = (0..3).map(|i| t.admit(a, at(i)).unwrap().0).collect();
        // 0 is answering a request; 2 went idle again after one, later than 1 was admitted.
        t.set_idle(ids[0], false, at(3));
        t.set_idle(ids[2], false, at(4));
        t.set_idle(ids[2], true, at(5));
        let (d, _) = t.admit(b, at(6)).expect("1 is idle");
        assert!(t.conns[&ids[1]].closing && !t.conns[&ids[2]].closing);
        assert_eq!(t.counted, 3);
        // 1 is on its way out; 2 is the only idle one left, then none.
        let (e, _) = t.admit(b, at(7)).unwrap();
        assert!(t.conns[&ids[2]].closing);
        t.set_idle(d, false, at(8));
        t.set_idle(e, false, at(8));
        assert!(
            t.admit(b, at(9)).is_none(),
            "busy connections are never cut"
        );
        // A connection that raced into a request keeps its slot and counts again.
        t.keep(ids[2]);
        assert_eq!(t.counted, 4);
        for id in ids {
            t.remove(id);
        }
        assert_eq!(t.counted, 2);
        assert_eq!(t.per_client.get(&a), None);
    }

    #[test]
    fn a_client_at_its_limit_gives_up_its_own_idle_slot() {
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let now = Instant::now();
        let mut t = Table::new(limits(100, 2));
        let other = t.admit(b, now).unwrap().0;
        let first = t.admit(a, now).unwrap().0;
        let second = t.admit(a, now).unwrap().0;
        assert!(t.admit(a, now).is_some());
        assert!(t.conns[&first].closing);
        assert!(!t.conns[&other].closing, "other clients keep theirs");
        t.set_idle(second, false, now);
        let third = t.conns.keys().copied().max().unwrap();
        t.set_idle(third, false, now);
        assert!(t.admit(a, now).is_none(), "both of a's are busy");
        assert!(t.admit(b, now).is_some());
    }

    #[test]
    fn timeouts_shrink_under_pressure() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        let mut t = Table::new(limits(4, 4));
        let first = t.admit(a, t0).unwrap().0;
        let keep_alive = t.admit(a, t0).unwrap().0;
        t.set_idle(keep_alive, false, t0);
        t.set_idle(keep_alive, true, t0);
        // Two of four: no pressure; the header timeout applies to the new connection,
        // the idle timeout to the keep-alive one.
        t.sweep(t0 + PRESSURE_TIMEOUT * 2);
        assert_eq!(t.counted, 2);
        t.sweep(t0 + HEADER_READ_TIMEOUT);
        assert!(t.conns[&first].closing && !t.conns[&keep_alive].closing);
        t.sweep(t0 + IDLE_TIMEOUT);
        assert!(t.conns[&keep_alive].closing);
        // Three of four: pressure; anything idle past the short timeout goes.
        let mut t = Table::new(limits(4, 4));
        let ids: Vec<u64> = (0..3).map(|_| t.admit(a, t0).unwrap().0).collect();
        t.sweep(t0 + PRESSURE_TIMEOUT / 2);
        assert_eq!(t.counted, 3);
        t.sweep(t0 + PRESSURE_TIMEOUT);
        assert!(ids.iter().all(|id| t.conns[id].closing));
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
