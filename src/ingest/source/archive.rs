//! `docker save` archives (`docker-archive:FILE[:name:tag]`), as `docker save` and
//! `skopeo copy … docker-archive:` write them: a tar whose `manifest.json` lists, per image,
//! its `Config` member, its `RepoTags` and its `Layers` members (plain tars, or gzip/zstd
//! when saved by a containerd-backed Docker; links between members are followed inside the
//! archive). Members are read in place by seeking through the file.
//!
//! An archive carries no digests of its own, so [`ArchiveSource::resolve`] reads every
//! layer once: the digest of each member becomes its descriptor's, the uncompressed bytes
//! must hash to the config's `rootfs.diff_ids`, and the config must hash to the digest
//! its member is named by (when it is named by one). The image is then presented like a
//! registry's: a manifest is synthesized — compact JSON of an OCI manifest
//! (`schemaVersion`, `mediaType`, `config`, `layers`, in that order; OCI media types; the
//! layer types by compression found) — and `manifest_digest` is its sha256. The same
//! archive content thus always gives the same manifest digest.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::resolve::{self, check_size};
use super::{ImageSource, Platform, ResolvedImage, SourceOptions};
use crate::ingest::digest::{Algorithm, Digest, Hasher, VerifyingReader};
use crate::ingest::error::{BlobFault, IngestError};
use crate::ingest::media::{self, Descriptor, LayerCompression, MAX_DOCUMENT};
use crate::ingest::reference::RegistryRef;

/// Most members an archive may have (each costs an index entry).
const MAX_MEMBERS: usize = 200_000;
/// Most links followed to reach a member.
const MAX_LINKS: usize = 8;

/// What is wrong with a `docker save` archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveFault {
    /// The tar does not parse.
    #[error("not a tar archive: {0}")]
    Tar(#[source] io::Error),
    /// The archive has more members than allowed.
    #[error("more than {0} members")]
    TooManyMembers(usize),
    /// `manifest.json` does not parse.
    #[error("manifest.json does not parse: {0}")]
    Manifest(#[source] serde_json::Error),
    /// No image has the name asked for.
    #[error("no image is named {wanted}; the archive has: {}", list(available))]
    NoSuchImage {
        /// The name asked for, canonical.
        wanted: String,
        /// Every `RepoTags` entry.
        available: Vec<String>,
    },
    /// No name was given and the archive holds several images (or none).
    #[error(
        "the archive holds {count} images; name one with docker-archive:FILE:NAME:TAG (it has: {})",
        list(available)
    )]
    NotOne {
        /// Images in `manifest.json`.
        count: usize,
        /// Every `RepoTags` entry.
        available: Vec<String>,
    },
    /// A member named by `manifest.json` is missing or unusable.
    #[error("member {name:?}: {why}")]
    Member {
        /// The member's name.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The config member is named by a digest its bytes do not have.
    #[error("config {name:?} hashes to {actual}, not to the digest it is named by")]
    ConfigName {
        /// The member's name.
        name: String,
        /// The digest of its bytes.
        actual: Digest,
    },
    /// A blob asked for is not one of the resolved image's.
    #[error("blob {0} is not a layer of the image (resolve the image first)")]
    UnknownBlob(Digest),
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "no names".to_string()
    } else {
        names.join(", ")
    }
}

#[derive(Debug, Clone)]
enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// A symlink (target relative to the member's directory) or hard link (target from
    /// the archive's root), normalized to a member name.
    Link(String),
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An image in a `docker save` archive.
pub struct ArchiveSource {
    file: PathBuf,
    label: String,
    members: HashMap<String, Member>,
    image: SavedImage,
    names: Vec<String>,
    max_layer_size: u64,
    /// Where each layer of the resolved image lies: digest → (offset, size).
    blobs: Mutex<HashMap<Digest, (u64, u64)>>,
}

