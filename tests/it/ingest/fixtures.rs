//! Real components for the image-source tests: images built offline by `umoci` from trees
//! written here, Debian's `docker-registry` on 127.0.0.1 (a config of our own; storage in a
//! temp dir), `skopeo` to push and to write `docker-archive:` files, `openssl` for a test CA,
//! and small HTTP servers of our own (a token service, a fault-injecting proxy) on port 0.
//! Every process and listener is torn down on drop; every wait is bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lazyroot::ingest::reference::Reference;
use lazyroot::ingest::source::{self, ImageSource, SourceOptions};

/// Runs a command; panics with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (is the package installed? scripts/test.sh installs it)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Options that read no Docker config of the machine, with short bounds for tests.
pub fn options() -> SourceOptions {
    SourceOptions {
        docker_config: None,
        timeout: Duration::from_secs(5),
        retries: 2,
        max_retry_wait: Duration::from_secs(2),
        ..SourceOptions::default()
    }
}

/// Opens the source `reference` names.
/// [`options`] with plain HTTP allowed to the test registry at `addr`.
pub fn insecure(addr: &str) -> SourceOptions {
    let mut o = options();
    o.insecure_registries = vec![addr.to_string()];
    o
}

/// The three-layer image as `team/app:v1` in a new anonymous registry (the layout in
/// `tmp/layout`).
pub fn registry_with_three_layers(tmp: &Path) -> (Registry, std::path::PathBuf) {
    let layout = tmp.join("layout");
    three_layers(&layout, "v1");
    let reg = Registry::start(RegistryAuth::None);
    skopeo_copy(
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/team/app:v1", reg.addr()),
        &[],
    );
    (reg, layout)
}

pub fn open(reference: &str, options: &SourceOptions) -> Box<dyn ImageSource> {
    source::open(&Reference::parse(reference).unwrap(), options)
        .unwrap_or_else(|e| panic!("opening {reference}: {e}"))
}

/// One layer: files (path, content) added on top of the previous layers.
pub type Layer<'a> = &'a [(&'a str, &'a [u8])];

/// Builds image `tag` in the OCI layout `layout` with `umoci`: one layer per entry, then
/// the config (platform, entrypoint, env, working dir, a label).
pub fn build_image(layout: &Path, tag: &str, layers: &[Layer<'_>], arch: &str) {
    if !layout.join("oci-layout").exists() {
        run(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    }
    let image = format!("{}:{tag}", layout.display());
    run(Command::new("umoci").args(["new", "--image", &image]));
    let bundle = layout.with_extension(format!("bundle-{tag}"));
    for files in layers {
        run(Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&bundle));
        for (path, content) in *files {
            let p = bundle.join("rootfs").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        }
        run(Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle));
        std::fs::remove_dir_all(&bundle).unwrap();
    }
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--os",
        "linux",
        "--architecture",
        arch,
        "--config.entrypoint",
        "/bin/sh",
        "--config.env",
        "GREETING=hello",
        "--config.workingdir",
        "/srv",
        "--config.label",
        "org.example.test=1",
    ]));
}

/// The three-layer image most tests use, as `tag` in `layout`.
pub fn three_layers(layout: &Path, tag: &str) {
    let big = crate::common::noise(7, 300 << 10);
    build_image(
        layout,
        tag,
        &[
            &[("etc/os-release", b"ID=test\n"), ("bin/tool", &big)],
            &[("etc/motd", b"layer two\n")],
            &[("srv/data.txt", b"layer three\n")],
        ],
        "amd64",
    );
}

/// `skopeo copy` between two transports (`--all` for indexes), TLS unchecked on both
/// sides (the tests' registries are on loopback).
pub fn skopeo_copy(from: &str, to: &str, extra: &[&str]) {
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--quiet"])
        .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
        .args(extra)
        .arg(from)
        .arg(to));
}

/// A `docker-registry` process on 127.0.0.1, killed on drop.
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

/// How the registry authenticates.
pub enum RegistryAuth<'a> {
    /// Anonymous pulls and pushes.
    None,
    /// htpasswd Basic auth over TLS: (htpasswd file, cert, key).
    Htpasswd(&'a Path, &'a Path, &'a Path),
    /// Token auth: (realm URL, service, issuer, root cert bundle).
    Token(&'a str, &'a str, &'a str, &'a Path),
}

