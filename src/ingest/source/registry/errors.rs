//! Why a registry request failed. Each error names the request (`GET /v2/<name>/…`, so the
//! manifest or blob digest is in it) and keeps its cause: the HTTP status with the
//! registry's own `errors[].code/message`, the connection or TLS error, the token service.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// One entry of a registry's error answer (`{"errors":[{"code":…,"message":…}]}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ApiError {
    /// The error code, e.g. `MANIFEST_UNKNOWN`, `UNAUTHORIZED`, `DENIED`.
    #[serde(default)]
    pub code: String,
    /// The registry's explanation.
    #[serde(default)]
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The registry's errors, as a message suffix (empty when there are none).
pub(crate) fn suffix(errors: &[ApiError]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        let e: Vec<String> = errors.iter().map(ApiError::to_string).collect();
        format!(" ({})", e.join("; "))
    }
}

/// What an HTTP status means for an image, in words.
fn meaning(status: u16) -> &'static str {
    match status {
        401 => "unauthorized: the credentials are missing or refused",
        403 => "forbidden: the credentials do not allow pulling this",
        404 => "not found",
        429 => "too many requests (still, after the retries)",
        500..=599 => "the registry failed (still, after the retries)",
        _ => "unexpected answer",
    }
}

/// Why a request to a registry (or its token service) failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The TCP connection could not be made.
    #[error("{what}: cannot connect to {endpoint}: {source}")]
    Connect {
        /// The request.
        what: String,
        /// `host:port`.
        endpoint: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed (e.g. an untrusted certificate: see `--ca`).
    #[error("{what}: TLS with {endpoint}: {source}")]
    Tls {
        /// The request.
        what: String,
        /// `host:port`.
        endpoint: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A connect, response or body wait passed the timeout.
    #[error("{what}: no progress from {endpoint} within {timeout:?} ({stage})")]
    Timeout {
        /// The request.
        what: String,
        /// `host:port`.
        endpoint: String,
        /// The bound.
        timeout: Duration,
        /// What was awaited: `connect`, `response`, `body`.
        stage: &'static str,
    },
    /// The HTTP exchange broke.
    #[error("{what}: HTTP exchange with {endpoint} failed: {source}")]
    Http {
        /// The request.
        what: String,
        /// `host:port`.
        endpoint: String,
        /// The error.
        #[source]
        source: hyper::Error,
    },
    /// The registry answered with an error status.
    #[error("{what}: HTTP {status}, {}{}", meaning(*status), suffix(errors))]
    Status {
        /// The request.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error entries, if it sent any.
        errors: Vec<ApiError>,
    },
    /// The registry asks for credentials and there are none for it.
    #[error("{what}: the registry asks for credentials ({challenge}) and none are configured for {registry} (use --creds or docker login)")]
    NoCredentials {
        /// The request.
        what: String,
        /// The registry.
        registry: String,
        /// The `WWW-Authenticate` challenge.
        challenge: String,
    },
    /// The `WWW-Authenticate` challenge is missing or not understood.
    #[error("{what}: HTTP 401 with a challenge that is not understood: {challenge:?}")]
    Challenge {
        /// The request.
        what: String,
        /// The header, if any.
        challenge: String,
    },
    /// The token service failed.
    #[error("{what}: token service {realm}: {source}")]
    Token {
        /// The request that needed the token.
        what: String,
        /// The token service's URL.
        realm: String,
        /// Why.
        #[source]
        source: Box<RegistryError>,
    },
    /// A JSON answer (token, tag list, error list) does not parse.
    #[error("{what}: the answer does not parse: {source}")]
    Json {
        /// The request.
        what: String,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// A token answer without a token.
    #[error("{what}: the token service's answer has no token")]
    NoToken {
        /// The request.
        what: String,
    },
    /// More redirects than allowed.
    #[error("{what}: more than {max} redirects")]
    Redirects {
        /// The request.
        what: String,
        /// The bound.
        max: usize,
    },
    /// A URL (redirect target, token realm, `Link`) that is not usable.
    #[error("{what}: URL {url:?}: {why}")]
    Url {
        /// The request.
        what: String,
        /// The URL.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// An answer larger than the request allows.
    #[error("{what}: the answer is larger than the {max} bytes allowed")]
    TooLarge {
        /// The request.
        what: String,
        /// The bound.
        max: u64,
    },
    /// A `--ca` file cannot be read or holds no certificate.
    #[error("CA file {}: {source}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A Docker credential helper gave nothing usable.
    #[error("credential helper docker-credential-{helper} for {registry}: {fault}")]
    CredHelper {
        /// The helper's name (after `docker-credential-`).
        helper: String,
        /// The registry asked about.
        registry: String,
        /// Why.
        #[source]
        fault: super::cred_helper::HelperFault,
    },
    /// The TLS configuration cannot be built.
    #[error("TLS setup: {0}")]
    TlsSetup(#[source] rustls::Error),
    /// The Docker config file cannot be read or parsed.
    #[error("Docker config {}: {source}", path.display())]
    DockerConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The client's runtime cannot be started.
    #[error("starting the registry client: {0}")]
    Runtime(#[source] io::Error),
}

impl RegistryError {
    /// Whether the failure is of the connection (worth a retry), not an answer.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            RegistryError::Connect { .. }
                | RegistryError::Timeout { .. }
                | RegistryError::Http { .. }
        )
    }

    /// The HTTP status, when the registry answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            RegistryError::Token { source, .. } => source.status(),
            _ => None,
        }
    }
}
