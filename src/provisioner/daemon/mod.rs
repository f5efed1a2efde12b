//! The provisioner's behaviour, without transport: prepare images, pin and unpin them,
//! release what nobody uses, recover after a restart. One lock orders every change, so the
//! state database, the mounts and the appc store always agree.

use std::collections::HashMap;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::cvmfs::hash::ContentHash;
use crate::mount::Skeleton;

use super::api;
use super::appc::AppcStore;
use super::config::Config;
use super::error::ProvisionError;
use super::image::{check_fqrn, image_path, revision_at, ImageKey};
use super::mounts::{Mount, Mounter, Resolved};
use super::state::{now, ImageRow, State};

mod discover;
mod pin;
mod release;
mod volumes;
mod watch;

/// The provisioner: the images it mounted, their pins and appc store entries, and the CSI
/// volumes it published, kept in step with the state database under one lock.
pub struct Provisioner {
    config: Config,
    mounter: Mounter,
    appc: AppcStore,
    inner: Mutex<Inner>,
    /// Signalled when a mount started without the lock is done (see `ensure_mounted`).
    mounted: Condvar,
}

struct Inner {
    state: State,
    /// Mounted images by id.
    mounts: HashMap<String, Mount>,
    /// CSI volumes by target path.
    volumes: HashMap<PathBuf, (ImageKey, Mount)>,
    /// Images (by id) and volumes (`volume <target>`) being mounted right now, without the
    /// lock.
    mounting: HashSet<String>,
    /// Set by `shutdown`: a mount finishing after it is undone at once.
    stopping: bool,
    /// Why the remount of an image (by id) failed at start; cleared once it is mounted.
    remount_failed: HashMap<String, String>,
    /// Why the remount of a CSI volume (by target) failed at start; cleared once the
    /// target is published or unpublished again.
    volumes_failed: HashMap<PathBuf, String>,
}

/// Container ids come from Mesos (`parent.child` for nested containers): bounded, printable.
fn check_container_id(id: &str) -> Result<(), ProvisionError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ProvisionError::Invalid(format!(
            "not a container id: {id:?} (letters, digits and -_.:@, at most 1024)"
        )))
    }
}

/// The revision of an image the state already names by root hash.
fn known_revision(key: &ImageKey) -> Result<Resolved, ProvisionError> {
    let root = ContentHash::parse(&key.root_hash)
        .map_err(|e| ProvisionError::Internal(format!("root hash {:?}: {e}", key.root_hash)))?;
    Ok(Resolved::known(root))
}

impl Provisioner {
    /// Opens the state, remounts every image it lists (a restarted daemon serves the same
    /// images at the same paths) and removes what no image references.
    pub fn start(config: Config) -> Result<Arc<Provisioner>, ProvisionError> {
        let mkdir = |p: &std::path::Path| {
            std::fs::create_dir_all(p)
                .map_err(|e| ProvisionError::Internal(format!("creating {}: {e}", p.display())))
        };
        mkdir(&config.mount_root)?;
        if let Some(parent) = config.state.parent() {
            mkdir(parent)?;
        }
        let appc = AppcStore::new(&config.appc_store_dir).map_err(|e| {
            ProvisionError::Internal(format!(
                "appc store {}: {e}",
                config.appc_store_dir.display()
            ))
        })?;
        let state = State::open(&config.state).map_err(|e| {
            ProvisionError::Internal(format!("state {}: {e}", config.state.display()))
        })?;
        let mounter = Mounter::new(&config)?;
        let p = Arc::new(Provisioner {
            config,
            mounter,
            appc,
            inner: Mutex::new(Inner {
                state,
                mounts: HashMap::new(),
                volumes: HashMap::new(),
                mounting: HashSet::new(),
                stopping: false,
                remount_failed: HashMap::new(),
                volumes_failed: HashMap::new(),
            }),
            mounted: Condvar::new(),
        });
        p.recover()?;
        Ok(p)
    }

    fn mountpoint(&self, key: &ImageKey) -> PathBuf {
        self.config.mount_root.join(key.mount_dir())
    }

    fn recover(&self) -> Result<(), ProvisionError> {
        let mut inner = self.inner.lock().expect("provisioner");
        let images = inner.state.images()?;
        for row in &images {
            let mp = self.mountpoint(&row.key);
            // After a crash the old mount is kept by the keeper (and taken over now) or dead
            // ("transport endpoint is not connected": replaced by the mount).
            match self.mount_image(&row.key) {
                Ok(m) => {
                    inner.mounts.insert(row.id.clone(), m);
                    self.put_entry(&inner, &row.key, row.revision)?;
                }
                // Kept in the state: the next prepare or pin of it mounts it again. Its
                // entries, left by a daemon that was killed, go: they would point at an
                // empty directory, and the agent would run a task on it.
                Err(e) => {
                    tracing::error!("cannot remount image {}: {e}", row.id);
                    inner.remount_failed.insert(row.id.clone(), e.to_string());
                    self.forget_entries(&inner, &row.id);
                    let _ = std::fs::remove_dir(&mp);
                }
            }
        }
        for (target, key) in inner.state.volumes()? {
            let target = PathBuf::from(target);
            match self.remount(&key, &target, Skeleton::none()) {
                Ok(m) => {
                    inner.volumes.insert(target, (key, m));
                }
                Err(e) => {
                    tracing::error!("cannot remount volume {}: {e}", target.display());
                    inner.volumes_failed.insert(target, e.to_string());
                }
            }
        }
        // Entries of images the state no longer lists were removed with them (entries go
        // before the state row); any other entry is the agent's own, never touched. Only
        // interrupted writes in the staging directory are cleaned.
        self.appc
            .ids()
            .map_err(|e| ProvisionError::Internal(format!("appc store: {e}")))?;
        Ok(())
    }

