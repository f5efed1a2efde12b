//! The download manager: fetches repository files over HTTP from an ordered list of hosts,
//! through a chain of proxies, verifying content hashes while the bytes stream in.
//!
//! Failure policy (after CernVM-FS's): an HTTP error status (404, 5xx) blames the host and
//! moves to the next one; a connection-level failure (refused, reset, timeout, too slow,
//! truncated) is retried a bounded number of times with backoff, then blames the proxy
//! (next proxy group) or, when going direct, the host. A hash mismatch is retried once with
//! `Cache-Control: no-cache` (a poisoned proxy cache), then blames the host. The working
//! host and proxy stick for later requests. Every wait is bounded, so a read either
//! succeeds or fails with an error naming every attempt; it never hangs.

pub mod chain;
pub mod http;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

pub use chain::{parse_hosts, parse_proxies, ChainError, Endpoint, Host, Proxy};
pub use http::Limits;
use http::{Msg, Pool, TransferError};

use crate::cvmfs::hash::ContentHash;

/// Where downloaded bytes go. `reset` starts over (a retry after a partial transfer).
pub trait Sink {
    /// Discards everything written so far; called before every attempt.
    fn reset(&mut self) -> io::Result<()>;
    /// Takes the next chunk of the body. `InvalidData` or `InvalidInput` means corrupt
    /// content (handled like a hash mismatch); any other error is local and ends the fetch.
    fn write(&mut self, data: &[u8]) -> io::Result<()>;
}

impl Sink for Vec<u8> {
    fn reset(&mut self) -> io::Result<()> {
        self.clear();
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.extend_from_slice(data);
        Ok(())
    }
}

/// Why [`Downloader::fetch`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Every host, through every proxy group it was tried with, failed.
    #[error("{what}: every server failed: {}", attempts.join("; "))]
    AllFailed {
        /// The file asked for, relative to the repository base URL.
        what: String,
        /// One message per failed attempt, `host via proxy: why`.
        attempts: Vec<String>,
        /// Every attempt was answered 404: the servers do not have the file (as opposed
        /// to servers that could not be reached or sent wrong bytes).
        missing: bool,
    },
    /// The sink failed for a local reason (e.g. a full cache disk); no other host is tried.
    #[error("{what}: writing the download: {source}")]
    Sink {
        /// The file asked for, relative to the repository base URL.
        what: String,
        /// The sink's error.
        source: io::Error,
    },
}

/// Worker threads of each download manager's runtime (one per repository).
pub const RUNTIME_THREADS: usize = 2;

impl DownloadError {
    /// Whether every server answered that it does not have the file (404).
    pub fn is_missing(&self) -> bool {
        matches!(self, DownloadError::AllFailed { missing: true, .. })
    }
}

/// How the download manager reaches a repository: hosts, proxies, timeouts and retries.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Servers in failover order; must not be empty.
    pub hosts: Vec<Host>,
    /// Proxy groups in failover order; each time a group is tried, one member is picked at
    /// random. Must not be empty: a lone [`Proxy::Direct`] means no proxy.
    pub proxies: Vec<Vec<Proxy>>,
    /// Connect timeout and low-speed limit of every transfer.
    pub limits: Limits,
    /// Extra tries of the same host and proxy after a connection-level failure.
    pub retries: u32,
    /// Wait before the first retry, doubled for each further one (default 200 ms).
    pub backoff_min: Duration,
    /// Longest wait before a retry (default 2 s).
    pub backoff_max: Duration,
}

