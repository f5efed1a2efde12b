//! The daemon's configuration file (JSON): repositories and where things live.
//!
//! ```json
//! {
//!   "repositories": {
//!     "demo.example.org": {
//!       "servers": ["http://stratum1.example.org/cvmfs/@fqrn@"],
//!       "proxies": "DIRECT",
//!       "keys": ["/etc/lazyroot/keys/demo.example.org.pub"]
//!     }
//!   },
//!   "cache": "/var/lib/lazyroot/cache",
//!   "quota_mb": 20000,
//!   "mount_root": "/var/lib/lazyroot/images",
//!   "appc_store_dir": "/var/lib/lazyroot/appc",
//!   "state": "/var/lib/lazyroot/provisioner.sqlite",
//!   "control_socket": "/run/lazyroot/control.sock",
//!   "csi_socket": "/run/lazyroot/csi.sock",
//!   "csi_target_roots": ["/var/lib/mesos", "/var/lib/kubelet"],
//!   "grace_secs": 600,
//!   "discovery_listen": "127.0.0.1:7475",
//!   "keeper_socket": "/run/lazyroot/keeper.sock",
//!   "takeover_timeout_secs": 60
//! }
//! ```
//! Every field but `repositories` has the default shown, except `discovery_listen` and
//! `keeper_socket`, which are off unless set. Unknown fields are refused (a
//! misspelt setting must not be silently ignored).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How to reach and trust one repository.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// Server URLs in failover order (`@fqrn@` is replaced by the repository name).
    pub servers: Vec<String>,
    /// Proxy chain in CernVM-FS syntax (`p1|p2;p3`, `DIRECT`).
    #[serde(default = "direct")]
    pub proxies: String,
    /// Trusted master public keys (PEM files); any one of them may sign the whitelist.
    pub keys: Vec<PathBuf>,
}

/// The provisioner daemon's configuration (see the module docs for the file format).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The repositories images may come from, by fqrn (at least one).
    pub repositories: BTreeMap<String, RepositoryConfig>,
    /// The shared object cache every mount reads through.
    #[serde(default = "defaults::cache")]
    pub cache: PathBuf,
    /// Soft limit of the shared cache in MB; 0: unlimited.
    #[serde(default = "defaults::quota_mb")]
    pub quota_mb: u64,
    /// Where image root filesystems are mounted (one FUSE mount per image).
    #[serde(default = "defaults::mount_root")]
    pub mount_root: PathBuf,
    /// Mesos's `--appc_store_dir`.
    #[serde(default = "defaults::appc_store_dir")]
    pub appc_store_dir: PathBuf,
    /// The daemon's SQLite state (images, pins).
    #[serde(default = "defaults::state")]
    pub state: PathBuf,
    /// The control API's Unix socket (root only).
    #[serde(default = "defaults::control_socket")]
    pub control_socket: PathBuf,
    /// The CSI v1 node service's socket; `null` turns the service off.
    #[serde(default = "defaults::csi_socket")]
    pub csi_socket: Option<PathBuf>,
    /// How long an image nobody pins stays mounted (a task may be about to use it).
    #[serde(default = "defaults::grace_secs")]
    pub grace_secs: u64,
    /// Honour setuid bits in images (off by default, as in CernVM-FS).
    #[serde(default)]
    pub suid: bool,
    /// Connect timeout and low-speed window for downloads, in seconds.
    #[serde(default = "defaults::timeout_secs")]
    pub timeout_secs: u64,
    /// The low-speed limit in bytes per second: a download slower than this on average over
    /// `timeout_secs` moves to the next proxy or server (CernVM-FS's default, 1024).
    #[serde(default = "defaults::low_speed_limit")]
    pub low_speed_limit: u64,
    /// The longest one attempt at one object may take, in seconds.
    #[serde(default = "defaults::deadline_secs")]
    pub deadline_secs: u64,
    /// The directories CSI target paths must lie under (the CO's: Mesos's `--work_dir`,
    /// kubelet's root). A volume is never mounted anywhere else, so a CSI call can never
    /// cover `/etc` or `/usr`.
    #[serde(default = "defaults::csi_target_roots")]
    pub csi_target_roots: Vec<PathBuf>,
    /// Where to serve appc simple discovery (a loopback `host:port`; the agent's
    /// `--appc_simple_discovery_uri_prefix` is `http://<this>/`); absent: not served.
    #[serde(default)]
    pub discovery_listen: Option<std::net::SocketAddr>,
    /// The keeper that holds the images' FUSE connections, so that a daemon that crashes or
    /// is killed leaves its tasks' roots alive for the next one to take over (`None`: off;
    /// a restart remounts every image, and tasks running on them lose their root).
    #[serde(default)]
    pub keeper_socket: Option<PathBuf>,
    /// How long a keeper the daemon starts waits for a new daemon before it aborts the
    /// connections of a dead one.
    #[serde(default = "defaults::takeover_timeout_secs")]
    pub takeover_timeout_secs: u64,
}

