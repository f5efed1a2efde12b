//! The CLI on the built binary: mkfs, publish, ls, cat, info, tag, check, pinning.

use crate::common::*;

struct Cli {
    _dir: tempfile::TempDir,
    repo: String,
    keys: String,
    src: std::path::PathBuf,
}

impl Cli {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo").to_str().unwrap().to_string();
        let keys = dir.path().join("keys").to_str().unwrap().to_string();
        let src = dir.path().join("src");
        write(&src.join("etc/motd"), b"hello\n");
        std::os::unix::fs::symlink("motd", src.join("etc/link")).unwrap();
        let o = lazyroot(&["mkfs", "cli.example.org", "--repo", &repo, "--keys", &keys]);
        assert!(o.status.success(), "{}", stderr(&o));
        Cli {
            _dir: dir,
            repo,
            keys,
            src,
        }
    }

    fn run(&self, cmd: &str, extra: &[&str]) -> std::process::Output {
        let mut args = vec![cmd, "--repo", &self.repo, "--keys", &self.keys];
        args.extend_from_slice(extra);
        lazyroot(&args)
    }

    fn ok(&self, cmd: &str, extra: &[&str]) -> String {
        let o = self.run(cmd, extra);
        assert!(
            o.status.success(),
            "lazyroot {cmd} {extra:?}: {}",
            stderr(&o)
        );
        stdout(&o)
    }
}