impl Settings {
    /// Settings for `hosts` and `proxies` with the defaults: [`Limits::default`], one retry,
    /// backoff from 200 ms up to 2 s.
    pub fn new(hosts: Vec<Host>, proxies: Vec<Vec<Proxy>>) -> Self {
        Settings {
            hosts,
            proxies,
            limits: Limits::default(),
            retries: 1,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// Counters, readable at any time (magic xattrs, `info`).
#[derive(Debug, Default)]
pub struct Counters {
    /// HTTP requests sent, retries included.
    pub requests: AtomicU64,
    /// Body bytes received, as served (before decompression), over all attempts.
    pub bytes: AtomicU64,
    /// Failed attempts: transfer errors, hash mismatches, corrupt content.
    pub errors: AtomicU64,
    /// Times a host was given up for the next one, [`Downloader::blame_host`] included.
    pub host_failovers: AtomicU64,
    /// Times a proxy group was given up for the next one after connection failures.
    pub proxy_failovers: AtomicU64,
}

/// A snapshot of the counters and the current route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Body bytes received, as served (before decompression).
    pub bytes: u64,
    /// Failed attempts.
    pub errors: u64,
    /// The host in use, as its base URL.
    pub host: String,
    /// The proxy group in use, members joined by `|` (`DIRECT` for none).
    pub proxy: String,
}

struct Route {
    host: usize,
    group: usize,
}

/// The download manager of one repository: a blocking [`Downloader::fetch`] over a small
/// async runtime and a keep-alive connection pool. The host and proxy group that last worked
/// are used first by the next request.
pub struct Downloader {
    rt: tokio::runtime::Runtime,
    pool: Arc<Pool>,
    settings: Settings,
    route: Mutex<Route>,
    /// Running totals (magic xattrs, `info`).
    pub counters: Counters,
    /// Why the last download failed, while no download has succeeded since: what an
    /// operator's health check reports as servers failing.
    failing: Mutex<Option<String>>,
}

enum Failure {
    Transfer(TransferError),
    Hash(ContentHash),
    /// The bytes are not what they claim (they do not decompress).
    Corrupt(String),
    Sink(io::Error),
}

impl Downloader {
    /// Starts the download manager (two runtime threads); no connection is made yet.
    /// `settings` must have at least one host and one proxy group.
    pub fn new(settings: Settings) -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("lazyroot-download")
            .enable_all()
            .build()?;
        Ok(Downloader {
            rt,
            pool: Arc::new(Pool::default()),
            settings,
            route: Mutex::new(Route { host: 0, group: 0 }),
            counters: Counters::default(),
            failing: Mutex::new(None),
        })
    }

    /// A snapshot of the counters and of the host and proxy group in use.
    pub fn stats(&self) -> Stats {
        let r = self.route.lock().expect("route");
        Stats {
            requests: self.counters.requests.load(Ordering::Relaxed),
            bytes: self.counters.bytes.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
            host: self.settings.hosts[r.host].to_string(),
            proxy: self.settings.proxies[r.group]
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("|"),
        }
    }

    /// Why the servers are failing: the last download's error, unless one succeeded since.
    pub fn failing(&self) -> Option<String> {
        self.failing.lock().expect("failing").clone()
    }

    /// Downloads `rel` (relative to the repository base URL) into `sink`; if `expected` is
    /// given, the bytes must hash to it. At most `limit` bytes are accepted. Returns the
    /// number of bytes. Blocking: call from a plain thread, not from async code.
    pub fn fetch(
        &self,
        rel: &str,
        expected: Option<ContentHash>,
        limit: u64,
        sink: &mut dyn Sink,
    ) -> Result<u64, DownloadError> {
        let result = self.fetch_from_any(rel, expected, limit, sink);
        let mut failing = self.failing.lock().expect("failing");
        match &result {
            Ok(_) => *failing = None,
            // A file the servers do not have says nothing about the servers.
            Err(e) if e.is_missing() => {}
            Err(e) => *failing = Some(e.to_string()),
        }
        result
    }

    fn fetch_from_any(
        &self,
        rel: &str,
        expected: Option<ContentHash>,
        limit: u64,
        sink: &mut dyn Sink,
    ) -> Result<u64, DownloadError> {
        let (start_host, start_group) = {
            let r = self.route.lock().expect("route");
            (r.host, r.group)
        };
        let (nh, ng) = (self.settings.hosts.len(), self.settings.proxies.len());
        let mut attempts = Vec::new();
        let mut missing = true;
        for h in 0..nh {
            let host_i = (start_host + h) % nh;
            let host = &self.settings.hosts[host_i];
            'groups: for g in 0..ng {
                let group_i = (start_group + g) % ng;
                let proxy = pick(&self.settings.proxies[group_i]);
                let mut no_cache = false;
                let mut tries = 0;
                loop {
                    match self.once(host, &proxy, rel, no_cache, expected, limit, sink) {
                        Ok(n) => {
                            self.stick(host_i, group_i);
                            return Ok(n);
                        }
                        Err(Failure::Sink(source)) => {
                            return Err(DownloadError::Sink {
                                what: rel.to_string(),
                                source,
                            })
                        }
                        Err(f @ (Failure::Hash(_) | Failure::Corrupt(_))) => {
                            self.counters.errors.fetch_add(1, Ordering::Relaxed);
                            missing = false;
                            let why = match f {
                                Failure::Hash(actual) => {
                                    format!("content hashes to {actual}, not the expected hash")
                                }
                                Failure::Corrupt(why) => format!("corrupt content: {why}"),
                                _ => unreachable!("matched above"),
                            };
                            attempts.push(format!("{host} via {proxy}: {why}"));
                            if !no_cache {
                                no_cache = true;
                                continue;
                            }
                        }
                        Err(Failure::Transfer(e)) => {
                            self.counters.errors.fetch_add(1, Ordering::Relaxed);
                            missing &= matches!(e, TransferError::Status(404));
                            attempts.push(format!("{host} via {proxy}: {e}"));
                            // A connection-level failure may pass: retried with a backoff.
                            if e.is_connection_level() && tries < self.settings.retries {
                                let backoff = (self.settings.backoff_min * 2u32.pow(tries))
                                    .min(self.settings.backoff_max);
                                tries += 1;
                                std::thread::sleep(backoff);
                                continue;
                            }
                        }
                    }
                    // This route failed for good: wrong bytes past the caches, an error status
                    // (404, 5xx) or a connection that keeps failing. Through a proxy the proxy
                    // is as likely at fault as the host, so the next proxy group (DIRECT
                    // too) is asked before the next host; going direct, the host is at fault.
                    if proxy == Proxy::Direct {
                        break 'groups;
                    }
                    self.counters
                        .proxy_failovers
                        .fetch_add(1, Ordering::Relaxed);
                    continue 'groups;
                }
            }
            self.counters.host_failovers.fetch_add(1, Ordering::Relaxed);
        }
        Err(DownloadError::AllFailed {
            what: rel.to_string(),
            missing: missing && !attempts.is_empty(),
            attempts,
        })
    }

