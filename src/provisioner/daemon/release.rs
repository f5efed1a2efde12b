//! Letting go of images: after the grace time without pins, and all at once when stopping.

use super::{Inner, Provisioner};
use crate::provisioner::error::ProvisionError;
use crate::provisioner::mounts::Mount;
use crate::provisioner::state::{now, ImageRow};

/// An image being released: out of the served mounts, its entries gone, being unmounted.
pub(super) struct Releasing {
    row: ImageRow,
    mount: Option<Mount>,
}

/// Every mount, images' and volumes', taken out as the daemon stops (a mount finishing
/// after this is undone at once).
fn take_all(inner: &mut Inner) -> Vec<Mount> {
    inner.stopping = true;
    let volumes = inner.volumes.drain().map(|(_, (_, m))| m);
    inner
        .mounts
        .drain()
        .map(|(_, m)| m)
        .chain(volumes)
        .collect()
}

fn entry_error(row: &ImageRow, e: std::io::Error) -> ProvisionError {
    ProvisionError::Internal(format!("appc entry of {}: {e}", row.id))
}

impl Provisioner {
    /// Releases images nobody has pinned for the grace time: unmounted, appc entry and
    /// state row removed. An image still mounted elsewhere (a bind) or busy stays for now.
    /// The ids released.
    pub fn release_idle(&self) -> Result<Vec<String>, ProvisionError> {
        let mut inner = self.inner.lock().expect("provisioner");
        let deadline = now() - self.config.grace_secs as i64;
        let mut releasing = Vec::new();
        for row in inner.state.images()? {
            // Strictly older: a just-prepared image always gets a moment to be pinned.
            if row.touched < deadline {
                releasing.extend(self.begin_release(&mut inner, &row)?);
            }
        }
        drop(inner);
        let mut released = Vec::new();
        for r in releasing {
            let id = r.row.id.clone();
            if self.finish_release(r)? {
                released.push(id);
            }
        }
        Ok(released)
    }

    /// The part of releasing an image done under the lock, unless it is pinned: its appc
    /// entries go first (an entry must never point at an unmounted directory, or the agent
    /// would run a task on an empty root; a task that names the image after this gets it
    /// through discovery again), its mount is taken out, and the image is marked as being
    /// mounted, so that a prepare or pin of it waits for [`Provisioner::finish_release`].
    pub(super) fn begin_release(
        &self,
        inner: &mut Inner,
        row: &ImageRow,
    ) -> Result<Option<Releasing>, ProvisionError> {
        if inner.state.pin_count(&row.id)? > 0 || inner.mounting.contains(&row.id) {
            return Ok(None);
        }
        for entry in inner.state.discovered_of(&row.id)? {
            self.appc.remove(&entry).map_err(|e| entry_error(row, e))?;
            inner.state.remove_discovered(&entry)?;
        }
        self.appc.remove(&row.id).map_err(|e| entry_error(row, e))?;
        inner.mounting.insert(row.id.clone());
        Ok(Some(Releasing {
            row: row.clone(),
            mount: inner.mounts.remove(&row.id),
        }))
    }

    /// Unmounts an image [`Provisioner::begin_release`] took out, without the lock (an
    /// unmount waits for the kernel and the session's threads), then forgets it. A mount
    /// still busy or bound elsewhere stays served, with its entry back; an image pinned
    /// meanwhile stays in the state (the pin mounts it again). Whether it was released.
    pub(super) fn finish_release(&self, r: Releasing) -> Result<bool, ProvisionError> {
        let Releasing { row, mount } = r;
        let kept = match mount {
            Some(mut m) => match m.unmount() {
                Ok(()) => None,
                Err(e) => Some((m, e)),
            },
            None => None,
        };
        let mut inner = self.inner.lock().expect("provisioner");
        inner.mounting.remove(&row.id);
        self.mounted.notify_all();
        if let Some((m, why)) = kept {
            tracing::info!("keeping image {} mounted: {why}", row.id);
            inner.mounts.insert(row.id.clone(), m);
            // Still served: its own entry back (discovered ones come back on demand).
            self.put_entry(&inner, &row.key, row.revision)?;
            return Ok(false);
        }
        if inner.state.pin_count(&row.id)? > 0 {
            return Ok(false);
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

    /// Hands every mount over to the daemon that replaces this one (an upgrade): nothing is
    /// unmounted and the appc entries stay (they point at the same mounts, which the next
    /// daemon serves, and writes anew).
    pub fn hand_over(&self) {
        let mut guard = self.inner.lock().expect("provisioner");
        let mounts = take_all(&mut guard);
        drop(guard);
        for m in mounts {
            m.hand_over();
        }
    }

    /// Whether mounts outlive this daemon (a keeper is configured): only then can it be
    /// upgraded in place.
    pub fn keeps_mounts(&self) -> bool {
        self.config.keeper_socket.is_some()
    }

    /// Unmounts everything (the daemon is stopping). The appc entries go first, so that no
    /// entry points at an unmounted, empty directory while the daemon is away (the agent
    /// would run a task on an empty root; with no entry it asks discovery, and gets a clear
    /// error while the daemon is down). The state stays: a restarted daemon mounts the same
    /// images again and writes their entries anew.
    pub fn shutdown(&self) {
        let mut guard = self.inner.lock().expect("provisioner");
        guard.stopping = true;
        let inner = &mut *guard;
        for row in inner.state.images().unwrap_or_default() {
            self.forget_entries(inner, &row.id);
        }
        let mounts = take_all(inner);
        // Unmounted without the lock: health and list calls are still answered meanwhile
        // (and see nothing mounted).
        drop(guard);
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
