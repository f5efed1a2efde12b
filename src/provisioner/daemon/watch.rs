//! Mounts that die under the daemon: unmounted by someone else, or their FUSE connection
//! aborted. Their appc entries go at once (an entry must never point at an empty or dead
//! directory), then the image is mounted again.

use crate::mount::mountinfo;
use crate::provisioner::error::ProvisionError;
use crate::provisioner::mounts::Mount;

use super::{known_revision, Provisioner};

impl Provisioner {
    /// Finds images whose mount died, removes their entries, and mounts them again (their
    /// entries come back with the mount). The ids found dead.
    pub fn check_mounts(&self) -> Result<Vec<String>, ProvisionError> {
        let mut inner = self.inner.lock().expect("provisioner");
        // Read under the lock: a mount made after the read would otherwise look dead.
        let table = mountinfo::read()
            .map_err(|e| ProvisionError::Internal(format!("reading mountinfo: {e}")))?;
        let dead: Vec<String> = inner
            .mounts
            .iter()
            .filter(|(_, m)| !m.alive(&table))
            .map(|(id, _)| id.clone())
            .collect();
        let mut gone: Vec<(String, Mount)> = Vec::new();
        for id in &dead {
            self.forget_entries(&inner, id);
            if let Some(m) = inner.mounts.remove(id) {
                tracing::error!(
                    "the mount of image {id} at {} died; its appc entries are removed and it \
                     is mounted again",
                    m.mountpoint.display()
                );
                inner
                    .remount_failed
                    .insert(id.clone(), "its mount died; being mounted again".into());
                gone.push((id.clone(), m));
            }
        }
        drop(inner);
        for (id, mut m) in gone {
            // Lazily: a dead connection may still have users (binds of it).
            m.detach();
            if let Err(e) = self.remount_image(&id) {
                tracing::error!("cannot mount image {id} again: {e}");
                let mut inner = self.inner.lock().expect("provisioner");
                inner.remount_failed.insert(id, e.to_string());
            }
        }
        Ok(dead)
    }

    /// Mounts image `id` of the state again and writes its own appc entry.
    pub(super) fn remount_image(&self, id: &str) -> Result<(), ProvisionError> {
        let row = {
            let inner = self.inner.lock().expect("provisioner");
            inner.state.image(id)?
        };
        // Released meanwhile: nothing to do.
        let Some(row) = row else { return Ok(()) };
        let _inner = self.ensure_mounted(&row.key, known_revision(&row.key)?)?;
        self.appc
            .put(&row.key, row.revision, &self.mountpoint(&row.key))
            .map_err(|e| ProvisionError::Internal(format!("appc entry of {id}: {e}")))?;
        Ok(())
    }
}
