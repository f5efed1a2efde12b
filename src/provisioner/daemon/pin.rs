//! Pins: what keeps an image mounted while a container runs on it. The Mesos module pins in
//! `prepare()`, unpins in `cleanup()` and re-syncs in `recover()`; an operator pins by hand.

use std::collections::HashMap;

use crate::cvmfs::hash::ContentHash;
use crate::provisioner::api;
use crate::provisioner::discovery::name;
use crate::provisioner::error::ProvisionError;
use crate::provisioner::image::{normalize_path, ImageKey};
use crate::provisioner::state::ImageRow;

use super::{check_container_id, Inner, Provisioner};

impl Provisioner {
    /// Pins an image for a container, remounting it if its mount is gone. The image is
    /// named by id (the daemon's own, or that of an entry the agent made from an ACI it
    /// served) or by the appc name and labels the task gave. Pinning the same image again
    /// is fine; pinning a second one is refused.
    pub fn pin(&self, req: &api::PinRequest) -> Result<api::Pin, ProvisionError> {
        check_container_id(&req.container_id)?;
        let mut inner = self.inner.lock().expect("provisioner");
        let row = if req.image_id.is_empty() {
            self.image_named(&inner, &req.appc_name, &req.appc_labels)?
        } else {
            self.image_with_id(&inner, &req.image_id)?
        };
        let mut added = false;
        match inner.state.pin_of(&req.container_id)? {
            Some(i) if i == row.id => {}
            Some(i) => {
                return Err(ProvisionError::AlreadyExists(format!(
                    "container {} already pins image {i}",
                    req.container_id
                )))
            }
            None => {
                inner
                    .state
                    .add_pin(&req.container_id, &row.id, req.operator_pin)?;
                added = true;
            }
        }
        if !inner.mounts.contains_key(&row.id) {
            // Its mount failed at recovery, died, or is being released: mounted again now
            // that a task needs it.
            drop(inner);
            if let Err(e) = self.remount_image(&row.id) {
                // The pin is refused with its reason; none is left behind.
                if added {
                    let mut inner = self.inner.lock().expect("provisioner");
                    inner.state.remove_pin(&req.container_id)?;
                }
                return Err(e);
            }
            inner = self.inner.lock().expect("provisioner");
        }
        let operator_pin = inner
            .state
            .pins()?
            .iter()
            .any(|p| p.container_id == req.container_id && p.operator);
        Ok(api::Pin {
            container_id: req.container_id.clone(),
            image_id: row.id.clone(),
            root_hash: row.key.root_hash.clone(),
            rootfs: self.mountpoint(&row.key).display().to_string(),
            operator_pin,
        })
    }

    /// The image with appc id `id`: one the daemon prepared, or the image of an entry the
    /// agent made from an ACI the daemon served. Any other id is not the daemon's.
    fn image_with_id(&self, inner: &Inner, id: &str) -> Result<ImageRow, ProvisionError> {
        if let Some(row) = inner.state.image(id)? {
            return Ok(row);
        }
        match inner.state.discovered_entry(id)? {
            Some(image) => inner.state.image(&image)?.ok_or_else(|| {
                ProvisionError::Internal(format!(
                    "appc entry {id} was served for image {image}, which the state lacks"
                ))
            }),
            None => Err(ProvisionError::NotOurs(format!(
                "image {id} is none of this daemon's: it neither prepared it nor served it \
                 through discovery"
            ))),
        }
    }

    /// The image a container that names `name` with `labels` runs on. Mesos's appc store
    /// found it by name: in an entry the agent fetched through discovery (the request it
    /// sent is rebuilt here exactly as Mesos's fetcher builds it), or in an entry whose
    /// labels the task matched in full (the daemon's own, whose version is the root hash).
    fn image_named(
        &self,
        inner: &Inner,
        name: &str,
        labels: &[api::AppcLabel],
    ) -> Result<ImageRow, ProvisionError> {
        if name.is_empty() {
            return Err(ProvisionError::Invalid(
                "a pin names an image by image_id or by appc_name".into(),
            ));
        }
        let labels: HashMap<&str, &str> = labels
            .iter()
            .map(|l| (l.key.as_str(), l.value.as_str()))
            .collect();
        let version = labels.get("version").copied().unwrap_or("latest");
        let (Some(os), Some(arch)) = (labels.get("os"), labels.get("arch")) else {
            // Mesos's fetcher refuses a name without them, so the agent did not get this
            // image from the daemon.
            return Err(ProvisionError::NotOurs(format!(
                "image {name}: without os and arch labels it never came from this daemon"
            )));
        };
        let request = format!("{name}-{version}-{os}-{arch}.aci");
        if let Some(id) = inner.state.discovered_image(&request)? {
            if let Some(row) = inner.state.image(&id)? {
                return Ok(row);
            }
        }
        let readings = name::candidates(&request).unwrap_or_default();
        let mut ours = false;
        for r in &readings {
            if !self.config.repositories.contains_key(&r.fqrn) {
                continue;
            }
            ours = true;
            let (Ok(root), Ok(path)) = (ContentHash::parse(&r.version), normalize_path(&r.path))
            else {
                continue;
            };
            let key = ImageKey {
                fqrn: r.fqrn.clone(),
                path,
                root_hash: root.to_string(),
            };
            if let Some(row) = inner.state.image(&key.id())? {
                return Ok(row);
            }
        }
        if ours {
            Err(ProvisionError::NotFound(format!(
                "image {name} at version {version} is not served on this agent: the daemon \
                 neither served it through discovery nor prepared it (an entry in the \
                 agent's store from elsewhere?)"
            )))
        } else {
            Err(ProvisionError::NotOurs(format!(
                "image {name} is in none of this daemon's repositories"
            )))
        }
    }

    /// Drops a container's pin, if any; its image's grace time starts now (with no grace
    /// time, an image left without pins is released at once).
    pub fn unpin(&self, req: &api::UnpinRequest) -> Result<api::UnpinResponse, ProvisionError> {
        check_container_id(&req.container_id)?;
        let mut inner = self.inner.lock().expect("provisioner");
        let was = inner.state.remove_pin(&req.container_id)?;
        // No grace time: the image goes as soon as its last pin does.
        let releasing = match (&was, self.config.grace_secs) {
            (Some(id), 0) => match inner.state.image(id)? {
                Some(row) => self.begin_release(&mut inner, &row)?,
                None => None,
            },
            _ => None,
        };
        drop(inner);
        if let Some(r) = releasing {
            self.finish_release(r)?;
        }
        Ok(api::UnpinResponse {
            was_pinned: was.is_some(),
        })
    }

    /// Drops the pins of every container not in the request (the agent has forgotten
    /// them); their images are released after the grace time. Operator pins stay.
    pub fn sync_pins(
        &self,
        req: &api::SyncPinsRequest,
    ) -> Result<api::SyncPinsResponse, ProvisionError> {
        for id in &req.container_ids {
            check_container_id(id)?;
        }
        let mut inner = self.inner.lock().expect("provisioner");
        let mut removed = Vec::new();
        for pin in inner.state.pins()? {
            if !pin.operator && !req.container_ids.contains(&pin.container_id) {
                inner.state.remove_pin(&pin.container_id)?;
                removed.push(pin.container_id);
            }
        }
        Ok(api::SyncPinsResponse { removed })
    }
}
