//! A fault-injecting HTTP/1.1 server for tests: serves one repository directory under
//! `/cvmfs/<fqrn>/<rel>` (the layout of `lazyroot serve`) on 127.0.0.1 port 0, and
//! misbehaves on the requests whose relative path a predicate picks: wrong bytes, error
//! statuses, cut or stalled bodies. Plain std threads, keep-alive, one thread per
//! connection; counts what it served; stops (and joins every thread) when dropped.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a matching request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The right bytes.
    None,
    /// The file with its middle byte flipped.
    FlipByte,
    /// The file with 64 bytes of garbage after its end (Content-Length counting them).
    AppendGarbage,
    /// This status and a short text body, on a connection kept alive.
    Status(u16),
    /// The full Content-Length, half the body, then the connection closed.
    Truncate,
    /// The body at this many bytes per second (in pieces ten times a second).
    Drip(u32),
    /// The request is read and never answered (until the client gives up).
    Hang,
    /// The headers (with the full Content-Length), then the connection closed.
    Kill,
    /// The body in four pieces 600 ms apart: never idle for a whole second, so never
    /// slower than a 1 s low-speed window allows.
    Bursts,
}

type Pred = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How often blocked reads wake up to look at the stop flag: bounds the time `drop` takes.
const POLL: Duration = Duration::from_millis(100);

struct Shared {
    repo: PathBuf,
    /// `/cvmfs/<fqrn>/`
    prefix: String,
    rule: Mutex<(Fault, Pred)>,
    requests: AtomicU64,
    faulted: AtomicU64,
    stop: AtomicBool,
}

pub struct Faulty {
    pub addr: SocketAddr,
    fqrn: String,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Faulty {
    /// Serves `repo` as `/cvmfs/<fqrn>/`, faultless until [`Faulty::set`].
    pub fn start(repo: &Path, fqrn: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // Non-blocking accept, polled: the accept thread sees the stop flag promptly.
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            repo: repo.to_path_buf(),
            prefix: format!("/cvmfs/{fqrn}/"),
            rule: Mutex::new((Fault::None, Arc::new(|_: &str| false))),
            requests: AtomicU64::new(0),
            faulted: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        let accept = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !sh.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let sh = sh.clone();
                        conns.push(std::thread::spawn(move || serve(s, &sh)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            // Connection threads poll the stop flag too; all of them end within ~1 s.
            for c in conns {
                let _ = c.join();
            }
        });
        Faulty {
            addr,
            fqrn: fqrn.to_string(),
            shared,
            accept: Some(accept),
        }
    }

    /// The repository's base URL on this server.
    pub fn url(&self) -> String {
        format!("http://{}/cvmfs/{}", self.addr, self.fqrn)
    }

    /// From now on, requests whose relative path (`data/ab/…`, `.cvmfspublished`)
    /// satisfies `applies` are answered with `fault`; the others normally.
    pub fn set(&self, fault: Fault, applies: impl Fn(&str) -> bool + Send + Sync + 'static) {
        *self.shared.rule.lock().unwrap() = (fault, Arc::new(applies));
    }

    /// Shorthand: `fault` for exactly one relative path.
    pub fn set_for(&self, fault: Fault, rel: &str) {
        let rel = rel.to_string();
        self.set(fault, move |r| r == rel);
    }

    /// Requests received (all of them, faulted or not).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests the fault was applied to.
    pub fn faulted(&self) -> u64 {
        self.shared.faulted.load(Ordering::SeqCst)
    }
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// One connection: request after request until the client closes, a fault ends it, or
/// the server stops.
fn serve(mut s: TcpStream, sh: &Shared) {
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(POLL));
    // A client that stops reading must not keep a writer (and so `drop`) blocked.
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut s, &mut buf, sh) {
        sh.requests.fetch_add(1, Ordering::SeqCst);
        // `GET /cvmfs/<fqrn>/<rel> HTTP/1.1`; absolute-form (through a proxy) too.
        let target = head.split(' ').nth(1).unwrap_or("");
        let path = match target.strip_prefix("http://") {
            Some(rest) => rest.find('/').map_or("", |i| &rest[i..]),
            None => target,
        };
        let rel = path.strip_prefix(sh.prefix.as_str());
        let body = rel
            .filter(|r| !r.contains("..") && !r.is_empty())
            .and_then(|r| std::fs::read(sh.repo.join(r)).ok());
        let fault = {
            let rule = sh.rule.lock().unwrap();
            match rel {
                Some(r) if (rule.1)(r) => rule.0,
                _ => Fault::None,
            }
        };
        if fault != Fault::None {
            sh.faulted.fetch_add(1, Ordering::SeqCst);
        }
        let Some(mut body) = body else {
            if respond(&mut s, 404, b"not found\n").is_err() {
                return;
            }
            continue;
        };
        let ok = match fault {
            Fault::None => respond(&mut s, 200, &body).is_ok(),
            Fault::FlipByte => {
                let mid = body.len() / 2;
                if let Some(b) = body.get_mut(mid) {
                    *b ^= 0x01;
                }
                respond(&mut s, 200, &body).is_ok()
            }
            Fault::AppendGarbage => {
                body.extend_from_slice(&[0x5a; 64]);
                respond(&mut s, 200, &body).is_ok()
            }
            Fault::Status(code) => respond(&mut s, code, b"injected fault\n").is_ok(),
            Fault::Truncate => {
                let _ = s.write_all(head_of(200, body.len()).as_bytes());
                let _ = s.write_all(&body[..body.len() / 2]);
                false
            }
            Fault::Kill => {
                let _ = s.write_all(head_of(200, body.len()).as_bytes());
                false
            }
            Fault::Drip(rate) => {
                let mut ok = s.write_all(head_of(200, body.len()).as_bytes()).is_ok();
                for piece in body.chunks((rate as usize / 10).max(1)) {
                    if !ok || sh.stop.load(Ordering::SeqCst) {
                        ok = false;
                        break;
                    }
                    ok = s.write_all(piece).is_ok();
                    std::thread::sleep(Duration::from_millis(100));
                }
                ok
            }
            Fault::Bursts => {
                let mut ok = s.write_all(head_of(200, body.len()).as_bytes()).is_ok();
                for (i, piece) in body.chunks(body.len().div_ceil(4).max(1)).enumerate() {
                    if i > 0 {
                        std::thread::sleep(Duration::from_millis(600));
                    }
                    if !ok || sh.stop.load(Ordering::SeqCst) {
                        ok = false;
                        break;
                    }
                    ok = s.write_all(piece).is_ok();
                }
                ok
            }
            Fault::Hang => {
                wait_closed(&mut s, sh);
                false
            }
        };
        if !ok {
            let _ = s.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// The next request head (up to the blank line), or `None` when the client closed, the
/// connection failed, or the server stops. Requests are GETs: there is no body to skip.
fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>, sh: &Shared) -> Option<String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..i + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        if sh.stop.load(Ordering::SeqCst) {
            return None;
        }
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Holds the connection open, answering nothing, until the client closes or we stop.
fn wait_closed(s: &mut TcpStream, sh: &Shared) {
    let mut chunk = [0u8; 1024];
    while !sh.stop.load(Ordering::SeqCst) {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn head_of(status: u16, len: usize) -> String {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Injected",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {len}\r\nConnection: keep-alive\r\n\r\n"
    )
}

fn respond(s: &mut TcpStream, status: u16, body: &[u8]) -> std::io::Result<()> {
    s.write_all(head_of(status, body.len()).as_bytes())?;
    s.write_all(body)?;
    s.flush()
}
