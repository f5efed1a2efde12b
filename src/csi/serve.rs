//! Serving the Identity and Node services on a Unix socket.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio_stream::wrappers::UnixListenerStream;

use super::proto::{identity_server::IdentityServer, node_server::NodeServer};
use super::{IdentityService, NodeService, VolumePublisher};

/// Mode of the socket file: the CO (the Mesos agent or kubelet, root) reads and writes.
const SOCKET_MODE: u32 = 0o660;

/// Serves CSI Identity and Node on `socket` until `shutdown` completes, then removes the
/// socket. A stale socket file (nothing listening) is replaced; a live one, or any other kind
/// of file at that path, is an error. Missing parent directories are created.
pub async fn serve(
    socket: &Path,
    publisher: Arc<dyn VolumePublisher>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_on(bind(socket)?, socket, publisher, shutdown).await
}

/// [`serve`] on a listener [`bind`] made at `socket` (so that a caller can bind before it
/// says it is ready, and serve after).
pub async fn serve_on(
    listener: tokio::net::UnixListener,
    socket: &Path,
    publisher: Arc<dyn VolumePublisher>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let identity = std::fs::metadata(socket).with_context(|| format!("{}", socket.display()))?;
    let result = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(IdentityService::new(publisher.clone())))
        .add_service(NodeServer::new(NodeService::new(publisher)))
        .serve_with_incoming_shutdown(root_only(UnixListenerStream::new(listener)), shutdown)
        .await
        .with_context(|| format!("serving CSI on {}", socket.display()));
    // Only our own socket: a successor may already have replaced it.
    if let Ok(m) = std::fs::symlink_metadata(socket) {
        if m.dev() == identity.dev() && m.ino() == identity.ino() {
            let _ = std::fs::remove_file(socket);
        }
    }
    result
}

/// Connections of root only, as on the control socket: the socket's mode is one guard, the
/// peer's credentials (checked on every connection) the other. Others are closed at once.
fn root_only(
    incoming: UnixListenerStream,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::UnixStream>> {
    use tokio_stream::StreamExt;
    incoming.filter(|c| match c {
        Ok(stream) => {
            let root = stream.peer_cred().is_ok_and(|p| p.uid() == 0);
            if !root {
                tracing::warn!("CSI: refused a connection from a process not run by root");
            }
            root
        }
        Err(_) => true,
    })
}

/// Binds a listener at `socket` with mode [`SOCKET_MODE`]. The socket is bound in a private
/// (0700) directory beside it, given its mode there and renamed into place, so it is never
/// reachable with the umask's wider mode.
pub fn bind(socket: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    let shown = socket.display();
    let parent = match socket.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    remove_stale(socket)?;
    let private = tempfile::Builder::new()
        .prefix(".csi")
        .tempdir_in(parent)
        .with_context(|| format!("temporary directory in {}", parent.display()))?;
    let staged = private.path().join("s");
    let listener = tokio::net::UnixListener::bind(&staged)
        .with_context(|| format!("binding {}", staged.display()))?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(SOCKET_MODE))
        .with_context(|| format!("chmod {}", staged.display()))?;
    std::fs::rename(&staged, socket).with_context(|| format!("moving the socket to {shown}"))?;
    Ok(listener)
}

/// Removes a socket file nobody listens on; refuses a live socket or a non-socket file.
fn remove_stale(socket: &Path) -> anyhow::Result<()> {
    let shown = socket.display();
    let meta = match std::fs::symlink_metadata(socket) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("{shown}")),
    };
    if !meta.file_type().is_socket() {
        bail!("{shown} exists and is not a socket");
    }
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(_) => bail!("{shown} is in use by another server"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(socket).with_context(|| format!("removing stale {shown}"))
        }
        Err(e) => Err(e).with_context(|| format!("probing {shown}")),
    }
}
