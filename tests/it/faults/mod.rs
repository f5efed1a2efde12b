//! Faults between the client and its servers: corrupt bytes, error statuses, cut, slow and
//! hung transfers, bad trust chains, an unusable or full cache, caching and dead proxies.
//! A reader must get the right bytes or an error (EIO through FUSE), within a bounded
//! time, and a healthy server further down the list must be used when one is there.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lazyroot::cvmfs::manifest::Manifest;
use lazyroot::cvmfs::object::{ObjectKind, ObjectName};
use lazyroot::cvmfs::signature::load_private_key;
use lazyroot::cvmfs::whitelist::Whitelist;
use lazyroot::mount::{inodes::ROOT, MountedTree};
use lazyroot::remote::cache::Cache;
use lazyroot::remote::download::{parse_hosts, parse_proxies, Downloader, Settings};
use lazyroot::remote::{self, Mode, RemoteError, RemoteSource};
use lazyroot::repository::{At, Repository, Trust};

use crate::common::*;
use crate::faulty::{Fault, Faulty};
use crate::net::*;

mod cache;
mod proxies;
mod soak;
mod trust;

const BIG: &str = "blobs/big.bin";
const BIG_LEN: usize = 300 << 10;

/// A repository with a small published tree: small files, 300 KiB of noise, and a nested
/// catalog under `nested/` (cut by a `.cvmfscatalog` marker).
struct Fixture {
    repo: TestRepo,
    src: PathBuf,
    big: Vec<u8>,
}

fn fixture() -> Fixture {
    let repo = TestRepo::new();
    let src = repo.dir.path().join("src");
    write(&src.join("etc/hello.txt"), b"hello\n");
    write(&src.join("etc/motd"), b"welcome\n");
    let big = noise(7, BIG_LEN);
    write(&src.join(BIG), &big);
    write(&src.join("nested/.cvmfscatalog"), b"");
    write(&src.join("nested/inner.txt"), b"inner\n");
    write(&src.join("nested/sub/deep.txt"), b"deep\n");
    repo.publish(&src);
    Fixture { repo, src, big }
}

impl Fixture {
    fn dir(&self) -> PathBuf {
        self.repo.dir.path().to_path_buf()
    }

    /// `data/…` of the whole-file object holding `path`.
    fn file_object(&self, path: &str) -> String {
        let r = self.repo.open();
        let f = r
            .snapshot(&At::Latest)
            .unwrap()
            .stat(path.as_bytes())
            .unwrap();
        ObjectName::new(f.entry.hash.expect("content hash"), ObjectKind::File).path()
    }

    /// `data/…C` of the catalog that holds `path`.
    fn catalog_object(&self, path: &str) -> String {
        let r = self.repo.open();
        let f = r
            .snapshot(&At::Latest)
            .unwrap()
            .stat(path.as_bytes())
            .unwrap();
        ObjectName::new(f.catalog, ObjectKind::Catalog).path()
    }

    fn key(&self) -> String {
        self.repo
            .keys
            .join(format!("{FQRN}.pub"))
            .to_string_lossy()
            .into_owned()
    }

    /// `lazyroot mount` with `--timeout 2` (and `extra`), or its stderr.
    fn mount(
        &self,
        servers: &str,
        cache: &Path,
        mnt: &Path,
        extra: &[&str],
    ) -> Result<Mount, String> {
        let (key, cache) = (self.key(), cache.to_string_lossy().into_owned());
        let mut args = vec![
            "--server",
            servers,
            "--key",
            &key,
            "--cache",
            &cache,
            "--timeout",
            "2",
        ];
        args.extend_from_slice(extra);
        Mount::try_start(FQRN, mnt, &args)
    }
}

/// Runs `f` on a thread of its own and waits at most `secs` seconds: a hang fails the test
/// instead of stalling the suite. A panic in `f` is passed on as it is.
fn bounded<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: still running after {secs} s; it hangs")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match t.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("the thread sends before it ends"),
        },
    }
}

/// Reads a file through a mount, bounded in time.
fn read_mounted(path: PathBuf) -> std::io::Result<Vec<u8>> {
    let what = format!("reading {}", path.display());
    bounded(60, &what, move || std::fs::read(path))
}

/// Lists a directory through a mount (sorted names), bounded in time.
fn list_mounted(dir: PathBuf) -> std::io::Result<Vec<String>> {
    let what = format!("listing {}", dir.display());
    bounded(60, &what, move || {
        let mut names = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<Vec<_>>>()?;
        names.sort();
        Ok(names)
    })
}

