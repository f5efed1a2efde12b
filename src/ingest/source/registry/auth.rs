//! Registry authentication as Docker does it: the first request goes out without
//! credentials; a 401's `WWW-Authenticate` challenge says how to authenticate —
//! `Bearer realm=…,service=…,scope=…` (ask the realm for a token, anonymously or with
//! Basic credentials; tokens are cached per scope until they expire) or `Basic` (send the
//! credentials with every request). Credentials come from `--creds` or a Docker
//! `config.json` (`auths.<registry>.auth`, base64 `user:pass`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::client::{read_body, Client, Url};
use super::errors::RegistryError;

/// Most bytes of a token answer.
const MAX_TOKEN_ANSWER: u64 = 1 << 20;
/// Token lifetime when the answer gives none (the Docker token spec's default).
const DEFAULT_TOKEN_LIFE: Duration = Duration::from_secs(60);
/// Tokens are renewed this long before they expire, so none expires in flight.
const TOKEN_MARGIN: Duration = Duration::from_secs(5);

/// The credentials of one registry, and what its challenges asked for.
pub(crate) struct Auth {
    /// The registry's name (for messages).
    registry: String,
    creds: Option<(String, String)>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The registry asked for Basic: credentials go with every request.
    basic: bool,
    /// Bearer tokens by scope, with their expiry.
    tokens: HashMap<String, (String, Instant)>,
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// `bearer` or `basic`, lowercase.
    pub scheme: String,
    /// Its parameters (`realm`, `service`, `scope`), names lowercase.
    pub params: HashMap<String, String>,
}

impl Auth {
    pub fn new(registry: &str, creds: Option<(String, String)>) -> Auth {
        Auth {
            registry: registry.to_string(),
            creds,
            state: Mutex::new(State::default()),
        }
    }

    /// The `Authorization` header for a request in `scope`, if one is known.
    pub fn header(&self, scope: &str) -> Option<String> {
        let state = self.state.lock().expect("auth state");
        if let Some((token, expires)) = state.tokens.get(scope) {
            if Instant::now() < *expires {
                return Some(format!("Bearer {token}"));
            }
        }
        if state.basic {
            return self.basic();
        }
        None
    }

    /// Drops the token of `scope` (the registry refused it).
    pub fn forget(&self, scope: &str) {
        self.state.lock().expect("auth state").tokens.remove(scope);
    }

    fn basic(&self) -> Option<String> {
        let (user, pass) = self.creds.as_ref()?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        Some(format!("Basic {b64}"))
    }

    /// Answers a 401's challenges: fetches a token for `scope`, or switches to Basic.
    /// `Ok(false)`: nothing new can be tried (Basic credentials were sent and refused),
    /// so the 401 stands.
    pub async fn authenticate(
        &self,
        client: &Client,
        challenges: &[String],
        scope: &str,
        what: &str,
    ) -> Result<bool, RegistryError> {
        let parsed: Vec<Challenge> = challenges
            .iter()
            .flat_map(|c| parse_challenges(c))
            .collect();
        let shown = challenges.join(", ");
        let not_understood = || RegistryError::Challenge {
            what: what.to_string(),
            challenge: shown.clone(),
        };
        if let Some(bearer) = parsed.iter().find(|c| c.scheme == "bearer") {
            let realm = bearer.params.get("realm").ok_or_else(not_understood)?;
            let service = bearer.params.get("service").map(String::as_str);
            let (token, life) = self
                .fetch_token(client, realm, service, scope, what)
                .await?;
            let mut state = self.state.lock().expect("auth state");
            let expires = Instant::now()
                + life
                    .saturating_sub(TOKEN_MARGIN)
                    .max(Duration::from_secs(1));
            state.tokens.insert(scope.to_string(), (token, expires));
            return Ok(true);
        }
        if parsed.iter().any(|c| c.scheme == "basic") {
            if self.creds.is_none() {
                return Err(RegistryError::NoCredentials {
                    what: what.to_string(),
                    registry: self.registry.clone(),
                    challenge: shown,
                });
            }
            let mut state = self.state.lock().expect("auth state");
            // Basic sent and refused: asking again would not change the answer.
            let fresh = !state.basic;
            state.basic = true;
            return Ok(fresh);
        }
        Err(not_understood())
    }