impl ArchiveSource {
    /// Indexes the archive's members, reads `manifest.json`, and picks the image tagged
    /// `reference` (compared canonically: `foo:a` is `docker.io/library/foo:a`) or the
    /// only one.
    pub fn open(
        file: &Path,
        reference: Option<&str>,
        options: &SourceOptions,
    ) -> Result<ArchiveSource, IngestError> {
        let label = match reference {
            Some(r) => format!("docker-archive:{}:{r}", file.display()),
            None => format!("docker-archive:{}", file.display()),
        };
        let fault = |cause| IngestError::Archive {
            reference: label.clone(),
            cause,
        };
        let f = File::open(file).map_err(|source| IngestError::File {
            reference: label.clone(),
            path: file.to_path_buf(),
            source,
        })?;
        let members = index(f).map_err(fault)?;
        let mut source = ArchiveSource {
            file: file.to_path_buf(),
            label: label.clone(),
            members,
            image: SavedImage {
                config: String::new(),
                repo_tags: None,
                layers: Vec::new(),
            },
            names: Vec::new(),
            max_layer_size: options.max_layer_size,
            blobs: Mutex::new(HashMap::new()),
        };
        let (offset, size) = source.locate("manifest.json")?;
        check_size(&label, "manifest.json", size, MAX_DOCUMENT)?;
        let mut bytes = Vec::with_capacity(size as usize);
        source
            .member(offset, size)?
            .read_to_end(&mut bytes)
            .map_err(|e| source.file_error(e))?;
        let images: Vec<SavedImage> =
            serde_json::from_slice(&bytes).map_err(|e| fault(ArchiveFault::Manifest(e)))?;
        let names: Vec<String> = images
            .iter()
            .flat_map(|i| i.repo_tags.iter().flatten().cloned())
            .collect();
        let count = images.len();
        let canonical = |s: &str| RegistryRef::parse(s).map(|r| r.to_string()).ok();
        let picked = match reference {
            Some(r) => {
                let wanted = RegistryRef::parse(r)?.to_string();
                images
                    .into_iter()
                    .find(|i| {
                        i.repo_tags
                            .iter()
                            .flatten()
                            .any(|t| canonical(t).as_deref() == Some(wanted.as_str()))
                    })
                    .ok_or_else(|| {
                        fault(ArchiveFault::NoSuchImage {
                            wanted,
                            available: names.clone(),
                        })
                    })?
            }
            None if count == 1 => images.into_iter().next().expect("one image"),
            None => {
                return Err(fault(ArchiveFault::NotOne {
                    count,
                    available: names,
                }))
            }
        };
        source.image = picked;
        source.names = names;
        Ok(source)
    }

    fn file_error(&self, source: io::Error) -> IngestError {
        IngestError::File {
            reference: self.label.clone(),
            path: self.file.clone(),
            source,
        }
    }

    /// The offset and size of a member's data, links followed.
    fn locate(&self, name: &str) -> Result<(u64, u64), IngestError> {
        let fault = |why| IngestError::Archive {
            reference: self.label.clone(),
            cause: ArchiveFault::Member {
                name: name.to_string(),
                why,
            },
        };
        let mut current = normalize(name).ok_or_else(|| fault("its name leaves the archive"))?;
        for _ in 0..=MAX_LINKS {
            match self.members.get(&current) {
                None => return Err(fault("not in the archive")),
                Some(Member::File { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Link(target)) => current = target.clone(),
            }
        }
        Err(fault("links nest too deep"))
    }

    /// A reader of `size` bytes at `offset` of the archive.
    fn member(&self, offset: u64, size: u64) -> Result<io::Take<BufReader<File>>, IngestError> {
        let mut f = File::open(&self.file).map_err(|e| self.file_error(e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| self.file_error(e))?;
        Ok(BufReader::with_capacity(1 << 20, f).take(size))
    }

    /// Reads a layer member once: its digest as stored, and the digest of its bytes
    /// uncompressed, with the compression found by its first bytes.
    fn digest_layer(
        &self,
        offset: u64,
        size: u64,
    ) -> Result<(Digest, Digest, LayerCompression), io::Error> {
        let mut raw = Tee {
            inner: self.member(offset, size).map_err(io::Error::other)?,
            hasher: Algorithm::Sha256.hasher(),
        };
        let mut head = [0u8; 4];
        let n = read_up_to(&mut raw, &mut head)?;
        let compression = LayerCompression::sniff(&head[..n]);
        let rest = io::Cursor::new(head[..n].to_vec());
        let mut plain = Algorithm::Sha256.hasher();
        let limit = self.max_layer_size;
        {
            let chained = rest.chain(&mut raw);
            let mut decoded: Box<dyn Read + '_> = match compression {
                LayerCompression::None => Box::new(chained),
                LayerCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(chained)),
                LayerCompression::Zstd => Box::new(zstd::stream::read::Decoder::new(chained)?),
            };
            hash_all(&mut decoded, &mut plain, limit)?;
        }
        // Bytes after the compressed stream (padding) still belong to the member.
        io::copy(&mut raw, &mut io::sink())?;
        Ok((raw.hasher.finish(), plain.finish(), compression))
    }
}

