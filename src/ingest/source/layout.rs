//! OCI image layout directories (`oci:DIR[:tag]`), as `umoci` and `skopeo copy … oci:` write
//! them: `oci-layout` (the version), `index.json` (the images, named by their
//! `org.opencontainers.image.ref.name` annotation), `blobs/<alg>/<hex>`. The directory is
//! untrusted like a registry: `index.json` is bounded, every blob is verified against its
//! descriptor, and a blob path that is a symlink out of the directory is refused.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use super::resolve::{self, Fetch, Fetched};
use super::{ImageSource, Platform, ResolvedImage, SourceOptions};
use crate::ingest::digest::{Digest, VerifyingReader};
use crate::ingest::error::IngestError;
use crate::ingest::media::{self, Descriptor, MAX_DOCUMENT};

/// The annotation naming an image of a layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What is wrong with a layout directory.
#[derive(Debug, thiserror::Error)]
pub enum LayoutFault {
    /// `oci-layout` is missing, unreadable or names another version.
    #[error("not an OCI image layout: {0}")]
    NotALayout(String),
    /// `index.json` does not parse.
    #[error("index.json: {0}")]
    Index(#[source] media::MediaError),
    /// No image has the tag asked for.
    #[error("no image is named {tag:?}; the layout has: {}", list(available))]
    NoSuchTag {
        /// The tag asked for.
        tag: String,
        /// The names in `index.json`.
        available: Vec<String>,
    },
    /// No tag was given and the layout holds several images (or none).
    #[error(
        "the layout holds {count} images; name one with oci:DIR:TAG (it has: {})",
        list(available)
    )]
    NotOne {
        /// Entries of `index.json`.
        count: usize,
        /// The names in `index.json`.
        available: Vec<String>,
    },
    /// A blob's path leads out of the directory, or is not a regular file.
    #[error("blob {digest}: {why}")]
    BlobPath {
        /// The blob.
        digest: Digest,
        /// What is wrong.
        why: &'static str,
    },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "no names".to_string()
    } else {
        names.join(", ")
    }
}

/// An image in an OCI layout directory.
pub struct LayoutSource {
    /// The directory, canonical (blob paths must stay under it).
    root: PathBuf,
    label: String,
    /// The `index.json` entry picked.
    top: Descriptor,
    names: Vec<String>,
    max_layer_size: u64,
}

