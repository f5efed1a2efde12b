//! appc simple discovery, served by the daemon on a loopback TCP address: Mesos's appc
//! store asks `<prefix><name>-<version>-<os>-<arch>.aci` when a task names an image it has
//! no entry for, and gets an ACI that points at the image's lazy mount. Nothing has to be
//! prepared on the agent beforehand.

pub mod aci;
pub mod http;
pub mod name;