/// Feeds everything from `r` to `h`, at most `limit` bytes.
fn hash_all(r: &mut dyn Read, h: &mut Hasher, limit: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        if total > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("uncompressed, more than the {limit} bytes allowed"),
            ));
        }
        h.update(&buf[..n]);
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Hashes what is read through it.
struct Tee<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// `a/./b/../c` → `a/c`; `None` when it climbs out of the root.
fn normalize(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in name.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Every member's data position, by normalized name. Data is skipped by seeking.
fn index(f: File) -> Result<HashMap<String, Member>, ArchiveFault> {
    let mut archive = tar::Archive::new(BufReader::new(f));
    let mut members = HashMap::new();
    for entry in archive.entries_with_seek().map_err(ArchiveFault::Tar)? {
        let entry = entry.map_err(ArchiveFault::Tar)?;
        if members.len() >= MAX_MEMBERS {
            return Err(ArchiveFault::TooManyMembers(MAX_MEMBERS));
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(name) = normalize(&name) else {
            continue; // a name leaving the root is never looked up
        };
        let kind = entry.header().entry_type();
        let member = if kind.is_file() || kind == tar::EntryType::Continuous {
            Member::File {
                offset: entry.raw_file_position(),
                size: entry.size(),
            }
        } else if kind.is_symlink() || kind.is_hard_link() {
            let Some(target) = entry.link_name_bytes() else {
                continue;
            };
            let target = String::from_utf8_lossy(&target).into_owned();
            let joined = if kind.is_symlink() && !target.starts_with('/') {
                match name.rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/{target}"),
                    None => target,
                }
            } else {
                target
            };
            match normalize(&joined) {
                Some(t) => Member::Link(t),
                None => continue, // leaves the archive: treated as missing
            }
        } else {
            continue;
        };
        members.insert(name, member);
    }
    Ok(members)
}

/// The hex digest a member is named by (`<hex>.json`, `blobs/sha256/<hex>`), if any.
fn named_digest(name: &str) -> Option<Digest> {
    let base = name.rsplit('/').next()?;
    let stem = base.strip_suffix(".json").unwrap_or(base);
    Digest::parse(&format!("sha256:{stem}")).ok()
}

impl ImageSource for ArchiveSource {
    fn resolve(&self, platform: &Platform) -> Result<ResolvedImage, IngestError> {
        let label = self.label.as_str();
        let (offset, size) = self.locate(&self.image.config)?;
        check_size(
            label,
            &format!("config {:?}", self.image.config),
            size,
            MAX_DOCUMENT,
        )?;
        let mut config_bytes = Vec::with_capacity(size as usize);
        self.member(offset, size)?
            .read_to_end(&mut config_bytes)
            .map_err(|e| self.file_error(e))?;
        let config_digest = Digest::sha256(&config_bytes);
        if let Some(named) = named_digest(&self.image.config) {
            if named != config_digest {
                return Err(IngestError::Archive {
                    reference: self.label.clone(),
                    cause: ArchiveFault::ConfigName {
                        name: self.image.config.clone(),
                        actual: config_digest,
                    },
                });
            }
        }
        let config = media::parse_config(&config_bytes).map_err(|source| IngestError::Media {
            reference: self.label.clone(),
            what: format!("config {config_digest}"),
            source,
        })?;
        let diff_ids = config.rootfs.diff_ids.clone();
        if diff_ids.len() != self.image.layers.len() {
            return Err(IngestError::LayerCount {
                reference: self.label.clone(),
                manifest: config_digest,
                layers: self.image.layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        let mut layers = Vec::new();
        let mut blobs = HashMap::new();
        for (name, diff_id) in self.image.layers.iter().zip(&diff_ids) {
            let (offset, size) = self.locate(name)?;
            check_size(label, &format!("layer {name:?}"), size, self.max_layer_size)?;
            let (digest, plain, compression) = self
                .digest_layer(offset, size)
                .map_err(|e| resolve::from_io(label, diff_id, e))?;
            if plain != *diff_id {
                return Err(IngestError::Blob {
                    reference: self.label.clone(),
                    digest,
                    cause: BlobFault::DiffId {
                        diff_id: diff_id.clone(),
                        actual: plain,
                    },
                });
            }
            tracing::debug!(image = label, member = %name, %digest, ?compression, "layer indexed");
            blobs.insert(digest.clone(), (offset, size));
            layers.push(descriptor(compression.oci_media_type(), digest, size));
        }
        if config.os != platform.os || config.architecture != platform.architecture {
            tracing::warn!(image = label, os = %config.os, architecture = %config.architecture, wanted = %platform, "the image is for another platform");
        }
        let manifest = media::Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.to_string()),
            config: descriptor(media::OCI_CONFIG, config_digest, config_bytes.len() as u64),
            layers: layers.clone(),
            annotations: None,
        };
        let manifest_bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
        *self.blobs.lock().expect("blobs") = blobs;
        Ok(ResolvedImage {
            reference: self.label.clone(),
            manifest_digest: Digest::sha256(&manifest_bytes),
            manifest_bytes,
            index_digest: None,
            config_bytes,
            config,
            layers,
            diff_ids,
        })
    }

    fn open_blob(&self, d: &Descriptor) -> Result<Box<dyn Read + Send>, IngestError> {
        let found = self.blobs.lock().expect("blobs").get(&d.digest).copied();
        let (offset, size) = found.ok_or_else(|| IngestError::Archive {
            reference: self.label.clone(),
            cause: ArchiveFault::UnknownBlob(d.digest.clone()),
        })?;
        check_size(
            &self.label,
            &format!("blob {}", d.digest),
            d.size,
            self.max_layer_size,
        )?;
        // Never past the member's end: a wrong size is then a short or long blob.
        let member = self.member(offset, size)?;
        Ok(Box::new(VerifyingReader::new(
            member,
            &self.label,
            &d.digest,
            d.size,
        )))
    }

    fn tags(&self) -> Result<Vec<String>, IngestError> {
        Ok(self.names.clone())
    }
}

fn descriptor(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest,
        size,
        platform: None,
        annotations: None,
        urls: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(b: &mut tar::Builder<File>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    }

    fn layer_tar(file: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, file, &b"abc"[..]).unwrap();
        b.into_inner().unwrap()
    }

    /// A hand-made archive as a containerd-backed `docker save` writes it: compressed
    /// layers (gzip, zstd) under `blobs/sha256/`, one reached through a symlink.
    #[test]
    fn compressed_layers_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let (plain_a, plain_b) = (layer_tar("a"), layer_tar("b"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain_a).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&plain_b[..], 3).unwrap();
        let (gz_d, zst_d) = (Digest::sha256(&gz), Digest::sha256(&zst));
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}","{}"]}}}}"#,
            Digest::sha256(&plain_a),
            Digest::sha256(&plain_b)
        );
        let config_d = Digest::sha256(config.as_bytes());
        let manifest = format!(
            r#"[{{"Config":"blobs/sha256/{}","RepoTags":["x/y:1"],"Layers":["blobs/sha256/{}","old/layer.tar"]}}]"#,
            config_d.hex, gz_d.hex
        );
        let path = dir.path().join("a.tar");
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        append(
            &mut b,
            &format!("blobs/sha256/{}", config_d.hex),
            config.as_bytes(),
        );
        append(&mut b, &format!("blobs/sha256/{}", gz_d.hex), &gz);
        append(&mut b, &format!("blobs/sha256/{}", zst_d.hex), &zst);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_cksum();
        b.append_link(
            &mut h,
            "old/layer.tar",
            format!("../blobs/sha256/{}", zst_d.hex),
        )
        .unwrap();
        append(&mut b, "manifest.json", manifest.as_bytes());
        b.finish().unwrap();
        drop(b);

        let src = ArchiveSource::open(&path, Some("x/y:1"), &SourceOptions::default()).unwrap();
        let img = src
            .resolve(&Platform::parse("linux/amd64").unwrap())
            .unwrap();
        assert_eq!(img.layers[0].media_type, media::OCI_LAYER_GZIP);
        assert_eq!(img.layers[1].media_type, media::OCI_LAYER_ZSTD);
        assert_eq!(
            (&img.layers[0].digest, &img.layers[1].digest),
            (&gz_d, &zst_d)
        );
        let mut out = Vec::new();
        src.open_blob(&img.layers[1])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, zst);

        // A diff_id the layer does not have is refused, naming both digests.
        let bad = config.replace(&Digest::sha256(&plain_b).hex, &"0".repeat(64));
        let bad_d = Digest::sha256(bad.as_bytes());
        let manifest = manifest.replace(&config_d.hex, &bad_d.hex);
        let path2 = dir.path().join("b.tar");
        let mut b = tar::Builder::new(File::create(&path2).unwrap());
        append(
            &mut b,
            &format!("blobs/sha256/{}", bad_d.hex),
            bad.as_bytes(),
        );
        append(&mut b, &format!("blobs/sha256/{}", gz_d.hex), &gz);
        append(&mut b, "old/layer.tar", &zst);
        append(&mut b, "manifest.json", manifest.as_bytes());
        b.finish().unwrap();
        drop(b);
        let src = ArchiveSource::open(&path2, None, &SourceOptions::default()).unwrap();
        let e = src.resolve(&Platform::host()).unwrap_err().to_string();
        assert!(
            e.contains(&zst_d.to_string()) && e.contains("not to its diff_id"),
            "{e}"
        );
    }

    #[test]
    fn names() {
        assert_eq!(normalize("./a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalize("a/../../c"), None);
        let hex = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert!(named_digest(&format!("{hex}.json")).is_some());
        assert!(named_digest(&format!("blobs/sha256/{hex}")).is_some());
        assert!(named_digest("config.json").is_none());
    }
}
