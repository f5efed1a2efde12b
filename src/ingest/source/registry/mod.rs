//! Images in registries, over the Registry HTTP API v2 (OCI distribution):
//! `GET /v2/<name>/manifests/<tag|digest>` (accepting indexes, manifest lists and both
//! manifest kinds), `GET /v2/<name>/blobs/<digest>`, `GET /v2/<name>/tags/list` (paginated by
//! `Link`). A blocking facade over a small tokio runtime: call it from plain threads.
//!
//! - `client`: one GET and the policy around it (auth, redirects, retries, timeouts).
//! - `auth`: challenges, tokens, credentials from `--creds` or Docker's `config.json`.
//! - `cred_helper`: Docker credential helpers (`credHelpers`, `credsStore`).
//! - `tls`: rustls with the system's roots and `--ca` files.
//! - `errors`: [`RegistryError`].

mod auth;
mod client;
mod cred_helper;
mod errors;
mod tls;

use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::mpsc;

pub use errors::{ApiError, RegistryError};

use self::client::{read_body, Client, Get, Url};
use super::resolve::{self, check_size, Fetch, Fetched};
use super::{ImageSource, Platform, ResolvedImage, SourceOptions};
use crate::ingest::digest::VerifyingReader;
use crate::ingest::error::IngestError;
use crate::ingest::media::{self, Descriptor, MAX_DOCUMENT};
use crate::ingest::reference::{RegistryRef, DOCKER_HUB};

/// Most pages of a tag list followed.
const MAX_TAG_PAGES: usize = 10_000;
/// Most tags accepted from one repository.
const MAX_TAGS: usize = 1_000_000;
/// Most bytes of one page of a tag list.
const MAX_TAG_PAGE: u64 = 16 << 20;

/// An image in a registry.
pub struct RegistrySource {
    reference: RegistryRef,
    label: String,
    rt: Arc<tokio::runtime::Runtime>,
    client: Arc<Client>,
    /// `http[s]://host:port` of the registry's API.
    base: Url,
    /// The token scope of every request: `repository:<name>:pull`.
    scope: String,
    max_layer_size: u64,
    tags_page_size: Option<u32>,
}

impl RegistrySource {
    /// Prepares the client for `reference`'s registry: TLS roots, credentials (from
    /// `options.creds`, else the Docker config), the runtime. Nothing is sent yet.
    pub fn new(
        reference: RegistryRef,
        options: &SourceOptions,
    ) -> Result<RegistrySource, IngestError> {
        let label = reference.to_string();
        let wrap = |source| IngestError::Registry {
            reference: label.clone(),
            source,
        };
        let creds = match (&options.creds, &options.docker_config) {
            (Some(c), _) => Some(c.clone()),
            (None, Some(path)) => {
                auth::docker_config_creds(path, &reference.registry).map_err(wrap)?
            }
            (None, None) => None,
        };
        let host = if reference.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            reference.registry.as_str()
        };
        let insecure = &options.insecure_registries;
        let plain = insecure
            .iter()
            .any(|i| i == host || Some(i.as_str()) == host.split(':').next());
        let scheme = if plain { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{host}/")).map_err(|why| {
            wrap(RegistryError::Url {
                what: "the registry".into(),
                url: host.to_string(),
                why,
            })
        })?;
        let tls = tls::client_config(&options.ca_files).map_err(wrap)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lazyroot-registry")
            .enable_all()
            .build()
            .map_err(|e| wrap(RegistryError::Runtime(e)))?;
        let scope = format!("repository:{}:pull", reference.repository);
        Ok(RegistrySource {
            client: Arc::new(Client {
                tls,
                insecure: insecure.clone(),
                timeout: options.timeout,
                retries: options.retries,
                max_retry_wait: options.max_retry_wait,
                auth: auth::Auth::new(&reference.registry, creds),
            }),
            label,
            reference,
            rt: Arc::new(rt),
            base,
            scope,
            max_layer_size: options.max_layer_size,
            tags_page_size: options.tags_page_size,
        })
    }

    fn wrap(&self, source: RegistryError) -> IngestError {
        IngestError::Registry {
            reference: self.label.clone(),
            source,
        }
    }

    /// GETs a small document: its bytes, `Content-Type` and `Link`.
    fn get_document(
        &self,
        path: &str,
        accept: Option<&str>,
        limit: u64,
    ) -> Result<Answer, RegistryError> {
        let what = format!("GET {path}");
        let client = self.client.clone();
        let url = self.base.with_path(path);
        self.rt.block_on(async {
            let resp = client
                .get(Get {
                    url: url.clone(),
                    what: &what,
                    accept,
                    scope: &self.scope,
                })
                .await?;
            let header = |name: hyper::header::HeaderName| {
                resp.headers()
                    .get(name)
                    .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
                    .map(str::to_string)
            };
            let content_type = header(hyper::header::CONTENT_TYPE);
            let link = header(hyper::header::LINK);
            let body = read_body(resp, limit, client.timeout, &what, &url.endpoint()).await?;
            Ok(Answer {
                body,
                content_type,
                link,
            })
        })
    }

    fn name(&self) -> &str {
        &self.reference.repository
    }
}

