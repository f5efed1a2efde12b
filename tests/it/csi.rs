//! The CSI node plugin over its Unix socket, called as Mesos's `volume/csi` isolator calls it:
//! a fake publisher bind-mounts a directory read-only; publish, read through the target,
//! unpublish, and the target is gone. Bad requests get the right status codes and leave
//! nothing behind.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lazyroot::csi::proto::{
    identity_client::IdentityClient, node_client::NodeClient, node_service_capability,
    volume_capability, GetPluginCapabilitiesRequest, GetPluginInfoRequest, NodeExpandVolumeRequest,
    NodeGetCapabilitiesRequest, NodeGetInfoRequest, NodeGetVolumeStatsRequest,
    NodePublishVolumeRequest, NodeStageVolumeRequest, NodeUnpublishVolumeRequest,
    NodeUnstageVolumeRequest, ProbeRequest, VolumeCapability,
};
use lazyroot::csi::{serve, VolumeError, VolumePublisher, VolumeSpec, PLUGIN_NAME};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Code;

use volume_capability::access_mode::Mode;

const VOLUME_ID: &str = "sft.example.org:/images/bookworm";
const HASH: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";

/// Runs a test body with a bound on its time.
async fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), body)
        .await
        .expect("test timed out")
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Publish(VolumeSpec, PathBuf),
    Unpublish(PathBuf),
}

/// A `VolumeError` constructor.
type MakeError = fn(String) -> VolumeError;

/// Bind-mounts `source` read-only at the target; records every call; fails on demand.
struct FakePublisher {
    source: PathBuf,
    calls: Mutex<Vec<Call>>,
    fail_with: Mutex<Option<MakeError>>,
    /// Unpublish claims success but leaves the mount.
    keep_mounted: AtomicBool,
}

impl VolumePublisher for FakePublisher {
    fn publish(&self, spec: &VolumeSpec, target: &Path) -> Result<(), VolumeError> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Publish(spec.clone(), target.to_path_buf()));
        if let Some(fail) = *self.fail_with.lock().unwrap() {
            return Err(fail("publisher says no".into()));
        }
        if is_mounted(target) {
            return Ok(());
        }
        let none = None::<&str>;
        mount(Some(&self.source), target, none, MsFlags::MS_BIND, none)
            .map_err(|e| VolumeError::Internal(format!("bind: {e}")))?;
        let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(none, target, none, ro, none).map_err(|e| {
            let _ = umount2(target, MntFlags::MNT_DETACH);
            VolumeError::Internal(format!("remount ro: {e}"))
        })
    }

    fn unpublish(&self, target: &Path) -> Result<(), VolumeError> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Unpublish(target.to_path_buf()));
        if !is_mounted(target) || self.keep_mounted.load(Ordering::SeqCst) {
            return Ok(());
        }
        umount2(target, MntFlags::empty())
            .map_err(|e| VolumeError::Internal(format!("umount: {e}")))
    }
}

/// Mount points at or below `under`, from this process's mount table.
fn mounts_under(under: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(under))
        .collect()
}

fn is_mounted(path: &Path) -> bool {
    mounts_under(path).iter().any(|p| p == path)
}

/// A plugin served on a socket in a temporary directory, a client channel to it, and a
/// source directory to publish. Dropping it stops the server and lazily unmounts everything
/// below its directory, whatever the test did.
struct Scene {
    root: PathBuf,
    socket: PathBuf,
    publisher: Arc<FakePublisher>,
    channel: Channel,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Scene {
    async fn start() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let source = root.join("source");
        std::fs::create_dir(&source).unwrap();
        std::fs::write(source.join("os-release"), b"PRETTY_NAME=\"bookworm\"\n").unwrap();
        std::fs::create_dir(root.join("mounts")).unwrap();
        let socket = root.join("run/csi.sock");
        let publisher = Arc::new(FakePublisher {
            source,
            calls: Mutex::default(),
            fail_with: Mutex::default(),
            keep_mounted: AtomicBool::new(false),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn({
            let socket = socket.clone();
            let publisher: Arc<dyn VolumePublisher> = publisher.clone();
            async move {
                serve(&socket, publisher, async {
                    let _ = rx.await;
                })
                .await
            }
        });
        let channel = connect(&socket).await;
        Scene {
            root,
            socket,
            publisher,
            channel,
            shutdown: Some(tx),
            server: Some(server),
            _dir: dir,
        }
    }

    fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.channel.clone())
    }

    fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel.clone())
    }

    fn calls(&self) -> Vec<Call> {
        self.publisher.calls.lock().unwrap().clone()
    }

    /// Where Mesos would publish `volume_id`: `<root>/<percent-encoded id>/target`, with the
    /// parent created and the target not.
    fn mesos_target(&self, volume_id: &str) -> PathBuf {
        let parent = self.root.join("mounts").join(percent_encode(volume_id));
        std::fs::create_dir_all(&parent).unwrap();
        parent.join("target")
    }

    /// Stops the server: it returns Ok and removes its socket.
    async fn stop(mut self) {
        self.shutdown.take().unwrap().send(()).unwrap();
        let server = self.server.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
        assert!(!self.socket.exists(), "socket left behind");
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
        let mut mounts = mounts_under(&self.root);
        mounts.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for m in mounts {
            let _ = umount2(&m, MntFlags::MNT_DETACH);
        }
    }
}

/// A channel over the Unix socket, once the server listens (a stale socket file may be there
/// before it does).
pub(crate) async fn connect(socket: &Path) -> Channel {
    let mut last = None;
    for _ in 0..500 {
        let socket = socket.to_path_buf();
        let endpoint = Endpoint::from_static("http://[::]:50051")
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20));
        let connected = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await;
        match connected {
            Ok(channel) => return channel,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("cannot connect to {}: {last:?}", socket.display())
}

/// As Mesos's `http::encode`: everything but unreserved characters as `%XX`.
pub(crate) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn mount_capability(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(volume_capability::AccessType::Mount(
            volume_capability::MountVolume::default(),
        )),
        access_mode: Some(volume_capability::AccessMode { mode: mode as i32 }),
    }
}

/// A publish request as Mesos sends it for a read-only volume.
pub(crate) fn publish_request(volume_id: &str, target: &Path) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: volume_id.to_string(),
        target_path: target.to_str().unwrap().to_string(),
        volume_capability: Some(mount_capability(Mode::MultiNodeReaderOnly)),
        readonly: true,
        ..Default::default()
    }
}

pub(crate) fn unpublish_request(volume_id: &str, target: &Path) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest {
        volume_id: volume_id.to_string(),
        target_path: target.to_str().unwrap().to_string(),
    }
}

fn spec(fqrn: &str, path: &str, root_hash: Option<&str>, tag: Option<&str>) -> VolumeSpec {
    VolumeSpec {
        fqrn: fqrn.into(),
        path: path.into(),
        root_hash: root_hash.map(Into::into),
        tag: tag.map(Into::into),
    }
}

/// Mesos's order of calls, from probing the plugin to unpublishing the volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesos_sequence_publishes_reads_and_unpublishes() {
    bounded(async {
        let scene = Scene::start().await;
        let mut identity = scene.identity();
        let mut node = scene.node();

        let probe = identity.probe(ProbeRequest {}).await.unwrap().into_inner();
        assert_eq!(probe.ready, Some(true));
        let caps = identity
            .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(caps.capabilities.is_empty(), "{caps:?}");
        let info = identity
            .get_plugin_info(GetPluginInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.name, PLUGIN_NAME);
        assert_eq!(info.name, "org.lazyroot.csi");
        assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));
        let node_caps = node
            .node_get_capabilities(NodeGetCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        let stage = node_service_capability::rpc::Type::StageUnstageVolume as i32;
        assert!(!node_caps.capabilities.iter().any(|c| matches!(
            &c.r#type,
            Some(node_service_capability::Type::Rpc(r)) if r.r#type == stage
        )));

        let target = scene.mesos_target(VOLUME_ID);
        assert!(target
            .to_str()
            .unwrap()
            .contains("sft.example.org%3A%2Fimages%2Fbookworm"));
        assert!(!target.exists());
        node.node_publish_volume(publish_request(VOLUME_ID, &target))
            .await
            .unwrap();
        assert!(is_mounted(&target));
        assert_eq!(
            std::fs::read_to_string(target.join("os-release")).unwrap(),
            "PRETTY_NAME=\"bookworm\"\n"
        );
        let err = std::fs::write(target.join("new"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));

        node.node_unpublish_volume(unpublish_request(VOLUME_ID, &target))
            .await
            .unwrap();
        assert!(!target.exists(), "target left behind");
        assert!(
            target.parent().unwrap().exists(),
            "the CO's directory was removed"
        );
        assert!(mounts_under(&scene.root).is_empty());
        assert_eq!(
            scene.calls(),
            vec![
                Call::Publish(
                    spec("sft.example.org", "/images/bookworm", None, None),
                    target.clone()
                ),
                Call::Unpublish(target.clone()),
            ]
        );
        scene.stop().await;
    })
    .await
}

