//! What one layer says, in order, without its tar stream: entries with their metadata and
//! the objects holding file contents, whiteouts and opaque markers. Serializable, so that a
//! layer ingested once can be applied again from the publisher's private state.

use serde::{Deserialize, Serialize};

use crate::cvmfs::catalog::xattr::Xattrs;
use crate::cvmfs::object::ObjectName;
use crate::publish::content::FileContent;

/// Metadata of one entry as its tar header gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner user id (numeric; tar user names are ignored, as runtimes ignore them).
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// Nanosecond part of the modification time (from PAX `mtime`).
    pub mtime_ns: u32,
    /// Extended attributes (PAX `SCHILY.xattr.*`), without those the publisher drops.
    #[serde(with = "hex_map", default, skip_serializing_if = "Xattrs::is_empty")]
    pub xattrs: Xattrs,
}

impl Attrs {
    /// What a directory gets that the layers imply but never describe: `0755`, owned by
    /// root, at the epoch, as runc and umoci create missing parents (`mkdir -p` with a
    /// 022 umask, as root); the epoch because there is no time to take that would be the
    /// same on every ingest.
    pub fn implicit_dir() -> Self {
        Attrs {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_ns: 0,
            xattrs: Xattrs::new(),
        }
    }
}

/// What a member does to the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum What {
    /// `.wh.NAME`: removes `path` as the layers below left it.
    Whiteout,
    /// `.wh..wh..opq` in directory `path`: hides everything the layers below put in it.
    Opaque,
    /// A directory (if one is there already, it keeps its children and takes this metadata).
    Dir {
        /// Its metadata.
        attrs: Attrs,
    },
    /// A regular file whose bytes are stored.
    File {
        /// Its metadata.
        attrs: Attrs,
        /// The objects that hold its bytes.
        #[serde(with = "content_text")]
        content: FileContent,
    },
    /// A symbolic link (never followed).
    Symlink {
        /// Its metadata.
        attrs: Attrs,
        /// The target, raw bytes.
        #[serde(with = "hex_bytes")]
        target: Vec<u8>,
    },
    /// A tar hard link: another name of the entry at `target` (this layer's so far, or a
    /// lower layer's), with that entry's metadata, as `link(2)` gives it.
    HardLink {
        /// The path of the linked entry, normalized like member paths.
        #[serde(with = "hex_bytes")]
        target: Vec<u8>,
    },
    /// A character (`block: false`) or block device.
    Device {
        /// Its metadata.
        attrs: Attrs,
        /// Whether it is a block device.
        block: bool,
        /// Major device number.
        major: u32,
        /// Minor device number.
        minor: u32,
    },
    /// A named pipe.
    Fifo {
        /// Its metadata.
        attrs: Attrs,
    },
}

/// One member's effect: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerEntry {
    /// Path in the image: components joined by `/`, no leading `/`, no `.` or `..`; empty
    /// for the root directory. Raw bytes (names need not be UTF-8).
    #[serde(with = "hex_bytes")]
    pub path: Vec<u8>,
    /// What the member does there.
    #[serde(flatten)]
    pub what: What,
}

/// What one layer does, in member order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerEntries {
    /// The layer's digest, named in errors.
    pub layer: String,
    /// The entries in the order of the tar stream.
    pub entries: Vec<LayerEntry>,
}

impl LayerEntries {
    /// Every object the layer's files need (with repeats removed), for checking that they
    /// are all still stored before the entries are applied again.
    pub fn objects(&self) -> Vec<ObjectName> {
        let mut out: Vec<ObjectName> = self
            .entries
            .iter()
            .filter_map(|e| match &e.what {
                What::File { content, .. } => Some(content.objects()),
                _ => None,
            })
            .flatten()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The entries as JSON, for the publisher's private state.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("entries serialize")
    }

    /// Entries saved by [`LayerEntries::to_json`]. Their paths are checked again when
    /// applied, so tampered state cannot place entries outside the tree.
    pub fn from_json(bytes: &[u8]) -> Result<Self, super::LayerError> {
        serde_json::from_slice(bytes)
            .map_err(|e| super::LayerError::stream("(remembered)", super::Problem::Decode(e)))
    }
}

/// Byte strings as lower-case hex.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// Extended attributes as a map of hex name to hex value.
mod hex_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::cvmfs::catalog::xattr::Xattrs;

    pub fn serialize<S: Serializer>(x: &Xattrs, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(x.iter().map(|(k, v)| (hex::encode(k), hex::encode(v))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Xattrs, D::Error> {
        let m = BTreeMap::<String, String>::deserialize(d)?;
        m.into_iter()
            .map(|(k, v)| Ok((hex::decode(k)?, hex::decode(v)?)))
            .collect::<Result<_, hex::FromHexError>>()
            .map_err(serde::de::Error::custom)
    }
}

/// File contents in the publish index's one-line form.
mod content_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::publish::content::FileContent;

    pub fn serialize<S: Serializer>(c: &FileContent, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&c.encode())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FileContent, D::Error> {
        let s = String::deserialize(d)?;
        FileContent::decode(&s).ok_or_else(|| serde::de::Error::custom("not a file content"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cvmfs::catalog::Chunk;
    use crate::cvmfs::hash::HashAlgo;

    #[test]
    fn entries_round_trip_through_json_and_list_their_objects() {
        let h1 = HashAlgo::Sha1.digest(b"1");
        let h2 = HashAlgo::Sha1.digest(b"2");
        let mut attrs = Attrs::implicit_dir();
        attrs
            .xattrs
            .insert(b"security.capability".to_vec(), vec![1, 0, b'\n', 0xff]);
        let e = LayerEntries {
            layer: "sha256:00".into(),
            entries: vec![
                LayerEntry {
                    path: b"d\xff".to_vec(),
                    what: What::Dir {
                        attrs: attrs.clone(),
                    },
                },
                LayerEntry {
                    path: b"d\xff/f".to_vec(),
                    what: What::File {
                        attrs: attrs.clone(),
                        content: FileContent::Whole { hash: h1, size: 1 },
                    },
                },
                LayerEntry {
                    path: b"big".to_vec(),
                    what: What::File {
                        attrs: attrs.clone(),
                        content: FileContent::Chunked {
                            size: 2,
                            chunks: vec![
                                Chunk {
                                    offset: 0,
                                    size: 1,
                                    hash: h1,
                                },
                                Chunk {
                                    offset: 1,
                                    size: 1,
                                    hash: h2,
                                },
                            ],
                        },
                    },
                },
                LayerEntry {
                    path: b"l".to_vec(),
                    what: What::HardLink {
                        target: b"big".to_vec(),
                    },
                },
                LayerEntry {
                    path: b"gone".to_vec(),
                    what: What::Whiteout,
                },
                LayerEntry {
                    path: b"d\xff".to_vec(),
                    what: What::Opaque,
                },
                LayerEntry {
                    path: b"dev".to_vec(),
                    what: What::Device {
                        attrs,
                        block: true,
                        major: 8,
                        minor: 1,
                    },
                },
            ],
        };
        let back = LayerEntries::from_json(&e.to_json()).unwrap();
        assert_eq!(back, e);
        let objects = e.objects();
        assert_eq!(objects.len(), 3, "{objects:?}"); // h1 whole, h1 and h2 chunks
        assert!(LayerEntries::from_json(b"{\"layer\":1}").is_err());
    }
}
