//! One HTTP/1.1 GET on a pooled keep-alive connection, streamed chunk by chunk to the
//! (blocking) caller through a channel, with a connect timeout and a low-speed limit so a
//! stalled server or proxy fails within a bounded time instead of hanging a reader.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use super::chain::Endpoint;

/// Timeouts and limits of one transfer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest wait for the TCP connection to open.
    pub connect_timeout: Duration,
    /// The low-speed limit in bytes per second: a transfer whose average over any
    /// `low_speed_time` window falls below it fails (CernVM-FS's `CVMFS_LOW_SPEED_LIMIT`).
    pub low_speed_limit: u64,
    /// The window of the low-speed limit. The response head must arrive within the longer
    /// of this and `connect_timeout`.
    pub low_speed_time: Duration,
    /// The longest one attempt at one object may take, however fast it moves: a server
    /// just above the low-speed limit must not keep a reader for hours.
    pub deadline: Duration,
}

impl Default for Limits {
    /// As CernVM-FS: 5 s to connect, slower than 1024 bytes/s over the 5 s timeout counts
    /// as dead; and at most 10 minutes for one attempt at one object (CernVM-FS has no such
    /// bound; objects are at most a 16 MiB chunk, or a catalog, in practice).
    fn default() -> Self {
        Limits {
            connect_timeout: Duration::from_secs(5),
            low_speed_limit: 1024,
            low_speed_time: Duration::from_secs(5),
            deadline: Duration::from_secs(600),
        }
    }
}

impl Limits {
    /// The bytes a window of `low_speed_time` must carry.
    fn window_minimum(&self) -> u64 {
        let per_ms = self.low_speed_limit as u128 * self.low_speed_time.as_millis();
        u64::try_from(per_ms / 1000).unwrap_or(u64::MAX)
    }
}

/// Why a transfer failed; the caller decides between retry, proxy and host failover.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The TCP connection failed or timed out, or the HTTP handshake failed (endpoint, why).
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    /// The server answered with a status other than 200.
    #[error("HTTP {0}")]
    Status(u16),
    /// Under the low-speed limit (bytes per second, window); with 0: no response head in
    /// time.
    #[error("transfer too slow (under {0} bytes/s over {1:?})")]
    TooSlow(u64, Duration),
    /// One attempt took longer than the per-object deadline.
    #[error("transfer took longer than the {0:?} allowed for one object")]
    Deadline(Duration),
    /// The connection broke, or the request could not be sent.
    #[error("connection failed: {0}")]
    Io(String),
    /// The body ended before its `Content-Length`.
    #[error("body truncated: {got} of {want} bytes")]
    Truncated {
        /// Bytes received.
        got: u64,
        /// Bytes `Content-Length` announced.
        want: u64,
    },
    /// The body is, or announces, more than the request's limit in bytes.
    #[error("larger than the {0} bytes expected")]
    TooLarge(u64),
}

impl TransferError {
    /// Whether the failure is of the connection or the transfer (worth a retry on the same
    /// route), rather than an HTTP answer.
    pub fn is_connection_level(&self) -> bool {
        !matches!(self, TransferError::Status(_))
    }
}

/// What the transfer task sends to the waiting caller.
#[derive(Debug)]
pub enum Msg {
    /// The next chunk of the body.
    Data(Bytes),
    /// The body is complete; nothing follows.
    End,
    /// The transfer failed; nothing follows.
    Failed(TransferError),
}

/// Idle keep-alive connections by endpoint.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<Endpoint, Vec<SendRequest<Empty<Bytes>>>>>,
}

