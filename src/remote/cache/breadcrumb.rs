//! Per-repository memory of the newest revision seen, kept in the cache so that a server
//! (or an attacker in between) cannot roll a client back to an older signed manifest, and
//! the bootstrap files of that revision, so a mount comes up when no server answers.

use std::path::{Path, PathBuf};

/// The newest revision a client has accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breadcrumb {
    /// The manifest's revision number.
    pub revision: u64,
    /// The manifest's publish time, in Unix seconds.
    pub timestamp: i64,
}

/// One repository's state in the cache, the directory `repos/<fqrn>/`: its breadcrumb and
/// the manifest and whitelist of that revision.
pub struct RepoState {
    dir: PathBuf,
}

impl RepoState {
    /// The state of `fqrn` in the cache at `cache_dir`, creating its directory if needed.
    pub fn new(cache_dir: &Path, fqrn: &str) -> std::io::Result<Self> {
        let dir = cache_dir.join("repos").join(fqrn);
        std::fs::create_dir_all(&dir)?;
        Ok(RepoState { dir })
    }

    /// The newest revision accepted so far; `None` if none was ever recorded. A breadcrumb
    /// that cannot be read (damaged, truncated) must not switch rollback protection off: the
    /// saved manifest of the same revision stands in for it, with a warning.
    pub fn breadcrumb(&self) -> Option<Breadcrumb> {
        let path = self.dir.join("breadcrumb");
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.saved_revision(),
            Err(e) => {
                tracing::warn!(
                    "{}: {e}; using the saved manifest's revision",
                    path.display()
                );
                return self.saved_revision();
            }
        };
        let parsed = std::str::from_utf8(&text).ok().and_then(|t| {
            let mut it = t.split_whitespace();
            Some(Breadcrumb {
                revision: it.next()?.parse().ok()?,
                timestamp: it.next()?.parse().ok()?,
            })
        });
        if parsed.is_none() {
            tracing::warn!(
                "{} is damaged; rollback protection uses the saved manifest's revision",
                path.display()
            );
            return self.saved_revision();
        }
        parsed
    }

    /// The revision of the saved manifest (saved with every breadcrumb), if it parses.
    fn saved_revision(&self) -> Option<Breadcrumb> {
        let bytes = std::fs::read(self.dir.join("manifest")).ok()?;
        let (m, _) = crate::cvmfs::manifest::Manifest::parse_unverified(&bytes).ok()?;
        Some(Breadcrumb {
            revision: m.revision,
            timestamp: m.timestamp,
        })
    }

    /// Records the bootstrap files of an accepted revision, each atomically.
    pub fn save(&self, b: Breadcrumb, manifest: &[u8], whitelist: &[u8]) -> std::io::Result<()> {
        write_atomic(&self.dir.join("manifest"), manifest)?;
        write_atomic(&self.dir.join("whitelist"), whitelist)?;
        write_atomic(
            &self.dir.join("breadcrumb"),
            format!("{} {}\n", b.revision, b.timestamp).as_bytes(),
        )
    }

    /// The last accepted manifest and whitelist, for offline mode.
    pub fn saved(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        Some((
            std::fs::read(self.dir.join("manifest")).ok()?,
            std::fs::read(self.dir.join("whitelist")).ok()?,
        ))
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // Unique per process and call: several mounts may share one cache.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
