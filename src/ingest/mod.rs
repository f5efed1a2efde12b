//! Container images in: OCI and Docker images from registries, OCI layouts and `docker
//! save` archives, turned into repository images file by file.

pub mod meta;
pub mod names;