impl Pool {
    fn take(&self, e: &Endpoint) -> Option<SendRequest<Empty<Bytes>>> {
        let mut idle = self.idle.lock().expect("pool");
        let list = idle.get_mut(e)?;
        while let Some(s) = list.pop() {
            if s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    fn put(&self, e: &Endpoint, s: SendRequest<Empty<Bytes>>) {
        let mut idle = self.idle.lock().expect("pool");
        let list = idle.entry(e.clone()).or_default();
        // A handful of idle connections per endpoint is plenty for 16 parallel downloads.
        if list.len() < 16 {
            list.push(s);
        }
    }
}

async fn connect(
    e: &Endpoint,
    limits: &Limits,
) -> Result<SendRequest<Empty<Bytes>>, TransferError> {
    let fail = |why: String| TransferError::Connect(e.to_string(), why);
    let stream = tokio::time::timeout(
        limits.connect_timeout,
        tokio::net::TcpStream::connect((e.host.as_str(), e.port)),
    )
    .await
    .map_err(|_| fail(format!("timed out after {:?}", limits.connect_timeout)))?
    .map_err(|err| fail(err.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| fail(err.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await; // ends when the peer closes or the sender is dropped
    });
    Ok(sender)
}

/// One GET: where to connect, what to ask for, and how much to accept.
pub struct Get {
    /// The origin server, or the proxy when going through one.
    pub via: Endpoint,
    /// Origin-form for a direct request, absolute-form through a proxy.
    pub uri: String,
    /// The `Host` header: the origin server's `host:port`.
    pub host_header: String,
    /// Asks proxies to fetch afresh (`Cache-Control: no-cache`), e.g. after a hash mismatch.
    pub no_cache: bool,
    /// Most body bytes accepted.
    pub limit: u64,
    /// Connect timeout and low-speed limit.
    pub limits: Limits,
}

/// Performs the GET and streams the body into `tx`; failures are sent too.
pub async fn get(pool: &Pool, g: Get, tx: mpsc::Sender<Msg>) {
    let deadline = g.limits.deadline;
    let result = match tokio::time::timeout(deadline, transfer(pool, &g, &tx)).await {
        Ok(r) => r,
        Err(_) => Err(TransferError::Deadline(deadline)),
    };
    if let Err(e) = result {
        let _ = tx.send(Msg::Failed(e)).await;
    }
}

async fn transfer(pool: &Pool, g: &Get, tx: &mpsc::Sender<Msg>) -> Result<(), TransferError> {
    let (via, limit, limits) = (&g.via, g.limit, g.limits);
    let mut sender = match pool.take(via) {
        Some(s) => s,
        None => connect(via, &limits).await?,
    };
    let mut req = hyper::Request::get(g.uri.as_str())
        .header(hyper::header::HOST, g.host_header.as_str())
        .header(
            hyper::header::USER_AGENT,
            concat!("lazyroot/", env!("CARGO_PKG_VERSION")),
        );
    if g.no_cache {
        // Makes a caching proxy fetch afresh instead of serving a poisoned copy.
        req = req
            .header(hyper::header::CACHE_CONTROL, "no-cache")
            .header(hyper::header::PRAGMA, "no-cache");
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| TransferError::Io(e.to_string()))?;
    let io = |e: hyper::Error| TransferError::Io(e.to_string());
    let resp = tokio::time::timeout(
        limits.low_speed_time.max(limits.connect_timeout),
        sender.send_request(req),
    )
    .await
    .map_err(|_| TransferError::TooSlow(0, limits.low_speed_time))?
    .map_err(io)?;
    let status = resp.status().as_u16();
    let want = resp
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if status != 200 {
        // The connection is dropped rather than drained: error answers are rare.
        return Err(TransferError::Status(status));
    }

    if let Some(w) = want {
        if w > limit {
            return Err(TransferError::TooLarge(limit));
        }
    }
    let mut body = resp.into_body();
    let mut got = 0u64;
    let mut window_start = Instant::now();
    let mut window_bytes = 0u64;
    loop {
        let left = limits.low_speed_time.saturating_sub(window_start.elapsed());
        let frame = match tokio::time::timeout(left, body.frame()).await {
            // The window ended while waiting: slow only if it carried too little.
            Err(_) if window_bytes >= limits.window_minimum() => {
                window_start = Instant::now();
                window_bytes = 0;
                continue;
            }
            Err(_) => {
                return Err(TransferError::TooSlow(
                    limits.low_speed_limit,
                    limits.low_speed_time,
                ))
            }

            Ok(None) => break,
            Ok(Some(f)) => f.map_err(io)?,
        };
        if let Ok(data) = frame.into_data() {
            got += data.len() as u64;
            window_bytes += data.len() as u64;
            if got > limit {
                return Err(TransferError::TooLarge(limit));
            }
            if tx.send(Msg::Data(data)).await.is_err() {
                return Ok(()); // the caller gave up; nothing to report
            }
        }
        if window_start.elapsed() >= limits.low_speed_time {
            if window_bytes < limits.window_minimum() {
                return Err(TransferError::TooSlow(
                    limits.low_speed_limit,
                    limits.low_speed_time,
                ));
            }
            window_start = Instant::now();
            window_bytes = 0;
        }
    }
    if let Some(w) = want {
        if got != w {
            return Err(TransferError::Truncated { got, want: w });
        }
    }
    pool.put(via, sender);
    let _ = tx.send(Msg::End).await;
    Ok(())
}