/// The read failed with EIO; what it returned, if it did not, is described, not dumped.
fn assert_eio(r: std::io::Result<Vec<u8>>, right: &[u8], what: &str) {
    match r {
        Ok(b) => panic!(
            "{what}: returned {} bytes ({}), expected EIO",
            b.len(),
            if b == right {
                "the right ones"
            } else {
                "WRONG ones"
            }
        ),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{what}: {e}"),
    }
}

fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    assert!(
        got == want,
        "{what}: {} bytes, not the {} expected (or different content)",
        got.len(),
        want.len()
    );
}

// --- The client library without the kernel -------------------------------------------

/// Download settings that give up fast: 1 s to connect, under 1024 bytes in 1 s is too
/// slow, one retry after 50 ms.
fn settings(servers: &str, proxies: &str) -> Settings {
    let mut s = Settings::new(
        parse_hosts(servers, FQRN).unwrap(),
        parse_proxies(proxies).unwrap(),
    );
    s.limits.connect_timeout = Duration::from_secs(1);
    s.limits.low_speed_time = Duration::from_secs(1);
    s.retries = 1;
    s.backoff_min = Duration::from_millis(50);
    s.backoff_max = Duration::from_millis(100);
    s
}

fn source(fqrn: &str, servers: &str, cache: &Path) -> Arc<RemoteSource> {
    Arc::new(RemoteSource::new(
        fqrn,
        Arc::new(Downloader::new(settings(servers, "DIRECT")).unwrap()),
        Arc::new(Cache::open(cache, None).unwrap()),
    ))
}

/// `remote::open` of repository `fqrn` at `servers` with a cache in `cache`, bounded.
fn open_remote(
    fqrn: &str,
    servers: &str,
    cache: &Path,
    trust: Trust,
) -> Result<(Repository, Mode), RemoteError> {
    let (fqrn, servers, cache) = (fqrn.to_string(), servers.to_string(), cache.to_path_buf());
    bounded(60, "remote::open", move || {
        remote::open(source(&fqrn, &servers, &cache), &trust)
    })
}

/// Opens the repository at `servers` and reads `path` as the FUSE adapter would: lookups
/// from the root, open, reads of 128 KiB until a short one. Bounded in time.
fn read_through_library(
    servers: &str,
    cache: &Path,
    trust: Trust,
    path: &str,
) -> Result<Vec<u8>, String> {
    let (servers, cache, path) = (servers.to_string(), cache.to_path_buf(), path.to_string());
    bounded(60, "reading through the library", move || {
        let src = source(FQRN, &servers, &cache);
        let (repo, mode) = remote::open(src.clone(), &trust).map_err(|e| e.to_string())?;
        let (root, size) = (
            repo.manifest().root_catalog,
            repo.manifest().root_catalog_size,
        );
        let opened = lazyroot::remote::stack::Opened { repo, mode, trust };
        let tree = MountedTree::new(src, opened, root, size, false).map_err(|e| e.to_string())?;
        let mut ino = ROOT;
        for name in path.split('/') {
            ino = tree
                .lookup(ino, name.as_bytes())
                .map_err(|e| e.to_string())?
                .ino;
        }
        let fh = tree.open(ino).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        loop {
            let piece = tree
                .read(fh, out.len() as u64, 128 << 10)
                .map_err(|e| e.to_string())?;
            out.extend_from_slice(&piece);
            if piece.len() < 128 << 10 {
                break;
            }
        }
        tree.release(fh);
        Ok(out)
    })
}

// --- a. A corrupt file object ----------------------------------------------------------

