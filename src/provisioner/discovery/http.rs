//! The discovery endpoint: plain HTTP/1.1 GET (the agent's fetcher is curl), one ACI per
//! request, answers an operator can read in the agent's log when there is no image.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::provisioner::Provisioner;

/// Why the discovery endpoint cannot listen where it is told to.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Anyone who reaches the endpoint makes the daemon mount images: loopback only.
    #[error("discovery_listen {0}: not a loopback address (the agent asks on 127.0.0.1 or ::1)")]
    NotLoopback(SocketAddr),
    /// Binding the address failed.
    #[error("discovery_listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Binds the discovery endpoint at `addr`, a loopback address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    if !addr.ip().is_loopback() {
        return Err(ListenError::NotLoopback(addr));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { addr, source })
}

/// A request head must arrive within this time: an idle client holds nothing for long.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves discovery on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, p: Arc<Provisioner>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("discovery: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let p = p.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let p = p.clone();
                async move { Ok::<_, Infallible>(answer(p, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("discovery connection: {e}");
            }
        });
    }
}

async fn answer(p: Arc<Provisioner>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    let path = req.uri().path().to_string();
    let head = req.method() == Method::HEAD;
    // Preparing may ask the servers and mount: the slow lane, never the pins' pool.
    let asked = path.clone();
    let r = crate::provisioner::lanes::slow(move || p.discover(&asked)).await;
    match r {
        Ok(aci) => {
            tracing::info!("discovery: {path} -> {}", aci.id);
            let len = aci.gzipped.len();
            let body = if head {
                Bytes::new()
            } else {
                Bytes::from(aci.gzipped)
            };
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/x-gzip")
                .header("content-length", len)
                // The answer depends on the moment (`latest`, a moved tag): never cached.
                .header("cache-control", "no-store")
                .body(Full::new(body))
                .expect("static headers")
        }
        Err(e) => {
            tracing::info!("discovery: {path}: {e}");
            // 404 no such image, 400 not a request, 503 servers or cache: the agent logs the
            // status and this body.
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            text(status, format!("lazyroot discovery: {e}\n"))
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("static headers")
}