impl Fetch for RegistrySource {
    fn label(&self) -> &str {
        &self.label
    }

    fn manifest(&self, d: &Descriptor) -> Result<Fetched, IngestError> {
        check_size(
            &self.label,
            &format!("manifest {}", d.digest),
            d.size,
            MAX_DOCUMENT,
        )?;
        let path = format!("/v2/{}/manifests/{}", self.name(), d.digest);
        let Answer {
            body, content_type, ..
        } = self
            .get_document(&path, Some(media::MANIFEST_ACCEPT), d.size + 1)
            .map_err(|e| self.wrap(e))?;
        let bytes = resolve::read_verified(&self.label, &body[..], d)?;
        Ok(Fetched {
            bytes,
            content_type: content_type.or(Some(d.media_type.clone())),
        })
    }

    fn small_blob(&self, d: &Descriptor) -> Result<Vec<u8>, IngestError> {
        check_size(
            &self.label,
            &format!("blob {}", d.digest),
            d.size,
            MAX_DOCUMENT,
        )?;
        let path = format!("/v2/{}/blobs/{}", self.name(), d.digest);
        // One byte more than announced is read, so a longer blob fails as one.
        let body = self
            .get_document(&path, None, d.size + 1)
            .map_err(|e| self.wrap(e))?
            .body;
        resolve::read_verified(&self.label, &body[..], d)
    }
}

impl ImageSource for RegistrySource {
    fn resolve(&self, platform: &Platform) -> Result<ResolvedImage, IngestError> {
        let path = format!(
            "/v2/{}/manifests/{}",
            self.name(),
            self.reference.manifest_ref()
        );
        let Answer {
            body, content_type, ..
        } = self
            .get_document(&path, Some(media::MANIFEST_ACCEPT), MAX_DOCUMENT)
            .map_err(|e| self.wrap(e))?;
        let top = Fetched {
            bytes: body,
            content_type,
        };
        resolve::resolve(
            self,
            top,
            self.reference.digest.as_ref(),
            platform,
            self.max_layer_size,
        )
    }