    /// Asks the token service for a token for `scope`: `GET realm?service=…&scope=…`,
    /// with Basic credentials when there are some.
    async fn fetch_token(
        &self,
        client: &Client,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        what: &str,
    ) -> Result<(String, Duration), RegistryError> {
        let wrap = |source: RegistryError| RegistryError::Token {
            what: what.to_string(),
            realm: realm.to_string(),
            source: Box::new(source),
        };
        let mut url = Url::parse(realm).map_err(|why| {
            wrap(RegistryError::Url {
                what: "the realm".into(),
                url: realm.to_string(),
                why,
            })
        })?;
        let mut query = Vec::new();
        if let Some(s) = service {
            query.push(format!("service={}", encode(s)));
        }
        query.push(format!("scope={}", encode(scope)));
        let sep = if url.path.contains('?') { '&' } else { '?' };
        url.path = format!("{}{sep}{}", url.path, query.join("&"));
        let token_what = format!("GET {}", url.path);
        let authorization = self.basic();
        let mut tries = 0;
        let resp = loop {
            match client
                .send_once(
                    &url,
                    &token_what,
                    Some("application/json"),
                    authorization.as_deref(),
                )
                .await
            {
                Err(e) if e.is_connection() && tries < client.retries => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200 * tries as u64)).await;
                }
                other => break other.map_err(wrap)?,
            }
        };
        let status = resp.status().as_u16();
        let body = read_body(
            resp,
            MAX_TOKEN_ANSWER,
            client.timeout,
            &token_what,
            &url.endpoint(),
        )
        .await
        .map_err(wrap)?;
        if status != 200 {
            #[derive(serde::Deserialize)]
            struct Errors {
                #[serde(default)]
                errors: Vec<super::errors::ApiError>,
            }
            let errors = serde_json::from_slice::<Errors>(&body)
                .map(|e| e.errors)
                .unwrap_or_default();
            return Err(wrap(RegistryError::Status {
                what: token_what,
                status,
                errors,
            }));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let a: Answer = serde_json::from_slice(&body).map_err(|source| {
            wrap(RegistryError::Json {
                what: token_what.clone(),
                source,
            })
        })?;
        let token = a
            .token
            .or(a.access_token)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| wrap(RegistryError::NoToken { what: token_what }))?;
        let life = a.expires_in.map_or(DEFAULT_TOKEN_LIFE, Duration::from_secs);
        tracing::debug!(realm, scope, ?life, "token received");
        Ok((token, life))
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses a `WWW-Authenticate` value: `Scheme k="v", k2=v2[, Scheme2 …]`. Quoted values
/// may hold commas and backslash escapes.
pub(crate) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let s = header.as_bytes();
    let mut i = 0;
    let skip = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b',' || s[*i] == b'\t') {
            *i += 1;
        }
    };
    loop {
        skip(&mut i);
        if i >= s.len() {
            return out;
        }
        let start = i;
        while i < s.len() && s[i] != b' ' && s[i] != b'=' && s[i] != b',' {
            i += 1;
        }
        let word = header[start..i].to_string();
        if i < s.len() && s[i] == b'=' && !out.is_empty() {
            // A parameter of the current challenge.
            i += 1;
            let value = if i < s.len() && s[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    v.push(s[i] as char);
                    i += 1;
                }
                i += 1;
                v
            } else {
                let vs = i;
                while i < s.len() && s[i] != b',' {
                    i += 1;
                }
                header[vs..i].trim().to_string()
            };
            let last = out.last_mut().expect("a challenge");
            last.params.insert(word.to_ascii_lowercase(), value);
        } else if word.is_empty() {
            i += 1;
        } else {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: HashMap::new(),
            });
        }
    }
}

