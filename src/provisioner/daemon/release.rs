//! Letting go of images: after the grace time without pins, and all at once when stopping.

use super::{Inner, Provisioner};
use crate::provisioner::error::ProvisionError;
use crate::provisioner::mounts::Mount;
use crate::provisioner::state::{now, ImageRow};

impl Provisioner {
    /// Releases images nobody has pinned for the grace time: unmounted, appc entry and
    /// state row removed. An image still mounted elsewhere (a bind) or busy stays for now.
    /// The ids released.
    pub fn release_idle(&self) -> Result<Vec<String>, ProvisionError> {
        let mut inner = self.inner.lock().expect("provisioner");
        let deadline = now() - self.config.grace_secs as i64;
        let mut released = Vec::new();
        for row in inner.state.images()? {
            // Strictly older: a just-prepared image always gets a moment to be pinned.
            if row.touched < deadline && self.release(&mut inner, &row)? {
                released.push(row.id);
            }
        }
        Ok(released)
    }

    /// Releases one image unless pinned, busy or mounted elsewhere; whether it did.
    pub(super) fn release(
        &self,
        inner: &mut Inner,
        row: &ImageRow,
    ) -> Result<bool, ProvisionError> {
        if inner.state.pin_count(&row.id)? > 0 {
            return Ok(false);
        }
        // Entries first: an entry must never point at an unmounted directory (the agent
        // would run a task on an empty root). A task that names the image after this gets
        // it through discovery again.
        let entry_err =
            |e: std::io::Error| ProvisionError::Internal(format!("appc entry of {}: {e}", row.id));
        for entry in inner.state.discovered_of(&row.id)? {
            self.appc.remove(&entry).map_err(entry_err)?;
            inner.state.remove_discovered(&entry)?;
        }
        self.appc.remove(&row.id).map_err(entry_err)?;
        if let Some(mut m) = inner.mounts.remove(&row.id) {
            if let Err(e) = m.unmount() {
                tracing::info!("keeping image {} mounted: {e}", row.id);
                inner.mounts.insert(row.id.clone(), m);
                // Still served: its own entry back (discovered ones come back on demand).
                self.appc
                    .put(&row.key, row.revision, &self.mountpoint(&row.key))
                    .map_err(entry_err)?;
                return Ok(false);
            }
        }
        inner.state.remove_image(&row.id)?;
        let mp = self.mountpoint(&row.key);
        let _ = std::fs::remove_dir(&mp);
        // The revision and repository directories, once empty.
        for dir in mp.ancestors().skip(1).take(2) {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(true)
    }

    /// Unmounts everything (the daemon is stopping). The appc entries go first, so that no
    /// entry points at an unmounted, empty directory while the daemon is away (the agent
    /// would run a task on an empty root; with no entry it asks discovery, and gets a clear
    /// error while the daemon is down). The state stays: a restarted daemon mounts the same
    /// images again and writes their entries anew.
    pub fn shutdown(&self) {
        let mut inner = self.inner.lock().expect("provisioner");
        inner.stopping = true;
        let inner = &mut *inner;
        for row in inner.state.images().unwrap_or_default() {
            for entry in inner.state.discovered_of(&row.id).unwrap_or_default() {
                if self.appc.remove(&entry).is_ok() {
                    let _ = inner.state.remove_discovered(&entry);
                }
            }
            if let Err(e) = self.appc.remove(&row.id) {
                tracing::warn!("removing the appc entry of {}: {e}", row.id);
            }
        }
        let volumes = inner.volumes.drain().map(|(_, (_, m))| m);
        let mounts: Vec<Mount> = inner
            .mounts
            .drain()
            .map(|(_, m)| m)
            .chain(volumes)
            .collect();
        for mut m in mounts {
            let at = m.mountpoint.clone();
            if m.unmount().is_err() {
                m.detach();
            }
            // Gone, not empty: a `rootfs` symlink left anywhere dangles rather than
            // pointing at an empty root.
            let _ = std::fs::remove_dir(&at);
        }
    }
}