#[test]
fn mkfs_writes_stock_key_files_and_refuses_twice() {
    let c = Cli::new();
    for ext in ["masterkey", "pub", "key", "crt"] {
        assert!(
            std::path::Path::new(&c.keys)
                .join(format!("cli.example.org.{ext}"))
                .exists(),
            "{ext}"
        );
    }
    for f in [
        ".cvmfspublished",
        ".cvmfswhitelist",
        ".cvmfsreflog",
        ".cvmfs_master_replica",
        "data/00",
        "data/ff",
    ] {
        assert!(std::path::Path::new(&c.repo).join(f).exists(), "{f}");
    }
    let o = lazyroot(&[
        "mkfs",
        "cli.example.org",
        "--repo",
        &c.repo,
        "--keys",
        &c.keys,
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("already holds a repository"),
        "{}",
        stderr(&o)
    );
    let o = lazyroot(&[
        "mkfs",
        "Bad Name",
        "--repo",
        "/tmp/never",
        "--keys",
        &c.keys,
    ]);
    assert!(stderr(&o).contains("invalid"), "{}", stderr(&o));
}

#[test]
fn publish_ls_cat_info_check() {
    let c = Cli::new();
    let out = c.ok("publish", &[c.src.to_str().unwrap(), "--tag", "v1"]);
    assert!(out.contains("published revision 2"), "{out}");
    assert_eq!(c.ok("ls", &["/etc"]), "link\nmotd\n");
    assert!(c.ok("ls", &["-l", "/etc"]).contains("l 0777"));
    assert_eq!(c.ok("cat", &["/etc/motd"]), "hello\n");
    let info = c.ok("info", &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["revision"], 2);
    assert_eq!(v["fqrn"], "cli.example.org");
    assert_eq!(v["counters"]["regular"], 1);
    assert!(c.ok("check", &[]).contains("0 problems"));
    let o = c.run("cat", &["/etc/nope"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no such file or directory: /etc/nope"),
        "{}",
        stderr(&o)
    );
    let o = c.run("cat", &["/etc"]);
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    let o = c.run("ls", &["/../etc"]);
    assert!(stderr(&o).contains("not a valid path"), "{}", stderr(&o));
}

#[test]
fn pinning_by_tag_and_root_hash_and_tag_edits() {
    let c = Cli::new();
    c.ok("publish", &[c.src.to_str().unwrap(), "--tag", "v1"]);
    let v1: serde_json::Value = serde_json::from_str(&c.ok("info", &["--json"])).unwrap();
    let v1_root = v1["root_hash"].as_str().unwrap().to_string();
    write(&c.src.join("etc/motd"), b"second\n");
    c.ok("publish", &[c.src.to_str().unwrap()]);
    assert_eq!(c.ok("cat", &["/etc/motd"]), "second\n");
    assert_eq!(c.ok("cat", &["--tag", "v1", "/etc/motd"]), "hello\n");
    assert_eq!(
        c.ok("cat", &["--root-hash", &v1_root, "/etc/motd"]),
        "hello\n"
    );
    assert_eq!(
        c.ok("cat", &["--tag", "trunk-previous", "/etc/motd"]),
        "hello\n"
    );
    // Tag an older root, list, remove.
    c.ok(
        "tag",
        &[
            "--add",
            "stable",
            "--root-hash",
            &v1_root,
            "-m",
            "known good",
        ],
    );
    let tags = c.ok("tag", &[]);
    assert!(
        tags.lines().any(|l| l.starts_with("stable\t")
            && l.contains(&v1_root)
            && l.ends_with("known good")),
        "{tags}"
    );
    assert_eq!(c.ok("cat", &["--tag", "stable", "/etc/motd"]), "hello\n");
    c.ok("tag", &["--remove", "stable"]);
    let o = c.run("cat", &["--tag", "stable", "/etc/motd"]);
    assert!(
        stderr(&o).contains("no tag named \"stable\""),
        "{}",
        stderr(&o)
    );
    let o = c.run("tag", &["--remove", "stable"]);
    assert!(!o.status.success());
    // Tag edits keep the revision.
    let now: serde_json::Value = serde_json::from_str(&c.ok("info", &["--json"])).unwrap();
    assert_eq!(now["revision"], 3);
    assert!(c.ok("check", &[]).contains("0 problems"));
}

#[test]
fn check_reports_a_corrupt_object_and_exits_non_zero() {
    let c = Cli::new();
    c.ok("publish", &[c.src.to_str().unwrap()]);
    // The object holding "hello\n".
    let (_, h) = lazyroot::cvmfs::object::compress_and_hash(
        lazyroot::cvmfs::hash::HashAlgo::Sha1,
        b"hello\n",
    );
    let p = std::path::Path::new(&c.repo).join(
        lazyroot::cvmfs::object::ObjectName::new(h, lazyroot::cvmfs::object::ObjectKind::File)
            .path(),
    );
    let mut bytes = std::fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&p, bytes).unwrap();
    let o = c.run("check", &[]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("hash mismatch"), "{}", stdout(&o));
    let o = c.run("cat", &["/etc/motd"]);
    assert!(!o.status.success());
    assert!(o.stdout.is_empty(), "no wrong bytes are written");
    std::fs::remove_file(&p).unwrap();
    let o = c.run("check", &[]);
    assert!(
        stdout(&o).contains("is missing from the repository"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn resign_extends_the_whitelist() {
    let c = Cli::new();
    let out = c.ok("resign", &["--days", "90"]);
    let until = lazyroot::cvmfs::timefmt::iso8601(lazyroot::cvmfs::timefmt::now() + 89 * 86_400);
    assert!(out.contains("valid until"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&c.ok("info", &["--json"])).unwrap();
    assert!(lazyroot::cvmfs::timefmt::iso8601(v["whitelist_expires"].as_i64().unwrap()) > until);
}

/// One name rule (stock's) wherever a repository name comes in: mkfs accepts what
/// `cvmfs_server mkfs` accepts, and mount refuses a name that would escape its cache
/// directory before it touches the cache.
#[test]
fn repository_names_follow_stocks_rule_everywhere() {
    let d = tempfile::tempdir().unwrap();
    let p = |s: &str| d.path().join(s).to_str().unwrap().to_string();
    let ok = lazyroot(&[
        "mkfs",
        "Test_1-dash.example.org",
        "--repo",
        &p("r1"),
        "--keys",
        &p("k"),
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let bad = lazyroot(&[
        "mkfs",
        "_test.example.org",
        "--repo",
        &p("r2"),
        "--keys",
        &p("k"),
    ]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("must start with a letter or a digit"),
        "{}",
        stderr(&bad)
    );
    assert!(!d.path().join("r2").exists());
    std::fs::create_dir(d.path().join("mnt")).unwrap();
    let m = lazyroot(&[
        "mount",
        "../escape",
        &p("mnt"),
        "--server",
        "http://127.0.0.1:1/cvmfs/@fqrn@",
        "--key",
        &p("k/Test_1-dash.example.org.pub"),
        "--cache",
        &p("cache"),
    ]);
    assert!(!m.status.success());
    assert!(
        stderr(&m).contains("must start with a letter or a digit"),
        "{}",
        stderr(&m)
    );
    let cached: Vec<_> = std::fs::read_dir(d.path().join("cache"))
        .map(|r| r.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        !cached
            .iter()
            .any(|n| n.to_string_lossy().contains("escape")),
        "{cached:?}"
    );
}
