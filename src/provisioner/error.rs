//! Errors of the provisioner, each with the code the control API reports and the HTTP
//! status it travels with.

/// Why a provisioner call failed; the message is for an operator.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A malformed request: bad fqrn, path, root hash, container id or JSON, a wrong
    /// HTTP method, an image path that is not a directory, or a bad repository setting.
    #[error("{0}")]
    Invalid(String),
    /// An unknown repository, tag, image, directory, root catalog or control method.
    #[error("{0}")]
    NotFound(String),
    /// The image is none of the daemon's (an appc store entry of another source): the
    /// Mesos module launches such containers without a pin.
    #[error("{0}")]
    NotOurs(String),
    /// A conflict with what exists: the container already pins another image, or the CSI
    /// target path already has another volume.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller may not use the control API (it is for root only).
    #[error("{0}")]
    PermissionDenied(String),
    /// A server, the network or the cache could not give what was needed.
    #[error("{0}")]
    Unavailable(String),
    /// Still in use; try again later.
    #[error("{0}")]
    Busy(String),
    /// A fault of the daemon or its host: state database, appc store, mounting, disk.
    #[error("{0}")]
    Internal(String),
}

impl ProvisionError {
    /// The code the control API reports in `Error.code` (`invalid_argument`, `busy`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            ProvisionError::Invalid(_) => "invalid_argument",
            ProvisionError::NotFound(_) => "not_found",
            ProvisionError::NotOurs(_) => "not_ours",
            ProvisionError::AlreadyExists(_) => "already_exists",
            ProvisionError::PermissionDenied(_) => "permission_denied",
            ProvisionError::Unavailable(_) => "unavailable",
            ProvisionError::Busy(_) => "busy",
            ProvisionError::Internal(_) => "internal",
        }
    }

    /// The HTTP status the control API answers with.
    pub fn status(&self) -> u16 {
        match self {
            ProvisionError::Invalid(_) => 400,
            ProvisionError::NotFound(_) | ProvisionError::NotOurs(_) => 404,
            ProvisionError::AlreadyExists(_) => 409,
            ProvisionError::PermissionDenied(_) => 403,
            ProvisionError::Unavailable(_) => 503,
            ProvisionError::Busy(_) => 409,
            ProvisionError::Internal(_) => 500,
        }
    }
}

impl From<rusqlite::Error> for ProvisionError {
    fn from(e: rusqlite::Error) -> Self {
        ProvisionError::Internal(format!("state database: {e}"))
    }
}