impl Registry {
    pub fn start(auth: RegistryAuth<'_>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        let secure = matches!(auth, RegistryAuth::Htpasswd(..));
        match auth {
            RegistryAuth::None => {}
            RegistryAuth::Htpasswd(htpasswd, cert, key) => {
                config.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                    cert.display(),
                    key.display(),
                    htpasswd.display()
                ));
            }
            RegistryAuth::Token(realm, service, issuer, bundle) => {
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                    bundle.display()
                ));
            }
        }
        let conf = dir.path().join("config.yml");
        std::fs::write(&conf, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (scripts/test.sh installs it)");
        let mut r = Registry { dir, port, child };
        r.wait_ready(secure);
        r
    }

    /// Waits (at most 10 s) until the registry answers on its port.
    fn wait_ready(&mut self, secure: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}): {}", self.log());
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                if secure {
                    return; // the TLS listener is up; the handshake is the client's
                }
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file holding a blob's bytes in the registry's storage.
    pub fn blob_data(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a server certificate for 127.0.0.1 / localhost signed by it.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let openssl =
            |args: &[&str]| run(Command::new("openssl").args(args).current_dir(dir.path()));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=lazyroot test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        TestCa {
            ca: p("ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
            dir,
        }
    }
}

/// One HTTP request as the small servers see it.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A small HTTP/1.1 server on 127.0.0.1:0 (one thread per connection, `Connection:
/// close`); the handler writes the whole answer. Stops on drop.
pub struct Server {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    pub fn start<F>(handler: F) -> Server
    where
        F: Fn(&Request, &mut TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let (stop2, requests2) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let (handler, requests) = (handler.clone(), requests2.clone());
                std::thread::spawn(move || {
                    conn.set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    if let Some(req) = read_request(&mut conn) {
                        requests.lock().unwrap().push(req.clone());
                        handler(&req, &mut conn);
                    }
                    let _ = conn.flush();
                    let _ = conn.shutdown(Shutdown::Both);
                });
            }
        });
        Server {
            port,
            stop,
            thread: Some(thread),
            requests,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Paths asked for so far.
    pub fn paths(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.path.clone())
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(conn: &mut TcpStream) -> Option<Request> {
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    Some(Request { path, headers })
}

/// Writes a whole answer.
pub fn respond(conn: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
}

/// An upstream answer, read whole.
pub struct Upstream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Forwards `req` to `upstream` (host:port) and reads the whole answer.
pub fn forward(req: &Request, upstream: &str) -> Upstream {
    let mut s = TcpStream::connect(upstream).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n",
        req.path
    );
    for (n, v) in &req.headers {
        if ["accept", "authorization", "user-agent"].contains(&n.to_ascii_lowercase().as_str()) {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Upstream {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

/// Writes an upstream answer back, with its headers (length recomputed).
pub fn relay(conn: &mut TcpStream, up: &Upstream) {
    let keep: Vec<(&str, &str)> = up
        .headers
        .iter()
        .filter(|(n, _)| {
            !["content-length", "connection", "transfer-encoding"]
                .contains(&n.to_ascii_lowercase().as_str())
        })
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    respond(conn, up.status, &keep, &up.body);
}

/// Base64 (standard) of `s`.
pub fn b64(s: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The error's message with its chain of causes.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Asserts every part is in `msg`.
pub fn assert_parts(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{p:?} is not in the message: {msg}");
    }
}

/// What the fault proxy does with one request.
pub enum Fault {
    /// Forwards it and relays the answer.
    Pass,
    /// Answers with this status, these headers and this body instead.
    Answer(u16, Vec<(String, String)>, String),
    /// Forwards it and flips a byte of the answer's body.
    Corrupt,
    /// Forwards it, announces the whole length, sends half the body, and closes.
    Truncate,
}

/// A proxy in front of `upstream` that asks `rule` what to do with each request (given
/// how many times its path was asked for before).
pub fn fault_proxy<F>(upstream: String, rule: F) -> Server
where
    F: Fn(&Request, usize) -> Fault + Send + Sync + 'static,
{
    let seen = Mutex::new(std::collections::HashMap::<String, usize>::new());
    Server::start(move |req, conn| {
        let n = {
            let mut seen = seen.lock().unwrap();
            let c = seen.entry(req.path.clone()).or_default();
            *c += 1;
            *c - 1
        };
        match rule(req, n) {
            Fault::Pass => relay(conn, &forward(req, &upstream)),
            Fault::Answer(status, headers, body) => {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(a, b)| (a.as_str(), b.as_str()))
                    .collect();
                respond(conn, status, &h, body.as_bytes());
            }
            Fault::Corrupt => {
                let mut up = forward(req, &upstream);
                let mid = up.body.len() / 2;
                up.body[mid] ^= 0x55;
                relay(conn, &up);
            }
            Fault::Truncate => {
                let up = forward(req, &upstream);
                let head = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    up.status,
                    up.body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&up.body[..up.body.len() / 2]);
            }
        }
    })
}
