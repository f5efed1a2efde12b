//! One image layer at a time: its tar stream read once ([`read_layer`]: decompressed,
//! checked against its diff_id, regular files' bytes stored as repository objects while
//! streaming) into [`LayerEntries`], what the layer does; then applied with OCI semantics
//! (whiteouts, opaque directories, replacement, hard links) onto an in-memory [`Tree`],
//! which becomes the publisher's [`crate::publish::walk::Node`] tree.
//!
//! Everything in a layer is untrusted: names that escape the root, links out of the image,
//! oversized headers and decompression bombs are refused with a [`LayerError`] naming the
//! layer, the member and the reason. Objects a refused layer already stored are
//! unreferenced; under [`crate::publish::transaction`] they are removed again.

pub mod apply;
pub mod decompress;
pub mod entries;
pub mod errors;
pub mod pax;
pub mod read;
pub mod tree;

pub use decompress::Compression;
pub use entries::{Attrs, LayerEntries, LayerEntry, What};
pub use errors::{LayerError, Problem};
pub use read::{read_layer, LayerStats, ReadLimits};
pub use tree::Tree;

#[cfg(test)]
mod tests;