    /// Writes the daemon's own appc entry of the mounted image `key` (with the `app`
    /// section its mount read, for an ingested image).
    fn put_entry(
        &self,
        inner: &Inner,
        key: &ImageKey,
        revision: u64,
    ) -> Result<(), ProvisionError> {
        let id = key.id();
        let app = inner.mounts.get(&id).and_then(|m| m.app.as_ref());
        self.appc
            .put(key, revision, &self.mountpoint(key), app)
            .map(|_| ())
            .map_err(|e| ProvisionError::Internal(format!("appc entry of {id}: {e}")))
    }

    /// Removes the appc entries of image `id` (its own and the ones the agent made from
    /// ACIs the daemon served), so that none points at a directory that is not mounted.
    fn forget_entries(&self, inner: &Inner, id: &str) {
        let discovered = inner.state.discovered_of(id).unwrap_or_default();
        for entry in discovered.iter().map(String::as_str).chain([id]) {
            match self.appc.remove(entry) {
                Ok(()) => {
                    if entry != id {
                        let _ = inner.state.remove_discovered(entry);
                    }
                }
                Err(e) => tracing::warn!("removing the appc entry {entry}: {e}"),
            }
        }
    }

    fn mount_image(&self, key: &ImageKey) -> Result<Mount, ProvisionError> {
        self.remount(key, &self.mountpoint(key), Skeleton::mesos_rootfs())
    }

    /// Mounts an image or volume the state already names by root hash.
    fn remount(
        &self,
        key: &ImageKey,
        at: &std::path::Path,
        skeleton: Skeleton,
    ) -> Result<Mount, ProvisionError> {
        self.mounter
            .mount(&key.fqrn, &key.path, known_revision(key)?, at, skeleton)
    }

    fn image_of(&self, inner: &Inner, row: &ImageRow) -> Result<api::Image, ProvisionError> {
        let pinned_by = inner
            .state
            .pins()?
            .into_iter()
            .filter(|p| p.image_id == row.id)
            .map(|p| p.container_id)
            .collect();
        Ok(api::Image {
            id: row.id.clone(),
            fqrn: row.key.fqrn.clone(),
            path: row.key.path.clone(),
            root_hash: row.key.root_hash.clone(),
            revision: row.revision,
            rootfs: self.mountpoint(&row.key).display().to_string(),
            appc_name: row.key.appc_name(),
            appc_dir: self.appc.entry_dir(&row.id).display().to_string(),
            pinned_by,
        })
    }

    /// Resolves the requested revision to a root hash, mounts the image (fqrn, path, root
    /// hash) unless it is mounted, and writes its appc store entry and state row.
    pub fn prepare(&self, req: &api::PrepareImageRequest) -> Result<api::Image, ProvisionError> {
        check_fqrn(&req.fqrn).map_err(ProvisionError::Invalid)?;
        let path = image_path(&req.path).map_err(ProvisionError::Invalid)?;
        let given = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let at = revision_at(given(&req.root_hash).as_deref(), given(&req.tag).as_deref())
            .map_err(ProvisionError::Invalid)?;
        // Outside the lock: this may ask the servers.
        let resolved = self.mounter.resolve(&req.fqrn, &at)?;
        // A name (a link to an ingested image) is resolved now: the image never moves.
        let path = self.mounter.follow_links(&req.fqrn, &resolved, &path)?;
        let key = ImageKey {
            fqrn: req.fqrn.clone(),
            path,
            root_hash: resolved.root.to_string(),
        };
        let id = key.id();
        let seen = resolved.revision;
        let mut inner = self.ensure_mounted(&key, resolved)?;
        let existing = inner.state.image(&id)?;
        let revision = existing.as_ref().map_or(seen, |r| r.revision.max(seen));
        let row = ImageRow {
            id: id.clone(),
            key: key.clone(),
            revision,
            touched: now(),
        };
        let written = self
            .put_entry(&inner, &key, revision)
            .and_then(|_| inner.state.put_image(&row).map_err(ProvisionError::from));
        if let Err(e) = written {
            // Nothing half-done stays: no entry, no mount of an image the state lacks.
            if existing.is_none() {
                let _ = self.appc.remove(&id);
                let taken = inner.mounts.remove(&id);
                // Unmounted after the lock goes, as every unmount.
                drop(inner);
                if let Some(mut m) = taken {
                    m.detach();
                }
            }
            return Err(e);
        }
        self.image_of(&inner, &row)
    }