    fn open_blob(&self, d: &Descriptor) -> Result<Box<dyn Read + Send>, IngestError> {
        check_size(
            &self.label,
            &format!("blob {}", d.digest),
            d.size,
            self.max_layer_size,
        )?;
        let path = format!("/v2/{}/blobs/{}", self.name(), d.digest);
        let what = format!("GET {path}");
        let client = self.client.clone();
        let url = self.base.with_path(&path);
        let resp = self
            .rt
            .block_on(client.get(Get {
                url: url.clone(),
                what: &what,
                accept: None,
                scope: &self.scope,
            }))
            .map_err(|e| self.wrap(e))?;
        // A few pieces in flight: the network runs ahead of the reader, not unbounded.
        let (tx, rx) = mpsc::channel(8);
        let stall = client.timeout;
        let endpoint = url.endpoint();
        let pump_what = what.clone();
        self.rt.spawn(async move {
            let mut body = resp.into_body();
            loop {
                let next = match tokio::time::timeout(stall, body.frame()).await {
                    Err(_) => Some(Err(RegistryError::Timeout {
                        what: pump_what.clone(),
                        endpoint: endpoint.clone(),
                        timeout: stall,
                        stage: "body",
                    })),
                    Ok(None) => None,
                    Ok(Some(Err(source))) => Some(Err(RegistryError::Http {
                        what: pump_what.clone(),
                        endpoint: endpoint.clone(),
                        source,
                    })),
                    Ok(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => Some(Ok(data)),
                        Err(_) => continue, // trailers
                    },
                };
                let end = !matches!(next, Some(Ok(_)));
                if let Some(item) = next {
                    if tx.send(item).await.is_err() {
                        return; // the reader is gone
                    }
                }
                if end {
                    return;
                }
            }
        });
        let stream = BodyReader {
            rx,
            piece: Bytes::new(),
            done: false,
            _rt: self.rt.clone(),
        };
        Ok(Box::new(VerifyingReader::new(
            stream,
            &self.label,
            &d.digest,
            d.size,
        )))
    }

    fn tags(&self) -> Result<Vec<String>, IngestError> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut path = format!("/v2/{}/tags/list", self.name());
        if let Some(n) = self.tags_page_size {
            path.push_str(&format!("?n={n}"));
        }
        let mut tags = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let Answer { body, link, .. } = self
                .get_document(&path, Some("application/json"), MAX_TAG_PAGE)
                .map_err(|e| self.wrap(e))?;
            let page: Page = serde_json::from_slice(&body).map_err(|source| {
                self.wrap(RegistryError::Json {
                    what: format!("GET {path}"),
                    source,
                })
            })?;
            tags.extend(page.tags.unwrap_or_default());
            if tags.len() > MAX_TAGS {
                return Err(self.wrap(RegistryError::TooLarge {
                    what: format!("GET {path}: more than {MAX_TAGS} tags"),
                    max: MAX_TAGS as u64,
                }));
            }
            match link.as_deref().and_then(next_link) {
                None => return Ok(tags),
                Some(next) => {
                    let url = self.base.join(next).map_err(|why| {
                        self.wrap(RegistryError::Url {
                            what: format!("GET {path}: Link"),
                            url: next.to_string(),
                            why,
                        })
                    })?;
                    if !url.same_origin(&self.base) {
                        return Err(self.wrap(RegistryError::Url {
                            what: format!("GET {path}: Link"),
                            url: next.to_string(),
                            why: "it leaves the registry".into(),
                        }));
                    }
                    path = url.path;
                }
            }
        }
        Err(self.wrap(RegistryError::TooLarge {
            what: format!("GET {path}: more than {MAX_TAG_PAGES} pages"),
            max: MAX_TAG_PAGES as u64,
        }))
    }
}

/// A small document as served.
struct Answer {
    body: Vec<u8>,
    content_type: Option<String>,
    /// The `Link` header (tag list pagination).
    link: Option<String>,
}

/// The target of a `Link: <…>; rel="next"` header.
fn next_link(link: &str) -> Option<&str> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let t = target.trim();
        (is_next && t.starts_with('<') && t.ends_with('>')).then(|| &t[1..t.len() - 1])
    })
}

/// A blob's body as a blocking reader, fed by a task on the runtime.
struct BodyReader {
    rx: mpsc::Receiver<Result<Bytes, RegistryError>>,
    piece: Bytes,
    done: bool,
    /// Keeps the runtime, and so the feeding task, alive as long as the reader.
    _rt: Arc<tokio::runtime::Runtime>,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.piece.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(data)) => self.piece = data,
                Some(Err(e)) => {
                    self.done = true;
                    let kind = if e.is_connection() {
                        io::ErrorKind::ConnectionAborted
                    } else {
                        io::ErrorKind::Other
                    };
                    return Err(io::Error::new(kind, e));
                }
                None => self.done = true,
            }
        }
        let n = buf.len().min(self.piece.len());
        buf[..n].copy_from_slice(&self.piece[..n]);
        let _ = self.piece.split_to(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }
}
