//! From a top-level manifest or index to one platform's image: the walk every source shares.
//! Each step is verified before it is parsed: nested manifests and the config against
//! their descriptors (by the source's fetcher), the top against the digest the reference
//! pins, if any.

use std::io::{self, Read};

use super::{Platform, ResolvedImage};
use crate::ingest::digest::{Digest, VerifyingReader};
use crate::ingest::error::IngestError;
use crate::ingest::media::{self, Descriptor, Document, LayerCompression, MAX_DOCUMENT};

/// How deep indexes may nest (an index of indexes is legal; a loop is not).
const MAX_DEPTH: usize = 4;

/// A document as fetched: its bytes and the media type it was served as, if known.
pub(crate) struct Fetched {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
}

/// What the walk asks of a source.
pub(crate) trait Fetch {
    /// The image's name in errors.
    fn label(&self) -> &str;
    /// The manifest or index a descriptor names, verified against it.
    fn manifest(&self, d: &Descriptor) -> Result<Fetched, IngestError>;
    /// A small blob (the config), verified against `d` and at most [`MAX_DOCUMENT`] bytes.
    fn small_blob(&self, d: &Descriptor) -> Result<Vec<u8>, IngestError>;
}

/// Walks from `top` (whose digest must be `pinned`, when given) to the platform's image.
pub(crate) fn resolve(
    fetch: &dyn Fetch,
    top: Fetched,
    pinned: Option<&Digest>,
    platform: &Platform,
    max_layer_size: u64,
) -> Result<ResolvedImage, IngestError> {
    let label = fetch.label();
    let algorithm = pinned.map_or(crate::ingest::digest::Algorithm::Sha256, |d| d.algorithm);
    let mut digest = Digest::of(algorithm, &top.bytes);
    if let Some(expected) = pinned {
        if *expected != digest {
            return Err(IngestError::ManifestDigest {
                reference: label.to_string(),
                expected: expected.clone(),
                actual: digest,
            });
        }
    }
    let mut doc = top;
    let mut index_digest = None;
    for _ in 0..=MAX_DEPTH {
        let parsed = media::parse_document(&doc.bytes, doc.content_type.as_deref())
            .map_err(|source| media_error(label, &digest, source))?;
        match parsed {
            Document::Manifest(m) => {
                return finish(
                    fetch,
                    doc.bytes,
                    digest,
                    index_digest,
                    *m,
                    platform,
                    max_layer_size,
                )
            }
            Document::Index(index) => {
                let d = choose(label, &index, platform)?;
                tracing::debug!(image = label, index = %digest, manifest = %d.digest, %platform, "picked from the index");
                index_digest.get_or_insert(digest);
                check_size(
                    label,
                    &format!("manifest {}", d.digest),
                    d.size,
                    MAX_DOCUMENT,
                )?;
                doc = fetch.manifest(d)?;
                digest = d.digest.clone();
            }
        }
    }
    Err(IngestError::TooDeep {
        reference: label.to_string(),
        max: MAX_DEPTH,
    })
}

/// The index entry for `platform`: the first that matches, or an error listing them all.
fn choose<'a>(
    label: &str,
    index: &'a media::Index,
    platform: &Platform,
) -> Result<&'a Descriptor, IngestError> {
    index
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
        .ok_or_else(|| IngestError::NoPlatform {
            reference: label.to_string(),
            wanted: platform.to_string(),
            available: index
                .manifests
                .iter()
                .map(|d| {
                    d.platform
                        .as_ref()
                        .map_or("(none)".into(), Platform::describe)
                })
                .collect(),
        })
}

fn finish(
    fetch: &dyn Fetch,
    manifest_bytes: Vec<u8>,
    manifest_digest: Digest,
    index_digest: Option<Digest>,
    m: media::Manifest,
    platform: &Platform,
    max_layer_size: u64,
) -> Result<ResolvedImage, IngestError> {
    let label = fetch.label();
    let what = || format!("manifest {manifest_digest}");
    media::check_config_type(&m.config.media_type)
        .map_err(|source| media_error(label, &manifest_digest, source))?;
    check_size(
        label,
        &format!("config {}", m.config.digest),
        m.config.size,
        MAX_DOCUMENT,
    )?;
    for layer in &m.layers {
        LayerCompression::of(layer).map_err(|source| IngestError::Media {
            reference: label.to_string(),
            what: what(),
            source,
        })?;
        check_size(
            label,
            &format!("layer {}", layer.digest),
            layer.size,
            max_layer_size,
        )?;
    }
    let config_bytes = fetch.small_blob(&m.config)?;
    let config = media::parse_config(&config_bytes).map_err(|source| IngestError::Media {
        reference: label.to_string(),
        what: format!("config {}", m.config.digest),
        source,
    })?;
    if m.layers.len() != config.rootfs.diff_ids.len() {
        return Err(IngestError::LayerCount {
            reference: label.to_string(),
            manifest: manifest_digest,
            layers: m.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    if config.os != platform.os || config.architecture != platform.architecture {
        // A single-platform image names no platform before its config: it is taken as
        // docker pull takes it, with a warning, rather than refused.
        tracing::warn!(image = label, os = %config.os, architecture = %config.architecture, wanted = %platform, "the image is for another platform");
    }
    Ok(ResolvedImage {
        reference: label.to_string(),
        manifest_digest,
        manifest_bytes,
        index_digest,
        config_bytes,
        diff_ids: config.rootfs.diff_ids.clone(),
        config,
        layers: m.layers,
    })
}

fn media_error(label: &str, digest: &Digest, source: media::MediaError) -> IngestError {
    IngestError::Media {
        reference: label.to_string(),
        what: format!("manifest {digest}"),
        source,
    }
}

/// Refuses a document or blob whose announced size is over `max`.
pub(crate) fn check_size(label: &str, what: &str, size: u64, max: u64) -> Result<(), IngestError> {
    if size > max {
        return Err(IngestError::TooLarge {
            reference: label.to_string(),
            what: what.to_string(),
            size,
            max,
        });
    }
    Ok(())
}

/// Reads a whole small blob from `r`, verified against `d`.
pub(crate) fn read_verified(
    label: &str,
    r: impl Read,
    d: &Descriptor,
) -> Result<Vec<u8>, IngestError> {
    check_size(label, &d.digest.to_string(), d.size, MAX_DOCUMENT)?;
    let mut out = Vec::with_capacity(d.size as usize);
    VerifyingReader::new(r, label, &d.digest, d.size)
        .read_to_end(&mut out)
        .map_err(|e| from_io(label, &d.digest, e))?;
    Ok(out)
}

/// The [`IngestError`] inside an `io::Error` from a verifying reader, or the I/O error as a
/// read failure of the blob.
pub(crate) fn from_io(label: &str, digest: &Digest, e: io::Error) -> IngestError {
    if e.get_ref().is_some_and(|i| i.is::<IngestError>()) {
        let inner = e.into_inner().expect("checked: holds an error");
        return *inner
            .downcast::<IngestError>()
            .expect("checked: an IngestError");
    }
    IngestError::Blob {
        reference: label.to_string(),
        digest: digest.clone(),
        cause: crate::ingest::error::BlobFault::Read(e),
    }
}
