//! Entries in Mesos's appc image store: `<store>/images/<id>/manifest` (an appc
//! ImageManifest) and `<store>/images/<id>/rootfs`, a symlink to the image's lazy mount.
//! Mesos's appc store uses an existing `images/<id>` as it is when a task names the id, and
//! its bind or overlay backend then mounts `rootfs` (following the symlink) as the root.
//!
//! Entries appear whole or not at all: written in `<store>/staging`, then renamed into
//! place (or exchanged with the entry they replace); removed by renaming out first.

use std::io;
use std::path::{Path, PathBuf};

use super::image::ImageKey;

/// What this daemon's staging directories are named with, so it never removes the agent's.
const OURS: &str = ".lazyroot-";

/// The appc spec version the manifest follows.
pub(crate) const AC_VERSION: &str = "0.8.11";

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
    pub fn manifest(
        key: &ImageKey,
        revision: u64,
        app: Option<&serde_json::Value>,
    ) -> serde_json::Value {
        let label = |name: &str, value: &str| serde_json::json!({ "name": name, "value": value });
        let mut m = serde_json::json!({
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
        });
        if let Some(app) = app {
            m["app"] = app.clone();
        }
        m
    }

    /// Writes (or rewrites) the entry of `key` pointing at `rootfs`. An entry already as it
    /// would be written is left alone; one that differs is swapped for the new one in one
    /// `renameat2(RENAME_EXCHANGE)`, so the agent never finds the id missing (a missing
    /// entry makes its store fetch the image again) nor half written.
    pub fn put(
        &self,
        key: &ImageKey,
        revision: u64,
        rootfs: &Path,
        app: Option<&serde_json::Value>,
    ) -> io::Result<PathBuf> {
        let id = key.id();
        let target = self.entry_dir(&id);
        let manifest = serde_json::to_vec_pretty(&Self::manifest(key, revision, app))?;
        let same = std::fs::read(target.join("manifest")).is_ok_and(|m| m == manifest)
            && std::fs::read_link(target.join("rootfs")).is_ok_and(|l| l == rootfs);
        if same {
            return Ok(target);
        }
        let staging = tempfile::Builder::new()
            .prefix(&format!("{OURS}{id}."))
            .tempdir_in(self.dir.join("staging"))?;
        std::fs::write(staging.path().join("manifest"), manifest)?;
        std::os::unix::fs::symlink(rootfs, staging.path().join("rootfs"))?;
        let staged = staging.keep();
        let placed = match std::fs::symlink_metadata(&target) {
            Ok(_) => nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &staged,
                nix::fcntl::AT_FDCWD,
                &target,
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            )
            .map_err(io::Error::from),
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::rename(&staged, &target),
            Err(e) => Err(e),
        };
        // After an exchange the old entry is at `staged`; after a failure, the new one.
        let _ = std::fs::remove_dir_all(&staged);
        placed.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", target.display())))?;
        Ok(target)
    }

    /// Removes the entry of `id` (renamed out of `images` first); a missing entry is fine.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        let target = self.entry_dir(id);
        let doomed = self.dir.join("staging").join(format!("{OURS}{id}.removed"));
        match std::fs::rename(&target, &doomed) {
            Ok(()) => std::fs::remove_dir_all(&doomed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Ids of every entry present, and leftovers of this daemon's interrupted writes
    /// removed (the agent stages its own fetches in the same directory: those stay).
    pub fn ids(&self) -> io::Result<Vec<String>> {
        for e in std::fs::read_dir(self.dir.join("staging"))? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with(OURS) {
                let _ = std::fs::remove_dir_all(e.path());
            }
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
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "aarch64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in a temporary directory, and an image key to write into it.
    fn store_and_key() -> (tempfile::TempDir, AppcStore, ImageKey) {
        let dir = tempfile::tempdir().unwrap();
        let store = AppcStore::new(dir.path()).unwrap();
        let key = ImageKey {
            fqrn: "demo.example.org".into(),
            path: "/images/a".into(),
            root_hash: "0a1b".into(),
        };
        (dir, store, key)
    }

    #[test]
    fn entries_appear_whole_and_go() {
        let (_dir, store, key) = store_and_key();
        let entry = store.put(&key, 7, Path::new("/somewhere"), None).unwrap();
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.join("manifest")).unwrap()).unwrap();
        assert_eq!(m["acKind"], "ImageManifest");
        assert_eq!(m["name"], "demo.example.org/images/a");
        assert_eq!(m["labels"][0]["value"], "0a1b");
        assert_eq!(
            std::fs::read_link(entry.join("rootfs")).unwrap(),
            Path::new("/somewhere")
        );
        store.put(&key, 7, Path::new("/elsewhere"), None).unwrap();
        assert_eq!(store.ids().unwrap(), vec![key.id()]);
        store.remove(&key.id()).unwrap();
        store.remove(&key.id()).unwrap();
        assert!(store.ids().unwrap().is_empty());
    }

    /// The agent reads entries while the daemon rewrites them: the id must never be missing
    /// (its store would fetch the image again), and an unchanged entry is not rewritten.
    #[test]
    fn a_rewritten_entry_is_never_absent() {
        use std::os::unix::fs::MetadataExt;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let (_dir, store, key) = store_and_key();
        let entry = store.put(&key, 1, Path::new("/mnt/a"), None).unwrap();
        let ino = std::fs::metadata(&entry).unwrap().ino();
        store.put(&key, 1, Path::new("/mnt/a"), None).unwrap();
        assert_eq!(
            std::fs::metadata(&entry).unwrap().ino(),
            ino,
            "not rewritten"
        );
        let (done, misses) = (AtomicBool::new(false), AtomicUsize::new(0));
        std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    if std::fs::read_link(entry.join("rootfs")).is_err()
                        || std::fs::metadata(entry.join("manifest")).is_err()
                    {
                        misses.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            for i in 0..300u64 {
                let at = if i % 2 == 0 { "/mnt/b" } else { "/mnt/a" };
                store.put(&key, i, Path::new(at), None).unwrap();
            }
            done.store(true, Ordering::Relaxed);
        });
        assert_eq!(misses.load(Ordering::Relaxed), 0, "the entry was absent");
        assert_eq!(store.ids().unwrap(), vec![key.id()]);
    }
}
