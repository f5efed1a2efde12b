//! The seam between the CSI services and whatever mounts repositories (the daemon).

use std::path::Path;

use super::VolumeSpec;

/// Mounts and unmounts volumes. The methods block (they mount FUSE file systems); the
/// services call them on tokio's blocking pool.
pub trait VolumePublisher: Send + Sync + 'static {
    /// Mounts `spec` read-only at `target` (an existing empty directory). Idempotent for the
    /// same spec and target.
    fn publish(&self, spec: &VolumeSpec, target: &Path) -> Result<(), VolumeError>;
    /// Unmounts whatever `publish` mounted at `target`; Ok if nothing is mounted there.
    fn unpublish(&self, target: &Path) -> Result<(), VolumeError>;
    /// What keeps volumes from being published or served, for an operator (CSI Probe
    /// answers FAILED_PRECONDITION with it); empty when all is well.
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Why a volume could not be published; each kind maps to one gRPC status code.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The request names something that cannot be a volume (INVALID_ARGUMENT).
    #[error("{0}")]
    InvalidArgument(String),
    /// The repository, path, tag or revision does not exist (NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// Temporarily impossible, e.g. the repository's servers are unreachable (UNAVAILABLE).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (INTERNAL).
    #[error("{0}")]
    Internal(String),
}

impl VolumeError {
    /// The gRPC status for this error, its message prefixed with `context`.
    pub fn to_status(&self, context: &str) -> tonic::Status {
        let message = format!("{context}: {self}");
        match self {
            VolumeError::InvalidArgument(_) => tonic::Status::invalid_argument(message),
            VolumeError::NotFound(_) => tonic::Status::not_found(message),
            VolumeError::Unavailable(_) => tonic::Status::unavailable(message),
            VolumeError::Internal(_) => tonic::Status::internal(message),
        }
    }
}