impl LayoutSource {
    /// Opens `dir`, checks `oci-layout`, reads `index.json` and picks the entry named
    /// `tag` (or the only one).
    pub fn open(
        dir: &Path,
        tag: Option<&str>,
        options: &SourceOptions,
    ) -> Result<LayoutSource, IngestError> {
        let label = match tag {
            Some(t) => format!("oci:{}:{t}", dir.display()),
            None => format!("oci:{}", dir.display()),
        };
        let fault = |cause| IngestError::Layout {
            reference: label.clone(),
            cause,
        };
        let file_err = |path: PathBuf, source| IngestError::File {
            reference: label.clone(),
            path,
            source,
        };
        let root = std::fs::canonicalize(dir).map_err(|e| file_err(dir.to_path_buf(), e))?;
        let version = read_bounded(&root.join("oci-layout"), 4096)
            .map_err(|e| fault(LayoutFault::NotALayout(format!("oci-layout: {e}"))))?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Version {
            image_layout_version: String,
        }
        let v: Version = serde_json::from_slice(&version)
            .map_err(|e| fault(LayoutFault::NotALayout(format!("oci-layout: {e}"))))?;
        if !v.image_layout_version.starts_with("1.") {
            return Err(fault(LayoutFault::NotALayout(format!(
                "oci-layout names version {:?}, not 1.x",
                v.image_layout_version
            ))));
        }
        let index_path = root.join("index.json");
        let bytes = read_bounded(&index_path, MAX_DOCUMENT).map_err(|e| file_err(index_path, e))?;
        let index: media::Index = serde_json::from_slice(&bytes)
            .map_err(|e| fault(LayoutFault::Index(media::MediaError::Json(e))))?;
        let names: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|d| d.annotations.as_ref()?.get(REF_NAME).cloned())
            .collect();
        let top = match tag {
            Some(t) => index
                .manifests
                .iter()
                .find(|d| {
                    d.annotations
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME))
                        .is_some_and(|n| n == t)
                })
                .ok_or_else(|| {
                    fault(LayoutFault::NoSuchTag {
                        tag: t.to_string(),
                        available: names.clone(),
                    })
                })?,
            None if index.manifests.len() == 1 => &index.manifests[0],
            None => {
                return Err(fault(LayoutFault::NotOne {
                    count: index.manifests.len(),
                    available: names,
                }))
            }
        }
        .clone();
        Ok(LayoutSource {
            root,
            label,
            top,
            names,
            max_layer_size: options.max_layer_size,
        })
    }

    /// Opens `blobs/<alg>/<hex>`, refusing a path that leaves the layout.
    fn blob_file(&self, digest: &Digest) -> Result<File, IngestError> {
        let path = self
            .root
            .join("blobs")
            .join(digest.algorithm.name())
            .join(&digest.hex);
        let file_err = |source| IngestError::File {
            reference: self.label.clone(),
            path: path.clone(),
            source,
        };
        let real = std::fs::canonicalize(&path).map_err(file_err)?;
        if !real.starts_with(&self.root) {
            return Err(IngestError::Layout {
                reference: self.label.clone(),
                cause: LayoutFault::BlobPath {
                    digest: digest.clone(),
                    why: "its path is a symlink leading out of the layout",
                },
            });
        }
        let file = File::open(&real).map_err(file_err)?;
        if !file.metadata().map_err(file_err)?.is_file() {
            return Err(IngestError::Layout {
                reference: self.label.clone(),
                cause: LayoutFault::BlobPath {
                    digest: digest.clone(),
                    why: "it is not a regular file",
                },
            });
        }
        Ok(file)
    }
}

/// Reads a whole file of at most `max` bytes.
fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let len = f.seek(std::io::SeekFrom::End(0))?;
    f.rewind()?;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{len} bytes, more than the {max} allowed"),
        ));
    }
    let mut out = Vec::with_capacity(len as usize);
    f.take(max + 1).read_to_end(&mut out)?;
    Ok(out)
}

impl Fetch for LayoutSource {
    fn label(&self) -> &str {
        &self.label
    }

    fn manifest(&self, d: &Descriptor) -> Result<Fetched, IngestError> {
        Ok(Fetched {
            bytes: self.small_blob(d)?,
            content_type: Some(d.media_type.clone()),
        })
    }

    fn small_blob(&self, d: &Descriptor) -> Result<Vec<u8>, IngestError> {
        resolve::check_size(&self.label, &d.digest.to_string(), d.size, MAX_DOCUMENT)?;
        let file = self.blob_file(&d.digest)?;
        resolve::read_verified(&self.label, file, d)
    }
}

impl ImageSource for LayoutSource {
    fn resolve(&self, platform: &Platform) -> Result<ResolvedImage, IngestError> {
        let top = self.manifest(&self.top)?;
        // The entry's bytes were verified against its digest as they were read.
        resolve::resolve(
            self,
            top,
            Some(&self.top.digest),
            platform,
            self.max_layer_size,
        )
    }

    fn open_blob(&self, d: &Descriptor) -> Result<Box<dyn Read + Send>, IngestError> {
        resolve::check_size(
            &self.label,
            &format!("blob {}", d.digest),
            d.size,
            self.max_layer_size,
        )?;
        let file = self.blob_file(&d.digest)?;
        Ok(Box::new(VerifyingReader::new(
            std::io::BufReader::with_capacity(1 << 20, file),
            &self.label,
            &d.digest,
            d.size,
        )))
    }

    fn tags(&self) -> Result<Vec<String>, IngestError> {
        Ok(self.names.clone())
    }
}
