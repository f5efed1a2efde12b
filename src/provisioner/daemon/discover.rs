//! Images on demand: an appc simple-discovery request prepares the image it names (the
//! lazy pinned mount, as `prepare`) and is answered with an ACI pointing at the mount.

use crate::cvmfs::hash::ContentHash;
use crate::provisioner::api;
use crate::provisioner::discovery::aci::{self, Aci};
use crate::provisioner::discovery::name::{self, Request};
use crate::provisioner::error::ProvisionError;

use super::Provisioner;

impl Provisioner {
    /// Answers discovery request `path` (`/<fqrn><path>-<version>-<os>-<arch>.aci`): the
    /// image is prepared and its ACI built; the entry the agent will make of it is recorded
    /// as the daemon's. Names with dashes are tried every way, rightmost dash first; the
    /// first reading that names an image of a configured repository wins.
    pub fn discover(&self, path: &str) -> Result<Aci, ProvisionError> {
        let readings =
            name::candidates(path).map_err(|e| ProvisionError::Invalid(e.to_string()))?;
        // Each reading that names no image, and why: all of them go into the answer.
        let mut misses = Vec::new();
        for req in &readings {
            if !self.config.repositories.contains_key(&req.fqrn) {
                misses.push(format!(
                    "no repository {} is configured on this agent",
                    req.fqrn
                ));
                continue;
            }
            if req.os != "linux" || req.arch != crate::provisioner::appc::arch() {
                return Err(ProvisionError::NotFound(format!(
                    "{path}: this agent runs linux-{}, not {}-{}",
                    crate::provisioner::appc::arch(),
                    req.os,
                    req.arch
                )));
            }
            match self.prepare(&prepare_request(req)) {
                Ok(image) => return self.aci_of(path, req, &image),
                // Another reading may name an image that exists.
                Err(ProvisionError::NotFound(why)) => {
                    misses.push(format!("{} at {:?}: {why}", req.name(), req.version));
                }
                Err(e) => return Err(e),
            }
        }
        misses.dedup();
        Err(ProvisionError::NotFound(format!(
            "{path} names no image: {}",
            misses.join("; ")
        )))
    }

    fn aci_of(&self, path: &str, req: &Request, image: &api::Image) -> Result<Aci, ProvisionError> {
        let key = crate::provisioner::image::ImageKey {
            fqrn: req.fqrn.clone(),
            path: image.path.clone(),
            root_hash: image.root_hash.clone(),
        };
        let app = {
            let inner = self.inner.lock().expect("provisioner");
            inner.mounts.get(&image.id).and_then(|m| m.app.clone())
        };
        let manifest = aci::manifest(req, &key, image.revision, app.as_ref());
        let built = aci::build(&manifest, std::path::Path::new(&image.rootfs))
            .map_err(|e| ProvisionError::Internal(format!("building the ACI: {e}")))?;
        let inner = self.inner.lock().expect("provisioner");
        // Recorded before the answer leaves: the agent's entry is the daemon's from the
        // moment it can exist.
        inner
            .state
            .add_discovered(&built.id, &image.id, path.trim_start_matches('/'))?;
        Ok(built)
    }
}

/// The prepare a reading asks for: `latest`, a root hash, or else a tag.
fn prepare_request(req: &Request) -> api::PrepareImageRequest {
    let (root_hash, tag) = match req.version.as_str() {
        "latest" => (String::new(), String::new()),
        v if ContentHash::parse(v).is_ok() => (v.to_string(), String::new()),
        v => (String::new(), v.to_string()),
    };
    api::PrepareImageRequest {
        fqrn: req.fqrn.clone(),
        path: req.path.clone(),
        root_hash,
        tag,
    }
}
