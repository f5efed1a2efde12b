//! The provisioner daemon: images (fqrn, path, root hash) mounted lazily from the shared
//! cache, handed to Mesos through its appc store, held by pins, driven over a Unix socket.

pub mod api;
pub mod app;
pub mod appc;
pub mod config;
pub mod control;
pub mod control_client;
pub mod csi;
pub mod daemon;
pub mod discovery;
pub mod error;
pub mod image;
pub mod image_meta;
pub mod lanes;
pub mod mounts;
pub mod run;
pub mod state;

pub use config::Config;
pub use daemon::Provisioner;
pub use error::ProvisionError;
