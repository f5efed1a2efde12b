//! A blocking client of the control API, for the CLI and tests: one connection per call.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::api;

/// Answers are small; a bigger one is not the daemon's.
const MAX_ANSWER: u64 = 16 << 20;

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The socket could not be connected to, written or read (in time).
    #[error("cannot reach the provisioner at {socket}: {source}")]
    Unreachable {
        /// The control socket's path.
        socket: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The daemon answered with an error.
    #[error("{code}: {message}")]
    Daemon {
        /// The error code (`not_found`, `busy`, ...): [`api::Error::code`].
        code: String,
        /// What failed and why: [`api::Error::error`].
        message: String,
    },
    /// The request could not be encoded, or the answer is not HTTP with the expected JSON.
    #[error("malformed answer from the provisioner: {0}")]
    Malformed(String),
}

/// A client of the control API at one Unix socket.
pub struct ControlClient {
    socket: PathBuf,
    timeout: Duration,
}

impl ControlClient {
    /// A client of the daemon listening at `socket`; each call may take up to 120 s.
    pub fn new(socket: &Path) -> Self {
        ControlClient {
            socket: socket.to_path_buf(),
            timeout: Duration::from_secs(120),
        }
    }

    /// Calls control method `method` (e.g. `"PrepareImage"`) with `req`, on a fresh
    /// connection.
    pub fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
    ) -> Result<Resp, CallError> {
        let unreachable = |source| CallError::Unreachable {
            socket: self.socket.display().to_string(),
            source,
        };
        let mut s = UnixStream::connect(&self.socket).map_err(unreachable)?;
        s.set_read_timeout(Some(self.timeout))
            .map_err(unreachable)?;
        s.set_write_timeout(Some(self.timeout))
            .map_err(unreachable)?;
        let body = serde_json::to_vec(req).map_err(|e| CallError::Malformed(e.to_string()))?;
        let head = format!(
            "POST {} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            api::route(method),
            body.len()
        );
        s.write_all(head.as_bytes()).map_err(unreachable)?;
        s.write_all(&body).map_err(unreachable)?;
        let mut answer = Vec::new();
        s.take(MAX_ANSWER)
            .read_to_end(&mut answer)
            .map_err(unreachable)?;
        let (status, body) = split_answer(&answer)?;
        if status == 200 {
            serde_json::from_slice(body).map_err(|e| CallError::Malformed(e.to_string()))
        } else {
            let e: api::Error = serde_json::from_slice(body).map_err(|_| {
                CallError::Malformed(format!(
                    "status {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ))
            })?;
            Err(CallError::Daemon {
                code: e.code,
                message: e.error,
            })
        }
    }

    /// `PrepareImage`: mounts (or finds) an image and writes its appc store entry.
    pub fn prepare(&self, r: &api::PrepareImageRequest) -> Result<api::Image, CallError> {
        self.call("PrepareImage", r)
    }
    /// `Pin`: holds an image for a container until unpinned.
    pub fn pin(&self, r: &api::PinRequest) -> Result<api::Pin, CallError> {
        self.call("Pin", r)
    }
    /// `Unpin`: drops a container's pin, if it has one.
    pub fn unpin(&self, r: &api::UnpinRequest) -> Result<api::UnpinResponse, CallError> {
        self.call("Unpin", r)
    }
    /// `SyncPins`: keeps the pins of the given containers and drops every other.
    pub fn sync_pins(&self, r: &api::SyncPinsRequest) -> Result<api::SyncPinsResponse, CallError> {
        self.call("SyncPins", r)
    }
    /// `ListImages`: every image and pin.
    pub fn list(&self) -> Result<api::ListImagesResponse, CallError> {
        self.call("ListImages", &api::ListImagesRequest {})
    }
    /// `Health`: the daemon's version and counts.
    pub fn health(&self) -> Result<api::HealthResponse, CallError> {
        self.call("Health", &api::HealthRequest {})
    }
}

/// (status, body) of an HTTP/1.1 answer read to the end (`connection: close`).
fn split_answer(answer: &[u8]) -> Result<(u16, &[u8]), CallError> {
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| CallError::Malformed("no end of headers".into()))?;
    let head = std::str::from_utf8(&answer[..end])
        .map_err(|_| CallError::Malformed("headers are not UTF-8".into()))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CallError::Malformed(format!("status line {:?}", head.lines().next())))?;
    let body = &answer[end + 4..];
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    if chunked {
        return Err(CallError::Malformed(
            "chunked answers are not expected".into(),
        ));
    }
    Ok((status, body))
}
