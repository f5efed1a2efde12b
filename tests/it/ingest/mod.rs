//! Container images in: the image sources (registry, OCI layout, docker-save archive)
//! against real components — Debian's `docker-registry`, `umoci`, `skopeo`, `openssl` —
//! and the faults a source must name clearly; layers applied as `umoci unpack` applies
//! them, and hostile layers refused.

mod end_to_end;
pub mod fixtures;
mod layers;
mod sources;
mod sources_auth;
mod sources_faults;
mod wishlist;
mod wishlist_adversarial;