fn direct() -> String {
    "DIRECT".into()
}

mod defaults {
    pub fn takeover_timeout_secs() -> u64 {
        60
    }

    use std::path::PathBuf;
    pub fn cache() -> PathBuf {
        "/var/lib/lazyroot/cache".into()
    }
    pub fn quota_mb() -> u64 {
        20_000
    }
    pub fn mount_root() -> PathBuf {
        "/var/lib/lazyroot/images".into()
    }
    pub fn appc_store_dir() -> PathBuf {
        "/var/lib/lazyroot/appc".into()
    }
    pub fn state() -> PathBuf {
        "/var/lib/lazyroot/provisioner.sqlite".into()
    }
    pub fn control_socket() -> PathBuf {
        "/run/lazyroot/control.sock".into()
    }
    pub fn csi_socket() -> Option<PathBuf> {
        Some("/run/lazyroot/csi.sock".into())
    }
    pub fn csi_target_roots() -> Vec<PathBuf> {
        vec!["/var/lib/mesos".into(), "/var/lib/kubelet".into()]
    }
    pub fn grace_secs() -> u64 {
        600
    }
    pub fn timeout_secs() -> u64 {
        5
    }
    pub fn low_speed_limit() -> u64 {
        1024
    }
    pub fn deadline_secs() -> u64 {
        600
    }
}

/// Why the configuration could not be loaded; `path` is the file's.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The configuration file, as shown.
        path: String,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not valid JSON, has an unknown field or a value of the wrong type.
    #[error("{path}: {source}")]
    Parse {
        /// The configuration file, as shown.
        path: String,
        /// What the JSON parser refused.
        source: serde_json::Error,
    },
    /// The file parses but its settings are unusable: no repositories, a repository without
    /// servers or keys, a bad fqrn, server or proxy list, a relative path, or cache and
    /// mount root inside one another.
    #[error("{path}: {why}")]
    Invalid {
        /// The configuration file, as shown.
        path: String,
        /// Which setting is wrong, and how.
        why: String,
    },
}

impl Config {
    /// Reads, parses and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let config: Config =
            serde_json::from_slice(&text).map_err(|source| ConfigError::Parse {
                path: shown.clone(),
                source,
            })?;
        config
            .validate()
            .map_err(|why| ConfigError::Invalid { path: shown, why })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.deadline_secs == 0 {
            return Err("deadline_secs must be at least 1".into());
        }
        if self.repositories.is_empty() {
            return Err("no repositories configured".into());
        }
        for (fqrn, r) in &self.repositories {
            crate::provisioner::image::check_fqrn(fqrn)
                .map_err(|e| format!("repository {fqrn:?}: {e}"))?;
            if r.servers.is_empty() {
                return Err(format!("repository {fqrn}: no servers"));
            }
            if r.keys.is_empty() {
                return Err(format!("repository {fqrn}: no trusted master keys"));
            }
            crate::remote::download::parse_hosts(&r.servers.join(";"), fqrn)
                .map_err(|e| format!("repository {fqrn}: servers: {e}"))?;
            crate::remote::download::parse_proxies(&r.proxies)
                .map_err(|e| format!("repository {fqrn}: proxies: {e}"))?;
        }
        for (name, p) in [
            ("cache", &self.cache),
            ("mount_root", &self.mount_root),
            ("appc_store_dir", &self.appc_store_dir),
            ("state", &self.state),
            ("control_socket", &self.control_socket),
        ] {
            if !p.is_absolute() {
                return Err(format!(
                    "{name} must be an absolute path, not {}",
                    p.display()
                ));
            }
        }
        for root in &self.csi_target_roots {
            // A root of `/` or a system directory would let a CSI call cover what the host
            // runs on.
            let system = [
                "/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/boot", "/proc", "/sys",
                "/dev",
            ];
            if !root.is_absolute() || system.iter().any(|s| root == std::path::Path::new(s)) {
                return Err(format!(
                    "csi_target_roots: {} is not a directory volumes may be mounted under",
                    root.display()
                ));
            }
        }
        if self.mount_root.starts_with(&self.cache) || self.cache.starts_with(&self.mount_root) {
            return Err("mount_root and cache must not contain each other".into());
        }
        Ok(())
    }
}
