//! The daemon as the CSI node service's volume publisher: a volume is a repository
//! directory at one revision, mounted lazily (pinned) straight at the target path.

use std::path::Path;
use std::sync::Arc;

use crate::csi::{VolumeError, VolumePublisher, VolumeSpec};

use super::image::revision_at;
use super::{ProvisionError, Provisioner};

/// The provisioner as the CSI node service's [`VolumePublisher`].
pub struct Volumes(pub Arc<Provisioner>);

fn volume_error(e: ProvisionError) -> VolumeError {
    match e {
        ProvisionError::Invalid(m) | ProvisionError::AlreadyExists(m) => {
            VolumeError::InvalidArgument(m)
        }
        ProvisionError::NotFound(m) | ProvisionError::NotOurs(m) => VolumeError::NotFound(m),
        ProvisionError::Unavailable(m) | ProvisionError::Busy(m) => VolumeError::Unavailable(m),
        ProvisionError::PermissionDenied(m) | ProvisionError::Internal(m) => {
            VolumeError::Internal(m)
        }
    }
}

impl VolumePublisher for Volumes {
    fn publish(&self, spec: &VolumeSpec, target: &Path) -> Result<(), VolumeError> {
        let at = revision_at(spec.root_hash.as_deref(), spec.tag.as_deref())
            .map_err(VolumeError::InvalidArgument)?;
        self.0
            .publish_volume(&spec.fqrn, &spec.path, &at, target)
            .map_err(volume_error)
    }

    fn unpublish(&self, target: &Path) -> Result<(), VolumeError> {
        self.0.unpublish_volume(target).map_err(volume_error)
    }

    fn problems(&self) -> Vec<String> {
        self.0.volume_problems()
    }
}
