//! Mounts that die under the daemon: unmounted by someone else, or their FUSE connection
//! aborted. Their appc entries go at once (an entry must never point at an empty or dead
//! directory), then the image is mounted again.

use crate::mount::mountinfo;
use crate::provisioner::error::ProvisionError;
use crate::provisioner::mounts::Mount;

use super::{known_revision, Provisioner};

/// Images whose mount died, taken out of the served mounts: [`Provisioner::dead_mounts`]
/// finds them, [`Provisioner::remount_dead`] mounts them again.
pub struct DeadMounts(Vec<(String, Mount)>);

impl DeadMounts {
    /// Whether no mount died.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Provisioner {
    /// A keeper that died is replaced and given every live mount again (see
    /// [`Mounter::replace_keeper_if_gone`](crate::provisioner::mounts::Mounter::replace_keeper_if_gone)).
    pub fn check_keeper(&self) {
        let inner = self.inner.lock().expect("provisioner");
        let volumes = inner.volumes.values().map(|(_, m)| m);
        self.mounter
            .replace_keeper_if_gone(inner.mounts.values().chain(volumes));
    }

    /// Finds images whose mount died and removes their entries at once. Cheap (one read
    /// of the mount table under the lock), so it runs often and never waits on a server.
    pub fn dead_mounts(&self) -> Result<DeadMounts, ProvisionError> {
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
        let mut gone = Vec::new();
        for id in dead {
            self.forget_entries(&inner, &id);
            if let Some(m) = inner.mounts.remove(&id) {
                tracing::error!(
                    "the mount of image {id} at {} died; its appc entries are removed and it \
                     is mounted again",
                    m.mountpoint.display()
                );
                inner
                    .remount_failed
                    .insert(id.clone(), "its mount died; being mounted again".into());
                gone.push((id, m));
            }
        }
        Ok(DeadMounts(gone))
    }

    /// Mounts the images [`Provisioner::dead_mounts`] found again (their entries come back
    /// with the mount); may wait on the servers. The ids.
    pub fn remount_dead(&self, dead: DeadMounts) -> Vec<String> {
        let mut ids = Vec::new();
        for (id, mut m) in dead.0 {
            // Lazily: a dead connection may still have users (binds of it).
            m.detach();
            if let Err(e) = self.remount_image(&id) {
                tracing::error!("cannot mount image {id} again: {e}");
                let mut inner = self.inner.lock().expect("provisioner");
                inner.remount_failed.insert(id.clone(), e.to_string());
            }
            ids.push(id);
        }
        ids
    }

    /// Mounts image `id` of the state again and writes its own appc entry.
    pub(super) fn remount_image(&self, id: &str) -> Result<(), ProvisionError> {
        let row = {
            let inner = self.inner.lock().expect("provisioner");
            inner.state.image(id)?
        };
        // Released meanwhile: nothing to do.
        let Some(row) = row else { return Ok(()) };
        let inner = self.ensure_mounted(&row.key, known_revision(&row.key)?)?;
        self.put_entry(&inner, &row.key, row.revision)
    }
}
