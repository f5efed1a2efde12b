//! The CSI Node service: read-only, unstaged volumes published straight at the target path.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tonic::{Request, Response, Status};

use super::proto::{
    node_server::Node, volume_capability::access_mode::Mode, volume_capability::AccessType,
    NodeExpandVolumeRequest, NodeExpandVolumeResponse, NodeGetCapabilitiesRequest,
    NodeGetCapabilitiesResponse, NodeGetInfoRequest, NodeGetInfoResponse,
    NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse, NodePublishVolumeRequest,
    NodePublishVolumeResponse, NodeStageVolumeRequest, NodeStageVolumeResponse,
    NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse, NodeUnstageVolumeRequest,
    NodeUnstageVolumeResponse, VolumeCapability,
};
use super::{parse_volume, target, VolumePublisher};

/// The Node service over a [`VolumePublisher`].
pub struct NodeService {
    publisher: Arc<dyn VolumePublisher>,
    node_id: String,
    /// Target paths with a publish or unpublish under way (a second one gets ABORTED).
    busy: Arc<Mutex<HashSet<PathBuf>>>,
}

impl NodeService {
    /// A service reporting this machine's host name as its node id.
    pub fn new(publisher: Arc<dyn VolumePublisher>) -> Self {
        Self::with_node_id(publisher, hostname())
    }

    /// A service reporting `node_id` in NodeGetInfo (the CO's name for this node).
    pub fn with_node_id(publisher: Arc<dyn VolumePublisher>, node_id: String) -> Self {
        NodeService {
            publisher,
            node_id,
            busy: Arc::default(),
        }
    }

    /// Runs `f` on the blocking pool while holding `target` busy.
    async fn exclusive<T: Send + 'static>(
        &self,
        target: &Path,
        f: impl FnOnce() -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        // The claim moves into the blocking task: a cancelled request frees the target only
        // once the work it started is over.
        let guard = Busy::claim(&self.busy, target)?;
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(guard);
            out
        })
        .await
        .map_err(|e| Status::internal(format!("{}: {e}", target.display())))?
    }
}

/// A claim on one target path, released on drop.
struct Busy {
    set: Arc<Mutex<HashSet<PathBuf>>>,
    target: PathBuf,
}

impl Busy {
    fn claim(set: &Arc<Mutex<HashSet<PathBuf>>>, target: &Path) -> Result<Busy, Status> {
        if !set.lock().unwrap().insert(target.to_path_buf()) {
            return Err(Status::aborted(format!(
                "an operation on target path {} is already under way",
                target.display()
            )));
        }
        Ok(Busy {
            set: set.clone(),
            target: target.to_path_buf(),
        })
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.set.lock().unwrap().remove(&self.target);
    }
}

/// Only a mounted file system, and only read-only: a reader-only access mode, or a writer
/// mode with `readonly` set.
fn check_capability(cap: Option<&VolumeCapability>, readonly: bool) -> Result<(), Status> {
    let cap = cap.ok_or_else(|| Status::invalid_argument("volume capability missing"))?;
    match cap.access_type {
        Some(AccessType::Mount(_)) => {}
        Some(AccessType::Block(_)) => {
            return Err(Status::invalid_argument(
                "block access is not supported: the volume is a file system",
            ))
        }
        None => {
            return Err(Status::invalid_argument(
                "volume capability has no access type",
            ))
        }
    }
    let mode = cap
        .access_mode
        .as_ref()
        .and_then(|m| Mode::try_from(m.mode).ok())
        .unwrap_or(Mode::Unknown);
    match mode {
        Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly => Ok(()),
        Mode::Unknown => Err(Status::invalid_argument(
            "volume access mode missing or unknown",
        )),
        _ if readonly => Ok(()),
        _ => Err(Status::invalid_argument(format!(
            "read-only repository: access mode {} needs readonly",
            mode.as_str_name()
        ))),
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let r = request.into_inner();
        if r.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume id missing"));
        }
        let target = target::validate(&r.target_path)?;
        check_capability(r.volume_capability.as_ref(), r.readonly)?;
        let context = format!("volume {:?} at {}", r.volume_id, target.display());
        let spec =
            parse_volume(&r.volume_id, &r.volume_context).map_err(|e| e.to_status(&context))?;
        let publisher = self.publisher.clone();
        let t = target.clone();
        self.exclusive(&target, move || {
            let created = target::prepare(&t)?;
            publisher.publish(&spec, &t).map_err(|e| {
                if created {
                    let _ = std::fs::remove_dir(&t);
                }
                e.to_status(&context)
            })
        })
        .await?;
        Ok(Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let r = request.into_inner();
        if r.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume id missing"));
        }
        let target = target::validate(&r.target_path)?;
        let context = format!("volume {:?} at {}", r.volume_id, target.display());
        let publisher = self.publisher.clone();
        let t = target.clone();
        self.exclusive(&target, move || {
            match std::fs::symlink_metadata(&t) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                _ => {}
            }
            publisher.unpublish(&t).map_err(|e| e.to_status(&context))?;
            target::remove_if_unused(&t)
        })
        .await?;
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    /// No capabilities: without STAGE_UNSTAGE_VOLUME the CO publishes without staging.
    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }

    async fn node_stage_volume(
        &self,
        _: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        Err(Status::unimplemented("volumes are not staged"))
    }

    async fn node_unstage_volume(
        &self,
        _: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        Err(Status::unimplemented("volumes are not staged"))
    }

    async fn node_get_volume_stats(
        &self,
        _: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        Err(Status::unimplemented("volume statistics are not reported"))
    }

    async fn node_expand_volume(
        &self,
        _: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "read-only volumes cannot be expanded",
        ))
    }
}

/// This machine's host name (its UTS namespace's), or `localhost` if it cannot be read.
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