/// The directory the plugin creates for the CO has mode 0755 whatever the umask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_target_is_0755_and_existing_target_is_kept() {
    bounded(async {
        let scene = Scene::start().await;
        let mut node = scene.node();
        let target = scene.mesos_target(VOLUME_ID);
        node.node_publish_volume(publish_request(VOLUME_ID, &target))
            .await
            .unwrap();
        umount2(&target, MntFlags::MNT_DETACH).unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755);
        std::fs::remove_dir(&target).unwrap();

        // An existing target (target_path_exists=true in Mesos) is used as it is.
        std::fs::create_dir(&target).unwrap();
        node.node_publish_volume(publish_request(VOLUME_ID, &target))
            .await
            .unwrap();
        assert!(is_mounted(&target));
        node.node_unpublish_volume(unpublish_request(VOLUME_ID, &target))
            .await
            .unwrap();
        assert!(mounts_under(&scene.root).is_empty());
        scene.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_twice_is_idempotent_and_unpublish_twice_is_ok() {
    bounded(async {
        let scene = Scene::start().await;
        let mut node = scene.node();
        let id = format!("{VOLUME_ID}@{HASH}");
        let target = scene.mesos_target(&id);
        for _ in 0..2 {
            node.node_publish_volume(publish_request(&id, &target))
                .await
                .unwrap();
        }
        assert_eq!(mounts_under(&scene.root), vec![target.clone()]);
        for _ in 0..2 {
            node.node_unpublish_volume(unpublish_request(&id, &target))
                .await
                .unwrap();
        }
        assert!(!target.exists());
        assert!(mounts_under(&scene.root).is_empty());
        let published = spec("sft.example.org", "/images/bookworm", Some(HASH), None);
        assert_eq!(
            scene.calls(),
            vec![
                Call::Publish(published.clone(), target.clone()),
                Call::Publish(published, target.clone()),
                Call::Unpublish(target.clone()),
            ]
        );
        // Never published at all: also fine.
        let never = scene.root.join("mounts/never/target");
        node.node_unpublish_volume(unpublish_request(&id, &never))
            .await
            .unwrap();
        scene.stop().await;
    })
    .await
}

/// The volume context names the volume; the id may then be opaque.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_context_wins_over_volume_id() {
    bounded(async {
        let scene = Scene::start().await;
        let mut node = scene.node();
        let target = scene.mesos_target("csi-inline-1");
        let mut request = publish_request("csi-inline-1", &target);
        request.volume_context = [
            ("fqrn", "other.example.org"),
            ("path", "/images/trixie"),
            ("tag", "v1.2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        node.node_publish_volume(request).await.unwrap();
        assert_eq!(
            scene.calls(),
            vec![Call::Publish(
                spec("other.example.org", "/images/trixie", None, Some("v1.2")),
                target.clone()
            )]
        );
        node.node_unpublish_volume(unpublish_request("csi-inline-1", &target))
            .await
            .unwrap();
        assert!(!target.exists());
        scene.stop().await;
    })
    .await
}

/// Publishes `request` and expects `code`: the publisher was not called and no target was
/// created.
async fn expect_rejected(scene: &Scene, request: NodePublishVolumeRequest, code: Code) {
    let target = PathBuf::from(&request.target_path);
    let status = scene
        .node()
        .node_publish_volume(request.clone())
        .await
        .expect_err("publish should fail");
    assert_eq!(status.code(), code, "{request:?}: {status:?}");
    assert!(scene.calls().is_empty(), "{request:?}: publisher called");
    assert!(!target.exists(), "{request:?}: target created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_capabilities_are_invalid_arguments() {
    bounded(async {
        let scene = Scene::start().await;
        let target = scene.mesos_target(VOLUME_ID);

        let mut block = publish_request(VOLUME_ID, &target);
        block.volume_capability = Some(VolumeCapability {
            access_type: Some(volume_capability::AccessType::Block(
                volume_capability::BlockVolume {},
            )),
            access_mode: Some(volume_capability::AccessMode {
                mode: Mode::MultiNodeReaderOnly as i32,
            }),
        });
        expect_rejected(&scene, block, Code::InvalidArgument).await;

        let mut none = publish_request(VOLUME_ID, &target);
        none.volume_capability = None;
        expect_rejected(&scene, none, Code::InvalidArgument).await;

        for mode in [
            Mode::SingleNodeWriter,
            Mode::MultiNodeSingleWriter,
            Mode::MultiNodeMultiWriter,
            Mode::SingleNodeSingleWriter,
            Mode::SingleNodeMultiWriter,
        ] {
            let mut writer = publish_request(VOLUME_ID, &target);
            writer.volume_capability = Some(mount_capability(mode));
            writer.readonly = false;
            let status = scene
                .node()
                .node_publish_volume(writer.clone())
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{mode:?}");
            assert!(
                status.message().contains("read-only repository"),
                "{status:?}"
            );
        }
        let mut unknown = publish_request(VOLUME_ID, &target);
        unknown.volume_capability = Some(mount_capability(Mode::Unknown));
        expect_rejected(&scene, unknown, Code::InvalidArgument).await;

        // A reader-only mode without `readonly` is fine, as is a writer mode with it.
        let mut reader = publish_request(VOLUME_ID, &target);
        reader.volume_capability = Some(mount_capability(Mode::SingleNodeReaderOnly));
        reader.readonly = false;
        scene.node().node_publish_volume(reader).await.unwrap();
        let mut writer_ro = publish_request(VOLUME_ID, &target);
        writer_ro.volume_capability = Some(mount_capability(Mode::SingleNodeWriter));
        scene.node().node_publish_volume(writer_ro).await.unwrap();
        scene
            .node()
            .node_unpublish_volume(unpublish_request(VOLUME_ID, &target))
            .await
            .unwrap();
        assert!(mounts_under(&scene.root).is_empty());
        scene.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_parent_is_not_found() {
    bounded(async {
        let scene = Scene::start().await;
        let target = scene.root.join("mounts/absent/target");
        expect_rejected(&scene, publish_request(VOLUME_ID, &target), Code::NotFound).await;
        assert!(!target.parent().unwrap().exists());
        scene.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_volumes_and_targets_are_invalid_arguments() {
    bounded(async {
        let scene = Scene::start().await;
        for id in [
            "sft.example.org:/images/../../etc",
            "sft.example.org:/images/./x",
            "sft.example.org:images",
            // Names by stock's rule: letters, digits, '_', '.', '-', no leading '_' or '.'.
            "_sft.example.org:/images",
            ".sft.example.org:/images",
            "sft example.org:/images",
            "sft.example.org/images",
            "sft.example.org:/images@nothex",
            "",
        ] {
            let target = scene.mesos_target("bad");
            expect_rejected(&scene, publish_request(id, &target), Code::InvalidArgument).await;
        }
        // A tag and a root hash together.
        let target = scene.mesos_target("both");
        let mut both = publish_request(&format!("{VOLUME_ID}@{HASH}"), &target);
        both.volume_context = [("tag".to_string(), "v1".to_string())].into();
        expect_rejected(&scene, both, Code::InvalidArgument).await;
        let mut both = publish_request("opaque", &target);
        both.volume_context = [
            ("fqrn", "a.example.org"),
            ("path", "/x"),
            ("tag", "v1"),
            ("root_hash", HASH),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        expect_rejected(&scene, both, Code::InvalidArgument).await;

        for bad_target in ["relative/target", "/", "/tmp/../etc/x"] {
            let mut r = publish_request(VOLUME_ID, Path::new("/unused"));
            r.target_path = bad_target.into();
            let status = scene.node().node_publish_volume(r).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{bad_target}");
            let u = NodeUnpublishVolumeRequest {
                volume_id: VOLUME_ID.into(),
                target_path: bad_target.into(),
            };
            let status = scene.node().node_unpublish_volume(u).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{bad_target}");
        }
        assert!(scene.calls().is_empty());
        scene.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_errors_map_to_status_codes() {
    bounded(async {
        let scene = Scene::start().await;
        let cases: [(MakeError, Code); 4] = [
            (VolumeError::InvalidArgument, Code::InvalidArgument),
            (VolumeError::NotFound, Code::NotFound),
            (VolumeError::Unavailable, Code::Unavailable),
            (VolumeError::Internal, Code::Internal),
        ];
        for (fail, code) in cases {
            *scene.publisher.fail_with.lock().unwrap() = Some(fail);
            let target = scene.mesos_target(VOLUME_ID);
            let status = scene
                .node()
                .node_publish_volume(publish_request(VOLUME_ID, &target))
                .await
                .unwrap_err();
            assert_eq!(status.code(), code);
            assert!(status.message().contains("publisher says no"), "{status:?}");
            assert!(status.message().contains(VOLUME_ID), "{status:?}");
            assert!(
                status.message().contains(target.to_str().unwrap()),
                "{status:?}"
            );
            // The directory the plugin created for the failed publish is gone again.
            assert!(!target.exists());
        }
        assert_eq!(scene.calls().len(), 4);
        assert!(mounts_under(&scene.root).is_empty());
        scene.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unimplemented_rpcs_and_node_info() {
    bounded(async {
        let scene = Scene::start().await;
        let mut node = scene.node();
        let code = node
            .node_stage_volume(NodeStageVolumeRequest {
                volume_id: VOLUME_ID.into(),
                staging_target_path: "/tmp/stage".into(),
                volume_capability: Some(mount_capability(Mode::MultiNodeReaderOnly)),
                ..Default::default()
            })
            .await
            .unwrap_err()
            .code();
        assert_eq!(code, Code::Unimplemented);
        let code = node
            .node_unstage_volume(NodeUnstageVolumeRequest::default())
            .await
            .unwrap_err()
            .code();
        assert_eq!(code, Code::Unimplemented);
        let code = node
            .node_get_volume_stats(NodeGetVolumeStatsRequest::default())
            .await
            .unwrap_err()
            .code();
        assert_eq!(code, Code::Unimplemented);
        let code = node
            .node_expand_volume(NodeExpandVolumeRequest::default())
            .await
            .unwrap_err()
            .code();
        assert_eq!(code, Code::Unimplemented);
        let info = node
            .node_get_info(NodeGetInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(!info.node_id.is_empty());
        assert_eq!(info.max_volumes_per_node, 0);
        assert!(scene.calls().is_empty());
        scene.stop().await;
    })
    .await
}

/// The socket is 0660; a second server on a live socket is refused; a stale socket file is
/// replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_live_and_stale_sockets() {
    bounded(async {
        let scene = Scene::start().await;
        let mode = std::fs::metadata(&scene.socket)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o660);
        let publisher: Arc<dyn VolumePublisher> = scene.publisher.clone();
        let err = serve(&scene.socket, publisher, async {}).await.unwrap_err();
        assert!(format!("{err:#}").contains("in use"), "{err:#}");
        let socket = scene.socket.clone();
        scene.stop().await;

        // A socket file nobody listens on.
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("csi.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(stale.exists());
        let publisher: Arc<dyn VolumePublisher> = Arc::new(FakePublisher {
            source: dir.path().into(),
            calls: Mutex::default(),
            fail_with: Mutex::default(),
            keep_mounted: AtomicBool::new(false),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn({
            let stale = stale.clone();
            async move {
                serve(&stale, publisher, async {
                    let _ = rx.await;
                })
                .await
            }
        });
        let mut identity = IdentityClient::new(connect(&stale).await);
        identity.probe(ProbeRequest {}).await.unwrap();
        drop(identity);
        tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(!stale.exists());
        assert!(!socket.exists());

        // A file that is not a socket is left alone.
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, b"keep").unwrap();
        let publisher: Arc<dyn VolumePublisher> = Arc::new(FakePublisher {
            source: dir.path().into(),
            calls: Mutex::default(),
            fail_with: Mutex::default(),
            keep_mounted: AtomicBool::new(false),
        });
        assert!(serve(&file, publisher, async {}).await.is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    })
    .await
}

/// A target still mounted after unpublishing is an error and is kept; a target with files of
/// its own is unmounted but kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublish_keeps_what_it_cannot_remove() {
    bounded(async {
        let scene = Scene::start().await;
        let mut node = scene.node();
        let target = scene.mesos_target(VOLUME_ID);
        node.node_publish_volume(publish_request(VOLUME_ID, &target))
            .await
            .unwrap();
        scene.publisher.keep_mounted.store(true, Ordering::SeqCst);
        let status = node
            .node_unpublish_volume(unpublish_request(VOLUME_ID, &target))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        assert!(is_mounted(&target));
        scene.publisher.keep_mounted.store(false, Ordering::SeqCst);
        node.node_unpublish_volume(unpublish_request(VOLUME_ID, &target))
            .await
            .unwrap();
        assert!(!target.exists());

        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("mine"), b"x").unwrap();
        node.node_publish_volume(publish_request(VOLUME_ID, &target))
            .await
            .unwrap();
        node.node_unpublish_volume(unpublish_request(VOLUME_ID, &target))
            .await
            .unwrap();
        assert!(mounts_under(&scene.root).is_empty());
        assert_eq!(std::fs::read(target.join("mine")).unwrap(), b"x");
        scene.stop().await;
    })
    .await
}
