//! CSI volumes: a repository directory at one revision mounted at a target path, kept in
//! the state so that a restarted daemon mounts it again.

use super::{Inner, Provisioner};
use crate::mount::Skeleton;
use crate::provisioner::error::ProvisionError;
use crate::provisioner::image::{check_fqrn, image_path, ImageKey};
use crate::repository::At;

impl Provisioner {
    /// A target must lie under one of `csi_target_roots`, with its existing parent resolved
    /// (a symlink on the way must not lead out of the root).
    fn check_target(&self, target: &std::path::Path) -> Result<(), ProvisionError> {
        let parent = target.parent().unwrap_or(target);
        let real = std::fs::canonicalize(parent).map_err(|e| {
            ProvisionError::Invalid(format!("target path {}: {e}", target.display()))
        })?;
        let under = self
            .config
            .csi_target_roots
            .iter()
            .any(|root| std::fs::canonicalize(root).is_ok_and(|r| real.starts_with(r)));
        if under {
            Ok(())
        } else {
            Err(ProvisionError::Invalid(format!(
                "target path {} is not under any of csi_target_roots ({})",
                target.display(),
                self.config
                    .csi_target_roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }

    /// Mounts a repository directory at a revision read-only at `target` (CSI
    /// NodePublishVolume). The same volume at the same target again is a no-op.
    pub fn publish_volume(
        &self,
        fqrn: &str,
        path: &str,
        at: &At,
        target: &std::path::Path,
    ) -> Result<(), ProvisionError> {
        check_fqrn(fqrn).map_err(ProvisionError::Invalid)?;
        let path = image_path(path).map_err(ProvisionError::Invalid)?;
        self.check_target(target)?;
        let resolved = self.mounter.resolve(fqrn, at)?;
        let path = self.mounter.follow_links(fqrn, &resolved, &path)?;
        let key = ImageKey {
            fqrn: fqrn.to_string(),
            path,
            root_hash: resolved.root.to_string(),
        };
        let busy = format!("volume {}", target.display());
        {
            let mut inner = self.inner.lock().expect("provisioner");
            if self.already_published(&inner, &key, target)? {
                return Ok(());
            }
            if inner.stopping || !inner.mounting.insert(busy.clone()) {
                return Err(ProvisionError::Unavailable(format!(
                    "{} is being published, or the provisioner is stopping",
                    target.display()
                )));
            }
        }
        // Without the lock, as for images: a slow server holds up no other call.
        let mounted = self
            .mounter
            .mount(&key.fqrn, &key.path, resolved, target, Skeleton::none());
        let mut inner = self.inner.lock().expect("provisioner");
        inner.mounting.remove(&busy);
        let mut m = mounted?;
        // Undone after the lock goes, as every unmount.
        if inner.stopping {
            drop(inner);
            m.detach();
            return Err(ProvisionError::Unavailable(
                "the provisioner is stopping".into(),
            ));
        }
        if let Err(e) = inner.state.put_volume(&target.display().to_string(), &key) {
            drop(inner);
            m.detach();
            return Err(e.into());
        }
        inner.volumes_failed.remove(target);
        inner.volumes.insert(target.to_path_buf(), (key, m));
        Ok(())
    }

    /// Whether `target` has this volume already; an error if it has another one.
    fn already_published(
        &self,
        inner: &Inner,
        key: &ImageKey,
        target: &std::path::Path,
    ) -> Result<bool, ProvisionError> {
        match inner.volumes.get(target) {
            None => Ok(false),
            Some((existing, _)) if existing == key => Ok(true),
            Some((existing, _)) => Err(ProvisionError::AlreadyExists(format!(
                "{} already has volume {}:{}@{}",
                target.display(),
                existing.fqrn,
                existing.path,
                existing.root_hash
            ))),
        }
    }

    /// Unmounts the volume at `target` (CSI NodeUnpublishVolume); nothing there is fine.
    pub fn unpublish_volume(&self, target: &std::path::Path) -> Result<(), ProvisionError> {
        let busy = format!("volume {}", target.display());
        let taken = {
            let mut inner = self.inner.lock().expect("provisioner");
            if !inner.mounting.insert(busy.clone()) {
                return Err(ProvisionError::Busy(format!(
                    "{} is being published or unpublished",
                    target.display()
                )));
            }
            inner.volumes.remove(target)
        };
        // Unmounted without the lock: the kernel and the session's threads may take a
        // while, and no other call waits for them.
        let kept = match taken {
            Some((key, mut m)) => m.unmount().err().map(|e| (key, m, e)),
            None => None,
        };
        let mut inner = self.inner.lock().expect("provisioner");
        inner.mounting.remove(&busy);
        if let Some((key, m, e)) = kept {
            inner.volumes.insert(target.to_path_buf(), (key, m));
            return Err(e);
        }
        inner.state.remove_volume(&target.display().to_string())?;
        inner.volumes_failed.remove(target);
        Ok(())
    }
}
