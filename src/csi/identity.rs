//! The CSI Identity service: who the plugin is, what it offers, whether it is ready.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::VolumePublisher;

use super::proto::{
    identity_server::Identity, GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse,
    GetPluginInfoRequest, GetPluginInfoResponse, ProbeRequest, ProbeResponse,
};

/// The plugin's name: the `type` of its entry in the CO's CSI plugin configuration.
pub const PLUGIN_NAME: &str = "org.lazyroot.csi";

/// Identity for a node-only plugin: no controller service; ready once serving, healthy
/// while its publisher reports no problem.
#[derive(Clone)]
pub struct IdentityService {
    publisher: Arc<dyn VolumePublisher>,
}

impl IdentityService {
    /// The identity of the plugin whose volumes `publisher` publishes.
    pub fn new(publisher: Arc<dyn VolumePublisher>) -> Self {
        IdentityService { publisher }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: PLUGIN_NAME.to_string(),
            vendor_version: env!("CARGO_PKG_VERSION").to_string(),
            manifest: Default::default(),
        }))
    }

    /// No plugin capabilities: without CONTROLLER_SERVICE the CO calls no controller RPCs.
    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    /// FAILED_PRECONDITION, naming what is wrong, while the publisher reports problems
    /// (the CSI spec's answer for a plugin that is not healthy; the CO may retry).
    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let publisher = self.publisher.clone();
        let problems = tokio::task::spawn_blocking(move || publisher.problems())
            .await
            .map_err(|e| Status::internal(format!("probe: {e}")))?;
        if problems.is_empty() {
            Ok(Response::new(ProbeResponse { ready: Some(true) }))
        } else {
            Err(Status::failed_precondition(problems.join("; ")))
        }
    }
}
