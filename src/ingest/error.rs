//! Why reading an image failed. Every message starts with the image as the user named it,
//! then says which manifest, blob or file, then the cause, so one line is enough to act on.

use std::io;
use std::path::PathBuf;

use super::digest::Digest;
use super::media::MediaError;
use super::reference::ReferenceError;
use super::source::archive::ArchiveFault;
use super::source::layout::LayoutFault;
use super::source::registry::RegistryError;

/// Why an image source could not resolve an image or deliver a blob.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The image reference does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The registry could not be reached, refused, or answered wrongly.
    #[error("{reference}: {source}")]
    Registry {
        /// The image, canonical.
        reference: String,
        /// What went wrong with the registry.
        #[source]
        source: RegistryError,
    },
    /// A blob's bytes are not those its descriptor names.
    #[error("{reference}: blob {digest}: {cause}")]
    Blob {
        /// The image, canonical.
        reference: String,
        /// The blob's digest, as its descriptor names it.
        digest: Digest,
        /// How the bytes differ from the descriptor.
        #[source]
        cause: BlobFault,
    },
    /// A manifest, index or config does not parse, or is of a kind not supported.
    #[error("{reference}: {what}: {source}")]
    Media {
        /// The image, canonical.
        reference: String,
        /// Which document (e.g. `manifest sha256:…`).
        what: String,
        /// Why it is refused.
        #[source]
        source: MediaError,
    },
    /// An index has no manifest for the platform asked for.
    #[error("{reference}: no manifest for platform {wanted}; the image has: {}", available.join(", "))]
    NoPlatform {
        /// The image, canonical.
        reference: String,
        /// The platform asked for, `os/architecture[/variant]`.
        wanted: String,
        /// The platforms the index lists.
        available: Vec<String>,
    },
    /// The manifest's layers and the config's `rootfs.diff_ids` do not pair up.
    #[error(
        "{reference}: manifest {manifest} lists {layers} layers but its config {diff_ids} diff_ids"
    )]
    LayerCount {
        /// The image, canonical.
        reference: String,
        /// The manifest's digest.
        manifest: Digest,
        /// Layers in the manifest.
        layers: usize,
        /// Entries of `rootfs.diff_ids`.
        diff_ids: usize,
    },
    /// The manifest served does not hash to the digest the reference pins.
    #[error("{reference}: the manifest served hashes to {actual}, not the {expected} asked for")]
    ManifestDigest {
        /// The image, canonical.
        reference: String,
        /// The digest of the reference.
        expected: Digest,
        /// The digest of the bytes served.
        actual: Digest,
    },
    /// A manifest, config or layer is larger than allowed (before anything is allocated).
    #[error("{reference}: {what} is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// The image, canonical.
        reference: String,
        /// Which document or blob.
        what: String,
        /// Its size, as announced or as counted so far.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// Indexes nest deeper than allowed (a loop, or a hostile image).
    #[error("{reference}: indexes nest deeper than {max}")]
    TooDeep {
        /// The image, canonical.
        reference: String,
        /// The bound.
        max: usize,
    },
    /// A local file of the image (layout or archive) cannot be read.
    #[error("{reference}: {}: {source}", path.display())]
    File {
        /// The image, canonical.
        reference: String,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The OCI image layout directory is not one, or breaks its rules.
    #[error("{reference}: {cause}")]
    Layout {
        /// The image, canonical.
        reference: String,
        /// What is wrong with the layout.
        #[source]
        cause: LayoutFault,
    },
    /// The `docker save` archive is not one, or breaks its rules.
    #[error("{reference}: {cause}")]
    Archive {
        /// The image, canonical.
        reference: String,
        /// What is wrong with the archive.
        #[source]
        cause: ArchiveFault,
    },
}

/// How a blob's bytes differ from its descriptor.
#[derive(Debug, thiserror::Error)]
pub enum BlobFault {
    /// The bytes hash to another digest.
    #[error("content hashes to {actual}, not to the blob's digest")]
    Digest {
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// The stream ended early.
    #[error("truncated: the stream ended after {got} of its {size} bytes")]
    Truncated {
        /// Bytes received.
        got: u64,
        /// The descriptor's size.
        size: u64,
    },
    /// The stream goes on past the descriptor's size.
    #[error("the stream has more than the blob's {size} bytes")]
    TooLong {
        /// The descriptor's size.
        size: u64,
    },
    /// Reading the stream failed.
    #[error("reading it: {0}")]
    Read(#[source] io::Error),
    /// The uncompressed layer does not hash to the config's diff_id.
    #[error("uncompressed, it hashes to {actual}, not to its diff_id {diff_id}")]
    DiffId {
        /// The config's `rootfs.diff_ids` entry.
        diff_id: Digest,
        /// The digest of the uncompressed bytes.
        actual: Digest,
    },
}
