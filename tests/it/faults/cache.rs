//! An unusable or full cache: a clear error, and nothing corrupt left behind.

use super::*;
use lazyroot::publish::{self, ChunkSizes, NoProgress};

// --- f. An unusable or full cache ----------------------------------------------------------

/// A tmpfs mounted for the test; unmounted (lazily if busy) when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "mount -t tmpfs -o {options} {}",
            dir.display()
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Root ignores permission bits, so "unwritable" is made of a regular file where the
/// directory should be, and of a read-only filesystem.
#[test]
fn unusable_cache_directory_is_refused_naming_it() {
    let fx = fixture();
    let d = fx.dir();
    let server = Server::start(&[&fx.repo.repo]);
    let a_file = d.join("not-a-dir");
    std::fs::write(&a_file, b"x").unwrap();
    let ro = d.join("ro");
    let _ro = Tmpfs::mount(&ro, "ro,size=1m");

    for cache in [a_file.clone(), ro.clone(), ro.join("cache")] {
        let shown = cache.display().to_string();
        match Cache::open(&cache, None) {
            Ok(_) => panic!("Cache::open({shown}) accepted an unwritable place"),
            Err(e) => assert!(e.to_string().contains(&shown), "names {shown}: {e}"),
        }
        let mnt = d.join("mnt");
        let t0 = Instant::now();
        match fx.mount(&server.url(FQRN), &cache, &mnt, &[]) {
            Ok(_) => panic!("mounted with the cache at {shown}"),
            Err(e) => assert!(e.contains(&shown), "the mount's error names {shown}: {e}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(30));
        assert!(!is_mounted(&mnt));
    }
}

/// Every cached object is the decompressed form of the repository object of that name.
fn assert_cache_objects_correct(cache: &Path, repo: &Path) {
    let mut checked = 0;
    for sub in std::fs::read_dir(cache.join("objects")).unwrap() {
        let sub = sub.unwrap().path();
        for obj in std::fs::read_dir(&sub).unwrap() {
            let obj = obj.unwrap().path();
            let xx = sub.file_name().unwrap().to_string_lossy().into_owned();
            let rest = obj.file_name().unwrap().to_string_lossy().into_owned();
            let stored = ["", "C", "X", "H", "P"]
                .iter()
                .map(|s| repo.join(format!("data/{xx}/{rest}{s}")))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("cached {xx}/{rest} is no object of the repository"));
            let mut want = Vec::new();
            flate2::read::ZlibDecoder::new(std::fs::File::open(&stored).unwrap())
                .read_to_end(&mut want)
                .unwrap();
            let got = std::fs::read(&obj).unwrap();
            assert!(
                got == want,
                "cached {xx}/{rest}: {} bytes, not its {} bytes",
                got.len(),
                want.len()
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "the cache holds objects");
}

fn txn_entries(cache: &Path) -> Vec<String> {
    std::fs::read_dir(cache.join("txn"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn full_cache_fails_the_read_and_keeps_what_it_holds_intact() {
    let fx = fixture();
    let d = fx.dir();
    let server = Server::start(&[&fx.repo.repo]);
    let cache = d.join("cache");
    let _tmpfs = Tmpfs::mount(&cache, "size=1m");
    let mnt = d.join("mnt");

    let m = fx.mount(&server.url(FQRN), &cache, &mnt, &[]).unwrap();
    assert_bytes(
        &read_mounted(mnt.join(BIG)).unwrap(),
        &fx.big,
        "300 KiB into a 1 MiB cache",
    );
    assert!(m.stop().success());

    let huge = noise(8, 2 << 20);
    write(&fx.src.join("blobs/huge.bin"), &huge);
    fx.repo.publish(&fx.src);
    let m = fx.mount(&server.url(FQRN), &cache, &mnt, &[]).unwrap();
    assert!(m.line.contains("revision 3"), "{}", m.line);
    assert_eio(
        read_mounted(mnt.join("blobs/huge.bin")),
        &huge,
        "2 MiB into a full 1 MiB cache",
    );
    assert_eq!(
        txn_entries(&cache),
        Vec::<String>::new(),
        "the failed download is cleaned up"
    );
    assert_bytes(
        &read_mounted(mnt.join(BIG)).unwrap(),
        &fx.big,
        "the cached file afterwards",
    );
    assert_eq!(read_mounted(mnt.join("etc/hello.txt")).unwrap(), b"hello\n");
    assert!(m.stop().success());
    assert_cache_objects_correct(&cache, &fx.repo.repo);
    assert_eq!(txn_entries(&cache), Vec::<String>::new());
}

/// The chunk a reader is in is pinned like an open whole file: a quota far smaller than
/// what other readers fetch leaves it in place, and it becomes evictable once released.
#[test]
fn the_chunk_being_read_is_pinned_against_the_quota() {
    let repo = TestRepo::new();
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("big"), &noise(1, 120_000));
    for (dir, seed) in [("a", 100), ("b", 200)] {
        for i in 0..24 {
            write(
                &src.path().join(format!("{dir}/{i}")),
                &noise(seed + i, 8_000),
            );
        }
    }
    let mut o = repo.options(src.path());
    o.chunking = Some(ChunkSizes {
        min: 1024,
        avg: 4096,
        max: 16384,
    });
    publish::publish(&o, &NoProgress).unwrap();
    let local = repo.open();
    let snap = local.snapshot(&At::Latest).unwrap();
    let big = snap.lookup(b"/big").unwrap().unwrap();
    let first_chunk = snap.chunks(&big).unwrap()[0].hash;
    let server = Server::start(&[&repo.repo]);
    let cache_dir = tempfile::tempdir().unwrap();
    // 96 KiB: the catalog and a few chunks fit; 24 other files (192 KB) go through it
    // twice over.
    let cache = Arc::new(Cache::open(cache_dir.path(), Some(96 << 10)).unwrap());
    let source = Arc::new(RemoteSource::new(
        FQRN,
        Arc::new(Downloader::new(settings(&server.url(FQRN), "DIRECT")).unwrap()),
        cache.clone(),
    ));
    let trust = repo.trust();
    let (r, mode) = remote::open(source.clone(), &trust).unwrap();
    let (root, size) = (r.manifest().root_catalog, r.manifest().root_catalog_size);
    let opened = lazyroot::remote::stack::Opened {
        repo: r,
        mode,
        trust,
    };
    let tree = MountedTree::new(source, opened, root, size, true).unwrap();
    let ino = |parent: u64, name: &str| tree.lookup(parent, name.as_bytes()).unwrap().ino;
    let fh = tree.open(ino(ROOT, "big")).unwrap();
    assert_eq!(tree.read(fh, 0, 100).unwrap(), noise(1, 120_000)[..100]);
    let read_all = |dir: &str, seed: u64| {
        let d = ino(ROOT, dir);
        for i in 0..24 {
            let f = tree.open(ino(d, &i.to_string())).unwrap();
            assert_eq!(tree.read(f, 0, 8_000).unwrap(), noise(seed + i, 8_000));
            tree.release(f);
        }
    };
    read_all("a", 100);
    assert!(
        cache.path(&first_chunk).exists(),
        "the chunk being read was evicted"
    );
    assert_eq!(tree.read(fh, 50, 50).unwrap(), noise(1, 120_000)[50..100]);
    tree.release(fh);
    // Released, it ages out like anything else.
    read_all("b", 200);
    assert!(
        !cache.path(&first_chunk).exists(),
        "a released chunk stays evictable"
    );
}

/// The fixture served, and a cache directory that a mount has read the big file into.
fn warm_cache() -> (Fixture, Server, PathBuf) {
    let fx = fixture();
    let server = Server::start(&[&fx.repo.repo]);
    let cache = fx.dir().join("cache");
    let m = fx
        .mount(&server.url(FQRN), &cache, &fx.dir().join("warm"), &[])
        .unwrap();
    assert_bytes(&read_mounted(m.dir.join(BIG)).unwrap(), &fx.big, "warming");
    assert!(m.stop().success());
    (fx, server, cache)
}

/// A damaged cache never serves wrong bytes: an object flipped, replaced by other bytes of
/// the same size, truncated or emptied after it was cached (bit rot, a hand edit, a short
/// file after a power loss) is found by a new mount process (size on every open, content on
/// first use), dropped and fetched again; with no server left to fetch from, the read fails
/// with EIO. Catalogs are checked the same way.
#[test]
fn a_damaged_cache_never_serves_wrong_bytes() {
    let (fx, server, cache) = warm_cache();
    let d = fx.dir();
    let rel = fx.file_object(BIG);
    let hex: String = rel
        .trim_start_matches("data/")
        .chars()
        .filter(|c| *c != '/')
        .collect();
    let cached = cache.join("objects").join(&hex[..2]).join(&hex[2..]);
    assert!(cached.exists(), "{} was cached", cached.display());
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 4] = [
        ("a flipped byte", |p| {
            let mut b = std::fs::read(p).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 1;
            std::fs::write(p, b).unwrap();
        }),
        ("other bytes of the same size", |p| {
            let n = std::fs::metadata(p).unwrap().len() as usize;
            std::fs::write(p, noise(99, n)).unwrap();
        }),
        ("a truncated file", |p| {
            let n = std::fs::metadata(p).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(n / 2)
                .unwrap();
        }),
        ("an empty file", |p| std::fs::write(p, b"").unwrap()),
    ];
    for (i, (what, damage)) in damages.into_iter().enumerate() {
        if !cached.exists() {
            // The previous round dropped it: cache it again.
            let m = fx
                .mount(&server.url(FQRN), &cache, &d.join(format!("re{i}")), &[])
                .unwrap();
            assert_bytes(
                &read_mounted(m.dir.join(BIG)).unwrap(),
                &fx.big,
                "recaching",
            );
            assert!(m.stop().success());
        }
        damage(&cached);
        let m = fx
            .mount(&server.url(FQRN), &cache, &d.join(format!("on{i}")), &[])
            .unwrap();
        let got = read_mounted(m.dir.join(BIG))
            .unwrap_or_else(|e| panic!("{what}, server up: fetched again, not {e}"));
        assert_bytes(&got, &fx.big, &format!("{what}, server up"));
        assert!(m.stop().success());
        assert_eq!(std::fs::read(&cached).unwrap(), fx.big, "{what}: repaired");

        damage(&cached);
        let dead = format!("http://127.0.0.1:{}/cvmfs/@fqrn@", free_port());
        let m = fx
            .mount(&dead, &cache, &d.join(format!("off{i}")), &[])
            .unwrap();
        assert_eio(
            read_mounted(m.dir.join(BIG)),
            &fx.big,
            &format!("{what}, no server"),
        );
        assert!(!cached.exists(), "{what}: the damaged copy was dropped");
        drop(m);
    }
}

/// A damaged bookkeeping database (`cachedb.sqlite` overwritten, as by a torn write) does
/// not stop the next mount: it is moved aside and rebuilt from the objects, so the quota
/// counts them again, and each object is still checked before use (without a recorded
/// digest it is fetched again). Before, every mount failed until the cache was deleted.
#[test]
fn a_damaged_cache_database_is_rebuilt_from_the_objects() {
    let (fx, server, cache) = warm_cache();
    let d = fx.dir();
    let objects = walk_files(&cache.join("objects"));
    assert!(objects >= 2, "catalog and file cached: {objects}");

    let db = cache.join("cachedb.sqlite");
    for ext in ["sqlite-wal", "sqlite-shm"] {
        let _ = std::fs::remove_file(db.with_extension(ext));
    }
    let len = std::fs::metadata(&db).unwrap().len() as usize;
    std::fs::write(&db, noise(5, len.max(4096))).unwrap();

    let m = fx
        .mount(&server.url(FQRN), &cache, &d.join("after"), &[])
        .unwrap_or_else(|e| panic!("a damaged cache database stopped the mount: {e}"));
    assert_bytes(
        &read_mounted(m.dir.join(BIG)).unwrap(),
        &fx.big,
        "after the rebuild",
    );
    assert_bytes(
        &read_mounted(m.dir.join("etc/hello.txt")).unwrap(),
        b"hello\n",
        "after the rebuild",
    );
    assert!(m.stop().success());
    assert!(cache.join("cachedb.sqlite.corrupt").exists(), "kept aside");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM objects", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        rows as usize,
        walk_files(&cache.join("objects")),
        "every cached object is recorded again"
    );
}

fn walk_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                walk_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}