#[test]
fn flipped_byte_in_a_file_is_eio_and_a_healthy_second_server_is_used() {
    let fx = fixture();
    let d = fx.dir();
    let obj = fx.file_object(BIG);
    let bad = Faulty::start(&fx.repo.repo, FQRN);
    bad.set_for(Fault::FlipByte, &obj);
    let good = Server::start(&[&fx.repo.repo]);

    {
        let m = fx
            .mount(&bad.url(), &d.join("cache1"), &d.join("mnt1"), &[])
            .unwrap();
        assert_eio(
            read_mounted(m.dir.join(BIG)),
            &fx.big,
            "corrupt object, one server",
        );
        assert!(bad.faulted() >= 1, "the object was requested");
        // Nothing wrong was cached: asking again fails again, and the rest still reads.
        assert_eio(
            read_mounted(m.dir.join(BIG)),
            &fx.big,
            "corrupt object, again",
        );
        assert_eq!(
            read_mounted(m.dir.join("etc/hello.txt")).unwrap(),
            b"hello\n"
        );
    }

    let before = bad.faulted();
    let servers = format!("{};{}", bad.url(), good.url(FQRN));
    let m = fx
        .mount(&servers, &d.join("cache2"), &d.join("mnt2"), &[])
        .unwrap();
    let got = read_mounted(m.dir.join(BIG)).unwrap_or_else(|e| {
        panic!("faulty server first, healthy second: {e}; a corrupt object must fail over")
    });
    assert_bytes(&got, &fx.big, "with a healthy second server");
    assert!(bad.faulted() > before, "the faulty server was asked first");
}

/// Garbage after the end of an object's zlib stream is the server's fault, like a flipped
/// byte: the next server is asked, never EIO while a healthy one is configured.
#[test]
fn garbage_after_an_object_fails_over_to_a_healthy_server() {
    let fx = fixture();
    let d = fx.dir();
    let obj = fx.file_object(BIG);
    let bad = Faulty::start(&fx.repo.repo, FQRN);
    bad.set_for(Fault::AppendGarbage, &obj);
    let good = Server::start(&[&fx.repo.repo]);
    let servers = format!("{};{}", bad.url(), good.url(FQRN));
    let m = fx
        .mount(&servers, &d.join("cache"), &d.join("mnt"), &[])
        .unwrap();
    let got = read_mounted(m.dir.join(BIG))
        .unwrap_or_else(|e| panic!("garbage on the first server, healthy second: {e}"));
    assert_bytes(&got, &fx.big, "with a healthy second server");
    assert!(bad.faulted() >= 1, "the faulty server was asked first");
}

/// A proxy that answers with an error status (500, 404) is the proxy's failure as much as
/// the server's: `proxy;DIRECT` goes on to DIRECT, and a proxy serving corrupt bytes too.
#[test]
fn a_proxy_answering_errors_or_wrong_bytes_fails_over_to_direct() {
    let fx = fixture();
    let d = fx.dir();
    let obj = fx.file_object(BIG);
    let server = Server::start(&[&fx.repo.repo]);
    for (i, fault) in [Fault::Status(500), Fault::Status(404), Fault::FlipByte]
        .into_iter()
        .enumerate()
    {
        let proxy = Faulty::start(&fx.repo.repo, FQRN);
        let shown = format!("{fault:?}");
        proxy.set_for(fault, &obj);
        let chain = format!("http://{};DIRECT", proxy.addr);
        let m = fx
            .mount(
                &server.url(FQRN),
                &d.join(format!("cache{i}")),
                &d.join(format!("mnt{i}")),
                &["--proxy", &chain],
            )
            .unwrap();
        let got = read_mounted(m.dir.join(BIG))
            .unwrap_or_else(|e| panic!("proxy answering {shown}: DIRECT was not tried: {e}"));
        assert_bytes(&got, &fx.big, &shown);
        assert!(proxy.faulted() >= 1, "{shown}: the proxy was asked first");
        assert!(m.stop().success());
    }
}

// --- b. A corrupt nested catalog -------------------------------------------------------

#[test]
fn flipped_byte_in_a_nested_catalog_is_eio_and_a_healthy_second_server_is_used() {
    let fx = fixture();
    let d = fx.dir();
    let nested = fx.catalog_object("/nested/inner.txt");
    assert_ne!(
        nested,
        fx.catalog_object("/etc/hello.txt"),
        "nested/ has a catalog of its own"
    );
    let bad = Faulty::start(&fx.repo.repo, FQRN);
    bad.set_for(Fault::FlipByte, &nested);
    let good = Server::start(&[&fx.repo.repo]);

    {
        let m = fx
            .mount(&bad.url(), &d.join("cache1"), &d.join("mnt1"), &[])
            .unwrap();
        // The root catalog is fine: the top level lists.
        assert_eq!(
            list_mounted(m.dir.clone()).unwrap(),
            ["blobs", "etc", "nested"]
        );
        match list_mounted(m.dir.join("nested")) {
            Ok(names) => panic!("nested/ listed as {names:?} from a corrupt catalog"),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "listing nested/: {e}"),
        }
        assert_eio(
            read_mounted(m.dir.join("nested/inner.txt")),
            b"inner\n",
            "nested/inner.txt",
        );
        assert!(bad.faulted() >= 1, "the nested catalog was requested");
    }

    let servers = format!("{};{}", bad.url(), good.url(FQRN));
    let m = fx
        .mount(&servers, &d.join("cache2"), &d.join("mnt2"), &[])
        .unwrap();
    let names = list_mounted(m.dir.join("nested")).unwrap_or_else(|e| {
        panic!("faulty server first, healthy second: {e}; a corrupt catalog must fail over")
    });
    // The `.cvmfscatalog` marker is an entry like any other, as in stock repositories.
    assert_eq!(names, [".cvmfscatalog", "inner.txt", "sub"]);

    assert_eq!(
        read_mounted(m.dir.join("nested/sub/deep.txt")).unwrap(),
        b"deep\n"
    );
}

