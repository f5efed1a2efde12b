//! Container images in: OCI and Docker images read from registries, OCI layout directories
//! and `docker save` archives, verified as they stream, and published as repository images
//! file by file.
//!
//! - [`reference`]: image names by Docker's rules (`busybox`, `host:5000/app:v1@sha256:…`,
//!   `oci:DIR:tag`, `docker-archive:FILE:name:tag`).
//! - [`digest`]: `sha256:<hex>` digests and the reader that verifies a blob while it streams.
//! - [`media`]: the image documents (index, manifest, config) and their media types.
//! - [`source`]: where images come from: a registry, an OCI layout, a docker-save archive;
//!   each resolves a platform's manifest and config and opens verified layer streams.
//! - [`layer`]: a layer's tar stream read once, its files stored as objects while it
//!   streams, and applied with OCI semantics onto an in-memory tree; no scratch directory,
//!   no root.
//! - [`names`]: where an ingested image lives in a repository, and the links naming it.
//! - [`name_tree`]: the registry directories' names in a revision: rebuilt, linked, pruned.
//! - [`meta`]: what an image says about running it, stored beside its root filesystem.
//! - [`wishlist`]: the images a repository should hold, tag globs, what a prune keeps.
//! - [`run`]: one `ingest` call: sources read, layers applied, names linked, one publish.
//! - [`error`]: why reading an image failed, naming the image, the blob and the cause.

pub mod digest;
pub mod error;
pub mod layer;
pub mod media;
pub mod meta;
pub mod name_tree;
pub mod names;
pub mod reference;
pub mod run;
pub mod seen;
pub mod source;
pub mod wishlist;

pub use error::{BlobFault, IngestError};