/// The credentials for `registry` in a Docker `config.json`, in Docker's order: the
/// registry's `credHelpers` helper; else the `credsStore` helper; else (or when the store
/// has none) `auths.<key>.auth` (base64 `user:pass`) or `username`/`password`, where the
/// key is the registry with or without a scheme and path; Docker Hub is also found under
/// `https://index.docker.io/v1/`.
pub(crate) fn docker_config_creds(
    path: &Path,
    registry: &str,
) -> Result<Option<(String, String)>, RegistryError> {
    let err = |source| RegistryError::DockerConfig {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |why: String| err(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
    let meta = std::fs::metadata(path).map_err(err)?;
    if meta.len() > 4 << 20 {
        return Err(invalid("larger than 4 MiB".into()));
    }
    let bytes = std::fs::read(path).map_err(err)?;
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        auths: HashMap<String, Entry>,
        #[serde(default, rename = "credHelpers")]
        cred_helpers: HashMap<String, String>,
        #[serde(default, rename = "credsStore")]
        creds_store: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        auth: Option<String>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
    }
    let config: Config = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    let hub = ["docker.io", "index.docker.io", "registry-1.docker.io"];
    let wanted = |key: &str| {
        let k = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let host = k.split('/').next().unwrap_or(k);
        host == registry || (hub.contains(&registry) && hub.contains(&host))
    };
    // As Docker reads it: a `credHelpers` entry for the registry wins over `credsStore`,
    // and an empty one means the credentials are in this file.
    // Of several keys for the registry, the one that is exactly its name (or Docker
    // Hub's URL) wins, then the first in key order: never a HashMap's order.
    fn best<'a, V>(
        map: &'a HashMap<String, V>,
        wanted: impl Fn(&str) -> bool,
        exact: &str,
    ) -> Option<(&'a String, &'a V)> {
        map.iter()
            .filter(|(k, _)| wanted(k))
            .min_by_key(|(k, _)| (k.as_str() != exact, k.as_str()))
    }
    let exact = super::cred_helper::server_url(registry);
    let exact = if exact.starts_with("https://") {
        exact
    } else {
        registry.to_string()
    };
    let helper = match best(&config.cred_helpers, wanted, &exact) {
        Some((_, h)) => Some(h.clone()).filter(|h| !h.is_empty()),
        None => config.creds_store.clone().filter(|s| !s.is_empty()),
    };
    if let Some(helper) = helper {
        let found = super::cred_helper::get(&helper, registry).map_err(|fault| {
            RegistryError::CredHelper {
                helper: helper.clone(),
                registry: registry.to_string(),
                fault,
            }
        })?;
        if found.is_some() {
            return Ok(found);
        }
    }
    let Some((_, entry)) = best(&config.auths, wanted, &exact) else {
        return Ok(None);
    };
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| invalid(format!("auths entry of {registry}: {e}")))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| invalid(format!("auths entry of {registry}: not UTF-8")))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| invalid(format!("auths entry of {registry}: not user:password")))?;
        return Ok(Some((user.to_string(), pass.to_string())));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some((u.clone(), p.clone()))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.docker.io/token");
        assert_eq!(c[0].params["scope"], "repository:library/busybox:pull,push");
        let c = parse_challenges(r#"Basic realm="Registry Realm""#);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].params["realm"], "Registry Realm");
        let c = parse_challenges(r#"Basic realm=x, Bearer realm="a\"b",service=s"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].params["realm"], "a\"b");
        assert_eq!(c[1].params["service"], "s");
        assert!(parse_challenges("").is_empty());
    }

    #[test]
    fn docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        let b64 = base64::engine::general_purpose::STANDARD.encode("u:p:w");
        std::fs::write(
            &p,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{b64}"}},"127.0.0.1:5000":{{"username":"a","password":"b"}}}}}}"#),
        )
        .unwrap();
        assert_eq!(
            docker_config_creds(&p, "docker.io").unwrap(),
            Some(("u".into(), "p:w".into()))
        );
        assert_eq!(
            docker_config_creds(&p, "127.0.0.1:5000").unwrap(),
            Some(("a".into(), "b".into()))
        );
        assert_eq!(docker_config_creds(&p, "quay.io").unwrap(), None);
        std::fs::write(&p, "{").unwrap();
        assert!(docker_config_creds(&p, "quay.io")
            .unwrap_err()
            .to_string()
            .contains("config.json"));
    }

    /// Two `auths` keys for one registry (`docker login` wrote one with the scheme, a
    /// script the other): the credentials used must not depend on a HashMap's order. As
    /// Docker does, the key that is exactly the registry's name wins.
    #[test]
    fn docker_config_two_keys_for_one_registry_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"auths":{"https://r.example.org/v2/":{"username":"old","password":"x"},"r.example.org":{"username":"new","password":"y"},"http://r.example.org":{"username":"other","password":"z"}},
               "credHelpers":{"https://q.example.org":"a-missing-helper","q.example.org":""}}"#,
        )
        .unwrap();
        for _ in 0..32 {
            assert_eq!(
                docker_config_creds(&p, "r.example.org").unwrap(),
                Some(("new".into(), "y".into()))
            );
            assert_eq!(docker_config_creds(&p, "q.example.org").unwrap(), None);
        }
    }
}
