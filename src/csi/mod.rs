//! A CSI v1 node plugin: the Identity and Node services of the Container Storage Interface,
//! served over gRPC on a Unix socket, as Mesos's `volume/csi` isolator and the kubelet call them.
//!
//! A volume is a directory of a repository at one revision ([`VolumeSpec`], parsed from the
//! volume id and context by [`parse_volume`]); the daemon mounts it through a
//! [`VolumePublisher`]. Volumes are read-only and unstaged: `NodePublishVolume` mounts
//! straight at the target path, which the plugin creates when only its parent exists.
//!
//! - [`proto`]: the generated messages, servers and clients (`proto/csi/v1/csi.proto`).
//! - [`IdentityService`]: plugin name [`PLUGIN_NAME`], version, readiness.
//! - [`NodeService`]: publish and unpublish; staging, stats and expansion are UNIMPLEMENTED.
//! - [`serve`]: both services on a Unix socket until a shutdown future completes.

mod identity;
mod node;
pub mod proto;
mod publisher;
mod serve;
mod target;
mod volume_id;

pub use identity::{IdentityService, PLUGIN_NAME};
pub use node::NodeService;
pub use publisher::{VolumeError, VolumePublisher};
pub use serve::{bind, serve, serve_on};
pub use volume_id::{parse_volume, VolumeSpec};
