//! Container images in: OCI and Docker image layers applied in memory and published as a
//! revision, without a scratch directory and without root.

pub mod layer;
