//! Bad requests and bad configuration: a clear error with the right code, and nothing left
//! mounted or half-written in the appc store.

use std::process::Command;

use lazyroot::provisioner::api;
use lazyroot::provisioner::control_client::CallError;

use super::harness::*;

fn code(r: Result<impl std::fmt::Debug, CallError>) -> (String, String) {
    match r {
        Err(CallError::Daemon { code, message }) => (code, message),
        other => panic!("expected a daemon error, got {other:?}"),
    }
}

#[test]
fn bad_requests_get_clear_errors_and_leave_nothing() {
    let w = World::new(600);
    let c = w.client();
    let req = |fqrn: &str, path: &str, root_hash: &str, tag: &str| api::PrepareImageRequest {
        fqrn: fqrn.into(),
        path: path.into(),
        root_hash: root_hash.into(),
        tag: tag.into(),
    };
    let fqrn = w.repo.fqrn.as_str();
    let (k, m) = code(c.prepare(&req("other.example.org", "/images/busybox", "", "")));
    assert_eq!(k, "not_found");
    assert!(m.contains("unknown repository"), "{m}");
    let (k, m) = code(c.prepare(&req(fqrn, "/images/busybox", &"ab".repeat(20), "")));
    assert_eq!(k, "not_found", "{m}");
    assert!(m.contains("root catalog"), "{m}");
    let (k, m) = code(c.prepare(&req(fqrn, "/images/busybox", "", "no-such-tag")));
    assert_eq!(k, "not_found");
    assert!(m.contains("no-such-tag"), "{m}");
    let (k, m) = code(c.prepare(&req(fqrn, "/images/busybox/etc/version", "", "")));
    assert_eq!(k, "invalid_argument");
    assert!(m.contains("not a directory"), "{m}");
    let (k, _) = code(c.prepare(&req(fqrn, "/images/nothing", "", "")));
    assert_eq!(k, "not_found");
    for path in ["images/busybox", "/images/../etc", "/images/./busybox"] {
        let (k, m) = code(c.prepare(&req(fqrn, path, "", "")));
        assert_eq!(k, "invalid_argument", "{path}: {m}");
    }
    let (k, _) = code(c.prepare(&req(fqrn, "/images/busybox", "zz", "")));
    assert_eq!(k, "invalid_argument");
    let (k, _) = code(c.prepare(&req(fqrn, "/images/busybox", "ab", "t")));
    assert_eq!(k, "invalid_argument");

    // Pins: an image none of the daemon's, a container pinning two images, a malformed id.
    let (k, _) = code(w.pin("c1", "sha512-00"));
    assert_eq!(k, "not_ours");
    let img = w.prepare("").unwrap();
    w.pin("c1", &img.id).unwrap();
    w.pin("c1", &img.id).unwrap(); // the same pin again is fine
    w.publish_version("v2");
    let other = w.prepare("").unwrap();
    let (k, m) = code(w.pin("c1", &other.id));
    assert_eq!(k, "already_exists");
    assert!(m.contains("c1"), "{m}");
    let (k, _) = code(w.pin("a/b", &img.id));
    assert_eq!(k, "invalid_argument");

    // Malformed bodies and routes.
    let (k, _) = code(c.call::<_, api::Image>("PrepareImage", &serde_json::json!({"fqrn": 7})));
    assert_eq!(k, "invalid_argument");
    let (k, _) = code(c.call::<_, api::Image>("Nope", &serde_json::json!({})));
    assert_eq!(k, "not_found");

    // Only the two good images are mounted and in the appc store.
    assert_eq!(w.image_mounts(), 2);
    assert_eq!(w.appc_entries(), 2);
    assert_eq!(
        std::fs::read_dir(w.work.join("appc/staging"))
            .unwrap()
            .count(),
        0,
        "nothing half-written"
    );
}

#[test]
fn a_caller_that_is_not_root_is_refused() {
    let w = World::new(600);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_lazyroot"))
        .args(["image", "list", "--socket"])
        .arg(w.work.join("control.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");
}

#[test]
fn an_invalid_config_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("{", "EOF"),
        (r#"{"repositories": {}}"#, "no repositories"),
        (
            r#"{"repositories": {"a.org": {"servers": ["http://127.0.0.1:1/cvmfs/@fqrn@"], "keys": ["/k.pub"]}}, "cache": "relative"}"#,
            "absolute",
        ),
        (
            r#"{"repositories": {"a.org": {"servers": [], "keys": ["/k.pub"]}}}"#,
            "no servers",
        ),
        (
            r#"{"repositories": {"_bad": {"servers": ["http://x/"], "keys": ["/k.pub"]}}}"#,
            "must start with a letter or a digit",
        ),
        (
            r#"{"repositories": {"a.org": {"servers": ["http://x/"], "keys": ["/k.pub"]}}, "quota": 5}"#,
            "unknown field",
        ),
    ];
    for (i, (text, why)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.json"));
        std::fs::write(&path, text).unwrap();
        let err = Daemon::start(&path)
            .err()
            .unwrap_or_else(|| panic!("{text} was accepted"));
        assert!(err.contains(why), "{text}: {err}");
    }
}

#[test]
fn a_second_daemon_on_the_same_state_is_refused_and_breaks_nothing() {
    let w = World::new(600);
    let img = w.prepare("").unwrap();
    let err = Daemon::start(&w.config)
        .err()
        .expect("a second daemon started");
    assert!(err.contains("another provisioner"), "{err}");
    // The first one's image is still mounted and served.
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&img.rootfs).join("etc/version")).unwrap(),
        "v1\n"
    );
    assert!(w.client().health().is_ok());
}

/// Servers that fail while an image is being mounted make the prepare `unavailable` (try
/// again), not `not_found`, which would say the image does not exist; the module fails
/// such a launch instead of treating the image as another's.
#[test]
fn a_server_failure_while_mounting_is_unavailable() {
    let w = World::with_faults(600);
    let faulty = w.faulty.as_ref().unwrap();
    // Catalogs only: the manifest still verifies, so the failure is the mount's.
    faulty.set(crate::faulty::Fault::Status(503), |rel| {
        rel.starts_with("data/") && rel.ends_with('C')
    });
    let (k, m) = code(w.prepare(""));
    assert_eq!(k, "unavailable", "{m}");
    assert!(m.contains("root catalog"), "{m}");
    assert_eq!(w.image_mounts(), 0);
    assert_eq!(w.appc_entries(), 0);
    faulty.set(crate::faulty::Fault::None, |_| true);
    w.prepare("").unwrap();
}
