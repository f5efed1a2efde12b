//! The daemon's CSI node service with the real publisher: a repository directory mounted
//! lazily at the target Mesos names, read, unpublished; restarts bring volumes back.

use std::path::Path;

use lazyroot::csi::proto::{
    identity_client::IdentityClient, node_client::NodeClient, GetPluginCapabilitiesRequest,
    GetPluginInfoRequest, NodeGetCapabilitiesRequest, ProbeRequest,
};
use tonic::Code;

use super::harness::*;
use crate::csi::{connect, percent_encode, publish_request, unpublish_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csi_volumes_mount_read_unpublish_and_survive_a_restart() {
    let mut w = World::new(600);
    let socket = w.work.join("csi.sock");
    let channel = connect(&socket).await;
    let mut identity = IdentityClient::new(channel.clone());
    let mut node = NodeClient::new(channel);
    // Mesos's order: probe, capabilities, info, node capabilities, then publish.
    assert_eq!(
        identity
            .probe(ProbeRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready,
        Some(true)
    );
    identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap();
    let info = identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, lazyroot::csi::PLUGIN_NAME);
    node.node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap();

    let root_hash = w.prepare("").unwrap().root_hash;
    let volume_id = format!("{}:/images/busybox@{root_hash}", w.repo.fqrn);
    let mounts = w.repo.dir.path().join("csi-mounts");
    let target = mounts.join(percent_encode(&volume_id)).join("target");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    node.node_publish_volume(publish_request(&volume_id, &target))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("etc/version")).unwrap(),
        "v1\n"
    );
    assert!(
        !target.join("proc").exists(),
        "volumes get no rootfs skeleton"
    );
    // Published again: the same (idempotent).
    node.node_publish_volume(publish_request(&volume_id, &target))
        .await
        .unwrap();

    // A killed daemon comes back with the volume mounted again at the same target.
    drop(node);
    drop(identity);
    w.daemon.take().unwrap().kill9();
    w.daemon = Some(Daemon::start(&w.config).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(
        std::fs::read_to_string(target.join("etc/version")).unwrap(),
        "v1\n"
    );

    let mut node = NodeClient::new(connect(&socket).await);
    node.node_unpublish_volume(unpublish_request(&volume_id, &target))
        .await
        .unwrap();
    assert!(!target.exists(), "the target the plugin created is removed");
    node.node_unpublish_volume(unpublish_request(&volume_id, &target))
        .await
        .unwrap();

    // Unknown repository and unknown tag: NOT_FOUND, nothing left.
    let target2 = mounts.join("other").join("target");
    std::fs::create_dir_all(target2.parent().unwrap()).unwrap();
    let e = node
        .node_publish_volume(publish_request(
            "nope.example.org:/images/busybox",
            &target2,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let mut req = publish_request(&format!("{}:/images/busybox", w.repo.fqrn), &target2);
    req.volume_context
        .insert("tag".into(), "no-such-tag".into());
    let e = node.node_publish_volume(req).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(!Path::new(&target2).exists());
    assert_eq!(w.image_mounts(), 1, "only the prepared image");
}
