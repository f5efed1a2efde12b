//! Entries in Mesos's appc image store: `<store>/images/<id>/manifest` (an appc
//! ImageManifest) and `<store>/images/<id>/rootfs`, a symlink to the image's lazy mount.
//! Mesos's appc store uses an existing `images/<id>` as it is when a task names the id, and
//! its bind or overlay backend then mounts `rootfs` (following the symlink) as the root.
//!
//! Entries appear whole or not at all: written in `<store>/staging`, then renamed into
//! place; removed by renaming out first.

use std::io;
use std::path::{Path, PathBuf};

use super::image::ImageKey;

/// The appc spec version the manifest follows.
const AC_VERSION: &str = "0.8.11";

/// Mesos's appc image store (its `--appc_store_dir`), as far as the provisioner writes it.
pub struct AppcStore {
    dir: PathBuf,
}

impl AppcStore {
    /// The store at `dir`, creating its `images` and `staging` directories if missing.
    pub fn new(dir: &Path) -> io::Result<AppcStore> {
        for sub in ["images", "staging"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| {
                io::Error::new(e.kind(), format!("{}: {e}", dir.join(sub).display()))
            })?;
        }
        Ok(AppcStore {
            dir: dir.to_path_buf(),
        })
    }

    /// Where the entry of image id `id` lives: `<store>/images/<id>`.
    pub fn entry_dir(&self, id: &str) -> PathBuf {
        self.dir.join("images").join(id)
    }

    /// The ImageManifest JSON of an image.
    pub fn manifest(key: &ImageKey, revision: u64) -> serde_json::Value {
        let label = |name: &str, value: &str| serde_json::json!({ "name": name, "value": value });
        serde_json::json!({
            "acKind": "ImageManifest",
            "acVersion": AC_VERSION,
            "name": key.appc_name(),
            "labels": [
                label("version", &key.root_hash),
                label("os", "linux"),
                label("arch", arch()),
                label("org.lazyroot.repository", &key.fqrn),
                label("org.lazyroot.path", &key.path),
                label("org.lazyroot.root-hash", &key.root_hash),
            ],
            "annotations": [
                { "name": "org.lazyroot.revision", "value": revision.to_string() },
            ],
        })
    }

    /// Writes (or rewrites) the entry of `key` pointing at `rootfs`.
    pub fn put(&self, key: &ImageKey, revision: u64, rootfs: &Path) -> io::Result<PathBuf> {
        let id = key.id();
        let target = self.entry_dir(&id);
        let staging = tempfile::Builder::new()
            .prefix(&format!("{id}."))
            .tempdir_in(self.dir.join("staging"))?;
        let manifest = serde_json::to_vec_pretty(&Self::manifest(key, revision))?;
        std::fs::write(staging.path().join("manifest"), manifest)?;
        std::os::unix::fs::symlink(rootfs, staging.path().join("rootfs"))?;
        let staged = staging.keep();
        if target.exists() {
            self.remove(&id)?;
        }
        std::fs::rename(&staged, &target).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staged);
            io::Error::new(e.kind(), format!("{}: {e}", target.display()))
        })?;
        Ok(target)
    }

    /// Removes the entry of `id` (renamed out of `images` first); a missing entry is fine.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        let target = self.entry_dir(id);
        let doomed = self.dir.join("staging").join(format!("{id}.removed"));
        match std::fs::rename(&target, &doomed) {
            Ok(()) => std::fs::remove_dir_all(&doomed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Ids of every entry present, and leftovers of interrupted writes removed.
    pub fn ids(&self) -> io::Result<Vec<String>> {
        for e in std::fs::read_dir(self.dir.join("staging"))? {
            let _ = std::fs::remove_dir_all(e?.path());
        }
        let mut ids = Vec::new();
        for e in std::fs::read_dir(self.dir.join("images"))? {
            if let Some(name) = e?.file_name().to_str() {
                ids.push(name.to_string());
            }
        }
        Ok(ids)
    }
}

/// The appc name of this machine's architecture.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "aarch64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_appear_whole_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = AppcStore::new(dir.path()).unwrap();
        let key = ImageKey {
            fqrn: "demo.example.org".into(),
            path: "/images/a".into(),
            root_hash: "0a1b".into(),
        };
        let entry = store.put(&key, 7, Path::new("/somewhere")).unwrap();
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.join("manifest")).unwrap()).unwrap();
        assert_eq!(m["acKind"], "ImageManifest");
        assert_eq!(m["name"], "demo.example.org/images/a");
        assert_eq!(m["labels"][0]["value"], "0a1b");
        assert_eq!(
            std::fs::read_link(entry.join("rootfs")).unwrap(),
            Path::new("/somewhere")
        );
        store.put(&key, 7, Path::new("/elsewhere")).unwrap();
        assert_eq!(store.ids().unwrap(), vec![key.id()]);
        store.remove(&key.id()).unwrap();
        store.remove(&key.id()).unwrap();
        assert!(store.ids().unwrap().is_empty());
    }
}
