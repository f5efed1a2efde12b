//! The control API over HTTP/1.1 on a Unix socket: `POST /lazyroot.v1.Control/<Method>`
//! with the request message as JSON (proto/lazyroot/v1/control.proto). Root only: the
//! socket is 0600 and each connection's peer credentials are checked as well.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixListener;
use tokio::sync::watch;

use super::api;
use super::daemon::Provisioner;
use super::error::ProvisionError;

/// Requests are small (a container id list at most): anything bigger is refused unread.
const MAX_BODY: usize = 1 << 20;

/// Binds `socket` (replacing a stale one, refusing a live one), for root only.
pub fn bind(socket: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket someone answers on belongs to a live daemon: never take it over.
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("another provisioner is serving {}", socket.display()),
        ));
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves until `stop` turns true.
pub async fn serve(listener: UnixListener, p: Arc<Provisioner>, mut stop: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("control socket: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let root = stream.peer_cred().map(|c| c.uid() == 0).unwrap_or(false);
        let p = p.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, p.clone(), root));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    p: Arc<Provisioner>,
    root: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match dispatch(req, p, root).await {
        Ok(body) => reply(StatusCode::OK, body),
        Err(e) => {
            let body = serde_json::to_vec(&api::Error {
                error: e.to_string(),
                code: e.code().into(),
            })
            .unwrap_or_default();
            reply(
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                body,
            )
        }
    })
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

async fn dispatch(
    req: Request<Incoming>,
    p: Arc<Provisioner>,
    root: bool,
) -> Result<Vec<u8>, ProvisionError> {
    if !root {
        return Err(ProvisionError::PermissionDenied(
            "the control API is for root only".into(),
        ));
    }
    if req.method() != Method::POST {
        return Err(ProvisionError::Invalid(format!(
            "{} {}: only POST",
            req.method(),
            req.uri().path()
        )));
    }
    let method = req
        .uri()
        .path()
        .strip_prefix("/lazyroot.v1.Control/")
        .map(str::to_string)
        .ok_or_else(|| ProvisionError::NotFound(format!("no route {}", req.uri().path())))?;
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| ProvisionError::Invalid(format!("request body: {e}")))?
        .to_bytes();
    // Off the async threads, in two lanes: a prepare may wait on a dead server; the
    // module's pins and unpins must not wait for it (see `lanes`).
    if method == "PrepareImage" {
        return super::lanes::slow(move || call(&body, |r| p.prepare(&r))).await;
    }
    super::lanes::fast(move || match method.as_str() {
        "Pin" => call(&body, |r| p.pin(&r)),
        "Unpin" => call(&body, |r| p.unpin(&r)),
        "SyncPins" => call(&body, |r| p.sync_pins(&r)),
        "ListImages" => call(&body, |_: api::ListImagesRequest| p.list()),
        "Health" => call(&body, |_: api::HealthRequest| p.health()),
        other => Err(ProvisionError::NotFound(format!("no method {other:?}"))),
    })
    .await
}

fn call<Req: DeserializeOwned, Resp: Serialize>(
    body: &[u8],
    f: impl FnOnce(Req) -> Result<Resp, ProvisionError>,
) -> Result<Vec<u8>, ProvisionError> {
    let body = if body.is_empty() { b"{}" } else { body };
    let req = serde_json::from_slice(body)
        .map_err(|e| ProvisionError::Invalid(format!("request JSON: {e}")))?;
    let resp = f(req)?;
    serde_json::to_vec(&resp).map_err(|e| ProvisionError::Internal(e.to_string()))
}
