//! The documents of an image — index / manifest list, manifest, config — as serde types,
//! the media types that name them, and which layer media types can be ingested. Only what
//! ingest needs is typed; unknown fields are ignored, as the specs ask.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, uncompressed tar.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker manifest list (the Docker index).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image manifest, schema 1 (refused: unverifiable v1 ids, no diff_ids).
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker image manifest, signed schema 1 (refused).
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker layer, gzip.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker layer, uncompressed (rare, but `docker save`-born images use it).
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker foreign layer (e.g. Windows base layers), not distributable: refused.
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Prefix of the OCI non-distributable layer types (deprecated by OCI): refused.
pub const OCI_LAYER_NONDISTRIBUTABLE_PREFIX: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";

/// The `Accept` header for manifests: every kind ingest reads.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest, index or config accepted (before it is read into memory).
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// Why a document is refused.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Not JSON of the expected shape.
    #[error("does not parse: {0}")]
    Json(#[from] serde_json::Error),
    /// A schema 1 manifest.
    #[error("Docker schema 1 manifests are not supported (push the image again with a current Docker, skopeo or buildah)")]
    Schema1,
    /// A document kind ingest does not read (e.g. an artifact).
    #[error("media type {0:?} is not an image index or manifest")]
    UnknownManifest(String),
    /// A config media type other than an image config (e.g. a Helm chart).
    #[error("config media type {0:?} is not an image config")]
    UnknownConfig(String),
    /// A foreign or non-distributable layer.
    #[error("layer {digest} is foreign or non-distributable ({media_type}); its bytes are not in the registry")]
    ForeignLayer {
        /// The layer's digest.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// A layer media type that is not a (compressed) tar.
    #[error("layer {digest} has media type {media_type:?}, not a tar layer")]
    UnknownLayer {
        /// The layer's digest.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// `schemaVersion` other than 2.
    #[error("schemaVersion {0} is not 2")]
    SchemaVersion(u32),
}

/// A pointer to a blob or manifest: what it is, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of what it points to.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The platform (index entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<DescriptorPlatform>,
    /// Annotations, e.g. `org.opencontainers.image.ref.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Other places the blob may be fetched from (foreign layers); never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorPlatform {
    /// CPU architecture, GOARCH spelling (`amd64`, `arm64`).
    pub architecture: String,
    /// Operating system, GOOS spelling (`linux`).
    pub os: String,
    /// CPU variant (`v7`, `v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS version (Windows images).
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

/// An OCI image index or Docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// [`OCI_INDEX`] or [`DOCKER_MANIFEST_LIST`] (optional in OCI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests (or nested indexes), one per platform.
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OCI image manifest or Docker schema 2 manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`OCI_MANIFEST`] or [`DOCKER_MANIFEST`] (optional in OCI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image config: the platform, how to run it, and the diff_ids of its layers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// How to run a container of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    /// The uncompressed layer digests.
    pub rootfs: RootFs,
}

/// The `config` member of an image config (Docker's spelling, which OCI kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// The entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments (or command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `NAME=value` environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// The working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `user[:group]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// The `rootfs` member of an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// sha256 of each uncompressed layer, base first.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// A manifest-level document: an index (pick a platform) or an image manifest.
#[derive(Debug, Clone)]
pub enum Document {
    /// An OCI index or Docker manifest list.
    Index(Index),
    /// An OCI or Docker schema 2 image manifest.
    Manifest(Box<Manifest>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// Parses a manifest or index. The kind comes from the document's `mediaType`, else the
/// `Content-Type` it was served with, else its shape (OCI makes `mediaType` optional).
pub fn parse_document(bytes: &[u8], content_type: Option<&str>) -> Result<Document, MediaError> {
    let probe: Probe = serde_json::from_slice(bytes)?;
    let served = content_type.map(|c| c.split(';').next().unwrap_or(c).trim());
    let kind = probe.media_type.as_deref().or(served.filter(|c| {
        // Registries may serve OCI documents without a type as plain JSON.
        *c != "application/json" && *c != "application/octet-stream"
    }));
    if matches!(kind, Some(DOCKER_MANIFEST_V1 | DOCKER_MANIFEST_V1_SIGNED))
        || probe.schema_version == 1
    {
        return Err(MediaError::Schema1);
    }
    if probe.schema_version != 2 {
        return Err(MediaError::SchemaVersion(probe.schema_version));
    }
    match kind {
        Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => {
            Ok(Document::Index(serde_json::from_slice(bytes)?))
        }
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => {
            Ok(Document::Manifest(Box::new(serde_json::from_slice(bytes)?)))
        }
        Some(other) => Err(MediaError::UnknownManifest(other.to_string())),
        None if probe.manifests.is_some() => Ok(Document::Index(serde_json::from_slice(bytes)?)),
        None if probe.config.is_some() => Ok(Document::Manifest(serde_json::from_slice(bytes)?)),
        None => Err(MediaError::UnknownManifest("(none)".to_string())),
    }
}

/// Whether a descriptor's media type is an index (to follow) rather than a manifest.
pub fn is_index(media_type: &str) -> bool {
    matches!(media_type, OCI_INDEX | DOCKER_MANIFEST_LIST)
}

/// Checks a config descriptor's media type.
pub fn check_config_type(media_type: &str) -> Result<(), MediaError> {
    match media_type {
        OCI_CONFIG | DOCKER_CONFIG => Ok(()),
        other => Err(MediaError::UnknownConfig(other.to_string())),
    }
}

/// Parses an image config.
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig, MediaError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// How a layer's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl LayerCompression {
    /// The compression a layer descriptor announces; foreign, non-distributable and
    /// unknown layer types are refused by name.
    pub fn of(layer: &Descriptor) -> Result<LayerCompression, MediaError> {
        let t = layer.media_type.as_str();
        match t {
            OCI_LAYER | DOCKER_LAYER => Ok(LayerCompression::None),
            OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Ok(LayerCompression::Gzip),
            OCI_LAYER_ZSTD => Ok(LayerCompression::Zstd),
            _ if t == DOCKER_LAYER_FOREIGN || t.starts_with(OCI_LAYER_NONDISTRIBUTABLE_PREFIX) => {
                Err(MediaError::ForeignLayer {
                    digest: layer.digest.clone(),
                    media_type: t.to_string(),
                })
            }
            _ => Err(MediaError::UnknownLayer {
                digest: layer.digest.clone(),
                media_type: t.to_string(),
            }),
        }
    }

    /// The compression any OCI or Docker layer media type names (non-distributable and
    /// foreign ones too, which [`LayerCompression::of`] refuses); `None` for media types
    /// that are not layers.
    pub fn from_media_type(media_type: &str) -> Option<LayerCompression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(LayerCompression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(LayerCompression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(LayerCompression::Zstd)
            }
            _ => None,
        }
    }

    /// The compression of a stream by its first bytes (gzip `1f 8b`, zstd `28 b5 2f fd`),
    /// for archives whose members carry no media type.
    pub fn sniff(head: &[u8]) -> LayerCompression {
        if head.starts_with(&[0x1f, 0x8b]) {
            LayerCompression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            LayerCompression::Zstd
        } else {
            LayerCompression::None
        }
    }

    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            LayerCompression::None => OCI_LAYER,
            LayerCompression::Gzip => OCI_LAYER_GZIP,
            LayerCompression::Zstd => OCI_LAYER_ZSTD,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn layer(t: &str) -> Descriptor {
        Descriptor {
            media_type: t.into(),
            digest: Digest::parse(D).unwrap(),
            size: 1,
            platform: None,
            annotations: None,
            urls: None,
        }
    }

    #[test]
    fn layer_types() {
        assert_eq!(
            LayerCompression::of(&layer(OCI_LAYER)).unwrap(),
            LayerCompression::None
        );
        assert_eq!(
            LayerCompression::of(&layer(DOCKER_LAYER_GZIP)).unwrap(),
            LayerCompression::Gzip
        );
        assert_eq!(
            LayerCompression::of(&layer(OCI_LAYER_ZSTD)).unwrap(),
            LayerCompression::Zstd
        );
        let e = LayerCompression::of(&layer(DOCKER_LAYER_FOREIGN))
            .unwrap_err()
            .to_string();
        assert!(e.contains("foreign") && e.contains(D), "{e}");
        let nd = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
        assert!(matches!(
            LayerCompression::of(&layer(nd)),
            Err(MediaError::ForeignLayer { .. })
        ));
        let e = LayerCompression::of(&layer("application/x-helm"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("application/x-helm"), "{e}");
        assert_eq!(
            LayerCompression::sniff(&[0x1f, 0x8b, 8]),
            LayerCompression::Gzip
        );
        assert_eq!(
            LayerCompression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            LayerCompression::Zstd
        );
        assert_eq!(LayerCompression::sniff(b"etc/"), LayerCompression::None);
    }

    #[test]
    fn documents() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{D}","size":2}},"layers":[]}}"#
        );
        assert!(matches!(
            parse_document(m.as_bytes(), None),
            Ok(Document::Manifest(_))
        ));
        let i = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":2,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#
        );
        match parse_document(i.as_bytes(), Some("application/json")).unwrap() {
            Document::Index(i) => {
                assert_eq!(
                    i.manifests[0].platform.as_ref().unwrap().variant.as_deref(),
                    Some("v8")
                )
            }
            other => panic!("{other:?}"),
        }
        let v1 = r#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(matches!(
            parse_document(v1.as_bytes(), Some(DOCKER_MANIFEST_V1_SIGNED)),
            Err(MediaError::Schema1)
        ));
        let art = r#"{"schemaVersion":2,"mediaType":"application/vnd.cncf.helm.chart"}"#;
        assert!(parse_document(art.as_bytes(), None)
            .unwrap_err()
            .to_string()
            .contains("helm"));
        assert!(parse_document(b"\xff", None).is_err());
        let bad_digest = m.replace(D, "sha256:1234");
        assert!(parse_document(bad_digest.as_bytes(), None).is_err());
    }

    #[test]
    fn config_fields() {
        let c = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Entrypoint":["/bin/sh"],"Env":["A=b"],"WorkingDir":"/w","User":"1:2","Labels":{{"k":"v"}}}},"rootfs":{{"type":"layers","diff_ids":["{D}"]}}}}"#
        );
        let c = parse_config(c.as_bytes()).unwrap();
        let run = c.config.unwrap();
        assert_eq!(run.entrypoint.unwrap(), ["/bin/sh"]);
        assert_eq!(run.working_dir.as_deref(), Some("/w"));
        assert_eq!(run.labels.unwrap()["k"], "v");
        assert_eq!(c.rootfs.diff_ids.len(), 1);
    }
}