// --- c. A corrupt manifest ---------------------------------------------------------------

#[test]
fn flipped_byte_in_the_manifest_refuses_the_mount() {
    let fx = fixture();
    let d = fx.dir();
    let bad = Faulty::start(&fx.repo.repo, FQRN);
    bad.set_for(Fault::FlipByte, ".cvmfspublished");
    let good = Server::start(&[&fx.repo.repo]);

    let mnt = d.join("mnt1");
    let err = match fx.mount(&bad.url(), &d.join("cache1"), &mnt, &[]) {
        Ok(_) => panic!("mounted with a corrupt manifest"),
        Err(e) => e,
    };
    assert!(
        err.contains("manifest") || err.contains("signature"),
        "the refusal names the manifest or its signature: {err}"
    );
    assert!(!is_mounted(&mnt));
    assert!(bad.faulted() >= 1);

    let servers = format!("{};{}", good.url(FQRN), bad.url());
    let m = fx
        .mount(&servers, &d.join("cache2"), &d.join("mnt2"), &[])
        .unwrap();
    assert_eq!(
        read_mounted(m.dir.join("etc/hello.txt")).unwrap(),
        b"hello\n"
    );
    drop(m);

    // The corrupt server listed first: its manifest does not verify, the next host's does.
    let servers = format!("{};{}", bad.url(), good.url(FQRN));
    let m = fx
        .mount(&servers, &d.join("cache3"), &d.join("mnt3"), &[])
        .unwrap();
    assert_eq!(
        read_mounted(m.dir.join("etc/hello.txt")).unwrap(),
        b"hello\n"
    );
}

// --- d. Transfers that fail: cut, refused, slow, hung --------------------------------------

/// With only a server that answers the 300 KiB object with `fault`, the read fails within
/// a bounded time, after `tries` requests (an HTTP error blames the host at once, a
/// connection-level failure is retried once), with an error naming that server and one of
/// `expect`; with a healthy server after it, the read fails over and returns the right bytes.
fn transfer_fault(fault: Fault, tries: u64, expect: &[&str]) {
    let fx = fixture();
    let d = fx.dir();
    let bad = Faulty::start(&fx.repo.repo, FQRN);
    bad.set_for(fault, &fx.file_object(BIG));
    let good = Server::start(&[&fx.repo.repo]);

    let t0 = Instant::now();
    match read_through_library(&bad.url(), &d.join("cache1"), fx.repo.trust(), BIG) {
        Ok(b) => panic!(
            "{fault:?}: read {} bytes ({}) from the faulty server",
            b.len(),
            if b == fx.big { "right" } else { "WRONG" }
        ),
        Err(e) => {
            assert!(
                e.contains(&bad.addr.to_string()),
                "{fault:?}: names the server: {e}"
            );
            assert!(
                expect.iter().any(|x| e.contains(x)),
                "{fault:?}: says one of {expect:?}: {e}"
            );
        }
    }
    // At most two tries of ~1 s each, a backoff, and the bootstrap files.
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "{fault:?}: took {:?}",
        t0.elapsed()
    );
    assert_eq!(bad.faulted(), tries, "{fault:?}: requests of the object");

    let before = bad.faulted();
    let servers = format!("{};{}", bad.url(), good.url(FQRN));
    let got = read_through_library(&servers, &d.join("cache2"), fx.repo.trust(), BIG)
        .unwrap_or_else(|e| panic!("{fault:?} with a healthy second server: {e}"));
    assert_bytes(
        &got,
        &fx.big,
        &format!("{fault:?} with a healthy second server"),
    );
    assert!(
        bad.faulted() > before,
        "{fault:?}: the faulty server was asked first"
    );
}