    /// Mounts the image unless it is mounted, and returns with the lock held. The slow part
    /// (asking the servers, loading catalogs) runs without the lock, so that pins and unpins
    /// of other containers never wait for a download; two prepares of one image mount it once.
    fn ensure_mounted(
        &self,
        key: &ImageKey,
        at: Resolved,
    ) -> Result<MutexGuard<'_, Inner>, ProvisionError> {
        let id = key.id();
        let mut inner = self.inner.lock().expect("provisioner");
        loop {
            if inner.mounts.contains_key(&id) {
                return Ok(inner);
            }
            if !inner.mounting.contains(&id) {
                break;
            }
            inner = self.mounted.wait(inner).expect("provisioner");
        }
        if inner.stopping {
            return Err(ProvisionError::Unavailable(
                "the provisioner is stopping".into(),
            ));
        }
        inner.mounting.insert(id.clone());
        drop(inner);
        let mp = self.mountpoint(key);
        // A dead mount left by a crash.
        let _ = crate::mount::fuse::unmount(&mp, true);
        // A panic while mounting must not leave other prepares of this image waiting on
        // `mounting` for good: it is this prepare's error, and they are woken as for any other.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.mounter
                .mount(&key.fqrn, &key.path, at, &mp, Skeleton::mesos_rootfs())
        }))
        .unwrap_or_else(|_| {
            Err(ProvisionError::Internal(format!(
                "mounting {} panicked",
                mp.display()
            )))
        });
        let mut inner = self.inner.lock().expect("provisioner");
        inner.mounting.remove(&id);
        self.mounted.notify_all();
        match result {
            Ok(mut m) if inner.stopping => {
                drop(inner);
                m.detach();
                Err(ProvisionError::Unavailable(
                    "the provisioner is stopping".into(),
                ))
            }
            Ok(m) => {
                inner.remount_failed.remove(&id);
                inner.mounts.insert(id, m);
                Ok(inner)
            }
            Err(e) => {
                let _ = std::fs::remove_dir(&mp);
                Err(e)
            }
        }
    }

    /// Every image the state holds, and every pin.
    pub fn list(&self) -> Result<api::ListImagesResponse, ProvisionError> {
        let inner = self.inner.lock().expect("provisioner");
        let images = inner
            .state
            .images()?
            .iter()
            .map(|row| self.image_of(&inner, row))
            .collect::<Result<Vec<_>, _>>()?;
        let pins = inner
            .state
            .pins()?
            .into_iter()
            .map(|p| {
                let img = images.iter().find(|i| i.id == p.image_id);
                api::Pin {
                    root_hash: img.map(|i| i.root_hash.clone()).unwrap_or_default(),
                    rootfs: img.map(|i| i.rootfs.clone()).unwrap_or_default(),
                    container_id: p.container_id,
                    image_id: p.image_id,
                    operator_pin: p.operator,
                }
            })
            .collect();
        Ok(api::ListImagesResponse { images, pins })
    }

    /// Liveness and counts: images, pins, and live mounts (images and CSI volumes); and
    /// what is wrong: images and volumes not mounted, servers failing, the cache full.
    pub fn health(&self) -> Result<api::HealthResponse, ProvisionError> {
        let inner = self.inner.lock().expect("provisioner");
        let images = inner.state.images()?;
        let mut problems: Vec<String> = images
            .iter()
            .filter(|row| !inner.mounts.contains_key(&row.id))
            .map(|row| {
                format!(
                    "image {} ({}{} at {}) is not mounted: {}",
                    row.id,
                    row.key.fqrn,
                    row.key.path,
                    row.key.root_hash,
                    inner
                        .remount_failed
                        .get(&row.id)
                        .map_or("its mount is gone", String::as_str)
                )
            })
            .collect();
        problems.extend(self.volume_problems_of(&inner));
        Ok(api::HealthResponse {
            status: if problems.is_empty() {
                "ok"
            } else {
                "degraded"
            }
            .into(),
            problems,
            version: env!("CARGO_PKG_VERSION").into(),
            images: images.len() as u32,
            pins: inner.state.pins()?.len() as u32,
            mounts: (inner.mounts.len() + inner.volumes.len()) as u32,
            pid: std::process::id() as u64,
        })
    }

    /// What keeps CSI volumes from being served (CSI Probe): volumes whose remount failed,
    /// servers failing, the cache over its quota. Unmounted appc images are not its concern.
    pub fn volume_problems(&self) -> Vec<String> {
        let inner = self.inner.lock().expect("provisioner");
        self.volume_problems_of(&inner)
    }

    fn volume_problems_of(&self, inner: &Inner) -> Vec<String> {
        let mut problems: Vec<String> = inner
            .volumes_failed
            .iter()
            .map(|(target, why)| format!("volume {} is not mounted: {why}", target.display()))
            .collect();
        problems.sort();
        problems.extend(self.mounter.problems());
        problems
    }
}
