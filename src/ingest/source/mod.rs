//! Where images come from. Every source does the same three things — resolve a reference
//! and a platform to one manifest, its config and its layer descriptors; open a layer as a
//! stream verified against its descriptor; list tags — so ingest does not care whether the
//! bytes come from a registry, an OCI layout directory or a `docker save` archive.
//!
//! Every document is bounded ([`media::MAX_DOCUMENT`]) and verified against the digest that
//! names it before it is parsed; layers are bounded by their descriptor's size and by
//! [`SourceOptions::max_layer_size`], and verified while they stream.

pub mod archive;
pub mod layout;
mod platform;
pub mod registry;
mod resolve;

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

pub use platform::Platform;

use super::digest::Digest;
use super::error::IngestError;
use super::media;
use super::reference::Reference;

/// One platform's image, resolved: its manifest and config, verified, and its layers.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The image as given, canonical (`docker.io/library/busybox:latest`, `oci:DIR:tag`).
    pub reference: String,
    /// The digest of the platform's manifest: of the exact bytes served (for a
    /// `docker-archive:`, of the manifest synthesized for it: see [`archive`]).
    pub manifest_digest: Digest,
    /// The manifest's bytes, as served.
    pub manifest_bytes: Vec<u8>,
    /// The digest of the index the manifest was picked from, if it came from one (the
    /// outermost, when indexes nest).
    pub index_digest: Option<Digest>,
    /// The config's bytes, verified against the manifest's config descriptor.
    pub config_bytes: Vec<u8>,
    /// The config, parsed.
    pub config: media::ImageConfig,
    /// The layers, base first; each one's media type is a supported tar layer.
    pub layers: Vec<media::Descriptor>,
    /// The config's `rootfs.diff_ids`: `diff_ids[i]` is the digest of `layers[i]`
    /// uncompressed (for the layer applier to check).
    pub diff_ids: Vec<Digest>,
}

/// A place images come from.
pub trait ImageSource: Send + Sync {
    /// Resolves the image for `platform`: an index (manifest list) is narrowed to the
    /// platform's manifest; the config is fetched and verified. Blocking.
    fn resolve(&self, platform: &Platform) -> Result<ResolvedImage, IngestError>;

    /// Opens a blob of the image (a layer) as a stream verified against `d` as it is read:
    /// never more than `d.size` bytes, and the end is reported only after the size and
    /// digest matched; a failure is an `io::Error` wrapping an [`IngestError`]. Blocking.
    fn open_blob(&self, d: &media::Descriptor) -> Result<Box<dyn Read + Send>, IngestError>;

    /// The tags of the repository (registry, paginated) or the images' names (layout,
    /// archive). Blocking.
    fn tags(&self) -> Result<Vec<String>, IngestError>;
}

/// How sources reach registries, and the bounds they hold images to.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// A Docker `config.json` with `auths`; [`SourceOptions::default`] finds
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` when present.
    pub docker_config: Option<PathBuf>,
    /// Credentials for the registry (`--creds user:pass`); they win over `docker_config`.
    pub creds: Option<(String, String)>,
    /// PEM files of certificates trusted besides the system's roots (`--ca FILE`).
    pub ca_files: Vec<PathBuf>,
    /// Registries (`host[:port]` or `host`) reached over plain HTTP; token services and
    /// redirect targets over plain HTTP must be listed too.
    pub insecure_registries: Vec<String>,
    /// The longest wait to connect, for a response to start, and between two pieces of a
    /// body (a stalled transfer fails after this).
    pub timeout: Duration,
    /// Extra tries after a 429, a 5xx or a connection failure.
    pub retries: u32,
    /// The longest wait before a retry, whatever `Retry-After` asks.
    pub max_retry_wait: Duration,
    /// Layers (and blobs) larger than this are refused before any byte is read.
    pub max_layer_size: u64,
    /// The page size asked for when listing tags (`?n=`); none: the registry's default.
    pub tags_page_size: Option<u32>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            docker_config: default_docker_config(),
            creds: None,
            ca_files: Vec::new(),
            insecure_registries: Vec::new(),
            timeout: Duration::from_secs(30),
            retries: 3,
            max_retry_wait: Duration::from_secs(10),
            max_layer_size: 64 << 30,
            tags_page_size: None,
        }
    }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, if the file exists.
fn default_docker_config() -> Option<PathBuf> {
    let dir = match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".docker"),
    };
    let file = dir.join("config.json");
    file.is_file().then_some(file)
}

/// Opens the source a reference names. Registries are not contacted yet; local layouts and
/// archives are checked and indexed.
pub fn open(
    reference: &Reference,
    options: &SourceOptions,
) -> Result<Box<dyn ImageSource>, IngestError> {
    Ok(match reference {
        Reference::Registry(r) => Box::new(registry::RegistrySource::new(r.clone(), options)?),
        Reference::OciLayout { dir, tag } => {
            Box::new(layout::LayoutSource::open(dir, tag.as_deref(), options)?)
        }
        Reference::DockerArchive { file, reference } => Box::new(archive::ArchiveSource::open(
            file,
            reference.as_deref(),
            options,
        )?),
    })
}