    /// Moves to the next host for the following requests: for callers that find a host's
    /// answer wrong after the transfer (a manifest that does not verify).
    pub fn blame_host(&self) {
        let mut r = self.route.lock().expect("route");
        r.host = (r.host + 1) % self.settings.hosts.len();
        self.counters.host_failovers.fetch_add(1, Ordering::Relaxed);
    }

    /// How many hosts there are to fail over between.
    pub fn host_count(&self) -> usize {
        self.settings.hosts.len()
    }

    fn stick(&self, host: usize, group: usize) {
        let mut r = self.route.lock().expect("route");
        r.host = host;
        r.group = group;
    }

    #[allow(clippy::too_many_arguments)]
    fn once(
        &self,
        host: &Host,
        proxy: &Proxy,
        rel: &str,
        no_cache: bool,
        expected: Option<ContentHash>,
        limit: u64,
        sink: &mut dyn Sink,
    ) -> Result<u64, Failure> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let (via, uri) = match proxy {
            Proxy::Direct => (host.endpoint.clone(), format!("{}/{}", host.base, rel)),
            Proxy::Via(p) => (p.clone(), host.url(rel)),
        };
        let host_header = host.endpoint.to_string();
        // A few chunks in flight: the network side runs ahead of the writer, not unbounded.
        let (tx, mut rx) = mpsc::channel(8);
        let pool = self.pool.clone();
        let limits = self.settings.limits;
        let g = http::Get {
            via,
            uri,
            host_header,
            no_cache,
            limit,
            limits,
        };
        self.rt.spawn(async move { http::get(&pool, g, tx).await });

        sink.reset().map_err(Failure::Sink)?;
        let mut hasher = expected.map(|h| h.algo.hasher());
        let mut n = 0u64;
        loop {
            match rx.blocking_recv() {
                Some(Msg::Data(d)) => {
                    if let Some(h) = hasher.as_mut() {
                        h.update(&d);
                    }
                    sink.write(&d).map_err(classify_sink_error)?;
                    n += d.len() as u64;
                    self.counters
                        .bytes
                        .fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                Some(Msg::End) => break,
                Some(Msg::Failed(e)) => return Err(Failure::Transfer(e)),
                None => {
                    return Err(Failure::Transfer(TransferError::Io(
                        "transfer task ended early".into(),
                    )))
                }
            }
        }
        if let (Some(h), Some(want)) = (hasher, expected) {
            let actual = h.finish();
            if actual != want {
                return Err(Failure::Hash(actual));
            }
        }
        Ok(n)
    }
}

/// A sink that cannot take the bytes because they do not decompress (or decompress to more
/// than the catalog allows) has met corrupt data: the server's fault, handled like a hash
/// mismatch. Anything else (a full or broken cache disk) is local and fatal.
fn classify_sink_error(e: io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => Failure::Corrupt(e.to_string()),
        _ => Failure::Sink(e),
    }
}

/// One member of a load-balance group, at random.
fn pick(group: &[Proxy]) -> Proxy {
    use rand::Rng;
    group[rand::thread_rng().gen_range(0..group.len())].clone()
}
