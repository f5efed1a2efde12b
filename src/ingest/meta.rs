//! What an ingested image says about running it, stored beside its root filesystem
//! ([`super::names::meta_file`]): the OCI config's runtime fields, its digests, and the
//! reference it was first ingested from. Serialized deterministically (fields in a fixed
//! order, labels sorted), so ingesting the same image again writes the same bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Largest metadata file a reader accepts: it is read from a repository, so untrusted.
pub const MAX_META_BYTES: u64 = 1 << 20;

/// The stored metadata of one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// The reference the image was first ingested from, e.g.
    /// `registry.example.org/team/app:1.4`.
    pub source: String,
    /// The manifest's digest (`sha256:<hex>`): what names the root filesystem.
    pub manifest_digest: String,
    /// The config blob's digest.
    pub config_digest: String,
    /// `os/architecture[/variant]` of the image.
    pub platform: String,
    /// `config.Entrypoint`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// `config.Cmd`.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// `config.Env`, `NAME=value` each, in the image's order.
    #[serde(default)]
    pub env: Vec<String>,
    /// `config.WorkingDir`; empty for the root.
    #[serde(default)]
    pub working_dir: String,
    /// `config.User`: `user`, `uid`, `user:group` or `uid:gid`; empty for root.
    #[serde(default)]
    pub user: String,
    /// `config.Labels`, sorted.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Why stored metadata could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// Larger than [`MAX_META_BYTES`].
    #[error("image metadata is {0} bytes, more than the {MAX_META_BYTES} allowed")]
    TooLarge(u64),
    /// Not the JSON of an [`ImageMeta`].
    #[error("image metadata: {0}")]
    Json(#[from] serde_json::Error),
}

impl ImageMeta {
    /// The bytes stored in the repository.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("metadata serializes");
        out.push(b'\n');
        out
    }

    /// Reads stored metadata (bounded).
    pub fn from_bytes(bytes: &[u8]) -> Result<ImageMeta, MetaError> {
        if bytes.len() as u64 > MAX_META_BYTES {
            return Err(MetaError::TooLarge(bytes.len() as u64));
        }
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The command the image runs by default: Entrypoint followed by Cmd (the OCI rule).
    pub fn command(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_bytes_are_stable_and_read_back() {
        let m = ImageMeta {
            source: "r.example.org/app:1".into(),
            manifest_digest: format!("sha256:{}", "ab".repeat(32)),
            config_digest: format!("sha256:{}", "cd".repeat(32)),
            platform: "linux/amd64".into(),
            entrypoint: vec!["/bin/sh".into(), "-c".into()],
            cmd: vec!["echo hi".into()],
            env: vec!["PATH=/bin".into()],
            working_dir: "/srv".into(),
            user: "1000:1000".into(),
            labels: [("b".to_string(), "2".to_string()), ("a".into(), "1".into())].into(),
        };
        let bytes = m.to_bytes();
        assert_eq!(bytes, m.clone().to_bytes());
        assert_eq!(ImageMeta::from_bytes(&bytes).unwrap(), m);
        assert_eq!(m.command(), ["/bin/sh", "-c", "echo hi"]);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.find("\"a\"").unwrap() < text.find("\"b\"").unwrap());
        assert!(ImageMeta::from_bytes(&vec![b' '; (MAX_META_BYTES + 1) as usize]).is_err());
    }
}
