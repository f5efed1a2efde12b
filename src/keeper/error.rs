//! Why a keeper call (client side) or the keeper itself (server side) failed.

use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;

use super::protocol::Refusal;

/// A failure of the keeper or of talking to it; each variant keeps its cause.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// Nothing accepted a connection at the socket (no keeper, or a stale socket file).
    #[error("cannot connect to the keeper at {socket}: {source}")]
    Connect {
        /// The keeper's socket path.
        socket: PathBuf,
        /// Why the connection failed (`ENOENT`, `ECONNREFUSED`, `EACCES`, ...).
        source: Errno,
    },
    /// A keeper could not be started by [`super::KeeperClient::connect_or_spawn`].
    #[error("cannot start a keeper ({exe}): {source}")]
    Spawn {
        /// The program that was to be run.
        exe: PathBuf,
        /// Why it could not be run.
        source: std::io::Error,
    },
    /// A keeper was started but did not accept connections in time.
    #[error("the keeper started for {socket} did not accept within {waited:?}: {source}")]
    SpawnTimeout {
        /// The keeper's socket path.
        socket: PathBuf,
        /// How long the caller waited.
        waited: Duration,
        /// The last connection failure.
        source: Errno,
    },
    /// A keeper already serves this socket; a second one does not start.
    #[error("another keeper already serves {socket}")]
    AlreadyRunning {
        /// The keeper's socket path.
        socket: PathBuf,
    },
    /// The keeper could not set up its socket, lock file, signals or directory.
    #[error("keeper setup ({what} {path}): {source}")]
    Setup {
        /// What was being done (`binding`, `locking`, ...).
        what: &'static str,
        /// The path involved (empty when none).
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// Sending to or receiving from the socket failed (a timeout is `EAGAIN`).
    #[error("keeper socket ({what}): {source}")]
    Io {
        /// What was being done (`sending`, `receiving`, `polling`, ...).
        what: &'static str,
        /// The system's error.
        source: Errno,
    },
    /// The keeper closed the connection (it exited or was killed), or an earlier request
    /// on this connection failed midway and its reply can no longer be told apart.
    #[error("the keeper closed the connection")]
    Disconnected,
    /// A message could not be encoded or decoded as the protocol's JSON.
    #[error("malformed keeper message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A message broke the protocol's bounds or order (too large, too many descriptors,
    /// descriptors where none belong, a reply that does not answer the request).
    #[error("keeper protocol violation: {0}")]
    Protocol(&'static str),
    /// A message is larger than [`super::protocol::MAX_MESSAGE`].
    #[error("keeper message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More descriptors than [`super::protocol::MAX_FDS`] in one message.
    #[error("{count} descriptors exceed the limit of {max} per message")]
    TooManyFds {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The key is owned by another live client (deposit, release, or a claim that waited).
    #[error("{key} is held by another live client of the keeper")]
    Busy {
        /// The key asked for.
        key: String,
    },
    /// The keeper refused the request.
    #[error("the keeper refused the request ({reason:?}): {message}")]
    Refused {
        /// Why, as a code.
        reason: Refusal,
        /// Why, for an operator.
        message: String,
    },
}
