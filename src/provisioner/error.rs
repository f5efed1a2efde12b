//! Errors of the provisioner, each with the code the control API reports and the HTTP
//! status it travels with.

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// A server, the network or the cache could not give what was needed.
    #[error("{0}")]
    Unavailable(String),
    /// Still in use; try again later.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Internal(String),
}

impl ProvisionError {
    pub fn code(&self) -> &'static str {
        match self {
            ProvisionError::Invalid(_) => "invalid_argument",
            ProvisionError::NotFound(_) => "not_found",
            ProvisionError::AlreadyExists(_) => "already_exists",
            ProvisionError::PermissionDenied(_) => "permission_denied",
            ProvisionError::Unavailable(_) => "unavailable",
            ProvisionError::Busy(_) => "busy",
            ProvisionError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ProvisionError::Invalid(_) => 400,
            ProvisionError::NotFound(_) => 404,
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