#[test]
fn server_killed_after_the_headers_fails_over() {
    transfer_fault(Fault::Kill, 2, &["connection", "truncated"]);
}

#[test]
fn truncated_body_fails_over() {
    transfer_fault(Fault::Truncate, 2, &["connection", "truncated"]);
}

#[test]
fn http_404_fails_over() {
    transfer_fault(Fault::Status(404), 1, &["HTTP 404"]);
}

#[test]
fn http_500_fails_over() {
    transfer_fault(Fault::Status(500), 1, &["HTTP 500"]);
}

#[test]
fn slower_than_the_low_speed_limit_fails_over() {
    transfer_fault(Fault::Drip(200), 2, &["too slow"]);
}

/// The low-speed limit is a rate (CernVM-FS's 1024 bytes/s, averaged over the window, here
/// the fixture's 2 s): a server at 800 bytes/s is too slow and a healthy second server
/// serves the file. (It was 1024 bytes per window, 512 bytes/s here and 205 with the 5 s
/// default, and the 800 B/s server was never left.) Bounded: a read still waiting after
/// 60 s fails the test.
#[test]
fn a_server_under_the_low_speed_rate_is_left_for_a_healthy_one() {
    let fx = fixture();
    let d = fx.dir();
    let slow = Faulty::start(&fx.repo.repo, FQRN);
    slow.set_for(Fault::Drip(800), &fx.file_object(BIG));
    let good = Server::start(&[&fx.repo.repo]);
    let servers = format!("{};{}", slow.url(), good.url(FQRN));
    let m = fx
        .mount(&servers, &d.join("cache"), &d.join("mnt"), &[])
        .unwrap();
    let got = bounded(60, "reading from an 800 B/s server", {
        let p = m.dir.join(BIG);
        move || read_mounted(p).map_err(|e| e.to_string())
    })
    .unwrap_or_else(|e| panic!("an 800 B/s server with a healthy second one: {e}"));
    assert_bytes(&got, &fx.big, "from the healthy server");
    assert!(slow.faulted() >= 1, "the slow server was asked first");
}

/// However fast a transfer moves, one attempt at one object ends at the deadline: a server
/// above the low-speed limit that would take minutes for an object is left.
#[test]
fn the_per_object_deadline_ends_a_transfer_that_moves_but_takes_too_long() {
    let fx = fixture();
    let d = fx.dir();
    let slow = Faulty::start(&fx.repo.repo, FQRN);
    slow.set_for(Fault::Drip(4096), &fx.file_object(BIG));
    let good = Server::start(&[&fx.repo.repo]);
    let servers = format!("{};{}", slow.url(), good.url(FQRN));
    let m = fx
        .mount(
            &servers,
            &d.join("cache"),
            &d.join("mnt"),
            &["--deadline", "2"],
        )
        .unwrap();
    let got = bounded(60, "reading past the deadline", {
        let p = m.dir.join(BIG);
        move || read_mounted(p).map_err(|e| e.to_string())
    })
    .unwrap_or_else(|e| panic!("a 4 kB/s server, a 2 s deadline, a healthy second one: {e}"));
    assert_bytes(&got, &fx.big, "from the healthy server");
    assert!(slow.faulted() >= 1, "the slow server was asked first");
}

#[test]
fn hung_server_fails_over() {
    transfer_fault(Fault::Hang, 2, &["too slow", "timed out"]);
}

/// The low-speed limit is "fewer than 1024 bytes within 1 s": a body arriving in 75 KiB
/// pieces 600 ms apart never moves that little in any second, so it must not count as
/// too slow (and needs no retry).
#[test]
fn pauses_shorter_than_the_low_speed_window_are_not_too_slow() {
    let fx = fixture();
    let bursty = Faulty::start(&fx.repo.repo, FQRN);
    bursty.set_for(Fault::Bursts, &fx.file_object(BIG));
    let got = read_through_library(&bursty.url(), &fx.dir().join("cache"), fx.repo.trust(), BIG)
        .unwrap_or_else(|e| panic!("a body with 600 ms pauses and a 1 s low-speed window: {e}"));
    assert_bytes(&got, &fx.big, "bursty body");
    assert_eq!(bursty.faulted(), 1, "one transfer, no retry");
}
