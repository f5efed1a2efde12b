//! The ACI the daemon answers a discovery request with: a gzip'ed tar of `manifest` and a
//! `rootfs` symlink to the image's lazy mount. Its bytes depend only on what it describes
//! (fixed times, owners and modes; gzip without a name or time), so the daemon knows the
//! id Mesos gives the entry — `sha512-` + the SHA-512 of the tar — and owns that entry.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha512};

use super::name::Request;
use crate::provisioner::appc::AC_VERSION;
use crate::provisioner::image::ImageKey;

/// An ACI as served: its gzip'ed bytes and the image id Mesos will compute for it.
pub struct Aci {
    /// The gzip'ed tar, as sent.
    pub gzipped: Vec<u8>,
    /// `sha512-<hex of the SHA-512 of the tar>`.
    pub id: String,
}

/// The ImageManifest of a discovered image. Its labels are exactly the three the agent
/// asked with (`version`, `os`, `arch`), so that the agent's store finds the entry by name
/// and labels at the next launch; what else lazyroot knows goes into annotations.
pub fn manifest(
    req: &Request,
    key: &ImageKey,
    revision: u64,
    app: Option<&serde_json::Value>,
) -> serde_json::Value {
    let pair = |name: &str, value: &str| serde_json::json!({ "name": name, "value": value });
    let mut m = serde_json::json!({
        "acKind": "ImageManifest",
        "acVersion": AC_VERSION,
        "name": req.name(),
        "labels": [
            pair("version", &req.version),
            pair("os", &req.os),
            pair("arch", &req.arch),
        ],
        "annotations": [
            pair("org.lazyroot.repository", &key.fqrn),
            pair("org.lazyroot.path", &key.path),
            pair("org.lazyroot.root-hash", &key.root_hash),
            pair("org.lazyroot.revision", &revision.to_string()),
        ],
    });
    if let Some(app) = app {
        m["app"] = app.clone();
    }
    m
}

/// Builds the ACI of `manifest` whose `rootfs` points at `rootfs`.
pub fn build(manifest: &serde_json::Value, rootfs: &Path) -> std::io::Result<Aci> {
    let json = serde_json::to_vec_pretty(manifest)?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(json.len() as u64);
    h.set_mode(0o644);
    fixed(&mut h);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, "manifest", json.as_slice())?;
    let mut l = tar::Header::new_ustar();
    l.set_size(0);
    l.set_mode(0o777);
    fixed(&mut l);
    l.set_entry_type(tar::EntryType::Symlink);
    tar.append_link(&mut l, "rootfs", rootfs)?;
    let tar = tar.into_inner()?;
    let id = format!("sha512-{}", hex(&Sha512::digest(&tar)));
    // No file name, time zero: the same tar always gives the same bytes.
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar)?;
    Ok(Aci {
        gzipped: gz.finish()?,
        id,
    })
}

fn fixed(h: &mut tar::Header) {
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// What Mesos does with the body: gunzip, SHA-512 of the tar, untar. The id is the one
    /// the daemon computed, the same bytes come out each time, and the tar holds exactly
    /// `manifest` and the `rootfs` symlink.
    #[test]
    fn the_agent_computes_the_id_the_daemon_knows() {
        let req = super::super::name::candidates("/demo.org/images/a-latest-linux-amd64.aci")
            .unwrap()
            .remove(0);
        let key = ImageKey {
            fqrn: "demo.org".into(),
            path: "/images/a".into(),
            root_hash: "0a1b".into(),
        };
        let m = manifest(&req, &key, 3, None);
        let a = build(&m, Path::new("/var/lib/lazyroot/images/x")).unwrap();
        let b = build(&m, Path::new("/var/lib/lazyroot/images/x")).unwrap();
        assert_eq!(a.gzipped, b.gzipped, "deterministic");
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(a.gzipped.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(a.id, format!("sha512-{}", hex(&Sha512::digest(&tar))));
        let dir = tempfile::tempdir().unwrap();
        tar::Archive::new(tar.as_slice())
            .unpack(dir.path())
            .unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(names, ["manifest", "rootfs"]);
        assert_eq!(
            std::fs::read_link(dir.path().join("rootfs")).unwrap(),
            Path::new("/var/lib/lazyroot/images/x")
        );
        let got: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("manifest")).unwrap()).unwrap();
        assert_eq!(got["labels"].as_array().unwrap().len(), 3);
        assert_eq!(got["labels"][0]["value"], "latest");
        assert_eq!(got["name"], "demo.org/images/a");
        let other = build(&m, Path::new("/elsewhere")).unwrap();
        assert_ne!(other.id, a.id);
    }
}
