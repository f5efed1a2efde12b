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

    // Targets outside csi_target_roots, plainly or through a symlink on the way: refused,
    // nothing created or mounted there.
    let spec = format!("{}:/images/busybox@{root_hash}", w.repo.fqrn);
    let outside = w.repo.dir.path().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    let escape = mounts.join("escape");
    std::os::unix::fs::symlink(&outside, &escape).unwrap();
    for target in [
        Path::new("/etc/lazyroot-csi-target").to_path_buf(),
        outside.join("target"),
        escape.join("target"),
    ] {
        let e = node
            .node_publish_volume(publish_request(&spec, &target))
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Code::InvalidArgument,
            "{}: {e:?}",
            target.display()
        );
        assert!(e.message().contains("csi_target_roots"), "{e:?}");
        assert!(!target.exists(), "{} was created", target.display());
    }
    assert_eq!(w.image_mounts(), 1);
}

/// The CSI socket takes root's connections only, as the control socket does: a process
/// of another user that reaches the socket is hung up on before it is answered.
#[test]
fn csi_refuses_callers_that_are_not_root() {
    let w = World::new(600);
    let socket = w.work.join("csi.sock");
    // Reachable despite its mode, to test the credential check itself.
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let parents = [w.work.clone(), w.work.parent().unwrap().to_path_buf()];
    for d in parents {
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    // HTTP/2's client preface: a server that takes the connection answers with SETTINGS.
    let probe = format!(
        "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(10)\ns.connect({:?})\ntry:\n  s.sendall(b'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n\\x00\\x00\\x00\\x04\\x00\\x00\\x00\\x00\\x00')\n  d=s.recv(64)\nexcept (ConnectionResetError, BrokenPipeError):\n  d=b''\nprint(len(d))",
        socket.to_str().unwrap()
    );
    let run_as = |who: &[&str]| {
        let out = std::process::Command::new("setpriv")
            .args(who)
            .args(["/usr/bin/python3", "-c", &probe])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    assert!(run_as(&["--reuid=0"]) > 0, "root is answered");
    assert_eq!(
        run_as(&["--reuid=65534", "--regid=65534", "--clear-groups"]),
        0,
        "another user is hung up on"
    );
}

/// Health and CSI Probe say what is wrong instead of a constant "ok": servers that fail
/// make both name the repository and the last error, until a download succeeds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_probe_name_failing_servers() {
    let w = World::with_faults(600);
    let fqrn = w.repo.fqrn.clone();
    let mut identity = IdentityClient::new(connect(&w.work.join("csi.sock")).await);
    assert_eq!(w.client().health().unwrap().status, "ok");
    let faulty = w.faulty.as_ref().unwrap();
    faulty.set(crate::faulty::Fault::Status(503), |_| true);
    // A prepare's download is what finds the servers failing (from a blocking thread: the
    // control client blocks).
    let (client, fqrn1) = (w.client(), fqrn.clone());
    let _ = tokio::task::spawn_blocking(move || {
        client.prepare(&lazyroot::provisioner::api::PrepareImageRequest {
            fqrn: fqrn1,
            path: "/images/busybox".into(),
            ..Default::default()
        })
    })
    .await
    .unwrap();
    let client = w.client();
    let health = tokio::task::spawn_blocking(move || client.health().unwrap())
        .await
        .unwrap();
    assert_eq!(health.status, "degraded", "{health:?}");
    assert!(
        health
            .problems
            .iter()
            .any(|p| p.contains("servers are failing") && p.contains("503")),
        "{health:?}"
    );
    let err = identity.probe(ProbeRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("servers are failing"), "{err:?}");

    faulty.set(crate::faulty::Fault::None, |_| true);
    let client = w.client();
    tokio::task::spawn_blocking(move || {
        client.prepare(&lazyroot::provisioner::api::PrepareImageRequest {
            fqrn: fqrn.clone(),
            path: "/images/busybox".into(),
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .unwrap();
    let ready = identity
        .probe(ProbeRequest {})
        .await
        .unwrap()
        .into_inner()
        .ready;
    assert_eq!(ready, Some(true));
}
