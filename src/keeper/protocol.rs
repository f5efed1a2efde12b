//! The keeper's messages: one JSON document per SOCK_SEQPACKET message, client to keeper a
//! [`Request`], keeper to client exactly one [`Reply`] for each. Descriptors travel beside
//! the JSON as SCM_RIGHTS: with a deposit (client to keeper) and with a claim's answer
//! (keeper to client), nowhere else.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::KeeperError;

/// The largest message either side sends or accepts, in bytes. A deposit is a key and a
/// path; a listing is cut into pages that fit.
pub const MAX_MESSAGE: usize = 64 << 10;

/// The most descriptors one deposit may carry (a mount needs two: `/dev/fuse` and its
/// journal).
pub const MAX_FDS: usize = 8;

/// The longest key, in bytes (a key is usually a mount point, and `PATH_MAX` is 4096).
pub const MAX_KEY: usize = 4096;

/// The longest mount point, in bytes (`PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// What a client asks; descriptors come only with [`Request::Deposit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Keep the attached descriptors under `key`, owned by this connection.
    Deposit {
        /// The key (e.g. the canonical mount point).
        key: String,
        /// Where the FUSE filesystem is mounted (detached when the key is aborted).
        #[serde(with = "path_bytes")]
        mountpoint: PathBuf,
        /// The connection's number under `/sys/fs/fuse/connections/`.
        fusectl: Option<u32>,
    },
    /// Take over `key` if it is orphaned (or already ours); the answer carries duplicates.
    Claim {
        /// The key.
        key: String,
    },
    /// Forget `key` and close the keeper's copies.
    Release {
        /// The key.
        key: String,
    },
    /// One page of the keys held, in key order, starting after `after`.
    List {
        /// The last key of the previous page; `None` for the first page.
        after: Option<String>,
    },
}

/// The keeper's answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Deposit or release done.
    Done,
    /// A claim granted; the key's descriptors are attached, in deposit order.
    Claimed {
        /// Where it is mounted.
        #[serde(with = "path_bytes")]
        mountpoint: PathBuf,
        /// The connection's number under `/sys/fs/fuse/connections/`.
        fusectl: Option<u32>,
        /// The previous owner had gone (rather than being this very connection).
        orphaned: bool,
    },
    /// No such key (a claim).
    Missing,
    /// The key is owned by another live client.
    Busy,
    /// One page of the listing.
    Listed {
        /// Keys in order.
        entries: Vec<Listed>,
        /// More keys follow the last one here.
        more: bool,
    },
    /// The request was not carried out; any descriptors it brought were closed.
    Refused {
        /// Why, as a code.
        reason: Refusal,
        /// Why, for an operator.
        message: String,
    },
}

/// Why the keeper refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The message was larger than [`MAX_MESSAGE`].
    TooLarge,
    /// More than [`MAX_FDS`] descriptors came with it.
    TooManyFds,
    /// Descriptors came with a request that takes none.
    UnexpectedFds,
    /// Not a request in this protocol's JSON.
    Malformed,
    /// The key is empty or longer than [`MAX_KEY`].
    BadKey,
    /// The mount point is not absolute or longer than [`MAX_PATH`].
    BadMountpoint,
    /// The keeper holds as many keys, or descriptors, as it may.
    Full,
}

/// One key the keeper holds, as [`super::KeeperClient::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// The key.
    pub key: String,
    /// Where it is mounted.
    #[serde(with = "path_bytes")]
    pub mountpoint: PathBuf,
    /// The connection's number under `/sys/fs/fuse/connections/`.
    pub fusectl: Option<u32>,
    /// How many descriptors the keeper holds for it.
    pub fds: usize,
    /// Owned by a live client, or orphaned and waiting to be claimed.
    pub state: KeyState,
}

/// Whether a key has a live owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// A connected client owns it.
    Owned,
    /// Its owner disconnected; it is aborted after `abort_in` unless claimed.
    Orphaned {
        /// Time left until the abort.
        abort_in: Duration,
    },
}

/// A message as the bytes of one packet, refused if larger than [`MAX_MESSAGE`].
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, KeeperError> {
    let body = serde_json::to_vec(message)?;
    if body.len() > MAX_MESSAGE {
        return Err(KeeperError::TooLarge {
            len: body.len(),
            max: MAX_MESSAGE,
        });
    }
    Ok(body)
}

/// A message from the bytes of one packet.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, KeeperError> {
    Ok(serde_json::from_slice(body)?)
}

/// Paths as their bytes: a mount point need not be UTF-8, and JSON strings must be.
mod path_bytes {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(path.as_os_str().as_bytes())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Ok(PathBuf::from(OsString::from_vec(Vec::<u8>::deserialize(
            d,
        )?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn requests_round_trip() {
        let requests = [
            Request::Deposit {
                key: "/mnt/a".into(),
                mountpoint: PathBuf::from(std::ffi::OsStr::from_bytes(b"/mnt/\xff b")),
                fusectl: Some(42),
            },
            Request::Claim { key: "k".into() },
            Request::Release { key: "k".into() },
            Request::List { after: None },
            Request::List {
                after: Some("k".into()),
            },
        ];
        for r in requests {
            let body = encode(&r).unwrap();
            assert_eq!(decode::<Request>(&body).unwrap(), r);
        }
    }

    #[test]
    fn replies_round_trip() {
        let replies = [
            Reply::Done,
            Reply::Missing,
            Reply::Busy,
            Reply::Claimed {
                mountpoint: "/m".into(),
                fusectl: None,
                orphaned: true,
            },
            Reply::Listed {
                entries: vec![Listed {
                    key: "k".into(),
                    mountpoint: "/m".into(),
                    fusectl: Some(7),
                    fds: 2,
                    state: KeyState::Orphaned {
                        abort_in: Duration::from_millis(1500),
                    },
                }],
                more: false,
            },
            Reply::Refused {
                reason: Refusal::TooManyFds,
                message: "9 > 8".into(),
            },
        ];
        for r in replies {
            let body = encode(&r).unwrap();
            assert_eq!(decode::<Reply>(&body).unwrap(), r);
        }
    }

    #[test]
    fn the_wire_form_is_tagged_json() {
        let body = encode(&Request::Claim { key: "k".into() }).unwrap();
        assert_eq!(body, br#"{"op":"claim","key":"k"}"#);
        let body = encode(&Request::Deposit {
            key: "k".into(),
            mountpoint: "/a".into(),
            fusectl: None,
        })
        .unwrap();
        assert_eq!(
            body,
            br#"{"op":"deposit","key":"k","mountpoint":[47,97],"fusectl":null}"#
        );
    }

    #[test]
    fn unknown_or_broken_requests_do_not_decode() {
        assert!(decode::<Request>(br#"{"op":"explode"}"#).is_err());
        assert!(decode::<Request>(br#"{"op":"claim"}"#).is_err());
        assert!(decode::<Request>(b"\xff").is_err());
    }

    #[test]
    fn oversize_messages_are_not_encoded() {
        let r = Request::Claim {
            key: "x".repeat(MAX_MESSAGE),
        };
        assert!(matches!(encode(&r), Err(KeeperError::TooLarge { .. })));
    }
}
