//! Hosts and proxies in failover order, in CernVM-FS's syntax: servers `URL;URL` (with
//! `@fqrn@` substituted), proxies `p1|p2;p3` — `|` joins a load-balance group (one member
//! picked at random), `;` separates groups tried in order, `DIRECT` means no proxy.

use std::fmt;

/// Why a server or proxy list does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// A server URL is not plain `http://host[:port]/path`: another scheme, a bad host or
    /// port, or `..`, `?`, `#` or a space in the path.
    #[error(
        "server URL {0:?} is not of the form http://host[:port]/path (https is not supported)"
    )]
    BadUrl(String),
    /// A proxy is not `host[:port]`, `http://host[:port]` or `DIRECT`.
    #[error("proxy {0:?} is not host:port, http://host:port or DIRECT")]
    BadProxy(String),
    /// The server list holds no URL.
    #[error("no server URL given")]
    NoServer,
}

/// An HTTP endpoint: host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Host name or IP address (an IPv6 address without its brackets).
    pub host: String,
    /// TCP port: 80 for servers, 3128 for proxies unless given.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A repository's base URL on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The server to connect to.
    pub endpoint: Endpoint,
    /// Path prefix, e.g. `/cvmfs/images.example.org`, without a trailing slash.
    pub base: String,
}

impl Host {
    /// The absolute URL of `rel`, a path relative to the repository base.
    pub fn url(&self, rel: &str) -> String {
        format!("http://{}{}/{}", self.endpoint, self.base, rel)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.endpoint, self.base)
    }
}

/// A proxy, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    /// No proxy: connect to the host itself.
    Direct,
    /// Through the HTTP proxy at this endpoint.
    Via(Endpoint),
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proxy::Direct => f.write_str("DIRECT"),
            Proxy::Via(e) => write!(f, "http://{e}"),
        }
    }
}

fn endpoint(hostport: &str, default_port: u16) -> Option<Endpoint> {
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hostport, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
    ok.then(|| Endpoint {
        host: host.to_string(),
        port,
    })
}

/// Parses `URL[;URL…]`, substituting `@fqrn@`.
pub fn parse_hosts(spec: &str, fqrn: &str) -> Result<Vec<Host>, ChainError> {
    let mut hosts = Vec::new();
    for url in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let url = url.replace("@fqrn@", fqrn);
        let bad = || ChainError::BadUrl(url.clone());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let endpoint = endpoint(hostport, 80).ok_or_else(bad)?;
        if path.contains("..") || path.contains(['?', '#', ' ']) {
            return Err(bad());
        }
        hosts.push(Host {
            endpoint,
            base: path.trim_end_matches('/').to_string(),
        });
    }
    if hosts.is_empty() {
        return Err(ChainError::NoServer);
    }
    Ok(hosts)
}

/// Parses `p1|p2;p3` into groups; an empty spec is `DIRECT`.
pub fn parse_proxies(spec: &str) -> Result<Vec<Vec<Proxy>>, ChainError> {
    let mut groups = Vec::new();
    for group in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let mut members = Vec::new();
        for p in group.split('|').map(str::trim).filter(|s| !s.is_empty()) {
            if p.eq_ignore_ascii_case("DIRECT") {
                members.push(Proxy::Direct);
                continue;
            }
            let hostport = p.strip_prefix("http://").unwrap_or(p).trim_end_matches('/');
            members.push(Proxy::Via(
                endpoint(hostport, 3128).ok_or_else(|| ChainError::BadProxy(p.to_string()))?,
            ));
        }
        if !members.is_empty() {
            groups.push(members);
        }
    }
    if groups.is_empty() {
        groups.push(vec![Proxy::Direct]);
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_table() {
        let h = parse_hosts(
            "http://a.example.org/cvmfs/@fqrn@; http://127.0.0.1:8080/x/",
            "r.org",
        )
        .unwrap();
        assert_eq!(
            h[0].url(".cvmfspublished"),
            "http://a.example.org:80/cvmfs/r.org/.cvmfspublished"
        );
        assert_eq!(
            h[1].endpoint,
            Endpoint {
                host: "127.0.0.1".into(),
                port: 8080
            }
        );
        assert_eq!(h[1].base, "/x");
        for bad in [
            "https://a/b",
            "ftp://x",
            "http://a/../b",
            "http://:80/x",
            "http://a:99999/x",
        ] {
            assert!(parse_hosts(bad, "r").is_err(), "{bad}");
        }
        assert_eq!(parse_hosts(" ; ", "r"), Err(ChainError::NoServer));
    }

    #[test]
    fn proxies_table() {
        let p = parse_proxies("http://p1:3128|p2;DIRECT").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0][1],
            Proxy::Via(Endpoint {
                host: "p2".into(),
                port: 3128
            })
        );
        assert_eq!(p[1], vec![Proxy::Direct]);
        assert_eq!(parse_proxies("").unwrap(), vec![vec![Proxy::Direct]]);
        assert!(parse_proxies("bad host").is_err());
    }
}
