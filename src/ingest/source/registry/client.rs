//! The HTTP side of the registry client: one GET over a fresh connection (plain TCP only to
//! insecure-listed hosts, TLS otherwise), bounded in time at every wait; and the request
//! policy around it: authentication on a 401 challenge (once per request), bounded
//! redirects (Authorization dropped when they leave the registry's host), retries of 429,
//! 5xx and connection failures with backoff honouring `Retry-After`, and error answers
//! read (bounded) for the registry's error codes.
//!
//! A connection per request keeps this simple: an image pull makes a handful of requests,
//! and layers are large.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Response};
use hyper_util::rt::TokioIo;

use super::auth::Auth;
use super::errors::{ApiError, RegistryError};

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// Most bytes of an error answer read for its error codes.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// The first retry's wait, doubled for each further one.
const BACKOFF: Duration = Duration::from_millis(200);

/// An absolute http(s) URL, split as the client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    pub secure: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses `http[s]://host[:port][/path]`.
    pub fn parse(s: &str) -> Result<Url, String> {
        let uri: hyper::Uri = s
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| e.to_string())?;
        let secure = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("not an http or https URL".into()),
        };
        let host = uri.host().ok_or("no host")?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        Ok(Url {
            secure,
            host,
            port,
            path,
        })
    }

    /// `host:port`, as connections and the insecure list name endpoints.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The `Host` header: the port only when it is not the scheme's default.
    fn authority(&self) -> String {
        let default = if self.secure { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The same origin with another path (and query).
    pub fn with_path(&self, path: &str) -> Url {
        Url {
            path: path.to_string(),
            ..self.clone()
        }
    }

    /// A `Location` (absolute, or a path on this origin) resolved against this URL.
    pub fn join(&self, location: &str) -> Result<Url, String> {
        if location.starts_with('/') && !location.starts_with("//") {
            Ok(self.with_path(location))
        } else if location.starts_with("http://") || location.starts_with("https://") {
            Url::parse(location)
        } else {
            Err("neither an absolute URL nor an absolute path".into())
        }
    }

    /// Whether both are the same scheme, host and port.
    pub fn same_origin(&self, other: &Url) -> bool {
        self.secure == other.secure && self.host == other.host && self.port == other.port
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// What the client needs to know besides the request.
pub(crate) struct Client {
    pub tls: Arc<rustls::ClientConfig>,
    /// `host:port` or `host` entries allowed over plain HTTP.
    pub insecure: Vec<String>,
    pub timeout: Duration,
    pub retries: u32,
    pub max_retry_wait: Duration,
    pub auth: Auth,
}

/// One GET: where, what it is called in errors, and how to authenticate.
pub(crate) struct Get<'a> {
    pub url: Url,
    pub what: &'a str,
    pub accept: Option<&'a str>,
    /// The token scope (`repository:<name>:pull`).
    pub scope: &'a str,
}

impl Client {
    /// Whether plain HTTP to `url`'s host is allowed.
    pub fn allows_plain(&self, url: &Url) -> bool {
        let endpoint = url.endpoint();
        self.insecure
            .iter()
            .any(|i| *i == endpoint || *i == url.host)
    }

    /// Refuses a plain-HTTP URL to a host not listed as insecure.
    pub fn check_scheme(&self, url: &Url, what: &str) -> Result<(), RegistryError> {
        if url.secure || self.allows_plain(url) {
            Ok(())
        } else {
            Err(RegistryError::Url {
                what: what.to_string(),
                url: url.to_string(),
                why: format!(
                    "plain HTTP is allowed only to insecure registries, and {} is not one",
                    url.endpoint()
                ),
            })
        }
    }

    async fn connect(
        &self,
        url: &Url,
        what: &str,
    ) -> Result<SendRequest<Empty<Bytes>>, RegistryError> {
        let endpoint = url.endpoint();
        let timeout = |stage| RegistryError::Timeout {
            what: what.to_string(),
            endpoint: endpoint.clone(),
            timeout: self.timeout,
            stage,
        };
        let tcp = tokio::time::timeout(
            self.timeout,
            tokio::net::TcpStream::connect((url.host.as_str(), url.port)),
        )
        .await
        .map_err(|_| timeout("connect"))?
        .map_err(|source| RegistryError::Connect {
            what: what.to_string(),
            endpoint: endpoint.clone(),
            source,
        })?;
        let _ = tcp.set_nodelay(true);
        let http_err = |source| RegistryError::Http {
            what: what.to_string(),
            endpoint: endpoint.clone(),
            source,
        };
        if !url.secure {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(http_err)?;
            tokio::spawn(async move {
                let _ = conn.await; // ends when the peer closes or the sender is dropped
            });
            return Ok(sender);
        }
        let name = rustls::pki_types::ServerName::try_from(url.host.as_str())
            .map(|n| n.to_owned())
            .map_err(|e| RegistryError::Url {
                what: what.to_string(),
                url: url.to_string(),
                why: e.to_string(),
            })?;
        let tls = tokio::time::timeout(
            self.timeout,
            tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| timeout("TLS handshake"))?
        .map_err(|source| RegistryError::Tls {
            what: what.to_string(),
            endpoint: endpoint.clone(),
            source,
        })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(http_err)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// One request on a fresh connection; the answer's head, whatever its status.
    pub async fn send_once(
        &self,
        url: &Url,
        what: &str,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Response<Incoming>, RegistryError> {
        self.check_scheme(url, what)?;
        let mut sender = self.connect(url, what).await?;
        let mut req = hyper::Request::get(url.path.as_str())
            .header(header::HOST, url.authority())
            .header(
                header::USER_AGENT,
                concat!("lazyroot/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| RegistryError::Url {
                what: what.to_string(),
                url: url.to_string(),
                why: e.to_string(),
            })?;
        tracing::debug!(url = %url, "GET");
        tokio::time::timeout(self.timeout, sender.send_request(req))
            .await
            .map_err(|_| RegistryError::Timeout {
                what: what.to_string(),
                endpoint: url.endpoint(),
                timeout: self.timeout,
                stage: "response",
            })?
            .map_err(|source| RegistryError::Http {
                what: what.to_string(),
                endpoint: url.endpoint(),
                source,
            })
    }

    /// A GET with the whole policy: auth, redirects, retries. Returns a 2xx answer.
    pub async fn get(&self, g: Get<'_>) -> Result<Response<Incoming>, RegistryError> {
        let origin = g.url.clone();
        let mut url = g.url.clone();
        let (mut tries, mut redirects, mut authenticated) = (0u32, 0usize, false);
        loop {
            // Credentials go to the registry only, never to where it redirects.
            let authorization = if url.same_origin(&origin) {
                self.auth.header(g.scope)
            } else {
                None
            };
            let resp = match self
                .send_once(&url, g.what, g.accept, authorization.as_deref())
                .await
            {
                Ok(r) => r,
                Err(e) if e.is_connection() && tries < self.retries => {
                    let wait = self.backoff(tries, None);
                    tracing::info!(error = %e, ?wait, "retrying");
                    tries += 1;
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let status = resp.status().as_u16();
            if status == 401 && !authenticated && url.same_origin(&origin) {
                authenticated = true;
                let challenges: Vec<String> = resp
                    .headers()
                    .get_all(header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_string))
                    .collect();
                if self
                    .auth
                    .authenticate(self, &challenges, g.scope, g.what)
                    .await?
                {
                    continue; // a token, or Basic: the request is sent again
                }
            }
            match status {
                200..=299 => return Ok(resp),
                301 | 302 | 303 | 307 | 308 => {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(RegistryError::Redirects {
                            what: g.what.to_string(),
                            max: MAX_REDIRECTS,
                        });
                    }
                    let location = resp
                        .headers()
                        .get(header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    url = url.join(location).map_err(|why| RegistryError::Url {
                        what: g.what.to_string(),
                        url: location.to_string(),
                        why,
                    })?;
                    tracing::debug!(to = %url, status, "redirected");
                }
                429 | 500..=599 if tries < self.retries => {
                    let wait = self.backoff(tries, retry_after(&resp));
                    tracing::info!(status, ?wait, what = g.what, "retrying");
                    tries += 1;
                    tokio::time::sleep(wait).await;
                }
                _ => {
                    if status == 401 {
                        self.auth.forget(g.scope); // a refused token is not used again
                    }
                    let errors = self.error_entries(resp, g.what).await;
                    return Err(RegistryError::Status {
                        what: g.what.to_string(),
                        status,
                        errors,
                    });
                }
            }
        }
    }

    /// The wait before retry `tries` (0-based): `Retry-After` if given, else backoff;
    /// never more than the configured bound.
    fn backoff(&self, tries: u32, retry_after: Option<Duration>) -> Duration {
        let exp = BACKOFF.saturating_mul(2u32.saturating_pow(tries));
        retry_after.unwrap_or(exp).min(self.max_retry_wait)
    }

    /// The registry's error entries in an error answer, if it sent them as JSON.
    async fn error_entries(&self, resp: Response<Incoming>, what: &str) -> Vec<ApiError> {
        #[derive(serde::Deserialize)]
        struct Errors {
            #[serde(default)]
            errors: Vec<ApiError>,
        }
        match read_body(resp, MAX_ERROR_BODY, self.timeout, what, "").await {
            Ok(body) => serde_json::from_slice::<Errors>(&body)
                .map(|e| e.errors)
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is left to the backoff).
fn retry_after(resp: &Response<Incoming>) -> Option<Duration> {
    let v = resp.headers().get(header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Reads a whole body of at most `limit` bytes, each piece within `stall`.
pub(crate) async fn read_body(
    resp: Response<Incoming>,
    limit: u64,
    stall: Duration,
    what: &str,
    endpoint: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        what: what.to_string(),
        max: limit,
    };
    if content_length(&resp).is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = resp.into_body();
    let mut out = Vec::new();
    loop {
        let frame = tokio::time::timeout(stall, body.frame())
            .await
            .map_err(|_| RegistryError::Timeout {
                what: what.to_string(),
                endpoint: endpoint.to_string(),
                timeout: stall,
                stage: "body",
            })?;
        let Some(frame) = frame else { return Ok(out) };
        let frame = frame.map_err(|source| RegistryError::Http {
            what: what.to_string(),
            endpoint: endpoint.to_string(),
            source,
        })?;
        if let Ok(data) = frame.into_data() {
            if out.len() as u64 + data.len() as u64 > limit {
                return Err(too_large());
            }
            out.extend_from_slice(&data);
        }
    }
}

/// The `Content-Length` of an answer, if it has a valid one.
pub(crate) fn content_length(resp: &Response<Incoming>) -> Option<u64> {
    resp.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("https://reg.example.org/v2/").unwrap();
        assert_eq!((u.port, u.secure, u.path.as_str()), (443, true, "/v2/"));
        assert_eq!(u.to_string(), "https://reg.example.org/v2/");
        let p = Url::parse("http://127.0.0.1:5000/token?service=x&scope=y").unwrap();
        assert_eq!(p.endpoint(), "127.0.0.1:5000");
        assert_eq!(p.path, "/token?service=x&scope=y");
        let j = u.join("/v2/a/blobs/x").unwrap();
        assert!(j.same_origin(&u));
        let s3 = u.join("https://s3.example.org/b?sig=1").unwrap();
        assert!(!s3.same_origin(&u));
        assert!(u.join("relative").is_err());
        assert!(u.join("//evil.example.org/x").is_err());
        assert!(Url::parse("ftp://x/").is_err());
    }
}
